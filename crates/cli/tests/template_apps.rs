//! Apps that are not ours, run unmodified by `dynamowave serve --template`: the fixtures under
//! tests/fixtures/apps (a Node.js chat on the AWS SDK v3 and a Python one on boto3, each with its
//! own SAM template), with real WebSocket clients and AWS's own DynamoDB (DynamoDB Local).
//!
//! Each app is chatted with by three clients in one room (every message reaches every member, in
//! the order sent; a client in another room hears nothing), then one client is dropped without a
//! close frame and its row is put back in the app's table as a stale one: the next message still
//! reaches the two others, the sender gets no error, and the app's 410 path (PostToConnection →
//! GoneException → DeleteItem) removes the row.
//!
//! Needs Java 17+, Node.js 20 and Python 3 with the runtimes `serve --template` manages; DynamoDB
//! Local is installed once into `DW_TOOLS_DIR` (else the system temp dir's `dw-tools`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dynamowave_dynamodb_local::{DynamoDbLocal, Install, LocalDynamoDb, Options};
use dynamowave_testkit::binary::{App, Serve, require_bin};
use dynamowave_testkit::temp::tools_dir;
use dynamowave_testkit::ws::Client;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// Cold starts of a Node or Python execution environment on a busy machine take seconds.
const SLOW: Duration = Duration::from_secs(30);

/// The repository's root, where a developer runs `dynamowave serve --template`.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The fixture's template, relative to the repository's root as a developer would type it (the
/// functions' `CodeUri`s are then relative paths twice over).
fn fixture(app: &str) -> String {
    let path = format!("tests/fixtures/apps/{app}/template.yaml");
    assert!(repo_root().join(&path).is_file(), "fixture template missing: {path}");
    path
}

/// DynamoDB Local for one app, and the app served from its template against it.
async fn serve(app: &str) -> (DynamoDbLocal, App) {
    let install = Install::find_or_fetch(&tools_dir(), &|line| eprintln!("{line}")).expect("DynamoDB Local installs");
    let ddb = DynamoDbLocal::start(&install, &Options::default()).await.expect("DynamoDB Local starts");
    let template = fixture(app);
    let served = Serve::of(require_bin("dynamowave"))
        .current_dir(repo_root())
        .args(["--template", &template, "--dynamodb-endpoint", ddb.endpoint()])
        .spawn();
    (ddb, served)
}

