//! The flags of `dynamowave serve` and what they mean: each flag (with its `DYNAMOWAVE_*`
//! variable) takes its default from the settings struct it sets, and [`ServeArgs`] turns them
//! into those settings. Both modes (`serve.rs` in-process, `lambda.rs` on the Lambda binaries)
//! start from here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use dynamowave_auth::{AllowedOrigins, AuthSettings, DomainNames, Secret};
use dynamowave_core::ChatSettings;
use dynamowave_gateway::GatewaySettings;
use dynamowave_gateway::settings::{
    Bucket, Concurrency, Limits, ManagementAccess, OriginSettings, SigV4Credentials, Throttling,
};
use dynamowave_store_redb::RedbSettings;

use crate::embedded;
use crate::route_settings::StageDefaults;

/// Flags of `dynamowave serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (WebSocket, `@connections`, web client, `/metrics`).
    #[arg(long, env = "DYNAMOWAVE_LISTEN", default_value_t = GatewaySettings::default().listen)]
    pub listen: SocketAddr,
    /// Where the embedded store keeps its file.
    #[arg(long, env = "DYNAMOWAVE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Stage name: the WebSocket is `ws://LISTEN/{stage}` (default: the shipped template's
    /// stage, `production`; with --template, the template stage of that name, else its first).
    #[arg(long, env = "DYNAMOWAVE_STAGE")]
    pub stage: Option<String>,
    /// `requestContext.apiId` of the events.
    #[arg(long, env = "DYNAMOWAVE_API_ID", default_value_t = GatewaySettings::default().api_id)]
    pub api_id: String,
    /// The API's route selection expression.
    #[arg(long, env = "DYNAMOWAVE_ROUTE_SELECTION_EXPRESSION", default_value_t = GatewaySettings::default().route_selection_expression)]
    pub route_selection_expression: String,

    /// Largest frame a client may send, bytes (larger: close 1009).
    #[arg(long, env = "DYNAMOWAVE_MAX_FRAME_BYTES", default_value_t = Limits::default().max_frame_bytes)]
    pub max_frame_bytes: usize,
    /// Largest message, bytes (larger: close 1009; PostToConnection: 413).
    #[arg(long, env = "DYNAMOWAVE_MAX_MESSAGE_BYTES", default_value_t = Limits::default().max_message_bytes)]
    pub max_message_bytes: usize,
    /// Seconds without a frame from the client before the connection is closed (1001).
    #[arg(long, env = "DYNAMOWAVE_IDLE_TIMEOUT_SECS", default_value_t = Unit::Secs.count(Limits::default().idle_timeout))]
    pub idle_timeout_secs: u64,
    /// Longest a connection may live, seconds (then closed 1001).
    #[arg(long, env = "DYNAMOWAVE_MAX_CONNECTION_SECS", default_value_t = Unit::Secs.count(Limits::default().max_connection_duration))]
    pub max_connection_secs: u64,
    /// Most live connections from one source address (0: no limit, as on API Gateway).
    #[arg(long, env = "DYNAMOWAVE_MAX_CONNECTIONS_PER_IP", default_value_t = Limits::default().max_connections_per_ip)]
    pub max_connections_per_ip: usize,
    /// Seconds a client may take to send its request headers (slowloris protection).
    #[arg(long, env = "DYNAMOWAVE_HEADER_READ_TIMEOUT_SECS", default_value_t = Unit::Secs.count(Limits::default().header_read_timeout))]
    pub header_read_timeout_secs: u64,
    /// Frames that may wait for one slow client before it is disconnected (1008).
    #[arg(long, env = "DYNAMOWAVE_SEND_QUEUE_FRAMES", default_value_t = Limits::default().send_queue_frames)]
    pub send_queue_frames: usize,
    /// Bytes that may wait for one slow client before it is disconnected (1008); each frame
    /// counts in full in each queue.
    #[arg(long, env = "DYNAMOWAVE_SEND_QUEUE_BYTES", default_value_t = Limits::default().send_queue_bytes)]
    pub send_queue_bytes: usize,
    /// Milliseconds an answer to a client's own request (a reply, a replay) waits for its send
    /// queue to drain below half the limits before the client is disconnected (1008).
    #[arg(long, env = "DYNAMOWAVE_SEND_QUEUE_WAIT_MS", default_value_t = Unit::Millis.count(Limits::default().send_queue_wait))]
    pub send_queue_wait_ms: u64,
    /// Frames to one connection that keep coming closer together than this many microseconds (a
    /// fifth in a row: a flooded room) are batched, one write per window; slower ones are written
    /// at once (0: always at once).
    #[arg(long, env = "DYNAMOWAVE_COALESCE_US", default_value_t = Unit::Micros.count(Limits::default().coalesce))]
    pub coalesce_us: u64,

    /// Account-wide message rate, per second (0: unlimited).
    #[arg(long, env = "DYNAMOWAVE_ACCOUNT_RATE", default_value_t = Throttling::default().account.rate)]
    pub account_rate: f64,
    /// Account-wide burst.
    #[arg(long, env = "DYNAMOWAVE_ACCOUNT_BURST", default_value_t = Throttling::default().account.burst)]
    pub account_burst: u32,
    /// Each route's rate unless --route-throttle names it (`DefaultRouteSettings`), per second.
    #[arg(long, env = "DYNAMOWAVE_STAGE_RATE", help = embedded::help::stage_rate())]
    pub stage_rate: Option<f64>,
    /// Each route's burst unless --route-throttle names it.
    #[arg(long, env = "DYNAMOWAVE_STAGE_BURST", help = embedded::help::stage_burst())]
    pub stage_burst: Option<u32>,
    /// Per-route throttling (`RouteSettings`): `ROUTE=RATE:BURST`, repeatable or comma-separated;
    /// each replaces the template's entry for its route.
    #[arg(long, env = "DYNAMOWAVE_ROUTE_THROTTLE", value_delimiter = ',', help = embedded::help::route_throttle())]
    pub route_throttle: Vec<String>,
    /// New connections per second (over it: HTTP 429 on the upgrade; 0: unlimited).
    #[arg(long, env = "DYNAMOWAVE_CONNECT_RATE", default_value_t = Throttling::default().connect.rate)]
    pub connect_rate: f64,
    /// New-connection burst.
    #[arg(long, env = "DYNAMOWAVE_CONNECT_BURST", default_value_t = Throttling::default().connect.burst)]
    pub connect_burst: u32,
    /// Messages per second from one connection (0: unlimited).
    #[arg(long, env = "DYNAMOWAVE_CONNECTION_RATE", default_value_t = Throttling::default().per_connection.rate)]
    pub connection_rate: f64,
    /// Per-connection burst.
    #[arg(long, env = "DYNAMOWAVE_CONNECTION_BURST", default_value_t = Throttling::default().per_connection.burst)]
    pub connection_burst: u32,

    /// Reserved concurrency per route: `ROUTE=N`, repeatable or comma-separated (the defaults,
    /// from the template's `ReservedConcurrentExecutions`, are listed in the help).
    #[arg(long, env = "DYNAMOWAVE_ROUTE_CONCURRENCY", value_delimiter = ',', help = embedded::help::route_concurrency())]
    pub route_concurrency: Vec<String>,
    /// Concurrency of routes not named in --route-concurrency.
    #[arg(long, env = "DYNAMOWAVE_DEFAULT_CONCURRENCY", help = embedded::help::default_concurrency())]
    pub default_concurrency: Option<usize>,
    /// How long an invocation waits for a free slot before it is throttled, milliseconds.
    #[arg(long, env = "DYNAMOWAVE_CONCURRENCY_QUEUE_MS", default_value_t = Unit::Millis.count(Concurrency::default().queue_timeout))]
    pub concurrency_queue_ms: u64,

    /// Whether loopback callers may use the `@connections` API without signing.
    #[arg(long, env = "DYNAMOWAVE_MANAGEMENT_LOOPBACK", default_value_t = ManagementAccess::default().allow_loopback, action = clap::ArgAction::Set)]
    pub management_loopback: bool,
    /// Access key id whose SigV4 signatures the `@connections` API accepts from anywhere.
    #[arg(long, env = "DYNAMOWAVE_MANAGEMENT_ACCESS_KEY_ID", requires = "management_secret_access_key")]
    pub management_access_key_id: Option<String>,
    /// Its secret access key.
    #[arg(long, env = "DYNAMOWAVE_MANAGEMENT_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub management_secret_access_key: Option<String>,
    /// The region SigV4 signatures must be scoped to (service `execute-api`; default:
    /// `AWS_REGION`, else us-east-1).
    #[arg(long, env = "DYNAMOWAVE_REGION")]
    pub region: Option<String>,
    /// Seconds an `@connections` caller may take to send its request body (then 408).
    #[arg(long, env = "DYNAMOWAVE_MANAGEMENT_BODY_TIMEOUT_SECS", default_value_t = Unit::Secs.count(ManagementAccess::default().body_read_timeout))]
    pub management_body_timeout_secs: u64,

    /// Origins besides the gateway's own whose web pages may open a WebSocket
    /// (comma-separated, e.g. https://chat.example.com; `*`: any page on any site).
    /// Clients that send no `Origin` (not browsers) are not affected.
    #[arg(long, env = "DYNAMOWAVE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Names this gateway is reached by besides loopback ones (comma-separated; e.g. the public
    /// name of a reverse proxy in front): pages served under them are its own, and unsigned
    /// `@connections` calls are only trusted with such a `Host` or a loopback one.
    #[arg(long = "domain-name", env = "DYNAMOWAVE_DOMAIN_NAMES", value_delimiter = ',')]
    pub domain_names: Vec<String>,

    /// The room every connection starts in.
    #[arg(long, env = "DYNAMOWAVE_DEFAULT_ROOM", default_value_t = ChatSettings::default().default_room)]
    pub default_room: String,
    /// Most messages a `join` with `since` replays before answering "could not recover".
    #[arg(long, env = "DYNAMOWAVE_MAX_REPLAY", default_value_t = ChatSettings::default().max_replay)]
    pub max_replay: usize,
    /// Most messages one `history` page returns (fewer when they would not fit in one message).
    #[arg(long, env = "DYNAMOWAVE_HISTORY_PAGE_MAX", default_value_t = ChatSettings::default().history_page_max)]
    pub history_page_max: usize,
    /// Most members one `who` page lists (fewer when they would not fit in one message).
    #[arg(long, env = "DYNAMOWAVE_WHO_PAGE_MAX", default_value_t = ChatSettings::default().who_max)]
    pub who_page_max: usize,
    /// Longest message text, bytes (longer: error `text_too_long`, nothing stored); default: the
    /// message limit less 1 KiB for the envelope (127 KiB).
    #[arg(long, env = "DYNAMOWAVE_MAX_TEXT_BYTES")]
    pub max_text_bytes: Option<usize>,
    /// Messages read from the log at once by a replay (`join` with `since`) or `history`.
    #[arg(long, env = "DYNAMOWAVE_LOG_PAGE_MESSAGES", default_value_t = ChatSettings::default().log_page_messages)]
    pub log_page_messages: usize,
    /// Bytes of text aimed at per page of the log (pages of large messages hold fewer).
    #[arg(long, env = "DYNAMOWAVE_LOG_PAGE_BYTES", default_value_t = ChatSettings::default().log_page_bytes)]
    pub log_page_bytes: usize,
    /// The embedded store's page cache, MiB (memory grows until the cache is full, then stays).
    #[arg(long, env = "DYNAMOWAVE_STORE_CACHE_MIB", default_value_t = RedbSettings::default().cache_bytes >> MIB_SHIFT)]
    pub store_cache_mib: usize,
    /// How long messages are kept, days.
    #[arg(long, env = "DYNAMOWAVE_RETENTION_DAYS", default_value_t = Unit::Days.count(RedbSettings::default().retention))]
    pub retention_days: u64,
    /// Presence events go only to rooms of at most this many members.
    #[arg(long, env = "DYNAMOWAVE_PRESENCE_LIMIT", default_value_t = ChatSettings::default().presence_broadcast_limit)]
    pub presence_limit: usize,
    /// Presence events per room per second, bursts of as many (0: no budget); over it they are
    /// skipped, so reconnect storms do not flood a room (`who` stays exact).
    #[arg(long, env = "DYNAMOWAVE_PRESENCE_RATE", default_value_t = ChatSettings::default().presence_per_room_per_second)]
    pub presence_rate: f64,
    /// Most rooms one connection belongs to in its life (the distinct rooms it joined or posted
    /// into, the default room aside; 0: no limit). Over it: error `too_many_rooms`.
    #[arg(long, env = "DYNAMOWAVE_MAX_ROOMS_PER_CONNECTION", default_value_t = ChatSettings::default().max_rooms_per_connection)]
    pub max_rooms_per_connection: usize,
    /// Rooms one connection may create per minute (0: no limit). Over it: error `room_rate`.
    #[arg(long, env = "DYNAMOWAVE_ROOM_CREATE_RATE", default_value_t = ChatSettings::default().room_create_per_minute)]
    pub room_create_rate: u32,
    /// Room creations one connection may make at once before --room-create-rate applies.
    #[arg(long, env = "DYNAMOWAVE_ROOM_CREATE_BURST", default_value_t = ChatSettings::default().room_create_burst)]
    pub room_create_burst: u32,
    /// Seconds an empty room (no stored message, nobody in it) lives on after its last activity.
    #[arg(long, env = "DYNAMOWAVE_EMPTY_ROOM_TTL_SECS", default_value_t = ChatSettings::default().empty_room_ttl_secs)]
    pub empty_room_ttl_secs: u64,
    /// Most rooms one `rooms` answer lists; the rest are paged (`next`).
    #[arg(long, env = "DYNAMOWAVE_ROOMS_PAGE_MAX", default_value_t = ChatSettings::default().rooms_page_max)]
    pub rooms_page_max: usize,

    /// HS256 secret: when set (or --jwks-file), `$connect` requires a JWT (`?token=` or
    /// `Authorization: Bearer`).
    #[arg(long, env = "DYNAMOWAVE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// A JWKS document (RS256/ES256 public keys) to verify tokens with.
    #[arg(long, env = "DYNAMOWAVE_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// Accepted token audiences (comma-separated).
    #[arg(long, env = "DYNAMOWAVE_JWT_AUDIENCE", value_delimiter = ',')]
    pub jwt_audience: Vec<String>,
    /// Accepted token issuers (comma-separated).
    #[arg(long, env = "DYNAMOWAVE_JWT_ISSUER", value_delimiter = ',')]
    pub jwt_issuer: Vec<String>,

    /// Template mode: serve every WebSocket API of this SAM or CloudFormation template (YAML or
    /// JSON), its functions run by the local Lambda host and its tables in DynamoDB Local
    /// (docs/template-mode.md).
    #[arg(long, env = "DYNAMOWAVE_TEMPLATE")]
    pub template: Option<PathBuf>,
    /// Template mode: parameter values, `KEY=VALUE` (or SAM's `ParameterKey=K,ParameterValue=V`),
    /// several after one flag or the flag repeated.
    #[arg(long, env = "DYNAMOWAVE_PARAMETER_OVERRIDES", num_args = 1.., value_delimiter = ' ')]
    pub parameter_overrides: Vec<String>,
    /// Template mode: print the resolved template and each API's effective settings as JSON,
    /// and exit without serving.
    #[arg(long, requires = "template")]
    pub print_config: bool,
    /// Template mode: function environment overrides, a JSON file as SAM's `--env-vars`
    /// (`{"FunctionLogicalId": {"VAR": "value"}, "Parameters": {"VAR": "value for every function"}}`).
    #[arg(long, env = "DYNAMOWAVE_ENV_VARS", requires = "template")]
    pub env_vars: Option<PathBuf>,
    /// Template mode: where a stage's access log (`AccessLogSettings`) is written (default:
    /// stderr).
    #[arg(long, env = "DYNAMOWAVE_ACCESS_LOG_FILE", requires = "template")]
    pub access_log_file: Option<PathBuf>,
    /// The DynamoDB the functions use (and where the tables are created), for template and
    /// Lambda modes (default: `AWS_ENDPOINT_URL_DYNAMODB`, else a DynamoDB Local this command
    /// starts and stops).
    #[arg(long, env = "DYNAMOWAVE_DYNAMODB_ENDPOINT")]
    pub dynamodb_endpoint: Option<String>,
    /// Where the DynamoDB Local this command starts keeps its data (default: in memory, gone
    /// when the command stops).
    #[arg(long, env = "DYNAMOWAVE_DYNAMODB_DATA_DIR")]
    pub dynamodb_data_dir: Option<PathBuf>,
    /// Where DynamoDB Local and the runtimes' tools (Python venv, Node SDK) are installed on
    /// first use (default: `$XDG_CACHE_HOME/dynamowave`, else `~/.cache/dynamowave`).
    #[arg(long, env = "DYNAMOWAVE_TOOLS_DIR")]
    pub tools_dir: Option<PathBuf>,

    /// What answers the routes: the handlers in this process on the embedded store, or the real
    /// Lambda binaries (`bootstrap`s) run by a local Lambda Runtime API, on DynamoDB.
    #[arg(long, env = "DYNAMOWAVE_HANDLERS", default_value = "in-process")]
    pub handlers: Handlers,
    /// Lambda and template modes: the folder with the binaries `connect`, `disconnect`,
    /// `sendmessage`, `default` (and `authorizer`), as `NAME` or `NAME/bootstrap` (cargo lambda's
    /// layout); in template mode, a `rust-cargolambda` function's prebuilt binary (its
    /// `BuildProperties.Binary`, else its logical id), built with cargo when absent.
    #[arg(long, env = "DYNAMOWAVE_LAMBDA_DIR", default_value = "target/lambda")]
    pub lambda_dir: PathBuf,
    /// Lambda and template modes: most processes (execution environments) per function; past
    /// them an invocation waits for one, as Lambda would start another (default: sized to the
    /// machine, 4 per CPU for `provided.*`, 2 per CPU for Node.js and Python). A function's
    /// `ReservedConcurrentExecutions` still throttles past it.
    #[arg(long, env = "DYNAMOWAVE_LAMBDA_CONCURRENCY")]
    pub lambda_concurrency: Option<usize>,
    /// Lambda mode: function timeout, seconds.
    #[arg(long, env = "DYNAMOWAVE_LAMBDA_TIMEOUT_SECS", default_value_t = 10)]
    pub lambda_timeout_secs: u64,
    /// Lambda mode: the ConnectionsTable's name.
    #[arg(long, env = "DYNAMOWAVE_CONNECTIONS_TABLE", default_value = "dynamowave-connections")]
    pub connections_table: String,
    /// Lambda mode: the MessagesTable's name.
    #[arg(long, env = "DYNAMOWAVE_MESSAGES_TABLE", default_value = "dynamowave-messages")]
    pub messages_table: String,
    /// Lambda mode: the RoomsTable's name.
    #[arg(long, env = "DYNAMOWAVE_ROOMS_TABLE", default_value = "dynamowave-rooms")]
    pub rooms_table: String,
}

