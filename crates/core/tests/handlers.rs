//! Handler unit tests: `core::handle` over `MemoryStore` and `RecordingApi`, fed with
//! `aws_lambda_events` WebSocket events as API Gateway would send them.
//!
//! Needs core's feature `testing`: `cargo test -p dynamowave-core --features testing`.
#![cfg(feature = "testing")]

use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_lambda_events::encodings::Body;
use dynamowave_core::testing::{MemoryStore, RecordingApi};
use dynamowave_core::{
    ApiGatewayProxyResponse, ChatDeps, ChatSettings, ConnectionInfo, ConnectionStore, MessageLog, Placement,
    SUBPROTOCOL, handle, is_warmup_event,
};
use http::HeaderValue;
use serde_json::{Value, json};

struct Harness {
    store: Arc<MemoryStore>,
    api: Arc<RecordingApi>,
    deps: ChatDeps,
}

fn harness_with(settings: ChatSettings) -> Harness {
    let store = Arc::new(MemoryStore::new());
    let api = Arc::new(RecordingApi::new());
    let deps = ChatDeps::new(store.clone(), store.clone(), api.clone(), settings, Placement::Lambda);
    Harness { store, api, deps }
}

fn harness() -> Harness {
    harness_with(ChatSettings::default())
}

/// An event as API Gateway builds it (the types are `#[non_exhaustive]`: Default, then fields).
fn event(route: &str, connection_id: &str, body: Option<&str>) -> ApiGatewayWebsocketProxyRequest {
    let mut e = ApiGatewayWebsocketProxyRequest::default();
    e.request_context.route_key = Some(route.to_string());
    e.request_context.connection_id = Some(connection_id.to_string());
    e.request_context.request_id = Some(format!("req-{connection_id}"));
    e.request_context.stage = Some("production".into());
    e.request_context.connected_at = 1_700_000_000_000;
    e.request_context.identity.source_ip = Some("192.0.2.1".into());
    e.request_context.event_type = Some(
        match route {
            "$connect" => "CONNECT",
            "$disconnect" => "DISCONNECT",
            _ => "MESSAGE",
        }
        .into(),
    );
    e.body = body.map(str::to_string);
    e
}

fn body_text(r: &ApiGatewayProxyResponse) -> String {
    match &r.body {
        Some(Body::Text(t)) => t.clone(),
        other => format!("{other:?}"),
    }
}

impl Harness {
    async fn connect(&self, id: &str, json: bool) -> ApiGatewayProxyResponse {
        let mut e = event("$connect", id, None);
        if json {
            e.headers.insert("sec-websocket-protocol", HeaderValue::from_static(SUBPROTOCOL));
        }
        let r = handle(&self.deps, e).await.expect("$connect");
        self.api.set_info(
            id,
            ConnectionInfo {
                connected_at: 1_700_000_000_000,
                source_ip: "192.0.2.1".into(),
                user_agent: None,
                last_active_at: 1_700_000_005_000,
            },
        );
        r
    }

    async fn send(&self, route: &str, id: &str, body: Value) -> ApiGatewayProxyResponse {
        handle(&self.deps, event(route, id, Some(&body.to_string()))).await.expect("handler")
    }

    async fn disconnect(&self, id: &str) {
        handle(&self.deps, event("$disconnect", id, None)).await.expect("$disconnect");
    }
}

