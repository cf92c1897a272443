//! The writer thread: group commit.
//!
//! redb allows one write transaction at a time and a durable commit costs an fsync, so one
//! thread owns all writing. It takes the first pending request, drains whatever else is queued
//! (up to `max_batch`), applies them all in ONE transaction, commits, and only then updates the
//! in-memory index and answers each waiter. N concurrent appends thus share one fsync.
//!
//! A batch is durable (fsync before the answers) when it holds any MessageLog change, a flush or
//! a shutdown; a batch of connection changes only commits without fsync (the registry is purged
//! at the next open anyway), except that one commit per `durable_interval` is made durable so
//! redb can reclaim the pages of earlier non-durable commits.
//!
//! A logical refusal (Conflict, NameTaken, NotFound) answers only its own request; a storage error aborts
//! the whole transaction and every request of the batch gets it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use dynamowave_core::model::{Appended, NameOwner, NewMessage, RoomState, StoredMessage};
use dynamowave_core::names::name_key;
use dynamowave_core::{ConnectionRecord, StoreError, StoreResult};
use parking_lot::RwLock;
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, Table, WriteTransaction};
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use crate::index::Index;
use crate::tables::{
    CONNECTIONS, JOURNAL, JournalEntry, LogTables, META, META_HORIZON, RoomMeta, apply, db_err, decode, encode,
    encode_connection,
};
use crate::{RedbSettings, now_micros};

pub(crate) type Reply<T> = oneshot::Sender<StoreResult<T>>;

/// What retention and journal pruning did in one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Messages removed by retention.
    pub messages_pruned: u64,
    /// Empty rooms removed after the empty-room TTL.
    pub rooms_expired: u64,
    /// Journal entries folded into the base tables (older than the PITR window).
    pub journal_folded: u64,
}

pub(crate) enum Request {
    PutConnection(ConnectionRecord, Reply<()>),
    /// Deletes every id; answers with the records that were there.
    DeleteConnections(Vec<String>, Reply<Vec<ConnectionRecord>>),
    SetRoom(String, Option<String>, Reply<ConnectionRecord>),
    SetName(String, String, Reply<ConnectionRecord>),
    Append(NewMessage, Reply<Appended>),
    /// Creates the room's log (and epoch) if it has none.
    EnsureRoom(String, Reply<RoomState>),
    /// Answers how many messages were deleted.
    DeleteRoomHistory(String, Reply<u64>),
    Maintain(Reply<MaintenanceReport>),
    Flush(Reply<()>),
    Shutdown(Reply<()>),
}

impl Request {
    fn needs_durable(&self) -> bool {
        !matches!(
            self,
            Request::PutConnection(..) | Request::DeleteConnections(..) | Request::SetRoom(..) | Request::SetName(..)
        )
    }
}

/// Sends a result once the batch's fate is known: `None` = committed.
type Finish = Box<dyn FnOnce(Option<&str>) + Send>;

fn finish<T: Send + 'static>(reply: Reply<T>, result: StoreResult<T>) -> Finish {
    Box::new(move |failed| {
        let result = match failed {
            None => result,
            Some(why) => Err(StoreError::Unavailable(format!("the write was rolled back: {why}"))),
        };
        // The waiter may have given up (its future was dropped); nothing is owed to it then.
        let _ = reply.send(result);
    })
}

/// Connection changes of the current batch, not yet in the index.
#[derive(Default)]
struct Overlay {
    records: HashMap<String, Option<ConnectionRecord>>,
    /// Name key -> the ids given a name of that key in this batch (one may have changed again
    /// since: [`Writer::name_free`] checks each one's latest record).
    named: HashMap<String, Vec<String>>,
}

impl Overlay {
    /// Stages a change; `new_key` is the key of a name the change gives the connection.
    fn stage(&mut self, id: &str, record: Option<ConnectionRecord>, new_key: Option<String>) {
        if let Some(key) = new_key {
            self.named.entry(key).or_default().push(id.to_string());
        }
        self.records.insert(id.to_string(), record);
    }
}

struct Tx<'t> {
    connections: Table<'t, &'static str, &'static [u8]>,
    log: LogTables<'t>,
    journal: Table<'t, u64, &'static [u8]>,
}

pub(crate) struct Writer {
    pub db: Arc<Database>,
    pub index: Arc<RwLock<Index>>,
    pub settings: RedbSettings,
    /// The last journal key handed out: keys are commit times in µs, made strictly increasing.
    pub journal_clock: u64,
    pub last_durable: Instant,
}

