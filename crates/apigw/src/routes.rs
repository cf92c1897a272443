//! The route table: which integration answers which route key, as an API's routes do on API
//! Gateway. A message whose selected route key has no route goes to `$default`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::integration::Integration;

/// API Gateway's reserved route keys.
pub mod route_key {
    /// Runs before the upgrade; its answer decides it.
    pub const CONNECT: &str = "$connect";
    /// Runs once the connection is closed (best-effort).
    pub const DISCONNECT: &str = "$disconnect";
    /// Messages whose selected route key matches no route.
    pub const DEFAULT: &str = "$default";
}

/// Route key → integration.
#[derive(Clone, Default)]
pub struct RouteTable {
    routes: HashMap<String, Arc<dyn Integration>>,
}

impl RouteTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `route_key` to `integration` (replacing any route it had).
    pub fn insert(&mut self, route_key: impl Into<String>, integration: Arc<dyn Integration>) {
        self.routes.insert(route_key.into(), integration);
    }

    /// Whether `route_key` has a route of its own (`$default` aside).
    pub fn contains(&self, route_key: &str) -> bool {
        self.routes.contains_key(route_key)
    }

    /// The integration that answers `route_key`: its own, else `$default`'s. `$connect` and
    /// `$disconnect` have only their own: `$default` takes messages, and without a `$connect`
    /// route API Gateway admits every connection.
    pub fn get(&self, route_key: &str) -> Option<&Arc<dyn Integration>> {
        self.routes.get(route_key).or_else(|| match route_key {
            route_key::CONNECT | route_key::DISCONNECT => None,
            _ => self.routes.get(route_key::DEFAULT),
        })
    }

    /// The route keys that have a route.
    pub fn route_keys(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str)
    }
}

impl<K: Into<String>> FromIterator<(K, Arc<dyn Integration>)> for RouteTable {
    fn from_iter<I: IntoIterator<Item = (K, Arc<dyn Integration>)>>(iter: I) -> Self {
        Self { routes: iter.into_iter().map(|(k, v)| (k.into(), v)).collect() }
    }
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<&str> = self.route_keys().collect();
        keys.sort_unstable();
        f.debug_struct("RouteTable").field("route_keys", &keys).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{integration_fn, proxy_response};

    /// An integration that answers `status`.
    fn answers(status: i64) -> Arc<dyn Integration> {
        Arc::new(integration_fn(move |_| async move { Ok(proxy_response(status, None)) }))
    }

    #[tokio::test]
    async fn a_route_without_its_own_integration_goes_to_default() {
        let table: RouteTable = [("join", answers(201)), (route_key::DEFAULT, answers(404))].into_iter().collect();
        let status = |key: &str| {
            let integration = table.get(key).cloned();
            async move { integration.expect("a route").invoke(Default::default()).await.expect("answer").status_code }
        };
        assert_eq!(status("join").await, 201);
        assert_eq!(status("leave").await, 404);
        assert!(table.contains("join") && !table.contains("leave"));
        assert!(RouteTable::new().get("join").is_none(), "no `$default`: no route");
        assert!(
            table.get(route_key::CONNECT).is_none() && table.get(route_key::DISCONNECT).is_none(),
            "never `$default`"
        );
    }
}
