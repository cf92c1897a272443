//! DefaultHandler: what API Gateway routes to `$default` — non-JSON frames and unknown
//! actions. As in AWS's tutorial it answers with GetConnection's info:
//! `Use the sendmessage route to send a message. Your info: {...}`. A `$default` frame whose
//! `action` is one of the chat actions (an API deployed with only the tutorial's routes) is
//! handed to that action's handler.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use bytes::Bytes;

use super::{ChatDeps, HandlerResult, handle_action, post, response};
use crate::connections_api::{ConnectionsApiError, iso_time};
use crate::event::WebSocketEventExt;
use crate::model::Framing;
use crate::protocol::{Action, ServerEvent, action_of};

pub struct DefaultHandler;

pub(crate) const USE_SENDMESSAGE: &str = "Use the sendmessage route to send a message.";

impl DefaultHandler {
    pub async fn handle(deps: &ChatDeps, event: &ApiGatewayWebsocketProxyRequest) -> HandlerResult {
        let connection_id = event.connection_id()?;
        if let Some(action) = event.body.as_deref().and_then(action_of).as_deref().and_then(Action::from_route_key) {
            return handle_action(deps, event, action).await;
        }
        let info = match deps.connections_api.get_connection(connection_id).await {
            Ok(info) => info,
            Err(ConnectionsApiError::Gone) => return Ok(response(410, "Gone.")),
            Err(e) => return Err(e.into()),
        };
        let info_json = serde_json::json!({
            "ConnectedAt": iso_time(info.connected_at),
            "Identity": { "SourceIp": info.source_ip, "UserAgent": info.user_agent },
            "LastActiveAt": iso_time(info.last_active_at),
            "connectionID": connection_id,
        });
        let text = format!("{USE_SENDMESSAGE} Your info: {info_json}");
        let framing = deps.connections.get_connection(connection_id).await?.map(|c| c.framing);
        let frame = if framing == Some(Framing::Json) {
            ServerEvent::Error { code: "unknown_action", message: &text, action: None, id: None }.to_bytes()
        } else {
            Bytes::from(text)
        };
        post(deps, connection_id, frame).await?;
        Ok(response(200, "Default route answered."))
    }
}
