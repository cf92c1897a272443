//! The app's static files (its web client), each at its path, with the stage written in.
//!
//! Every file goes out with security headers: a strict CSP (no inline script, no remote
//! origins) so that an escaping mistake in a page still cannot run injected code.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use dynamowave_apigw::Asset;

const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// `router` with a `GET` route for each asset; [`Asset::STAGE`] in a body becomes `stage`
/// (once, here, not per request).
pub(crate) fn serve_assets<S: Clone + Send + Sync + 'static>(
    mut router: Router<S>,
    assets: &[Asset],
    stage: &str,
) -> Router<S> {
    for asset in assets {
        let content_type = asset.content_type;
        let body = Bytes::from(asset.body.replace(Asset::STAGE, stage));
        router = router.route(asset.path, get(move || std::future::ready(response(content_type, body.clone()))));
    }
    router
}

fn response(content_type: &'static str, body: Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
