//! `dynamowave serve`: flags (each with a `DYNAMOWAVE_*` environment variable, defaults from API
//! Gateway's quotas) → settings → the gateway on the embedded store; on SIGINT/SIGTERM every
//! connection is closed with 1001, gets its `$disconnect`, and the store is flushed.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use dynamowave_auth::{AllowedOrigins, DomainNames};
use dynamowave_core::{ChatDeps, ChatSettings, Placement};
use dynamowave_gateway::settings::{
    Bucket, Concurrency, Limits, ManagementAccess, OriginSettings, SigV4Credentials, Throttling,
};
use dynamowave_gateway::{Gateway, GatewaySettings};
use dynamowave_store_redb::{RedbSettings, RedbStore};
use tracing::info;

/// Flags of `dynamowave serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (WebSocket, `@connections`, web client, `/metrics`).
    #[arg(long, env = "DYNAMOWAVE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where the embedded store keeps its file.
    #[arg(long, env = "DYNAMOWAVE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Stage name: the WebSocket is `ws://LISTEN/{stage}`.
    #[arg(long, env = "DYNAMOWAVE_STAGE", default_value = "production")]
    pub stage: String,
    /// `requestContext.apiId` of the events.
    #[arg(long, env = "DYNAMOWAVE_API_ID", default_value = "dynamowave")]
    pub api_id: String,
    /// The API's route selection expression.
    #[arg(long, env = "DYNAMOWAVE_ROUTE_SELECTION_EXPRESSION", default_value = "$request.body.action")]
    pub route_selection_expression: String,

    /// Largest frame a client may send, bytes (larger: close 1009).
    #[arg(long, env = "DYNAMOWAVE_MAX_FRAME_BYTES", default_value_t = 32 * 1024)]
    pub max_frame_bytes: usize,
    /// Largest message, bytes (larger: close 1009; PostToConnection: 413).
    #[arg(long, env = "DYNAMOWAVE_MAX_MESSAGE_BYTES", default_value_t = 128 * 1024)]
    pub max_message_bytes: usize,
    /// Seconds without a frame from the client before the connection is closed (1001).
    #[arg(long, env = "DYNAMOWAVE_IDLE_TIMEOUT_SECS", default_value_t = 600)]
    pub idle_timeout_secs: u64,
    /// Longest a connection may live, seconds (then closed 1001).
    #[arg(long, env = "DYNAMOWAVE_MAX_CONNECTION_SECS", default_value_t = 7200)]
    pub max_connection_secs: u64,
    /// Most live connections from one source address (0: no limit, as on API Gateway).
    #[arg(long, env = "DYNAMOWAVE_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: usize,
    /// Seconds a client may take to send its request headers (slowloris protection).
    #[arg(long, env = "DYNAMOWAVE_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,
    /// Frames that may wait for one slow client before it is disconnected (1008).
    #[arg(long, env = "DYNAMOWAVE_SEND_QUEUE_FRAMES", default_value_t = 4096)]
    pub send_queue_frames: usize,
    /// Bytes that may wait for one slow client before it is disconnected (1008); each frame
    /// counts in full in each queue.
    #[arg(long, env = "DYNAMOWAVE_SEND_QUEUE_BYTES", default_value_t = 4 << 20)]
    pub send_queue_bytes: usize,
    /// Milliseconds an answer to a client's own request (a reply, a replay) waits for its send
    /// queue to drain below half the limits before the client is disconnected (1008).
    #[arg(long, env = "DYNAMOWAVE_SEND_QUEUE_WAIT_MS", default_value_t = 5000)]
    pub send_queue_wait_ms: u64,
    /// Frames to one connection that keep coming closer together than this many microseconds (a
    /// fifth in a row: a flooded room) are batched, one write per window; slower ones are written
    /// at once (0: always at once).
    #[arg(long, env = "DYNAMOWAVE_COALESCE_US", default_value_t = 10_000)]
    pub coalesce_us: u64,

    /// Account-wide message rate, per second (0: unlimited).
    #[arg(long, env = "DYNAMOWAVE_ACCOUNT_RATE", default_value_t = 10_000.0)]
    pub account_rate: f64,
    /// Account-wide burst.
    #[arg(long, env = "DYNAMOWAVE_ACCOUNT_BURST", default_value_t = 5_000)]
    pub account_burst: u32,
    /// Each route's rate unless --route-throttle names it (`DefaultRouteSettings`), per second.
    #[arg(long, env = "DYNAMOWAVE_STAGE_RATE", default_value_t = 10_000.0)]
    pub stage_rate: f64,
    /// Each route's burst unless --route-throttle names it.
    #[arg(long, env = "DYNAMOWAVE_STAGE_BURST", default_value_t = 5_000)]
    pub stage_burst: u32,
    /// Per-route throttling (`RouteSettings`): `ROUTE=RATE:BURST`, repeatable or comma-separated.
    #[arg(long, env = "DYNAMOWAVE_ROUTE_THROTTLE", value_delimiter = ',')]
    pub route_throttle: Vec<String>,
    /// New connections per second (over it: HTTP 429 on the upgrade; 0: unlimited).
    #[arg(long, env = "DYNAMOWAVE_CONNECT_RATE", default_value_t = 500.0)]
    pub connect_rate: f64,
    /// New-connection burst.
    #[arg(long, env = "DYNAMOWAVE_CONNECT_BURST", default_value_t = 500)]
    pub connect_burst: u32,
    /// Messages per second from one connection (0: unlimited).
    #[arg(long, env = "DYNAMOWAVE_CONNECTION_RATE", default_value_t = 100.0)]
    pub connection_rate: f64,
    /// Per-connection burst.
    #[arg(long, env = "DYNAMOWAVE_CONNECTION_BURST", default_value_t = 200)]
    pub connection_burst: u32,

    /// Reserved concurrency per route: `ROUTE=N`, repeatable or comma-separated
    /// (defaults: $connect=64, $disconnect=64, sendmessage=128).
    #[arg(long, env = "DYNAMOWAVE_ROUTE_CONCURRENCY", value_delimiter = ',')]
    pub route_concurrency: Vec<String>,
    /// Concurrency of routes not named in --route-concurrency.
    #[arg(long, env = "DYNAMOWAVE_DEFAULT_CONCURRENCY", default_value_t = 64)]
    pub default_concurrency: usize,
    /// How long an invocation waits for a free slot before it is throttled, milliseconds.
    #[arg(long, env = "DYNAMOWAVE_CONCURRENCY_QUEUE_MS", default_value_t = 250)]
    pub concurrency_queue_ms: u64,

    /// Whether loopback callers may use the `@connections` API without signing.
    #[arg(long, env = "DYNAMOWAVE_MANAGEMENT_LOOPBACK", default_value_t = true, action = clap::ArgAction::Set)]
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
    #[arg(long, env = "DYNAMOWAVE_MANAGEMENT_BODY_TIMEOUT_SECS", default_value_t = 10)]
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
    #[arg(long, env = "DYNAMOWAVE_DEFAULT_ROOM", default_value = "lobby")]
    pub default_room: String,
    /// Most messages a `join` with `since` replays before answering "could not recover".
    #[arg(long, env = "DYNAMOWAVE_MAX_REPLAY", default_value_t = 1000)]
    pub max_replay: usize,
    /// Most messages one `history` page returns (fewer when they would not fit in one message).
    #[arg(long, env = "DYNAMOWAVE_HISTORY_PAGE_MAX", default_value_t = 100)]
    pub history_page_max: usize,
    /// Most members one `who` page lists (fewer when they would not fit in one message).
    #[arg(long, env = "DYNAMOWAVE_WHO_PAGE_MAX", default_value_t = 1000)]
    pub who_page_max: usize,
    /// Longest message text, bytes (longer: error `text_too_long`, nothing stored); default: the
    /// message limit less 1 KiB for the envelope (127 KiB).
    #[arg(long, env = "DYNAMOWAVE_MAX_TEXT_BYTES")]
    pub max_text_bytes: Option<usize>,
    /// Messages read from the log at once by a replay (`join` with `since`) or `history`.
    #[arg(long, env = "DYNAMOWAVE_LOG_PAGE_MESSAGES", default_value_t = 32)]
    pub log_page_messages: usize,
    /// Bytes of text aimed at per page of the log (pages of large messages hold fewer).
    #[arg(long, env = "DYNAMOWAVE_LOG_PAGE_BYTES", default_value_t = 256 * 1024)]
    pub log_page_bytes: usize,
    /// The embedded store's page cache, MiB (memory grows until the cache is full, then stays).
    #[arg(long, env = "DYNAMOWAVE_STORE_CACHE_MIB", default_value_t = 64)]
    pub store_cache_mib: usize,
    /// How long messages are kept, days.
    #[arg(long, env = "DYNAMOWAVE_RETENTION_DAYS", default_value_t = 35)]
    pub retention_days: u64,
    /// Presence events go only to rooms of at most this many members.
    #[arg(long, env = "DYNAMOWAVE_PRESENCE_LIMIT", default_value_t = 100)]
    pub presence_limit: usize,
    /// Presence events per room per second, bursts of as many (0: no budget); over it they are
    /// skipped, so reconnect storms do not flood a room (`who` stays exact).
    #[arg(long, env = "DYNAMOWAVE_PRESENCE_RATE", default_value_t = 20.0)]
    pub presence_rate: f64,
    /// Most rooms one connection belongs to in its life (the distinct rooms it joined or posted
    /// into, the default room aside; 0: no limit). Over it: error `too_many_rooms`.
    #[arg(long, env = "DYNAMOWAVE_MAX_ROOMS_PER_CONNECTION", default_value_t = 100)]
    pub max_rooms_per_connection: usize,
    /// Rooms one connection may create per minute (0: no limit). Over it: error `room_rate`.
    #[arg(long, env = "DYNAMOWAVE_ROOM_CREATE_RATE", default_value_t = 20)]
    pub room_create_rate: u32,
    /// Room creations one connection may make at once before --room-create-rate applies.
    #[arg(long, env = "DYNAMOWAVE_ROOM_CREATE_BURST", default_value_t = 10)]
    pub room_create_burst: u32,
    /// Seconds an empty room (no stored message, nobody in it) lives on after its last activity.
    #[arg(long, env = "DYNAMOWAVE_EMPTY_ROOM_TTL_SECS", default_value_t = 300)]
    pub empty_room_ttl_secs: u64,
    /// Most rooms one `rooms` answer lists; the rest are paged (`next`).
    #[arg(long, env = "DYNAMOWAVE_ROOMS_PAGE_MAX", default_value_t = 100)]
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

    /// What answers the routes: the handlers in this process on the embedded store, or the real
    /// Lambda binaries (`bootstrap`s) run by a local Lambda Runtime API, on DynamoDB.
    #[arg(long, env = "DYNAMOWAVE_HANDLERS", default_value = "in-process")]
    pub handlers: Handlers,
    /// Lambda mode: the folder with the binaries `connect`, `disconnect`, `sendmessage`, `default`
    /// (and `authorizer`), as `NAME` or `NAME/bootstrap` (cargo lambda's layout).
    #[arg(long, env = "DYNAMOWAVE_LAMBDA_DIR", default_value = "target/lambda")]
    pub lambda_dir: PathBuf,
    /// Lambda mode: execution environments per function (reserved concurrency).
    #[arg(long, env = "DYNAMOWAVE_LAMBDA_CONCURRENCY", default_value_t = 4)]
    pub lambda_concurrency: usize,
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

