//! [`ConnectionStore`] on the ConnectionsTable (HASH `connectionId`; GSIs `RoomIndex` and
//! `NameIndex`, both projecting ALL so a fan-out page carries each member's framing without a
//! second read), and display-name claims in the RoomsTable.
//!
//! # Name claims
//!
//! One item per held name, `room = "name#" + name_key` in the RoomsTable (room names cannot
//! contain `#`, and `list_rooms` skips items without an epoch): `claimOwner` (the
//! [`dynamowave_core::model::NameOwner`] key), `holders` (a string set of connection ids), `displayName`, `claimVersion`
//! and `expiresAt` (the TTL of the latest holder's connection). A claim is one conditional
//! UpdateItem: join the holders if the owner is the same or nobody holds it, else fail. So of
//! two connections racing for a name, one wins; nothing needs the `NameIndex` GSI.
//!
//! A put writes the connection first and claims after (a refused claim deletes the connection
//! again), and a rename claims the new name before it sets it, so a holder always has its
//! connection item. That lets a claim whose holders have all gone (deleted in a batch, or a
//! release that failed) be taken over: the next claimant checks each holder's item and, when
//! none is left of the claim's owner, replaces the claim, conditional on the `claimVersion` it
//! read.

use std::collections::BTreeSet;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, ReturnValue, WriteRequest};
use dynamowave_core::model::Page;
use dynamowave_core::names::name_key;
use dynamowave_core::{ConnectionRecord, ConnectionStore, Framing, StoreError, StoreResult};
use tracing::{debug, warn};

use crate::store::{DynamoDbStore, Item, get_n, get_s, map_sdk_error, n, opt_s, rooms_key, s};

pub(crate) const ROOM_INDEX: &str = "RoomIndex";
pub(crate) const NAME_INDEX: &str = "NameIndex";
/// BatchWriteItem's limit on requests per call.
const BATCH_WRITE_MAX: usize = 25;
/// The RoomsTable key prefix of name claims.
pub(crate) const CLAIM_PREFIX: &str = "name#";
/// Rounds of (join, take over) before a contended claim gives up as taken.
const CLAIM_ROUNDS: usize = 3;

/// A name claim as read back.
struct Claim {
    owner: String,
    holders: Vec<String>,
    version: String,
}

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

