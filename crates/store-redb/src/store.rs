//! [`RedbStore`]: opening a data dir, the storage ports, and the admin operations.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;
use std::time::Instant;

use async_trait::async_trait;
use dynamowave_core::model::{Appended, NewMessage, Page, RoomState, StoredMessage};
use dynamowave_core::store::{RoomClaim, RoomsCursor, RoomsPage};
use dynamowave_core::{ConnectionRecord, ConnectionStore, MessageLog, StoreError, StoreResult};
use parking_lot::{Mutex, RwLock};
use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::claims::Claims;
use crate::index::Index;
use crate::restore::{RestoreReport, restore_from};
use crate::tables::{
    CONNECTIONS, FILE_NAME, FORMAT_VERSION, JOURNAL, MESSAGES, META, META_FORMAT, META_HORIZON, ROOM_ACTIVITY, ROOMS,
    RoomMeta, StoredRecord, db_err, decode, ensure_tables, rebuild_activity,
};
use crate::writer::{MaintenanceReport, Reply, Request, Writer};
use crate::{RedbSettings, now_micros};

/// The embedded store. Share it as `Arc<RedbStore>` (it is both ports). Dropping it stops the
/// writer thread after a final durable commit; [`RedbStore::close`] does the same from async
/// code and reports errors.
pub struct RedbStore {
    db: Arc<Database>,
    index: Arc<RwLock<Index>>,
    requests: Sender<Request>,
    writer: Mutex<Option<JoinHandle<()>>>,
    dir: PathBuf,
    purged_on_open: usize,
    claims: Mutex<Claims>,
    empty_room_ttl_ms: i64,
}

fn closed() -> StoreError {
    StoreError::Unavailable("the store is closed".into())
}

impl RedbStore {
    /// Opens (creating) the store in `dir`, file [`FILE_NAME`]. Fails if another process has it
    /// open. Every connection left by a previous process is purged: their sockets died with it.
    pub fn open(dir: &Path, settings: RedbSettings) -> StoreResult<RedbStore> {
        settings.validate()?;
        crate::create_private_dir(dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create data dir {}: {e}", dir.display())))?;
        let path = dir.join(FILE_NAME);
        let db = Database::builder().set_cache_size(settings.cache_bytes).create(&path).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => StoreError::Unavailable(format!(
                "{} is in use by another process (one process owns a data dir)",
                path.display()
            )),
            other => StoreError::Unavailable(format!("cannot open {}: {other}", path.display())),
        })?;
        crate::make_file_private(&path)?;
        let (purged, journal_clock) = prepare(&db)?;
        let empty_room_ttl_ms = i64::try_from(settings.empty_room_ttl.as_millis()).unwrap_or(i64::MAX);
        info!(dir = %dir.display(), purged, "embedded store opened; connections of the previous process purged");
        let db = Arc::new(db);
        let index = Arc::new(RwLock::new(Index::default()));
        let (requests, receiver) = mpsc::channel();
        let writer =
            Writer { db: db.clone(), index: index.clone(), settings, journal_clock, last_durable: Instant::now() };
        let handle = std::thread::Builder::new()
            .name("dynamowave-redb-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer thread: {e}")))?;
        Ok(RedbStore {
            db,
            index,
            requests,
            writer: Mutex::new(Some(handle)),
            dir: dir.to_path_buf(),
            purged_on_open: purged,
            claims: Mutex::new(Claims::default()),
            empty_room_ttl_ms,
        })
    }

    /// How many connections the open purged (left by a process that did not shut down cleanly,
    /// or by one that did: `$disconnect` is best-effort).
    pub fn purged_on_open(&self) -> usize {
        self.purged_on_open
    }

    /// The data dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many connections are registered.
    pub fn connection_count(&self) -> usize {
        self.index.read().len()
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> StoreResult<T> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(make(reply)).map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Waits until every write sent before it is committed, with an fsync.
    pub async fn flush(&self) -> StoreResult<()> {
        self.call(Request::Flush).await
    }

    /// Drains the writer, makes a final durable commit and stops the writer thread. Later calls
    /// fail with `Unavailable("the store is closed")`.
    pub async fn close(&self) -> StoreResult<()> {
        let result = self.call(Request::Shutdown).await;
        self.join_writer();
        result
    }

    fn join_writer(&self) {
        let handle = self.writer.lock().take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            warn!("the writer thread panicked");
        }
    }

    /// Runs retention and journal folding now (they also run every `maintenance_interval`).
    pub async fn run_maintenance(&self) -> StoreResult<MaintenanceReport> {
        self.call(Request::Maintain).await
    }

    /// Admin: deletes a room's whole history, its idempotency keys and its epoch (the next use
    /// starts a new log with a new epoch). Journaled, so [`RedbStore::restore_to`] or
    /// [`crate::restore`](fn@crate::restore) can undo it within the PITR window. Returns how many messages went.
    pub async fn delete_room_history(&self, room: &str) -> StoreResult<u64> {
        self.call(|reply| Request::DeleteRoomHistory(room.to_string(), reply)).await
    }

    /// Point-in-time recovery from this (running) store into a new data dir: the state as of
    /// `to`. See [`crate::restore`](fn@crate::restore) for the offline form.
    pub fn restore_to(&self, to: chrono::DateTime<chrono::Utc>, into_dir: &Path) -> StoreResult<RestoreReport> {
        restore_from(self.db.as_ref(), to, into_dir)
    }

    /// In memory, room-keyed or per connection: (rooms with a cached recipient list, rooms with
    /// members, connections with room claims). For tests that check rooms leave memory.
    pub fn memory_entries(&self) -> (usize, usize, usize) {
        let index = self.index.read();
        let claims = self.claims.lock().len();
        (index.cached_rooms(), index.rooms_with_members(), claims)
    }

    /// On disk: (rooms, keys of the activity index). Equal unless the store is broken.
    pub fn room_rows(&self) -> StoreResult<(u64, u64)> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let rooms = txn.open_table(ROOMS).map_err(db_err)?.len().map_err(db_err)?;
        let activity = txn.open_table(ROOM_ACTIVITY).map_err(db_err)?.len().map_err(db_err)?;
        Ok((rooms, activity))
    }

    /// Empty, idle past the TTL, and nobody in it: not listed, not existing.
    fn lapsed(&self, room: &str, meta: &RoomMeta) -> bool {
        meta.idle_and_empty(self.empty_room_ttl_ms, dynamowave_core::model::now_ms())
            && !self.index.read().has_members(room)
    }

    fn room_meta(&self, room: &str) -> StoreResult<Option<RoomMeta>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let rooms = txn.open_table(ROOMS).map_err(db_err)?;
        match rooms.get(room).map_err(db_err)? {
            Some(v) => Ok(Some(decode(v.value(), "room meta")?)),
            None => Ok(None),
        }
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        let (reply, _) = oneshot::channel();
        // Fails only if the writer already stopped (after close): nothing left to do then.
        let _ = self.requests.send(Request::Shutdown(reply));
        self.join_writer();
    }
}

