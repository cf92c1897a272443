//! # dynamowave-client: the terminal chat client
//!
//! `dynamowave chat ws://127.0.0.1:8080/production --name ada --room ops` speaks the JSON
//! framing (subprotocol `dynamowave.v1`, `docs/protocol.md`), shows messages as
//! `[HH:MM] <name> text`, and survives a lost connection: it reconnects with backoff, rejoins
//! with `since`/`epoch` to recover what it missed (or shows the last page of history when the
//! server cannot replay), drops what it has already shown (`seq` ≤ last seen), and re-sends
//! messages never acknowledged under their original `id` (the server dedupes them).
//!
//! # Layout
//!
//! - This file: [`ChatArgs`] (the `chat` subcommand's arguments) and [`run`], which wires the
//!   terminal (stdin lines, Ctrl-C, stdout) to a session.
//! - [`session`]: [`session::run_session`], the connection loop, driven by an input channel and
//!   an output writer (which is how the tests drive it).
//! - [`command`]: what a typed line means (`/join`, `/msg`, …). Pure.
//! - [`render`]: server events to terminal lines; everything received is escaped first
//!   ([`render::sanitize`]), so no peer can write control sequences to the terminal.
//!
//! `wss://` URLs need TLS, which this build leaves out (the local gateway is plain `ws://`; in
//! front of AWS use a local TLS-terminating proxy or add tokio-tungstenite's TLS feature).

pub mod command;
pub mod render;
pub mod session;

use std::io::BufRead;

use tokio::sync::mpsc;

pub use session::{Input, Options, run_session};

/// `dynamowave chat`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ChatArgs {
    /// The WebSocket URL, with the stage: ws://HOST:PORT/STAGE.
    pub url: String,
    /// Display name (if the server allows choosing one; with a token the name comes from it).
    #[arg(long)]
    pub name: Option<String>,
    /// Room to join (default: lobby).
    #[arg(long)]
    pub room: Option<String>,
    /// A JWT for servers that require one (sent as `?token=`).
    #[arg(long, env = "DYNAMOWAVE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Chats on the terminal until `/quit`, Ctrl-C or the end of stdin; each of these closes the
/// connection with 1000 and returns `Ok`.
pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    session::check_url(&args.url)?;
    let (tx, rx) = mpsc::channel(64);
    // A plain thread, not tokio's stdin: a blocked read there would keep the runtime from
    // shutting down after /quit. At end of input the sender drops, which the session reads as quit.
    let lines = tx.clone();
    std::thread::Builder::new().name("stdin".into()).spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines.blocking_send(Input::Line(line)).is_err() {
                break;
            }
        }
    })?;
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = tx.send(Input::Quit).await;
        }
    });
    run_session(args, Options::default(), rx, tokio::io::stdout()).await
}
