//! One execution environment: a `bootstrap` process and the Runtime API listener only it uses.
//!
//! A listener per process (rather than one per function) is what lets the host know which
//! process holds which invocation, so that a timeout kills the right one.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::error::HostError;
use crate::function::{HostSettings, LambdaFunction};
use crate::runtime_api::{ApiState, Invocation, InvocationResult, router};

/// Why an invocation got no answer from this environment.
#[derive(Debug)]
pub(crate) enum RunError {
    /// The process exited (or was stopped) before answering.
    Crashed(String),
    /// The process did not reach `/next` within the init timeout.
    InitTimeout,
    /// The function timeout passed.
    Timeout,
}

/// Called from the environment's tasks; the pool uses them for stats and bookkeeping.
pub(crate) struct Hooks {
    pub(crate) on_init: Box<dyn Fn(Duration) + Send + Sync>,
    /// `(environment id, how it ended, whether the host asked it to stop)`.
    pub(crate) on_exit: Box<dyn FnOnce(u64, String, bool) + Send>,
}

pub(crate) struct Environment {
    pub(crate) id: u64,
    /// The generation of the function's code it was started from.
    pub(crate) generation: u64,
    pub(crate) pid: Option<u32>,
    api: Arc<ApiState>,
    queue: mpsc::Sender<Invocation>,
    exited: watch::Receiver<Option<String>>,
    stopper: Stopper,
    server: JoinHandle<()>,
    memory_mb: u32,
}

/// Stops the process once; shared with the Runtime API (init error) and the host.
#[derive(Clone)]
struct Stopper {
    signal: Arc<Mutex<Option<oneshot::Sender<()>>>>,
    requested: Arc<AtomicBool>,
}

impl Stopper {
    fn stop(&self) {
        self.requested.store(true, Ordering::SeqCst);
        if let Some(tx) = self.signal.lock().take() {
            let _ = tx.send(());
        }
    }
}

