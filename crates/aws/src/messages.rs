//! [`MessageLog`] on the MessagesTable (HASH `room`, RANGE `seq`) and the RoomsTable (room meta
//! items keyed by the room name, idempotency items keyed `idem#<room>#<publisher>#<id>`, the
//! rooms a connection belongs to keyed `conn#<connectionId>`; a room name has no `#`).
//!
//! Room meta items carry `roomsPk` (always `rooms`) and `activeAt` (ms of the last activity),
//! the keys of the RoomsTable's `ActivityIndex`: `rooms_page` is one Query of that index,
//! newest first, with `Limit`, never a Scan. Its one partition takes every room's activity
//! updates (one per message), which caps the whole chat near a GSI partition's write
//! throughput (about 1,000 writes/s). Each meta item also has an `expiresAt` TTL: its
//! creation plus the empty-room TTL, and with each message that message's expiry plus the
//! empty-room TTL, so a room goes some minutes after its last stored message does; an item
//! past it is not listed nor counted as existing, though DynamoDB may take a while to delete it.
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
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use dynamowave_core::model::{Appended, NewMessage, RoomState, StoredMessage, now_ms};
use dynamowave_core::store::{RoomClaim, RoomsCursor, RoomsPage};
use dynamowave_core::{MessageLog, StoreError, StoreResult};
use tracing::{debug, warn};

use crate::store::{
    DynamoDbStore, Item, get_n, get_s, is_throttling_code, map_sdk_error, n, now_secs, opt_s, rooms_key, s,
};

/// What the RoomsTable holds for a room.
struct Meta {
    last_seq: u64,
    first_seq: u64,
    epoch: String,
    /// `None` in items written before rooms expired: they never lapse.
    expires_at: Option<i64>,
}

impl Meta {
    /// Past `expiresAt`, counted in whole seconds (as DynamoDB's TTL does): an item lives at
    /// least its TTL, at most a second more.
    fn lapsed(&self) -> bool {
        self.expires_at.is_some_and(|e| e < now_secs())
    }
}

/// The `ActivityIndex` of the RoomsTable: HASH [`ROOMS_PK`], RANGE [`ACTIVE_AT`].
pub(crate) const ACTIVITY_INDEX: &str = "ActivityIndex";
/// The index's partition key attribute; every room meta item has the value [`ROOMS_PK_VALUE`].
pub(crate) const ROOMS_PK: &str = "roomsPk";
const ROOMS_PK_VALUE: &str = "rooms";
/// The index's sort key: ms since the epoch of the room's last activity.
pub(crate) const ACTIVE_AT: &str = "activeAt";
/// Query rounds one `rooms_page` makes at most, when lapsed items (not yet deleted by TTL)
/// fill the pages it reads; then it answers a short page with a `next`.
const MAX_PAGE_ROUNDS: usize = 8;

fn meta_from_item(item: &Item) -> StoreResult<Meta> {
    Ok(Meta {
        last_seq: get_n(item, "lastSeq")?,
        first_seq: get_n(item, "firstSeq")?,
        epoch: get_s(item, "epoch")?,
        expires_at: match item.get("expiresAt") {
            None => None,
            Some(_) => Some(get_n(item, "expiresAt")?),
        },
    })
}

