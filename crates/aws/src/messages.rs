//! [`MessageLog`] on the MessagesTable (HASH `room`, RANGE `seq`) and the RoomsTable (room meta
//! items keyed by the room name, idempotency items keyed `idem#<room>#<publisher>#<id>`).
//!
//! A seq is allocated by one TransactWriteItems: the meta update conditioned on the `lastSeq`
//! just read, the message put at `lastSeq + 1`, and the idempotency put conditioned on its
//! absence. Either all three happen or none, so seqs have no gaps and a retried id never
//! takes a second seq. Writers that lose the race on `lastSeq` read again and retry.
//!
//! Each `append` call also writes a random `appendToken` on its message. When the SDK retries a
//! transaction whose first attempt committed but whose response was lost (an attempt timeout,
//! a reset connection), the retry is cancelled by that very commit: the message already at the
//! seq carries our token, so the append has succeeded, and must neither be retried at the next
//! seq (a duplicate message) nor reported as a duplicate (which skips the fan-out). DynamoDB
//! itself makes such a retry idempotent through the `ClientRequestToken` the SDK sets (for ten
//! minutes); the token check does not depend on that (moto, for one, ignores the request token).

use async_trait::async_trait;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update};
use dynamowave_core::model::{Appended, NewMessage, RoomState, StoredMessage};
use dynamowave_core::{MessageLog, StoreError};
use tracing::{debug, warn};

use crate::store::{DynamoDbStore, Item, get_n, get_s, is_throttling_code, map_sdk_error, n, now_secs, opt_s, s};

/// What the RoomsTable holds for a room.
struct Meta {
    last_seq: u64,
    first_seq: u64,
    epoch: String,
    last_ts: i64,
}

fn meta_from_item(item: &Item) -> Result<Meta, StoreError> {
    Ok(Meta {
        last_seq: get_n(item, "lastSeq")?,
        first_seq: get_n(item, "firstSeq")?,
        epoch: get_s(item, "epoch")?,
        last_ts: get_n(item, "lastTs")?,
    })
}

fn new_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// `#` separates the parts of an idempotency key and `%` escapes, so neither may appear raw
/// in a part (a principal id can contain anything).
fn escape_part(part: &str) -> String {
    part.replace('%', "%25").replace('#', "%23")
}

pub(crate) fn idempotency_key(room: &str, publisher: &str, id: &str) -> String {
    format!("idem#{}#{}#{}", escape_part(room), escape_part(publisher), escape_part(id))
}

fn message_to_item(m: &StoredMessage, publisher: &str, expires_at: i64, token: &str) -> Item {
    let mut item = Item::new();
    item.insert("room".into(), s(&m.room));
    item.insert("seq".into(), n(m.seq));
    if let Some(id) = &m.id {
        item.insert("id".into(), s(id));
    }
    item.insert("from".into(), s(&m.from));
    item.insert("publisher".into(), s(publisher));
    item.insert("text".into(), s(&m.text));
    item.insert("ts".into(), n(m.ts));
    item.insert("expiresAt".into(), n(expires_at));
    item.insert(APPEND_TOKEN.into(), s(token));
    item
}

/// The attribute of a message item naming the `append` call that wrote it.
const APPEND_TOKEN: &str = "appendToken";

fn new_append_token() -> String {
    format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())
}

fn message_from_item(item: &Item) -> Result<StoredMessage, StoreError> {
    Ok(StoredMessage {
        room: get_s(item, "room")?,
        seq: get_n(item, "seq")?,
        id: opt_s(item, "id")?,
        from: get_s(item, "from")?,
        text: get_s(item, "text")?,
        ts: get_n(item, "ts")?,
    })
}

fn build_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("building a request: {e}"))
}

/// Why one round of the allocation transaction did not commit.
enum Lost {
    /// Someone else took `lastSeq + 1` (or created the room) first: read again.
    Race,
    /// The idempotency item exists: this (room, publisher, id) was stored before.
    Duplicate,
}