#[tokio::test]
async fn aws_tutorial_flow() {
    let h = harness();
    for id in ["a", "b"] {
        let r = h.connect(id, false).await;
        assert_eq!((r.status_code, body_text(&r)), (200, "Connected.".to_string()));
        assert!(r.headers.get("sec-websocket-protocol").is_none(), "no subprotocol was offered");
    }
    let r = h.send("sendmessage", "a", json!({"action": "sendmessage", "message": "hello, everyone!"})).await;
    assert_eq!((r.status_code, body_text(&r)), (200, "Data sent.".to_string()));
    assert_eq!(h.api.texts("a"), vec!["hello, everyone!"], "the sender receives its own message, as bare text");
    assert_eq!(h.api.texts("b"), vec!["hello, everyone!"]);
    h.send("sendmessage", "b", json!({"action": "sendmessage", "data": "hello world"})).await;
    assert_eq!(h.api.texts("a").last().map(String::as_str), Some("hello world"), "aws-samples' `data` works");

    h.api.clear();
    let r = handle(&h.deps, event("$default", "a", Some("test"))).await.expect("$default");
    assert_eq!(r.status_code, 200);
    let texts = h.api.texts("a");
    assert_eq!(texts.len(), 1, "one answer: {texts:?}");
    let info = texts[0]
        .strip_prefix("Use the sendmessage route to send a message. Your info: ")
        .unwrap_or_else(|| panic!("tutorial wording: {}", texts[0]));
    let info: Value = serde_json::from_str(info).expect("Your info is JSON");
    assert_eq!(info["connectionID"], "a");
    assert_eq!(info["ConnectedAt"], "2023-11-14T22:13:20.000Z");
    assert_eq!(info["LastActiveAt"], "2023-11-14T22:13:25.000Z");
    assert_eq!(info["Identity"], json!({"SourceIp": "192.0.2.1", "UserAgent": null}));
    assert!(h.api.texts("b").is_empty(), "$default answers only its caller");
}

#[tokio::test]
async fn json_connect_echoes_the_subprotocol() {
    let h = harness();
    let r = h.connect("j", true).await;
    assert_eq!(r.headers.get("sec-websocket-protocol").and_then(|v| v.to_str().ok()), Some(SUBPROTOCOL));
    let r = h.connect("j", true).await;
    assert_eq!(r.status_code, 409, "a second $connect with the same id is refused");
}

#[tokio::test]
async fn a_gone_recipient_is_deleted_never_the_sender() {
    let h = harness();
    for id in ["sender", "gone", "alive"] {
        h.connect(id, false).await;
    }
    h.api.set_gone("gone");
    h.send("sendmessage", "sender", json!({"action": "sendmessage", "message": "hi"})).await;
    let mut left = h.store.connection_ids();
    left.sort();
    assert_eq!(left, vec!["alive", "sender"], "the seed's v3 bug deleted the sender; only the gone one may go");
    assert_eq!(h.api.texts("alive"), vec!["hi"]);
    assert_eq!(h.api.texts("sender"), vec!["hi"]);
}

#[tokio::test]
async fn ack_and_idempotent_retry() {
    let h = harness();
    h.connect("a", true).await;
    h.connect("b", true).await;
    let send = json!({"action": "sendmessage", "message": "once", "id": "m-1"});
    h.send("sendmessage", "a", send.clone()).await;
    let acks = h.api.events("a", "ack");
    assert_eq!(acks, vec![json!({"type": "ack", "id": "m-1", "room": "lobby", "seq": 1})]);
    h.send("sendmessage", "a", send).await;
    let acks = h.api.events("a", "ack");
    assert_eq!(acks.len(), 2);
    assert_eq!(acks[1], json!({"type": "ack", "id": "m-1", "room": "lobby", "seq": 1, "duplicate": true}));
    let messages = h.api.events("b", "message");
    assert_eq!(messages.len(), 1, "a retry is not published twice: {messages:?}");
    assert_eq!(messages[0]["seq"], 1);
    assert_eq!(messages[0]["id"], "m-1");
    assert_eq!(messages[0]["text"], "once");
    assert_eq!(h.store.room_state("lobby").await.expect("state").last_seq, 1, "stored once");
    h.send("sendmessage", "b", json!({"action": "sendmessage", "message": "mine", "id": "m-1"})).await;
    assert_eq!(h.api.events("b", "ack")[0]["seq"], 2, "another sender's equal id is a new message");
}

async fn fill_room(h: &Harness, room: &str, n: usize) {
    h.connect("poster", true).await;
    for i in 1..=n {
        h.send("sendmessage", "poster", json!({"action": "sendmessage", "room": room, "message": format!("m{i}")}))
            .await;
    }
}

