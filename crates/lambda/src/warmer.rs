//! The warmer: on a schedule, invokes each function named in `WARM_FUNCTIONS` (comma list of
//! names or ARNs) with `{"warmup": true}`, all at once, synchronously (RequestResponse), so a
//! container of each is warm when real traffic comes. Each result and its duration is logged.

use std::time::{Duration, Instant};

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use serde::Serialize;
use tracing::{info, warn};

pub const WARM_FUNCTIONS_ENV: &str = "WARM_FUNCTIONS";

/// The functions to warm, from `WARM_FUNCTIONS`.
pub fn functions_from_env() -> Vec<String> {
    parse_functions(&std::env::var(WARM_FUNCTIONS_ENV).unwrap_or_default())
}

pub fn parse_functions(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|f| !f.is_empty()).map(str::to_string).collect()
}

/// How one warm-up went.
#[derive(Debug, Clone, Serialize)]
pub struct WarmResult {
    pub function: String,
    pub ok: bool,
    /// The function's answer (`{"warm": true}`), or why it failed.
    pub detail: String,
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_millis())
}

async fn warm_one(client: &aws_sdk_lambda::Client, function: &str) -> WarmResult {
    let started = Instant::now();
    let result = client
        .invoke()
        .function_name(function)
        .invocation_type(InvocationType::RequestResponse)
        .payload(Blob::new(br#"{"warmup": true}"#.to_vec()))
        .send()
        .await;
    let duration = started.elapsed();
    let (ok, detail) = match result {
        // A function error (unhandled panic, bad bootstrap) still answers 200, with
        // FunctionError set.
        Ok(out) => {
            let payload = out.payload.map(|p| String::from_utf8_lossy(p.as_ref()).into_owned()).unwrap_or_default();
            match out.function_error {
                Some(kind) => (false, format!("{kind}: {payload}")),
                None => (true, payload),
            }
        }
        Err(e) => (false, aws_sdk_lambda::error::DisplayErrorContext(&e).to_string()),
    };
    let result = WarmResult { function: function.to_string(), ok, detail, duration };
    let duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    if ok {
        info!(function, duration_ms, answer = %result.detail, "warmed");
    } else {
        warn!(function, duration_ms, error = %result.detail, "warm-up failed");
    }
    result
}

/// Warms every function in parallel; one failure does not stop the others.
pub async fn warm_all(client: &aws_sdk_lambda::Client, functions: &[String]) -> Vec<WarmResult> {
    futures_util::future::join_all(functions.iter().map(|f| warm_one(client, f))).await
}
