//! A function's execution environments: started on demand up to its concurrency, reused while
//! warm, replaced when they crash or time out, and counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::body::Bytes;
use dynamowave_core::integration::IntegrationError;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::environment::{Environment, Hooks, RunError};
use crate::function::{HostSettings, LambdaFunction};
use crate::runtime_api::InvocationResult;

/// How long shutdown waits for a killed process to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters for one function, as [`crate::LambdaHost::stats`] reports them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FunctionStats {
    pub name: String,
    /// Invocations asked for (including throttled ones).
    pub invocations: u64,
    /// Invocations the function answered with an error (`/error`).
    pub errors: u64,
    pub timeouts: u64,
    pub throttles: u64,
    /// Processes that exited without being asked to (in flight or idle).
    pub crashes: u64,
    /// Processes started, i.e. cold starts.
    pub processes_started: u64,
    pub live_processes: usize,
    pub idle_processes: usize,
    /// Per started process that reached `/next`: time from process start to its first `/next`.
    pub init_durations: Vec<Duration>,
}

#[derive(Default)]
struct Counters {
    invocations: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    throttles: AtomicU64,
    crashes: AtomicU64,
    started: AtomicU64,
    init_durations: Mutex<Vec<Duration>>,
}

pub(crate) struct FunctionPool {
    function: LambdaFunction,
    settings: Arc<HostSettings>,
    /// One permit per environment allowed to be busy: reserved concurrency.
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Arc<Environment>>>,
    all: Mutex<HashMap<u64, Arc<Environment>>>,
    next_id: AtomicU64,
    counters: Arc<Counters>,
}

impl FunctionPool {
    pub(crate) fn new(function: LambdaFunction, settings: Arc<HostSettings>) -> Arc<Self> {
        Arc::new(FunctionPool {
            permits: Arc::new(Semaphore::new(function.concurrency)),
            function,
            settings,
            idle: Mutex::new(Vec::new()),
            all: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            counters: Arc::new(Counters::default()),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.function.name
    }

    /// Invokes the function with a raw event. Runs on its own task so that a caller that stops
    /// waiting cannot leave an environment half-used.
    pub(crate) async fn invoke(self: &Arc<Self>, payload: Bytes) -> Result<Bytes, IntegrationError> {
        let pool = self.clone();
        tokio::spawn(async move { pool.invoke_inner(payload).await })
            .await
            .map_err(|e| IntegrationError::Failed(format!("the invocation task failed: {e}")))?
    }

    async fn invoke_inner(self: Arc<Self>, payload: Bytes) -> Result<Bytes, IntegrationError> {
        let name = &self.function.name;
        self.counters.invocations.fetch_add(1, Ordering::Relaxed);
        let limit = self.settings.max_payload_bytes;
        if payload.len() > limit {
            return Err(IntegrationError::Failed(format!(
                "the event is {} bytes; the limit is {limit} bytes",
                payload.len()
            )));
        }
        let permit = match tokio::time::timeout(self.settings.queue_timeout, self.permits.clone().acquire_owned()).await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(IntegrationError::Failed("the Lambda host is shutting down".into())),
            Err(_) => {
                self.counters.throttles.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(function = %name, concurrency = self.function.concurrency, "throttled");
                return Err(IntegrationError::Throttled);
            }
        };
        let env = match self.take_idle() {
            Some(env) => env,
            None => self.start_environment().await?,
        };
        let result = env.run(payload, self.function.timeout, self.settings.init_timeout).await;
        let answer = match result {
            Ok((_, InvocationResult::Response(body))) => {
                self.put_idle(env);
                if body.len() > limit {
                    return Err(IntegrationError::Failed(format!(
                        "the response is {} bytes; the limit is {limit} bytes",
                        body.len()
                    )));
                }
                Ok(body)
            }
            Ok((request_id, InvocationResult::Error { error_type, message })) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(function = %name, %request_id, "invocation failed");
                self.put_idle(env);
                Err(IntegrationError::Failed(format!("{error_type}: {message}")))
            }
            Err(RunError::Timeout) => {
                self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(function = %name, pid = env.pid, timeout_ms = self.function.timeout.as_millis() as u64,
                    "invocation timed out; stopping its environment");
                // Lambda discards a timed-out environment; the next invocation starts a new one.
                // Wait for the process to go so that the permit never outnumbers processes.
                env.stop();
                let _ = tokio::time::timeout(REAP_TIMEOUT, env.wait_exit()).await;
                Err(IntegrationError::Timeout)
            }
            Err(RunError::InitTimeout) => {
                env.stop();
                let _ = tokio::time::timeout(REAP_TIMEOUT, env.wait_exit()).await;
                Err(IntegrationError::Failed(format!(
                    "init did not finish within {} ms",
                    self.settings.init_timeout.as_millis()
                )))
            }
            Err(RunError::Crashed(why)) => {
                Err(IntegrationError::Failed(format!("the function's process failed: {why}")))
            }
        };
        drop(permit);
        answer
    }

