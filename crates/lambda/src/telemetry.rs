//! Logging: JSON lines (CloudWatch parses them into fields such as `connection_id` and
//! `request_id`), level from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else `info`.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the JSON subscriber. A second call (tests) is ignored.
pub fn init_tracing() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string())
        .to_lowercase();
    // `Targets` (`info`, `debug,hyper=warn`, …) rather than `EnvFilter`: the same levels and
    // per-target directives without a regex engine in every package (`EnvFilter`'s span-field
    // directives are the part it leaves out).
    let filter: Targets = level.parse().unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO));
    // Lambda timestamps each line itself; the target adds nothing a reader needs.
    let json = tracing_subscriber::fmt::layer().json().with_target(false).without_time().with_current_span(false);
    let _ = tracing_subscriber::registry().with(json).with(filter).try_init();
}