/// At open: creates the tables, checks the format, purges connections, sets the journal
/// horizon of a new store. Returns (purged, last journal key).
fn prepare(db: &Database) -> StoreResult<(usize, u64)> {
    let txn = db.begin_write().map_err(db_err)?;
    ensure_tables(&txn)?;
    let purged;
    let journal_clock;
    {
        let mut meta = txn.open_table(META).map_err(db_err)?;
        let format = meta.get(META_FORMAT).map_err(db_err)?.map(|g| g.value());
        match format {
            None => {
                meta.insert(META_FORMAT, FORMAT_VERSION).map_err(db_err)?;
            }
            Some(FORMAT_VERSION) => {}
            Some(other) => {
                return Err(StoreError::Corrupt(format!(
                    "data dir format {other}, this build reads format {FORMAT_VERSION}"
                )));
            }
        }
        if meta.get(META_HORIZON).map_err(db_err)?.is_none() {
            meta.insert(META_HORIZON, now_micros()).map_err(db_err)?;
        }
        let mut connections = txn.open_table(CONNECTIONS).map_err(db_err)?;
        purged = usize::try_from(connections.len().map_err(db_err)?).unwrap_or(usize::MAX);
        connections.retain(|_, _| false).map_err(db_err)?;
        let journal = txn.open_table(JOURNAL).map_err(db_err)?;
        journal_clock = journal.last().map_err(db_err)?.map_or(0, |(k, _)| k.value());
    }
    // Derived from the rooms table: rebuilt, so a data dir of an older version or a restored one
    // gets a right one.
    rebuild_activity(&txn)?;
    txn.commit().map_err(db_err)?;
    Ok((purged, journal_clock))
}

// Connection reads come from the in-memory index (never the disk); writes go to the writer.
#[async_trait]
impl ConnectionStore for RedbStore {
    async fn put_connection(&self, record: &ConnectionRecord) -> StoreResult<()> {
        self.call(|reply| Request::PutConnection(record.clone(), reply)).await
    }

    async fn get_connection(&self, connection_id: &str) -> StoreResult<Option<ConnectionRecord>> {
        Ok(self.index.read().get(connection_id).cloned())
    }

    async fn delete_connection(&self, connection_id: &str) -> StoreResult<Option<ConnectionRecord>> {
        let removed = self.call(|reply| Request::DeleteConnections(vec![connection_id.to_string()], reply)).await?;
        Ok(removed.into_iter().next())
    }

    async fn delete_connections(&self, connection_ids: &[String]) -> StoreResult<()> {
        if connection_ids.is_empty() {
            return Ok(());
        }
        self.call(|reply| Request::DeleteConnections(connection_ids.to_vec(), reply)).await.map(drop)
    }

    async fn set_room(&self, connection_id: &str, room: Option<&str>) -> StoreResult<ConnectionRecord> {
        self.call(|reply| Request::SetRoom(connection_id.to_string(), room.map(str::to_string), reply)).await
    }

    async fn set_name(&self, connection_id: &str, name: &str) -> StoreResult<ConnectionRecord> {
        self.call(|reply| Request::SetName(connection_id.to_string(), name.to_string(), reply)).await
    }

