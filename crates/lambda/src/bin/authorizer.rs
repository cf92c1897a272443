//! The `authorizer` function: the `$connect` REQUEST authorizer. Settings (and any secrets or
//! JWKS they name) are loaded once, at cold start.

use std::sync::Arc;

use anyhow::Context;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    dynamowave_lambda::telemetry::init_tracing();
    let sdk_config = dynamowave_aws::load_sdk_config().await;
    let settings =
        dynamowave_lambda::authorizer::load_settings(&sdk_config).await.context("loading the authorizer's settings")?;
    let origins = Arc::new(dynamowave_auth::AllowedOrigins::from_env().context("ALLOWED_ORIGINS")?);
    let settings = Arc::new(settings);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (settings, origins) = (Arc::clone(&settings), Arc::clone(&origins));
        async move { dynamowave_lambda::authorizer::authorize_event_refreshing(&settings, &origins, event.payload).await }
    }))
    .await
}