impl ServeArgs {
    /// The gateway's settings from the flags; a bad value is a clear error, not a default.
    pub fn gateway_settings(&self) -> anyhow::Result<GatewaySettings> {
        if !self.route_selection_expression.starts_with("$request.body.") {
            bail!("--route-selection-expression must be of the form $request.body.<path>");
        }
        if self.stage.is_empty() || !self.stage.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)) {
            bail!("--stage must be letters, digits, - and _");
        }
        let mut route_settings = HashMap::new();
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
            default_route: self.default_concurrency,
            queue_timeout: Duration::from_millis(self.concurrency_queue_ms),
            ..Concurrency::default()
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
            stage: self.stage.clone(),
            api_id: self.api_id.clone(),
            route_selection_expression: self.route_selection_expression.clone(),
            limits: Limits {
                max_frame_bytes: self.max_frame_bytes,
                max_message_bytes: self.max_message_bytes,
                idle_timeout: Duration::from_secs(self.idle_timeout_secs),
                max_connection_duration: Duration::from_secs(self.max_connection_secs),
                send_queue_frames: self.send_queue_frames,
                send_queue_bytes: self.send_queue_bytes,
                send_queue_wait: Duration::from_millis(self.send_queue_wait_ms),
                coalesce: Duration::from_micros(self.coalesce_us),
                max_connections_per_ip: self.max_connections_per_ip,
                header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
                ..Limits::default()
            },
            throttling: Throttling {
                account: Bucket { rate: self.account_rate, burst: self.account_burst },
                default_route: Bucket { rate: self.stage_rate, burst: self.stage_burst },
                route_settings,
                connect: Bucket { rate: self.connect_rate, burst: self.connect_burst },
                per_connection: Bucket { rate: self.connection_rate, burst: self.connection_burst },
            },
            concurrency,
            management: ManagementAccess {
                allow_loopback: self.management_loopback,
                credentials,
                region: self.region(),
                body_read_timeout: Duration::from_secs(self.management_body_timeout_secs),
            },
            origins: OriginSettings {
                allowed_origins: AllowedOrigins::new(&self.allowed_origins).context("--allowed-origins")?,
                domain_names: DomainNames::new(&self.domain_names).context("--domain-name")?,
            },
            handle_signals: true,
        })
    }

    /// The region signatures are scoped to: `--region`, else `AWS_REGION` (what the SDKs and the
    /// local Lambda host use), else us-east-1.
    pub fn region(&self) -> String {
        self.region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "us-east-1".to_string())
    }

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
}

