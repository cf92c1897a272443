//! One DynamoDB Local process, for as long as its [`DynamoDbLocal`] lives.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::tables::LocalDynamoDb;
use crate::{Error, Install};

/// Where the tables live.
#[derive(Clone, Debug, Default)]
pub enum Storage {
    /// In memory: gone when the process stops.
    #[default]
    InMemory,
    /// In `shared-local-instance.db` in this dir, kept across runs.
    Dir(PathBuf),
}

/// How to run it.
#[derive(Clone, Debug)]
pub struct Options {
    pub storage: Storage,
    /// The `java` to run; `None`: `$JAVA_HOME/bin/java`, else `java` on the PATH.
    pub java: Option<PathBuf>,
    /// How long it may take to answer its first request (a cold JVM takes a few seconds).
    pub ready_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options { storage: Storage::InMemory, java: None, ready_timeout: Duration::from_secs(60) }
    }
}

/// Lines of its output kept for the error that says why it stopped.
const KEPT_LINES: usize = 40;

/// A running DynamoDB Local. Dropping it kills the process.
pub struct DynamoDbLocal {
    child: Child,
    endpoint: String,
    port: u16,
}

impl DynamoDbLocal {
    /// Starts it on a free loopback port and waits until it answers.
    pub async fn start(install: &Install, options: &Options) -> Result<DynamoDbLocal, Error> {
        let java = options.java.clone().unwrap_or_else(default_java);
        // DynamoDB Local takes a port number only: find one free now (another process could
        // take it before java binds it; then java exits and the error says so).
        let port = {
            let probe = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(Error::Port)?;
            probe.local_addr().map_err(Error::Port)?.port()
        };
        let mut command = Command::new(&java);
        command
            .arg(format!("-Djava.library.path={}", install.lib_dir.display()))
            .arg("-jar")
            .arg(&install.jar)
            .args(["-port", &port.to_string(), "-sharedDb", "-disableTelemetry"])
            // No web page may call it: an allow-list of one origin that no browser sends. (The
            // default, `*`, is meant to let every page in.)
            .args(["-cors", "null.invalid"]);
        match &options.storage {
            Storage::InMemory => {
                command.arg("-inMemory");
            }
            Storage::Dir(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| Error::Unpack { dir: dir.clone(), source })?;
                command.arg("-dbPath").arg(dir);
            }
        }
        if let Some(dir) = install.jar.parent() {
            command.current_dir(dir);
        }
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| Error::Java { java: java.clone(), source })?;
        let output = Arc::new(Mutex::new(VecDeque::with_capacity(KEPT_LINES)));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(drain(out, output.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(drain(err, output.clone()));
        }
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut server = DynamoDbLocal { child, endpoint, port };
        server.wait_ready(options.ready_timeout, &output).await?;
        tracing::info!(endpoint = %server.endpoint, "DynamoDB Local is ready");
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL_DYNAMODB`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, for tests that stop it from outside.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops it and waits for it to be gone.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    async fn wait_ready(&mut self, timeout: Duration, output: &Mutex<VecDeque<String>>) -> Result<(), Error> {
        let client = LocalDynamoDb::with_timeout(self.endpoint.clone(), Duration::from_secs(2));
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Give the drains a moment to take its last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let lines = output.lock();
                return Err(Error::Exited {
                    status: status.to_string(),
                    output: lines.iter().cloned().collect::<Vec<_>>().join("\n"),
                });
            }
            if matches!(client.call("ListTables", &serde_json::json!({})).await, Ok((200, _))) {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(Error::NotReady(timeout));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn default_java() -> PathBuf {
    match std::env::var_os("JAVA_HOME") {
        Some(home) => PathBuf::from(home).join("bin").join("java"),
        None => PathBuf::from("java"),
    }
}

/// Reads its output to the end (a full pipe would stop it), logging each line and keeping the
/// last few for an error message.
async fn drain(stream: impl AsyncRead + Unpin, kept: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(target: "dynamodb_local", "{line}");
        let mut kept = kept.lock();
        if kept.len() == KEPT_LINES {
            kept.pop_front();
        }
        kept.push_back(line);
    }
}
