//! ConnectHandler: registers the connection in the ConnectionsTable (seed: "Inserts connectionId
//! into ConnectionsTable"). Its answer decides the upgrade: 2xx accepts, anything else rejects
//! with that status. It also picks the framing: a client that offers the `dynamowave.v1`
//! subprotocol gets it echoed in the handshake (a response header, as on API Gateway).

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use http::HeaderValue;
use tracing::{info, warn};

use super::{ChatDeps, announce_presence, now_ms, response};
use crate::SUBPROTOCOL;
use crate::error::{HandlerError, StoreError};
use crate::event::{AUTH_NAME, AUTH_PRINCIPAL, WebSocketEventExt};
use crate::model::{ConnectionRecord, Framing};
use crate::names::validate_name;

pub struct ConnectHandler;

impl ConnectHandler {
    pub async fn handle(
        deps: &ChatDeps,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        let connection_id = event.connection_id()?;
        let offered_json =
            event.header("sec-websocket-protocol").is_some_and(|p| p.split(',').any(|p| p.trim() == SUBPROTOCOL));
        let principal_id = event.authorizer_field(AUTH_PRINCIPAL);
        // The token's name wins; an invalid one falls back to an anonymous name rather than
        // refusing a connection the authorizer allowed.
        let name = event
            .authorizer_field(AUTH_NAME)
            .filter(|n| validate_name(n).is_ok())
            .unwrap_or_else(|| anonymous_name(connection_id));
        let connected_at =
            if event.request_context.connected_at > 0 { event.request_context.connected_at } else { now_ms() };
        let record = ConnectionRecord {
            connection_id: connection_id.to_string(),
            connected_at,
            source_ip: event.source_ip().to_string(),
            user_agent: event.user_agent().map(str::to_string),
            framing: if offered_json { Framing::Json } else { Framing::Plain },
            name,
            principal_id,
            room: Some(deps.settings.default_room.clone()),
            expires_at: connected_at / 1000 + deps.settings.connection_ttl_secs,
        };
        match deps.connections.put_connection(&record).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                warn!(connection_id, "connection id already registered");
                return Ok(response(409, "Failed to connect: connection id in use."));
            }
            Err(e) => {
                warn!(connection_id, error = %e, "could not register connection");
                return Ok(response(500, "Failed to connect."));
            }
        }
        info!(connection_id, name = %record.name, framing = ?record.framing, "connected");
        // Others in the room may hear of it; the new connection itself cannot be posted to
        // until the upgrade completes (API Gateway answers 410 then).
        announce_presence(deps, &deps.settings.default_room, &record, "join").await?;
        let mut r = response(200, "Connected.");
        if offered_json {
            r.headers.insert("sec-websocket-protocol", HeaderValue::from_static(SUBPROTOCOL));
        }
        Ok(r)
    }
}

/// `anon-` and the last six characters of the connection id: stable for the connection,
/// distinct enough to tell people apart.
fn anonymous_name(connection_id: &str) -> String {
    let tail: String = connection_id.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let start = tail.len().saturating_sub(6);
    format!("anon-{}", &tail[start..])
}