impl ServeArgs {
    /// JWT settings from the flags, if any were given.
    fn auth_settings(&self) -> anyhow::Result<Option<dynamowave_auth::AuthSettings>> {
        if self.jwt_secret.is_none() && self.jwks_file.is_none() {
            return Ok(None);
        }
        let mut auth = dynamowave_auth::AuthSettings::default();
        if let Some(secret) = &self.jwt_secret {
            auth = auth.with_hs256_secret(secret.clone());
        }
        if let Some(path) = &self.jwks_file {
            let jwks = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            auth = auth.with_jwks_json(&jwks).with_context(|| format!("{} is not a usable JWKS", path.display()))?;
        }
        if !self.jwt_audience.is_empty() {
            auth = auth.with_audience(self.jwt_audience.clone());
        }
        if !self.jwt_issuer.is_empty() {
            auth = auth.with_issuer(self.jwt_issuer.clone());
        }
        Ok(Some(auth))
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    if args.handlers == Handlers::Lambda {
        return crate::lambda::run(args).await;
    }
    let settings = args.gateway_settings()?;
    let chat = args.chat_settings()?;
    let authorizer: Option<Arc<dyn dynamowave_gateway::ConnectAuthorizer>> =
        args.auth_settings()?.map(|a| Arc::new(crate::authorizer::JwtAuthorizer(a)) as _);
    let store_settings = RedbSettings {
        retention: Duration::from_secs(args.retention_days * 86_400),
        cache_bytes: args.store_cache_mib.max(1) << 20,
        empty_room_ttl: Duration::from_secs(args.empty_room_ttl_secs),
        ..RedbSettings::default()
    };
    let store = Arc::new(
        RedbStore::open(&args.data_dir, store_settings)
            .with_context(|| format!("opening the store in {}", args.data_dir.display()))?,
    );
    if store.purged_on_open() > 0 {
        info!(purged = store.purged_on_open(), "removed connections left by a previous process");
    }
    let gateway = Gateway::bind(settings).await?;
    // `chat.max_payload_bytes` is the gateway's `max_message_bytes` (one flag): the handlers post
    // through this gateway.
    let deps = ChatDeps::new(store.clone(), store.clone(), gateway.connections_api(), chat, Placement::InProcess);
    let url = format!("ws://{}/{}", gateway.local_addr(), args.stage);
    // One machine-readable line on stdout, for scripts and tests that start us on port 0.
    println!("DYNAMOWAVE_LISTENING {url}");
    std::io::stdout().flush()?;
    eprintln!("DynamoWave Chat on {url} — web client at http://{}/", gateway.local_addr());
    let served = gateway.serve(dynamowave_core::app::in_process(deps), authorizer).await;
    store.close().await.context("flushing the store")?;
    info!("store flushed; bye");
    served?;
    Ok(())
}