/// Where the handlers run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handlers {
    /// In this process, on the embedded store.
    InProcess,
    /// As Lambda binaries under a local Runtime API, on DynamoDB (`AWS_ENDPOINT_URL_DYNAMODB`).
    Lambda,
}

/// `--store-cache-mib` is in MiB, [`RedbSettings::cache_bytes`] in bytes.
const MIB_SHIFT: u32 = 20;

/// The unit of a duration flag: the flag holds a whole number of them, the settings a
/// [`Duration`]. One conversion each way, for the flags' defaults and for their values.
#[derive(Clone, Copy, Debug)]
enum Unit {
    Micros,
    Millis,
    Secs,
    Days,
}

impl Unit {
    const SECS_PER_DAY: u64 = 24 * 3600;

    /// A settings default as the flag shows it (whole units, rounded down).
    fn count(self, duration: Duration) -> u64 {
        let saturate = |n: u128| u64::try_from(n).unwrap_or(u64::MAX);
        match self {
            Unit::Micros => saturate(duration.as_micros()),
            Unit::Millis => saturate(duration.as_millis()),
            Unit::Secs => duration.as_secs(),
            Unit::Days => duration.as_secs() / Self::SECS_PER_DAY,
        }
    }

    /// A flag's value as the settings' duration.
    fn duration(self, count: u64) -> Duration {
        match self {
            Unit::Micros => Duration::from_micros(count),
            Unit::Millis => Duration::from_millis(count),
            Unit::Secs => Duration::from_secs(count),
            Unit::Days => Duration::from_secs(count.saturating_mul(Self::SECS_PER_DAY)),
        }
    }
}