#[tokio::test]
async fn join_with_since_replays_exactly_the_missed_messages() {
    let h = harness();
    fill_room(&h, "r", 5).await;
    h.connect("late", true).await;
    let epoch = h.store.room_state("r").await.expect("state").epoch;
    h.send("join", "late", json!({"action": "join", "room": "r", "since": 2, "epoch": epoch})).await;
    let frames = h.api.json("late");
    let seqs: Vec<u64> = frames.iter().filter(|f| f["type"] == "message").filter_map(|f| f["seq"].as_u64()).collect();
    assert_eq!(seqs, vec![3, 4, 5], "exactly the messages after `since`, in order");
    let joined = frames.last().expect("an answer");
    assert_eq!(joined["type"], "joined", "replay comes before the joined event: {frames:?}");
    assert_eq!((joined["replayed"].clone(), joined["recovered"].clone()), (json!(3), json!(true)));
    assert_eq!(joined["lastSeq"], 5);
    let me = h.store.get_connection("late").await.expect("get").expect("registered");
    assert_eq!(me.room.as_deref(), Some("r"), "join moves the connection");

    // Live messages follow.
    h.send("sendmessage", "poster", json!({"action": "sendmessage", "room": "r", "message": "live"})).await;
    assert_eq!(h.api.events("late", "message").last().expect("live")["seq"], 6);

    // A plain client gets the replay as bare text.
    h.connect("plain", false).await;
    h.send("join", "plain", json!({"action": "join", "room": "r", "since": 4})).await;
    let texts = h.api.texts("plain");
    assert_eq!(&texts[..2], &["m5".to_string(), "live".to_string()], "{texts:?}");
}

#[tokio::test]
async fn recovery_is_refused_when_the_position_cannot_be_trusted() {
    let h = harness_with(ChatSettings { max_replay: 3, ..ChatSettings::default() });
    fill_room(&h, "r", 6).await;
    let epoch = h.store.room_state("r").await.expect("state").epoch;
    h.connect("c", true).await;
    let cases = [
        (json!({"action": "join", "room": "r", "since": 5, "epoch": "another-epoch"}), "epoch_changed"),
        (json!({"action": "join", "room": "r", "since": 9, "epoch": epoch}), "position_ahead_of_log"),
        (json!({"action": "join", "room": "r", "since": 1, "epoch": epoch}), "gap_too_large"),
    ];
    for (body, reason) in cases {
        h.api.clear();
        h.send("join", "c", body).await;
        let frames = h.api.json("c");
        assert!(frames.iter().all(|f| f["type"] != "message"), "nothing replayed when refused ({reason})");
        let joined = &h.api.events("c", "joined")[0];
        assert_eq!(joined["recovered"], false, "{reason}");
        assert_eq!(joined["replayed"], 0, "{reason}");
        assert_eq!(joined["reason"], reason);
    }
    h.store.prune_room("r", 5);
    h.api.clear();
    h.send("join", "c", json!({"action": "join", "room": "r", "since": 2, "epoch": epoch})).await;
    assert_eq!(h.api.events("c", "joined")[0]["reason"], "gap_older_than_retention");
    h.api.clear();
    h.send("join", "c", json!({"action": "join", "room": "r", "since": 4, "epoch": epoch})).await;
    let joined = &h.api.events("c", "joined")[0];
    assert_eq!((joined["recovered"].clone(), joined["replayed"].clone()), (json!(true), json!(2)), "5 and 6 remain");
}

#[tokio::test]
async fn presence_announces_joins_leaves_and_lists_members() {
    let h = harness();
    h.connect("a", true).await;
    h.connect("b", true).await;
    let presence = h.api.events("a", "presence");
    assert_eq!(presence.len(), 1, "a hears of b: {presence:?}");
    assert_eq!(presence[0]["event"], "join");
    assert_eq!(presence[0]["connectionId"], "b");
    assert_eq!(presence[0]["room"], "lobby");
    assert!(h.api.events("b", "presence").is_empty(), "b is not told of itself (it cannot be posted to yet)");

    h.send("setname", "b", json!({"action": "setname", "name": "Bob"})).await;
    assert_eq!(h.api.events("b", "named")[0]["name"], "Bob");
    h.send("who", "a", json!({"action": "who"})).await;
    let members = &h.api.events("a", "members")[0];
    let names: Vec<&str> =
        members["members"].as_array().expect("list").iter().filter_map(|m| m["name"].as_str()).collect();
    assert!(names.contains(&"Bob") && names.len() == 2, "{members}");

    h.api.clear();
    h.disconnect("b").await;
    let presence = h.api.events("a", "presence");
    assert_eq!(presence.len(), 1, "{presence:?}");
    assert_eq!((presence[0]["event"].clone(), presence[0]["name"].clone()), (json!("leave"), json!("Bob")));
    assert_eq!(h.store.get_connection("b").await.expect("get"), None, "$disconnect removes the entry");
}

