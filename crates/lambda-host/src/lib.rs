//! # dynamowave-lambda-host: the real Lambda binaries, run locally
//!
//! Does what AWS's runtime interface emulator does, for several functions at once: it serves
//! the Lambda Runtime API (`/2018-06-01/runtime/...`) on loopback and starts each function's
//! `bootstrap` with `AWS_LAMBDA_RUNTIME_API` pointing at it, so the very binaries deployed to
//! Lambda answer the local gateway. Each function gets up to `concurrency` processes (its
//! execution environments), started on demand and reused while warm; a timed-out process is
//! killed and a crashed one replaced, as Lambda does. `docs/lambda-local.md` has the whole
//! picture and how it differs from AWS.
//!
//! # Layout
//!
//! - [`function`]: [`LambdaFunction`] (what to run) and [`HostSettings`] (queue and init
//!   timeouts, memory size, region, payload limit, inherited environment).
//! - [`runtimes`]: [`Runtime`] and [`RuntimeTools`]: `provided.*` bootstraps, `python3.x`
//!   through awslambdaric in a venv, `nodejs20.x`+ through our loop in `runtimes/node/`.
//! - `runtime_api`: the Runtime API routes, served to one process and refused to any other.
//! - `peer`: which process a loopback connection comes from (Linux `/proc`).
//! - `environment`: one process and its own listener (so the host knows which process holds
//!   which invocation), its output forwarded to `tracing`, its exit watched.
//! - `pool`: a function's environments: concurrency limit, throttling, warm reuse, timeouts,
//!   crash replacement, and [`FunctionStats`] (including each cold start's init time).
//! - [`error`]: [`HostError`], for starting the host. Invocations fail with the core's
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

mod environment;
pub mod error;
pub mod function;
mod peer;
mod pool;
mod runtime_api;
pub mod runtimes;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use axum::body::Bytes;
use dynamowave_core::integration::{Integration, IntegrationError};

pub use error::HostError;
pub use function::{HostSettings, LambdaFunction};
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
    /// above zero) and gets ready to run them.
    pub async fn start_with(functions: Vec<LambdaFunction>, settings: HostSettings) -> Result<LambdaHost, HostError> {
        let settings = Arc::new(settings);
        if !peer::CAN_CHECK {
            tracing::warn!(
                "this platform cannot tell which process calls the Runtime API: any local process can take and answer invocations"
            );
        }
        let mut pools = HashMap::new();
        for function in functions {
            check(&function)?;
            if pools.contains_key(&function.name) {
                return Err(HostError::DuplicateFunction(function.name));
            }
            tracing::info!(function = %function.name, bootstrap = %function.bootstrap.display(),
                concurrency = function.concurrency, timeout_ms = function.timeout.as_millis() as u64, "function registered");
            pools.insert(function.name.clone(), FunctionPool::new(function, settings.clone()));
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
        let payload = serde_json::to_vec(&event)
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
