//! The `warmer` function: invoked on a schedule, warms every function in `WARM_FUNCTIONS`.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    dynamowave_lambda::telemetry::init_tracing();
    let sdk_config = dynamowave_aws::load_sdk_config().await;
    let client = aws_sdk_lambda::Client::new(&sdk_config);
    let functions = dynamowave_lambda::warmer::functions_from_env();
    if functions.is_empty() {
        tracing::warn!("WARM_FUNCTIONS is empty: nothing to warm");
    }
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| {
        let client = client.clone();
        let functions = functions.clone();
        async move {
            let results = dynamowave_lambda::warmer::warm_all(&client, &functions).await;
            serde_json::to_value(results).map_err(lambda_runtime::Error::from)
        }
    }))
    .await
}