#[tokio::test]
async fn a_reconnect_storm_spends_the_rooms_presence_budget_and_who_stays_exact() {
    let h = harness_with(ChatSettings { presence_per_room_per_second: 5.0, ..ChatSettings::default() });
    h.connect("observer", true).await;
    for i in 0..30 {
        let id = format!("storm-{i}");
        h.connect(&id, true).await;
        h.disconnect(&id).await;
    }
    let heard = h.api.events("observer", "presence").len();
    // The observer's own join took one token: 4 left for the storm's 60 events (plus what refilled
    // while the test ran, well under one more at 5/s).
    assert!((4..=6).contains(&heard), "presence events heard: {heard}");
    h.connect("late", true).await;
    h.send("who", "observer", json!({"action": "who"})).await;
    let members = &h.api.events("observer", "members")[0];
    assert_eq!(members["members"].as_array().map(Vec::len), Some(2), "who is exact: {members}");
    // Another room has a budget of its own.
    h.send("join", "observer", json!({"action": "join", "room": "quiet"})).await;
    h.send("join", "late", json!({"action": "join", "room": "quiet"})).await;
    let joins: Vec<_> = h.api.events("observer", "presence").into_iter().filter(|p| p["room"] == "quiet").collect();
    assert_eq!(joins.len(), 1, "{joins:?}");
}

#[tokio::test]
async fn invalid_names_are_refused_with_a_code() {
    let h = harness();
    h.connect("a", true).await;
    let before = h.store.get_connection("a").await.expect("get").expect("registered").name;
    for bad in [" lead", "a\u{202E}b", "", "<script>", "x".repeat(40).as_str()] {
        h.api.clear();
        let r = h.send("setname", "a", json!({"action": "setname", "name": bad})).await;
        assert_eq!(r.status_code, 400, "{bad:?}");
        let err = &h.api.events("a", "error")[0];
        assert_eq!(err["code"], "invalid_name", "{bad:?}: {err}");
        assert_eq!(err["action"], "setname");
    }
    let after = h.store.get_connection("a").await.expect("get").expect("registered").name;
    assert_eq!(after, before, "a refused name changes nothing");
    h.api.clear();
    h.send("setname", "a", json!({"action": "setname", "name": 5})).await;
    assert_eq!(h.api.events("a", "error")[0]["code"], "invalid_field");
}

#[tokio::test]
async fn bad_frames_get_error_events_not_silence() {
    let h = harness();
    h.connect("a", true).await;
    let r = handle(&h.deps, event("sendmessage", "a", Some("{not json"))).await.expect("handler");
    assert_eq!(r.status_code, 400);
    assert_eq!(h.api.events("a", "error")[0]["code"], "invalid_json");
    h.api.clear();
    h.send("sendmessage", "a", json!({"action": "sendmessage", "message": "bell\u{7}"})).await;
    assert_eq!(h.api.events("a", "error")[0]["code"], "invalid_text");
    h.api.clear();
    h.send("sendmessage", "a", json!({"action": "sendmessage", "message": "x", "room": "../etc"})).await;
    assert_eq!(h.api.events("a", "error")[0]["code"], "invalid_room");
    assert!(h.store.list_rooms(10).await.expect("rooms").is_empty(), "nothing was stored");
}

#[tokio::test]
async fn warmup_events_are_recognised() {
    assert!(is_warmup_event(&json!({"warmup": true})));
    assert!(!is_warmup_event(&json!({"warmup": false})));
    assert!(!is_warmup_event(&json!({"warmup": "true"})));
    let real = serde_json::to_value(event("sendmessage", "a", Some("{}"))).expect("event JSON");
    assert!(!is_warmup_event(&real), "a real API Gateway event is not a warm-up");
    assert!(!is_warmup_event(&json!({})));
}