fn parse_pairs(items: &[String], what: &str) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let (k, v) = s.split_once('=').with_context(|| format!("{what} {s:?}: expected ROUTE=VALUE"))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// What `$connect`'s authorizer verifies tokens with: the JWT flags, read once (the JWKS file
/// included). The in-process authorizer's settings and the `authorizer` Lambda's environment are
/// both made from it, so that the two modes check the same things.
pub struct JwtVerification {
    hs256_secret: Option<Secret>,
    jwks: Option<JwksFile>,
    audience: Vec<String>,
    issuer: Vec<String>,
}

/// `--jwks-file`: where it was read from (for errors) and what it holds.
struct JwksFile {
    path: PathBuf,
    json: String,
}

impl JwtVerification {
    /// The settings of the authorizer in this process (the JWKS document is parsed here).
    pub fn auth_settings(&self) -> anyhow::Result<AuthSettings> {
        let mut auth = AuthSettings::default();
        if let Some(secret) = &self.hs256_secret {
            auth = auth.with_hs256_secret(secret.expose().to_string());
        }
        if let Some(jwks) = &self.jwks {
            auth = auth
                .with_jwks_json(&jwks.json)
                .with_context(|| format!("{} is not a usable JWKS", jwks.path.display()))?;
        }
        if !self.audience.is_empty() {
            auth = auth.with_audience(self.audience.clone());
        }
        if !self.issuer.is_empty() {
            auth = auth.with_issuer(self.issuer.clone());
        }
        Ok(auth)
    }

