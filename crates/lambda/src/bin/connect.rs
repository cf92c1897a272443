//! The `connect` function: the chat handlers behind the Lambda Runtime API (routing by
//! `routeKey` happens in `dynamowave_core::handle`, so every chat function runs the same code).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    dynamowave_lambda::run_chat_function().await
}
