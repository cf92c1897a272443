//! Memory is bounded per connection, in bytes, and answers are never silent: black-box tests of
//! `dynamowave serve` with real WebSocket clients, some of which never read.
//!
//! - `history` of large messages is paged to fit one message, for everyone;
//! - `who` of a room too large for one message is paged with a cursor;
//! - text over the cap is refused with `text_too_long` and nothing is stored;
//! - readers that never read, each asking for a replay of large messages, do not make the server
//!   hold those replays (its RSS stays bounded), and everyone else is still served;
//! - a send queue over its byte limit, or its frame limit, is a slow consumer: closed with 1008,
//!   and the room's other members keep receiving everything.

use std::collections::HashSet;
use std::time::Duration;

use dynamowave_testkit::binary::{App, spawn_app};
use dynamowave_testkit::ws::{Client, wait_gone};
use serde_json::{Value, json};

/// Sends `body` as one message in frames of at most 25 KiB (API Gateway takes frames of 32 KiB
/// at most, messages of 128 KiB).
async fn send_fragmented(c: &mut Client, body: &str) {
    c.send_fragmented(body.as_bytes(), 25 * 1024).await;
}

/// A JSON client whose socket takes in only a few KiB: when it does not read, the server's
/// queue for it fills at once instead of the kernel's buffers.
async fn connect_small_buffer(app: &App) -> Client {
    Client::connect_with_recv_buffer(&app.url, true, 4096).await
}

/// The server's resident memory, bytes (`VmRSS` of its process).
fn rss(app: &App) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", app.child.id())).expect("/proc/PID/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// The seqs of a `history` answer, and its `more`.
fn page(v: &Value) -> (Vec<u64>, bool) {
    let seqs = v["messages"].as_array().expect("messages").iter().filter_map(|m| m["seq"].as_u64()).collect();
    (seqs, v["more"].as_bool().expect("more"))
}

/// Publishes `n` messages of `text` (numbered) to `room` without being in it, each acked.
async fn publish(sender: &mut Client, room: &str, n: usize, text: &str) {
    for i in 0..n {
        let body = json!({"action": "sendmessage", "room": room, "message": format!("{i} {text}"), "id": i});
        send_fragmented(sender, &body.to_string()).await;
        let ack = sender.recv_event("ack").await;
        assert_eq!(ack["seq"].as_u64(), Some(i as u64 + 1), "{ack}");
    }
}

#[tokio::test]
async fn two_large_messages_leave_history_readable_for_everyone() {
    let app = spawn_app(&[]);
    let mut sender = app.connect(true).await;
    publish(&mut sender, "big", 2, &"b".repeat(100 * 1024)).await;
    let mut readers = [app.connect(true).await, app.connect(true).await];
    for r in &mut readers {
        r.send(json!({"action": "history", "room": "big"})).await;
        let first = r.recv_event("history").await;
        assert_eq!(page(&first), (vec![2], true), "the newest message that fits, and a hint that there is more");
        r.send(json!({"action": "history", "room": "big", "before": 2})).await;
        let second = r.recv_event("history").await;
        assert_eq!(page(&second), (vec![1], false));
        assert_eq!(second["messages"][0]["text"].as_str().map(str::len), Some(100 * 1024 + 2));
    }
}

#[tokio::test]
async fn who_pages_a_room_too_large_for_one_message() {
    // 50 members of ~50 bytes each do not fit in one 2 KiB message.
    let app = spawn_app(&["--max-message-bytes", "2048"]);
    let mut members = Vec::new();
    for _ in 0..50 {
        members.push(app.connect(true).await);
    }
    let asker = &mut members[0];
    let mut seen = HashSet::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 50, "paging must end");
        let mut ask = json!({"action": "who"});
        if let Some(a) = &after {
            ask["after"] = json!(a);
        }
        asker.send(ask).await;
        let text = loop {
            let t = asker.recv_text().await;
            if serde_json::from_str::<Value>(&t).is_ok_and(|v| v["type"] == "members") {
                break t;
            }
        };
        assert!(text.len() <= 2048, "each page fits in one message: {} bytes", text.len());
        let v: Value = serde_json::from_str(&text).expect("JSON");
        for m in v["members"].as_array().expect("members") {
            assert!(seen.insert(m["connectionId"].as_str().expect("id").to_string()), "listed twice: {m}");
        }
        match v["next"].as_str() {
            Some(next) => {
                assert_eq!(v["truncated"], true);
                after = Some(next.to_string());
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 50, "everyone, across {pages} pages");
    assert!(pages > 1);
}

#[tokio::test]
async fn text_over_the_cap_is_refused_and_nothing_is_stored() {
    let app = spawn_app(&[]);
    let mut witness = app.connect(true).await;
    witness.send(json!({"action": "join", "room": "capped"})).await;
    witness.recv_event("joined").await;
    let mut sender = app.connect(true).await;
    // The default cap: the 128 KiB message limit less 1 KiB. This body fits in one message.
    let over = "o".repeat(127 * 1024 + 512);
    let body = json!({"action": "sendmessage", "room": "capped", "message": over, "id": "too-long"});
    send_fragmented(&mut sender, &body.to_string()).await;
    let err = sender.recv_event("error").await;
    assert_eq!((err["code"].clone(), err["id"].clone()), (json!("text_too_long"), json!("too-long")), "{err}");
    witness.expect_no_message(Duration::from_millis(500)).await;
    witness.send(json!({"action": "history"})).await;
    assert_eq!(page(&witness.recv_event("history").await), (vec![], false), "nothing stored");
    // At the cap: stored, as the room's first message (the refused one used no seq).
    let at = "a".repeat(127 * 1024);
    let body = json!({"action": "sendmessage", "room": "capped", "message": at, "id": "at-cap"});
    send_fragmented(&mut sender, &body.to_string()).await;
    assert_eq!(sender.recv_event("ack").await["seq"], 1);
    assert_eq!(witness.recv_event("message").await["seq"], 1);
}