// --- Sizes: every answer fits in one message, and what cannot be delivered is not stored. ---

/// A `ConnectionsApi` with API Gateway's payload limit in front of the recording one.
struct LimitedApi {
    inner: Arc<RecordingApi>,
    limit: usize,
}

#[async_trait::async_trait]
impl dynamowave_core::ConnectionsApi for LimitedApi {
    async fn post_to_connection(
        &self,
        connection_id: &str,
        data: bytes::Bytes,
    ) -> Result<(), dynamowave_core::ConnectionsApiError> {
        if data.len() > self.limit {
            return Err(dynamowave_core::ConnectionsApiError::PayloadTooLarge(format!("{} bytes", data.len())));
        }
        self.inner.post_to_connection(connection_id, data).await
    }

    async fn get_connection(
        &self,
        connection_id: &str,
    ) -> Result<ConnectionInfo, dynamowave_core::ConnectionsApiError> {
        self.inner.get_connection(connection_id).await
    }

    async fn delete_connection(&self, connection_id: &str) -> Result<(), dynamowave_core::ConnectionsApiError> {
        self.inner.delete_connection(connection_id).await
    }
}

/// The largest frame posted to `id`.
fn largest_frame(h: &Harness, id: &str) -> usize {
    h.api.frames(id).iter().map(|f| f.len()).max().unwrap_or(0)
}

#[tokio::test]
async fn history_of_large_messages_is_paged_to_fit_one_message() {
    let h = harness();
    h.connect("poster", true).await;
    h.connect("reader", true).await;
    let big = "h".repeat(100 * 1024);
    for i in 0..2 {
        h.send("sendmessage", "poster", json!({"action": "sendmessage", "message": format!("{i}{big}")})).await;
    }
    h.api.clear();
    h.send("history", "reader", json!({"action": "history"})).await;
    let page = &h.api.events("reader", "history")[0];
    let seqs: Vec<u64> = page["messages"].as_array().expect("list").iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!((seqs.clone(), page["more"].clone()), (vec![2], json!(true)), "the newest that fits, and more");
    assert!(largest_frame(&h, "reader") <= 128 * 1024);
    h.api.clear();
    h.send("history", "reader", json!({"action": "history", "before": 2})).await;
    let page = &h.api.events("reader", "history")[0];
    let seqs: Vec<u64> = page["messages"].as_array().expect("list").iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!((seqs, page["more"].clone()), (vec![1], json!(false)));

    // Small messages still come many to a page, up to `limit`.
    for i in 0..5 {
        h.send("sendmessage", "poster", json!({"action": "sendmessage", "message": format!("small {i}")})).await;
    }
    h.api.clear();
    h.send("history", "reader", json!({"action": "history", "limit": 5})).await;
    let page = &h.api.events("reader", "history")[0];
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(5));
    assert_eq!(page["more"], true);
}

#[tokio::test]
async fn text_over_the_cap_is_refused_and_nothing_is_stored() {
    let h = harness_with(ChatSettings { max_text_bytes: Some(100), ..ChatSettings::default() });
    h.connect("a", true).await;
    h.connect("b", true).await;
    h.api.clear();
    let r = h.send("sendmessage", "a", json!({"action": "sendmessage", "message": "x".repeat(101), "id": "t1"})).await;
    assert_eq!(r.status_code, 400);
    let err = &h.api.events("a", "error")[0];
    assert_eq!((err["code"].clone(), err["id"].clone()), (json!("text_too_long"), json!("t1")), "{err}");
    assert!(h.api.events("a", "ack").is_empty() && h.api.events("b", "message").is_empty());
    assert_eq!(h.store.room_state("lobby").await.expect("state").last_seq, 0, "nothing stored, no seq used");
    // Private messages have the same cap.
    h.send("sendprivate", "a", json!({"action": "sendprivate", "connectionId": "b", "message": "y".repeat(101)})).await;
    assert_eq!(h.api.events("a", "error").last().expect("error")["code"], "text_too_long");
    assert!(h.api.events("b", "private").is_empty());
    // At the cap: stored as seq 1.
    h.send("sendmessage", "a", json!({"action": "sendmessage", "message": "x".repeat(100), "id": "t2"})).await;
    assert_eq!(h.api.events("a", "ack")[0]["seq"], 1);
}

