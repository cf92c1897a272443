//! ConnectHandler: registers the connection in the ConnectionsTable (seed: "Inserts connectionId
//! into ConnectionsTable"). Its answer decides the upgrade: 2xx accepts, anything else rejects
//! with that status. It also picks the framing: a client that offers the `dynamowave.v1`
//! subprotocol gets it echoed in the handshake (a response header, as on API Gateway).
//!
//! The connection's display name is claimed with the registration: an `anon-…` name, or the
//! token's name for its principal. A token's name that another principal holds refuses the
//! connection with 409 and the reason.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use http::HeaderValue;
use tracing::{debug, info, warn};

use super::{ChatDeps, HandlerResult, announce_presence, now_ms, response};
use crate::SUBPROTOCOL;
use crate::connections_api::ConnectionsApiError;
use crate::error::{StoreError, StoreResult};
use crate::event::{AUTH_NAME, AUTH_PRINCIPAL, WebSocketEventExt};
use crate::model::{ConnectionRecord, Framing};
use crate::names::{MAX_NAME_CHARS, validate_name};

pub struct ConnectHandler;

impl ConnectHandler {
    pub async fn handle(deps: &ChatDeps, event: &ApiGatewayWebsocketProxyRequest) -> HandlerResult {
        let connection_id = event.connection_id()?;
        let offered_json =
            event.header("sec-websocket-protocol").is_some_and(|p| p.split(',').any(|p| p.trim() == SUBPROTOCOL));
        let principal_id = event.authorizer_field(AUTH_PRINCIPAL);
        // The token's name wins; an invalid one falls back to an anonymous name rather than
        // refusing a connection the authorizer allowed.
        let token_name = event.authorizer_field(AUTH_NAME).filter(|n| validate_name(n).is_ok());
        let candidates = match &token_name {
            Some(n) => vec![n.clone()],
            None => anonymous_names(connection_id),
        };
        let connected_at =
            if event.request_context.connected_at > 0 { event.request_context.connected_at } else { now_ms() };
        let mut record = ConnectionRecord {
            connection_id: connection_id.to_string(),
            connected_at,
            source_ip: event.source_ip().to_string(),
            user_agent: event.user_agent().map(str::to_string),
            framing: if offered_json { Framing::Json } else { Framing::Plain },
            name: String::new(),
            principal_id,
            room: Some(deps.settings.default_room.clone()),
            expires_at: connected_at / 1000 + deps.settings.connection_ttl_secs,
        };
        let mut registered = false;
        for name in candidates {
            record.name = name;
            match claim(deps, || deps.connections.put_connection(&record), &record.name).await {
                Ok(()) => {
                    registered = true;
                    break;
                }
                Err(StoreError::Conflict(_)) => {
                    warn!(connection_id, "connection id already registered");
                    return Ok(response(409, "Failed to connect: connection id in use."));
                }
                // An anonymous name someone took with `setname`: try the next, longer one.
                Err(StoreError::NameTaken(_)) => {}
                Err(e) => {
                    warn!(connection_id, error = %e, "could not register connection");
                    return Ok(response(500, "Failed to connect."));
                }
            }
        }
        if !registered {
            // A token's name is its user's: another user holding it (two people, one display
            // name) is refused here rather than shown under a name that is not theirs.
            warn!(connection_id, name = %record.name, "display name held by another owner");
            return Ok(response(
                409,
                &format!("Failed to connect: the name {:?} is in use by someone else.", record.name),
            ));
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
/// distinct enough to tell people apart. Then longer tails, in case someone holds the short
/// name already (a `setname` to a future connection's name, or a look-alike of it).
fn anonymous_names(connection_id: &str) -> Vec<String> {
    let tail: String = connection_id.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let mut names: Vec<String> = Vec::new();
    for len in [6, 10, 16, MAX_NAME_CHARS - "anon-".len()] {
        let start = tail.len().saturating_sub(len);
        let name = format!("anon-{}", &tail[start..]);
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Runs `attempt` (a put or a rename that claims `name`). When another owner holds the name,
/// asks `@connections` about each holder first: holders that are gone (their `$disconnect`
/// never ran) are deleted, releasing the name, and the attempt is made once more.
pub(super) async fn claim<T, F, Fut>(deps: &ChatDeps, attempt: F, name: &str) -> StoreResult<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = StoreResult<T>>,
{
    match attempt().await {
        Err(StoreError::NameTaken(why)) => {
            let holders = deps.connections.name_holders(name).await?;
            let mut gone = Vec::new();
            for h in &holders {
                if matches!(deps.connections_api.get_connection(&h.connection_id).await, Err(ConnectionsApiError::Gone))
                {
                    gone.push(h.connection_id.clone());
                }
            }
            if gone.len() < holders.len() {
                return Err(StoreError::NameTaken(why));
            }
            // One by one (a few tabs at most): a delete releases the name as it goes.
            for id in &gone {
                debug!(name, connection_id = %id, "a holder of a name was gone; deleting it");
                deps.connections.delete_connection(id).await?;
            }
            attempt().await
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_names_grow_longer_and_stay_valid() {
        let names = anonymous_names("L0SM9cOFvHcCIhw=");
        assert_eq!(names, ["anon-HcCIhw", "anon-cOFvHcCIhw", "anon-L0SM9cOFvHcCIhw"]);
        let long = anonymous_names(&"x".repeat(64));
        assert_eq!(long.last().map(|n| n.chars().count()), Some(MAX_NAME_CHARS), "the longest still fits");
        assert!(names.iter().chain(&long).all(|n| validate_name(n).is_ok()), "{names:?} {long:?}");
        assert_eq!(anonymous_names("abc"), vec!["anon-abc"], "a short id gives one name");
    }
}
