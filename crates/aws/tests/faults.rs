//! Faults on the DynamoDB path: the adapter talks to moto through a fault-injecting HTTP proxy
//! (`fault_proxy`), which answers some requests with DynamoDB's throttling or server errors,
//! delays them past the SDK's timeouts, loses the responses of writes that landed, or leaves
//! `BatchWriteItem` requests unprocessed. After each scenario the tables are read directly in
//! moto (a second client, not through the proxy) and compared with what the calls reported:
//! - transient faults are retried within the budget and the calls succeed;
//! - persistent faults give up within a bounded time, as `Throttled` or `Unavailable` with the
//!   cause in the message, and through `dynamowave_core::handle` as a 500 on `$connect` and a
//!   `HandlerError` on `sendmessage`;
//! - no lost and no phantom entries: an Ok put exists, a failed one does not (or, when a
//!   timed-out write landed after all, exactly once); appends that returned Ok are stored
//!   exactly once under gap-free seqs, and a failed append leaves no gap.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use dynamowave_aws::{DynamoDbSettings, DynamoDbStore, Tables};
use dynamowave_core::model::NewMessage;
use dynamowave_core::testing::RecordingApi;
use dynamowave_core::{
    ApiGatewayWebsocketProxyRequest, ChatDeps, ChatSettings, ConnectionRecord, ConnectionStore, Framing, HandlerError,
    MessageLog, Placement, StoreError,
};
use dynamowave_testkit::fault_proxy::{Fault, FaultProxy};
use dynamowave_testkit::{events, moto};

/// The SDK's per-attempt timeout in these tests; delays are longer than this.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(800);
/// The SDK's timeout for a whole call, retries included.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(6);
/// A delay that outlasts one attempt.
const PAST_ATTEMPT: Duration = Duration::from_millis(1500);
/// The longest any failing call may take: 3 SDK attempts with standard-mode backoff (at most
/// 1 s, then 2 s) and no more than OPERATION_TIMEOUT in all, plus scheduling slack.
const GIVE_UP_BOUND: Duration = Duration::from_secs(9);

fn settings() -> DynamoDbSettings {
    DynamoDbSettings {
        sdk_max_attempts: 3,
        batch_max_attempts: 4,
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        ..DynamoDbSettings::default()
    }
}

struct Rig {
    _moto: moto::Moto,
    proxy: FaultProxy,
    /// Through the proxy: the adapter under test.
    store: DynamoDbStore,
    /// Straight to moto: what is really stored.
    direct: Client,
    tables: Tables,
}

async fn rig() -> Rig {
    let moto = moto::moto();
    let proxy = FaultProxy::start(&moto.url).await;
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build();
    let via_proxy = moto::sdk_config_at(&proxy.url, Some(timeouts)).await;
    let direct_config = moto::sdk_config(&moto).await;
    let direct = Client::new(&direct_config);
    let tables = moto::create_tables(&direct_config, "faults").await;
    let store = DynamoDbStore::new(&via_proxy, tables.clone(), settings());
    Rig { _moto: moto, proxy, store, direct, tables }
}

fn record(id: &str) -> ConnectionRecord {
    ConnectionRecord {
        connection_id: id.to_string(),
        connected_at: 1_700_000_000_123,
        source_ip: "192.0.2.7".into(),
        user_agent: Some("faults".into()),
        framing: Framing::Plain,
        name: format!("n-{id}"),
        principal_id: None,
        room: Some("lobby".into()),
        expires_at: 1_700_007_800,
    }
}

fn message(room: &str, text: &str, id: Option<&str>) -> NewMessage {
    NewMessage {
        room: room.into(),
        id: id.map(str::to_string),
        from: "ada".into(),
        publisher: "ada".into(),
        text: text.into(),
        // Now: idempotency items expire `retention` after the message's ts.
        ts: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64),
    }
}

impl Rig {
    /// The connection item as moto holds it.
    async fn stored_connection(&self, id: &str) -> Option<HashMap<String, AttributeValue>> {
        moto::get_item(&self.direct, &self.tables.connections, &[("connectionId", AttributeValue::S(id.into()))]).await
    }

    async fn connection_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .direct
                .scan()
                .table_name(&self.tables.connections)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("direct Scan");
            for item in out.items() {
                if let Some(AttributeValue::S(id)) = item.get("connectionId") {
                    ids.push(id.clone());
                }
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        ids.sort();
        ids
    }

