//! What an app gives the gateway besides its routes: how the gateway's own error frames look to
//! its clients, and the static files it serves (a web client).

use std::sync::Arc;

use crate::routes::RouteTable;

/// An app behind the gateway.
pub struct App {
    pub routes: RouteTable,
    /// How the frames the gateway itself sends on a failed message look.
    pub error_frames: Arc<dyn ErrorFrames>,
    /// Files served at their paths on the gateway's listener.
    pub assets: Vec<Asset>,
}

impl App {
    /// An app of these routes, with API Gateway's error frames and no assets.
    pub fn new(routes: RouteTable) -> Self {
        Self { routes, error_frames: Arc::new(ApiGatewayErrorFrames), assets: Vec::new() }
    }

    pub fn with_error_frames(mut self, error_frames: Arc<dyn ErrorFrames>) -> Self {
        self.error_frames = error_frames;
        self
    }

    pub fn with_assets(mut self, assets: Vec<Asset>) -> Self {
        self.assets = assets;
        self
    }
}

/// Why the gateway answers a message with an error frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A throttle or the route's reserved concurrency said no.
    Throttled,
    /// The integration failed.
    InternalError,
}

impl ErrorKind {
    /// A stable snake_case name, for apps that give their clients error codes.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Throttled => "throttled",
            ErrorKind::InternalError => "internal_error",
        }
    }
}

/// The frame the gateway sends when a message got no answer from its route.
#[derive(Clone, Copy, Debug)]
pub struct ErrorFrame<'a> {
    pub kind: ErrorKind,
    pub message: &'a str,
    pub connection_id: &'a str,
    pub request_id: &'a str,
}

impl ErrorFrame<'_> {
    /// API Gateway's own shape: `{"message", "connectionId", "requestId"}`.
    pub fn api_gateway_json(&self) -> serde_json::Value {
        serde_json::json!({"message": self.message, "connectionId": self.connection_id, "requestId": self.request_id})
    }
}

/// How an app's clients are told of a [`ErrorFrame`].
pub trait ErrorFrames: Send + Sync {
    /// The text frame for `frame`, given the subprotocol `$connect` selected (its
    /// `Sec-WebSocket-Protocol` answer), if any.
    fn format(&self, frame: &ErrorFrame<'_>, subprotocol: Option<&str>) -> String;
}

/// API Gateway's error frames, whatever the subprotocol.
pub struct ApiGatewayErrorFrames;

impl ErrorFrames for ApiGatewayErrorFrames {
    fn format(&self, frame: &ErrorFrame<'_>, _subprotocol: Option<&str>) -> String {
        frame.api_gateway_json().to_string()
    }
}

/// A static file: `GET {path}` answers `body` as `content_type`, with [`Asset::STAGE`] in it
/// replaced by the gateway's stage.
#[derive(Clone, Copy, Debug)]
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

impl Asset {
    /// Where the stage goes in an asset's body (e.g. the WebSocket URL of a web client).
    pub const STAGE: &'static str = "{{STAGE}}";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_gateways_error_frame_has_exactly_its_three_fields() {
        let frame = ErrorFrame {
            kind: ErrorKind::InternalError,
            message: "Internal server error",
            connection_id: "c",
            request_id: "r",
        };
        let v: serde_json::Value =
            serde_json::from_str(&ApiGatewayErrorFrames.format(&frame, Some("x"))).expect("JSON");
        assert_eq!(v, serde_json::json!({"message": "Internal server error", "connectionId": "c", "requestId": "r"}));
    }
}
