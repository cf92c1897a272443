//! A test `bootstrap` built on `lambda_runtime`, for `dynamowave-lambda-host`'s tests and for
//! checking a local setup by hand.
//!
//! It answers each event with an API Gateway proxy response whose `body` is JSON:
//! `{"event": <the event>, "pid": .., "requestId": .., "functionArn": .., "deadlineMs": ..,
//! "env": {"TABLE_NAME": .., "AWS_LAMBDA_RUNTIME_API": .., ..}}`. The event's `echo` object can
//! ask for misbehaviour: `{"sleep_ms": N}` sleeps first, `{"fail": "msg"}` returns an error,
//! `{"panic": true}` panics (the runtime reports it as an error), `{"exit": N}` ends the process.
//! At start, `ECHO_INIT_DELAY_MS` delays the first poll and `ECHO_EXIT_AT_INIT=N` exits.

use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    if let Some(ms) = std::env::var("ECHO_INIT_DELAY_MS").ok().and_then(|v| v.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(code) = std::env::var("ECHO_EXIT_AT_INIT").ok().and_then(|v| v.parse().ok()) {
        eprintln!("echo-bootstrap: exiting at init with {code}, as asked");
        std::process::exit(code);
    }
    println!("echo-bootstrap: pid {} ready", std::process::id());
    lambda_runtime::run(service_fn(handle)).await
}

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, context) = event.into_parts();
    let ask = payload.get("echo").cloned().unwrap_or(Value::Null);
    if let Some(ms) = ask.get("sleep_ms").and_then(Value::as_u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(message) = ask.get("fail").and_then(Value::as_str) {
        return Err(message.into());
    }
    if ask.get("panic").and_then(Value::as_bool) == Some(true) {
        panic!("echo-bootstrap: panicking, as asked");
    }
    if let Some(code) = ask.get("exit").and_then(Value::as_i64) {
        println!("echo-bootstrap: exiting with {code}, as asked");
        std::process::exit(i32::try_from(code).unwrap_or(1));
    }
    let body = json!({
        "event": payload,
        "pid": std::process::id(),
        "requestId": context.request_id,
        "functionArn": context.invoked_function_arn,
        "deadlineMs": context.deadline,
        "env": {
            "TABLE_NAME": std::env::var("TABLE_NAME").ok(),
            "AWS_LAMBDA_FUNCTION_NAME": std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok(),
            "AWS_REGION": std::env::var("AWS_REGION").ok(),
            "_HANDLER": std::env::var("_HANDLER").ok(),
            "AWS_LAMBDA_RUNTIME_API": std::env::var("AWS_LAMBDA_RUNTIME_API").ok(),
        },
    });
    Ok(json!({"statusCode": 200, "body": body.to_string()}))
}
