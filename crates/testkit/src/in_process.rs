//! The gateway built in this process: the one place where the tests assemble one (any app:
//! [`app_gateway`], [`routes_gateway`], feature `app-gateway`; the chat on the embedded store:
//! [`chat_gateway`], feature `gateway`). When the way it is built changes, only this file
//! changes.

#[cfg(feature = "chat")]
pub use chat::SUBPROTOCOL;
#[cfg(feature = "gateway")]
pub use chat::{chat_gateway, chat_gateway_on_temp_redb};
#[cfg(feature = "app-gateway")]
pub use gateway::{RunningGateway, app_gateway, routes_gateway};

#[cfg(feature = "chat")]
mod chat {
    /// The chat's WebSocket subprotocol: the JSON framing.
    pub const SUBPROTOCOL: &str = dynamowave_core::SUBPROTOCOL;

    #[cfg(feature = "gateway")]
    pub use with_gateway::{chat_gateway, chat_gateway_on_temp_redb};

    #[cfg(feature = "gateway")]
    mod with_gateway {
        use std::sync::Arc;

        use dynamowave_core::{ChatDeps, ChatSettings, Placement};
        use dynamowave_gateway::{Gateway, GatewaySettings};
        use dynamowave_store_redb::{RedbSettings, RedbStore};

        use crate::in_process::gateway::{RunningGateway, for_tests, serve};

        /// The chat on `store`, behind a gateway with `settings`, the handlers in this process.
        pub async fn chat_gateway(
            settings: GatewaySettings,
            chat: ChatSettings,
            store: Arc<RedbStore>,
        ) -> RunningGateway {
            let gateway = Gateway::bind(for_tests(settings)).await.expect("bind the gateway");
            let deps = ChatDeps::new(store.clone(), store, gateway.connections_api(), chat, Placement::InProcess);
            serve(gateway, dynamowave_core::app::in_process(deps))
        }

        /// The chat on a redb store in a new temporary directory (removed when the gateway is
        /// dropped), with the chat's default settings but for the PostToConnection limit, which
        /// is the gateway's message limit (as `dynamowave serve` sets it: the handlers post
        /// through this gateway).
        pub async fn chat_gateway_on_temp_redb(settings: GatewaySettings) -> RunningGateway {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = Arc::new(RedbStore::open(dir.path(), RedbSettings::default()).expect("open the store"));
            let chat = ChatSettings { max_payload_bytes: settings.limits.max_message_bytes, ..ChatSettings::default() };
            let mut gateway = chat_gateway(settings, chat, store).await;
            gateway._dir = Some(dir);
            gateway
        }
    }
}

#[cfg(feature = "app-gateway")]
mod gateway {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use dynamowave_apigw::{App, ConnectionsApi, Integration};
    use dynamowave_gateway::{Gateway, GatewaySettings, ShutdownHandle};

    /// A gateway serving on 127.0.0.1 (port 0) in this process, stopped when dropped.
    pub struct RunningGateway {
        pub addr: SocketAddr,
        /// Its `@connections` API, for in-process callers.
        pub connections_api: Arc<dyn ConnectionsApi>,
        stop: ShutdownHandle,
        pub(crate) _dir: Option<tempfile::TempDir>,
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

        /// Stops serving now (as dropping it does).
        pub fn shutdown(&self) {
            self.stop.shutdown();
        }
    }

    #[cfg(feature = "chat")]
    impl RunningGateway {
        pub async fn connect(&self, json: bool) -> crate::ws::Client {
            crate::ws::Client::connect(&self.url(), json).await.expect("WebSocket connect")
        }
    }

    /// `settings` with what every test gateway needs: port 0 on loopback, no signal handlers
    /// (the test process owns them).
    pub(crate) fn for_tests(settings: GatewaySettings) -> GatewaySettings {
        GatewaySettings { listen: "127.0.0.1:0".parse().expect("addr"), handle_signals: false, ..settings }
    }

    /// `gateway` serving `app` in the background.
    pub(crate) fn serve(gateway: Gateway, app: App) -> RunningGateway {
        let addr = gateway.local_addr();
        let connections_api: Arc<dyn ConnectionsApi> = gateway.connections_api();
        let stop = gateway.shutdown_handle();
        tokio::spawn(gateway.serve(app, None));
        RunningGateway { addr, connections_api, stop, _dir: None }
    }

    /// A gateway serving `app`.
    pub async fn app_gateway(settings: GatewaySettings, app: App) -> RunningGateway {
        serve(Gateway::bind(for_tests(settings)).await.expect("bind the gateway"), app)
    }

    /// A gateway whose routes are `routes` (route key → integration), and nothing else.
    pub async fn routes_gateway(
        settings: GatewaySettings,
        routes: Vec<(&str, Arc<dyn Integration>)>,
    ) -> RunningGateway {
        app_gateway(settings, App::new(routes.into_iter().collect())).await
    }
}
