//! Point-in-time recovery through the command line: a room's history is deleted "by accident",
//! and `dynamowave restore` brings back the state as of a moment before.

use dynamowave_testkit::binary::{self, spawn_app, spawn_app_in};
use serde_json::json;

fn dynamowave(args: &[&str]) -> String {
    let out = binary::run(args);
    assert!(out.status.success(), "dynamowave {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn an_accidental_delete_is_undone_by_restore() {
    let mut app = spawn_app(&[]);
    let mut c = app.connect(true).await;
    c.send(json!({"action": "join", "room": "precious"})).await;
    c.recv_event("joined").await;
    for i in 1..=5 {
        c.send(json!({"action": "sendmessage", "message": format!("note {i}"), "id": format!("n{i}")})).await;
        c.recv_event("ack").await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let before_accident = chrono::Utc::now().to_rfc3339();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    drop(c);
    assert!(app.stop().success());
    let dir = app.data_dir().to_str().unwrap().to_string();

    let out = dynamowave(&["delete-history", "--data-dir", &dir, "--room", "precious"]);
    assert!(out.contains("deleted 5"), "{out}");

    let restored = tempfile::tempdir().unwrap();
    let into = restored.path().join("restored");
    dynamowave(&["restore", "--data-dir", &dir, "--to", &before_accident, "--into", into.to_str().unwrap()]);

    // The damaged store has lost the room's history…
    let damaged = spawn_app_in(app.take_data_dir(), &[]);
    let mut d = damaged.connect(true).await;
    d.send(json!({"action": "history", "room": "precious"})).await;
    assert_eq!(d.recv_event("history").await["messages"].as_array().unwrap().len(), 0);
    // …and the restored one has all of it, with its seqs.
    let target = tempfile::tempdir().unwrap();
    std::fs::remove_dir(target.path()).unwrap();
    std::fs::rename(&into, target.path()).unwrap();
    let good = spawn_app_in(target, &[]);
    let mut r = good.connect(true).await;
    r.send(json!({"action": "history", "room": "precious"})).await;
    let h = r.recv_event("history").await;
    let seqs: Vec<u64> = h["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5], "{h}");
    assert_eq!(h["messages"][4]["text"], "note 5");
    // A time outside the retention window is refused with a clear error.
    let out = binary::run(&["restore", "--data-dir", &dir, "--to", "2000-01-01T00:00:00Z", "--into", "/tmp/never-dw"]);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
}