#[tokio::test]
async fn a_message_whose_frame_would_not_fit_is_refused_before_it_is_stored() {
    let h = harness();
    h.connect("a", true).await;
    h.connect("b", true).await;
    h.api.clear();
    // 70 KiB of quotes: under the text cap, but escaped in JSON it takes 140 KiB.
    let quotes = "\"".repeat(70 * 1024);
    let r = h.send("sendmessage", "a", json!({"action": "sendmessage", "message": quotes, "id": "q"})).await;
    assert_eq!(r.status_code, 400);
    let err = &h.api.events("a", "error")[0];
    assert_eq!((err["code"].clone(), err["id"].clone()), (json!("message_too_large"), json!("q")), "{err}");
    assert!(h.api.events("b", "message").is_empty() && h.api.events("a", "ack").is_empty());
    assert_eq!(h.store.room_state("lobby").await.expect("state").last_seq, 0, "nothing stored, no seq used");
    h.send("sendmessage", "a", json!({"action": "sendmessage", "message": "fits", "id": "f"})).await;
    assert_eq!(h.api.events("a", "ack")[0]["seq"], 1);
}

#[tokio::test]
async fn who_pages_with_a_cursor_by_count_and_by_bytes() {
    for (settings, page_most) in [
        (ChatSettings { who_max: 3, ..ChatSettings::default() }, 3),
        // About 45 bytes a member: a page of at most 10 in 600 bytes.
        (ChatSettings { max_payload_bytes: 600, max_text_bytes: Some(10), ..ChatSettings::default() }, 12),
    ] {
        let h = harness_with(settings);
        let ids: Vec<String> = (0..25).map(|i| format!("conn-{i:02}")).collect();
        for id in &ids {
            h.connect(id, true).await;
        }
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        let mut pages = 0;
        for page_no in 0.. {
            assert!(page_no < 30, "paging must end");
            pages += 1;
            h.api.clear();
            let mut body = json!({"action": "who"});
            if let Some(a) = &after {
                body["after"] = json!(a);
            }
            h.send("who", "conn-00", body).await;
            let frames = h.api.frames("conn-00");
            let page = &h.api.events("conn-00", "members")[0];
            assert!(frames.iter().all(|f| f.len() <= h.deps.settings.max_payload_bytes), "every page fits");
            let members = page["members"].as_array().expect("list");
            assert!(!members.is_empty() && members.len() <= page_most, "{page}");
            seen.extend(members.iter().filter_map(|m| m["connectionId"].as_str().map(str::to_string)));
            match page["next"].as_str() {
                Some(next) => {
                    assert_eq!(page["truncated"], true);
                    after = Some(next.to_string());
                }
                None => {
                    assert_eq!(page["truncated"], false);
                    break;
                }
            }
        }
        seen.sort();
        assert_eq!(seen, ids, "every member once, across the pages");
        assert!(pages >= 3, "25 members come in several pages: {pages}");
    }
    // A cursor that is not one is refused.
    let h = harness();
    h.connect("a", true).await;
    h.send("who", "a", json!({"action": "who", "after": "not a cursor!"})).await;
    assert_eq!(h.api.events("a", "error")[0]["code"], "invalid_field");
}

#[tokio::test]
async fn an_answer_too_large_to_post_is_an_error_event_not_silence() {
    let store = Arc::new(MemoryStore::new());
    let api = Arc::new(RecordingApi::new());
    // The handlers believe in a larger limit than the API enforces: what the API refuses must
    // still be answered.
    let settings = ChatSettings::default();
    let limited = Arc::new(LimitedApi { inner: api.clone(), limit: 300 });
    let deps = ChatDeps::new(store.clone(), store.clone(), limited, settings, Placement::Lambda);
    let h = Harness { store, api, deps };
    h.connect("a", true).await;
    h.send("sendmessage", "a", json!({"action": "sendmessage", "message": "z".repeat(400)})).await;
    h.api.clear();
    h.send("history", "a", json!({"action": "history"})).await;
    let err = &h.api.events("a", "error")[0];
    assert_eq!((err["code"].clone(), err["action"].clone()), (json!("answer_too_large"), json!("history")), "{err}");
}

