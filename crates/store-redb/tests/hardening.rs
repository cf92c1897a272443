//! The data dir is private; a corrupt record costs only itself; a failed restore leaves nothing
//! behind. Records are corrupted through redb directly, as a bad disk or a bug would.

use std::path::Path;
use std::time::Duration;

use chrono::TimeZone;

use dynamowave_core::MessageLog;
use dynamowave_core::model::{NewMessage, now_ms};
use dynamowave_store_redb::{FILE_NAME, RedbSettings, RedbStore, restore};
use dynamowave_testkit::temp::TempPath;
use redb::{Database, TableDefinition};

// The store's tables, as named in its on-disk format (src/tables.rs).
const ROOMS: TableDefinition<&str, &[u8]> = TableDefinition::new("rooms");
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal");

fn message(room: &str, text: &str, ts: i64) -> NewMessage {
    NewMessage { room: room.into(), id: None, from: "alice".into(), publisher: "alice".into(), text: text.into(), ts }
}

/// Writes raw bytes into the (closed) store's file, bypassing the store.
fn corrupt(dir: &Path, write: impl FnOnce(&redb::WriteTransaction)) {
    let db = Database::create(dir.join(FILE_NAME)).expect("open the store file with redb");
    let txn = db.begin_write().expect("write txn");
    write(&txn);
    txn.commit().expect("commit");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_and_its_file_are_private() {
    use std::os::unix::fs::PermissionsExt;

    let base = TempPath::new("dw-redb-hard");
    let dir = base.path().join("nested").join("data");
    let store = RedbStore::open(&dir, RedbSettings::default()).expect("open");
    store.append(message("r", "hi", now_ms())).await.expect("append");
    store.close().await.expect("close");
    drop(store);
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "the data dir");
    assert_eq!(mode(&base.path().join("nested")), 0o700, "a parent it created");
    assert_eq!(mode(&dir.join(FILE_NAME)), 0o600, "the store file");

    // A restored store is private too.
    let into = base.path().join("restored");
    restore(&dir, chrono::Utc::now(), &into).expect("restore");
    assert_eq!(mode(&into), 0o700);
    assert_eq!(mode(&into.join(FILE_NAME)), 0o600);

    // A file left world-readable (by an older version, or a copy) is tightened at open.
    std::fs::set_permissions(dir.join(FILE_NAME), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    drop(RedbStore::open(&dir, RedbSettings::default()).expect("reopen"));
    assert_eq!(mode(&dir.join(FILE_NAME)), 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_is_skipped_by_list_rooms_and_maintenance() {
    let dir = TempPath::new("dw-redb-hard");
    let old = now_ms() - 7_200_000;
    {
        let store = RedbStore::open(dir.path(), RedbSettings::default()).expect("open");
        for n in 0..3 {
            store.append(message("old", &format!("old {n}"), old)).await.expect("append");
        }
        store.append(message("fresh", "new", now_ms())).await.expect("append");
        store.close().await.expect("close");
    }
    corrupt(dir.path(), |txn| {
        txn.open_table(ROOMS).expect("rooms").insert("broken", b"\xff not json".as_slice()).expect("insert");
        // The newest message of `fresh` turns to garbage; and an old journal entry too.
        txn.open_table(MESSAGES).expect("messages").insert(("fresh", 1), b"{\"half".as_slice()).expect("insert");
        txn.open_table(JOURNAL).expect("journal").insert(1, b"garbage".as_slice()).expect("insert");
    });

    let settings = RedbSettings {
        retention: Duration::from_secs(3600),
        pitr_window: Duration::from_secs(60),
        ..RedbSettings::default()
    };
    let store = RedbStore::open(dir.path(), settings).expect("a corrupt record does not stop the open");
    let rooms = store.list_rooms(10).await.expect("rooms are listed despite the corrupt one");
    let names: Vec<_> = rooms.iter().map(|r| r.room.as_str()).collect();
    assert_eq!(names, ["fresh", "old"], "every good room, the broken one left out");

    let report = store.run_maintenance().await.expect("maintenance runs despite the corrupt records");
    assert_eq!(report.messages_pruned, 3, "retention still prunes the good room: {report:?}");
    assert_eq!(report.journal_folded, 1, "the undecodable journal entry is passed over: {report:?}");
    assert_eq!(store.room_state("old").await.expect("state").first_seq, 4);
    // The next pass does not trip over anything either.
    store.run_maintenance().await.expect("maintenance again");
    assert_eq!(store.list_rooms(10).await.expect("rooms").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_restore_removes_what_it_wrote() {
    let source = TempPath::new("dw-redb-hard");
    {
        let store = RedbStore::open(source.path(), RedbSettings::default()).expect("open");
        store.append(message("r", "one", now_ms())).await.expect("append");
        store.close().await.expect("close");
    }
    // A journal entry that cannot be replayed, inside the window: the restore fails midway.
    let key = u64::try_from(chrono::Utc::now().timestamp_micros()).expect("now");
    corrupt(source.path(), |txn| {
        txn.open_table(JOURNAL).expect("journal").insert(key, b"not an entry".as_slice()).expect("insert");
    });
    std::thread::sleep(Duration::from_millis(5));

    // Into a new dir (with a new parent): nothing of it is left.
    let scratch = TempPath::new("dw-redb-hard");
    let into = scratch.path().join("new-parent").join("restored");
    let failed = restore(source.path(), chrono::Utc::now(), &into);
    assert!(failed.is_err(), "the corrupt journal fails the restore: {failed:?}");
    assert!(!into.exists(), "the half-written store is removed");
    assert!(!scratch.path().join("new-parent").exists(), "so is the parent it created");

    // Into an empty dir the user made: the dir stays, empty, as it was.
    let mine = TempPath::new("dw-redb-hard");
    std::fs::create_dir_all(mine.path()).expect("user's dir");
    let failed = restore(source.path(), chrono::Utc::now(), mine.path());
    assert!(failed.is_err(), "{failed:?}");
    assert!(mine.path().is_dir(), "a dir the user made is never deleted");
    assert_eq!(std::fs::read_dir(mine.path()).expect("read").count(), 0, "and holds nothing of the failed restore");

    // A time before any data fails before writing anything.
    let too_old = chrono::Utc::now() - chrono::Duration::days(1);
    let early = scratch.path().join("early");
    assert!(restore(source.path(), too_old, &early).is_err());
    assert!(!early.exists());
    // The same restore to a time before the bad entry works.
    let before = chrono::Utc.timestamp_micros(i64::try_from(key - 1).expect("key")).single().expect("time");
    let good = scratch.path().join("good");
    let report = restore(source.path(), before, &good).expect("restore before the corrupt entry");
    assert_eq!(report.messages, 1);
}
