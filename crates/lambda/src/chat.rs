//! The chat functions (`connect`, `disconnect`, `sendmessage`, `default`): one runtime of
//! clients per container, one [`ChatRuntime::invoke`] per event.

use std::sync::{Arc, OnceLock};

use aws_config::SdkConfig;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use dynamowave_auth::{AllowedOrigins, check_origin};
use dynamowave_aws::{ConfigError, ConnectionsApiPool, DynamoDbSettings, DynamoDbStore, Tables};
use dynamowave_core::{ChatDeps, ChatSettings, HandlerError, Placement, handle, is_warmup_event};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::{Value, json};
use tracing::{Instrument, info, info_span, warn};

/// Why an invocation failed. Lambda reports it as the function's error, which API Gateway
/// turns into `{"message": "Internal server error", ...}` for the client.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    #[error("the event is not an API Gateway WebSocket event: {0}")]
    BadEvent(serde_json::Error),
    #[error(transparent)]
    Handler(#[from] HandlerError),
    #[error("serialising the response: {0}")]
    Response(serde_json::Error),
}

impl From<FunctionError> for Diagnostic {
    fn from(e: FunctionError) -> Self {
        let error_type = match &e {
            FunctionError::BadEvent(_) => "BadEvent",
            FunctionError::Handler(_) => "HandlerError",
            FunctionError::Response(_) => "ResponseError",
        };
        Diagnostic { error_type: error_type.into(), error_message: e.to_string() }
    }
}

/// What a chat function keeps between invocations: the DynamoDB store, the `@connections`
/// clients (one per endpoint), and the handlers' in-memory budgets of this warm instance.
pub struct ChatRuntime {
    store: Arc<DynamoDbStore>,
    connections_api: ConnectionsApiPool,
    settings: ChatSettings,
    /// The handlers' dependencies, built at the first invocation (they need a `@connections`
    /// client, which is the event's); each invocation answers through its own event's client.
    deps: OnceLock<ChatDeps>,
    /// Origins whose pages may connect, checked on `$connect` (for when no authorizer runs).
    origins: AllowedOrigins,
}

impl ChatRuntime {
    pub fn new(store: DynamoDbStore, connections_api: ConnectionsApiPool, settings: ChatSettings) -> Self {
        Self {
            store: Arc::new(store),
            connections_api,
            settings,
            deps: OnceLock::new(),
            origins: AllowedOrigins::none(),
        }
    }

    /// The dependencies for an invocation answering through `connections_api`.
    fn deps(&self, connections_api: Arc<dyn dynamowave_core::ConnectionsApi>) -> ChatDeps {
        let shared = self.deps.get_or_init(|| {
            ChatDeps::new(
                self.store.clone(),
                self.store.clone(),
                connections_api.clone(),
                self.settings.clone(),
                Placement::Lambda,
            )
        });
        shared.with_connections_api(connections_api)
    }

    /// Which browser pages `$connect` lets in besides none (default: only clients that send no
    /// `Origin`, i.e. not browsers; `*`: any).
    pub fn with_allowed_origins(mut self, origins: AllowedOrigins) -> Self {
        self.origins = origins;
        self
    }

    /// From the environment: the tables (`CONNECTIONS_TABLE`, …), the adapter's limits, and
    /// `DYNAMOWAVE_CONNECTIONS_ENDPOINT` if set (`ALLOWED_ORIGINS`: see
    /// [`ChatRuntime::with_allowed_origins`]).
    pub fn from_env(sdk_config: &SdkConfig) -> Result<Self, ConfigError> {
        let store = DynamoDbStore::new(sdk_config, Tables::from_env()?, DynamoDbSettings::from_env()?);
        Ok(Self::new(store, ConnectionsApiPool::from_env(sdk_config.clone()), ChatSettings::default()))
    }

