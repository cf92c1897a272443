//! API Gateway's error body for the gateway's own HTTP answers: `{"message": …}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

pub(crate) fn gateway_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "message": message }))).into_response()
}
