//! The on-disk format: table definitions, the records stored in them, and the MessageLog journal
//! with [`apply`], the one function that turns a journal entry into table changes. Live writes,
//! the folding of old journal entries into the base tables, and restore all go through it, so a
//! replay produces exactly what the live store wrote.

use dynamowave_core::model::{RoomState, StoredMessage};
use dynamowave_core::{StoreError, StoreResult};
use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

/// The file inside the data dir.
pub const FILE_NAME: &str = "dynamowave.redb";

/// connection_id -> postcard [`dynamowave_core::ConnectionRecord`] ([`encode_connection`]).
/// Purged at every open, so its encoding can change between versions without a migration.
pub(crate) const CONNECTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("connections");
/// (room, seq) -> JSON [`StoredRecord`].
pub(crate) const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
/// (room, publisher, id) -> seq.
pub(crate) const IDEMPOTENCY: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("idempotency");
/// room -> JSON [`RoomMeta`].
pub(crate) const ROOMS: TableDefinition<&str, &[u8]> = TableDefinition::new("rooms");
/// (last activity in ms, room) -> (): the live rooms ordered by last activity, so `rooms_page`
/// reads one page backwards from a cursor instead of sorting every room. Derived from
/// [`ROOMS`] (rebuilt at every open), so it has no base generation and is not journaled.
pub(crate) const ROOM_ACTIVITY: TableDefinition<(i64, &str), ()> = TableDefinition::new("room_activity");
/// commit time in µs since the epoch (strictly increasing) -> JSON [`JournalEntry`].
pub(crate) const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal");
/// The MessageLog as of the journal horizon: the journal entries older than the PITR window,
/// folded in. `base + journal = live`.
pub(crate) const BASE_MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("base_messages");
pub(crate) const BASE_IDEMPOTENCY: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("base_idempotency");
pub(crate) const BASE_ROOMS: TableDefinition<&str, &[u8]> = TableDefinition::new("base_rooms");
/// Named numbers: [`META_FORMAT`], [`META_HORIZON`].
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub(crate) const META_FORMAT: &str = "format_version";
/// µs since the epoch: the oldest time a restore can reach (base tables hold the state then).
pub(crate) const META_HORIZON: &str = "journal_horizon_us";
pub(crate) const FORMAT_VERSION: u64 = 1;

/// Wraps any redb or codec error: nothing of redb leaks past this crate.
pub(crate) fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("redb: {e}"))
}

pub(crate) fn encode<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(format!("encoding: {e}")))
}

/// Connection records in postcard (a compact binary serde format): about a third of their JSON
/// size, and a table of 15,000 live connections is that much less of the page cache. (The
/// table is never read back: the registry is purged at open and served from memory.)
pub(crate) fn encode_connection(record: &dynamowave_core::ConnectionRecord) -> StoreResult<Vec<u8>> {
    postcard::to_stdvec(record).map_err(|e| StoreError::Corrupt(format!("encoding a connection: {e}")))
}

pub(crate) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// A stored message and who published it (for its idempotency key, which pruning removes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredRecord {
    pub publisher: String,
    pub message: StoredMessage,
}

/// A room's log position.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RoomMeta {
    /// Random, made when the room's log is created; a new log (after a history delete) gets a
    /// new one, so clients holding old positions learn they cannot resume from them.
    pub epoch: String,
    pub last_seq: u64,
    pub first_seq: u64,
    /// ms since the epoch of the newest message (0 when none).
    pub last_ts: i64,
    /// ms since the epoch when the log was created (0 in logs made before it was kept).
    #[serde(default)]
    pub created_ms: i64,
}

impl RoomMeta {
    /// The room's last activity, its key in [`ROOM_ACTIVITY`]: its creation or newest message.
    pub fn active_ms(&self) -> i64 {
        self.created_ms.max(self.last_ts)
    }

    /// No stored message: none yet, or retention pruned them all.
    pub fn is_empty(&self) -> bool {
        self.first_seq > self.last_seq
    }

    /// Empty and idle for `ttl_ms` at `now_ms` (whether anybody is in it is the caller's part).
    pub fn idle_and_empty(&self, ttl_ms: i64, now_ms: i64) -> bool {
        self.is_empty() && self.active_ms().saturating_add(ttl_ms) <= now_ms
    }