    /// Every message of `room` in moto, as (seq, text), by seq.
    async fn log(&self, room: &str) -> Vec<(u64, String)> {
        let out = self
            .direct
            .query()
            .table_name(&self.tables.messages)
            .key_condition_expression("#r = :r")
            .expression_attribute_names("#r", "room")
            .expression_attribute_values(":r", AttributeValue::S(room.into()))
            .consistent_read(true)
            .send()
            .await
            .expect("direct Query");
        out.items()
            .iter()
            .map(|i| {
                let seq = match i.get("seq") {
                    Some(AttributeValue::N(n)) => n.parse().expect("seq"),
                    other => panic!("seq is {other:?}"),
                };
                let text = match i.get("text") {
                    Some(AttributeValue::S(t)) => t.clone(),
                    other => panic!("text is {other:?}"),
                };
                (seq, text)
            })
            .collect()
    }

    /// The room meta item's `lastSeq` in moto (0 without a meta item).
    async fn last_seq(&self, room: &str) -> u64 {
        let item = moto::get_item(&self.direct, &self.tables.rooms, &[("room", AttributeValue::S(room.into()))]).await;
        match item.as_ref().and_then(|i| i.get("lastSeq")) {
            Some(AttributeValue::N(n)) => n.parse().expect("lastSeq"),
            None => 0,
            other => panic!("lastSeq is {other:?}"),
        }
    }

    /// The log of `room` is exactly seqs 1..=lastSeq, each text at most once; returns the texts.
    async fn assert_gap_free(&self, room: &str) -> Vec<String> {
        let log = self.log(room).await;
        let last = self.last_seq(room).await;
        let seqs: Vec<u64> = log.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (1..=last).collect::<Vec<_>>(), "room {room}: seqs are 1..=lastSeq, no gap, no extra");
        let texts: Vec<String> = log.into_iter().map(|(_, t)| t).collect();
        let mut unique = texts.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), texts.len(), "room {room}: a message stored twice: {texts:?}");
        texts
    }

    /// The handlers on the store under test: no presence budget and no room-creation rate
    /// (neither is under test here).
    fn deps(&self, api: Arc<RecordingApi>) -> ChatDeps {
        let store = Arc::new(self.store.clone());
        let settings = ChatSettings {
            presence_per_room_per_second: 0.0,
            room_create_per_minute: 0,
            room_create_burst: 0,
            ..ChatSettings::default()
        };
        ChatDeps::new(store.clone(), store, api, settings, Placement::Lambda)
    }
}

fn ws_event(route_key: &str, connection_id: &str, body: Option<&str>) -> ApiGatewayWebsocketProxyRequest {
    serde_json::from_value(events::websocket(route_key, connection_id, body)).expect("a WebSocket event")
}