impl DynamoDbStore {
    async fn read_meta(&self, room: &str) -> Result<Option<Meta>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.rooms)
            .key("room", s(room))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| map_sdk_error("GetItem room meta", e))?;
        out.item.as_ref().map(meta_from_item).transpose()
    }

    /// The room's meta item, created (with a new epoch) if it does not exist yet.
    async fn ensure_meta(&self, room: &str) -> Result<Meta, StoreError> {
        if let Some(meta) = self.read_meta(room).await? {
            return Ok(meta);
        }
        let epoch = new_epoch();
        let put = self
            .client
            .put_item()
            .table_name(&self.tables.rooms)
            .item("room", s(room))
            .item("lastSeq", n(0))
            .item("firstSeq", n(1))
            .item("epoch", s(&epoch))
            .item("lastTs", n(0))
            .condition_expression("attribute_not_exists(#room)")
            .expression_attribute_names("#room", "room")
            .send()
            .await;
        match put {
            Ok(_) => Ok(Meta { last_seq: 0, first_seq: 1, epoch, last_ts: 0 }),
            Err(e) => match map_sdk_error("PutItem room meta", e) {
                // Another writer created it first: theirs is the epoch.
                StoreError::Conflict(_) => self
                    .read_meta(room)
                    .await?
                    .ok_or_else(|| StoreError::Unavailable(format!("room meta of {room} vanished after creation"))),
                other => Err(other),
            },
        }
    }

    async fn get_message(&self, room: &str, seq: u64) -> Result<Option<StoredMessage>, StoreError> {
        self.get_message_item(room, seq).await?.as_ref().map(message_from_item).transpose()
    }

    async fn get_message_item(&self, room: &str, seq: u64) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.messages)
            .key("room", s(room))
            .key("seq", n(seq))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| map_sdk_error("GetItem message", e))?;
        Ok(out.item)
    }

    /// The message a stored idempotency key points at.
    async fn stored_duplicate(&self, room: &str, key: &str) -> Result<StoredMessage, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.rooms)
            .key("room", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| map_sdk_error("GetItem idempotency", e))?;
        let item = out.item.ok_or_else(|| StoreError::Unavailable(format!("idempotency item {key} vanished")))?;
        let seq: u64 = get_n(&item, "seq")?;
        self.get_message(room, seq)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("idempotency item {key} points at missing seq {seq}")))
    }

    /// One round of the allocation transaction, for `seq = meta.last_seq + 1`.
    async fn try_append(
        &self,
        message: &NewMessage,
        meta: Option<&Meta>,
        stored: &StoredMessage,
        idem_key: Option<&str>,
        token: &str,
    ) -> Result<Result<(), Lost>, StoreError> {
        let expires_at = message.ts / 1000 + self.settings.message_retention_secs;
        let meta_write = match meta {
            Some(meta) => TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(&self.tables.rooms)
                        .key("room", s(&message.room))
                        .update_expression("SET lastSeq = :next, lastTs = :ts")
                        .condition_expression("lastSeq = :last")
                        .expression_attribute_values(":next", n(stored.seq))
                        .expression_attribute_values(":ts", n(message.ts))
                        .expression_attribute_values(":last", n(meta.last_seq))
                        .build()
                        .map_err(build_err)?,
                )
                .build(),
            // The first message of a room nobody asked about yet creates its meta item.
            None => TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.tables.rooms)
                        .item("room", s(&message.room))
                        .item("lastSeq", n(stored.seq))
                        .item("firstSeq", n(1))
                        .item("epoch", s(new_epoch()))
                        .item("lastTs", n(message.ts))
                        .condition_expression("attribute_not_exists(#room)")
                        .expression_attribute_names("#room", "room")
                        .build()
                        .map_err(build_err)?,
                )
                .build(),
        };
        let message_put = TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.tables.messages)
                    .set_item(Some(message_to_item(stored, &message.publisher, expires_at, token)))
                    .condition_expression("attribute_not_exists(#room)")
                    .expression_attribute_names("#room", "room")
                    // A cancellation then carries the message already at this seq: ours, if an
                    // earlier attempt of this very transaction committed (see the module doc).
                    .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                    .build()
                    .map_err(build_err)?,
            )
            .build();
        let mut tx = self.client.transact_write_items().transact_items(meta_write).transact_items(message_put);
        if let Some(key) = idem_key {
            // An idempotency item past its TTL but not yet swept by DynamoDB no longer counts.
            tx = tx.transact_items(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.tables.rooms)
                            .item("room", s(key))
                            .item("seq", n(stored.seq))
                            .item("expiresAt", n(expires_at))
                            .condition_expression("attribute_not_exists(#room) OR expiresAt < :now")
                            .expression_attribute_names("#room", "room")
                            .expression_attribute_values(":now", n(now_secs()))
                            .build()
                            .map_err(build_err)?,
                    )
                    .build(),
            );
        }
        let err = match tx.send().await {
            Ok(_) => return Ok(Ok(())),
            Err(e) => e,
        };
        let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) = err.as_service_error() else {
            let code = err.as_service_error().and_then(ProvideErrorMetadata::code).map(str::to_string);
            // A concurrent transaction on the same item: the same race, seen earlier.
            if code.as_deref() == Some("TransactionConflictException") {
                return Ok(Err(Lost::Race));
            }
            return Err(map_sdk_error("TransactWriteItems", err));
        };
        let codes: Vec<&str> = cancel.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None")).collect();
        let failed = |i: usize| codes.get(i).copied() == Some("ConditionalCheckFailed");
        if failed(1) {
            let existing = match cancel.cancellation_reasons().get(1).and_then(|r| r.item()) {
                Some(item) => Some(item.clone()),
                // A DynamoDB-compatible store that does not return the item: read it.
                None => self.get_message_item(&message.room, stored.seq).await?,
            };
            if existing.as_ref().and_then(|i| opt_s(i, APPEND_TOKEN).ok().flatten()).as_deref() == Some(token) {
                debug!(room = %message.room, seq = stored.seq, "a retried transaction found its own commit");
                return Ok(Ok(()));
            }
        }
        if idem_key.is_some() && failed(2) {
            return Ok(Err(Lost::Duplicate));
        }
        if failed(0) || codes.contains(&"TransactionConflict") {
            return Ok(Err(Lost::Race));
        }
        if failed(1) {
            return Err(StoreError::Corrupt(format!(
                "room {} has a message at seq {} beyond its meta lastSeq",
                message.room, stored.seq
            )));
        }
        if codes.iter().any(|c| is_throttling_code(Some(c)) || *c == "ThrottlingError") {
            return Err(StoreError::Throttled(format!("TransactWriteItems cancelled: {codes:?}")));
        }
        Err(StoreError::Unavailable(format!("TransactWriteItems cancelled: {codes:?}")))
    }
}

