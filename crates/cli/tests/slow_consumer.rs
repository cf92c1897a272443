//! The slow-consumer policy: a client that does not read is disconnected with 1008 once its send
//! queue is full, and the room's other members keep receiving everything.

use std::time::Duration;

use dynamowave_testkit::binary::spawn_app;
use dynamowave_testkit::ws::wait_gone;
use serde_json::json;

#[tokio::test]
async fn a_client_that_does_not_read_is_closed_1008_and_nobody_else_slows_down() {
    let app = spawn_app(&["--send-queue-frames", "16", "--connection-rate", "0"]);
    let mut slow = app.connect(true).await;
    let (slow_id, _) = slow.whoami().await;
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
    let witnessing = async {
        for seen in 0..total {
            let v = witness.recv_event("message").await;
            assert_eq!(v["seq"].as_u64(), Some(seen as u64 + 1), "in order, nothing missing");
        }
    };
    // The slow client reads only once the server has closed it: after what its buffers held, the
    // server's close frame, 1008. (The server flushes a closed connection for a few seconds only,
    // so the slow client must not wait for the whole flood to reach the witness first.)
    let closing = async {
        wait_gone(&app.addr, &slow_id, Duration::from_secs(60)).await;
        slow.close_code(Duration::from_secs(20)).await
    };
    let ((), code) = tokio::join!(witnessing, closing);
    let _sender = sending.await.unwrap();
    assert_eq!(code, Some(1008));
}