fn body_text(r: &dynamowave_core::ApiGatewayProxyResponse) -> String {
    match &r.body {
        Some(aws_lambda_events::encodings::Body::Text(t)) => t.clone(),
        other => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_retried_and_the_calls_succeed() {
    let rig = rig().await;
    let store = &rig.store;

    // put_connection: two capacity errors, then through.
    rig.proxy.inject("PutItem", Fault::ProvisionedThroughputExceeded, 2);
    let started = Instant::now();
    store.put_connection(&record("c1")).await.expect("put_connection after 2 throttles");
    assert_eq!(rig.proxy.count("PutItem"), 3, "2 throttled attempts and the one that passed");
    assert!(rig.stored_connection("c1").await.is_some(), "an Ok put is stored");
    assert!(started.elapsed() < GIVE_UP_BOUND, "retries took {:?}", started.elapsed());

    // get_connection: ThrottlingException twice.
    rig.proxy.inject("GetItem", Fault::Throttling, 2);
    assert_eq!(store.get_connection("c1").await.expect("get after throttles"), Some(record("c1")));

    // append: the meta read fails once with a 500, the transaction is throttled twice.
    rig.proxy.reset_log();
    rig.proxy.inject("GetItem", Fault::InternalServerError, 1);
    rig.proxy.inject("TransactWriteItems", Fault::Throttling, 1);
    rig.proxy.inject("TransactWriteItems", Fault::ProvisionedThroughputExceeded, 1);
    let a = store.append(message("r1", "first", None)).await.expect("append after transient faults");
    assert_eq!((a.message.seq, a.duplicate), (1, false));
    assert_eq!(rig.proxy.count("TransactWriteItems"), 3);
    let b = store.append(message("r1", "second", Some("k2"))).await.expect("a second append");
    assert_eq!(b.message.seq, 2);
    assert_eq!(rig.assert_gap_free("r1").await, ["first", "second"]);

    // members: two 500s, then the page.
    rig.proxy.inject("Query", Fault::InternalServerError, 2);
    let page = store.members("lobby", None, 10).await.expect("members after 500s");
    assert_eq!(page.items, vec![record("c1")]);

    // delete_connections of 30 ids (chunks of 25 and 5): one throttle, then DynamoDB processes
    // only 10 of each request twice, leaving the rest in UnprocessedItems to resubmit.
    let ids: Vec<String> = (0..30).map(|i| format!("b{i:02}")).collect();
    for id in &ids {
        store.put_connection(&record(id)).await.expect("put");
    }
    rig.proxy.reset_log();
    rig.proxy.inject("BatchWriteItem", Fault::ProvisionedThroughputExceeded, 1);
    rig.proxy.inject("BatchWriteItem", Fault::Unprocessed { keep: 10 }, 2);
    let mut with_dups = ids.clone();
    with_dups.push("b00".into());
    with_dups.push("never-existed".into());
    store.delete_connections(&with_dups).await.expect("delete_connections with unprocessed items");
    let kept = Fault::Unprocessed { keep: 10 };
    assert_eq!(rig.proxy.count_fault("BatchWriteItem", &kept), 2, "UnprocessedItems were provoked");
    // throttled + (25 -> 15 -> 5 -> 0) + the second chunk of 6 (5 ids and the unknown one).
    assert_eq!(rig.proxy.count("BatchWriteItem"), 5, "{:?}", rig.proxy.seen());
    assert_eq!(rig.connection_ids().await, vec!["c1".to_string()], "every batch delete happened");

    // Through the handlers: $connect and sendmessage each meet two throttles and succeed.
    let api = Arc::new(RecordingApi::new());
    let deps = rig.deps(api.clone());
    rig.proxy.inject("PutItem", Fault::ProvisionedThroughputExceeded, 2);
    let r = dynamowave_core::handle(&deps, ws_event("$connect", "h1", None)).await.expect("$connect");
    assert_eq!((r.status_code, body_text(&r).as_str()), (200, "Connected."));
    rig.proxy.inject("TransactWriteItems", Fault::Throttling, 2);
    let body = r#"{"action":"sendmessage","message":"through throttles"}"#;
    let r = dynamowave_core::handle(&deps, ws_event("sendmessage", "h1", Some(body))).await.expect("sendmessage");
    assert_eq!(r.status_code, 200);
    assert_eq!(rig.assert_gap_free("lobby").await, ["through throttles"]);
    assert_eq!(api.texts("c1"), ["through throttles"], "fanned out once to the other member");
    assert_eq!(api.texts("h1"), ["through throttles"], "and once to the sender");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_faults_give_up_in_bounded_time_and_say_why() {
    let rig = rig().await;
    let store = &rig.store;

    // put_connection: throttled for good.
    rig.proxy.inject_always("PutItem", Fault::ProvisionedThroughputExceeded);
    let started = Instant::now();
    let err = store.put_connection(&record("p1")).await.expect_err("a throttled put must fail");
    let took = started.elapsed();
    assert!(took < GIVE_UP_BOUND, "gave up after {took:?}");
    match &err {
        StoreError::Throttled(m) => {
            assert!(m.contains("PutItem") && m.contains("ProvisionedThroughputExceededException"), "{m}")
        }
        other => panic!("expected Throttled, got {other:?}"),
    }
    assert_eq!(rig.proxy.count("PutItem"), 3, "sdk_max_attempts = 3");
    assert!(rig.stored_connection("p1").await.is_none(), "a failed put left no entry");
    rig.proxy.clear();
    store.put_connection(&record("p1")).await.expect("the same put once the throttling stops");

    // append: the transaction throttled for good, then failing with 500s for good. Neither may
    // store anything, take a seq, or leave a gap.
    store.append(message("r", "one", None)).await.expect("append");
    rig.proxy.inject_always("TransactWriteItems", Fault::Throttling);
    let started = Instant::now();
    let err = store.append(message("r", "throttled", Some("t1"))).await.expect_err("throttled append");
    assert!(started.elapsed() < GIVE_UP_BOUND, "gave up after {:?}", started.elapsed());
    assert!(matches!(&err, StoreError::Throttled(m) if m.contains("ThrottlingException")), "{err:?}");
    rig.proxy.clear();
    rig.proxy.inject_always("TransactWriteItems", Fault::InternalServerError);
    let started = Instant::now();
    let err = store.append(message("r", "failed", None)).await.expect_err("append against 500s");
    assert!(started.elapsed() < GIVE_UP_BOUND, "gave up after {:?}", started.elapsed());
    assert!(
        matches!(&err, StoreError::Unavailable(m) if m.contains("TransactWriteItems") && m.contains("InternalServerError")),
        "{err:?}"
    );
    rig.proxy.clear();
    let next = store.append(message("r", "two", Some("t1"))).await.expect("append after the faults");
    assert_eq!((next.message.seq, next.duplicate), (2, false), "the failed appends took no seq");
    assert_eq!(rig.assert_gap_free("r").await, ["one", "two"]);

    // members and get_connection: a 500 for good is Unavailable.
    rig.proxy.inject_always("Query", Fault::InternalServerError);
    let err = store.members("lobby", None, 10).await.expect_err("members against 500s");
    assert!(matches!(&err, StoreError::Unavailable(m) if m.contains("Query RoomIndex")), "{err:?}");
    rig.proxy.clear();

    // delete_connections: DynamoDB never processes anything. Gives up after batch_max_attempts
    // rounds, and deletes nothing it did not report.
    for id in ["d1", "d2", "d3"] {
        store.put_connection(&record(id)).await.expect("put");
    }
    rig.proxy.reset_log();
    rig.proxy.inject_always("BatchWriteItem", Fault::Unprocessed { keep: 0 });
    let started = Instant::now();
    let ids: Vec<String> = ["d1", "d2", "d3"].map(String::from).to_vec();
    let err = store.delete_connections(&ids).await.expect_err("nothing is ever processed");
    assert!(started.elapsed() < GIVE_UP_BOUND, "gave up after {:?}", started.elapsed());
    assert!(matches!(&err, StoreError::Throttled(m) if m.contains("3 deletes still unprocessed after 4")), "{err:?}");
    assert_eq!(rig.proxy.count("BatchWriteItem"), 4, "batch_max_attempts = 4");
    assert_eq!(rig.connection_ids().await, ["d1", "d2", "d3", "p1"], "nothing deleted");
    rig.proxy.clear();
    store.delete_connections(&ids).await.expect("deletes once DynamoDB processes them");
    assert_eq!(rig.connection_ids().await, ["p1"]);

    // Through the handlers: $connect answers 500 and registers nothing; sendmessage fails with
    // a HandlerError, stores nothing and sends nothing; the next one takes the next seq.
    let api = Arc::new(RecordingApi::new());
    let deps = rig.deps(api.clone());
    rig.proxy.inject_always("PutItem", Fault::ProvisionedThroughputExceeded);
    let r = dynamowave_core::handle(&deps, ws_event("$connect", "h1", None)).await.expect("$connect answers");
    assert_eq!((r.status_code, body_text(&r).as_str()), (500, "Failed to connect."));
    assert!(rig.stored_connection("h1").await.is_none(), "a refused connection is not registered");
    rig.proxy.clear();
    let r = dynamowave_core::handle(&deps, ws_event("$connect", "h2", None)).await.expect("$connect");
    assert_eq!(r.status_code, 200);
    rig.proxy.inject_always("TransactWriteItems", Fault::ProvisionedThroughputExceeded);
    let body = r#"{"action":"sendmessage","message":"never stored"}"#;
    let started = Instant::now();
    let err = dynamowave_core::handle(&deps, ws_event("sendmessage", "h2", Some(body)))
        .await
        .expect_err("sendmessage against a throttled table");
    assert!(started.elapsed() < GIVE_UP_BOUND, "gave up after {:?}", started.elapsed());
    assert!(matches!(&err, HandlerError::Store(StoreError::Throttled(_))), "{err:?}");
    assert!(err.to_string().contains("ProvisionedThroughputExceededException"), "{err}");
    assert!(api.texts("h2").is_empty() && api.texts("p1").is_empty(), "nothing was fanned out");
    rig.proxy.clear();
    let body = r#"{"action":"sendmessage","message":"stored"}"#;
    let r = dynamowave_core::handle(&deps, ws_event("sendmessage", "h2", Some(body))).await.expect("sendmessage");
    assert_eq!(r.status_code, 200);
    assert_eq!(rig.assert_gap_free("lobby").await, ["stored"]);
    assert_eq!(api.texts("p1"), ["stored"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_leave_no_lost_duplicate_or_phantom_entries() {
    let rig = rig().await;
    let store = &rig.store;

    // A PutItem lands but its response is lost; the SDK's retry then fails its own condition.
    // That is the connection's own write: Ok, stored once, as put (not a 409 "id in use").
    rig.proxy.inject("PutItem", Fault::ForwardThenDelay(PAST_ATTEMPT), 1);
    store.put_connection(&record("t1")).await.expect("a put whose first response was lost");
    assert_eq!(rig.proxy.count("PutItem"), 2, "the SDK retried after the attempt timeout");
    assert_eq!(store.get_connection("t1").await.expect("get"), Some(record("t1")));
    // ... while a genuinely taken id still conflicts.
    let mut other = record("t1");
    other.source_ip = "198.51.100.1".into();
    assert!(matches!(store.put_connection(&other).await, Err(StoreError::Conflict(_))));

    // The allocation transaction commits but its response is lost, without and with an id. The
    // retry must not store the message again at the next seq, nor call it a duplicate (which
    // would skip its fan-out).
    rig.proxy.inject("TransactWriteItems", Fault::ForwardThenDelay(PAST_ATTEMPT), 1);
    let a = store.append(message("r", "lost response", None)).await.expect("append, response lost");
    assert_eq!((a.message.seq, a.duplicate), (1, false));
    rig.proxy.inject("TransactWriteItems", Fault::ForwardThenDelay(PAST_ATTEMPT), 1);
    let b = store.append(message("r", "lost response, with id", Some("k"))).await.expect("append with id");
    assert_eq!((b.message.seq, b.duplicate), (2, false));
    assert_eq!(rig.assert_gap_free("r").await, ["lost response", "lost response, with id"]);
    // A real retry of that id (a new call) is still recognised as a duplicate.
    let again = store.append(message("r", "lost response, with id", Some("k"))).await.expect("retry");
    assert_eq!((again.message.seq, again.duplicate), (2, true));

    // Every attempt of a PutItem is held past the timeouts, then lands: the call fails with a
    // timeout, and the write that landed anyway is there once, exactly as put (a connection
    // the client never got; fan-out's Gone handling or the TTL removes it).
    rig.proxy.reset_log();
    rig.proxy.inject_always("PutItem", Fault::DelayThenForward(PAST_ATTEMPT));
    let started = Instant::now();
    let err = store.put_connection(&record("t2")).await.expect_err("every attempt timed out");
    assert!(started.elapsed() < GIVE_UP_BOUND, "gave up after {:?}", started.elapsed());
    assert!(matches!(&err, StoreError::Unavailable(m) if m.contains("PutItem") && m.contains("timeout")), "{err:?}");
    rig.proxy.clear();
    tokio::time::sleep(PAST_ATTEMPT + Duration::from_millis(500)).await;
    let landed = rig.stored_connection("t2").await;
    assert!(landed.is_some(), "the delayed attempts reached moto (the proxy forwards them late)");
    assert_eq!(store.get_connection("t2").await.expect("get"), Some(record("t2")), "landed once, as put");

    // Every attempt of the allocation transaction is held past the timeouts, then lands: the
    // call fails; at most one of the attempts commits (they are the same transaction), so the
    // log stays gap-free with that text at most once, and the next append follows on.
    rig.proxy.inject_always("TransactWriteItems", Fault::DelayThenForward(PAST_ATTEMPT));
    let started = Instant::now();
    let err = store.append(message("r", "timed out", None)).await.expect_err("every attempt timed out");
    assert!(started.elapsed() < GIVE_UP_BOUND, "gave up after {:?}", started.elapsed());
    assert!(matches!(&err, StoreError::Unavailable(m) if m.contains("timeout")), "{err:?}");
    rig.proxy.clear();
    tokio::time::sleep(PAST_ATTEMPT + Duration::from_millis(500)).await;
    let texts = rig.assert_gap_free("r").await;
    assert!(texts.iter().filter(|t| *t == "timed out").count() <= 1, "{texts:?}");
    let next = store.append(message("r", "after", None)).await.expect("append after the timeouts");
    assert_eq!(next.message.seq, texts.len() as u64 + 1, "no gap after the failed append");
    rig.assert_gap_free("r").await;

    // Through the handlers: a sendmessage whose commit response is lost is fanned out exactly
    // once and stored exactly once.
    let api = Arc::new(RecordingApi::new());
    let deps = rig.deps(api.clone());
    let r = dynamowave_core::handle(&deps, ws_event("$connect", "h1", None)).await.expect("$connect");
    assert_eq!(r.status_code, 200);
    rig.proxy.inject("TransactWriteItems", Fault::ForwardThenDelay(PAST_ATTEMPT), 1);
    let body = r#"{"action":"sendmessage","message":"once"}"#;
    let r = dynamowave_core::handle(&deps, ws_event("sendmessage", "h1", Some(body))).await.expect("sendmessage");
    assert_eq!(r.status_code, 200);
    assert_eq!(rig.assert_gap_free("lobby").await, ["once"]);
    assert_eq!(api.texts("h1"), ["once"]);
    assert_eq!(api.texts("t1"), ["once"], "members of the lobby (t1, t2) got it once");
}
