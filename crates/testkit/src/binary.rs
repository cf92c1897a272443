//! The real `dynamowave` binary: `serve` on port 0 (with a temporary data dir, or in Lambda
//! mode with whatever the test adds), found once it prints `DYNAMOWAVE_LISTENING`, killed when
//! dropped; and one-shot runs of its other commands (`token`, `restore`, …).
//!
//! The binaries are looked for beside the test's own `deps/` directory, i.e. in
//! `$CARGO_TARGET_DIR/debug` (or `release`): cargo builds the `dynamowave` crate's binaries
//! before its own tests; other crates' tests need `cargo build --workspace --bins` first
//! (`scripts/test` does), and a missing binary fails with that command.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long `serve` may take to print `DYNAMOWAVE_LISTENING` (Lambda mode starts its
/// functions' host and reaches moto first; the machine is shared).
const LISTENING_WITHIN: Duration = Duration::from_secs(60);

/// The directory of the workspace's binaries: the test executable is `<dir>/deps/<test>-<hash>`.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(|deps| deps.parent()).expect("the test binary lives in <target>/<profile>/deps").to_path_buf()
}

/// The workspace binary `name` in `dir`, or a clear failure saying how to build it.
pub fn require_bin_in(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: these tests run the real binaries; build them first with \
         `cargo build --workspace --bins` (scripts/test does) with the same CARGO_TARGET_DIR",
        path.display()
    );
    path
}

/// The workspace binary `name` in [`bin_dir`].
pub fn require_bin(name: &str) -> PathBuf {
    require_bin_in(&bin_dir(), name)
}

/// `dynamowave serve` to be started: `--listen 127.0.0.1:0` and the test's logging, plus
/// whatever is added.
pub struct Serve {
    cmd: Command,
    data_dir: Option<tempfile::TempDir>,
}

impl Serve {
    /// `serve` of the `dynamowave` binary at `exe`.
    pub fn of(exe: impl AsRef<OsStr>) -> Serve {
        let mut cmd = Command::new(exe);
        cmd.args(["serve", "--listen", "127.0.0.1:0"]);
        // TEST_LOG=debug shows the server's logs; otherwise warnings only, and only on failure.
        cmd.env("RUST_LOG", std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()));
        // The runtimes, DynamoDB Local and the local CA: installed once for every test.
        cmd.env("DYNAMOWAVE_TOOLS_DIR", crate::temp::tools_dir());
        Serve { cmd, data_dir: None }
    }

    /// `--data-dir` in `dir`, which the app then owns (and hands back: [`App::take_data_dir`]).
    pub fn data_dir(mut self, dir: tempfile::TempDir) -> Serve {
        self.cmd.arg("--data-dir").arg(dir.path());
        self.data_dir = Some(dir);
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Serve {
        self.cmd.arg(arg);
        self
    }

    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Serve {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Serve {
        self.cmd.env(key, value);
        self
    }

    /// The working directory the server starts in (relative paths in its arguments are read
    /// from there).
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Serve {
        self.cmd.current_dir(dir);
        self
    }

    pub fn env_remove(mut self, key: &str) -> Serve {
        self.cmd.env_remove(key);
        self
    }

    /// Starts the server and waits until it listens. Panics (with its logs) if it exits or
    /// does not listen in time.
    pub fn spawn(mut self) -> App {
        let show_logs = std::env::var("TEST_LOG").is_ok();
        self.cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        self.cmd.stderr(if show_logs { Stdio::inherit() } else { Stdio::piped() });
        let mut child = self.cmd.spawn().expect("spawn dynamowave serve");
        let logs = Arc::new(Mutex::new(Vec::new()));
        if let Some(mut stderr) = child.stderr.take() {
            let logs = Arc::clone(&logs);
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = stderr.read(&mut chunk) {
                    logs.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(&chunk[..n]);
                }
            });
        }
        let stdout = child.stdout.take().expect("stdout");
        // The listening line is read on a thread (a blocking pipe), with a deadline.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("DYNAMOWAVE_LISTENING ") {
                    let _ = tx.send(url.to_string());
                    break;
                }
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let mut app = App { addr: String::new(), url: String::new(), child, data_dir: self.data_dir, logs };
        match rx.recv_timeout(LISTENING_WITHIN) {
            Ok(url) => {
                app.addr = url.trim_start_matches("ws://").split('/').next().unwrap_or_default().to_string();
                app.url = url;
                app
            }
            Err(_) => {
                let status = app.child.try_wait().ok().flatten();
                let _ = app.child.kill();
                let _ = app.child.wait();
                panic!(
                    "dynamowave serve did not print DYNAMOWAVE_LISTENING (exit: {status:?}); its logs:\n{}",
                    app.logs()
                );
            }
        }
    }
}

/// A running `dynamowave serve`, killed when dropped.
pub struct App {
    /// `host:port`.
    pub addr: String,
    /// The WebSocket URL it printed (`ws://host:port/stage`).
    pub url: String,
    pub child: Child,
    data_dir: Option<tempfile::TempDir>,
    logs: Arc<Mutex<Vec<u8>>>,
}

/// `dynamowave serve` on a new temporary data dir, with `args` on top of the defaults.
pub fn spawn_app(args: &[&str]) -> App {
    spawn_app_in(tempfile::tempdir().expect("temp dir"), args)
}

/// `dynamowave serve` on `data_dir` (a restart on an earlier app's dir, say).
pub fn spawn_app_in(data_dir: tempfile::TempDir, args: &[&str]) -> App {
    Serve::of(require_bin("dynamowave")).data_dir(data_dir).args(args).spawn()
}

impl App {
    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    #[cfg(feature = "chat")]
    pub async fn connect(&self, json: bool) -> crate::ws::Client {
        crate::ws::Client::connect(&self.url, json).await.unwrap_or_else(|e| panic!("connect to {}: {e}", self.url))
    }

    /// The data dir, taken over by the caller (to restart on it, or to keep it past a stop).
    pub fn take_data_dir(&mut self) -> tempfile::TempDir {
        self.data_dir.take().expect("this app has a data dir, not yet taken")
    }

    /// The data dir's path.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.as_ref().expect("this app has a data dir").path()
    }

    /// What the server wrote on stderr so far (empty with `TEST_LOG` set: it went to the
    /// terminal).
    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&self.logs.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }

    /// SIGTERM, then wait for the process to exit (SIGKILL after 10 s).
    pub fn stop(&mut self) -> ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        self.child.wait().expect("wait")
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `dynamowave args…` to the end and returns what it wrote.
pub fn run(args: &[&str]) -> Output {
    Command::new(require_bin("dynamowave")).args(args).stdin(Stdio::null()).output().expect("run dynamowave")
}

/// Runs `dynamowave args…`, killed after `within` if it has not ended (a `serve` that accepted
/// what it should refuse would run until killed).
pub fn run_at_most(args: &[&str], within: Duration) -> Output {
    let mut child = Command::new(require_bin("dynamowave"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dynamowave");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > within {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// `dynamowave token --secret SECRET --sub SUB extra…`: a token the server accepts.
pub fn mint_token(secret: &str, sub: &str, extra: &[&str]) -> String {
    let mut args = vec!["token", "--secret", secret, "--sub", sub];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(out.status.success(), "dynamowave token failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_string()
}