/// The app's one table (its template declares one), as `serve --template` named it.
async fn table_name(db: &LocalDynamoDb) -> String {
    let (status, body) = db.call("ListTables", &json!({})).await.expect("ListTables answers");
    assert_eq!(status, 200, "ListTables: {body}");
    let names: Vec<String> = body["TableNames"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    assert_eq!(names.len(), 1, "the template declares one table; DynamoDB Local has {names:?}");
    names[0].clone()
}

/// The connection ids the app's table holds for `room`.
async fn members(db: &LocalDynamoDb, table: &str, room: &str) -> BTreeSet<String> {
    let (status, body) = db
        .call(
            "Scan",
            &json!({
                "TableName": table,
                "FilterExpression": "room = :r",
                "ExpressionAttributeValues": { ":r": { "S": room } },
                "ConsistentRead": true,
            }),
        )
        .await
        .expect("Scan answers");
    assert_eq!(status, 200, "Scan {table}: {body}");
    body["Items"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["connectionId"]["S"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Waits until `room`'s members in the table are `want`.
async fn wait_members(db: &LocalDynamoDb, table: &str, room: &str, want: &BTreeSet<String>, why: &str) {
    let deadline = Instant::now() + SLOW;
    loop {
        let got = members(db, table, room).await;
        if &got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{why}: room {room} has {got:?}, expected {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Connects to `room` and returns the client with the connection id the app stored for it.
async fn join(app: &App, db: &LocalDynamoDb, table: &str, room: &str) -> (Client, String) {
    let before = members(db, table, room).await;
    let url = format!("{}?room={room}", app.url);
    let client = tokio::time::timeout(SLOW, Client::connect(&url, false))
        .await
        .expect("connect within the cold start")
        .expect("the app accepts the connection");
    // $connect runs before the upgrade completes: the row is there now.
    let after = members(db, table, room).await;
    let new: Vec<String> = after.difference(&before).cloned().collect();
    assert_eq!(new.len(), 1, "one new row for the new connection in room {room}: {before:?} -> {after:?}");
    (client, new[0].clone())
}

/// The next text frame, skipping pings and pongs.
async fn recv(client: &mut Client, who: &str) -> String {
    loop {
        let frame = tokio::time::timeout(SLOW, client.ws.next())
            .await
            .unwrap_or_else(|_| panic!("{who}: no frame within {SLOW:?}"));
        match frame {
            Some(Ok(Message::Text(text))) => return text.to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("{who}: expected a text frame, got {other:?}"),
        }
    }
}

/// Nothing but pings for `quiet`.
async fn silent(client: &mut Client, who: &str, quiet: Duration) {
    let deadline = tokio::time::Instant::now() + quiet;
    loop {
        match tokio::time::timeout_at(deadline, client.ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(other) => panic!("{who}: expected silence, got {other:?}"),
        }
    }
}

async fn say(client: &mut Client, data: &str) {
    let frame = json!({ "action": "sendmessage", "data": data }).to_string();
    client.ws.send(Message::text(frame)).await.expect("send");
}

/// The whole scenario for one fixture app.
async fn chat_in_a_room_and_survive_a_dead_client(app_name: &str) {
    let (ddb, app) = serve(app_name).await;
    let db = LocalDynamoDb::new(ddb.endpoint());
    let table = table_name(&db).await;

    let (mut alice, alice_id) = join(&app, &db, &table, "r1").await;
    let (mut bob, bob_id) = join(&app, &db, &table, "r1").await;
    let (mut carol, carol_id) = join(&app, &db, &table, "r1").await;
    let (mut outsider, _) = join(&app, &db, &table, "r2").await;

    // Each message is sent once the previous one reached everyone: then every member must see
    // them all in the order sent, whoever sent them.
    let mut sent: Vec<String> = Vec::new();
    let mut seen: [Vec<String>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..6 {
        let data = format!("{app_name} message {round} from {}", ["alice", "bob", "carol"][round % 3]);
        match round % 3 {
            0 => say(&mut alice, &data).await,
            1 => say(&mut bob, &data).await,
            _ => say(&mut carol, &data).await,
        }
        sent.push(data);
        seen[0].push(recv(&mut alice, "alice").await);
        seen[1].push(recv(&mut bob, "bob").await);
        seen[2].push(recv(&mut carol, "carol").await);
    }
    for (who, got) in ["alice", "bob", "carol"].iter().zip(&seen) {
        assert_eq!(got, &sent, "{who} got every message of room r1, in order");
    }
    silent(&mut outsider, "the client in room r2", Duration::from_millis(500)).await;

    // Carol's TCP connection goes away without a close frame.
    drop(carol);
    let all: BTreeSet<String> = [alice_id.clone(), bob_id.clone(), carol_id.clone()].into();
    let two: BTreeSet<String> = [alice_id.clone(), bob_id.clone()].into();
    // The gateway notices the dropped socket and runs $disconnect, which deletes carol's row; the
    // row is then put back, as when a $disconnect is late or lost, so that the next message meets
    // a connection that is gone.
    wait_members(&db, &table, "r1", &two, "$disconnect after the dropped socket").await;
    let (status, body) = db
        .call(
            "PutItem",
            &json!({
                "TableName": table,
                "Item": { "connectionId": { "S": carol_id }, "room": { "S": "r1" } },
            }),
        )
        .await
        .expect("PutItem answers");
    assert_eq!(status, 200, "putting the stale row back: {body}");
    assert_eq!(members(&db, &table, "r1").await, all);

    let last = format!("{app_name} after carol left");
    say(&mut alice, &last).await;
    assert_eq!(recv(&mut alice, "alice").await, last, "the sender gets its own message, not an error");
    assert_eq!(recv(&mut bob, "bob").await, last, "bob gets the message past the dead connection");
    // PostToConnection to carol answered 410 GoneException; the app deleted her row.
    wait_members(&db, &table, "r1", &two, "the 410 path deleting the stale connection").await;
    silent(&mut alice, "alice", Duration::from_millis(500)).await;
    silent(&mut bob, "bob", Duration::from_millis(500)).await;
    silent(&mut outsider, "the client in room r2", Duration::from_millis(100)).await;

    // A closed connection leaves the table through $disconnect.
    alice.ws.close(None).await.expect("close");
    let only_bob: BTreeSet<String> = [bob_id].into();
    wait_members(&db, &table, "r1", &only_bob, "$disconnect after a close frame").await;
    drop(app);
    ddb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_chat_runs_unmodified_from_its_template() {
    chat_in_a_room_and_survive_a_dead_client("node-chat").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_chat_runs_unmodified_from_its_template() {
    chat_in_a_room_and_survive_a_dead_client("python-chat").await;
}

/// The fixtures read as their users wrote them: what the test above relies on is in the source,
/// not added for it.
#[test]
fn the_fixtures_are_written_as_the_samples_are() {
    let read = |p: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/apps").join(p);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let node = read("node-chat/sendmessage/app.mjs");
    assert!(node.contains("https://${event.requestContext.domainName}/${event.requestContext.stage}"));
    assert!(node.contains("process.env.IS_OFFLINE"));
    assert!(node.contains("@aws-sdk/client-apigatewaymanagementapi"));
    let python = read("python-chat/sendmessage/app.py");
    assert!(python.contains(".execute-api.{os.environ['AWS_REGION']}.amazonaws.com/{ctx['stage']}"));
    assert!(python.contains("apigw.exceptions.GoneException"));
    for template in ["node-chat/template.yaml", "python-chat/template.yaml"] {
        let text = read(template);
        for needle in ["AWS::ApiGatewayV2::Api", "AWS::ApiGatewayV2::Route", "AWS::ApiGatewayV2::Integration"] {
            assert!(text.contains(needle), "{template} declares {needle}");
        }
        assert!(text.contains("AWS::Serverless::Function") && text.contains("AWS::DynamoDB::Table"));
    }
    assert!(!Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/apps/node-chat/node_modules").exists());
}
