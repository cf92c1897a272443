//! `dynamowave serve` in-process: the gateway with the chat handlers in this process, on the
//! embedded store; on SIGINT/SIGTERM every connection is closed with 1001, gets its
//! `$disconnect`, and the store is flushed.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use dynamowave_core::{ChatDeps, Placement};
use dynamowave_gateway::Gateway;
use dynamowave_store_redb::RedbStore;
use tracing::info;

use crate::args::{JwtVerification, ServeArgs};

pub async fn run(args: ServeArgs, jwt: Option<JwtVerification>) -> anyhow::Result<()> {
    let settings = args.gateway_settings()?;
    let chat = args.chat_settings()?;
    let authorizer: Option<Arc<dyn dynamowave_gateway::ConnectAuthorizer>> = match jwt {
        Some(jwt) => Some(Arc::new(crate::authorizer::JwtAuthorizer(jwt.auth_settings()?))),
        None => None,
    };
    let store = Arc::new(
        RedbStore::open(&args.data_dir, args.store_settings())
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
