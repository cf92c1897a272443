//! Every limit and behaviour of the gateway is a setting, with API Gateway's value as default
//! (its quotas and documented behaviour: docs/gateway.md). Each `Default` here is the one place
//! a default is written: `dynamowave serve`'s flags take theirs from these.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// The gateway's settings.
#[derive(Clone, Debug)]
pub struct GatewaySettings {
    /// Where to listen (port 0 picks one: see [`crate::Gateway::local_addr`]).
    pub listen: SocketAddr,
    /// The stage: the WebSocket is `ws://HOST/{stage}`, the management API `/{stage}/@connections`.
    pub stage: String,
    /// `requestContext.apiId`.
    pub api_id: String,
    /// The API's `RouteSelectionExpression`: `$request.body.<json path>`.
    pub route_selection_expression: String,
    pub limits: Limits,
    pub throttling: Throttling,
    pub concurrency: Concurrency,
    pub management: ManagementAccess,
    /// Which browser pages and `Host`s the gateway answers.
    pub origins: OriginSettings,
    /// Whether SIGINT/SIGTERM stop the gateway (tests stop it through a handle instead).
    pub handle_signals: bool,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            stage: "production".into(),
            api_id: "dynamowave".into(),
            route_selection_expression: "$request.body.action".into(),
            limits: Limits::default(),
            throttling: Throttling::default(),
            concurrency: Concurrency::default(),
            management: ManagementAccess::default(),
            origins: OriginSettings::default(),
            handle_signals: true,
        }
    }
}

/// Frame, message and time limits (API Gateway's quotas).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest frame a client may send: 32 KiB. Larger: close 1009.
    pub max_frame_bytes: usize,
    /// Largest message (all frames of one message): 128 KiB. Larger: close 1009.
    pub max_message_bytes: usize,
    /// A connection with no frame from its client for this long is closed (1001): 10 minutes.
    pub idle_timeout: Duration,
    /// No connection lives longer than this (closed 1001): 2 hours.
    pub max_connection_duration: Duration,
    /// Frames that may wait in one connection's send queue. A client that cannot keep up is
    /// disconnected (close 1008, "slow consumer") rather than slowing everyone down, and posts to
    /// it answer 429 LimitExceeded meanwhile, as API Gateway does when a client's buffer is full.
    /// Kept besides `send_queue_bytes`: it bounds the per-frame bookkeeping of many tiny frames.
    pub send_queue_frames: usize,
    /// Bytes that may wait in one connection's send queue, same policy: 4 MiB, 32 of API
    /// Gateway's largest messages. Each frame counts in full in each queue, though a broadcast's
    /// frame is one allocation shared by its recipients: this is what one connection can hold.
    pub send_queue_bytes: usize,
    /// How long an answer to a connection's own request (a reply, a replay page) waits for its
    /// queue to drain below half the limits; a client that reads nothing for this long is closed
    /// as a slow consumer. Broadcasts never wait. 5 s.
    pub send_queue_wait: Duration,
    /// When frames to one connection keep coming closer together than this (a fifth in a row:
    /// a flooded room), they are batched into one `writev` per window by the connection's task
    /// instead of one `send` each; slower ones go out at once. 10 ms: a chat room's normal pace
    /// is far slower.
    pub coalesce: Duration,
    /// Socket read buffer per connection, bytes (small: idle connections cost little memory).
    pub read_buffer_bytes: usize,
    /// Maximum URL length (API Gateway: 4096).
    pub max_url_bytes: usize,
    /// How long a client may take to send its request headers (slowloris protection).
    pub header_read_timeout: Duration,
    /// Largest request head, bytes (larger: the connection is refused).
    pub max_header_bytes: usize,
    /// Most live connections from one source address (0: no limit, as on API Gateway).
    pub max_connections_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 32 * 1024,
            max_message_bytes: 128 * 1024,
            idle_timeout: Duration::from_secs(600),
            max_connection_duration: Duration::from_secs(7200),
            send_queue_frames: 4096,
            send_queue_bytes: 4 << 20,
            send_queue_wait: Duration::from_secs(5),
            coalesce: Duration::from_millis(10),
            read_buffer_bytes: 2048,
            max_url_bytes: 4096,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_connections_per_ip: 0,
        }
    }
}

/// A token bucket: `rate` tokens per second, at most `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    pub rate: f64,
    pub burst: u32,
}

