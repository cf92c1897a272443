//! A template stage's route settings as the gateway's: throttles from `DefaultRouteSettings`
//! and `RouteSettings`, per-route reserved concurrency from the `ReservedConcurrentExecutions`
//! of the function each route's integration invokes. One mapping, used by template mode for
//! every API it serves and by the default `serve` for the template it ships with.

use std::collections::{BTreeMap, HashMap};

use dynamowave_gateway::settings::{Bucket, Throttling};
use dynamowave_template::{Model, RouteSettings, Stage, WebSocketApi};

/// What a stage gives the gateway's settings; flags override it (`ServeArgs::gateway_settings_with`).
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageDefaults {
    /// The stage name (the URL's path).
    pub stage: String,
    /// `DefaultRouteSettings`' throttle: every route's own bucket unless `route_settings` names it.
    pub default_route: BucketJson,
    /// `RouteSettings` throttles (each setting left out taken from `DefaultRouteSettings`).
    pub route_settings: BTreeMap<String, BucketJson>,
    /// Concurrency of a route whose function reserves none: the `$default` route's, as every
    /// key without a route of its own reaches `$default` on AWS.
    pub default_concurrency: usize,
    /// Routes whose function has `ReservedConcurrentExecutions`.
    pub per_route_concurrency: BTreeMap<String, usize>,
}

/// A token bucket as printed (`--print-config`) and as the gateway takes it.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct BucketJson {
    pub rate: f64,
    pub burst: u32,
}

impl From<BucketJson> for Bucket {
    fn from(b: BucketJson) -> Bucket {
        Bucket { rate: b.rate, burst: b.burst }
    }
}

impl StageDefaults {
    /// `api`'s settings at `stage` (`None`: an API without a stage, served at its default name).
    pub fn from_api(model: &Model, api: &WebSocketApi, stage: Option<&Stage>) -> StageDefaults {
        let fallback = Throttling::default().default_route;
        let bucket = |settings: &RouteSettings| BucketJson {
            rate: settings.throttling_rate_limit.unwrap_or(fallback.rate),
            burst: settings
                .throttling_burst_limit
                .map(|b| u32::try_from(b).unwrap_or(u32::MAX))
                .unwrap_or(fallback.burst),
        };
        let default_route = stage
            .map(|s| bucket(&s.default_route_settings))
            .unwrap_or(BucketJson { rate: fallback.rate, burst: fallback.burst });
        let route_settings = stage
            .map(|s| s.route_settings.keys().map(|key| (key.clone(), bucket(&s.settings_for(key)))).collect())
            .unwrap_or_default();
        let reserved = |route_key: &str| -> Option<usize> {
            let route = api.route(route_key)?;
            let integration = api.integration(route.integration.as_deref()?)?;
            let function = model.functions.get(integration.function.as_deref()?)?;
            function.reserved_concurrent_executions.map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        };
        let per_route_concurrency: BTreeMap<String, usize> =
            api.routes.iter().filter_map(|r| Some((r.route_key.clone(), reserved(&r.route_key)?))).collect();
        StageDefaults {
            stage: stage.map(|s| s.stage_name.clone()).unwrap_or_else(|| "default".to_string()),
            default_route,
            route_settings,
            default_concurrency: per_route_concurrency
                .get("$default")
                .copied()
                // No reservation: the account's pool, as on AWS (the Lambda host caps the
                // processes and queues past them).
                .unwrap_or(dynamowave_lambda_host::HostSettings::default().account_concurrency),
            per_route_concurrency,
        }
    }

    pub fn route_buckets(&self) -> HashMap<String, Bucket> {
        self.route_settings.iter().map(|(k, v)| (k.clone(), Bucket::from(*v))).collect()
    }
}
