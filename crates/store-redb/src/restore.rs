//! Point-in-time recovery: rebuilds the MessageLog as of a moment into a new data dir.
//!
//! The state at any time `t` within the window is `base + every journal entry with commit
//! time <= t`: the base tables hold the state at the journal horizon (entries older than the
//! PITR window are folded into them), the journal holds every later MessageLog mutation. The
//! restored store gets the same base and the journal up to `t`, so it can itself be restored to
//! any time between the horizon and `t`. Connections are not restored: they are purged at every
//! open anyway.

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use dynamowave_core::{StoreError, StoreResult};
use redb::{
    Database, DatabaseError, Key, ReadOnlyDatabase, ReadOnlyTable, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, Table, Value,
};
use tracing::{info, warn};

use crate::now_micros;
use crate::tables::{
    BASE_IDEMPOTENCY, BASE_MESSAGES, BASE_ROOMS, FILE_NAME, FORMAT_VERSION, JOURNAL, JournalEntry, LogTables, META,
    META_FORMAT, META_HORIZON, apply, db_err, decode, ensure_tables,
};

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// The moment restored to.
    pub to: DateTime<Utc>,
    /// The data dir written.
    pub into_dir: PathBuf,
    /// Journal entries replayed on top of the base.
    pub entries_replayed: u64,
    /// Rooms with a log in the restored store.
    pub rooms: u64,
    /// Messages in the restored store.
    pub messages: u64,
}

/// Restores the store in `from_dir` (which must not be open by a running server: stop it, or
/// use [`crate::RedbStore::restore_to`] on the running store) as of `to` into `into_dir`, which
/// must be missing or empty. `to` must lie within the PITR window: not before the journal
/// horizon, not in the future. If it fails once it has started writing, it removes what it
/// wrote: the dir it created, or the store file in the empty dir it was given.
pub fn restore(from_dir: &Path, to: DateTime<Utc>, into_dir: &Path) -> StoreResult<RestoreReport> {
    let path = from_dir.join(FILE_NAME);
    if !path.exists() {
        return Err(StoreError::NotFound(format!("no store to restore from: {} does not exist", path.display())));
    }
    let source = ReadOnlyDatabase::open(&path).map_err(|e| match e {
        DatabaseError::DatabaseAlreadyOpen => StoreError::Unavailable(format!(
            "{} is open by a running server: stop it first, or restore from the running store (RedbStore::restore_to)",
            path.display()
        )),
        other => StoreError::Unavailable(format!("cannot open {}: {other}", path.display())),
    })?;
    restore_from(&source, to, into_dir)
}

fn time(us: u64) -> String {
    i64::try_from(us)
        .ok()
        .and_then(|us| Utc.timestamp_micros(us).single())
        .map_or_else(|| format!("{us} µs"), |t| t.to_rfc3339())
}

pub(crate) fn restore_from(
    source: &impl ReadableDatabase,
    to: DateTime<Utc>,
    into_dir: &Path,
) -> StoreResult<RestoreReport> {
    let not_empty = into_dir.exists()
        && std::fs::read_dir(into_dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot read {}: {e}", into_dir.display())))?
            .next()
            .is_some();
    if not_empty {
        return Err(StoreError::Conflict(format!(
            "refusing to restore into {}: it is not empty (restore needs a new data dir)",
            into_dir.display()
        )));
    }
    let read = source.begin_read().map_err(db_err)?;
    let meta = read.open_table(META).map_err(db_err)?;
    let format = meta.get(META_FORMAT).map_err(db_err)?.map(|g| g.value());
    if format != Some(FORMAT_VERSION) {
        return Err(StoreError::Corrupt(format!("source format {format:?}, this build reads {FORMAT_VERSION}")));
    }
    let horizon = meta.get(META_HORIZON).map_err(db_err)?.map_or(0, |g| g.value());
    let now = now_micros();
    let to_us = u64::try_from(to.timestamp_micros()).unwrap_or(0);
    if to_us < horizon || to_us > now {
        return Err(StoreError::Unavailable(format!(
            "cannot restore to {}: outside the point-in-time window, which runs from {} to now ({})",
            to.to_rfc3339(),
            time(horizon),
            time(now)
        )));
    }

    // What this restore creates, so that a failure removes it all and leaves no half-restored
    // store behind: the topmost missing directory, or just the file in a dir that was there.
    let created_dir = topmost_missing(into_dir);
    crate::create_private_dir(into_dir)
        .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", into_dir.display())))?;
    match write_restored(&read, horizon, to_us, into_dir) {
        Ok((entries_replayed, rooms, messages)) => {
            info!(to = %to.to_rfc3339(), into = %into_dir.display(), entries_replayed, rooms, messages, "restored");
            Ok(RestoreReport { to, into_dir: into_dir.to_path_buf(), entries_replayed, rooms, messages })
        }
        Err(e) => {
            let cleanup = match &created_dir {
                Some(dir) => std::fs::remove_dir_all(dir),
                None => std::fs::remove_file(into_dir.join(FILE_NAME)).or_else(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                }),
            };
            match cleanup {
                Ok(()) => warn!(into = %into_dir.display(), error = %e, "restore failed; removed what it wrote"),
                Err(c) => warn!(into = %into_dir.display(), error = %e, cleanup = %c,
                    "restore failed, and removing what it wrote failed too"),
            }
            Err(e)
        }
    }
}