    fn take_idle(&self) -> Option<Arc<Environment>> {
        let mut idle = self.idle.lock();
        // Most recently used first: it is the warmest, and the others may be reaped idle.
        while let Some(env) = idle.pop() {
            if env.is_alive() {
                return Some(env);
            }
        }
        None
    }

    fn put_idle(&self, env: Arc<Environment>) {
        if env.is_alive() {
            self.idle.lock().push(env);
        }
    }

    async fn start_environment(self: &Arc<Self>) -> Result<Arc<Environment>, IntegrationError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.counters.started.fetch_add(1, Ordering::Relaxed);
        let counters = self.counters.clone();
        let pool: Weak<FunctionPool> = Arc::downgrade(self);
        let hooks = Hooks {
            on_init: Box::new(move |took| counters.init_durations.lock().push(took)),
            on_exit: Box::new(move |id, _how, asked| {
                if let Some(pool) = pool.upgrade() {
                    pool.forget(id, asked);
                }
            }),
        };
        let env = Environment::spawn(id, &self.function, &self.settings, hooks)
            .await
            .map_err(|e| IntegrationError::Failed(e.to_string()))?;
        // The process may already have died; `forget` then finds nothing, and `is_alive` says so.
        if env.is_alive() {
            self.all.lock().insert(id, env.clone());
        }
        Ok(env)
    }

    fn forget(&self, id: u64, asked: bool) {
        if !asked {
            self.counters.crashes.fetch_add(1, Ordering::Relaxed);
        }
        // Take the entries out before they drop, outside the locks.
        let gone = self.all.lock().remove(&id);
        let mut idle_gone = Vec::new();
        self.idle.lock().retain(|e| {
            if e.id == id {
                idle_gone.push(e.clone());
                false
            } else {
                true
            }
        });
        drop(gone);
        drop(idle_gone);
    }

    pub(crate) fn stats(&self) -> FunctionStats {
        let c = &self.counters;
        FunctionStats {
            name: self.function.name.clone(),
            invocations: c.invocations.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
            throttles: c.throttles.load(Ordering::Relaxed),
            crashes: c.crashes.load(Ordering::Relaxed),
            processes_started: c.started.load(Ordering::Relaxed),
            live_processes: self.all.lock().len(),
            idle_processes: self.idle.lock().len(),
            init_durations: c.init_durations.lock().clone(),
        }
    }

    /// PIDs of the live processes (for tests and diagnostics).
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.all.lock().values().filter_map(|e| e.pid).collect()
    }

    /// Refuses new invocations and stops every process.
    pub(crate) async fn shutdown(&self) {
        self.permits.close();
        let envs: Vec<Arc<Environment>> = self.all.lock().values().cloned().collect();
        self.idle.lock().clear();
        for env in &envs {
            env.stop();
        }
        for env in &envs {
            if tokio::time::timeout(REAP_TIMEOUT, env.wait_exit()).await.is_err() {
                tracing::warn!(function = %self.function.name, pid = env.pid, "process did not exit in time");
            }
        }
    }
}
