//! Test doubles for unit tests of pure logic (feature `testing`).
//!
//! - [`MemoryStore`]: a [`ConnectionStore`] and [`MessageLog`] in a `Mutex` (parking_lot's,
//!   which a panicking test cannot poison; never held across an `.await`), with the same observable semantics the adapters must have (it passes
//!   [`crate::contract`]), so handler tests exercise the real rules: conditional puts, one owner
//!   per display name, per-room gap-free seqs, idempotent appends, epochs.
//! - [`RecordingApi`]: a [`ConnectionsApi`] that records every frame posted per connection id,
//!   answers `Gone` for the ids it is told are gone, and answers GetConnection from a map.
//!
//! The port methods' signatures stand again in each storage adapter (`dynamowave-store-redb`,
//! `dynamowave-aws`) on purpose: each implements the one trait in its own terms.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use crate::connections_api::{ConnectionInfo, ConnectionsApi, ConnectionsApiError};
use crate::error::{StoreError, StoreResult};
use crate::model::{Appended, ConnectionRecord, NameOwner, NewMessage, Page, RoomState, StoredMessage};
use crate::names::name_key;
use crate::store::{ConnectionStore, MessageLog, RoomClaim, RoomsCursor, RoomsPage};

/// A string unlikely to repeat across runs and processes: for epochs and test ids. Not random
/// in the cryptographic sense, which neither use needs.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}{:x}", nanos, std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

struct RoomLog {
    epoch: String,
    first_seq: u64,
    last_seq: u64,
    last_ts: i64,
    /// ms since the epoch when the log was created.
    created_ms: i64,
    messages: BTreeMap<u64, StoredMessage>,
}

impl RoomLog {
    fn active_ms(&self) -> i64 {
        self.created_ms.max(self.last_ts)
    }

    fn state(&self, room: &str) -> RoomState {
        RoomState {
            room: room.to_string(),
            epoch: self.epoch.clone(),
            last_seq: self.last_seq,
            first_seq: self.first_seq,
        }
    }
}

#[derive(Default)]
struct MemoryState {
    connections: BTreeMap<String, ConnectionRecord>,
    rooms: HashMap<String, RoomLog>,
    idempotency: HashMap<(String, String, String), u64>,
    /// connection id -> the rooms it belongs to (`claim_room`).
    claims: HashMap<String, HashSet<String>>,
}

impl MemoryState {
    /// `NameTaken` if a connection other than `me`, of another owner, holds `name`'s key. (A
    /// scan: fine for tests; the adapters keep an index.)
    fn check_name_free(&self, me: &str, owner: NameOwner<'_>, name: &str) -> StoreResult<()> {
        let key = name_key(name);
        let taken = self
            .connections
            .values()
            .any(|c| c.connection_id != me && c.name_owner() != owner && name_key(&c.name) == key);
        if taken { Err(StoreError::NameTaken(format!("{name:?} is held by another owner"))) } else { Ok(()) }
    }

    /// The room's log, made anew if it has none or lapsed (empty and idle for `ttl_ms`).
    fn room(&mut self, room: &str, ttl_ms: i64) -> &mut RoomLog {
        let now = crate::model::now_ms();
        if self.rooms.get(room).is_some_and(|log| log.messages.is_empty() && log.active_ms() + ttl_ms <= now) {
            self.rooms.remove(room);
        }
        self.rooms.entry(room.to_string()).or_insert_with(|| RoomLog {
            epoch: unique_suffix(),
            first_seq: 1,
            last_seq: 0,
            last_ts: 0,
            created_ms: crate::model::now_ms(),
            messages: BTreeMap::new(),
        })
    }

    /// No stored message, idle past the TTL, nobody in it.
    fn lapsed(&self, room: &str, log: &RoomLog, ttl_ms: i64) -> bool {
        log.messages.is_empty()
            && log.active_ms().saturating_add(ttl_ms) <= crate::model::now_ms()
            && !self.connections.values().any(|c| c.room.as_deref() == Some(room))
    }
}