fn from_item(item: &Item) -> StoreResult<ConnectionRecord> {
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
    async fn delete_chunk(&self, ids: &[&String]) -> StoreResult<()> {
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
        update: UpdateItemFluentBuilder,
        returning: ReturnValue,
    ) -> StoreResult<ConnectionRecord> {
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

impl DynamoDbStore {
    fn claim_key(key: &str) -> Item {
        rooms_key(format!("{CLAIM_PREFIX}{key}"))
    }

    /// An UpdateItem of the claim on `key` with the names and values both ways of claiming it
    /// (joining, taking over) use: `#owner`, `#display`, `#exp`, `#holders`, `#version`, and
    /// `:owner`, `:display`, `:exp`, `:me` (this connection as a one-id set) and `:one`.
    fn claim_update(&self, key: &str, record: &ConnectionRecord, owner: &str) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.tables.rooms)
            .set_key(Some(Self::claim_key(key)))
            .expression_attribute_names("#owner", "claimOwner")
            .expression_attribute_names("#display", "displayName")
            .expression_attribute_names("#exp", "expiresAt")
            .expression_attribute_names("#holders", "holders")
            .expression_attribute_names("#version", "claimVersion")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":display", s(&record.name))
            .expression_attribute_values(":exp", n(record.expires_at))
            .expression_attribute_values(":me", AttributeValue::Ss(vec![record.connection_id.clone()]))
            .expression_attribute_values(":one", n(1))
    }

    /// Claims `key` for the owner of `record` (whose name has that key), adding it to the
    /// holders; `NameTaken` if another owner's connection holds it.
    async fn claim_name(&self, key: &str, record: &ConnectionRecord) -> StoreResult<()> {
        let owner = record.name_owner().as_key();
        for _ in 0..CLAIM_ROUNDS {
            let joined = self
                .claim_update(key, record, &owner)
                .update_expression(
                    "SET #owner = :owner, #display = :display, #exp = :exp ADD #holders :me, #version :one",
                )
                .condition_expression("attribute_not_exists(#holders) OR #owner = :owner")
                .send()
                .await;
            match joined.map_err(|e| map_sdk_error("UpdateItem name claim", e)) {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
            // Another owner's claim: taken, unless none of its holders is left.
            let Some(claim) = self.read_claim(key).await? else { continue };
            if let Some(holder) = self.live_holder(&claim).await? {
                return Err(StoreError::NameTaken(format!("the name key {key:?} is held by {holder}")));
            }
            let took = self
                .claim_update(key, record, &owner)
                .update_expression(
                    "SET #owner = :owner, #display = :display, #exp = :exp, #holders = :me ADD #version :one",
                )
                .condition_expression("#version = :seen")
                .expression_attribute_values(":seen", AttributeValue::N(claim.version.clone()))
                .send()
                .await;
            match took.map_err(|e| map_sdk_error("UpdateItem name takeover", e)) {
                Ok(_) => {
                    debug!(key, stale_owner = %claim.owner, "took over a name whose holders had all gone");
                    return Ok(());
                }
                Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::NameTaken(format!("the name key {key:?} is contended")))
    }

    async fn read_claim(&self, key: &str) -> StoreResult<Option<Claim>> {
        let item = self.get_item(&self.tables.rooms, Self::claim_key(key), "GetItem name claim").await?;
        let Some(item) = item.filter(|i| !i.is_empty()) else { return Ok(None) };
        let holders = match item.get("holders") {
            Some(AttributeValue::Ss(ids)) => ids.clone(),
            None => Vec::new(),
            Some(other) => return Err(StoreError::Corrupt(format!("claim holders is {other:?}"))),
        };
        let version = match item.get("claimVersion") {
            Some(AttributeValue::N(v)) => v.clone(),
            other => return Err(StoreError::Corrupt(format!("claim version is {other:?}"))),
        };
        Ok(Some(Claim { owner: get_s(&item, "claimOwner")?, holders, version }))
    }

    /// A holder of `claim` that is still registered under the claim's owner, if any. (Its name
    /// may not show the claimed one yet: a rename claims before it sets the name.)
    async fn live_holder(&self, claim: &Claim) -> StoreResult<Option<String>> {
        for id in &claim.holders {
            if let Some(c) = self.get_connection(id).await?
                && c.name_owner().as_key() == claim.owner
            {
                return Ok(Some(c.connection_id));
            }
        }
        Ok(None)
    }

    /// Removes `connection_id` from the holders of `key`, and the claim when it has none left.
    /// Best effort: a claim left behind is taken over by the next claimant once its holders
    /// are gone.
    async fn release_name(&self, key: &str, connection_id: &str) {
        if let Err(e) = self.try_release_name(key, connection_id).await {
            warn!(key, connection_id, error = %e, "could not release a name claim; the next claimant takes it over");
        }
    }

    async fn try_release_name(&self, key: &str, connection_id: &str) -> StoreResult<()> {
        let out = self
            .client
            .update_item()
            .table_name(&self.tables.rooms)
            .set_key(Some(Self::claim_key(key)))
            .update_expression("DELETE #holders :me")
            .condition_expression("attribute_exists(#holders)")
            .expression_attribute_names("#holders", "holders")
            .expression_attribute_values(":me", AttributeValue::Ss(vec![connection_id.to_string()]))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let left = match out.map_err(|e| map_sdk_error("UpdateItem name release", e)) {
            Ok(out) => out.attributes.is_some_and(|a| a.contains_key("holders")),
            // No claim, or no holders: nothing to release.
            Err(StoreError::Conflict(_)) => false,
            Err(e) => return Err(e),
        };
        if left {
            return Ok(());
        }
        // The last holder left: the claim goes, unless someone joined it meanwhile.
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.tables.rooms)
            .set_key(Some(Self::claim_key(key)))
            .condition_expression("attribute_not_exists(#holders)")
            .expression_attribute_names("#holders", "holders")
            .send()
            .await;
        match deleted.map_err(|e| map_sdk_error("DeleteItem name claim", e)) {
            Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Undoes the put of a connection whose name claim failed, so a refusal leaves nothing.
    async fn unput(&self, connection_id: &str) {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.tables.connections)
            .set_key(Some(Self::key(connection_id)))
            .send()
            .await;
        if let Err(e) = deleted {
            let e = map_sdk_error("DeleteItem", e);
            warn!(connection_id, error = %e, "could not remove a connection whose name was refused; its TTL will");
        }
    }
}

#[async_trait]
impl ConnectionStore for DynamoDbStore {
    async fn put_connection(&self, record: &ConnectionRecord) -> StoreResult<()> {
        let put = self
            .client
            .put_item()
            .table_name(&self.tables.connections)
            .set_item(Some(to_item(record)))
            .condition_expression("attribute_not_exists(connectionId)")
            .send()
            .await;
        match put.map_err(|e| map_sdk_error("PutItem", e)) {
            Ok(_) => {}
            // The SDK retries a PutItem whose response was lost (attempt timeout, connection
            // reset); if the first attempt did land, the retry fails its own condition. The
            // item then is exactly this record: that is success, not a taken id.
            Err(StoreError::Conflict(detail)) => match self.get_connection(&record.connection_id).await? {
                Some(existing) if existing == *record => {
                    debug!(connection_id = %record.connection_id, "PutItem retry found its own earlier write");
                }
                _ => return Err(StoreError::Conflict(detail)),
            },
            Err(other) => return Err(other),
        }
        // After the put, so that every holder of a claim has its connection item.
        if let Err(e) = self.claim_name(&name_key(&record.name), record).await {
            self.unput(&record.connection_id).await;
            return Err(e);
        }
        Ok(())
    }

    async fn get_connection(&self, connection_id: &str) -> StoreResult<Option<ConnectionRecord>> {
        let item = self.get_item(&self.tables.connections, Self::key(connection_id), "GetItem").await?;
        item.as_ref().map(from_item).transpose()
    }

    async fn delete_connection(&self, connection_id: &str) -> StoreResult<Option<ConnectionRecord>> {
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
        let old = out.attributes.as_ref().filter(|a| !a.is_empty()).map(from_item).transpose()?;
        if let Some(old) = &old {
            self.release_name(&name_key(&old.name), connection_id).await;
        }
        Ok(old)
    }

    // The batch does not read the names back to release them: a claim whose holders are all
    // gone is free (see the module docs), so the stale connections of a fan-out cost no more.
    async fn delete_connections(&self, connection_ids: &[String]) -> StoreResult<()> {
        // BatchWriteItem rejects a request that names the same key twice.
        let unique: BTreeSet<&String> = connection_ids.iter().collect();
        let unique: Vec<&String> = unique.into_iter().collect();
        for chunk in unique.chunks(BATCH_WRITE_MAX) {
            self.delete_chunk(chunk).await?;
        }
        Ok(())
    }

    async fn set_room(&self, connection_id: &str, room: Option<&str>) -> StoreResult<ConnectionRecord> {
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

    async fn set_name(&self, connection_id: &str, name: &str) -> StoreResult<ConnectionRecord> {
        let Some(old) = self.get_connection(connection_id).await? else {
            return Err(StoreError::NotFound(format!("connection {connection_id}")));
        };
        let (old_key, new_key) = (name_key(&old.name), name_key(name));
        let moves = old_key != new_key;
        if moves {
            // Claimed before the name is set, so the claim's holder is live throughout.
            let mut renamed = old.clone();
            name.clone_into(&mut renamed.name);
            self.claim_name(&new_key, &renamed).await?;
        }
        let update = self
            .client
            .update_item()
            .update_expression("SET #name = :name")
            .expression_attribute_names("#name", "name")
            .expression_attribute_values(":name", s(name));
        match self.update_existing(connection_id, update, ReturnValue::AllNew).await {
            Ok(updated) => {
                if moves {
                    self.release_name(&old_key, connection_id).await;
                }
                Ok(updated)
            }
            Err(e) => {
                if moves {
                    self.release_name(&new_key, connection_id).await;
                }
                Err(e)
            }
        }
    }

    async fn members(&self, room: &str, next: Option<&str>, page_size: usize) -> StoreResult<Page<ConnectionRecord>> {
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

    async fn name_holders(&self, name: &str) -> StoreResult<Vec<ConnectionRecord>> {
        let key = name_key(name);
        let Some(claim) = self.read_claim(&key).await? else { return Ok(Vec::new()) };
        let mut holders = Vec::with_capacity(claim.holders.len());
        for id in &claim.holders {
            if let Some(c) = self.get_connection(id).await?
                && c.name_owner().as_key() == claim.owner
                && name_key(&c.name) == key
            {
                holders.push(c);
            }
        }
        Ok(holders)
    }
}
