//! End to end through the real Lambda binaries: `dynamowave serve --handlers lambda` (the real
//! CLI binary) runs `connect`, `disconnect`, `sendmessage`, `default` (and `authorizer`) under its
//! local Lambda Runtime API, against DynamoDB Local (AWS's own, in which `serve` creates the
//! tables from the template it ships with), and real WebSocket clients chat through it.
//!
//! Prerequisites, which `scripts/test` provides: `cargo build --workspace --bins` (the tests look
//! for `dynamowave` and the Lambda binaries next to their own `deps/` directory, i.e. in
//! `$CARGO_TARGET_DIR/debug`), Java 17 and DynamoDB Local (installed under `DW_TOOLS_DIR` on
//! first use; one started per test, in memory).
//! A missing binary fails the test with the command that builds it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use dynamowave_aws::Tables;
use dynamowave_dynamodb_local::{DynamoDbLocal, Install, Options};
use dynamowave_testkit::binary::{self, App, Serve, bin_dir, require_bin, require_bin_in};
use dynamowave_testkit::moto;
use dynamowave_testkit::temp::tools_dir;
use dynamowave_testkit::ws::Client;
use serde_json::json;

/// The real `dynamowave serve --handlers lambda`, on its own three tables in DynamoDB Local.
struct LambdaApp {
    app: App,
    tables: Tables,
    ddb: aws_sdk_dynamodb::Client,
    // Dropped last: the server goes before its DynamoDB.
    local: DynamoDbLocal,
}

impl std::ops::Deref for LambdaApp {
    type Target = App;

    fn deref(&self) -> &App {
        &self.app
    }
}

impl LambdaApp {
    /// `dynamowave` and the functions from [`bin_dir`].
    async fn start(extra: &[&str]) -> LambdaApp {
        let dir = bin_dir();
        let server = require_bin_in(&dir, "dynamowave");
        for f in ["connect", "disconnect", "sendmessage", "default", "authorizer"] {
            require_bin_in(&dir, f);
        }
        let install =
            Install::find_or_fetch(&tools_dir(), &|line| eprintln!("{line}")).expect("DynamoDB Local installs");
        let local = DynamoDbLocal::start(&install, &Options::default()).await.expect("DynamoDB Local starts");
        let config = moto::sdk_config_at(local.endpoint(), None).await;
        let ddb = aws_sdk_dynamodb::Client::new(&config);
        // No tables yet: `serve` creates them, shaped as the shipped template shapes them.
        let prefix = moto::unique("lm");
        let tables = Tables {
            connections: format!("{prefix}-connections"),
            messages: format!("{prefix}-messages"),
            rooms: format!("{prefix}-rooms"),
        };
        let app = Serve::of(server)
            .args(["--handlers", "lambda"])
            .arg("--lambda-dir")
            .arg(&dir)
            .args(["--connections-table", &tables.connections])
            .args(["--messages-table", &tables.messages])
            .args(["--rooms-table", &tables.rooms])
            .args(["--dynamodb-endpoint", local.endpoint()])
            .args(extra)
            .env_remove("AWS_ENDPOINT_URL_DYNAMODB")
            .env_remove("AWS_ENDPOINT_URL")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .spawn();
        LambdaApp { app, tables, ddb, local }
    }

    /// The ConnectionsTable item of `id`, read consistently.
    async fn connection_item(&self, id: &str) -> Option<HashMap<String, AttributeValue>> {
        moto::get_item(&self.ddb, &self.tables.connections, &[("connectionId", AttributeValue::S(id.to_string()))])
            .await
    }