/// An in-memory [`ConnectionStore`] + [`MessageLog`] for unit tests.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<MemoryState>,
    /// `None`: 5 minutes.
    empty_room_ttl: Option<std::time::Duration>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Empty rooms lapse after `ttl` (default 5 minutes).
    pub fn with_empty_room_ttl(ttl: std::time::Duration) -> Self {
        Self { empty_room_ttl: Some(ttl), ..Self::default() }
    }

    fn ttl_ms(&self) -> i64 {
        let ttl = self.empty_room_ttl.unwrap_or(std::time::Duration::from_secs(300));
        i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
    }

    /// Drops the rooms that lapsed, as an adapter's expiry does; returns how many rooms are left.
    pub fn expire_rooms(&self) -> usize {
        let ttl = self.ttl_ms();
        let mut s = self.state.lock();
        let doomed: Vec<String> =
            s.rooms.iter().filter(|(name, log)| s.lapsed(name, log, ttl)).map(|(name, _)| name.clone()).collect();
        for room in doomed {
            s.rooms.remove(&room);
        }
        s.rooms.len()
    }

    /// Every registered connection, by id (for assertions).
    pub fn connection_ids(&self) -> Vec<String> {
        self.state.lock().connections.keys().cloned().collect()
    }

    /// Drops a room's log as a store reset would: the next use creates a new epoch.
    pub fn reset_room(&self, room: &str) {
        let mut s = self.state.lock();
        s.rooms.remove(room);
        s.idempotency.retain(|(r, _, _), _| r != room);
    }

    /// Forgets messages with seq < `first_seq`, as retention would.
    pub fn prune_room(&self, room: &str, first_seq: u64) {
        let mut s = self.state.lock();
        if let Some(log) = s.rooms.get_mut(room) {
            log.messages = log.messages.split_off(&first_seq);
            log.first_seq = log.first_seq.max(first_seq.min(log.last_seq + 1));
        }
    }
}

#[async_trait]
impl ConnectionStore for MemoryStore {
    async fn put_connection(&self, record: &ConnectionRecord) -> StoreResult<()> {
        let mut s = self.state.lock();
        if s.connections.contains_key(&record.connection_id) {
            return Err(StoreError::Conflict(format!("connection {} exists", record.connection_id)));
        }
        s.check_name_free(&record.connection_id, record.name_owner(), &record.name)?;
        s.connections.insert(record.connection_id.clone(), record.clone());
        Ok(())
    }

    async fn get_connection(&self, connection_id: &str) -> StoreResult<Option<ConnectionRecord>> {
        Ok(self.state.lock().connections.get(connection_id).cloned())
    }

    async fn delete_connection(&self, connection_id: &str) -> StoreResult<Option<ConnectionRecord>> {
        Ok(self.state.lock().connections.remove(connection_id))
    }

    async fn delete_connections(&self, connection_ids: &[String]) -> StoreResult<()> {
        let mut s = self.state.lock();
        for id in connection_ids {
            s.connections.remove(id);
        }
        Ok(())
    }

    async fn set_room(&self, connection_id: &str, room: Option<&str>) -> StoreResult<ConnectionRecord> {
        let mut s = self.state.lock();
        let c = s.connections.get_mut(connection_id).ok_or_else(|| StoreError::NotFound(connection_id.to_string()))?;
        let old = c.clone();
        c.room = room.map(str::to_string);
        Ok(old)
    }

    async fn set_name(&self, connection_id: &str, name: &str) -> StoreResult<ConnectionRecord> {
        let mut s = self.state.lock();
        let current =
            s.connections.get(connection_id).cloned().ok_or_else(|| StoreError::NotFound(connection_id.to_string()))?;
        s.check_name_free(connection_id, current.name_owner(), name)?;
        let c = s.connections.get_mut(connection_id).ok_or_else(|| StoreError::NotFound(connection_id.to_string()))?;
        c.name = name.to_string();
        Ok(c.clone())
    }

