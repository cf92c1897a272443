//! # dynamowave: the command
//!
//! A thin front over the libraries: `serve` builds the local gateway on the embedded store (or
//! on real Lambda binaries), `chat` is the terminal client, `bench` the load generator,
//! `restore` and `delete-history` the store's point-in-time recovery and its admin delete, `token`
//! mints development JWTs.
//!
//! # Layout
//!
//! - `main.rs`: the subcommands and logging; `serve` goes to one of its two modes.
//! - `args.rs`: `serve`'s flags (each with a `DYNAMOWAVE_*` variable, its default taken from
//!   the settings struct it sets) and their conversion to settings: the gateway's, the chat's,
//!   the store's, and the JWT flags read once for either mode's authorizer.
//! - `serve.rs`: `serve` in-process: the gateway and the chat handlers on the embedded store,
//!   flushed on the way out.
//! - `lambda.rs`: `serve --handlers lambda`: the real Lambda binaries behind the gateway.
//! - `authorizer.rs`: the `$connect` authorizers (JWT in-process, or the `authorizer` Lambda).
//! - `template_mode.rs`: `serve --template T`: every WebSocket API of a template, its
//!   functions in their runtimes, its tables; the plan `--print-config` prints.
//! - `mock.rs`: the `MOCK` integration, and the one of a route that cannot be served.
//! - `route_settings.rs`: a template stage's throttles and reserved concurrency as the
//!   gateway's settings.
//! - `embedded.rs`: the shipped `infra/template.yaml`, the source of the default route
//!   settings and of Lambda mode's tables.
//! - `dynamodb.rs`: the DynamoDB of template and Lambda modes (an endpoint, or DynamoDB Local
//!   started here) and its tables.
//!
//! `serve.rs`, `lambda.rs` and `template_mode.rs` depend on `args.rs` and `authorizer.rs`,
//! never on each other.
//!
//! # Repeated on purpose
//!
//! - The flags of `args.rs` open alike (a doc line, `#[arg(long, env = …)]`, a field): clap's
//!   shape for a flag, each with its own name, variable and help.
//! - The plan of `template_mode.rs` (`FunctionPlan`, …), which `--print-config` prints, has the
//!   shape of the template model's structs it is built from: one serialised field per setting.

mod args;
mod authorizer;
mod dynamodb;
mod embedded;
mod lambda;
mod mock;
mod route_settings;
mod serve;
mod template_mode;

/// jemalloc rather than glibc's malloc: a connection's short-lived handshake buffers are freed
/// between long-lived objects, and glibc spent ~12 % of the server's CPU under connection churn
/// (consolidating and unlinking chunks); jemalloc also holds an idle connection in less memory.
/// Measured with `dynamowave-bench --churn` and `--idle` (docs/performance.md).
///
/// Built with jemalloc's background thread on (Cargo.toml): jemalloc otherwise returns freed
/// pages to the OS only while something allocates, so after a burst of connections the server
/// went quiet still holding the burst's freed handshake buffers, ~700 bytes per idle connection
/// (`--idle`: 3,211 bytes per connection without it, 2,555 with). `_RJEM_MALLOC_CONF` in the
/// environment overrides jemalloc's options.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::{Parser, Subcommand};

/// DynamoWave Chat: a real-time chat backend that runs as API Gateway + Lambda + DynamoDB on
/// AWS, and whole on one machine behind a local API Gateway.
#[derive(Parser, Debug)]
#[command(name = "dynamowave", version, about, long_about = None)]
struct Cli {
    /// Log format: `text` or `json`.
    #[arg(long, global = true, env = "DYNAMOWAVE_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the chat: the local API Gateway WebSocket on the embedded store, web client at `/`.
    Serve(Box<args::ServeArgs>),
    /// Chat from a terminal: `dynamowave chat ws://127.0.0.1:8080/production --name ada`.
    Chat(dynamowave_client::ChatArgs),
    /// Rebuild a data dir as it was at a past moment (point-in-time recovery).
    Restore(RestoreArgs),
    /// Delete a room's whole history (an admin operation, journaled: `restore` can undo it).
    DeleteHistory(DeleteHistoryArgs),
    /// Load-test a chat server (ours or the peer) and report throughput, latency and loss.
    Bench(Box<dynamowave_bench::BenchArgs>),
    /// Mint an HS256 token for `serve --jwt-secret` (local development and tests).
    Token(TokenArgs),
}

