//! A function's execution environments: concurrency counted as Lambda counts it (throttled past
//! the reserved or the account's unreserved concurrency), processes started on demand up to the
//! local cap (past it an invocation waits), reused while warm, retired when the code changes,
//! replaced when they crash or time out, and counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::body::Bytes;
use dynamowave_apigw::IntegrationError;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{Semaphore, TryAcquireError};

use crate::code_watch::CodeWatch;
use crate::environment::{Environment, Hooks, RunError};
use crate::function::{HostSettings, LambdaFunction};
use crate::network::ProcessNetwork;
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
    /// Invocations refused at once: reserved concurrency, or the account's unreserved pool,
    /// in use.
    pub throttles: u64,
    /// Invocations that waited for a free process (the function was at its local cap).
    pub environment_waits: u64,
    /// Of those, the ones that gave up after `queue_timeout` (failed with `Timeout`).
    pub environment_wait_timeouts: u64,
    /// The function's `ReservedConcurrentExecutions`, if any.
    pub reserved_concurrency: Option<usize>,
    /// The most processes it runs at once here.
    pub max_environments: usize,
    /// Environments stopped because the function's code changed after they started.
    pub retired_for_code_change: u64,
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
    environment_waits: AtomicU64,
    environment_wait_timeouts: AtomicU64,
    retired: AtomicU64,
    crashes: AtomicU64,
    started: AtomicU64,
    init_durations: Mutex<Vec<Duration>>,
}

pub(crate) struct FunctionPool {
    function: LambdaFunction,
    settings: Arc<HostSettings>,
    network: Arc<ProcessNetwork>,
    /// Lambda's concurrency: the function's reserved concurrency, or the account's unreserved
    /// pool shared with the other functions without one. Empty means throttled.
    concurrency: Arc<Semaphore>,
    /// One permit per process allowed to run at once here; empty means wait.
    environments: Arc<Semaphore>,
    max_environments: usize,
    code: CodeWatch,
    idle: Mutex<Vec<Arc<Environment>>>,
    all: Mutex<HashMap<u64, Arc<Environment>>>,
    next_id: AtomicU64,
    counters: Arc<Counters>,
}

impl FunctionPool {
    pub(crate) fn new(
        function: LambdaFunction,
        settings: Arc<HostSettings>,
        network: Arc<ProcessNetwork>,
        unreserved: Arc<Semaphore>,
    ) -> Arc<Self> {
        let max_environments = settings.max_environments_for(&function).min(Semaphore::MAX_PERMITS);
        Arc::new(FunctionPool {
            concurrency: match function.reserved_concurrency {
                Some(reserved) => Arc::new(Semaphore::new(reserved.min(Semaphore::MAX_PERMITS))),
                None => unreserved,
            },
            environments: Arc::new(Semaphore::new(max_environments)),
            max_environments,
            code: if settings.watch_code { CodeWatch::start(&function) } else { CodeWatch::off() },
            function,
            settings,
            network,
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
        let shutting_down = || IntegrationError::Failed("the Lambda host is shutting down".into());
        // Lambda's count: an invocation holds one unit of concurrency from start to answer,
        // including while it waits for a local process below (in Lambda it would be running).
        let concurrency = match self.concurrency.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return Err(shutting_down()),
            Err(TryAcquireError::NoPermits) => {
                self.counters.throttles.fetch_add(1, Ordering::Relaxed);
                match self.function.reserved_concurrency {
                    Some(reserved) => {
                        tracing::warn!(function = %name, reserved, "throttled: reserved concurrency in use")
                    }
                    None => tracing::warn!(function = %name, account = self.settings.account_concurrency,
                        "throttled: the account's unreserved concurrency is in use"),
                }
                return Err(IntegrationError::Throttled);
            }
        };
        let environment = match self.environments.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return Err(shutting_down()),
            Err(TryAcquireError::NoPermits) => {
                self.counters.environment_waits.fetch_add(1, Ordering::Relaxed);
                let wait = self.settings.queue_timeout;
                match tokio::time::timeout(wait, self.environments.clone().acquire_owned()).await {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_)) => return Err(shutting_down()),
                    Err(_) => {
                        self.counters.environment_wait_timeouts.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(function = %name, max_environments = self.max_environments,
                            waited_ms = wait.as_millis() as u64, "no environment became free in time");
                        return Err(IntegrationError::Timeout);
                    }
                }
            }
        };
        // After a change, let the code settle before anything starts from it.
        self.code.settled(self.settings.code_settle).await;
        let generation = self.code.generation();
        let env = match self.take_idle(generation) {
            Some(env) => env,
            None => self.start_environment(generation).await?,
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
        drop(environment);
        drop(concurrency);
        answer
    }

    /// A warm environment running the current code. Older ones are retired on the way.
    fn take_idle(&self, generation: u64) -> Option<Arc<Environment>> {
        let mut idle = self.idle.lock();
        // Most recently used first: it is the warmest, and the others may be reaped idle.
        while let Some(env) = idle.pop() {
            if env.generation < generation {
                self.retire(&env);
            } else if env.is_alive() {
                return Some(env);
            }
        }
        None
    }

    fn put_idle(&self, env: Arc<Environment>) {
        if env.generation < self.code.generation() {
            self.retire(&env);
        } else if env.is_alive() {
            self.idle.lock().push(env);
        }
    }

    /// Stops an environment started from code that has changed since (as a deploy does).
    fn retire(&self, env: &Environment) {
        if env.is_alive() {
            tracing::info!(function = %self.function.name, pid = env.pid, "code changed: retiring the environment");
            self.counters.retired.fetch_add(1, Ordering::Relaxed);
            env.stop();
        }
    }

    async fn start_environment(self: &Arc<Self>, generation: u64) -> Result<Arc<Environment>, IntegrationError> {
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
        let env = Environment::spawn(id, generation, &self.function, &self.settings, &self.network.env, hooks)
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
            environment_waits: c.environment_waits.load(Ordering::Relaxed),
            environment_wait_timeouts: c.environment_wait_timeouts.load(Ordering::Relaxed),
            retired_for_code_change: c.retired.load(Ordering::Relaxed),
            reserved_concurrency: self.function.reserved_concurrency,
            max_environments: self.max_environments,
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
        // Not the concurrency semaphore: the account's pool is shared with the other functions.
        self.environments.close();
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