/// The highest ancestor of `dir` (or `dir` itself) that does not exist yet: what creating `dir`
/// adds to the file system. `None` if `dir` exists.
fn topmost_missing(dir: &Path) -> Option<PathBuf> {
    let mut missing = None;
    for ancestor in dir.ancestors() {
        if ancestor.as_os_str().is_empty() || ancestor.exists() {
            break;
        }
        missing = Some(ancestor.to_path_buf());
    }
    missing
}

/// Writes the restored store into `into_dir` (created and empty): `(entries replayed, rooms,
/// messages)`.
fn write_restored(
    read: &redb::ReadTransaction,
    horizon: u64,
    to_us: u64,
    into_dir: &Path,
) -> StoreResult<(u64, u64, u64)> {
    let path = into_dir.join(FILE_NAME);
    let target = Database::create(&path).map_err(db_err)?;
    crate::make_file_private(&path)?;
    let txn = target.begin_write().map_err(db_err)?;
    ensure_tables(&txn)?;
    let mut entries_replayed = 0;
    let (rooms, messages) = {
        let mut live = LogTables::live(&txn)?;
        let mut base = LogTables::base(&txn)?;
        // The base goes to both generations: as the base, and as the start of the live state.
        copy_to_both(&read.open_table(BASE_MESSAGES).map_err(db_err)?, &mut base.messages, &mut live.messages)?;
        copy_to_both(
            &read.open_table(BASE_IDEMPOTENCY).map_err(db_err)?,
            &mut base.idempotency,
            &mut live.idempotency,
        )?;
        copy_to_both(&read.open_table(BASE_ROOMS).map_err(db_err)?, &mut base.rooms, &mut live.rooms)?;
        let journal = read.open_table(JOURNAL).map_err(db_err)?;
        let mut target_journal = txn.open_table(JOURNAL).map_err(db_err)?;
        for item in journal.range(..=to_us).map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            let entry: JournalEntry = decode(v.value(), "journal entry")?;
            apply(&mut live, &entry)?;
            target_journal.insert(k.value(), v.value()).map_err(db_err)?;
            entries_replayed += 1;
        }
        let mut target_meta = txn.open_table(META).map_err(db_err)?;
        target_meta.insert(META_FORMAT, FORMAT_VERSION).map_err(db_err)?;
        target_meta.insert(META_HORIZON, horizon).map_err(db_err)?;
        (live.rooms.len().map_err(db_err)?, live.messages.len().map_err(db_err)?)
    };
    txn.commit().map_err(db_err)?;
    Ok((entries_replayed, rooms, messages))
}

/// Copies every row of `from` into both `a` and `b`.
fn copy_to_both<K: Key + 'static, V: Value + 'static>(
    from: &ReadOnlyTable<K, V>,
    a: &mut Table<'_, K, V>,
    b: &mut Table<'_, K, V>,
) -> StoreResult<()> {
    for item in from.iter().map_err(db_err)? {
        let (k, v) = item.map_err(db_err)?;
        a.insert(k.value(), v.value()).map_err(db_err)?;
        b.insert(k.value(), v.value()).map_err(db_err)?;
    }
    Ok(())
}