#[derive(clap::Args, Debug)]
struct DeleteHistoryArgs {
    /// The data dir (the server must be stopped: one process owns it).
    #[arg(long, env = "DYNAMOWAVE_DATA_DIR")]
    data_dir: std::path::PathBuf,
    /// The room whose history to delete.
    #[arg(long)]
    room: String,
}

#[derive(clap::Args, Debug)]
struct TokenArgs {
    /// The HS256 secret the server verifies with (at least 32 bytes).
    #[arg(long, env = "DYNAMOWAVE_JWT_SECRET", hide_env_values = true)]
    secret: String,
    /// The subject (`sub`): the principal id.
    #[arg(long)]
    sub: String,
    /// The display name claim.
    #[arg(long)]
    name: Option<String>,
    /// Seconds until it expires.
    #[arg(long, default_value_t = 3600)]
    ttl_secs: u64,
    /// Audience claim.
    #[arg(long)]
    aud: Option<String>,
    /// Issuer claim.
    #[arg(long)]
    iss: Option<String>,
}

#[derive(clap::Args, Debug)]
struct RestoreArgs {
    /// The data dir to restore from (its journal covers the retention window).
    #[arg(long, env = "DYNAMOWAVE_DATA_DIR")]
    data_dir: std::path::PathBuf,
    /// The moment to restore to, RFC 3339 (e.g. 2026-11-27T20:00:00Z).
    #[arg(long)]
    to: String,
    /// A new, empty dir to write the restored state into.
    #[arg(long)]
    into: std::path::PathBuf,
}

/// Logs go to stderr through a writer thread: a request does not wait for a `write` per line
/// (at thousands of connects a second that was a tenth of the server's time). Nothing is dropped
/// when the buffer fills (`lossy(false)`: the logging call waits instead); the guard flushes at
/// exit.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("dynamowave-log")
        // Buffered: the writer thread writes what is queued and flushes when the queue is empty,
        // so a burst of lines is one `write`, not one each.
        .finish(std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr()));
    // Colours only for a terminal: in a file or a log pipeline the escape codes are noise (and
    // writing them cost ~2 % of the server's CPU under churn).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
        LogFormat::Text => builder.init(),
    }
    guard
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _log_guard = init_logging(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve(args) => {
            // Before anything starts, in either mode: the JWT flags are read (and a weak secret
            // refused) once.
            let jwt = args.jwt_verification()?;
            if args.template.is_some() {
                return runtime.block_on(template_mode::run(*args));
            }
            match args.handlers {
                args::Handlers::InProcess => runtime.block_on(serve::run(*args, jwt)),
                args::Handlers::Lambda => runtime.block_on(lambda::run(*args, jwt)),
            }
        }
        Command::Chat(args) => runtime.block_on(dynamowave_client::run(args)),
        Command::Restore(args) => {
            let to = chrono::DateTime::parse_from_rfc3339(&args.to)
                .map_err(|e| anyhow::anyhow!("--to {:?} is not an RFC 3339 time: {e}", args.to))?
                .with_timezone(&chrono::Utc);
            eprintln!("restoring {} as of {to} into {} …", args.data_dir.display(), args.into.display());
            let report = dynamowave_store_redb::restore(&args.data_dir, to, &args.into)?;
            println!("{report:?}");
            Ok(())
        }
        Command::DeleteHistory(args) => runtime.block_on(async move {
            let store =
                dynamowave_store_redb::RedbStore::open(&args.data_dir, dynamowave_store_redb::RedbSettings::default())?;
            let deleted = store.delete_room_history(&args.room).await?;
            store.close().await?;
            println!("deleted {deleted} messages of room {}", args.room);
            Ok(())
        }),
        Command::Bench(args) => runtime.block_on(async move {
            let report = dynamowave_bench::run(*args).await?;
            report.print_table();
            Ok(())
        }),
        Command::Token(t) => {
            let token = dynamowave_auth::mint_hs256(
                &t.secret,
                &t.sub,
                t.name.as_deref(),
                std::time::Duration::from_secs(t.ttl_secs),
                t.aud.as_deref(),
                t.iss.as_deref(),
            )?;
            println!("{token}");
            Ok(())
        }
    }
}
