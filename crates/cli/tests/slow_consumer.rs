//! The slow-consumer policy: a client that does not read is disconnected with 1008 once its send
//! queue is full, and the room's other members keep receiving everything.

mod common;

use std::time::Duration;

use common::spawn_app;
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_client_that_does_not_read_is_closed_1008_and_nobody_else_slows_down() {
    let app = spawn_app(&["--send-queue-frames", "16", "--connection-rate", "0"]);
    let mut slow = app.connect(true).await;
    let mut witness = app.connect(true).await;
    let mut sender = app.connect(true).await;
    // The sender stays out of the room and asks for no acks: it reads nothing either, and must
    // not become a slow consumer itself.
    for c in [&mut slow, &mut witness] {
        c.send(json!({"action": "join", "room": "firehose"})).await;
        c.recv_event("joined").await;
    }
    // 400 messages of 30 KB: far more than the slow client's socket buffers and queue hold.
    let text = "z".repeat(30 * 1024);
    let total = 400;
    let sending = tokio::spawn(async move {
        for i in 0..total {
            sender.send(json!({"action": "sendmessage", "message": format!("{i} {text}"), "room": "firehose"})).await;
        }
        sender
    });
    let mut seen = 0;
    while seen < total {
        let v = witness.recv_event("message").await;
        assert_eq!(v["seq"].as_u64(), Some(seen as u64 + 1), "in order, nothing missing");
        seen += 1;
    }
    let _sender = sending.await.unwrap();
    // Now drain the slow client: after what its buffers held, the server's close frame, 1008.
    let code = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match slow.ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("the slow client was never closed");
    assert_eq!(code, Some(1008));
}