    /// The `authorizer` Lambda's environment: the variables [`AuthSettings::from_env`] reads.
    pub fn authorizer_env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if let Some(secret) = &self.hs256_secret {
            env.push((AuthSettings::JWT_SECRET_ENV.to_string(), secret.expose().to_string()));
        }
        if let Some(jwks) = &self.jwks {
            env.push((AuthSettings::JWKS_JSON_ENV.to_string(), jwks.json.clone()));
        }
        if !self.audience.is_empty() {
            env.push((AuthSettings::JWT_AUDIENCE_ENV.to_string(), self.audience.join(",")));
        }
        if !self.issuer.is_empty() {
            env.push((AuthSettings::JWT_ISSUER_ENV.to_string(), self.issuer.join(",")));
        }
        env
    }
}

impl ServeArgs {
    /// The gateway's settings from the flags over the shipped template's stage (the default
    /// `serve` and Lambda mode).
    pub fn gateway_settings(&self) -> anyhow::Result<GatewaySettings> {
        self.gateway_settings_with(crate::embedded::stage_defaults()?)
    }

    /// The stage name: --stage, else `defaults`'.
    pub fn stage_or<'a>(&'a self, defaults: &'a StageDefaults) -> &'a str {
        self.stage.as_deref().unwrap_or(&defaults.stage)
    }

