//! Crash safety: SIGKILL the server while clients publish, restart it on the same data dir, and
//! prove every acknowledged message is there exactly once, in a gap-free seq, the store opens
//! cleanly, and the connections of the dead process are gone.

use std::collections::HashMap;
use std::time::Duration;

use dynamowave_testkit::binary::{spawn_app, spawn_app_in};
use dynamowave_testkit::ws::Client;
use serde_json::json;

#[tokio::test]
async fn sigkill_while_publishing_loses_no_acknowledged_message() {
    let mut app = spawn_app(&["--connection-rate", "0"]);
    let publishers = 6;
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let url = app.url.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(&url, true).await.expect("connect");
            let room = format!("crash-{}", p % 2);
            c.send(json!({"action": "join", "room": room})).await;
            c.recv_event("joined").await;
            let mut acked: Vec<(String, u64)> = Vec::new();
            for i in 0..10_000 {
                let id = format!("p{p}-{i}");
                c.send(json!({"action": "sendmessage", "message": format!("m {id}"), "id": id})).await;
                // Wait for this message's ack (skipping the room's traffic); a dead server ends it.
                loop {
                    let next =
                        tokio::time::timeout(Duration::from_secs(3), futures_util::StreamExt::next(&mut c.ws)).await;
                    let Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) = next else {
                        return (room, acked);
                    };
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "ack" && v["id"] == id.as_str() {
                        acked.push((id.clone(), v["seq"].as_u64().unwrap()));
                        break;
                    }
                }
            }
            (room, acked)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL
    app.child.wait().unwrap();

    let mut acked_by_room: HashMap<String, Vec<(String, u64)>> = HashMap::new();
    for t in tasks {
        let (room, acked) = t.await.unwrap();
        acked_by_room.entry(room).or_default().extend(acked);
    }
    let total: usize = acked_by_room.values().map(Vec::len).sum();
    assert!(total > 20, "publishers got acks before the kill: {total}");

    // Restart on the same data dir: it opens cleanly.
    let app2 = spawn_app_in(app.take_data_dir(), &[]);
    let mut c = app2.connect(true).await;
    for (room, acked) in &acked_by_room {
        // Read the whole room back through `history`.
        let mut stored: Vec<(u64, Option<String>)> = Vec::new();
        let mut before: Option<u64> = None;
        loop {
            let mut q = json!({"action": "history", "room": room, "limit": 100});
            if let Some(b) = before {
                q["before"] = json!(b);
            }
            c.send(q).await;
            let h = c.recv_event("history").await;
            let msgs = h["messages"].as_array().unwrap().clone();
            for m in msgs.iter().rev() {
                stored.push((m["seq"].as_u64().unwrap(), m["id"].as_str().map(str::to_string)));
            }
            if !h["more"].as_bool().unwrap() || msgs.is_empty() {
                break;
            }
            before = msgs.first().and_then(|m| m["seq"].as_u64());
        }
        stored.sort();
        let seqs: Vec<u64> = stored.iter().map(|(s, _)| *s).collect();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "room {room}: seqs are gap-free from 1");
        for (id, seq) in acked {
            let matches: Vec<_> = stored.iter().filter(|(_, i)| i.as_deref() == Some(id.as_str())).collect();
            assert_eq!(matches.len(), 1, "acknowledged {id} stored exactly once");
            assert_eq!(matches[0].0, *seq, "{id} kept the seq it was acknowledged with");
        }
    }
    // The dead process's connections were purged at start: only ours is listed.
    c.send(json!({"action": "who", "room": "crash-0"})).await;
    let m = c.recv_event("members").await;
    assert_eq!(m["members"].as_array().unwrap().len(), 0, "{m}");
    c.send(json!({"action": "who"})).await;
    let m = c.recv_event("members").await;
    assert_eq!(m["members"].as_array().unwrap().len(), 1, "{m}");
}