    async fn members(&self, room: &str, next: Option<&str>, page_size: usize) -> StoreResult<Page<ConnectionRecord>> {
        Ok(self.index.read().members(room, next, page_size))
    }

    async fn name_holders(&self, name: &str) -> StoreResult<Vec<ConnectionRecord>> {
        let key = dynamowave_core::names::name_key(name);
        Ok(self.index.read().holders(&key))
    }

    async fn recipients(
        &self,
        room: &str,
        _page_size: usize,
    ) -> StoreResult<std::sync::Arc<[dynamowave_core::store::Recipient]>> {
        Ok(self.index.read().recipients(room))
    }
}

// MessageLog reads run a short read transaction inline: they hit redb's page cache and take
// microseconds, less than a hop to a blocking pool would.
#[async_trait]
impl MessageLog for RedbStore {
    async fn append(&self, message: NewMessage) -> StoreResult<Appended> {
        self.call(|reply| Request::Append(message, reply)).await
    }

    async fn read_after(&self, room: &str, after: u64, limit: usize) -> StoreResult<Vec<StoredMessage>> {
        if after == u64::MAX || limit == 0 {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read().map_err(db_err)?;
        let messages = txn.open_table(MESSAGES).map_err(db_err)?;
        let mut out = Vec::new();
        for item in messages.range((room, after + 1)..=(room, u64::MAX)).map_err(db_err)?.take(limit) {
            let (_, v) = item.map_err(db_err)?;
            out.push(decode::<StoredRecord>(v.value(), "message")?.message);
        }
        Ok(out)
    }

    async fn read_before(&self, room: &str, before: Option<u64>, limit: usize) -> StoreResult<Vec<StoredMessage>> {
        let before = before.unwrap_or(u64::MAX);
        if before == 0 || limit == 0 {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read().map_err(db_err)?;
        let messages = txn.open_table(MESSAGES).map_err(db_err)?;
        let mut out = Vec::new();
        for item in messages.range((room, 0)..(room, before)).map_err(db_err)?.rev().take(limit) {
            let (_, v) = item.map_err(db_err)?;
            out.push(decode::<StoredRecord>(v.value(), "message")?.message);
        }
        Ok(out)
    }

    async fn room_state(&self, room: &str) -> StoreResult<RoomState> {
        if let Some(meta) = self.room_meta(room)?
            && !meta.idle_and_empty(self.empty_room_ttl_ms, dynamowave_core::model::now_ms())
        {
            return Ok(meta.state(room));
        }
        // First ask (or the empty room lapsed): the log (and its epoch) is created, through the
        // writer like any write.
        self.call(|reply| Request::EnsureRoom(room.to_string(), reply)).await
    }

    async fn room_exists(&self, room: &str) -> StoreResult<bool> {
        Ok(self.room_meta(room)?.is_some_and(|meta| !self.lapsed(room, &meta)))
    }

    // One short read transaction: `limit` keys of the activity index backwards from the cursor
    // (plus the lapsed rooms that the next maintenance pass will remove), never every room.
    async fn rooms_page(&self, after: Option<&RoomsCursor>, limit: usize) -> StoreResult<RoomsPage> {
        let limit = limit.max(1);
        let txn = self.db.begin_read().map_err(db_err)?;
        let activity = txn.open_table(ROOM_ACTIVITY).map_err(db_err)?;
        let rooms = txn.open_table(ROOMS).map_err(db_err)?;
        let keys = match after {
            Some(c) => activity.range(..(c.active_ms, c.room.as_str())).map_err(db_err)?,
            None => activity.range::<(i64, &str)>(..).map_err(db_err)?,
        };
        let mut page = RoomsPage::default();
        let mut last_active = 0;
        for item in keys.rev() {
            let (k, _) = item.map_err(db_err)?;
            let (active_ms, room) = k.value();
            let Some(v) = rooms.get(room).map_err(db_err)? else { continue };
            // One unreadable room must not hide every other one.
            let meta: RoomMeta = match decode(v.value(), "room meta") {
                Ok(meta) => meta,
                Err(e) => {
                    warn!(room = ?room, error = %e, "skipping a room whose record does not decode");
                    continue;
                }
            };
            if self.lapsed(room, &meta) {
                continue;
            }
            if page.rooms.len() == limit {
                // One more room exists: the page ends at the last one taken.
                page.next = page.rooms.last().map(|r| RoomsCursor { active_ms: last_active, room: r.room.clone() });
                break;
            }
            last_active = active_ms;
            page.rooms.push(meta.state(room));
        }
        Ok(page)
    }

    async fn claim_room(
        &self,
        connection_id: &str,
        room: &str,
        max: usize,
        _expires_at: i64,
    ) -> StoreResult<RoomClaim> {
        let mut claims = self.claims.lock();
        claims.sweep_if_due(|id| self.index.read().get(id).is_some());
        Ok(claims.claim(connection_id, room, max))
    }

    async fn release_rooms(&self, connection_id: &str) -> StoreResult<()> {
        self.claims.lock().release(connection_id);
        Ok(())
    }
}
