//! [`ConnectionStore`] on the ConnectionsTable (HASH `connectionId`; GSIs `RoomIndex` and
//! `NameIndex`, both projecting ALL so a fan-out page carries each member's framing without a
//! second read).

use std::collections::BTreeSet;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, ReturnValue, WriteRequest};
use dynamowave_core::model::Page;
use dynamowave_core::{ConnectionRecord, ConnectionStore, Framing, StoreError};
use tracing::{debug, warn};

use crate::store::{DynamoDbStore, Item, get_n, get_s, map_sdk_error, n, opt_s, s};

pub(crate) const ROOM_INDEX: &str = "RoomIndex";
pub(crate) const NAME_INDEX: &str = "NameIndex";
/// BatchWriteItem's limit on requests per call.
const BATCH_WRITE_MAX: usize = 25;

fn to_item(r: &ConnectionRecord) -> Item {
    let mut item = Item::new();
    item.insert("connectionId".into(), s(&r.connection_id));
    item.insert("connectedAt".into(), n(r.connected_at));
    item.insert("sourceIp".into(), s(&r.source_ip));
    if let Some(ua) = &r.user_agent {
        item.insert("userAgent".into(), s(ua));
    }
    item.insert("framing".into(), s(framing_str(r.framing)));
    item.insert("name".into(), s(&r.name));
    if let Some(p) = &r.principal_id {
        item.insert("principalId".into(), s(p));
    }
    // A connection in no room has no `room` attribute, so it is absent from RoomIndex (a
    // sparse index) rather than in a pseudo-room.
    if let Some(room) = &r.room {
        item.insert("room".into(), s(room));
    }
    item.insert("expiresAt".into(), n(r.expires_at));
    item
}

fn framing_str(f: Framing) -> &'static str {
    match f {
        Framing::Plain => "plain",
        Framing::Json => "json",
    }
}

fn from_item(item: &Item) -> Result<ConnectionRecord, StoreError> {
    let framing = match get_s(item, "framing")?.as_str() {
        "plain" => Framing::Plain,
        "json" => Framing::Json,
        other => return Err(StoreError::Corrupt(format!("unknown framing {other:?}"))),
    };
    Ok(ConnectionRecord {
        connection_id: get_s(item, "connectionId")?,
        connected_at: get_n(item, "connectedAt")?,
        source_ip: get_s(item, "sourceIp")?,
        user_agent: opt_s(item, "userAgent")?,
        framing,
        name: get_s(item, "name")?,
        principal_id: opt_s(item, "principalId")?,
        room: opt_s(item, "room")?,
        expires_at: get_n(item, "expiresAt")?,
    })
}

fn page_limit(page_size: usize) -> i32 {
    i32::try_from(page_size.max(1)).unwrap_or(i32::MAX)
}

impl DynamoDbStore {
    fn key(connection_id: &str) -> Item {
        Item::from([("connectionId".to_string(), s(connection_id))])
    }

    /// One BatchWriteItem chunk (at most 25 deletes), resubmitting `UnprocessedItems` with
    /// backoff until none are left or the attempts run out.
    async fn delete_chunk(&self, ids: &[&String]) -> Result<(), StoreError> {
        let mut pending: Vec<WriteRequest> = Vec::with_capacity(ids.len());
        for id in ids {
            let delete = DeleteRequest::builder()
                .set_key(Some(Self::key(id)))
                .build()
                .map_err(|e| StoreError::Unavailable(format!("building a delete request: {e}")))?;
            pending.push(WriteRequest::builder().delete_request(delete).build());
        }
        for attempt in 0..self.settings.batch_max_attempts {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.tables.connections, std::mem::take(&mut pending))
                .send()
                .await
                .map_err(|e| map_sdk_error("BatchWriteItem", e))?;
            pending = out.unprocessed_items.and_then(|mut m| m.remove(&self.tables.connections)).unwrap_or_default();
            if pending.is_empty() {
                return Ok(());
            }
            let delay = self.settings.backoff(attempt);
            debug!(unprocessed = pending.len(), attempt, ?delay, "BatchWriteItem left unprocessed items; retrying");
            tokio::time::sleep(delay).await;
        }
        warn!(unprocessed = pending.len(), "BatchWriteItem still had unprocessed items after every attempt");
        Err(StoreError::Throttled(format!(
            "BatchWriteItem: {} deletes still unprocessed after {} attempts",
            pending.len(),
            self.settings.batch_max_attempts
        )))
    }

    /// An UpdateItem on an existing connection (`NotFound` otherwise), returning the item as
    /// `returning` says.
    async fn update_existing(
        &self,
        connection_id: &str,
        update: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
        returning: ReturnValue,
    ) -> Result<ConnectionRecord, StoreError> {
        let out = update
            .table_name(&self.tables.connections)
            .set_key(Some(Self::key(connection_id)))
            .condition_expression("attribute_exists(connectionId)")
            .return_values(returning)
            .send()
            .await
            .map_err(|e| match map_sdk_error("UpdateItem", e) {
                StoreError::Conflict(_) => StoreError::NotFound(format!("connection {connection_id}")),
                other => other,
            })?;
        let item = out.attributes.ok_or_else(|| StoreError::Corrupt("UpdateItem returned no attributes".into()))?;
        from_item(&item)
    }
}