/// Throttling, as API Gateway's account limit and a stage's two route limits
/// (`DefaultRouteSettings` and `RouteSettings`), plus the new-connection rate and a
/// per-connection message rate.
#[derive(Clone, Debug)]
pub struct Throttling {
    /// Shared by every route (API Gateway's account limit: 10,000 requests/s, burst 5,000).
    pub account: Bucket,
    /// The stage's `DefaultRouteSettings` (`serve --stage-rate`, `--stage-burst`): the bucket
    /// each route has of its own unless `route_settings` names it. Every route's, not the
    /// `$default` route's.
    pub default_route: Bucket,
    /// The stage's `RouteSettings`: per-route buckets that replace `default_route`.
    pub route_settings: HashMap<String, Bucket>,
    /// New connections per second (API Gateway: 500/s per account); over it the upgrade gets 429.
    pub connect: Bucket,
    /// Messages per second from one connection.
    pub per_connection: Bucket,
}

impl Default for Throttling {
    fn default() -> Self {
        Self {
            account: Bucket { rate: 10_000.0, burst: 5_000 },
            default_route: Bucket { rate: 10_000.0, burst: 5_000 },
            route_settings: HashMap::new(),
            connect: Bucket { rate: 500.0, burst: 500 },
            per_connection: Bucket { rate: 100.0, burst: 200 },
        }
    }
}

/// The seed's reserved concurrency: how many invocations of each route may run at once, so a
/// flood of `sendmessage` cannot take the capacity `$connect`/`$disconnect` need.
#[derive(Clone, Debug)]
pub struct Concurrency {
    /// Each route not named in `per_route` (every such route, not the `$default` route alone).
    pub default_route: usize,
    /// Per-route limits.
    pub per_route: HashMap<String, usize>,
    /// How long an invocation waits for a free slot before it is throttled.
    pub queue_timeout: Duration,
}

impl Default for Concurrency {
    fn default() -> Self {
        let per_route = [("$connect", 64), ("$disconnect", 64), ("sendmessage", 128)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        Self { default_route: 64, per_route, queue_timeout: Duration::from_millis(250) }
    }
}

impl Concurrency {
    pub fn for_route(&self, route_key: &str) -> usize {
        self.per_route.get(route_key).copied().unwrap_or(self.default_route).max(1)
    }
}

/// Who may call the `@connections` management API and read `/metrics`.
///
/// Loopback is not an identity by itself: a page in the user's browser, a reverse proxy or a
/// tunnel on this host all reach the gateway from 127.0.0.1. An unsigned call is trusted only
/// from a loopback peer whose request shows none of them: a loopback or configured `Host`
/// (see [`OriginSettings::domain_names`]), no `Origin`, no `Sec-Fetch-Site` other than `none`,
/// and no `Forwarded`, `X-Forwarded-*`, `X-Real-IP` or `Via`. Once credentials are configured,
/// every call must be signed.
#[derive(Clone, Debug)]
pub struct ManagementAccess {
    /// Unsigned callers passing the checks above may manage connections (when no credentials
    /// are configured).
    pub allow_loopback: bool,
    /// When set, a request signed with SigV4 by these credentials is required, from anywhere.
    pub credentials: Option<SigV4Credentials>,
    /// The region a signature's credential scope must name (service `execute-api`).
    pub region: String,
    /// How long a caller may take to send a request body, once its headers are in; a stalled
    /// body is answered 408 and the connection closed. 10 s, as for the headers.
    pub body_read_timeout: Duration,
}

impl Default for ManagementAccess {
    fn default() -> Self {
        Self {
            allow_loopback: true,
            credentials: None,
            region: "us-east-1".into(),
            body_read_timeout: Duration::from_secs(10),
        }
    }
}

/// Which browser pages may open a WebSocket, and under which names the gateway is its own.
#[derive(Clone, Debug, Default)]
pub struct OriginSettings {
    /// Origins besides the gateway's own whose pages may connect (`*`: any, as API Gateway,
    /// which leaves the check to `$connect`). Requests without `Origin` (not from a browser)
    /// are always let through to `$connect`.
    pub allowed_origins: dynamowave_auth::AllowedOrigins,
    /// Names this gateway is reached by besides loopback ones (behind a proxy: its public name).
    /// A `Host` not among them and not loopback is a stranger's (DNS rebinding): its pages are
    /// not the gateway's own, and it is not trusted for unsigned `@connections` calls.
    pub domain_names: dynamowave_auth::DomainNames,
}

/// An access key pair for SigV4. The secret never appears in `Debug` output.
#[derive(Clone)]
pub struct SigV4Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for SigV4Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigV4Credentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}
