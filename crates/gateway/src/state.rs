//! [`GatewayState`]: what every request and connection of a running gateway shares — the
//! settings, the live connections, the app's routes and error frames, the throttles, the
//! authorizer and the shutdown signal.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use dynamowave_apigw::{ErrorFrames, Integration, RouteTable};
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::ConnectAuthorizer;
use crate::registry::{LocalConnectionsApi, Registry};
use crate::settings::GatewaySettings;
use crate::throttle::Throttles;

/// State shared by every request and connection.
pub(crate) struct GatewayState {
    pub settings: GatewaySettings,
    pub local_addr: SocketAddr,
    pub registry: Arc<Registry>,
    pub api: Arc<LocalConnectionsApi>,
    pub routes: RouteTable,
    pub error_frames: Arc<dyn ErrorFrames>,
    pub authorizer: Option<Arc<dyn ConnectAuthorizer>>,
    pub throttles: Throttles,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    /// Each route's reserved concurrency, made on first use.
    semaphores: Mutex<HashMap<String, Arc<Semaphore>>>,
    domain_names: LastValue,
    subprotocols: LastValue,
}

/// What a gateway has from its bind on, before it serves an app.
pub(crate) struct Bound {
    pub settings: GatewaySettings,
    pub local_addr: SocketAddr,
    pub api: Arc<LocalConnectionsApi>,
    pub shutdown: CancellationToken,
}

impl GatewayState {
    pub fn new(
        bound: Bound,
        routes: RouteTable,
        error_frames: Arc<dyn ErrorFrames>,
        authorizer: Option<Arc<dyn ConnectAuthorizer>>,
    ) -> Self {
        let Bound { settings, local_addr, api, shutdown } = bound;
        Self {
            throttles: Throttles::new(settings.throttling.clone()),
            registry: api.registry.clone(),
            settings,
            local_addr,
            api,
            routes,
            error_frames,
            authorizer,
            shutdown,
            tracker: TaskTracker::new(),
            semaphores: Mutex::new(HashMap::new()),
            domain_names: LastValue::default(),
            subprotocols: LastValue::default(),
        }
    }

    /// The integration that answers `route_key` (its own route, else `$default`'s).
    pub fn integration_for(&self, route_key: &str) -> Option<Arc<dyn Integration>> {
        self.routes.get(route_key).cloned()
    }

    /// The connection's `domainName`: its `Host` header (else our address), as one string shared
    /// by the connections that used the same host (nearly all of them) instead of a copy each.
    pub fn domain_name(&self, host: Option<&str>) -> Arc<str> {
        match host {
            Some(host) => self.domain_names.get(host),
            None => self.domain_names.get(&self.local_addr.to_string()),
        }
    }

    /// The subprotocol `$connect` selected, shared by the connections that selected the same one.
    pub fn subprotocol(&self, selected: &str) -> Arc<str> {
        self.subprotocols.get(selected)
    }

    pub fn semaphore_for(&self, route_key: &str) -> Arc<Semaphore> {
        // A map lookup, never held across an await.
        let mut map = self.semaphores.lock();
        map.entry(route_key.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.concurrency.for_route(route_key))))
            .clone()
    }
}

/// One string shared by everyone who asks for the same value as the last caller (a value that
/// rarely changes: a per-connection copy would cost memory in every connection).
#[derive(Default)]
struct LastValue(Mutex<Option<Arc<str>>>);

impl LastValue {
    fn get(&self, value: &str) -> Arc<str> {
        // A compare and a clone, never held across an await.
        let mut last = self.0.lock();
        match &*last {
            Some(shared) if &**shared == value => shared.clone(),
            _ => {
                let shared: Arc<str> = Arc::from(value);
                *last = Some(shared.clone());
                shared
            }
        }
    }
}