    /// One invocation. A warm-up (`{"warmup": true}`) answers `{"warm": true}` touching
    /// nothing; anything else must be an API Gateway WebSocket event, handled by the core.
    pub async fn invoke(&self, event: Value) -> Result<Value, FunctionError> {
        if is_warmup_event(&event) {
            return Ok(json!({ "warm": true }));
        }
        let event: ApiGatewayWebsocketProxyRequest = serde_json::from_value(event).map_err(FunctionError::BadEvent)?;
        if let Some(refusal) = foreign_origin(&self.origins, &event) {
            return Ok(refusal);
        }
        let context = &event.request_context;
        let span = info_span!(
            "invoke",
            connection_id = context.connection_id.as_deref().unwrap_or(""),
            request_id = context.request_id.as_deref().unwrap_or(""),
            route_key = context.route_key.as_deref().unwrap_or(""),
        );
        async {
            let deps = self.deps(self.connections_api.for_event(&event)?);
            let response = handle(&deps, event).await.inspect_err(|e| warn!(error = %e, "handler failed"))?;
            serde_json::to_value(response).map_err(FunctionError::Response)
        }
        .instrument(span)
        .await
    }
}

/// `$connect` from a page whose origin is neither listed nor the API's own: 403, before
/// anything is stored (API Gateway turns a non-2xx `$connect` answer into the upgrade's).
fn foreign_origin(origins: &AllowedOrigins, event: &ApiGatewayWebsocketProxyRequest) -> Option<Value> {
    let context = &event.request_context;
    let connecting =
        context.route_key.as_deref() == Some("$connect") || context.event_type.as_deref() == Some("CONNECT");
    if !connecting {
        return None;
    }
    let origin = event.headers.get("origin").map(|v| v.to_str().unwrap_or(""));
    // The `domainName` is set by API Gateway (or the local gateway, which checked it).
    let refused = check_origin(origin, context.domain_name.as_deref(), origins).err()?;
    info!(origin = refused, "connection from a foreign origin refused");
    Some(json!({ "statusCode": 403, "body": "Forbidden" }))
}

/// The whole `main` of a chat function: logs, clients once, then serve invocations.
pub async fn run_chat_function() -> Result<(), lambda_runtime::Error> {
    crate::telemetry::init_tracing();
    let sdk_config = dynamowave_aws::load_sdk_config().await;
    let origins = AllowedOrigins::from_env()?;
    let runtime = Arc::new(ChatRuntime::from_env(&sdk_config)?.with_allowed_origins(origins));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let runtime = Arc::clone(&runtime);
        async move { runtime.invoke(event.payload).await }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(route_key: &str, origin: Option<&str>) -> ApiGatewayWebsocketProxyRequest {
        let mut headers = json!({ "Host": "abc123.execute-api.eu-west-1.amazonaws.com" });
        if let Some(o) = origin {
            headers["Origin"] = json!(o);
        }
        serde_json::from_value(json!({
            "headers": headers,
            "requestContext": {
                "routeKey": route_key, "eventType": if route_key == "$connect" { "CONNECT" } else { "MESSAGE" },
                "connectionId": "Mg_ugfpqPHcCIVA=", "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
                "connectedAt": 1, "requestTimeEpoch": 1, "stage": "production", "apiId": "abc123"
            },
            "isBase64Encoded": false
        }))
        .expect("a WebSocket event")
    }

    #[test]
    fn connect_from_a_foreign_origin_is_refused() {
        let none = AllowedOrigins::none();
        let refusal = foreign_origin(&none, &event("$connect", Some("https://evil.example"))).expect("refused");
        assert_eq!(refusal["statusCode"], 403);
        assert_eq!(foreign_origin(&none, &event("$connect", None)), None, "not a browser");
        let own = Some("https://abc123.execute-api.eu-west-1.amazonaws.com");
        assert_eq!(foreign_origin(&none, &event("$connect", own)), None, "the API's own origin");
        let listed = AllowedOrigins::parse("https://chat.example.com").expect("origins");
        assert_eq!(foreign_origin(&listed, &event("$connect", Some("https://chat.example.com"))), None);
        assert!(foreign_origin(&listed, &event("$connect", Some("https://evil.example"))).is_some());
        assert_eq!(foreign_origin(&AllowedOrigins::any(), &event("$connect", Some("https://evil.example"))), None);
        // Only `$connect` decides; later messages of an admitted connection are not checked.
        assert_eq!(foreign_origin(&none, &event("sendmessage", Some("https://evil.example"))), None);
    }
}