    async fn members(&self, room: &str, next: Option<&str>, page_size: usize) -> StoreResult<Page<ConnectionRecord>> {
        let s = self.state.lock();
        let page_size = page_size.max(1);
        let mut items: Vec<ConnectionRecord> = s
            .connections
            .values()
            .filter(|c| c.room.as_deref() == Some(room))
            .filter(|c| next.is_none_or(|n| c.connection_id.as_str() > n))
            .take(page_size + 1)
            .cloned()
            .collect();
        let next = if items.len() > page_size {
            items.truncate(page_size);
            items.last().map(|c| c.connection_id.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn name_holders(&self, name: &str) -> StoreResult<Vec<ConnectionRecord>> {
        let key = name_key(name);
        Ok(self.state.lock().connections.values().filter(|c| name_key(&c.name) == key).cloned().collect())
    }
}

#[async_trait]
impl MessageLog for MemoryStore {
    async fn append(&self, message: NewMessage) -> StoreResult<Appended> {
        let mut s = self.state.lock();
        if let Some(id) = &message.id {
            let key = (message.room.clone(), message.publisher.clone(), id.clone());
            if let Some(seq) = s.idempotency.get(&key).copied() {
                let stored =
                    s.rooms.get(&message.room).and_then(|r| r.messages.get(&seq)).cloned().ok_or_else(|| {
                        StoreError::Corrupt(format!("idempotency key points at missing seq {seq} in {}", message.room))
                    })?;
                return Ok(Appended { message: stored, duplicate: true });
            }
        }
        let log = s.room(&message.room, self.ttl_ms());
        let seq = log.last_seq + 1;
        let stored = StoredMessage {
            room: message.room.clone(),
            seq,
            id: message.id.clone(),
            from: message.from,
            text: message.text,
            ts: message.ts,
        };
        log.last_seq = seq;
        log.last_ts = log.last_ts.max(message.ts);
        log.messages.insert(seq, stored.clone());
        if let Some(id) = message.id {
            s.idempotency.insert((message.room, message.publisher, id), seq);
        }
        Ok(Appended { message: stored, duplicate: false })
    }

    async fn read_after(&self, room: &str, after: u64, limit: usize) -> StoreResult<Vec<StoredMessage>> {
        let s = self.state.lock();
        Ok(s.rooms
            .get(room)
            .map(|r| r.messages.range(after.saturating_add(1)..).take(limit).map(|(_, m)| m.clone()).collect())
            .unwrap_or_default())
    }

    async fn read_before(&self, room: &str, before: Option<u64>, limit: usize) -> StoreResult<Vec<StoredMessage>> {
        let s = self.state.lock();
        let before = before.unwrap_or(u64::MAX);
        Ok(s.rooms
            .get(room)
            .map(|r| r.messages.range(..before).rev().take(limit).map(|(_, m)| m.clone()).collect())
            .unwrap_or_default())
    }

    async fn room_state(&self, room: &str) -> StoreResult<RoomState> {
        Ok(self.state.lock().room(room, self.ttl_ms()).state(room))
    }

    async fn room_exists(&self, room: &str) -> StoreResult<bool> {
        let ttl = self.ttl_ms();
        let s = self.state.lock();
        Ok(s.rooms.get(room).is_some_and(|log| !s.lapsed(room, log, ttl)))
    }

    // A test double may sort: the adapters read an index instead.
    async fn rooms_page(&self, after: Option<&RoomsCursor>, limit: usize) -> StoreResult<RoomsPage> {
        let ttl = self.ttl_ms();
        let s = self.state.lock();
        let mut rooms: Vec<(i64, &String, &RoomLog)> = s
            .rooms
            .iter()
            .filter(|(name, log)| !s.lapsed(name, log, ttl))
            .map(|(name, log)| (log.active_ms(), name, log))
            .filter(|(active, name, _)| after.is_none_or(|c| (*active, name.as_str()) < (c.active_ms, c.room.as_str())))
            .collect();
        rooms.sort_by(|a, b| (b.0, b.1).cmp(&(a.0, a.1)));
        let more = rooms.len() > limit;
        rooms.truncate(limit);
        let next = if more {
            rooms.last().map(|(active, name, _)| RoomsCursor { active_ms: *active, room: (*name).clone() })
        } else {
            None
        };
        Ok(RoomsPage { rooms: rooms.into_iter().map(|(_, name, log)| log.state(name)).collect(), next })
    }

    async fn claim_room(
        &self,
        connection_id: &str,
        room: &str,
        max: usize,
        _expires_at: i64,
    ) -> StoreResult<RoomClaim> {
        let mut s = self.state.lock();
        Ok(RoomClaim::claim_in(s.claims.entry(connection_id.to_string()).or_default(), room, max))
    }

    async fn release_rooms(&self, connection_id: &str) -> StoreResult<()> {
        self.state.lock().claims.remove(connection_id);
        Ok(())
    }
}

/// A [`ConnectionsApi`] that records what each connection was sent.
#[derive(Default)]
pub struct RecordingApi {
    posted: Mutex<HashMap<String, Vec<Bytes>>>,
    gone: Mutex<HashSet<String>>,
    infos: Mutex<HashMap<String, ConnectionInfo>>,
    deleted: Mutex<Vec<String>>,
}

impl RecordingApi {
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on, posts and GetConnection for `connection_id` answer `Gone`.
    pub fn set_gone(&self, connection_id: &str) {
        self.gone.lock().insert(connection_id.to_string());
    }

    /// What GetConnection answers for `connection_id`.
    pub fn set_info(&self, connection_id: &str, info: ConnectionInfo) {
        self.infos.lock().insert(connection_id.to_string(), info);
    }

    /// Every frame posted to `connection_id`, in order.
    pub fn frames(&self, connection_id: &str) -> Vec<Bytes> {
        self.posted.lock().get(connection_id).cloned().unwrap_or_default()
    }

    /// The frames posted to `connection_id`, as text (lossy for non-UTF-8, which never happens
    /// with the handlers' frames).
    pub fn texts(&self, connection_id: &str) -> Vec<String> {
        self.frames(connection_id).iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect()
    }

    /// The frames posted to `connection_id` that are JSON, parsed.
    pub fn json(&self, connection_id: &str) -> Vec<serde_json::Value> {
        self.frames(connection_id).iter().filter_map(|b| serde_json::from_slice(b).ok()).collect()
    }

    /// The JSON frames of `type` posted to `connection_id`.
    pub fn events(&self, connection_id: &str, kind: &str) -> Vec<serde_json::Value> {
        self.json(connection_id).into_iter().filter(|v| v["type"] == kind).collect()
    }

    /// Forgets every recorded frame (not the gone set or the infos).
    pub fn clear(&self) {
        self.posted.lock().clear();
    }

    /// The connections DeleteConnection was called for.
    pub fn deleted(&self) -> Vec<String> {
        self.deleted.lock().clone()
    }

    fn is_gone(&self, connection_id: &str) -> bool {
        self.gone.lock().contains(connection_id)
    }
}

#[async_trait]
impl ConnectionsApi for RecordingApi {
    async fn post_to_connection(&self, connection_id: &str, data: Bytes) -> Result<(), ConnectionsApiError> {
        if self.is_gone(connection_id) {
            return Err(ConnectionsApiError::Gone);
        }
        self.posted.lock().entry(connection_id.to_string()).or_default().push(data);
        Ok(())
    }

    async fn get_connection(&self, connection_id: &str) -> Result<ConnectionInfo, ConnectionsApiError> {
        if self.is_gone(connection_id) {
            return Err(ConnectionsApiError::Gone);
        }
        self.infos.lock().get(connection_id).cloned().ok_or(ConnectionsApiError::Gone)
    }

    async fn delete_connection(&self, connection_id: &str) -> Result<(), ConnectionsApiError> {
        if self.is_gone(connection_id) {
            return Err(ConnectionsApiError::Gone);
        }
        self.deleted.lock().push(connection_id.to_string());
        self.set_gone(connection_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn memory_store_passes_the_contract() {
        let store = Arc::new(MemoryStore::new());
        crate::contract::connection_store_contract(store.clone()).await;
        crate::contract::message_log_contract(store).await;
        let ttl = std::time::Duration::from_millis(500);
        let store = Arc::new(MemoryStore::with_empty_room_ttl(ttl));
        crate::contract::room_index_contract(store.clone(), ttl).await;
        crate::contract::room_claims_contract(store).await;
    }

    #[tokio::test]
    async fn recording_api_answers_gone_for_gone_ids() {
        let api = RecordingApi::new();
        api.post_to_connection("a", Bytes::from_static(b"hi")).await.unwrap();
        api.set_gone("b");
        assert_eq!(api.post_to_connection("b", Bytes::from_static(b"x")).await, Err(ConnectionsApiError::Gone));
        assert_eq!(api.texts("a"), vec!["hi"]);
        assert!(api.frames("b").is_empty());
        assert_eq!(api.get_connection("a").await, Err(ConnectionsApiError::Gone), "no info was set for a");
    }
}
