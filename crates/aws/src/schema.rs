//! The table contract as code. In AWS the SAM template creates these tables; this creates the
//! same ones through the SDK for the adapter tests (against moto) and the local gateway in
//! Lambda mode. Keep both in step with `docs/aws-adapters.md`.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};
use dynamowave_core::{StoreError, StoreResult};
use tracing::info;

use crate::config::Tables;
use crate::connections::{NAME_INDEX, ROOM_INDEX};
use crate::messages::{ACTIVE_AT, ACTIVITY_INDEX, ROOMS_PK};
use crate::store::map_sdk_error;

/// TTL attribute of all three tables (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expiresAt";

fn build_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("building a table definition: {e}"))
}

fn key(name: &str, key_type: KeyType) -> StoreResult<KeySchemaElement> {
    KeySchemaElement::builder().attribute_name(name).key_type(key_type).build().map_err(build_err)
}

fn attr(name: &str, t: ScalarAttributeType) -> StoreResult<AttributeDefinition> {
    AttributeDefinition::builder().attribute_name(name).attribute_type(t).build().map_err(build_err)
}

fn gsi(name: &str, hash: &str) -> StoreResult<GlobalSecondaryIndex> {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(hash, KeyType::Hash)?)
        .key_schema(key("connectionId", KeyType::Range)?)
        .projection(Projection::builder().projection_type(ProjectionType::All).build())
        .build()
        .map_err(build_err)
}

/// A CreateTable of `name` with on-demand billing, as all three tables are.
fn on_demand_table(client: &Client, name: &str) -> CreateTableFluentBuilder {
    client.create_table().table_name(name).billing_mode(BillingMode::PayPerRequest)
}

/// Creates the ConnectionsTable (with `RoomIndex` and `NameIndex`), MessagesTable and
/// RoomsTable (with `ActivityIndex`, which `rooms` queries), on-demand billing, TTL on `expiresAt`. Tables that exist already are left as
/// they are, so this is safe to run at every start.
pub async fn create_tables(client: &Client, tables: &Tables) -> StoreResult<()> {
    use ScalarAttributeType::{N, S};
    let connections = on_demand_table(client, &tables.connections)
        .attribute_definitions(attr("connectionId", S)?)
        .attribute_definitions(attr("room", S)?)
        .attribute_definitions(attr("name", S)?)
        .key_schema(key("connectionId", KeyType::Hash)?)
        .global_secondary_indexes(gsi(ROOM_INDEX, "room")?)
        .global_secondary_indexes(gsi(NAME_INDEX, "name")?);
    let messages = on_demand_table(client, &tables.messages)
        .attribute_definitions(attr("room", S)?)
        .attribute_definitions(attr("seq", N)?)
        .key_schema(key("room", KeyType::Hash)?)
        .key_schema(key("seq", KeyType::Range)?);
    let rooms = on_demand_table(client, &tables.rooms)
        .attribute_definitions(attr("room", S)?)
        .attribute_definitions(attr(ROOMS_PK, S)?)
        .attribute_definitions(attr(ACTIVE_AT, N)?)
        .key_schema(key("room", KeyType::Hash)?)
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(ACTIVITY_INDEX)
                .key_schema(key(ROOMS_PK, KeyType::Hash)?)
                .key_schema(key(ACTIVE_AT, KeyType::Range)?)
                .projection(Projection::builder().projection_type(ProjectionType::All).build())
                .build()
                .map_err(build_err)?,
        );
    for (name, request) in [(&tables.connections, connections), (&tables.messages, messages), (&tables.rooms, rooms)] {
        match request.send().await {
            Ok(_) => info!(table = %name, "created table"),
            Err(e) if e.as_service_error().and_then(ProvideErrorMetadata::code) == Some("ResourceInUseException") => {
                info!(table = %name, "table exists");
                continue;
            }
            Err(e) => return Err(map_sdk_error("CreateTable", e)),
        }
        wait_active(client, name).await?;
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(TTL_ATTRIBUTE)
                    .enabled(true)
                    .build()
                    .map_err(build_err)?,
            )
            .send()
            .await
            .map_err(|e| map_sdk_error("UpdateTimeToLive", e))?;
    }
    Ok(())
}

/// Waits (up to about two minutes) for a new table to become ACTIVE; moto's are at once.
async fn wait_active(client: &Client, table: &str) -> StoreResult<()> {
    for _ in 0..120 {
        let out =
            client.describe_table().table_name(table).send().await.map_err(|e| map_sdk_error("DescribeTable", e))?;
        if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(StoreError::Unavailable(format!("table {table} did not become ACTIVE")))
}
