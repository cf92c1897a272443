//! The chat as an app behind an API Gateway WebSocket API: its routes, defined once here, and
//! what it gives a gateway besides them (its error frames, its web client).
//!
//! Every route key is a [`Route`]: `$connect`, `$disconnect`, one per [`Action`], and
//! `$default`. Each route runs in one of the seed's four functions ([`Function`], as
//! `infra/template.yaml` maps them); every function runs the same code
//! ([`crate::handlers::handle`], which dispatches on the [`Route`]), so a table can route to one
//! integration for all of them (in-process: [`in_process`]) or to a function each (Lambda mode:
//! [`chat`] of a [`route_table`] of the hosted functions).

use std::sync::Arc;

use dynamowave_apigw::routes::route_key;
use dynamowave_apigw::{App, Asset, ErrorFrame, ErrorFrames, Integration, RouteTable};

use crate::SUBPROTOCOL;
use crate::handlers::ChatDeps;
use crate::integration::InProcess;
use crate::protocol::{ACTIONS, Action};

/// What a route key selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Connect,
    Disconnect,
    /// A chat action (`sendmessage`, `join`, …).
    Action(Action),
    /// Anything else: non-JSON frames, unknown actions.
    Default,
}

impl Route {
    /// The route `route_key` selects (an unknown key is `$default`'s, as on API Gateway).
    pub fn from_route_key(route_key: &str) -> Route {
        match route_key {
            route_key::CONNECT => Route::Connect,
            route_key::DISCONNECT => Route::Disconnect,
            key => Action::from_route_key(key).map_or(Route::Default, Route::Action),
        }
    }

    /// The function that answers the route.
    pub fn function(self) -> Function {
        match self {
            Route::Connect => Function::Connect,
            Route::Disconnect => Function::Disconnect,
            Route::Action(Action::SendMessage) => Function::SendMessage,
            Route::Action(_) | Route::Default => Function::Default,
        }
    }
}

/// The seed's functions (ConnectHandler, DisconnectHandler, SendMessageHandler, DefaultHandler):
/// the Lambda binaries of `dynamowave-lambda`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Function {
    Connect,
    Disconnect,
    SendMessage,
    Default,
}

impl Function {
    pub const ALL: [Function; 4] = [Function::Connect, Function::Disconnect, Function::SendMessage, Function::Default];

    /// The binary's name (and the function's, locally).
    pub fn name(self) -> &'static str {
        match self {
            Function::Connect => "connect",
            Function::Disconnect => "disconnect",
            Function::SendMessage => "sendmessage",
            Function::Default => "default",
        }
    }
}

/// Every route key the chat has a route for, with its function.
pub fn routes() -> impl Iterator<Item = (&'static str, Function)> {
    [route_key::CONNECT, route_key::DISCONNECT, route_key::DEFAULT]
        .into_iter()
        .chain(ACTIONS.iter().copied())
        .map(|key| (key, Route::from_route_key(key).function()))
}

/// The chat's route table, each route to the integration `integration_of` gives for its
/// function (asked once per function).
pub fn route_table<E>(
    mut integration_of: impl FnMut(Function) -> Result<Arc<dyn Integration>, E>,
) -> Result<RouteTable, E> {
    let mut by_function = Vec::with_capacity(Function::ALL.len());
    for function in Function::ALL {
        by_function.push((function, integration_of(function)?));
    }
    let mut table = RouteTable::new();
    for (key, function) in routes() {
        if let Some((_, integration)) = by_function.iter().find(|(f, _)| *f == function) {
            table.insert(key, integration.clone());
        }
    }
    Ok(table)
}

/// The chat answered by `routes` (from [`route_table`]): the routes, with the chat's error
/// frames and web client.
pub fn chat(routes: RouteTable) -> App {
    App::new(routes).with_error_frames(Arc::new(ChatErrorFrames)).with_assets(WEB_CLIENT.to_vec())
}

/// The chat in this process: every route to the handlers on `deps`.
pub fn in_process(deps: ChatDeps) -> App {
    let handlers: Arc<dyn Integration> = Arc::new(InProcess(deps));
    let routes = route_table(|_| Ok::<_, std::convert::Infallible>(handlers.clone()));
    chat(routes.unwrap_or_else(|never| match never {}))
}

/// The gateway's error frames as the chat's clients read them: exactly API Gateway's under the
/// plain framing; under `dynamowave.v1` the same fields plus `type: "error"` and a `code`, like
/// every other error event.
pub struct ChatErrorFrames;

impl ErrorFrames for ChatErrorFrames {
    fn format(&self, frame: &ErrorFrame<'_>, subprotocol: Option<&str>) -> String {
        if subprotocol != Some(SUBPROTOCOL) {
            return frame.api_gateway_json().to_string();
        }
        serde_json::json!({
            "type": "error",
            "code": frame.kind.code(),
            "message": frame.message,
            "connectionId": frame.connection_id,
            "requestId": frame.request_id,
        })
        .to_string()
    }
}

/// The web client, at `/` (its page names the stage: [`Asset::STAGE`]).
pub const WEB_CLIENT: [Asset; 3] = [
    Asset { path: "/", content_type: "text/html; charset=utf-8", body: include_str!("../web/index.html") },
    Asset { path: "/app.js", content_type: "text/javascript; charset=utf-8", body: include_str!("../web/app.js") },
    Asset { path: "/app.css", content_type: "text/css; charset=utf-8", body: include_str!("../web/app.css") },
];

#[cfg(test)]
mod tests {
    use super::*;
    use dynamowave_apigw::ErrorKind;

    #[test]
    fn routes_map_to_the_templates_functions() {
        let function = |key: &str| routes().find(|(k, _)| *k == key).map(|(_, f)| f.name());
        assert_eq!(function("$connect"), Some("connect"));
        assert_eq!(function("$disconnect"), Some("disconnect"));
        assert_eq!(function("sendmessage"), Some("sendmessage"));
        assert_eq!(function("$default"), Some("default"));
        assert_eq!(function("join"), Some("default"));
        assert_eq!(function("whoami"), Some("default"));
        assert_eq!(routes().count(), 3 + ACTIONS.len());
        assert_eq!(Route::from_route_key("nosuch"), Route::Default);
    }

    #[test]
    fn error_frames_add_type_and_code_only_under_the_subprotocol() {
        let frame = ErrorFrame {
            kind: ErrorKind::Throttled,
            message: "Too Many Requests",
            connection_id: "c",
            request_id: "r",
        };
        let json = |s: String| serde_json::from_str::<serde_json::Value>(&s).expect("JSON");
        assert_eq!(
            json(ChatErrorFrames.format(&frame, None)),
            serde_json::json!({"message": "Too Many Requests", "connectionId": "c", "requestId": "r"})
        );
        assert_eq!(
            json(ChatErrorFrames.format(&frame, Some(SUBPROTOCOL))),
            serde_json::json!({"type": "error", "code": "throttled", "message": "Too Many Requests",
                "connectionId": "c", "requestId": "r"})
        );
    }
}