    pub fn state(&self, room: &str) -> RoomState {
        RoomState {
            room: room.to_string(),
            epoch: self.epoch.clone(),
            last_seq: self.last_seq,
            first_seq: self.first_seq,
        }
    }
}

/// One MessageLog mutation, as the journal keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum JournalEntry {
    RoomCreated {
        room: String,
        epoch: String,
        #[serde(default)]
        created_ms: i64,
    },
    Appended {
        publisher: String,
        message: StoredMessage,
    },
    /// Retention: messages with seq < `first_seq` are gone.
    Pruned {
        room: String,
        first_seq: u64,
    },
    /// The admin operation `delete_room_history`: the room's log, keys and epoch are gone.
    HistoryDeleted {
        room: String,
    },
    /// An empty room went unused for the empty-room TTL: its log is gone, if it is still empty.
    Expired {
        room: String,
    },
}

/// The three MessageLog tables of one generation (live or base) in a write transaction.
pub(crate) struct LogTables<'t> {
    pub messages: Table<'t, (&'static str, u64), &'static [u8]>,
    pub idempotency: Table<'t, (&'static str, &'static str, &'static str), u64>,
    pub rooms: Table<'t, &'static str, &'static [u8]>,
    /// [`ROOM_ACTIVITY`], of the live generation only.
    pub activity: Option<Table<'t, (i64, &'static str), ()>>,
}

impl<'t> LogTables<'t> {
    pub fn live(txn: &'t WriteTransaction) -> StoreResult<Self> {
        Ok(Self {
            messages: txn.open_table(MESSAGES).map_err(db_err)?,
            idempotency: txn.open_table(IDEMPOTENCY).map_err(db_err)?,
            rooms: txn.open_table(ROOMS).map_err(db_err)?,
            activity: Some(txn.open_table(ROOM_ACTIVITY).map_err(db_err)?),
        })
    }

    pub fn base(txn: &'t WriteTransaction) -> StoreResult<Self> {
        Ok(Self {
            messages: txn.open_table(BASE_MESSAGES).map_err(db_err)?,
            idempotency: txn.open_table(BASE_IDEMPOTENCY).map_err(db_err)?,
            rooms: txn.open_table(BASE_ROOMS).map_err(db_err)?,
            activity: None,
        })
    }

    pub fn room(&self, room: &str) -> StoreResult<Option<RoomMeta>> {
        match self.rooms.get(room).map_err(db_err)? {
            Some(v) => Ok(Some(decode(v.value(), "room meta")?)),
            None => Ok(None),
        }
    }

    /// Writes a room's meta, moving its key in the activity index.
    fn put_room(&mut self, room: &str, meta: &RoomMeta) -> StoreResult<()> {
        let old = self.room(room)?;
        self.rooms.insert(room, encode(meta)?.as_slice()).map_err(db_err)?;
        if let Some(activity) = &mut self.activity {
            if let Some(old) = old {
                activity.remove((old.active_ms(), room)).map_err(db_err)?;
            }
            activity.insert((meta.active_ms(), room), ()).map_err(db_err)?;
        }
        Ok(())
    }

    /// Removes a room's meta and its key in the activity index.
    fn remove_room(&mut self, room: &str) -> StoreResult<()> {
        let old = self.room(room)?;
        self.rooms.remove(room).map_err(db_err)?;
        if let (Some(activity), Some(old)) = (&mut self.activity, old) {
            activity.remove((old.active_ms(), room)).map_err(db_err)?;
        }
        Ok(())
    }

    pub fn message(&self, room: &str, seq: u64) -> StoreResult<Option<StoredRecord>> {
        match self.messages.get((room, seq)).map_err(db_err)? {
            Some(v) => Ok(Some(decode(v.value(), "message")?)),
            None => Ok(None),
        }
    }

    /// Removes the room's messages with seq in `from..to`, with their idempotency keys.
    fn remove_messages(&mut self, room: &str, from: u64, to: u64) -> StoreResult<()> {
        let mut doomed: Vec<(u64, Option<(String, String)>)> = Vec::new();
        for item in self.messages.range((room, from)..(room, to)).map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            // A record that does not decode goes too; only its idempotency key cannot be found.
            let key = match decode::<StoredRecord>(v.value(), "message") {
                Ok(record) => record.message.id.map(|id| (record.publisher, id)),
                Err(e) => {
                    tracing::warn!(room, seq = k.value().1, error = %e, "removing a message that does not decode");
                    None
                }
            };
            doomed.push((k.value().1, key));
        }
        for (seq, key) in doomed {
            self.messages.remove((room, seq)).map_err(db_err)?;
            if let Some((publisher, id)) = key {
                self.idempotency.remove((room, publisher.as_str(), id.as_str())).map_err(db_err)?;
            }
        }
        Ok(())
    }
}