    /// Waits until `id`'s item is gone (or panics after `within`).
    async fn wait_item_gone(&self, id: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while self.connection_item(id).await.is_some() {
            assert!(
                Instant::now() < deadline,
                "connection {id} is still in {} after {within:?}",
                self.tables.connections
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The `connectionID` a plain client learns from `$default` (AWS's tutorial answer).
async fn plain_connection_id(c: &mut Client) -> String {
    c.default_route_info().await["connectionID"].as_str().expect("connectionID").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_json_chat_through_the_lambda_binaries() {
    let app = LambdaApp::start(&[]).await;
    // AWS's tutorial: plain framing, sendmessage reaches both (sender included) as bare text.
    let mut a = app.connect(false).await;
    let mut b = app.connect(false).await;
    a.send_text(r#"{"action": "sendmessage", "message": "hello, everyone!"}"#).await;
    assert_eq!(a.recv_text().await, "hello, everyone!");
    assert_eq!(b.recv_text().await, "hello, everyone!");
    b.send_text(r#"{"action": "sendmessage", "data": "hello world"}"#).await;
    assert_eq!(a.recv_text().await, "hello world");
    assert_eq!(b.recv_text().await, "hello world");
    // $default through the `default` function, which calls GetConnection on our @connections.
    let id = plain_connection_id(&mut a).await;
    assert_eq!(id.len(), 16, "API Gateway's id shape: {id}");
    let item = app.connection_item(&id).await.expect("the connection is in the ConnectionsTable");
    assert_eq!(item.get("framing"), Some(&AttributeValue::S("plain".into())));
    assert_eq!(item.get("room"), Some(&AttributeValue::S("lobby".into())));

    // JSON framing: message with seq, and the sender's ack; the plain clients get the bare text.
    let mut j = app.connect(true).await;
    let mut k = app.connect(true).await;
    j.send(json!({"action": "sendmessage", "message": "hi", "id": "m1"})).await;
    let m = k.recv_event("message").await;
    assert_eq!(
        (m["room"].as_str(), m["seq"].as_u64(), m["id"].as_str(), m["text"].as_str()),
        (Some("lobby"), Some(3), Some("m1"), Some("hi")),
        "{m}"
    );
    assert!(m["from"].as_str().expect("from").starts_with("anon-"), "{m}");
    let mine = j.recv_event("message").await;
    assert_eq!(mine["seq"], 3);
    let ack = j.recv_event("ack").await;
    assert_eq!((ack["id"].as_str(), ack["seq"].as_u64()), (Some("m1"), Some(3)), "{ack}");
    a.recv_exact("hi").await;
    b.recv_exact("hi").await;
    // A retry with the same id is not published again and gets the original seq.
    j.send(json!({"action": "sendmessage", "message": "hi", "id": "m1"})).await;
    let ack = j.recv_event("ack").await;
    assert_eq!((ack["seq"].as_u64(), ack["duplicate"].as_bool()), (Some(3), Some(true)), "{ack}");
    k.expect_no_message(Duration::from_millis(500)).await;
    // The message is in the MessagesTable, at seq 3.
    let key = [("room", AttributeValue::S("lobby".into())), ("seq", AttributeValue::N("3".into()))];
    let stored = moto::get_item(&app.ddb, &app.tables.messages, &key).await.expect("message 3 is stored");
    assert_eq!(stored.get("text"), Some(&AttributeValue::S("hi".into())));
}

/// History and `join` with `since` through the Lambda path.
/// A GSI as `(name, key schema, projection type)`.
type Index = (String, Vec<(String, String)>, String);

/// Key schema as `(attribute, HASH|RANGE)` pairs.
fn keys<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<(String, String)> {
    pairs.map(|(a, k)| (a.to_owned(), k.to_owned())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_mode_creates_the_templates_tables_in_an_empty_dynamodb_local_and_chats() {
    let app = LambdaApp::start(&[]).await;
    // Once it listens, the tables exist, each shaped as `infra/template.yaml` declares it.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml");
    let template = dynamowave_template::Template::from_file(&path).expect("infra/template.yaml reads");
    let model = template.resolve(&dynamowave_template::Options::default()).expect("infra/template.yaml resolves");
    let listed = app.ddb.list_tables().send().await.expect("ListTables").table_names.unwrap_or_default();
    let mut expected_names =
        vec![app.tables.connections.clone(), app.tables.messages.clone(), app.tables.rooms.clone()];
    expected_names.sort();
    let mut listed_sorted = listed.clone();
    listed_sorted.sort();
    assert_eq!(listed_sorted, expected_names, "DynamoDB Local at {}", app.local.endpoint());
    for (logical_id, name) in [
        ("ConnectionsTable", &app.tables.connections),
        ("MessagesTable", &app.tables.messages),
        ("RoomsTable", &app.tables.rooms),
    ] {
        let declared = &model.tables[logical_id];
        let described = app.ddb.describe_table().table_name(name).send().await.expect("DescribeTable");
        let table = described.table.expect("a table");
        let key_schema = keys(table.key_schema().iter().map(|k| (k.attribute_name(), k.key_type().as_str())));
        assert_eq!(
            key_schema,
            keys(declared.key_schema.iter().map(|k| (k.attribute_name.as_str(), k.key_type.as_str()))),
            "{logical_id}"
        );
        let mut indexes: Vec<Index> = table
            .global_secondary_indexes()
            .iter()
            .map(|g| {
                (
                    g.index_name().unwrap_or_default().to_owned(),
                    keys(g.key_schema().iter().map(|k| (k.attribute_name(), k.key_type().as_str()))),
                    g.projection().and_then(|p| p.projection_type()).map(|t| t.as_str().to_owned()).unwrap_or_default(),
                )
            })
            .collect();
        indexes.sort();
        let mut declared_indexes: Vec<Index> = declared
            .global_secondary_indexes
            .iter()
            .map(|g| {
                (
                    g.index_name.clone(),
                    keys(g.key_schema.iter().map(|k| (k.attribute_name.as_str(), k.key_type.as_str()))),
                    g.projection_type.clone(),
                )
            })
            .collect();
        declared_indexes.sort();
        assert_eq!(indexes, declared_indexes, "{logical_id}");
        let ttl = app.ddb.describe_time_to_live().table_name(name).send().await.expect("DescribeTimeToLive");
        let ttl = ttl.time_to_live_description.expect("a TTL description");
        assert_eq!(
            ttl.attribute_name().map(str::to_owned),
            declared.time_to_live_attribute.clone(),
            "{logical_id}: {ttl:?}"
        );
        assert_eq!(ttl.time_to_live_status().map(|s| s.as_str()), Some("ENABLED"), "{logical_id}");
    }
    // The connections GSIs are what the chat reads rooms and names through.
    assert!(model.tables["ConnectionsTable"].global_secondary_indexes.len() >= 2);

    // And the chat is served on them.
    let mut a = app.connect(true).await;
    let mut b = app.connect(true).await;
    a.send(json!({"action": "sendmessage", "message": "on DynamoDB Local", "id": "d1"})).await;
    let m = b.recv_event("message").await;
    assert_eq!((m["text"].as_str(), m["room"].as_str()), (Some("on DynamoDB Local"), Some("lobby")), "{m}");
    let ack = a.recv_event("ack").await;
    assert_eq!(ack["id"], "d1", "{ack}");
    let key = [("room", AttributeValue::S("lobby".into())), ("seq", AttributeValue::N(ack["seq"].to_string()))];
    assert!(moto::get_item(&app.ddb, &app.tables.messages, &key).await.is_some(), "the message is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_join_since_recover_through_lambda() {
    let app = LambdaApp::start(&[]).await;
    let mut a = app.connect(true).await;
    let mut b = app.connect(true).await;
    a.send(json!({"action": "join", "room": "ops"})).await;
    let joined = a.recv_event("joined").await;
    assert_eq!(joined["room"], "ops");
    let epoch = joined["epoch"].as_str().expect("epoch").to_string();
    for i in 1..=3 {
        a.send(json!({"action": "sendmessage", "message": format!("m{i}"), "id": format!("i{i}")})).await;
        assert_eq!(a.recv_event("message").await["seq"], i);
        assert_eq!(a.recv_event("ack").await["seq"], i);
    }
    b.expect_no_message(Duration::from_millis(300)).await; // b is in the lobby

    // History of a room b is not in.
    b.send(json!({"action": "history", "room": "ops", "limit": 10})).await;
    let h = b.recv_event("history").await;
    let mut seqs: Vec<(u64, String)> = h["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| (m["seq"].as_u64().expect("seq"), m["text"].as_str().expect("text").to_string()))
        .collect();
    seqs.sort();
    assert_eq!(seqs, vec![(1, "m1".into()), (2, "m2".into()), (3, "m3".into())], "{h}");
    // Paged: before 3, limit 1 → seq 2, and more.
    b.send(json!({"action": "history", "room": "ops", "before": 3, "limit": 1})).await;
    let h = b.recv_event("history").await;
    let page: Vec<u64> = h["messages"].as_array().expect("messages").iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!((page, h["more"].as_bool()), (vec![2], Some(true)), "{h}");

    // Join with since: the missed messages are replayed, then `joined` says recovered.
    b.send(json!({"action": "join", "room": "ops", "since": 1, "epoch": epoch})).await;
    let r1 = b.recv_event("message").await;
    let r2 = b.recv_event("message").await;
    assert_eq!((r1["seq"].as_u64(), r2["seq"].as_u64()), (Some(2), Some(3)));
    let joined = b.recv_event("joined").await;
    assert_eq!((joined["replayed"].as_u64(), joined["recovered"].as_bool()), (Some(2), Some(true)), "{joined}");
    // Now b is in ops and gets live messages.
    a.send(json!({"action": "sendmessage", "message": "live"})).await;
    let live = b.recv_event("message").await;
    assert_eq!((live["seq"].as_u64(), live["text"].as_str()), (Some(4), Some("live")));
    // A position from another epoch cannot be trusted.
    b.send(json!({"action": "join", "room": "ops", "since": 1, "epoch": "not-the-epoch"})).await;
    let joined = b.recv_event("joined").await;
    assert_eq!((joined["recovered"].as_bool(), joined["reason"].as_str()), (Some(false), Some("epoch_changed")));
}

/// A client whose TCP connection is reset (no close frame) gets its `$disconnect`: the
/// `disconnect` binary deletes its item and the room hears it left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_without_a_close_frame_is_cleaned_up() {
    let app = LambdaApp::start(&[]).await;
    let mut watcher = app.connect(true).await;
    let mut doomed = Client::connect_abortable(&app.url, true).await;
    let (doomed_id, _) = doomed.whoami().await;
    let (watcher_id, _) = watcher.whoami().await;
    assert!(app.connection_item(&doomed_id).await.is_some(), "the doomed connection is registered");
    // (`whoami` skipped the presence event of `doomed` joining.)

    drop(doomed); // SO_LINGER 0: the kernel sends RST, no close frame, no FIN.

    app.wait_item_gone(&doomed_id, Duration::from_secs(20)).await;
    let left = watcher.recv_event("presence").await;
    assert_eq!((left["event"].as_str(), left["connectionId"].as_str()), (Some("leave"), Some(doomed_id.as_str())));
    // The survivor is untouched and still chats.
    assert!(app.connection_item(&watcher_id).await.is_some());
    watcher.send(json!({"action": "sendmessage", "message": "anyone?"})).await;
    assert_eq!(watcher.recv_event("message").await["text"], "anyone?");
}

/// The 410 path: a ConnectionsTable item for a connection the gateway does not have (its
/// `$disconnect` was lost) sits in the room. The next `sendmessage` posts to it, gets 410 Gone
/// from `@connections`, and deletes that item — and only that one, never the sender's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_registry_item_is_deleted_on_410_and_the_sender_stays() {
    let app = LambdaApp::start(&[]).await;
    let mut sender = app.connect(true).await;
    let mut plain = app.connect(false).await;
    let (sender_id, _) = sender.whoami().await;
    let plain_id = plain_connection_id(&mut plain).await;

    let stale_id = "StaleConnId0Aa=";
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
    let expires = (now_ms / 1000 + 7200) as u64;
    app.ddb
        .put_item()
        .table_name(&app.tables.connections)
        .item("connectionId", AttributeValue::S(stale_id.into()))
        .item("connectedAt", AttributeValue::N(now_ms.to_string()))
        .item("sourceIp", AttributeValue::S("192.0.2.1".into()))
        .item("framing", AttributeValue::S("plain".into()))
        .item("name", AttributeValue::S("ghost".into()))
        .item("room", AttributeValue::S("lobby".into()))
        .item("expiresAt", AttributeValue::N(expires.to_string()))
        .send()
        .await
        .expect("PutItem the stale connection");
    assert!(app.connection_item(stale_id).await.is_some());

    sender.send(json!({"action": "sendmessage", "message": "who is still here?", "id": "s1"})).await;
    assert_eq!(sender.recv_event("message").await["text"], "who is still here?");
    assert_eq!(sender.recv_event("ack").await["seq"], 1);
    plain.recv_exact("who is still here?").await;

    app.wait_item_gone(stale_id, Duration::from_secs(10)).await;
    assert!(app.connection_item(&sender_id).await.is_some(), "the sender's item must stay");
    assert!(app.connection_item(&plain_id).await.is_some(), "the other live member's item must stay");
    // And the room still works for both.
    sender.send(json!({"action": "sendmessage", "message": "again"})).await;
    assert_eq!(sender.recv_event("message").await["seq"], 2);
    plain.recv_exact("again").await;
}

/// The JWT authorizer through the real `authorizer` binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorizer_binary_guards_connect() {
    const SECRET: &str = "lambda-mode-test-secret-0123456789abcdef";
    let app = LambdaApp::start(&["--jwt-secret", SECRET]).await;

    // No token: 401 on the upgrade.
    match Client::connect(&app.url, true).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 401),
        Err(e) => panic!("expected HTTP 401, got {e}"),
        Ok(_) => panic!("a connection without a token was accepted"),
    }
    // A token signed with another secret: 401 too.
    let forged = mint("not-the-secret-but-just-as-long-as-it", "mallory", "Mallory");
    match Client::connect(&format!("{}?token={forged}", app.url), true).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 401),
        Err(e) => panic!("expected HTTP 401, got {e}"),
        Ok(_) => panic!("a forged token was accepted"),
    }

    // A token minted by `dynamowave token`: connected, and named Alice.
    let token = mint(SECRET, "alice", "Alice");
    let mut alice = Client::connect(&format!("{}?token={token}", app.url), true).await.expect("Alice connects");
    let bob_token = mint(SECRET, "bob", "Bob");
    let mut bob = Client::connect(&format!("{}?token={bob_token}", app.url), true).await.expect("Bob connects");
    let (alice_id, name) = alice.whoami().await;
    assert_eq!(name, "Alice");
    alice.send(json!({"action": "sendmessage", "message": "hi, it's me"})).await;
    let m = bob.recv_event("message").await;
    assert_eq!((m["from"].as_str(), m["text"].as_str()), (Some("Alice"), Some("hi, it's me")), "{m}");
    let item = app.connection_item(&alice_id).await.expect("Alice's item");
    assert_eq!(item.get("principalId"), Some(&AttributeValue::S("alice".into())));
    assert_eq!(item.get("name"), Some(&AttributeValue::S("Alice".into())));
}

/// `dynamowave token --secret S --sub SUB --name NAME`.
fn mint(secret: &str, sub: &str, name: &str) -> String {
    binary::mint_token(secret, sub, &["--name", name])
}

// ---------------------------------------------------------------------------------------------
// Measurements for docs/BENCHMARKS.md (`## Lambda binaries`). Ignored: run them on purpose, on
// release builds, with the command in that document:
//
//   cargo build --release -p dynamowave -p dynamowave-lambda
//   cargo test --release -p dynamowave-aws --test lambda_mode -- --ignored --nocapture --test-threads 1 bench_
//
// Built with `--release`, the test binary lives in `<target>/release/deps`, so `bin_dir()` is
// `<target>/release` and the release binaries are the ones measured.
// ---------------------------------------------------------------------------------------------

fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    let pick = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    format!(
        "n={} min={:.1}ms p50={:.1}ms p90={:.1}ms max={:.1}ms mean={:.1}ms",
        v.len(),
        v[0].as_secs_f64() * 1e3,
        pick(0.5).as_secs_f64() * 1e3,
        pick(0.9).as_secs_f64() * 1e3,
        v[v.len() - 1].as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3
    )
}

/// Init time (process start to its first `/runtime/invocation/next`, as the host's stats record
/// it) of each release bootstrap, over `DW_BENCH_ROUNDS` (default 10) fresh hosts; and the first
/// (cold) and a warm invocation's round trip, with the warm-up event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run on release builds, see docs/BENCHMARKS.md"]
async fn bench_init_times() {
    use dynamowave_lambda_host::{LambdaFunction, LambdaHost};
    let dir = bin_dir();
    let rounds: usize = std::env::var("DW_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let names = ["connect", "disconnect", "sendmessage", "default", "authorizer", "warmer"];
    let env: Vec<(String, String)> = [
        ("CONNECTIONS_TABLE", "bench-connections"),
        ("MESSAGES_TABLE", "bench-messages"),
        ("ROOMS_TABLE", "bench-rooms"),
        ("JWT_SECRET", "bench-secret-bench-secret-bench-secret"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9"),
        ("RUST_LOG", "error"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec();
    let mut init: HashMap<&str, Vec<Duration>> = HashMap::new();
    let mut cold: HashMap<&str, Vec<Duration>> = HashMap::new();
    let mut warm: HashMap<&str, Vec<Duration>> = HashMap::new();
    for _ in 0..rounds {
        let functions = names
            .iter()
            .map(|n| {
                let mut f = LambdaFunction::new(*n, require_bin(n));
                f.env = env.clone();
                f.concurrency = 1;
                f
            })
            .collect();
        let host = LambdaHost::start(functions).await.expect("start the host");
        for name in names {
            let event = if name == "warmer" { json!({}) } else { json!({"warmup": true}) };
            let t = Instant::now();
            let answer = host.invoke_json(name, event.clone()).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            cold.entry(name).or_default().push(t.elapsed());
            if name != "warmer" {
                assert_eq!(answer, json!({"warm": true}), "{name}");
            }
            let t = Instant::now();
            host.invoke_json(name, event).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            warm.entry(name).or_default().push(t.elapsed());
        }
        let stats = host.stats();
        for name in names {
            let f = stats.function(name).expect("stats");
            assert_eq!(f.processes_started, 1, "{name}: one cold start per round");
            init.entry(name).or_default().extend(f.init_durations.iter().copied());
        }
        host.shutdown().await;
    }
    println!("bootstraps in {}", dir.display());
    for name in names {
        let size = std::fs::metadata(dir.join(name)).map(|m| m.len()).unwrap_or(0);
        println!("{name:<12} size={:.1} MiB", size as f64 / 1048576.0);
        println!("{name:<12} init (start → first /next): {}", summary(init.remove(name).unwrap_or_default()));
        println!("{name:<12} cold invoke (incl. init):    {}", summary(cold.remove(name).unwrap_or_default()));
        println!("{name:<12} warm invoke:                 {}", summary(warm.remove(name).unwrap_or_default()));
    }
}

/// `dynamowave_handler_seconds{route="sendmessage"}` sum and count from the gateway's /metrics.
async fn sendmessage_histogram(http: &reqwest::Client, addr: &str) -> (f64, u64) {
    let body = http.get(format!("http://{addr}/metrics")).send().await.expect("/metrics").text().await.expect("body");
    let mut sum = 0.0;
    let mut count = 0;
    for line in body.lines() {
        if let Some(v) = line.strip_prefix(r#"dynamowave_handler_seconds_sum{route="sendmessage"} "#) {
            sum = v.trim().parse().expect("sum");
        } else if let Some(v) = line.strip_prefix(r#"dynamowave_handler_seconds_count{route="sendmessage"} "#) {
            count = v.trim().parse().expect("count");
        }
    }
    (sum, count)
}

/// One `sendmessage` to a room of `members` connections in Lambda mode: the handler time of each
/// invocation (the gateway's histogram, read after every message: the delta of its sum is that
/// one invocation), and the time from the send to the last member's receipt.
async fn fanout_round(app: &LambdaApp, members: usize, messages: usize) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let http = reqwest::Client::new();
    let mut sender = app.connect(true).await;
    let room = format!("bench{members}");
    sender.send(json!({"action": "join", "room": room})).await;
    sender.recv_event("joined").await;
    // Receivers: plain framing (no presence traffic), joined to the room; each forwards the
    // index of every message it gets.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let started = Instant::now();
    let mut joined = 0;
    let mut pending = futures_util::stream::iter(0..members - 1)
        .map(|_| {
            let url = app.url.clone();
            let room = room.clone();
            async move {
                // On this small machine the local DynamoDB is the bottleneck: a throttled `$connect` (the
                // function's environments all busy) is retried, like a client would.
                let mut c = loop {
                    match Client::connect(&url, false).await {
                        Ok(c) => break c,
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                };
                loop {
                    c.send(json!({"action": "join", "room": room})).await;
                    // The chat actions answer with their JSON event under either framing; a
                    // throttled invocation answers an error frame.
                    let answer = c.recv_json().await;
                    if answer["type"] == "joined" {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                c
            }
        })
        .buffer_unordered(8);
    while let Some(mut c) = pending.next().await {
        joined += 1;
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = c.ws.next().await {
                if let Message::Text(t) = msg
                    && let Some(i) = t.strip_prefix("bench ").and_then(|i| i.parse().ok())
                {
                    let _ = tx.send(i);
                }
            }
        });
    }
    println!("room of {members}: {joined} receivers + 1 sender joined in {:.1}s", started.elapsed().as_secs_f64());
    let mut handler = Vec::new();
    let mut delivery = Vec::new();
    for i in 0..messages + 3 {
        let (sum0, count0) = sendmessage_histogram(&http, &app.addr).await;
        let t = Instant::now();
        sender
            .send(
                json!({"action": "sendmessage", "room": room, "message": format!("bench {i}"), "id": format!("b{i}")}),
            )
            .await;
        let mut got = 0;
        while got < members - 1 {
            let j = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.expect("deliveries").expect("open");
            assert_eq!(j, i, "messages are sent one at a time");
            got += 1;
        }
        let all_delivered = t.elapsed();
        let ack = sender.recv_event("ack").await;
        assert_eq!(ack["id"], format!("b{i}"));
        let (sum1, count1) = loop {
            let (s, c) = sendmessage_histogram(&http, &app.addr).await;
            if c > count0 {
                break (s, c);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(count1, count0 + 1, "one sendmessage invocation per message");
        if i >= 3 {
            // The first three warm the processes and connections up.
            handler.push(Duration::from_secs_f64(sum1 - sum0));
            delivery.push(all_delivered);
        }
    }
    println!("sendmessage to {members}: handler time (gateway histogram): {}", summary(handler));
    println!("sendmessage to {members}: send → last of {} receipts:     {}", members - 1, summary(delivery));
}

/// Per-invocation `sendmessage` time to 100 and 1,000 connections through the local
/// `@connections` endpoint, release binaries (`DW_BENCH_MESSAGES` messages each, default 20).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run on release builds, see docs/BENCHMARKS.md"]
async fn bench_sendmessage_fanout() {
    let messages: usize = std::env::var("DW_BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let app = LambdaApp::start(&["--lambda-concurrency", "8"]).await;
    println!("server and bootstraps in {}", bin_dir().display());
    for members in [100, 1000] {
        fanout_round(&app, members, messages).await;
    }
}
