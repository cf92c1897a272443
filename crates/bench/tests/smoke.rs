//! CI smoke: a few seconds of load against a real server, asserting zero loss.
//!
//! The server is `DYNAMOWAVE_BENCH_SMOKE_URL` when set (e.g. our own server, started by the caller);
//! otherwise the Node.js benchmark peer (the `ws` chat kept beside the repository, as
//! `scripts/bench-compare` uses it), copied to a temporary folder and npm-installed. Without
//! `node`/`npm` or the peer's folder the test fails, saying what is missing: a skipped smoke would
//! pass without measuring anything.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use dynamowave_bench::{BenchArgs, run};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/peers/node-ws-chat")
}

async fn tool_present(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// The running peer; dropping it ends the process and removes its folder.
struct Peer {
    _child: Child,
    dir: PathBuf,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts the peer on a free port. Panics when node, npm or the peer is missing, its install
/// fails or it does not start; `None` when copying it or finding a port fails.
async fn start_peer() -> Option<(Peer, String)> {
    let source = peer_dir();
    if !source.join("server.js").exists() || !tool_present("node").await || !tool_present("npm").await {
        // A skipped smoke would pass without measuring anything: refuse instead.
        panic!("no peer at {} or no node/npm on PATH (scripts/test installs them)", source.display());
    }
    let dir = std::env::temp_dir().join(format!("dw-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    for file in ["server.js", "package.json"] {
        std::fs::copy(source.join(file), dir.join(file)).ok()?;
    }
    let installed = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    if !installed {
        panic!("npm install of the peer failed");
    }
    // The peer takes its port from PORT; find a free one (tiny race, fine for a test).
    let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let mut child = Command::new("node")
        .arg(dir.join("server.js"))
        .env("PORT", port.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("listening") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(ready, "the peer did not start");
    Some((Peer { _child: child, dir }, format!("ws://127.0.0.1:{port}/")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_seconds_of_chat_lose_nothing() {
    let (_peer, url) = match std::env::var("DYNAMOWAVE_BENCH_SMOKE_URL") {
        Ok(url) => (None, url),
        Err(_) => match start_peer().await {
            Some((child, url)) => (Some(child), url),
            None => return,
        },
    };
    let args = BenchArgs {
        url,
        connections: 200,
        rooms: 4,
        senders: 8,
        rate: 200.0,
        warmup: Duration::from_millis(500),
        duration: Duration::from_secs(3),
        drain: Duration::from_secs(3),
        quiet: true,
        ..BenchArgs::default()
    };
    let report = match run(args).await {
        Ok(r) => r,
        Err(e) => panic!("run failed: {e:#}"),
    };
    report.print_table();
    assert_eq!(report.connect.established, 200, "{:?}", report.connect.failures);
    let load = report.load.as_ref().map_or_else(|| panic!("no load section"), Clone::clone);
    assert!(load.sent > 400, "too few messages sent: {}", load.sent);
    assert_eq!(load.expected, load.sent * 50, "each message reaches the 50 members of its room");
    assert_eq!(load.lost, 0, "lost deliveries");
    assert_eq!(load.duplicated, 0, "duplicated deliveries");
    assert_eq!(load.out_of_order, 0, "reordered deliveries");
    assert!(load.drained);
    assert!(load.latency.count == load.delivered && load.latency.p50_us > 0.0);
}
