//! Rooms cost something, against the real binary: a connection belongs to a bounded number of
//! rooms, creates them at a bounded rate, empty rooms expire, and `rooms` is paged.

use std::time::Duration;

use dynamowave_testkit::binary::spawn_app;
use dynamowave_testkit::ws::Client;
use serde_json::{Value, json};

async fn join(c: &mut Client, room: &str) -> Value {
    c.send(json!({"action": "join", "room": room})).await;
    c.recv_any(&["joined", "error"]).await
}

async fn post(c: &mut Client, room: &str, text: &str, id: &str) -> Value {
    c.send(json!({"action": "sendmessage", "room": room, "message": text, "id": id})).await;
    c.recv_any(&["ack", "error"]).await
}

/// Every room `rooms` lists, following `next` with pages of `limit`; checks each page's size.
async fn all_rooms(c: &mut Client, limit: usize) -> Vec<String> {
    let mut names = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..1000 {
        let mut ask = json!({"action": "rooms", "limit": limit});
        if let Some(n) = &next {
            ask["next"] = json!(n);
        }
        c.send(ask).await;
        let page = c.recv_event("rooms").await;
        let rooms = page["rooms"].as_array().expect("rooms is a list");
        assert!(rooms.len() <= limit, "a page of {} rooms for limit {limit}: {page}", rooms.len());
        names.extend(rooms.iter().map(|r| r["room"].as_str().expect("room name").to_string()));
        match page["next"].as_str() {
            Some(n) => next = Some(n.to_string()),
            None => return names,
        }
    }
    panic!("rooms paging never ended");
}

#[tokio::test]
async fn the_room_past_the_limit_is_refused() {
    let app = spawn_app(&["--max-rooms-per-connection", "3", "--room-create-rate", "0"]);
    let mut c = app.connect(true).await;
    for room in ["r1", "r2", "r3"] {
        assert_eq!(join(&mut c, room).await["type"], "joined", "room {room} of 3");
    }
    let refused = join(&mut c, "r4").await;
    assert_eq!(refused["code"], "too_many_rooms", "the 4th room is refused: {refused}");
    assert_eq!(refused["action"], "join");
    let refused = post(&mut c, "r5", "hi", "m1").await;
    assert_eq!(refused["code"], "too_many_rooms", "posting into a 4th room is refused too: {refused}");
    assert_eq!(refused["id"], "m1", "the refusal names the message");
    // Rooms it belongs to stay open to it, and the default room costs nothing.
    assert_eq!(join(&mut c, "r1").await["type"], "joined", "a room it belongs to");
    assert_eq!(post(&mut c, "r2", "still here", "m2").await["type"], "ack", "posting into a room it belongs to");
    assert_eq!(join(&mut c, "lobby").await["type"], "joined", "the default room");
    c.send(json!({"action": "whoami"})).await;
    assert_eq!(c.recv_event("identity").await["room"], "lobby", "the refused join moved nobody");
    // Another connection has its own count.
    let mut other = app.connect(true).await;
    assert_eq!(join(&mut other, "r4").await["type"], "joined", "the limit is per connection");
}

#[tokio::test]
async fn creating_rooms_faster_than_the_rate_is_refused() {
    let app = spawn_app(&["--room-create-rate", "1", "--room-create-burst", "2", "--max-rooms-per-connection", "0"]);
    let mut maker = app.connect(true).await;
    assert_eq!(join(&mut maker, "shared").await["type"], "joined", "another connection makes a room");
    let mut c = app.connect(true).await;
    assert_eq!(join(&mut c, "new-a").await["type"], "joined", "the burst: 1");
    assert_eq!(join(&mut c, "new-b").await["type"], "joined", "the burst: 2");
    let refused = join(&mut c, "new-c").await;
    assert_eq!(refused["code"], "room_rate", "a third creation within the minute: {refused}");
    let refused = post(&mut c, "new-d", "hello", "p1").await;
    assert_eq!(refused["code"], "room_rate", "creating by posting counts the same: {refused}");
    assert_eq!(join(&mut c, "shared").await["type"], "joined", "joining a room that exists creates nothing");
    assert_eq!(post(&mut c, "new-a", "still fine", "p2").await["type"], "ack", "rooms it made stay usable");
}

#[tokio::test]
async fn an_expired_empty_room_leaves_rooms_and_one_with_history_stays() {
    let app = spawn_app(&["--empty-room-ttl-secs", "1"]);
    let mut c = app.connect(true).await;
    assert_eq!(join(&mut c, "quiet").await["type"], "joined");
    assert_eq!(join(&mut c, "busy").await["type"], "joined");
    assert_eq!(post(&mut c, "busy", "kept", "k1").await["type"], "ack");
    assert_eq!(join(&mut c, "lobby").await["type"], "joined", "nobody is left in quiet or busy");
    let listed = all_rooms(&mut c, 100).await;
    assert!(listed.contains(&"quiet".to_string()), "a new empty room is listed: {listed:?}");
    assert!(listed.contains(&"busy".to_string()), "{listed:?}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let listed = all_rooms(&mut c, 100).await;
    assert!(!listed.contains(&"quiet".to_string()), "an empty room is gone after its TTL: {listed:?}");
    assert!(listed.contains(&"busy".to_string()), "a room with history stays: {listed:?}");
    c.send(json!({"action": "history", "room": "busy"})).await;
    let history = c.recv_event("history").await;
    assert_eq!(history["messages"][0]["text"], "kept", "and keeps its history");
}

#[tokio::test]
async fn rooms_is_paged_with_next_and_limit() {
    let app = spawn_app(&["--room-create-rate", "0", "--max-rooms-per-connection", "0", "--rooms-page-max", "3"]);
    let mut c = app.connect(true).await;
    let names: Vec<String> = (0..7).map(|n| format!("page-{n}")).collect();
    for (n, room) in names.iter().enumerate() {
        assert_eq!(post(&mut c, room, "hi", &format!("m{n}")).await["type"], "ack");
        // Distinct activity times, so the order is known.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let newest_first: Vec<String> = names.iter().rev().cloned().collect();
    for limit in [1, 2, 3] {
        let listed = all_rooms(&mut c, limit).await;
        let mine: Vec<String> = listed.into_iter().filter(|r| r.starts_with("page-")).collect();
        assert_eq!(mine, newest_first, "every room once, most recently active first, in pages of {limit}");
    }
    c.send(json!({"action": "rooms"})).await;
    let page = c.recv_event("rooms").await;
    assert_eq!(page["rooms"].as_array().map(Vec::len), Some(3), "--rooms-page-max caps a page: {page}");
    assert!(page["next"].is_string(), "and says where the next one starts: {page}");
    c.send(json!({"action": "rooms", "limit": 1000})).await;
    let page = c.recv_event("rooms").await;
    assert_eq!(page["rooms"].as_array().map(Vec::len), Some(3), "a larger limit is capped too: {page}");
    c.send(json!({"action": "rooms", "next": "not a cursor"})).await;
    let bad = c.recv_event("error").await;
    assert_eq!(bad["code"], "invalid_field", "a bad cursor is a clear error: {bad}");
}
