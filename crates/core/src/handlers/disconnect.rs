//! DisconnectHandler: removes the connection from the ConnectionsTable. API Gateway runs
//! `$disconnect` best-effort after the socket is closed, so nothing can be sent to the client.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use tracing::info;

use super::{ChatDeps, HandlerResult, announce_presence, response};
use crate::event::WebSocketEventExt;

pub struct DisconnectHandler;

impl DisconnectHandler {
    pub async fn handle(deps: &ChatDeps, event: &ApiGatewayWebsocketProxyRequest) -> HandlerResult {
        let connection_id = event.connection_id()?;
        let old = deps.connections.delete_connection(connection_id).await?;
        // The rooms it belonged to count no more (the store's record would lapse by TTL anyway).
        deps.messages.release_rooms(connection_id).await?;
        info!(
            connection_id,
            status = ?event.request_context.disconnect_status_code,
            reason = event.request_context.disconnect_reason.as_deref().unwrap_or(""),
            "disconnected"
        );
        if let Some(record) = old
            && let Some(room) = &record.room
        {
            announce_presence(deps, room, &record, "leave").await?;
        }
        Ok(response(200, "Disconnected."))
    }
}
