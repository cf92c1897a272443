//! The template this binary ships with (`infra/template.yaml`, the one deployed to AWS),
//! resolved with its parameters' defaults. It is the one place the chat's stage throttles,
//! reserved concurrency and table shapes are written: the default `serve` takes its route
//! settings from it and Lambda mode its tables, so a local run and the deployment agree.

use std::sync::OnceLock;

use dynamowave_template::{Model, Options, Template};

use crate::route_settings::StageDefaults;

/// `infra/template.yaml`, as built into the binary.
pub const TEMPLATE: &str = include_str!("../../../infra/template.yaml");
/// The name it is known by in messages.
pub const SOURCE: &str = "the embedded infra/template.yaml";

struct Resolved {
    model: Model,
    defaults: StageDefaults,
}

fn resolved() -> Result<&'static Resolved, String> {
    static RESOLVED: OnceLock<Result<Resolved, String>> = OnceLock::new();
    RESOLVED
        .get_or_init(|| {
            let model = Template::parse(TEMPLATE, SOURCE)
                .and_then(|t| t.resolve(&Options::default()))
                .map_err(|e| format!("{SOURCE} does not resolve: {e}"))?;
            let api = model.websocket_apis.first().ok_or_else(|| format!("{SOURCE} has no WebSocket API"))?;
            let defaults = StageDefaults::from_api(&model, api, api.stages.first());
            Ok(Resolved { model, defaults })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The shipped template, resolved with its defaults.
pub fn model() -> anyhow::Result<&'static Model> {
    resolved().map(|r| &r.model).map_err(anyhow::Error::msg)
}

/// Its stage's route settings.
pub fn stage_defaults() -> anyhow::Result<&'static StageDefaults> {
    resolved().map(|r| &r.defaults).map_err(anyhow::Error::msg)
}

/// The help of the flags whose defaults come from the template: each says the value and
/// where it is written.
pub mod help {
    use super::{SOURCE, stage_defaults};

    fn with_default(text: &str, default: impl FnOnce(&super::StageDefaults) -> String) -> String {
        match stage_defaults() {
            Ok(d) => format!("{text} (default: {}, from {SOURCE}; with --template, from that template)", default(d)),
            Err(e) => format!("{text} ({e})"),
        }
    }

    pub fn stage_rate() -> String {
        with_default("Each route's rate unless --route-throttle names it (`DefaultRouteSettings`), per second", |d| {
            d.default_route.rate.to_string()
        })
    }

    pub fn stage_burst() -> String {
        with_default("Each route's burst unless --route-throttle names it", |d| d.default_route.burst.to_string())
    }

    pub fn route_throttle() -> String {
        with_default(
            "Per-route throttling (`RouteSettings`): `ROUTE=RATE:BURST`, repeatable or comma-separated; each replaces the template's entry for its route",
            |d| {
                d.route_settings
                    .iter()
                    .map(|(k, b)| format!("{k}={}:{}", b.rate, b.burst))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        )
    }

    pub fn route_concurrency() -> String {
        with_default(
            "Reserved concurrency per route (the `ReservedConcurrentExecutions` of its function): `ROUTE=N`, repeatable or comma-separated; each replaces the template's",
            |d| d.per_route_concurrency.iter().map(|(k, n)| format!("{k}={n}")).collect::<Vec<_>>().join(", "),
        )
    }

    pub fn default_concurrency() -> String {
        with_default("Concurrency of routes not named in --route-concurrency (the `$default` route's function)", |d| {
            d.default_concurrency.to_string()
        })
    }
}
