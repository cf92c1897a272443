//! RedbStore against the shared storage contract, plus what only an embedded store has:
//! reopen, purge at open, durability across a SIGKILL, retention, point-in-time restore.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dynamowave_core::contract::{connection_store_contract, message_log_contract};
use dynamowave_core::model::{NewMessage, now_ms};
use dynamowave_core::{ConnectionRecord, ConnectionStore, Framing, MessageLog, StoreError};
use dynamowave_store_redb::{RedbSettings, RedbStore, restore};
use dynamowave_testkit::temp::TempPath;

fn open(dir: &Path) -> RedbStore {
    RedbStore::open(dir, RedbSettings::default()).expect("open store")
}

fn connection(id: &str, room: &str) -> ConnectionRecord {
    ConnectionRecord {
        connection_id: id.into(),
        connected_at: 1,
        source_ip: "127.0.0.1".into(),
        user_agent: None,
        framing: Framing::Plain,
        name: format!("n-{id}"),
        principal_id: None,
        room: Some(room.into()),
        expires_at: 2,
    }
}

fn message(room: &str, id: Option<&str>, text: &str, ts: i64) -> NewMessage {
    NewMessage {
        room: room.into(),
        id: id.map(str::to_string),
        from: "alice".into(),
        publisher: "alice".into(),
        text: text.into(),
        ts,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_storage_contract() {
    let dir = TempPath::new("dw-redb");
    let store = Arc::new(open(dir.path()));
    connection_store_contract(store.clone()).await;
    message_log_contract(store.clone()).await;
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_messages_and_purges_connections() {
    let dir = TempPath::new("dw-redb");
    let epoch;
    {
        let store = open(dir.path());
        assert_eq!(store.purged_on_open(), 0, "a new store has nothing to purge");
        store.put_connection(&connection("c1", "lobby")).await.expect("put");
        store.put_connection(&connection("c2", "lobby")).await.expect("put");
        for n in 1..=5 {
            store.append(message("lobby", Some(&format!("k{n}")), &format!("m{n}"), now_ms())).await.expect("append");
        }
        epoch = store.room_state("lobby").await.expect("state").epoch;
        // Dropped without close: Drop drains the writer and commits durably.
    }
    let store = open(dir.path());
    assert_eq!(store.purged_on_open(), 2, "both connections of the previous process are purged");
    assert_eq!(store.get_connection("c1").await.expect("get"), None);
    assert!(store.members("lobby", None, 10).await.expect("members").items.is_empty());
    let state = store.room_state("lobby").await.expect("state");
    assert_eq!((state.epoch.as_str(), state.first_seq, state.last_seq), (epoch.as_str(), 1, 5), "log survives");
    let texts: Vec<String> =
        store.read_after("lobby", 0, 100).await.expect("read").into_iter().map(|m| m.text).collect();
    assert_eq!(texts, vec!["m1", "m2", "m3", "m4", "m5"]);
    let retry = store.append(message("lobby", Some("k3"), "again", now_ms())).await.expect("retry");
    assert!(retry.duplicate && retry.message.seq == 3, "idempotency keys survive a reopen");
    store.put_connection(&connection("c1", "lobby")).await.expect("a purged id can connect again");
    store.close().await.expect("close");
    assert!(matches!(store.flush().await, Err(StoreError::Unavailable(_))), "a closed store refuses work");
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.purged_on_open(), 1, "close keeps the registry on disk until the next open purges it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_held_by_a_previous_process_are_free_after_the_purge() {
    let dir = TempPath::new("dw-redb");
    let mut grace = connection("c1", "lobby");
    grace.name = "Grace".into();
    {
        let store = open(dir.path());
        store.put_connection(&grace).await.expect("put");
        let mut imposter = connection("c2", "lobby");
        imposter.name = "GRACE".into();
        assert!(matches!(store.put_connection(&imposter).await, Err(StoreError::NameTaken(_))), "held while open");
    }
    let store = open(dir.path());
    let mut next = connection("c2", "lobby");
    next.name = "GRACE".into();
    store.put_connection(&next).await.expect("the purge at open released the name");
    let holders: Vec<String> =
        store.name_holders("grace").await.expect("holders").into_iter().map(|c| c.connection_id).collect();
    assert_eq!(holders, ["c2"]);
    store.close().await.expect("close");
}

#[tokio::test]
async fn one_process_owns_a_data_dir() {
    let dir = TempPath::new("dw-redb");
    let _first = open(dir.path());
    match RedbStore::open(dir.path(), RedbSettings::default()) {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("in use"), "unclear error: {m}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a second open of the same data dir must fail"),
    }
}

#[tokio::test]
async fn invalid_settings_are_refused() {
    let dir = TempPath::new("dw-redb");
    let settings = RedbSettings { max_batch: 0, ..RedbSettings::default() };
    match RedbStore::open(dir.path(), settings) {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("max_batch"), "{m}"),
        other => panic!("max_batch 0 must be refused, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_old_messages_and_advances_first_seq() {
    let dir = TempPath::new("dw-redb");
    let settings = RedbSettings { retention: Duration::from_secs(3600), ..RedbSettings::default() };
    let store = RedbStore::open(dir.path(), settings).expect("open");
    let old = now_ms() - 2 * 3600 * 1000;
    for n in 1..=3 {
        store.append(message("r", Some(&format!("old{n}")), "old", old + n)).await.expect("append");
    }
    for _ in 4..=5 {
        store.append(message("r", None, "new", now_ms())).await.expect("append");
    }
    let report = store.run_maintenance().await.expect("maintenance");
    assert_eq!(report.messages_pruned, 3);
    let state = store.room_state("r").await.expect("state");
    assert_eq!((state.first_seq, state.last_seq), (4, 5));
    let seqs: Vec<u64> = store.read_after("r", 0, 10).await.expect("read").iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![4, 5]);
    assert_eq!(store.run_maintenance().await.expect("again").messages_pruned, 0, "pruning is idempotent");
    let after = store.append(message("r", Some("old1"), "later", now_ms())).await.expect("append");
    assert_eq!((after.message.seq, after.duplicate), (6, false), "a pruned message's key is forgotten with it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_undoes_an_accidental_history_delete() {
    let dir = TempPath::new("dw-redb");
    let store = open(dir.path());
    let mut originals = Vec::new();
    for n in 1..=20 {
        let a = store
            .append(message("team", Some(&format!("id{n}")), &format!("msg {n}"), now_ms()))
            .await
            .expect("append");
        originals.push(a.message);
    }
    let epoch = store.room_state("team").await.expect("state").epoch;
    std::thread::sleep(Duration::from_millis(5));
    let before_delete = chrono::Utc::now();
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(store.delete_room_history("team").await.expect("delete"), 20);
    assert!(store.read_after("team", 0, 100).await.expect("read").is_empty(), "history is gone");
    let fresh = store.room_state("team").await.expect("state");
    assert_ne!(fresh.epoch, epoch, "a deleted log comes back with a new epoch");
    store.append(message("team", None, "after the accident", now_ms())).await.expect("append");
    store.close().await.expect("close");
    drop(store);

    let into = TempPath::new("dw-redb");
    let report = restore(dir.path(), before_delete, into.path()).expect("restore");
    assert_eq!((report.messages, report.rooms), (20, 1), "{report:?}");
    let restored = open(into.path());
    assert_eq!(restored.read_after("team", 0, 100).await.expect("read"), originals, "every message with its seq");
    let state = restored.room_state("team").await.expect("state");
    assert_eq!((state.epoch.as_str(), state.first_seq, state.last_seq), (epoch.as_str(), 1, 20));
    let retry = restored.append(message("team", Some("id7"), "retry", now_ms())).await.expect("retry");
    assert!(retry.duplicate && retry.message.seq == 7, "idempotency keys are restored");
    drop(restored);

    // Refusals, each with a clear reason.
    match restore(dir.path(), before_delete, into.path()) {
        Err(StoreError::Conflict(m)) => assert!(m.contains("not empty"), "{m}"),
        other => panic!("restore into a non-empty dir must be refused, got {other:?}"),
    }
    let too_old = chrono::Utc::now() - chrono::Duration::days(1);
    match restore(dir.path(), too_old, &into.join("b")) {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("outside the point-in-time window"), "{m}"),
        other => panic!("a time before the store existed must be refused, got {other:?}"),
    }
    let future = chrono::Utc::now() + chrono::Duration::hours(1);
    assert!(restore(dir.path(), future, &into.join("c")).is_err(), "a future time is outside the window");
    assert!(matches!(restore(&into.join("nothing"), before_delete, &into.join("d")), Err(StoreError::NotFound(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folded_journal_still_restores_and_moves_the_horizon() {
    let dir = TempPath::new("dw-redb");
    let settings = RedbSettings { pitr_window: Duration::ZERO, ..RedbSettings::default() };
    let store = RedbStore::open(dir.path(), settings).expect("open");
    let start = chrono::Utc::now();
    for n in 1..=4 {
        store.append(message("f", None, &format!("{n}"), now_ms())).await.expect("append");
    }
    std::thread::sleep(Duration::from_millis(2));
    let report = store.run_maintenance().await.expect("maintenance");
    assert_eq!(report.journal_folded, 5, "room creation and 4 appends fold into the base");
    let into = TempPath::new("dw-redb");
    let restored = store.restore_to(chrono::Utc::now(), into.path()).expect("restore from the running store");
    assert_eq!((restored.entries_replayed, restored.messages), (0, 4), "the base alone holds the state");
    match store.restore_to(start, &into.join("old")) {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("outside"), "{m}"),
        other => panic!("a time before the horizon must be refused, got {other:?}"),
    }
    let r = open(into.path());
    assert_eq!(r.read_after("f", 0, 10).await.expect("read").len(), 4);
}

const CRASH_DIR_ENV: &str = "DW_REDB_CRASH_CHILD_DIR";

/// The child of `acknowledged_appends_survive_sigkill`: appends forever, printing each
/// acknowledged append. Does nothing when run as an ordinary test.
#[test]
fn crash_child_appends() {
    let Some(dir) = std::env::var_os(CRASH_DIR_ENV) else { return };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let store = Arc::new(open(Path::new(&dir)));
        let tasks: Vec<_> = (0..4)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for n in 0..u64::MAX {
                        let id = format!("t{t}-{n}");
                        let a = store.append(message("crash", Some(&id), "x", now_ms())).await.expect("append");
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ack {id} {}", a.message.seq).expect("stdout");
                        out.flush().expect("stdout");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_sigkill() {
    let dir = TempPath::new("dw-redb");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["crash_child_appends", "--exact", "--nocapture", "--test-threads=1"])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut acked: HashMap<String, u64> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.len() < 400 && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(rest) = line.strip_prefix("ack ")
            && let Some((id, seq)) = rest.split_once(' ')
            && let Ok(seq) = seq.parse()
        {
            acked.insert(id.to_string(), seq);
        }
    }
    // Child::kill is SIGKILL on Unix: no destructor, no final commit.
    child.kill().expect("kill child");
    // What the child printed before it died was acknowledged too.
    for line in lines.map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix("ack ")
            && let Some((id, seq)) = rest.split_once(' ')
            && let Ok(seq) = seq.parse()
        {
            acked.insert(id.to_string(), seq);
        }
    }
    child.wait().expect("reap child");
    assert!(acked.len() >= 400, "the child acknowledged only {} appends", acked.len());

    let store = open(dir.path());
    let stored = store.read_after("crash", 0, 1_000_000).await.expect("read");
    let seqs: Vec<u64> = stored.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=stored.len() as u64).collect::<Vec<_>>(), "seqs after the crash have no gaps");
    let mut by_id: HashMap<&str, Vec<u64>> = HashMap::new();
    for m in &stored {
        by_id.entry(m.id.as_deref().expect("every message has an id")).or_default().push(m.seq);
    }
    for (id, seq) in &acked {
        assert_eq!(by_id.get(id.as_str()), Some(&vec![*seq]), "acknowledged append {id} must be stored once at {seq}");
    }
    assert!(by_id.values().all(|s| s.len() == 1), "no message stored twice");
    let state = store.room_state("crash").await.expect("state");
    assert_eq!(state.last_seq, stored.len() as u64, "room meta agrees with the messages");
    eprintln!("SIGKILL test: {} acknowledged, {} stored", acked.len(), stored.len());
}

/// `cargo test -p dynamowave-store-redb --release --test redb -- --ignored --nocapture throughput`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run it by hand"]
async fn throughput() {
    let dir = TempPath::new("dw-redb");
    let store = Arc::new(open(dir.path()));

    for tasks in [1usize, 16] {
        let per_task = 4000 / tasks;
        let started = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for n in 0..per_task {
                        let id = format!("c{tasks}-{t}-{n}");
                        store.put_connection(&connection(&id, "lobby")).await.expect("put");
                        store.delete_connection(&id).await.expect("delete");
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.expect("task");
        }
        let pairs = (tasks * per_task) as f64;
        eprintln!("connections, {tasks:>2} tasks: {:.0} put+delete pairs/s", pairs / started.elapsed().as_secs_f64());
    }

    for tasks in [1usize, 8, 64] {
        let per_task = if tasks == 1 { 300 } else { 6400 / tasks };
        let room = format!("bench-{tasks}");
        let started = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let store = store.clone();
                let room = room.clone();
                tokio::spawn(async move {
                    for n in 0..per_task {
                        store
                            .append(message(&room, Some(&format!("{t}-{n}")), "hello", now_ms()))
                            .await
                            .expect("append");
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.expect("task");
        }
        let n = (tasks * per_task) as f64;
        eprintln!("durable appends, {tasks:>2} tasks: {:.0} appends/s", n / started.elapsed().as_secs_f64());
    }

    store.put_connection(&connection("probe", "big")).await.expect("put");
    for n in 0..999 {
        store.put_connection(&connection(&format!("m{n:04}"), "big")).await.expect("put");
    }
    let started = Instant::now();
    let rounds = 200;
    for _ in 0..rounds {
        let page = store.members("big", None, 1000).await.expect("members");
        assert_eq!(page.items.len(), 1000);
    }
    let per_round = started.elapsed().as_secs_f64() / f64::from(rounds);
    eprintln!("members() of a 1,000-member room: {:.0} µs ({:.0} member reads/s)", per_round * 1e6, 1000.0 / per_round);
    store.close().await.expect("close");
}
