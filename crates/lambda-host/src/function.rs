//! What to run ([`LambdaFunction`]) and how the host behaves ([`HostSettings`]).

use std::net::SocketAddr;
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
    /// The most processes (execution environments) this function runs at once *locally*; an
    /// invocation past it waits for one to be free (up to [`HostSettings::queue_timeout`])
    /// rather than being throttled, because Lambda would have started another environment.
    /// [`HostSettings::max_environments_per_function`] caps it too. Default: no cap of its own.
    /// This is not Lambda's reserved concurrency: that is `reserved_concurrency`.
    pub concurrency: usize,
    /// `ReservedConcurrentExecutions`: the function's own share of the account's concurrency.
    /// Invocations past it are throttled at once, as Lambda throttles synchronous invokes;
    /// `Some(0)` throttles every invocation (a stopped function). `None`: the function draws on
    /// the account's unreserved pool ([`HostSettings::account_concurrency`]).
    pub reserved_concurrency: Option<usize>,
}

impl LambdaFunction {
    /// A function with Lambda's defaults: 3 s timeout, no reserved concurrency, and as many
    /// environments as the host allows a function.
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
            concurrency: usize::MAX,
            reserved_concurrency: None,
        }
    }
}

/// Host-wide settings. The defaults follow Lambda where Lambda has a number.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// How long an invocation waits for a free environment when the function already runs as
    /// many as it may locally (its `concurrency`, [`HostSettings::max_environments_per_function`])
    /// before it fails with a timeout. In Lambda it would have had its own environment; API
    /// Gateway gives up on an integration after 29 s, the default.
    pub queue_timeout: Duration,
    /// The account's concurrent executions (Lambda's default quota: 1,000). Functions without
    /// reserved concurrency share what the reserved ones leave; past it they are throttled.
    pub account_concurrency: usize,
    /// How much of `account_concurrency` reservations must leave unreserved (Lambda: 100): a
    /// host whose functions reserve more is refused at start.
    pub min_unreserved_concurrency: usize,
    /// The most processes one function runs at once locally, whatever its concurrency: a
    /// machine runs far fewer environments than Lambda. `None`:
    /// [`HostSettings::max_environments_for`] picks from the CPUs and the runtime.
    pub max_environments_per_function: Option<usize>,
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
    /// A PEM file of CA certificates the processes trust besides the machine's roots (a local
    /// CA that signed the gateway's certificate). Sets `NODE_EXTRA_CA_CERTS` to it, and
    /// `SSL_CERT_FILE`, `AWS_CA_BUNDLE` and `REQUESTS_CA_BUNDLE` to a bundle of the machine's
    /// roots plus it (those variables replace the roots rather than add to them). `None`:
    /// nothing is set.
    pub ca_bundle: Option<PathBuf>,
    /// Host names whose port 443 leads elsewhere: `(pattern, address)`, the pattern a host name
    /// or `*.` and a suffix (the star is one label), e.g.
    /// `("*.execute-api.us-east-1.amazonaws.com", 127.0.0.1:PORT)`. Passed as
    /// `DYNAMOWAVE_HOST_MAP` and honoured by the Node.js and Python runtimes (not by `provided.*`
    /// bootstraps, which the host cannot hook). Empty: nothing is mapped.
    pub host_map: Vec<(String, SocketAddr)>,
    /// Watch each function's code (its task root, or its bootstrap file when it has none) and
    /// run the next invocation after a change in a new environment, as a deploy does; warm
    /// ones are retired once their current invocation ends.
    pub watch_code: bool,
    /// How long the code must be quiet after a change before a new environment starts from it,
    /// so that a save or a build in progress is not loaded half-written.
    pub code_settle: Duration,
}

impl HostSettings {
    /// How many processes `function` may run at once here: the least of its `concurrency`, its
    /// reserved concurrency and `max_environments_per_function`, which by default is four per
    /// CPU for a `provided.*` bootstrap (a native binary of a few MB, mostly waiting on I/O) and
    /// two per CPU for Node.js and Python (tens of MB each, slower to start); at least 2.
    pub fn max_environments_for(&self, function: &LambdaFunction) -> usize {
        let machine = self.max_environments_per_function.unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
            let interpreted =
                function.execution_env.as_deref().is_some_and(|e| e.contains("nodejs") || e.contains("python"));
            (cpus * if interpreted { 2 } else { 4 }).max(2)
        });
        machine.min(function.concurrency).min(function.reserved_concurrency.unwrap_or(usize::MAX)).max(1)
    }
}

impl Default for HostSettings {
    fn default() -> Self {
        HostSettings {
            queue_timeout: Duration::from_secs(29),
            account_concurrency: 1000,
            min_unreserved_concurrency: 100,
            max_environments_per_function: None,
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
            ca_bundle: None,
            host_map: Vec::new(),
            watch_code: true,
            code_settle: Duration::from_millis(200),
        }
    }
}