impl Environment {
    pub(crate) async fn spawn(
        id: u64,
        generation: u64,
        function: &LambdaFunction,
        settings: &HostSettings,
        network_env: &[(String, String)],
        hooks: Hooks,
    ) -> Result<Arc<Environment>, HostError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.map_err(HostError::Bind)?;
        let listen = listener.local_addr().map_err(HostError::Bind)?;
        let port = listen.port();
        let (pid_tx, pid_rx) = watch::channel(None);
        let (kill_tx, kill_rx) = oneshot::channel();
        let stopper =
            Stopper { signal: Arc::new(Mutex::new(Some(kill_tx))), requested: Arc::new(AtomicBool::new(false)) };
        // One slot: an event waits here only between the host choosing this idle process and
        // the process's next poll.
        let (queue_tx, queue_rx) = mpsc::channel(1);
        let name: Arc<str> = Arc::from(function.name.as_str());
        let stop_for_api = stopper.clone();
        let api = Arc::new(ApiState {
            function: name.clone(),
            function_arn: format!(
                "arn:aws:lambda:{}:{}:function:{}",
                settings.region, settings.account_id, function.name
            ),
            spawned_at: Instant::now(),
            init_duration: OnceLock::new(),
            on_init: hooks.on_init,
            init_error: Mutex::new(None),
            stop: Box::new(move || stop_for_api.stop()),
            queue: tokio::sync::Mutex::new(queue_rx),
            in_flight: Mutex::new(HashMap::new()),
            listen,
            pid: pid_rx,
        });
        let app = router(api.clone(), settings.max_payload_bytes);
        let server_name = name.clone();
        let server = tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<crate::runtime_api::Peer>();
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(function = %server_name, error = %e, "Runtime API server failed");
            }
        });

        let mut command = Command::new(&function.bootstrap);
        command.args(&function.args).env_clear();
        for key in &settings.inherit_env {
            if let Ok(value) = std::env::var(key) {
                command.env(key, value);
            }
        }
        let handler = function.handler.clone().unwrap_or_else(|| {
            function.bootstrap.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
        });
        let task_root = function
            .task_root
            .clone()
            .unwrap_or_else(|| function.bootstrap.parent().map(|p| p.to_path_buf()).unwrap_or_default());
        command
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
            .env("AWS_LAMBDA_FUNCTION_NAME", &function.name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", settings.memory_mb.to_string())
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{}", function.name))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", format!("local/{}", uuid::Uuid::new_v4().simple()))
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env("AWS_EXECUTION_ENV", function.execution_env.as_deref().unwrap_or("AWS_Lambda_provided.al2023"))
            .env("AWS_REGION", &settings.region)
            .env("AWS_DEFAULT_REGION", &settings.region)
            .env("LAMBDA_TASK_ROOT", &task_root)
            .env("_HANDLER", handler)
            .env("TZ", ":UTC")
            .envs(network_env.iter().map(|(k, v)| (k, v)))
            .envs(function.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if !task_root.as_os_str().is_empty() {
            command.current_dir(&task_root);
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(source) => {
                server.abort();
                return Err(HostError::Spawn {
                    function: function.name.clone(),
                    path: function.bootstrap.clone(),
                    source,
                });
            }
        };
        let pid = child.id();
        pid_tx.send_replace(pid);
        tracing::info!(function = %name, pid, port, "started execution environment");
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward_lines(out, name.clone(), pid, "stdout"));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward_lines(err, name.clone(), pid, "stderr"));
        }

        let (exit_tx, exit_rx) = watch::channel(None);
        let requested = stopper.requested.clone();
        let watch_name = name.clone();
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                _ = kill_rx => {
                    if let Err(e) = child.start_kill() {
                        tracing::warn!(function = %watch_name, pid, error = %e, "could not kill process");
                    }
                    child.wait().await
                }
            };
            let how = match status {
                Ok(s) => format!("process exited ({s})"),
                Err(e) => format!("lost track of the process: {e}"),
            };
            let asked = requested.load(Ordering::SeqCst);
            if asked {
                tracing::debug!(function = %watch_name, pid, %how, "environment stopped");
            } else {
                tracing::warn!(function = %watch_name, pid, %how, "environment died");
            }
            // Bookkeeping first, so that whoever wakes on the exit sees the pool already updated.
            (hooks.on_exit)(id, how.clone(), asked);
            let _ = exit_tx.send(Some(how));
        });

        Ok(Arc::new(Environment {
            id,
            generation,
            pid,
            api,
            queue: queue_tx,
            exited: exit_rx,
            stopper,
            server,
            // The function's own `MemorySize` (its environment says it) over the host's default.
            memory_mb: function
                .env
                .iter()
                .rfind(|(k, _)| k == "AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(settings.memory_mb),
        }))
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.exited.borrow().is_none()
    }

    /// Asks the process to stop; `wait_exit` tells when it has.
    pub(crate) fn stop(&self) {
        self.stopper.stop();
    }

    pub(crate) async fn wait_exit(&self) {
        let mut exited = self.exited.clone();
        let _ = exited.wait_for(Option::is_some).await;
    }

    fn crash_reason(&self) -> String {
        let how = self.exited.borrow().clone().unwrap_or_else(|| "the environment stopped".to_owned());
        match self.api.init_error.lock().clone() {
            Some(init) => format!("init error: {init}"),
            None => how,
        }
    }

    /// Hands `payload` to the process and waits for its answer.
    pub(crate) async fn run(
        &self,
        payload: Bytes,
        timeout: Duration,
        init_timeout: Duration,
    ) -> Result<(String, InvocationResult), RunError> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let (picked_tx, picked_rx) = oneshot::channel();
        let (reply_tx, reply_rx) = oneshot::channel();
        let invocation =
            Invocation { request_id: request_id.clone(), payload, timeout, picked: picked_tx, reply: reply_tx };
        if self.queue.send(invocation).await.is_err() {
            return Err(RunError::Crashed(self.crash_reason()));
        }
        // Phase 1: a warm process takes the event at once; a new one after its init.
        tokio::select! {
            picked = picked_rx => {
                if picked.is_err() {
                    return Err(RunError::Crashed(self.crash_reason()));
                }
            }
            _ = self.wait_exit() => return Err(RunError::Crashed(self.crash_reason())),
            _ = tokio::time::sleep(init_timeout) => return Err(RunError::InitTimeout),
        }
        // Phase 2: the function timeout.
        let started = Instant::now();
        tokio::select! {
            reply = reply_rx => match reply {
                Ok(outcome) => {
                    // Lambda's own line in the function's log, from the event handed over to the
                    // answer; billed in whole milliseconds, rounded up.
                    let ms = started.elapsed().as_secs_f64() * 1000.0;
                    tracing::info!(target: "lambda", function = %self.api.function,
                        "REPORT RequestId: {request_id}\tDuration: {ms:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB",
                        ms.ceil().max(1.0) as u64, self.memory_mb);
                    Ok((request_id, outcome))
                }
                Err(_) => Err(RunError::Crashed(self.crash_reason())),
            },
            _ = self.wait_exit() => Err(RunError::Crashed(self.crash_reason())),
            _ = tokio::time::sleep(timeout) => Err(RunError::Timeout),
        }
    }
}

impl Drop for Environment {
    fn drop(&mut self) {
        self.server.abort();
        self.stopper.stop();
    }
}

/// Sends a process's output to `tracing`, a line at a time, tagged with the function name
/// (Lambda sends it to CloudWatch Logs).
async fn forward_lines(stream: impl AsyncRead + Unpin, function: Arc<str>, pid: Option<u32>, which: &'static str) {
    let mut lines = BufReader::new(stream).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => tracing::info!(target: "lambda", function = %function, pid, stream = which, "{line}"),
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(function = %function, pid, stream = which, error = %e, "output stream ended");
                break;
            }
        }
    }
}