    /// The gateway's settings: the flags given, else `defaults` (a template stage's route
    /// settings), else the settings' own defaults; a bad value is a clear error, not a default.
    pub fn gateway_settings_with(&self, defaults: &StageDefaults) -> anyhow::Result<GatewaySettings> {
        dynamowave_gateway::route_selection::RouteSelection::parse(&self.route_selection_expression)
            .map_err(|e| anyhow::anyhow!("--route-selection-expression: {e}"))?;
        let stage = self.stage_or(defaults).to_string();
        if stage.is_empty() || !stage.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)) {
            bail!("--stage must be letters, digits, - and _");
        }
        let mut route_settings = defaults.route_buckets();
        for (route, value) in parse_pairs(&self.route_throttle, "--route-throttle")? {
            let (rate, burst) =
                value.split_once(':').with_context(|| format!("--route-throttle {route}: expected RATE:BURST"))?;
            let bucket = Bucket {
                rate: rate.parse().with_context(|| format!("--route-throttle {route}: bad rate {rate:?}"))?,
                burst: burst.parse().with_context(|| format!("--route-throttle {route}: bad burst {burst:?}"))?,
            };
            route_settings.insert(route, bucket);
        }
        let mut concurrency = Concurrency {
            default_route: self.default_concurrency.unwrap_or(defaults.default_concurrency),
            per_route: defaults.per_route_concurrency.clone().into_iter().collect(),
            queue_timeout: Unit::Millis.duration(self.concurrency_queue_ms),
        };
        for (route, n) in parse_pairs(&self.route_concurrency, "--route-concurrency")? {
            let n: usize = n.parse().with_context(|| format!("--route-concurrency {route}: bad number {n:?}"))?;
            concurrency.per_route.insert(route, n);
        }
        let credentials = match (&self.management_access_key_id, &self.management_secret_access_key) {
            (Some(id), Some(secret)) => {
                Some(SigV4Credentials { access_key_id: id.clone(), secret_access_key: secret.clone() })
            }
            _ => None,
        };
        Ok(GatewaySettings {
            listen: self.listen,
            stage,
            api_id: self.api_id.clone(),
            route_selection_expression: self.route_selection_expression.clone(),
            limits: Limits {
                max_frame_bytes: self.max_frame_bytes,
                max_message_bytes: self.max_message_bytes,
                idle_timeout: Unit::Secs.duration(self.idle_timeout_secs),
                max_connection_duration: Unit::Secs.duration(self.max_connection_secs),
                send_queue_frames: self.send_queue_frames,
                send_queue_bytes: self.send_queue_bytes,
                send_queue_wait: Unit::Millis.duration(self.send_queue_wait_ms),
                coalesce: Unit::Micros.duration(self.coalesce_us),
                max_connections_per_ip: self.max_connections_per_ip,
                header_read_timeout: Unit::Secs.duration(self.header_read_timeout_secs),
                ..Limits::default()
            },
            throttling: Throttling {
                account: Bucket { rate: self.account_rate, burst: self.account_burst },
                // The stage's `DefaultRouteSettings`: every route's bucket unless named.
                default_route: Bucket {
                    rate: self.stage_rate.unwrap_or(defaults.default_route.rate),
                    burst: self.stage_burst.unwrap_or(defaults.default_route.burst),
                },
                route_settings,
                connect: Bucket { rate: self.connect_rate, burst: self.connect_burst },
                per_connection: Bucket { rate: self.connection_rate, burst: self.connection_burst },
            },
            concurrency,
            management: ManagementAccess {
                allow_loopback: self.management_loopback,
                credentials,
                region: self.region(),
                body_read_timeout: Unit::Secs.duration(self.management_body_timeout_secs),
            },
            origins: OriginSettings {
                allowed_origins: AllowedOrigins::new(&self.allowed_origins).context("--allowed-origins")?,
                domain_names: DomainNames::new(&self.domain_names).context("--domain-name")?,
            },
            handle_signals: true,
            ..GatewaySettings::default()
        })
    }

    /// The region signatures are scoped to: `--region`, else `AWS_REGION` (what the SDKs and the
    /// local Lambda host use), else the settings' default (us-east-1).
    pub fn region(&self) -> String {
        self.region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| ManagementAccess::default().region)
    }

    /// The chat handlers' settings from the flags.
    pub fn chat_settings(&self) -> anyhow::Result<ChatSettings> {
        dynamowave_core::names::validate_room(&self.default_room)
            .map_err(|e| anyhow::anyhow!("--default-room: {}", e.message))?;
        Ok(ChatSettings {
            default_room: self.default_room.clone(),
            max_replay: self.max_replay,
            presence_broadcast_limit: self.presence_limit,
            presence_per_room_per_second: self.presence_rate,
            max_rooms_per_connection: self.max_rooms_per_connection,
            room_create_per_minute: self.room_create_rate,
            room_create_burst: self.room_create_burst,
            empty_room_ttl_secs: self.empty_room_ttl_secs,
            rooms_page_max: self.rooms_page_max,
            max_payload_bytes: self.max_message_bytes,
            max_text_bytes: self.max_text_bytes,
            history_page_max: self.history_page_max,
            who_max: self.who_page_max,
            log_page_messages: self.log_page_messages,
            log_page_bytes: self.log_page_bytes,
            ..ChatSettings::default()
        })
    }

    /// The embedded store's settings from the flags (in-process mode).
    pub fn store_settings(&self) -> RedbSettings {
        RedbSettings {
            retention: Unit::Days.duration(self.retention_days),
            cache_bytes: self.store_cache_mib.max(1) << MIB_SHIFT,
            empty_room_ttl: Unit::Secs.duration(self.empty_room_ttl_secs),
            ..RedbSettings::default()
        }
    }

    /// The JWT flags, if any were given, read once for either mode. A short HS256 secret is
    /// refused here, before anything starts: it could be brute-forced from any token it signed.
    pub fn jwt_verification(&self) -> anyhow::Result<Option<JwtVerification>> {
        if self.jwt_secret.is_none() && self.jwks_file.is_none() {
            return Ok(None);
        }
        if let Some(secret) = &self.jwt_secret {
            dynamowave_auth::check_hs256_secret(secret).map_err(|e| anyhow::anyhow!("--jwt-secret: {e}"))?;
        }
        let jwks = match &self.jwks_file {
            Some(path) => {
                let json = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                Some(JwksFile { path: path.clone(), json })
            }
            None => None,
        };
        Ok(Some(JwtVerification {
            hs256_secret: self.jwt_secret.clone().map(Secret::new),
            jwks,
            audience: self.jwt_audience.clone(),
            issuer: self.jwt_issuer.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn no_flags() -> ServeArgs {
        Serve::try_parse_from(["serve"]).expect("serve parses without flags").args
    }

    /// With no flag given, the settings are the structs' own defaults: the flags take theirs
    /// from them rather than repeating them.
    #[test]
    fn no_flags_give_the_settings_defaults() {
        let args = no_flags();
        let gateway = args.gateway_settings().expect("gateway settings");
        let default = GatewaySettings::default();
        assert_eq!(
            (gateway.listen, &gateway.stage, &gateway.api_id, &gateway.route_selection_expression),
            (default.listen, &default.stage, &default.api_id, &default.route_selection_expression)
        );
        assert_eq!(format!("{:?}", gateway.limits), format!("{:?}", default.limits));
        assert_eq!(format!("{:?}", gateway.throttling.account), format!("{:?}", default.throttling.account));
        assert_eq!(format!("{:?}", gateway.throttling.connect), format!("{:?}", default.throttling.connect));
        // The stage's route settings are the shipped template's.
        assert_eq!(gateway.throttling.default_route.rate, 1000.0);
        assert_eq!(gateway.throttling.default_route.burst, 500);
        let send = gateway.throttling.route_settings.get("sendmessage").expect("sendmessage's RouteSettings");
        assert_eq!((send.rate, send.burst), (100.0, 200));
        // Each route key's function's ReservedConcurrentExecutions (join → DefaultFunction).
        for (route, n) in [("$connect", 50), ("$disconnect", 50), ("sendmessage", 100), ("$default", 50), ("join", 50)]
        {
            assert_eq!(gateway.concurrency.per_route.get(route), Some(&n), "{route}");
        }
        assert_eq!(gateway.concurrency.default_route, 50);
        assert_eq!(gateway.concurrency.queue_timeout, default.concurrency.queue_timeout);
        assert_eq!(gateway.management.allow_loopback, default.management.allow_loopback);
        assert_eq!(gateway.management.body_read_timeout, default.management.body_read_timeout);
        let chat = args.chat_settings().expect("chat settings");
        assert_eq!(format!("{chat:?}"), format!("{:?}", ChatSettings::default()));
        assert_eq!(format!("{:?}", args.store_settings()), format!("{:?}", RedbSettings::default()));
        assert!(args.jwt_verification().expect("no JWT flags").is_none());
    }

    #[test]
    fn flags_override_the_templates_route_settings() {
        let args = Serve::try_parse_from([
            "serve",
            "--stage-rate",
            "7",
            "--route-throttle",
            "sendmessage=1:2",
            "--route-concurrency",
            "$connect=3",
        ])
        .expect("flags")
        .args;
        let gateway = args.gateway_settings().expect("settings");
        assert_eq!(gateway.throttling.default_route.rate, 7.0);
        assert_eq!(gateway.throttling.default_route.burst, 500, "the template's burst stays");
        let send = &gateway.throttling.route_settings["sendmessage"];
        assert_eq!((send.rate, send.burst), (1.0, 2));
        assert_eq!(gateway.concurrency.per_route["$connect"], 3);
        assert_eq!(gateway.concurrency.per_route["sendmessage"], 100);
    }

    #[test]
    fn a_duration_flag_converts_both_ways() {
        for unit in [Unit::Micros, Unit::Millis, Unit::Secs, Unit::Days] {
            assert_eq!(unit.count(unit.duration(7)), 7, "{unit:?}");
        }
        assert_eq!(Unit::Days.duration(35), Duration::from_secs(35 * 86_400));
        assert_eq!(Unit::Millis.count(Duration::from_secs(5)), 5000);
        assert_eq!(Unit::Days.duration(u64::MAX), Duration::from_secs(u64::MAX));
    }

    #[test]
    fn both_authorizers_are_made_from_the_same_flags() {
        let secret = "thirty-two-bytes-of-secret-ok!!!";
        let args = Serve::try_parse_from(["serve", "--jwt-secret", secret, "--jwt-audience", "chat,chat-dev"])
            .expect("flags")
            .args;
        let jwt = args.jwt_verification().expect("a good secret").expect("JWT flags given");
        assert!(jwt.auth_settings().expect("settings").verifies_tokens());
        let env = jwt.authorizer_env();
        let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        assert_eq!(lookup(AuthSettings::JWT_SECRET_ENV).as_deref(), Some(secret));
        assert_eq!(lookup(AuthSettings::JWT_AUDIENCE_ENV).as_deref(), Some("chat,chat-dev"));
        assert!(AuthSettings::from_lookup(lookup).expect("the Lambda reads it").verifies_tokens());

        let short = Serve::try_parse_from(["serve", "--jwt-secret", "short"]).expect("flags").args;
        assert!(short.jwt_verification().is_err());
    }
}