fn claims_key(connection_id: &str) -> String {
    format!("conn#{connection_id}")
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

fn message_from_item(item: &Item) -> StoreResult<StoredMessage> {
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
    async fn read_meta(&self, room: &str) -> StoreResult<Option<Meta>> {
        let item = self.get_item(&self.tables.rooms, rooms_key(room), "GetItem room meta").await?;
        item.as_ref().map(meta_from_item).transpose()
    }

    /// The seq of the newest message item of `room`, 0 if none. A room whose meta item TTL
    /// deleted may still have message items that TTL has not deleted yet (it deletes in no
    /// particular order): a new log continues after them rather than collide with them.
    async fn newest_seq(&self, room: &str) -> StoreResult<u64> {
        Ok(self.read_range(room, None, None, 1).await?.first().map_or(0, |m| m.seq))
    }

    /// An empty room's expiry, from now.
    fn empty_expiry(&self) -> i64 {
        now_secs() + self.settings.empty_room_ttl_secs
    }

    /// The room's meta item, created (with a new epoch) if it does not exist yet; a lapsed one
    /// gets a new lease of the empty-room TTL (somebody is using it again).
    async fn ensure_meta(&self, room: &str) -> StoreResult<Meta> {
        if let Some(mut meta) = self.read_meta(room).await? {
            if meta.lapsed() {
                let expires_at = self.empty_expiry();
                let renewed = self
                    .client
                    .update_item()
                    .table_name(&self.tables.rooms)
                    .key("room", s(room))
                    .update_expression("SET expiresAt = :exp, activeAt = :now, #pk = :pk")
                    .condition_expression("lastSeq = :last")
                    .expression_attribute_names("#pk", ROOMS_PK)
                    .expression_attribute_values(":exp", n(expires_at))
                    .expression_attribute_values(":now", n(now_ms()))
                    .expression_attribute_values(":pk", s(ROOMS_PK_VALUE))
                    .expression_attribute_values(":last", n(meta.last_seq))
                    .send()
                    .await;
                match renewed {
                    Ok(_) => meta.expires_at = Some(expires_at),
                    // A message came in meanwhile: that renewed it.
                    Err(e) => match map_sdk_error("UpdateItem room lease", e) {
                        StoreError::Conflict(_) => {}
                        other => return Err(other),
                    },
                }
            }
            return Ok(meta);
        }
        let epoch = new_epoch();
        let last_seq = self.newest_seq(room).await?;
        let expires_at = self.empty_expiry();
        let put = self
            .client
            .put_item()
            .table_name(&self.tables.rooms)
            .item("room", s(room))
            .item("lastSeq", n(last_seq))
            .item("firstSeq", n(last_seq + 1))
            .item("epoch", s(&epoch))
            .item("lastTs", n(0))
            .item(ROOMS_PK, s(ROOMS_PK_VALUE))
            .item(ACTIVE_AT, n(now_ms()))
            .item("expiresAt", n(expires_at))
            .condition_expression("attribute_not_exists(#room)")
            .expression_attribute_names("#room", "room")
            .send()
            .await;
        match put {
            Ok(_) => Ok(Meta { last_seq, first_seq: last_seq + 1, epoch, expires_at: Some(expires_at) }),
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

    async fn get_message(&self, room: &str, seq: u64) -> StoreResult<Option<StoredMessage>> {
        self.get_message_item(room, seq).await?.as_ref().map(message_from_item).transpose()
    }

    async fn get_message_item(&self, room: &str, seq: u64) -> StoreResult<Option<Item>> {
        let key = Item::from([("room".to_string(), s(room)), ("seq".to_string(), n(seq))]);
        self.get_item(&self.tables.messages, key, "GetItem message").await
    }

    /// The message a stored idempotency key points at.
    async fn stored_duplicate(&self, room: &str, key: &str) -> StoreResult<StoredMessage> {
        let item = self.get_item(&self.tables.rooms, rooms_key(key), "GetItem idempotency").await?;
        let item = item.ok_or_else(|| StoreError::Unavailable(format!("idempotency item {key} vanished")))?;
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
    ) -> StoreResult<Result<(), Lost>> {
        let expires_at = message.ts / 1000 + self.settings.message_retention_secs;
        // The room outlives its newest message by the empty-room TTL.
        let room_expires_at = expires_at + self.settings.empty_room_ttl_secs;
        let meta_write = match meta {
            Some(meta) => TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(&self.tables.rooms)
                        .key("room", s(&message.room))
                        .update_expression(
                            "SET lastSeq = :next, lastTs = :ts, #active = :ts, expiresAt = :exp, #pk = :pk",
                        )
                        .condition_expression("lastSeq = :last")
                        .expression_attribute_names("#active", ACTIVE_AT)
                        .expression_attribute_names("#pk", ROOMS_PK)
                        .expression_attribute_values(":next", n(stored.seq))
                        .expression_attribute_values(":ts", n(message.ts))
                        .expression_attribute_values(":exp", n(room_expires_at))
                        .expression_attribute_values(":pk", s(ROOMS_PK_VALUE))
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
                        .item("firstSeq", n(stored.seq))
                        .item("epoch", s(new_epoch()))
                        .item("lastTs", n(message.ts))
                        .item(ROOMS_PK, s(ROOMS_PK_VALUE))
                        .item(ACTIVE_AT, n(message.ts))
                        .item("expiresAt", n(room_expires_at))
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
    async fn append(&self, message: NewMessage) -> StoreResult<Appended> {
        let idem_key = message.id.as_deref().map(|id| idempotency_key(&message.room, &message.publisher, id));
        let token = new_append_token();
        for attempt in 0..self.settings.append_max_attempts {
            let meta = self.read_meta(&message.room).await?;
            let last_seq = match &meta {
                Some(m) => m.last_seq,
                None => self.newest_seq(&message.room).await?,
            };
            let stored = StoredMessage {
                room: message.room.clone(),
                seq: last_seq + 1,
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

    async fn read_after(&self, room: &str, after: u64, limit: usize) -> StoreResult<Vec<StoredMessage>> {
        self.read_range(room, Some(after), None, limit).await
    }

    async fn read_before(&self, room: &str, before: Option<u64>, limit: usize) -> StoreResult<Vec<StoredMessage>> {
        if before == Some(0) {
            return Ok(Vec::new());
        }
        self.read_range(room, None, before, limit).await
    }

    async fn room_state(&self, room: &str) -> StoreResult<RoomState> {
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

    async fn room_exists(&self, room: &str) -> StoreResult<bool> {
        Ok(self.read_meta(room).await?.is_some_and(|m| !m.lapsed()))
    }

    async fn rooms_page(&self, after: Option<&RoomsCursor>, limit: usize) -> StoreResult<RoomsPage> {
        let limit = limit.max(1);
        let mut start: Option<Item> = after.map(|c| {
            Item::from([
                ("room".to_string(), s(&c.room)),
                (ROOMS_PK.to_string(), s(ROOMS_PK_VALUE)),
                (ACTIVE_AT.to_string(), n(c.active_ms)),
            ])
        });
        let mut found: Vec<(i64, RoomState)> = Vec::new();
        for _ in 0..MAX_PAGE_ROUNDS {
            // One more than the page, to know whether another page follows.
            let want = i32::try_from(limit + 1 - found.len()).unwrap_or(i32::MAX);
            let out = self
                .client
                .query()
                .table_name(&self.tables.rooms)
                .index_name(ACTIVITY_INDEX)
                .key_condition_expression("#pk = :pk")
                .filter_expression("attribute_not_exists(expiresAt) OR expiresAt >= :now")
                .expression_attribute_names("#pk", ROOMS_PK)
                .expression_attribute_values(":pk", s(ROOMS_PK_VALUE))
                .expression_attribute_values(":now", n(now_secs()))
                .scan_index_forward(false)
                .limit(want)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| map_sdk_error("Query ActivityIndex", e))?;
            for item in out.items() {
                let meta = meta_from_item(item)?;
                let room = get_s(item, "room")?;
                let active: i64 = get_n(item, ACTIVE_AT)?;
                found.push((
                    active,
                    RoomState { room, epoch: meta.epoch, last_seq: meta.last_seq, first_seq: meta.first_seq },
                ));
            }
            start = out.last_evaluated_key;
            if found.len() > limit {
                found.truncate(limit);
                let next = found.last().map(|(active, r)| RoomsCursor { active_ms: *active, room: r.room.clone() });
                return Ok(RoomsPage { rooms: found.into_iter().map(|(_, r)| r).collect(), next });
            }
            if start.is_none() {
                return Ok(RoomsPage { rooms: found.into_iter().map(|(_, r)| r).collect(), next: None });
            }
        }
        // Lapsed items filled the rounds: a short page, continuing where the reading stopped.
        let next = match &start {
            Some(key) => Some(RoomsCursor { active_ms: get_n(key, ACTIVE_AT)?, room: get_s(key, "room")? }),
            None => None,
        };
        Ok(RoomsPage { rooms: found.into_iter().map(|(_, r)| r).collect(), next })
    }

    async fn claim_room(&self, connection_id: &str, room: &str, max: usize, expires_at: i64) -> StoreResult<RoomClaim> {
        // One conditional update of a string set: atomic, so concurrent claims never pass `max`.
        let out = self
            .client
            .update_item()
            .table_name(&self.tables.rooms)
            .key("room", s(claims_key(connection_id)))
            .update_expression("ADD #rooms :one SET expiresAt = :exp")
            .condition_expression("attribute_not_exists(#rooms) OR contains(#rooms, :room) OR size(#rooms) < :max")
            .expression_attribute_names("#rooms", "rooms")
            .expression_attribute_values(":one", AttributeValue::Ss(vec![room.to_string()]))
            .expression_attribute_values(":room", s(room))
            .expression_attribute_values(":max", n(max))
            .expression_attribute_values(":exp", n(expires_at))
            // The whole item as it was: whether the room was in the set already.
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match out {
            Ok(out) => {
                let had = out.attributes().and_then(|a| a.get("rooms")).and_then(|v| v.as_ss().ok());
                Ok(if had.is_some_and(|rooms| rooms.iter().any(|r| r == room)) {
                    RoomClaim::Member
                } else {
                    RoomClaim::Added
                })
            }
            Err(e) => match map_sdk_error("UpdateItem room claims", e) {
                StoreError::Conflict(_) => Ok(RoomClaim::Full),
                other => Err(other),
            },
        }
    }

    async fn release_rooms(&self, connection_id: &str) -> StoreResult<()> {
        self.client
            .delete_item()
            .table_name(&self.tables.rooms)
            .key("room", s(claims_key(connection_id)))
            .send()
            .await
            .map_err(|e| map_sdk_error("DeleteItem room claims", e))?;
        Ok(())
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
    ) -> StoreResult<Vec<StoredMessage>> {
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
