//! The RoomsTable's room index and room claims on moto: the shared contracts, and that
//! `rooms` reaches DynamoDB as Queries of the `ActivityIndex`, never a Scan (moto would allow a
//! Scan, so the requests are counted on their way, through the fault proxy).

mod common;
mod fault_proxy;

use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::Credentials;
use dynamowave_aws::{DynamoDbSettings, DynamoDbStore, Tables, schema};
use dynamowave_core::MessageLog;
use dynamowave_core::contract::{room_claims_contract, room_index_contract};
use dynamowave_core::model::NewMessage;
use fault_proxy::FaultProxy;

fn settings() -> DynamoDbSettings {
    DynamoDbSettings { empty_room_ttl_secs: 1, ..DynamoDbSettings::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn room_index_and_claims_pass_the_contracts() {
    let moto = common::moto();
    let config = common::sdk_config(&moto).await;
    let store = Arc::new(common::store(&config, settings()).await);
    room_index_contract(store.clone(), Duration::from_secs(1)).await;
    room_claims_contract(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_is_a_query_of_the_activity_index_never_a_scan() {
    let moto = common::moto();
    let proxy = FaultProxy::start(&moto.url).await;
    let via_proxy = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .endpoint_url(&proxy.url)
        .load()
        .await;
    let tables = Tables::with_prefix(&common::unique("rooms"));
    schema::create_tables(&Client::new(&common::sdk_config(&moto).await), &tables).await.expect("create tables");
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