#[tokio::test]
async fn readers_that_never_read_cannot_make_the_server_hold_their_replays() {
    // A small page cache, so that reading the log does not look like a leak.
    let app = spawn_app(&["--store-cache-mib", "8", "--connection-rate", "0"]);
    let mut sender = app.connect(true).await;
    // 200 messages of 100 KB: a replay of 20 MB for each reader who asks for all of it.
    publish(&mut sender, "archive", 200, &"r".repeat(100 * 1000)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = rss(&app);

    let mut readers = Vec::new();
    for _ in 0..6 {
        let mut r = connect_small_buffer(&app).await;
        let (id, _) = r.whoami().await;
        r.send(json!({"action": "join", "room": "archive", "since": 0})).await;
        readers.push((r, id));
    }
    // Meanwhile the others are served.
    let mut witness = app.connect(true).await;
    let mut peak = baseline;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(rss(&app));
    }
    witness.send(json!({"action": "ping"})).await;
    witness.recv_event("pong").await;
    witness.send(json!({"action": "history", "room": "archive", "limit": 1})).await;
    assert_eq!(page(&witness.recv_event("history").await), (vec![200], true));
    let growth = peak.saturating_sub(baseline);
    eprintln!("RSS: baseline {} MB, peak {} MB", baseline >> 20, peak >> 20);
    assert!(growth < 50 << 20, "six stalled replays of 20 MB must not be held: the server grew by {} MB", growth >> 20);
    // Each stalled reader ends as a slow consumer once the wait for it to read is over (reading
    // before would let its replay go on: it would no longer be slow).
    let app = &app;
    let codes = futures_util::future::join_all(readers.iter_mut().map(|(r, id)| async move {
        wait_gone(&app.addr, id, Duration::from_secs(20)).await;
        r.close_code(Duration::from_secs(20)).await
    }))
    .await;
    assert!(codes.iter().all(|c| *c == Some(1008)), "every stalled reader is closed 1008: {codes:?}");
    witness.send(json!({"action": "ping"})).await;
    witness.recv_event("pong").await;
}

#[tokio::test]
async fn a_send_queue_over_its_byte_limit_is_a_slow_consumer() {
    // The default limits: 4096 frames, 4 MiB. 300 messages of 30 KB are far fewer frames than
    // the frame limit but over twice the byte limit.
    let app = spawn_app(&["--connection-rate", "0"]);
    let slow = connect_small_buffer(&app).await;
    let code = flood_past_a_slow_reader(&app, slow, "flood", &"f".repeat(30 * 1000), 300).await;
    assert_eq!(code, Some(1008));
}

#[tokio::test]
async fn a_client_that_does_not_read_is_closed_1008_and_nobody_else_slows_down() {
    let app = spawn_app(&["--send-queue-frames", "16", "--connection-rate", "0"]);
    let slow = app.connect(true).await;
    // 400 messages of 30 KB: far more than the slow client's socket buffers and queue hold.
    let code = flood_past_a_slow_reader(&app, slow, "firehose", &"z".repeat(30 * 1024), 400).await;
    assert_eq!(code, Some(1008));
}

/// `slow` and a witness join `room`; a sender publishes `total` messages of `text` there, of
/// which the witness must get every one, in order, while `slow` reads nothing; returns the code
/// `slow` was closed with. The sender stays out of the room and asks for no acks: it reads
/// nothing either, and must not become a slow consumer itself. The slow client reads only once
/// the server has closed it: after what its buffers held, the server's close frame. (The server
/// flushes a closed connection for a few seconds only, so the slow client must not wait for the
/// whole flood to reach the witness first.)
async fn flood_past_a_slow_reader(app: &App, mut slow: Client, room: &str, text: &str, total: usize) -> Option<u16> {
    let (slow_id, _) = slow.whoami().await;
    let mut witness = app.connect(true).await;
    for c in [&mut slow, &mut witness] {
        c.send(json!({"action": "join", "room": room})).await;
        c.recv_event("joined").await;
    }
    let mut sender = app.connect(true).await;
    let (room, text) = (room.to_string(), text.to_string());
    let sending = tokio::spawn(async move {
        for i in 0..total {
            sender.send(json!({"action": "sendmessage", "room": room, "message": format!("{i} {text}")})).await;
        }
        sender
    });
    let witnessing = async {
        for seen in 0..total {
            let v = witness.recv_event("message").await;
            assert_eq!(v["seq"].as_u64(), Some(seen as u64 + 1), "the witness gets everything, in order");
        }
    };
    let closing = async {
        wait_gone(&app.addr, &slow_id, Duration::from_secs(60)).await;
        slow.close_code(Duration::from_secs(20)).await
    };
    let ((), code) = tokio::join!(witnessing, closing);
    let _sender = sending.await.expect("sender");
    code
}