/// A `MessageLog` that records how many messages each `read_after` asked for.
struct PageSpy {
    inner: Arc<MemoryStore>,
    reads: std::sync::Mutex<Vec<usize>>,
}

#[async_trait::async_trait]
impl MessageLog for PageSpy {
    async fn append(
        &self,
        message: dynamowave_core::model::NewMessage,
    ) -> dynamowave_core::StoreResult<dynamowave_core::model::Appended> {
        self.inner.append(message).await
    }
    async fn read_after(
        &self,
        room: &str,
        after: u64,
        limit: usize,
    ) -> dynamowave_core::StoreResult<Vec<dynamowave_core::model::StoredMessage>> {
        self.reads.lock().expect("lock").push(limit);
        self.inner.read_after(room, after, limit).await
    }
    async fn read_before(
        &self,
        room: &str,
        before: Option<u64>,
        limit: usize,
    ) -> dynamowave_core::StoreResult<Vec<dynamowave_core::model::StoredMessage>> {
        self.inner.read_before(room, before, limit).await
    }
    async fn room_state(&self, room: &str) -> dynamowave_core::StoreResult<dynamowave_core::model::RoomState> {
        self.inner.room_state(room).await
    }
    async fn room_exists(&self, room: &str) -> dynamowave_core::StoreResult<bool> {
        self.inner.room_exists(room).await
    }
    async fn rooms_page(
        &self,
        after: Option<&dynamowave_core::store::RoomsCursor>,
        limit: usize,
    ) -> dynamowave_core::StoreResult<dynamowave_core::store::RoomsPage> {
        self.inner.rooms_page(after, limit).await
    }
    async fn claim_room(
        &self,
        connection_id: &str,
        room: &str,
        max: usize,
        expires_at: i64,
    ) -> dynamowave_core::StoreResult<dynamowave_core::store::RoomClaim> {
        self.inner.claim_room(connection_id, room, max, expires_at).await
    }
    async fn release_rooms(&self, connection_id: &str) -> dynamowave_core::StoreResult<()> {
        self.inner.release_rooms(connection_id).await
    }
}

#[tokio::test]
async fn a_replay_reads_the_log_in_small_pages_and_fewer_when_messages_are_large() {
    let mut h = harness_with(ChatSettings { log_page_messages: 4, log_page_bytes: 2048, ..ChatSettings::default() });
    let spy = Arc::new(PageSpy { inner: h.store.clone(), reads: std::sync::Mutex::new(Vec::new()) });
    h.deps.messages = spy.clone();
    h.connect("poster", true).await;
    for i in 0..10 {
        h.send("sendmessage", "poster", json!({"action": "sendmessage", "room": "r", "message": format!("m{i}")}))
            .await;
    }
    for i in 0..3 {
        let text = format!("{i}{}", "L".repeat(1500));
        h.send("sendmessage", "poster", json!({"action": "sendmessage", "room": "r", "message": text})).await;
    }
    h.connect("late", true).await;
    let epoch = h.store.room_state("r").await.expect("state").epoch;
    h.send("join", "late", json!({"action": "join", "room": "r", "since": 0, "epoch": epoch})).await;
    let seqs: Vec<u64> = h.api.events("late", "message").iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!(seqs, (1..=13).collect::<Vec<_>>(), "the whole replay, in order");
    let joined = &h.api.events("late", "joined")[0];
    assert_eq!((joined["replayed"].clone(), joined["lastSeq"].clone()), (json!(13), json!(13)));
    let reads = spy.reads.lock().expect("lock").clone();
    assert!(reads.iter().all(|&n| (1..=4).contains(&n)), "pages of at most 4: {reads:?}");
    assert!(reads.len() >= 4, "several pages: {reads:?}");
    assert_eq!(reads[0], 1, "the first page assumes the largest messages: {reads:?}");
}