#[async_trait]
impl ConnectionStore for DynamoDbStore {
    async fn put_connection(&self, record: &ConnectionRecord) -> Result<(), StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.tables.connections)
            .set_item(Some(to_item(record)))
            .condition_expression("attribute_not_exists(connectionId)")
            .send()
            .await;
        match put.map_err(|e| map_sdk_error("PutItem", e)) {
            Ok(_) => Ok(()),
            // The SDK retries a PutItem whose response was lost (attempt timeout, connection
            // reset); if the first attempt did land, the retry fails its own condition. The
            // item then is exactly this record: that is success, not a taken id.
            Err(StoreError::Conflict(detail)) => match self.get_connection(&record.connection_id).await? {
                Some(existing) if existing == *record => {
                    debug!(connection_id = %record.connection_id, "PutItem retry found its own earlier write");
                    Ok(())
                }
                _ => Err(StoreError::Conflict(detail)),
            },
            Err(other) => Err(other),
        }
    }

    async fn get_connection(&self, connection_id: &str) -> Result<Option<ConnectionRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.connections)
            .set_key(Some(Self::key(connection_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| map_sdk_error("GetItem", e))?;
        out.item.as_ref().map(from_item).transpose()
    }

    async fn delete_connection(&self, connection_id: &str) -> Result<Option<ConnectionRecord>, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.tables.connections)
            .set_key(Some(Self::key(connection_id)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| map_sdk_error("DeleteItem", e))?;
        // DynamoDB omits `Attributes` when nothing was deleted; moto sends an empty map.
        out.attributes.as_ref().filter(|a| !a.is_empty()).map(from_item).transpose()
    }

    async fn delete_connections(&self, connection_ids: &[String]) -> Result<(), StoreError> {
        // BatchWriteItem rejects a request that names the same key twice.
        let unique: BTreeSet<&String> = connection_ids.iter().collect();
        let unique: Vec<&String> = unique.into_iter().collect();
        for chunk in unique.chunks(BATCH_WRITE_MAX) {
            self.delete_chunk(chunk).await?;
        }
        Ok(())
    }

    async fn set_room(&self, connection_id: &str, room: Option<&str>) -> Result<ConnectionRecord, StoreError> {
        let update = match room {
            Some(room) => self
                .client
                .update_item()
                .update_expression("SET #room = :room")
                .expression_attribute_names("#room", "room")
                .expression_attribute_values(":room", s(room)),
            None => {
                self.client.update_item().update_expression("REMOVE #room").expression_attribute_names("#room", "room")
            }
        };
        self.update_existing(connection_id, update, ReturnValue::AllOld).await
    }

    async fn set_name(&self, connection_id: &str, name: &str) -> Result<ConnectionRecord, StoreError> {
        let update = self
            .client
            .update_item()
            .update_expression("SET #name = :name")
            .expression_attribute_names("#name", "name")
            .expression_attribute_values(":name", s(name));
        self.update_existing(connection_id, update, ReturnValue::AllNew).await
    }

    async fn members(
        &self,
        room: &str,
        next: Option<&str>,
        page_size: usize,
    ) -> Result<Page<ConnectionRecord>, StoreError> {
        // The continuation token is the last key's connectionId: with the room, it is the whole
        // of RoomIndex's LastEvaluatedKey (index key plus table key).
        let start = next.map(|id| Item::from([("room".to_string(), s(room)), ("connectionId".to_string(), s(id))]));
        let out = self
            .client
            .query()
            .table_name(&self.tables.connections)
            .index_name(ROOM_INDEX)
            .key_condition_expression("#room = :room")
            .expression_attribute_names("#room", "room")
            .expression_attribute_values(":room", s(room))
            .set_exclusive_start_key(start)
            .limit(page_limit(page_size))
            .send()
            .await
            .map_err(|e| map_sdk_error("Query RoomIndex", e))?;
        let items = out.items().iter().map(from_item).collect::<Result<Vec<_>, _>>()?;
        let next = match out.last_evaluated_key.as_ref().and_then(|k| k.get("connectionId")) {
            Some(AttributeValue::S(id)) => Some(id.clone()),
            Some(other) => return Err(StoreError::Corrupt(format!("LastEvaluatedKey connectionId is {other:?}"))),
            None => None,
        };
        Ok(Page { items, next })
    }

    async fn connections_named(&self, name: &str) -> Result<Vec<ConnectionRecord>, StoreError> {
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.tables.connections)
                .index_name(NAME_INDEX)
                .key_condition_expression("#name = :name")
                .expression_attribute_names("#name", "name")
                .expression_attribute_values(":name", s(name))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| map_sdk_error("Query NameIndex", e))?;
            for item in out.items() {
                found.push(from_item(item)?);
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(found);
            }
        }
    }
}
