//! # dynamowave-lambda-host: the real Lambda binaries, run locally
//!
//! Does what AWS's runtime interface emulator does, for several functions at once: it serves
//! the Lambda Runtime API (`/2018-06-01/runtime/...`) on loopback and starts each function's
//! `bootstrap` with `AWS_LAMBDA_RUNTIME_API` pointing at it, so the very binaries deployed to
//! Lambda answer the local gateway. Concurrency is counted as Lambda counts it (reserved
//! concurrency, the account's unreserved pool, throttling past them); each function's processes
//! (its execution environments) are capped to suit the machine, started on demand and reused
//! while warm; a timed-out process is killed and a crashed one replaced, as Lambda does. `docs/lambda-local.md` has the whole
//! picture and how it differs from AWS.
//!
//! # Layout
//!
//! - [`function`]: [`LambdaFunction`] (what to run) and [`HostSettings`] (queue and init
//!   timeouts, memory size, region, payload limit, inherited environment, CA bundle, host map,
//!   concurrency, code watching).
//! - [`runtimes`]: [`Runtime`] and [`RuntimeTools`]: `provided.*` bootstraps, `python3.x`
//!   through awslambdaric in a venv, `nodejs20.x`+ through our loop in `runtimes/node/`.
//! - `runtimes/node/`: the Node.js loop (`runtime.mjs`), its SDK resolve hook
//!   (`resolve-sdk.mjs`) and the host-map preload (`host-map.cjs`); `runtimes/python/`: the
//!   host-map hook the venv imports at start-up (`dynamowave_host_map.py`).
//! - `code_watch`: notices a function's code changing (`notify`), so that the next invocation
//!   runs in a new environment, as after a deploy.
//! - `network`: what the processes are told about the network: the CA bundle variables (with a
//!   combined bundle of the machine's roots and the local CA) and [`HOST_MAP_VAR`].
//! - `runtime_api`: the Runtime API routes, served to one process and refused to any other.
//! - `peer`: which process a loopback connection comes from (Linux `/proc`).
//! - `environment`: one process and its own listener (so the host knows which process holds
//!   which invocation), its output forwarded to `tracing`, its exit watched.
//! - `pool`: a function's environments: reserved and account concurrency (throttling), the cap
//!   on processes (waiting), warm reuse, timeouts, crash replacement, and [`FunctionStats`]
//!   (including each cold start's init time).
//! - [`error`]: [`HostError`], for starting the host. Invocations fail with the ports crate's
//!   [`IntegrationError`].
//! - `src/bin/echo-bootstrap.rs`: a `lambda_runtime` function that echoes its event and can be
//!   told to fail, panic, sleep or exit; the tests run it.
//! - This file: [`LambdaHost`] (one pool per function, the gateway's `Integration` for each) and
//!   [`HostStats`].
//!
//! # Repeated on purpose
//!
//! The Runtime API's handlers in `runtime_api` share their axum signatures (state, request id,
//! headers, body): that is the shape of an axum handler, not shared logic.

mod code_watch;
mod environment;
pub mod error;
pub mod function;
mod network;
mod peer;
mod pool;
mod runtime_api;
pub mod runtimes;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use axum::body::Bytes;
use dynamowave_apigw::{Integration, IntegrationError};
use tokio::sync::Semaphore;

pub use error::HostError;
pub use function::{HostSettings, LambdaFunction};
pub use network::HOST_MAP_VAR;
pub use pool::FunctionStats;
pub use runtimes::{Runtime, RuntimeError, RuntimeTools};

use pool::FunctionPool;

/// Every function's stats.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HostStats {
    pub functions: Vec<FunctionStats>,
}

impl HostStats {
    pub fn function(&self, name: &str) -> Option<&FunctionStats> {
        self.functions.iter().find(|f| f.name == name)
    }
}

/// Runs Lambda functions locally. Processes start on the first invocation (a cold start).
pub struct LambdaHost {
    pools: HashMap<String, Arc<FunctionPool>>,
}

impl LambdaHost {
    /// [`LambdaHost::start_with`] and default [`HostSettings`].
    pub async fn start(functions: Vec<LambdaFunction>) -> Result<LambdaHost, HostError> {
        Self::start_with(functions, HostSettings::default()).await
    }

    /// Checks the functions (unique names, an executable bootstrap, concurrency and timeout
    /// above zero, reservations the account can grant) and the settings, and gets ready to run
    /// them.
    pub async fn start_with(functions: Vec<LambdaFunction>, settings: HostSettings) -> Result<LambdaHost, HostError> {
        let network = Arc::new(network::ProcessNetwork::new(&settings)?);
        let settings = Arc::new(settings);
        if !peer::CAN_CHECK {
            tracing::warn!(
                "this platform cannot tell which process calls the Runtime API: any local process can take and answer invocations"
            );
        }
        let unreserved = Arc::new(Semaphore::new(unreserved_pool(&functions, &settings)?));
        let mut pools = HashMap::new();
        for function in functions {
            check(&function)?;
            if pools.contains_key(&function.name) {
                return Err(HostError::DuplicateFunction(function.name));
            }
            tracing::info!(function = %function.name, bootstrap = %function.bootstrap.display(),
                reserved_concurrency = function.reserved_concurrency,
                max_environments = settings.max_environments_for(&function),
                timeout_ms = function.timeout.as_millis() as u64, "function registered");
            let pool = FunctionPool::new(function, settings.clone(), network.clone(), unreserved.clone());
            pools.insert(pool.name().to_owned(), pool);
        }
        Ok(LambdaHost { pools })
    }

