//! What to run ([`LambdaFunction`]) and how the host behaves ([`HostSettings`]).

use std::path::PathBuf;
use std::time::Duration;

/// One Lambda function: a `bootstrap` binary (the `provided.al2023` custom runtime layout) and
/// its configuration.
#[derive(Debug, Clone)]
pub struct LambdaFunction {
    /// The function name (`AWS_LAMBDA_FUNCTION_NAME`), also the name invocations use.
    pub name: String,
    /// The executable that speaks the Runtime API, e.g. a binary built with `lambda_runtime`,
    /// or a runtime's interpreter ([`crate::runtimes`]).
    pub bootstrap: PathBuf,
    /// Its arguments (a managed runtime's loop and handler; none for a `bootstrap`).
    pub args: Vec<String>,
    /// `LAMBDA_TASK_ROOT` and the working directory; `None`: the bootstrap's directory.
    pub task_root: Option<PathBuf>,
    /// `_HANDLER`; `None`: the bootstrap's file name.
    pub handler: Option<String>,
    /// `AWS_EXECUTION_ENV`; `None`: `AWS_Lambda_provided.al2023`.
    pub execution_env: Option<String>,
    /// Extra environment, as the function's configuration would set it (table names,
    /// `AWS_ENDPOINT_URL_DYNAMODB`, ...). Applied last, so it may override the defaults.
    pub env: Vec<(String, String)>,
    /// The function timeout, counted from when the process takes the event (init excluded).
    pub timeout: Duration,
    /// How many processes (execution environments) may run at once: reserved concurrency.
    pub concurrency: usize,
}

impl LambdaFunction {
    /// A function with Lambda's defaults: 3 s timeout, and 10 environments.
    pub fn new(name: impl Into<String>, bootstrap: impl Into<PathBuf>) -> Self {
        LambdaFunction {
            name: name.into(),
            bootstrap: bootstrap.into(),
            args: Vec::new(),
            task_root: None,
            handler: None,
            execution_env: None,
            env: Vec::new(),
            timeout: Duration::from_secs(3),
            concurrency: 10,
        }
    }
}

/// Host-wide settings. The defaults follow Lambda where Lambda has a number.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// How long an invocation waits for a free environment when all `concurrency` are busy
    /// before it is throttled. Lambda throttles synchronous invokes at once; a short wait
    /// smooths bursts on a small machine.
    pub queue_timeout: Duration,
    /// How long a new process may take to reach its first `/next` (Lambda's init phase: 10 s).
    pub init_timeout: Duration,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, in MB.
    pub memory_mb: u32,
    /// `AWS_REGION` and `AWS_DEFAULT_REGION`, and the region in the function ARN.
    pub region: String,
    /// The account in the function ARN.
    pub account_id: String,
    /// Largest event and response, in bytes (Lambda: 6 MB for synchronous invokes).
    pub max_payload_bytes: usize,
    /// Host variables passed through to the processes. Lambda starts from an empty environment;
    /// credentials are passed through because in AWS they come from the execution role.
    pub inherit_env: Vec<String>,
}

impl Default for HostSettings {
    fn default() -> Self {
        HostSettings {
            queue_timeout: Duration::from_millis(500),
            init_timeout: Duration::from_secs(10),
            memory_mb: 128,
            region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned()),
            account_id: "000000000000".to_owned(),
            max_payload_bytes: 6 * 1024 * 1024,
            inherit_env: [
                "PATH",
                "RUST_LOG",
                "RUST_BACKTRACE",
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN",
                "AWS_ENDPOINT_URL",
                "AWS_ENDPOINT_URL_DYNAMODB",
            ]
            .map(str::to_owned)
            .to_vec(),
        }
    }
}
