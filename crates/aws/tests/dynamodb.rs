//! DynamoDbStore against moto's server: core's contract suites, plus what is specific to
//! DynamoDB (batch chunks of 25, pagination across pages, the table contract itself).

use std::sync::Arc;

use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveStatus};
use dynamowave_aws::DynamoDbSettings;
use dynamowave_core::contract::{connection_store_contract, message_log_contract};
use dynamowave_core::model::NewMessage;
use dynamowave_core::{ConnectionRecord, ConnectionStore, Framing, MessageLog, StoreError};
use dynamowave_testkit::moto::{count, get_item, moto_store};

fn record(id: &str, room: Option<&str>) -> ConnectionRecord {
    ConnectionRecord {
        connection_id: id.to_string(),
        connected_at: 1_700_000_000_000,
        source_ip: "192.0.2.7".into(),
        user_agent: None,
        framing: Framing::Plain,
        name: format!("n-{id}"),
        principal_id: Some("user#1".into()),
        room: room.map(str::to_string),
        expires_at: 1_700_007_800,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connection_store_passes_the_contract() {
    let rig = moto_store(DynamoDbSettings::default()).await;
    connection_store_contract(Arc::new(rig.store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn message_log_passes_the_contract() {
    let rig = moto_store(DynamoDbSettings::default()).await;
    message_log_contract(Arc::new(rig.store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_specifics() {
    let rig = moto_store(DynamoDbSettings::default()).await;
    let store = &rig.store;
    let tables = store.tables().clone();

    // The table contract: keys, both GSIs with projection ALL, TTL on expiresAt.
    let described = store.client().describe_table().table_name(&tables.connections).send().await.expect("describe");
    let table = described.table().expect("table");
    let mut gsis: Vec<(String, Vec<String>)> = table
        .global_secondary_indexes()
        .iter()
        .map(|g| {
            (
                g.index_name().unwrap_or_default().to_string(),
                g.key_schema().iter().map(|k| k.attribute_name().to_string()).collect(),
            )
        })
        .collect();
    gsis.sort();
    assert_eq!(
        gsis,
        vec![
            ("NameIndex".to_string(), vec!["name".to_string(), "connectionId".to_string()]),
            ("RoomIndex".to_string(), vec!["room".to_string(), "connectionId".to_string()]),
        ]
    );
    for t in [&tables.connections, &tables.messages, &tables.rooms] {
        let ttl = store.client().describe_time_to_live().table_name(t).send().await.expect("ttl");
        let d = ttl.time_to_live_description().expect("ttl description");
        assert_eq!(d.attribute_name(), Some("expiresAt"), "TTL attribute of {t}");
        assert_eq!(d.time_to_live_status(), Some(&TimeToLiveStatus::Enabled), "TTL of {t}");
    }

    // A connection in no room has no `room` attribute (a sparse RoomIndex); optional fields
    // round-trip.
    let roomless = record("roomless", None);
    store.put_connection(&roomless).await.expect("put");
    let key = [("connectionId", AttributeValue::S("roomless".into()))];
    let item = get_item(store.client(), &tables.connections, &key).await.expect("item");
    assert!(!item.contains_key("room"), "no room attribute for a connection in no room: {item:?}");
    assert_eq!(item.get("expiresAt"), Some(&AttributeValue::N("1700007800".into())));
    assert_eq!(store.get_connection("roomless").await.expect("get"), Some(roomless));

    // Batch cleanup of more than 25 ids (two chunks and a bit), with duplicates and unknown ids.
    let ids: Vec<String> = (0..60).map(|i| format!("b{i:03}")).collect();
    for id in &ids {
        store.put_connection(&record(id, Some("big"))).await.expect("put");
    }
    assert_eq!(count(store.client(), &tables.connections).await, 61);
    // Fan-out pagination across many pages of a small page size.
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store.members("big", next.as_deref(), 7).await.expect("members");
        assert!(page.items.len() <= 7);
        pages += 1;
        seen.extend(page.items.into_iter().map(|c| c.connection_id));
        next = page.next;
        if next.is_none() {
            break;
        }
    }
    assert!(pages >= 9, "60 members in pages of 7 take at least 9 pages, took {pages}");
    seen.sort();
    assert_eq!(seen, ids, "every member exactly once across pages");

    let mut doomed: Vec<String> = ids[..55].to_vec();
    doomed.push(ids[0].clone());
    doomed.push("never-there".into());
    store.delete_connections(&doomed).await.expect("batch delete of 57 ids");
    assert_eq!(count(store.client(), &tables.connections).await, 6, "55 deleted, 5 + roomless left");
    for id in &ids[55..] {
        assert!(store.get_connection(id).await.expect("get").is_some(), "{id} was not in the batch");
    }

    // NotFound on updates of unknown ids, Conflict on a second put.
    assert!(matches!(store.set_name("ghost", "x").await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.put_connection(&record(&ids[59], None)).await, Err(StoreError::Conflict(_))));

    // Messages carry their TTL, and idempotency items live in the RoomsTable under their key.
    let ts = 1_800_000_000_000;
    let m = NewMessage {
        room: "ttl".into(),
        id: Some("k#1".into()),
        from: "a".into(),
        publisher: "p".into(),
        text: "t".into(),
        ts,
    };
    let first = store.append(m.clone()).await.expect("append");
    let again = store.append(m).await.expect("append again");
    assert!(again.duplicate && again.message == first.message);
    let key = [("room", AttributeValue::S("ttl".into())), ("seq", AttributeValue::N("1".into()))];
    let msg = get_item(store.client(), &tables.messages, &key).await;
    let expires: i64 = match msg.as_ref().and_then(|i| i.get("expiresAt")) {
        Some(AttributeValue::N(v)) => v.parse().expect("number"),
        other => panic!("message has no expiresAt: {other:?}"),
    };
    assert_eq!(expires, ts / 1000 + DynamoDbSettings::default().message_retention_secs);
    let idem = get_item(store.client(), &tables.rooms, &[("room", AttributeValue::S("idem#ttl#p#k%231".into()))]).await;
    assert_eq!(idem.as_ref().and_then(|i| i.get("seq")), Some(&AttributeValue::N("1".into())));
    let rooms = store.list_rooms(10).await.expect("list_rooms");
    assert_eq!(rooms.len(), 1, "idempotency items are not rooms: {rooms:?}");
}