    /// The function as the gateway's integration for a route.
    pub fn integration(&self, name: &str) -> Option<Arc<dyn Integration>> {
        let pool = self.pools.get(name)?.clone();
        Some(Arc::new(LambdaIntegration { pool }))
    }

    /// Invokes a function with any JSON event (e.g. the authorizer's REQUEST event) and returns
    /// its JSON answer.
    pub async fn invoke_json(
        &self,
        name: &str,
        event: serde_json::Value,
    ) -> Result<serde_json::Value, IntegrationError> {
        let pool =
            self.pools.get(name).ok_or_else(|| IntegrationError::Failed(format!("no function named `{name}`")))?;
        let payload = serde_json::to_vec(&event)
            .map_err(|e| IntegrationError::Failed(format!("the event does not serialize: {e}")))?;
        let body = pool.invoke(Bytes::from(payload)).await?;
        serde_json::from_slice(&body)
            .map_err(|e| IntegrationError::Failed(format!("`{name}` answered with something other than JSON: {e}")))
    }

    pub fn stats(&self) -> HostStats {
        let mut functions: Vec<_> = self.pools.values().map(|p| p.stats()).collect();
        functions.sort_by(|a, b| a.name.cmp(&b.name));
        HostStats { functions }
    }

    /// The process ids of a function's live environments.
    pub fn pids(&self, name: &str) -> Vec<u32> {
        self.pools.get(name).map(|p| p.pids()).unwrap_or_default()
    }

    /// Stops every process and waits for them to exit.
    pub async fn shutdown(self) {
        for pool in self.pools.values() {
            tracing::debug!(function = pool.name(), "stopping");
            pool.shutdown().await;
        }
    }
}

/// What the account leaves to functions without reserved concurrency, after checking that the
/// reservations leave at least `min_unreserved_concurrency`, as Lambda's
/// `PutFunctionConcurrency` does.
fn unreserved_pool(functions: &[LambdaFunction], settings: &HostSettings) -> Result<usize, HostError> {
    let account = settings.account_concurrency;
    let keep = settings.min_unreserved_concurrency;
    if keep > account {
        return Err(HostError::InvalidSetting {
            setting: "min_unreserved_concurrency",
            problem: format!("{keep} is more than the account's concurrency ({account})"),
        });
    }
    let mut reserved = 0usize;
    for function in functions {
        let Some(own) = function.reserved_concurrency else { continue };
        reserved = reserved.saturating_add(own);
        if reserved > account - keep {
            return Err(HostError::InvalidFunction {
                name: function.name.clone(),
                problem: format!(
                    "reserved concurrency {own} brings the reservations to {reserved}, which leaves less than the \
                     {keep} unreserved executions the account keeps (account concurrency {account})"
                ),
            });
        }
    }
    // Lambda counts nothing against a semaphore this large; keep within what tokio allows.
    Ok((account - reserved).min(Semaphore::MAX_PERMITS))
}

fn check(function: &LambdaFunction) -> Result<(), HostError> {
    let invalid = |problem: String| HostError::InvalidFunction { name: function.name.clone(), problem };
    if function.name.is_empty() {
        return Err(invalid("the name is empty".into()));
    }
    if function.concurrency == 0 {
        return Err(invalid("concurrency must be at least 1".into()));
    }
    if function.timeout.is_zero() {
        return Err(invalid("the timeout must be above zero".into()));
    }
    let meta = std::fs::metadata(&function.bootstrap)
        .map_err(|e| invalid(format!("bootstrap `{}`: {e}", function.bootstrap.display())))?;
    if !meta.is_file() {
        return Err(invalid(format!("bootstrap `{}` is not a file", function.bootstrap.display())));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(invalid(format!("bootstrap `{}` is not executable", function.bootstrap.display())));
        }
    }
    Ok(())
}

/// A function behind the [`Integration`] port: the event in as JSON, an API Gateway proxy
/// response out, as API Gateway's `AWS_PROXY` integration does.
struct LambdaIntegration {
    pool: Arc<FunctionPool>,
}

#[async_trait]
impl Integration for LambdaIntegration {
    async fn invoke(
        &self,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, IntegrationError> {
        let payload = dynamowave_apigw::lambda_payload(&event)
            .map_err(|e| IntegrationError::Failed(format!("the event does not serialize: {e}")))?;
        let body = self.pool.invoke(Bytes::from(payload)).await?;
        serde_json::from_slice(&body).map_err(|e| {
            IntegrationError::Failed(format!(
                "`{}` answered with something other than an API Gateway proxy response: {e}",
                self.pool.name()
            ))
        })
    }
}