#[async_trait]
impl MessageLog for DynamoDbStore {
    async fn append(&self, message: NewMessage) -> Result<Appended, StoreError> {
        let idem_key = message.id.as_deref().map(|id| idempotency_key(&message.room, &message.publisher, id));
        let token = new_append_token();
        for attempt in 0..self.settings.append_max_attempts {
            let meta = self.read_meta(&message.room).await?;
            let stored = StoredMessage {
                room: message.room.clone(),
                seq: meta.as_ref().map_or(0, |m| m.last_seq) + 1,
                id: message.id.clone(),
                from: message.from.clone(),
                text: message.text.clone(),
                ts: message.ts,
            };
            match self.try_append(&message, meta.as_ref(), &stored, idem_key.as_deref(), &token).await? {
                Ok(()) => return Ok(Appended { message: stored, duplicate: false }),
                Err(Lost::Duplicate) => {
                    let key = idem_key.as_deref().unwrap_or_default();
                    let original = self.stored_duplicate(&message.room, key).await?;
                    debug!(room = %message.room, seq = original.seq, "append is a retry of a stored message");
                    return Ok(Appended { message: original, duplicate: true });
                }
                Err(Lost::Race) => {
                    let delay = self.settings.backoff(attempt);
                    debug!(room = %message.room, attempt, ?delay, "lost the seq race; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
        warn!(room = %message.room, attempts = self.settings.append_max_attempts, "append gave up: seq contention");
        Err(StoreError::Conflict(format!(
            "could not allocate a seq in room {} after {} attempts",
            message.room, self.settings.append_max_attempts
        )))
    }

    async fn read_after(&self, room: &str, after: u64, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        self.read_range(room, Some(after), None, limit).await
    }

    async fn read_before(
        &self,
        room: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        if before == Some(0) {
            return Ok(Vec::new());
        }
        self.read_range(room, None, before, limit).await
    }

    async fn room_state(&self, room: &str) -> Result<RoomState, StoreError> {
        let meta = self.ensure_meta(room).await?;
        // Retention expires the oldest messages by TTL, so the oldest retained seq is read
        // from the log itself, not from the meta item.
        let first_seq = if meta.last_seq == 0 {
            meta.last_seq + 1
        } else {
            let oldest = self.read_range(room, Some(0), None, 1).await?;
            oldest.first().map_or(meta.last_seq + 1, |m| m.seq.max(meta.first_seq))
        };
        Ok(RoomState { room: room.to_string(), epoch: meta.epoch, last_seq: meta.last_seq, first_seq })
    }

    async fn list_rooms(&self, limit: usize) -> Result<Vec<RoomState>, StoreError> {
        // A Scan, but of the small RoomsTable (one meta item per room), paginated, and only
        // meta items (idempotency items have no epoch).
        let mut rooms: Vec<(i64, RoomState)> = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.tables.rooms)
                .filter_expression("attribute_exists(epoch)")
                .set_exclusive_start_key(start)
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| map_sdk_error("Scan RoomsTable", e))?;
            for item in out.items() {
                let meta = meta_from_item(item)?;
                let room = get_s(item, "room")?;
                rooms.push((
                    meta.last_ts,
                    RoomState { room, epoch: meta.epoch, last_seq: meta.last_seq, first_seq: meta.first_seq },
                ));
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        rooms.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.room.cmp(&b.1.room)));
        Ok(rooms.into_iter().take(limit).map(|(_, r)| r).collect())
    }
}

impl DynamoDbStore {
    /// Messages with `after < seq < before`: ascending when `after` is given, else descending
    /// from `before` (or the newest). Pages until `limit` messages or the end, since one Query
    /// page stops at 1 MB.
    async fn read_range(
        &self,
        room: &str,
        after: Option<u64>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        let (condition, bound) = match (after, before) {
            (Some(a), _) => ("#room = :room AND seq > :bound", Some(a)),
            (None, Some(b)) => ("#room = :room AND seq < :bound", Some(b)),
            (None, None) => ("#room = :room", None),
        };
        while found.len() < limit {
            let want = i32::try_from(limit - found.len()).unwrap_or(i32::MAX);
            let mut query = self
                .client
                .query()
                .table_name(&self.tables.messages)
                .key_condition_expression(condition)
                .expression_attribute_names("#room", "room")
                .expression_attribute_values(":room", s(room))
                .scan_index_forward(after.is_some())
                .consistent_read(true)
                .limit(want)
                .set_exclusive_start_key(start);
            if let Some(bound) = bound {
                query = query.expression_attribute_values(":bound", n(bound));
            }
            let out = query.send().await.map_err(|e| map_sdk_error("Query messages", e))?;
            for item in out.items() {
                found.push(message_from_item(item)?);
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        found.truncate(limit);
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::idempotency_key;

    #[test]
    fn idempotency_keys_of_different_parts_never_collide() {
        // Without escaping, ("a", "b#c", "d") and ("a", "b", "c#d") would share a key.
        assert_ne!(idempotency_key("a", "b#c", "d"), idempotency_key("a", "b", "c#d"));
        assert_ne!(idempotency_key("a", "b%23", "d"), idempotency_key("a", "b#", "d"));
        assert_eq!(idempotency_key("lobby", "alice", "k1"), "idem#lobby#alice#k1");
    }
}
