//! Logging: JSON lines (CloudWatch parses them into fields such as `connection_id` and
//! `request_id`), level from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else `info`.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber. A second call (tests) is ignored.
pub fn init_tracing() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string())
        .to_lowercase();
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Lambda timestamps each line itself; the target adds nothing a reader needs.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_target(false)
        .without_time()
        .with_current_span(false)
        .try_init();
}
