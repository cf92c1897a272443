//! # dynamowave-store-redb: the embedded store
//!
//! [`RedbStore`] implements core's [`ConnectionStore`](dynamowave_core::ConnectionStore) and
//! [`MessageLog`](dynamowave_core::MessageLog) on [redb](https://docs.rs/redb), a pure-Rust,
//! ACID, crash-safe embedded database, for running the whole chat on one machine. One process
//! owns a data dir (redb's file lock enforces it). `docs/storage.md` describes the format and
//! the guarantees.
//!
//! # Layout
//!
//! - [`store`]: [`RedbStore`]: open (the data dir created 0700, the file 0600; the purge of
//!   connections left by a previous process), the trait implementations, flush/close, admin
//!   operations. A record that does not decode is logged and skipped by `list_rooms` and by
//!   maintenance rather than failing them.
//! - `writer`: the writer thread and its group commit: every write request goes through a
//!   channel; all pending ones share one transaction and one fsync.
//! - `index`: the in-memory registry (id, room -> members, name -> ids) that answers fan-out
//!   reads without touching the disk.
//! - `claims`: which rooms each live connection belongs to (the per-connection room limit).
//! - `tables`: table definitions, stored records (with the rooms' activity index), and the
//!   MessageLog journal with the function that applies an entry (shared by live writes, journal
//!   folding and restore).
//! - [`restore`](mod@restore): point-in-time recovery into a new data dir; a failed restore removes what it
//!   wrote.
//! - This file: [`RedbSettings`], the clock of the journal, and the data files' permissions.
//!
//! # Repeated on purpose
//!
//! The port methods' signatures in `store` stand again in the other adapters
//! (`dynamowave-aws`, core's `testing`): each implements the one trait in its own terms.

mod claims;
mod index;
pub mod restore;
pub mod store;
mod tables;
mod writer;

use std::time::Duration;

use dynamowave_core::{StoreError, StoreResult};

pub use restore::{RestoreReport, restore};
pub use store::RedbStore;
pub use tables::FILE_NAME;
pub use writer::MaintenanceReport;

/// Settings of the embedded store, with their defaults.
#[derive(Clone, Debug)]
pub struct RedbSettings {
    /// Messages older than this are pruned (the room's `first_seq` advances). Default 35 days.
    pub retention: Duration,
    /// How far back [`restore`](fn@restore) can go: MessageLog journal entries are kept this long, then
    /// folded into the base tables. Default 35 days (the seed's DynamoDB PITR window).
    pub pitr_window: Duration,
    /// How often the writer runs retention and journal folding. Default 60 s.
    pub maintenance_interval: Duration,
    /// Most write requests in one transaction. Default 1024.
    pub max_batch: usize,
    /// Connection-only batches commit without fsync; at least one commit per this interval is
    /// durable, so redb can reclaim the pages that non-durable commits leave. Default 1 s.
    pub durable_interval: Duration,
    /// Most journal entries folded in one maintenance pass, so that a long backlog does not
    /// stall writes. Default 10,000.
    pub max_fold_per_pass: u64,
    /// redb's page cache, in bytes. Default 64 MiB.
    pub cache_bytes: usize,
    /// A room with no stored message and nobody in it lapses after this long without activity
    /// (creation or a message): it is no longer listed or counted as existing, and the next
    /// maintenance pass removes it. Default 5 minutes.
    pub empty_room_ttl: Duration,
}

impl Default for RedbSettings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(35 * 24 * 3600),
            pitr_window: Duration::from_secs(35 * 24 * 3600),
            maintenance_interval: Duration::from_secs(60),
            max_batch: 1024,
            durable_interval: Duration::from_secs(1),
            max_fold_per_pass: 10_000,
            cache_bytes: 64 << 20,
            empty_room_ttl: Duration::from_secs(dynamowave_core::ChatSettings::DEFAULT_EMPTY_ROOM_TTL_SECS),
        }
    }
}

impl RedbSettings {
    /// Refuses settings that cannot work, with the reason.
    pub fn validate(&self) -> StoreResult<()> {
        let bad = |m: &str| Err(StoreError::Unavailable(format!("invalid store settings: {m}")));
        if self.max_batch == 0 {
            return bad("max_batch must be at least 1");
        }
        if self.maintenance_interval.is_zero() {
            return bad("maintenance_interval must be more than 0");
        }
        if self.max_fold_per_pass == 0 {
            return bad("max_fold_per_pass must be at least 1");
        }
        Ok(())
    }
}

/// Creates `dir` (and missing parents) readable by the owner only: it holds every message. A dir
/// that already exists keeps the permissions its owner gave it.
pub(crate) fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Makes the store file readable and writable by its owner only (redb creates it with the
/// process's umask, often world-readable).
pub(crate) fn make_file_private(path: &std::path::Path) -> StoreResult<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| StoreError::Unavailable(format!("cannot restrict {} to its owner: {e}", path.display())))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Now, in µs since the epoch (journal keys).
pub(crate) fn now_micros() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(0)
}
