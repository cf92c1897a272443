//! The RoomsTable's room index and room claims on moto: the shared contracts, and that
//! `rooms` reaches DynamoDB as Queries of the `ActivityIndex`, never a Scan (moto would allow a
//! Scan, so the requests are counted on their way, through the fault proxy).

use std::sync::Arc;
use std::time::Duration;

use dynamowave_aws::{DynamoDbSettings, DynamoDbStore};
use dynamowave_core::MessageLog;
use dynamowave_core::contract::{room_claims_contract, room_index_contract};
use dynamowave_core::model::NewMessage;
use dynamowave_testkit::fault_proxy::FaultProxy;
use dynamowave_testkit::moto::{self, moto_store};

fn settings() -> DynamoDbSettings {
    DynamoDbSettings { empty_room_ttl_secs: 1, ..DynamoDbSettings::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn room_index_and_claims_pass_the_contracts() {
    let rig = moto_store(settings()).await;
    let store = Arc::new(rig.store);
    room_index_contract(store.clone(), Duration::from_secs(1)).await;
    room_claims_contract(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_is_a_query_of_the_activity_index_never_a_scan() {
    let moto = moto::moto();
    let proxy = FaultProxy::start(&moto.url).await;
    let via_proxy = moto::sdk_config_at(&proxy.url, None).await;
    let tables = moto::create_tables(&moto::sdk_config(&moto).await, "rooms").await;
    let store = DynamoDbStore::new(&via_proxy, tables, settings());
    for n in 0..25 {
        let message = NewMessage {
            room: format!("r{n:02}"),
            id: None,
            from: "a".into(),
            publisher: "a".into(),
            text: "hi".into(),
            ts: 1_900_000_000_000 + n,
        };
        store.append(message).await.expect("append");
    }
    proxy.reset_log();
    let mut pages = 0;
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let page = store.rooms_page(after.as_ref(), 10).await.expect("rooms_page");
        pages += 1;
        listed.extend(page.rooms.into_iter().map(|r| r.room));
        after = page.next;
        if after.is_none() {
            break;
        }
    }
    let expected: Vec<String> = (0..25).rev().map(|n| format!("r{n:02}")).collect();
    assert_eq!(listed, expected, "newest activity first, across pages");
    assert_eq!(pages, 3, "25 rooms in pages of 10");
    assert_eq!(proxy.count("Scan"), 0, "rooms must never Scan");
    assert!(proxy.count("Query") >= 3, "one Query (at least) per page: {:?}", proxy.seen());
    assert_eq!(proxy.seen().len(), proxy.count("Query"), "nothing but Queries: {:?}", proxy.seen());
}
