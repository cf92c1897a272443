//! A small reconnect storm against the real `dynamowave serve` (embedded store, presence on):
//! every client's TCP connection is reset at once while publishing goes on, and every client must
//! come back with `join … since`, be told `recovered: true`, and hold every seq of its room.
//!
//! The binary is `DYNAMOWAVE_BIN` when set, else `dynamowave` beside this test's own build
//! (`cargo build -p dynamowave` first); without it the test fails, saying so.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use dynamowave_bench::{BenchArgs, run};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn server_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("DYNAMOWAVE_BIN") {
        return PathBuf::from(bin);
    }
    // This test runs from `<target>/<profile>/deps/`; the binaries are one folder up.
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("no current exe: {e}"));
    let bin = exe.parent().and_then(|deps| deps.parent()).map(|dir| dir.join("dynamowave"));
    match bin {
        Some(bin) if bin.exists() => bin,
        _ => panic!(
            "no dynamowave binary beside {} (run `cargo build -p dynamowave`, or set DYNAMOWAVE_BIN)",
            exe.display()
        ),
    }
}

/// `dynamowave serve` on a free port with a fresh store; the stage's throttles (which would refuse
/// the publishers' own load) raised, every other limit at its default.
async fn start_server(data: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(server_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(["--stage-rate", "1000000", "--stage-burst", "1000000"])
        .args(["--route-throttle", "sendmessage=1000000:1000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting dynamowave: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(url) = line.strip_prefix("DYNAMOWAVE_LISTENING ") {
                return Some(url.trim().to_owned());
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| panic!("dynamowave did not start"));
    // Keep reading its stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_comes_back_recovered_and_loses_nothing() {
    let data = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let (server, url) = start_server(data.path()).await;
    let args = BenchArgs {
        url,
        storm: true,
        connections: 50,
        rooms: 5,
        senders: 5,
        rate: 100.0,
        warmup: Duration::from_secs(1),
        // Long enough for messages to pile up while the clients are away: the replay is tested.
        storm_outage: Duration::from_millis(400),
        duration: Duration::from_secs(1),
        drain: Duration::from_secs(5),
        server_pid: server.id(),
        quiet: true,
        ..BenchArgs::default()
    };
    let report = run(args).await.unwrap_or_else(|e| panic!("storm failed: {e:#}"));
    report.print_table();
    let storm = report.storm.clone().unwrap_or_else(|| panic!("no storm section"));
    assert_eq!(storm.initial.established, 50, "{:?}", storm.initial.failures);
    assert_eq!(storm.dropped, 50);
    assert!(storm.all_back, "{:?}", storm.reconnect.failures);
    assert_eq!(storm.reconnect.established, 50);
    assert!(storm.reconnect.per_second > 0.0);
    assert!(storm.recovery.supported);
    assert_eq!(storm.recovery.recovered, 50, "{:?}", storm.recovery.reasons);
    assert!(storm.recovery.replayed > 0, "nothing was replayed: the outage published nothing");
    let m = &storm.messages;
    assert!(m.published > 150, "too few messages: {}", m.published);
    assert_eq!(m.acked, m.published, "every message acknowledged");
    assert!(m.drained);
    // Every message reaches the 10 members of its room, before or after the drop.
    let d = &m.deliveries;
    assert_eq!(d.expected, m.acked * 10);
    assert_eq!(d.lost, 0, "lost deliveries");
    assert_eq!(d.lost_unrecovered, 0);
    // A `join … since` hands over from the replay to live at a cut between two fan-outs: each
    // seq once, in order, replay first.
    assert_eq!(d.duplicated, 0, "duplicates ({} replayed)", storm.recovery.replayed);
    assert_eq!(d.out_of_order, 0, "out of order ({} replayed)", storm.recovery.replayed);
    assert_eq!(d.outside, 0);
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    // Rooms of 10 are under the presence limit: members hear each other come and go.
    assert!(storm.presence.total > 0 && storm.presence.after_drop > 0, "{:?}", storm.presence);
    assert!(storm.server.as_ref().is_some_and(|s| s.storm_cpu_seconds >= 0.0));
    drop(server);
}