/// Applies one journal entry to a generation of the MessageLog tables.
pub(crate) fn apply(tables: &mut LogTables<'_>, entry: &JournalEntry) -> StoreResult<()> {
    match entry {
        JournalEntry::RoomCreated { room, epoch, created_ms } => {
            let meta =
                RoomMeta { epoch: epoch.clone(), last_seq: 0, first_seq: 1, last_ts: 0, created_ms: *created_ms };
            tables.put_room(room, &meta)
        }
        JournalEntry::Appended { publisher, message } => {
            let room = message.room.as_str();
            let mut meta =
                tables.room(room)?.ok_or_else(|| StoreError::Corrupt(format!("append to room {room} with no log")))?;
            if message.seq != meta.last_seq + 1 {
                return Err(StoreError::Corrupt(format!(
                    "append of seq {} to room {room} whose last seq is {}",
                    message.seq, meta.last_seq
                )));
            }
            let record = StoredRecord { publisher: publisher.clone(), message: message.clone() };
            tables.messages.insert((room, message.seq), encode(&record)?.as_slice()).map_err(db_err)?;
            if let Some(id) = &message.id {
                tables.idempotency.insert((room, publisher.as_str(), id.as_str()), message.seq).map_err(db_err)?;
            }
            meta.last_seq = message.seq;
            meta.last_ts = meta.last_ts.max(message.ts);
            tables.put_room(room, &meta)
        }
        JournalEntry::Pruned { room, first_seq } => {
            let Some(mut meta) = tables.room(room)? else { return Ok(()) };
            tables.remove_messages(room, 0, *first_seq)?;
            meta.first_seq = meta.first_seq.max(*first_seq);
            tables.put_room(room, &meta)
        }
        JournalEntry::HistoryDeleted { room } => {
            tables.remove_messages(room, 0, u64::MAX)?;
            tables.remove_room(room)
        }
        JournalEntry::Expired { room } => {
            // Only an empty log expires: the entry is a no-op if a message came in between.
            match tables.room(room)? {
                Some(meta) if meta.is_empty() => {
                    tables.remove_messages(room, 0, u64::MAX)?;
                    tables.remove_room(room)
                }
                _ => Ok(()),
            }
        }
    }
}

/// Opens (creating) every table, so readers never meet a missing one.
pub(crate) fn ensure_tables(txn: &WriteTransaction) -> StoreResult<()> {
    txn.open_table(CONNECTIONS).map_err(db_err)?;
    LogTables::live(txn)?;
    LogTables::base(txn)?;
    txn.open_table(JOURNAL).map_err(db_err)?;
    txn.open_table(META).map_err(db_err)?;
    Ok(())
}

/// Rebuilds [`ROOM_ACTIVITY`] from [`ROOMS`] (at open: a data dir of an older version, or a
/// restored one, has none or a stale one). Returns how many rooms there are.
pub(crate) fn rebuild_activity(txn: &WriteTransaction) -> StoreResult<u64> {
    let rooms = txn.open_table(ROOMS).map_err(db_err)?;
    let mut activity = txn.open_table(ROOM_ACTIVITY).map_err(db_err)?;
    activity.retain(|_, _| false).map_err(db_err)?;
    let mut count = 0;
    for item in rooms.iter().map_err(db_err)? {
        let (k, v) = item.map_err(db_err)?;
        // One unreadable room must not stop the open: it is left out of the index (and of
        // `rooms`), and logged.
        let meta: RoomMeta = match decode(v.value(), "room meta") {
            Ok(meta) => meta,
            Err(e) => {
                tracing::warn!(room = ?k.value(), error = %e, "skipping a room whose record does not decode");
                continue;
            }
        };
        activity.insert((meta.active_ms(), k.value()), ()).map_err(db_err)?;
        count += 1;
    }
    Ok(count)
}