impl Writer {
    pub fn run(mut self, requests: Receiver<Request>) {
        let mut next_maintenance = Instant::now() + self.settings.maintenance_interval;
        loop {
            let wait = next_maintenance.saturating_duration_since(Instant::now());
            let first = match requests.recv_timeout(wait) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) => {
                    let (reply, _) = oneshot::channel();
                    self.batch(vec![Request::Maintain(reply)]);
                    next_maintenance = Instant::now() + self.settings.maintenance_interval;
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // Every handle is gone: make what was committed without fsync durable.
                    let (reply, _) = oneshot::channel();
                    self.batch(vec![Request::Flush(reply)]);
                    break;
                }
            };
            // Let the threads that post requests run before taking the batch: on a busy core the
            // writer, just woken, would otherwise commit one request at a time (a commit's cost
            // is per transaction, so bigger batches are cheaper per write).
            // (Once: yielding again when the queue is empty only spins; measured slower.)
            std::thread::yield_now();
            let mut batch = vec![first];
            while batch.len() < self.settings.max_batch {
                match requests.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            if self.batch(batch) {
                break;
            }
        }
        debug!("writer thread stopped");
    }

    /// Runs one batch in one transaction. Returns true when it held a shutdown.
    fn batch(&mut self, batch: Vec<Request>) -> bool {
        let started = Instant::now();
        let size = batch.len();
        let durable =
            batch.iter().any(Request::needs_durable) || self.last_durable.elapsed() >= self.settings.durable_interval;
        let shutdown = batch.iter().any(|r| matches!(r, Request::Shutdown(_)));
        let mut finishes: Vec<Finish> = Vec::with_capacity(size);
        let mut overlay = Overlay::default();
        let fatal = match self.db.begin_write() {
            Err(e) => {
                for request in batch {
                    finishes.push(fail_later(request));
                }
                Some(db_err(e).to_string())
            }
            Ok(mut txn) => {
                let applied = self.apply_all(&txn, batch, &mut overlay, &mut finishes);
                match applied {
                    Err(e) => {
                        // Dropping the transaction rolls it back; abort says so explicitly.
                        let _ = txn.abort();
                        Some(e.to_string())
                    }
                    Ok(()) => {
                        let level = if durable { Durability::Immediate } else { Durability::None };
                        match txn.set_durability(level).map_err(db_err).and_then(|()| txn.commit().map_err(db_err)) {
                            Ok(()) => None,
                            Err(e) => Some(e.to_string()),
                        }
                    }
                }
            }
        };
        match &fatal {
            None => {
                if durable {
                    self.last_durable = Instant::now();
                }
                if !overlay.records.is_empty() {
                    let mut index = self.index.write();
                    for (id, record) in overlay.records {
                        index.set(&id, record);
                    }
                }
                debug!(size, durable, micros = started.elapsed().as_micros() as u64, "batch committed");
            }
            Some(why) => {
                error!(size, error = %why, "write batch failed; every request in it is answered with the error")
            }
        }
        for f in finishes {
            f(fatal.as_deref());
        }
        shutdown
    }

    fn apply_all(
        &mut self,
        txn: &WriteTransaction,
        batch: Vec<Request>,
        overlay: &mut Overlay,
        finishes: &mut Vec<Finish>,
    ) -> StoreResult<()> {
        let mut tx = Tx {
            connections: txn.open_table(CONNECTIONS).map_err(db_err)?,
            log: LogTables::live(txn)?,
            journal: txn.open_table(JOURNAL).map_err(db_err)?,
        };
        let mut batch = batch.into_iter();
        while let Some(request) = batch.next() {
            if let Err(e) = self.apply_one(txn, &mut tx, request, overlay, finishes) {
                // The rest are answered with the same failure once the batch is rolled back.
                for rest in batch {
                    finishes.push(fail_later(rest));
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Applies one request; a returned error is fatal to the batch (its waiter is already in
    /// `finishes`).
    fn apply_one(
        &mut self,
        txn: &WriteTransaction,
        tx: &mut Tx<'_>,
        request: Request,
        overlay: &mut Overlay,
        finishes: &mut Vec<Finish>,
    ) -> StoreResult<()> {
        macro_rules! settle {
            ($reply:expr, $result:expr) => {{
                let result: StoreResult<StoreResult<_>> = $result;
                match result {
                    Ok(inner) => {
                        finishes.push(finish($reply, inner));
                        Ok(())
                    }
                    Err(fatal) => {
                        finishes.push(finish($reply, Err(StoreError::Unavailable(fatal.to_string()))));
                        Err(fatal)
                    }
                }
            }};
        }
        match request {
            Request::PutConnection(record, reply) => settle!(reply, self.put_connection(tx, overlay, record)),
            Request::DeleteConnections(ids, reply) => settle!(reply, self.delete_connections(tx, overlay, &ids)),
            Request::SetRoom(id, room, reply) => settle!(
                reply,
                self.update_connection(tx, overlay, &id, |c| c.room = room).map(|r| r.map(|(old, _)| old))
            ),
            Request::SetName(id, name, reply) => settle!(reply, self.set_name(tx, overlay, &id, name)),
            Request::Append(message, reply) => settle!(reply, self.append(tx, message).map(Ok)),
            Request::EnsureRoom(room, reply) => settle!(reply, self.ensure_room(tx, &room).map(|m| Ok(m.state(&room)))),
            Request::DeleteRoomHistory(room, reply) => settle!(reply, self.delete_history(tx, &room).map(Ok)),
            Request::Maintain(reply) => settle!(reply, self.maintain(txn, tx).map(Ok)),
            Request::Flush(reply) | Request::Shutdown(reply) => settle!(reply, Ok(Ok(()))),
        }
    }

    fn current(&self, overlay: &Overlay, id: &str) -> Option<ConnectionRecord> {
        match overlay.records.get(id) {
            Some(staged) => staged.clone(),
            None => self.index.read().get(id).cloned(),
        }
    }

    /// `NameTaken` if a connection other than `me`, of another owner, holds `key`: committed (in
    /// the index) or staged earlier in this batch. Only this thread writes, so nothing can
    /// claim the key between this check and the commit.
    fn name_free(&self, overlay: &Overlay, key: &str, owner: NameOwner<'_>, me: &str) -> StoreResult<()> {
        let index = self.index.read();
        let staged = overlay.named.get(key).into_iter().flatten().map(String::as_str);
        for id in index.holder_ids(key).chain(staged) {
            if id == me {
                continue;
            }
            let latest = match overlay.records.get(id) {
                Some(staged) => staged.as_ref(),
                None => index.get(id),
            };
            if let Some(holder) = latest
                && holder.name_owner() != owner
                && name_key(&holder.name) == key
            {
                return Err(StoreError::NameTaken(format!("the name key {key:?} is held by {}", holder.connection_id)));
            }
        }
        Ok(())
    }

    fn put_connection(
        &self,
        tx: &mut Tx<'_>,
        overlay: &mut Overlay,
        record: ConnectionRecord,
    ) -> StoreResult<StoreResult<()>> {
        if self.current(overlay, &record.connection_id).is_some() {
            return Ok(Err(StoreError::Conflict(format!("connection {} is registered", record.connection_id))));
        }
        let key = name_key(&record.name);
        if let Err(taken) = self.name_free(overlay, &key, record.name_owner(), &record.connection_id) {
            return Ok(Err(taken));
        }
        tx.connections.insert(record.connection_id.as_str(), encode_connection(&record)?.as_slice()).map_err(db_err)?;
        let id = record.connection_id.clone();
        overlay.stage(&id, Some(record), Some(key));
        Ok(Ok(()))
    }

    /// Renames a registered connection if no other owner holds the new name's key.
    fn set_name(
        &self,
        tx: &mut Tx<'_>,
        overlay: &mut Overlay,
        id: &str,
        name: String,
    ) -> StoreResult<StoreResult<ConnectionRecord>> {
        let Some(old) = self.current(overlay, id) else {
            return Ok(Err(StoreError::NotFound(format!("connection {id}"))));
        };
        let key = name_key(&name);
        if let Err(taken) = self.name_free(overlay, &key, old.name_owner(), id) {
            return Ok(Err(taken));
        }
        let mut new = old;
        new.name = name;
        tx.connections.insert(id, encode_connection(&new)?.as_slice()).map_err(db_err)?;
        overlay.stage(id, Some(new.clone()), Some(key));
        Ok(Ok(new))
    }

    fn delete_connections(
        &self,
        tx: &mut Tx<'_>,
        overlay: &mut Overlay,
        ids: &[String],
    ) -> StoreResult<StoreResult<Vec<ConnectionRecord>>> {
        let mut removed = Vec::new();
        for id in ids {
            if let Some(old) = self.current(overlay, id) {
                tx.connections.remove(id.as_str()).map_err(db_err)?;
                overlay.stage(id, None, None);
                removed.push(old);
            }
        }
        Ok(Ok(removed))
    }

    /// Changes a registered connection; answers (old, new).
    fn update_connection(
        &self,
        tx: &mut Tx<'_>,
        overlay: &mut Overlay,
        id: &str,
        change: impl FnOnce(&mut ConnectionRecord),
    ) -> StoreResult<StoreResult<(ConnectionRecord, ConnectionRecord)>> {
        let Some(old) = self.current(overlay, id) else {
            return Ok(Err(StoreError::NotFound(format!("connection {id}"))));
        };
        let mut new = old.clone();
        change(&mut new);
        tx.connections.insert(id, encode_connection(&new)?.as_slice()).map_err(db_err)?;
        overlay.stage(id, Some(new.clone()), None);
        Ok(Ok((old, new)))
    }

    /// Applies an entry to the live tables and journals it under the next commit time.
    fn record(&mut self, tx: &mut Tx<'_>, entry: &JournalEntry) -> StoreResult<()> {
        apply(&mut tx.log, entry)?;
        self.journal_clock = now_micros().max(self.journal_clock + 1);
        tx.journal.insert(self.journal_clock, encode(entry)?.as_slice()).map_err(db_err)?;
        Ok(())
    }

    /// The room's log; made anew (a new epoch) if it has none, or if it lapsed (empty and idle
    /// for the empty-room TTL) and awaits expiry.
    fn ensure_room(&mut self, tx: &mut Tx<'_>, room: &str) -> StoreResult<RoomMeta> {
        let created_ms = dynamowave_core::model::now_ms();
        if let Some(meta) = tx.log.room(room)? {
            if !meta.idle_and_empty(millis(self.settings.empty_room_ttl), created_ms) {
                return Ok(meta);
            }
            self.record(tx, &JournalEntry::Expired { room: room.to_string() })?;
        }
        let epoch = uuid::Uuid::new_v4().simple().to_string();
        self.record(tx, &JournalEntry::RoomCreated { room: room.to_string(), epoch, created_ms })?;
        tx.log.room(room)?.ok_or_else(|| StoreError::Corrupt(format!("room {room} vanished after creation")))
    }

    fn append(&mut self, tx: &mut Tx<'_>, new: NewMessage) -> StoreResult<Appended> {
        if let Some(id) = &new.id {
            let known =
                tx.log.idempotency.get((new.room.as_str(), new.publisher.as_str(), id.as_str())).map_err(db_err)?;
            if let Some(seq) = known.map(|g| g.value()) {
                let stored = tx.log.message(&new.room, seq)?.ok_or_else(|| {
                    StoreError::Corrupt(format!("idempotency key points at missing seq {seq} of {}", new.room))
                })?;
                return Ok(Appended { message: stored.message, duplicate: true });
            }
        }
        let meta = self.ensure_room(tx, &new.room)?;
        let message = StoredMessage {
            room: new.room,
            seq: meta.last_seq + 1,
            id: new.id,
            from: new.from,
            text: new.text,
            ts: new.ts,
        };
        let entry = JournalEntry::Appended { publisher: new.publisher, message };
        self.record(tx, &entry)?;
        let JournalEntry::Appended { message, .. } = entry else {
            return Err(StoreError::Corrupt("journal entry changed kind".into()));
        };
        Ok(Appended { message, duplicate: false })
    }

    fn delete_history(&mut self, tx: &mut Tx<'_>, room: &str) -> StoreResult<u64> {
        let Some(meta) = tx.log.room(room)? else { return Ok(0) };
        let count = (meta.last_seq + 1).saturating_sub(meta.first_seq);
        self.record(tx, &JournalEntry::HistoryDeleted { room: room.to_string() })?;
        info!(room, messages = count, "room history deleted (journaled: restorable within the PITR window)");
        Ok(count)
    }

    /// Retention (messages older than `retention` go, first_seq advances), expiry (rooms with
    /// no stored message and no member, idle for `empty_room_ttl`, go) and PITR (journal
    /// entries older than `pitr_window` are folded into the base tables).
    fn maintain(&mut self, txn: &WriteTransaction, tx: &mut Tx<'_>) -> StoreResult<MaintenanceReport> {
        let mut report = MaintenanceReport::default();
        let now_ms = dynamowave_core::model::now_ms();
        let cutoff_ms = now_ms - millis(self.settings.retention);
        let ttl_ms = millis(self.settings.empty_room_ttl);
        let mut rooms: Vec<(String, RoomMeta)> = Vec::new();
        // A record that does not decode is logged and passed over: one bad record must not stop
        // retention and folding for the whole store.
        for item in tx.log.rooms.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            match decode(v.value(), "room meta") {
                Ok(meta) => rooms.push((k.value().to_string(), meta)),
                Err(e) => warn!(room = ?k.value(), error = %e, "maintenance skips a room whose record does not decode"),
            }
        }
        for (room, meta) in rooms {
            let mut first = meta.first_seq;
            for item in tx.log.messages.range((room.as_str(), meta.first_seq)..).map_err(db_err)? {
                let (k, v) = item.map_err(db_err)?;
                let (key_room, seq) = k.value();
                if key_room != room {
                    break;
                }
                match decode::<crate::tables::StoredRecord>(v.value(), "message") {
                    Ok(record) if record.message.ts >= cutoff_ms => break,
                    Ok(_) => first = seq + 1,
                    Err(e) => {
                        // Its age is unknown: keep it, and stop pruning this room here.
                        warn!(room, seq, error = %e, "maintenance stops at a message that does not decode");
                        break;
                    }
                }
            }
            if first > meta.first_seq {
                report.messages_pruned += first - meta.first_seq;
                self.record(tx, &JournalEntry::Pruned { room: room.clone(), first_seq: first })?;
                debug!(room, first_seq = first, "retention pruned old messages");
            }
            let now_empty = RoomMeta { first_seq: first, ..meta };
            if now_empty.idle_and_empty(ttl_ms, now_ms) && !self.index.read().has_members(&room) {
                self.record(tx, &JournalEntry::Expired { room: room.clone() })?;
                report.rooms_expired += 1;
                debug!(room, "empty room expired");
            }
        }

        let cutoff_us = now_micros().saturating_sub(micros(self.settings.pitr_window));
        let mut base = LogTables::base(txn)?;
        let mut folded_to = None;
        let mut drained = true;
        // The oldest entry, copied out so the table can be changed while folding it.
        let oldest = |journal: &Table<'_, u64, &'static [u8]>| -> StoreResult<Option<(u64, Vec<u8>)>> {
            Ok(journal.first().map_err(db_err)?.map(|(k, v)| (k.value(), v.value().to_vec())))
        };
        while let Some((key, bytes)) = oldest(&tx.journal)? {
            if key >= cutoff_us {
                break;
            }
            if report.journal_folded >= self.settings.max_fold_per_pass {
                drained = false;
                break;
            }
            match decode::<JournalEntry>(&bytes, "journal entry") {
                Ok(entry) => apply(&mut base, &entry)?,
                // It can never be applied; keeping it would stall folding behind it for good.
                Err(e) => error!(key, bytes = bytes.len(), error = %e, "dropping a journal entry that does not decode"),
            }
            tx.journal.remove(key).map_err(db_err)?;
            folded_to = Some(key);
            report.journal_folded += 1;
        }
        let horizon = if drained { Some(cutoff_us) } else { folded_to };
        if let Some(horizon) = horizon {
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let old = meta.get(META_HORIZON).map_err(db_err)?.map_or(0, |g| g.value());
            if horizon > old {
                meta.insert(META_HORIZON, horizon).map_err(db_err)?;
            }
        }
        if report != MaintenanceReport::default() {
            info!(
                messages_pruned = report.messages_pruned,
                rooms_expired = report.rooms_expired,
                journal_folded = report.journal_folded,
                journal_left = tx.journal.len().map_err(db_err)?,
                "maintenance"
            );
        }
        Ok(report)
    }
}

/// A request that never ran because an earlier one in its batch failed.
fn fail_later(request: Request) -> Finish {
    fn rolled_back<T: Send + 'static>(reply: Reply<T>) -> Finish {
        finish(reply, Err(StoreError::Unavailable("rolled back with its batch".into())))
    }
    match request {
        Request::PutConnection(_, r) | Request::Flush(r) | Request::Shutdown(r) => rolled_back(r),
        Request::DeleteConnections(_, r) => rolled_back(r),
        Request::SetRoom(_, _, r) | Request::SetName(_, _, r) => rolled_back(r),
        Request::Append(_, r) => rolled_back(r),
        Request::EnsureRoom(_, r) => rolled_back(r),
        Request::DeleteRoomHistory(_, r) => rolled_back(r),
        Request::Maintain(r) => rolled_back(r),
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
