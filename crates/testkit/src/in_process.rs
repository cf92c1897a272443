//! The chat and the gateway built in this process: the one place where the tests assemble the
//! chat's dependencies ([`chat_deps`]) or a gateway ([`chat_gateway`], [`routes_gateway`],
//! feature `gateway`). When the way they are built changes, only this file changes.

use std::sync::Arc;

use dynamowave_core::handlers::{PresenceBudget, RoomCreationRate};
use dynamowave_core::{ChatDeps, ChatSettings, ConnectionStore, ConnectionsApi, MessageLog};

/// The chat's WebSocket subprotocol: the JSON framing.
pub const SUBPROTOCOL: &str = dynamowave_core::SUBPROTOCOL;

/// The chat handlers' dependencies, as one process (a Lambda function) holds them: no room
/// sequencer; the presence budget and the room-creation rate from `settings`.
pub fn chat_deps(
    connections: Arc<dyn ConnectionStore>,
    messages: Arc<dyn MessageLog>,
    connections_api: Arc<dyn ConnectionsApi>,
    settings: ChatSettings,
) -> ChatDeps {
    ChatDeps {
        connections,
        messages,
        connections_api,
        presence: Arc::new(PresenceBudget::new(settings.presence_per_room_per_second)),
        room_rate: Arc::new(RoomCreationRate::new(settings.room_create_per_minute, settings.room_create_burst)),
        settings,
        sequencer: None,
    }
}

#[cfg(feature = "gateway")]
pub use gateway::{RunningGateway, chat_gateway, chat_gateway_on_temp_redb, routes_gateway};

#[cfg(feature = "gateway")]
mod gateway {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::Arc;

    use dynamowave_core::integration::Integration;
    use dynamowave_core::{ChatSettings, ConnectionsApi};
    use dynamowave_gateway::{Backend, Gateway, GatewaySettings, ShutdownHandle};
    use dynamowave_store_redb::{RedbSettings, RedbStore};

    use crate::ws::Client;

    /// A gateway serving on 127.0.0.1 (port 0) in this process, stopped when dropped.
    pub struct RunningGateway {
        pub addr: SocketAddr,
        /// Its `@connections` API, for in-process callers.
        pub connections_api: Arc<dyn ConnectionsApi>,
        stop: ShutdownHandle,
        _dir: Option<tempfile::TempDir>,
    }

    impl Drop for RunningGateway {
        fn drop(&mut self) {
            self.stop.shutdown();
        }
    }

    impl RunningGateway {
        /// The WebSocket URL of the default stage.
        pub fn url(&self) -> String {
            format!("ws://{}/production", self.addr)
        }

        pub fn http(&self, path: &str) -> String {
            format!("http://{}{}", self.addr, path)
        }

        pub async fn connect(&self, json: bool) -> Client {
            Client::connect(&self.url(), json).await.expect("WebSocket connect")
        }

        /// Stops serving now (as dropping it does).
        pub fn shutdown(&self) {
            self.stop.shutdown();
        }
    }

    /// `settings` with what every test gateway needs: port 0 on loopback, no signal handlers
    /// (the test process owns them).
    fn for_tests(settings: GatewaySettings) -> GatewaySettings {
        GatewaySettings { listen: "127.0.0.1:0".parse().expect("addr"), handle_signals: false, ..settings }
    }

    async fn start(settings: GatewaySettings, backend: Backend, dir: Option<tempfile::TempDir>) -> RunningGateway {
        let gateway = Gateway::build(for_tests(settings), backend).await.expect("build the gateway");
        let addr = gateway.local_addr();
        let connections_api: Arc<dyn ConnectionsApi> = gateway.connections_api();
        let stop = gateway.shutdown_handle();
        tokio::spawn(gateway.run_until_stopped());
        RunningGateway { addr, connections_api, stop, _dir: dir }
    }

    /// The chat on `store`, behind a gateway with `settings`.
    pub async fn chat_gateway(settings: GatewaySettings, chat: ChatSettings, store: Arc<RedbStore>) -> RunningGateway {
        start(settings, Backend::in_process(store.clone(), store, chat), None).await
    }

    /// The chat with its default settings on a redb store in a new temporary directory (removed
    /// when the gateway is dropped).
    pub async fn chat_gateway_on_temp_redb(settings: GatewaySettings) -> RunningGateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(RedbStore::open(dir.path(), RedbSettings::default()).expect("open the store"));
        let mut gateway = chat_gateway(settings, ChatSettings::default(), store).await;
        gateway._dir = Some(dir);
        gateway
    }

    /// A gateway whose routes are `routes` (route key → integration).
    pub async fn routes_gateway(
        settings: GatewaySettings,
        routes: Vec<(&str, Arc<dyn Integration>)>,
    ) -> RunningGateway {
        let routes: HashMap<String, Arc<dyn Integration>> =
            routes.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        start(settings, Backend::routes(routes), None).await
    }
}
