//! The embedded store's rooms: the shared room-index and claims contracts, and empty rooms
//! leaving both the disk and memory once they expire.

use std::sync::Arc;
use std::time::Duration;

use dynamowave_core::contract::{room_claims_contract, room_index_contract};
use dynamowave_core::model::NewMessage;
use dynamowave_core::store::RoomClaim;
use dynamowave_core::{ConnectionRecord, ConnectionStore, Framing, MessageLog};
use dynamowave_store_redb::{RedbSettings, RedbStore};
use dynamowave_testkit::temp::TempPath;

const TTL: Duration = Duration::from_secs(1);

fn open(dir: &TempPath) -> RedbStore {
    RedbStore::open(dir.path(), RedbSettings { empty_room_ttl: TTL, ..RedbSettings::default() }).expect("open store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_room_contracts() {
    let dir = TempPath::new("dw-redb-rooms");
    let store = Arc::new(open(&dir));
    room_index_contract(store.clone(), TTL).await;
    room_claims_contract(store.clone()).await;
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_empty_rooms_leave_the_disk_and_memory() {
    let dir = TempPath::new("dw-redb-rooms");
    let store = Arc::new(open(&dir));
    let connection = ConnectionRecord {
        connection_id: "sitter".into(),
        connected_at: 1,
        source_ip: "127.0.0.1".into(),
        user_agent: None,
        framing: Framing::Json,
        name: "sitter".into(),
        principal_id: None,
        room: Some("occupied".into()),
        expires_at: 2,
    };
    store.put_connection(&connection).await.expect("put");
    store.room_state("occupied").await.expect("an empty room somebody is in");
    let message = NewMessage {
        room: "history".into(),
        id: None,
        from: "a".into(),
        publisher: "a".into(),
        text: "kept".into(),
        ts: chrono::Utc::now().timestamp_millis(),
    };
    store.append(message).await.expect("a room with history");
    // Many writers at once, so the writer commits them in large groups.
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in (t..10_000).step_by(64) {
                    let room = format!("spam-{n}");
                    store.room_state(&room).await.expect("room_state");
                    // A post into a room nobody is in reads its recipients.
                    assert!(store.recipients(&room, 100).await.expect("recipients").is_empty());
                    if t < 8 && n < 512 {
                        let claim = store.claim_room(&format!("c{t}"), &room, 1000, 0).await.expect("claim");
                        assert_eq!(claim, RoomClaim::Added);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(store.room_rows().expect("rows"), (10_002, 10_002), "every room and its activity key on disk");
    let (cached, with_members, claims) = store.memory_entries();
    assert_eq!((cached, with_members, claims), (0, 1, 8), "no recipient list cached for rooms nobody is in");

    tokio::time::sleep(TTL + Duration::from_millis(500)).await;
    assert_eq!(store.list_rooms(20_000).await.expect("list").len(), 2, "lapsed rooms are not listed at once");
    let report = store.run_maintenance().await.expect("maintenance");
    assert_eq!(report.rooms_expired, 10_000, "the empty rooms nobody is in expire");
    assert_eq!(store.room_rows().expect("rows"), (2, 2), "the occupied room and the one with history stay");
    for t in 0..8 {
        store.release_rooms(&format!("c{t}")).await.expect("release");
    }
    assert_eq!(store.memory_entries(), (0, 1, 0), "claims go at disconnect");
    let mut names: Vec<String> = store.list_rooms(100).await.expect("list").into_iter().map(|r| r.room).collect();
    names.sort();
    assert_eq!(names, vec!["history".to_string(), "occupied".to_string()]);

    // The index is derived: rebuilt at open, in the same order.
    store.close().await.expect("close");
    drop(store);
    let store = open(&dir);
    assert_eq!(store.room_rows().expect("rows"), (2, 2), "the index rebuilt at open");
    // The connection did not survive the restart: nobody is in `occupied` now, and it lapsed.
    assert_eq!(store.run_maintenance().await.expect("maintenance").rooms_expired, 1);
    assert_eq!(store.room_rows().expect("rows"), (1, 1));
    assert_eq!(store.list_rooms(10).await.expect("list")[0].room, "history");
    store.close().await.expect("close");
}
