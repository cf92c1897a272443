//! The per-invocation functions against moto: a warm-up touches no table, a real `$connect`
//! does (so the warm-up check can fail), and the authorizer answers `Unauthorized` exactly.

use std::time::Duration;

use dynamowave_auth::{AuthSettings, mint_hs256};
use dynamowave_aws::{ConnectionsApiPool, DynamoDbSettings, DynamoDbStore};
use dynamowave_core::ChatSettings;
use dynamowave_lambda::authorizer::authorize_event;
use dynamowave_lambda::{ChatRuntime, FunctionError};
use dynamowave_testkit::events;
use dynamowave_testkit::moto::{count, moto_store};
use serde_json::{Value, json};

async fn counts(store: &DynamoDbStore) -> [i32; 3] {
    let t = store.tables();
    let mut out = [0; 3];
    for (i, table) in [&t.connections, &t.messages, &t.rooms].into_iter().enumerate() {
        out[i] = count(store.client(), table).await;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmup_touches_nothing_and_real_events_write() {
    let rig = moto_store(DynamoDbSettings::default()).await;
    let store = rig.store.clone();
    // moto serves `@connections` under `/{stage}/@connections/{id}`, as the local gateway does.
    let pool = ConnectionsApiPool::new(rig.config.clone(), Some(format!("{}/{{stage}}", rig.moto.url)));
    let runtime = ChatRuntime::new(store.clone(), pool, ChatSettings::default());

    assert_eq!(counts(&store).await, [0, 0, 0], "fresh tables");
    let answer = runtime.invoke(json!({ "warmup": true })).await.expect("warm-up");
    assert_eq!(answer, json!({ "warm": true }));
    assert_eq!(counts(&store).await, [0, 0, 0], "a warm-up writes nothing");

    let connect = runtime.invoke(events::websocket("$connect", "conn-1=", None)).await.expect("$connect");
    assert_eq!(connect["statusCode"], 200, "{connect}");
    assert_eq!(counts(&store).await[0], 1, "$connect registers the connection");

    let body = r#"{"action":"sendmessage","message":"hello, everyone!"}"#;
    let sent = runtime.invoke(events::websocket("sendmessage", "conn-1=", Some(body))).await.expect("sendmessage");
    assert_eq!(sent["statusCode"], 200, "{sent}");
    assert_eq!(counts(&store).await[1], 1, "sendmessage stores the message");

    let gone = runtime.invoke(events::websocket("$disconnect", "conn-1=", None)).await.expect("$disconnect");
    assert_eq!(gone["statusCode"], 200, "{gone}");
    assert_eq!(counts(&store).await[0], 0, "$disconnect removes the connection");

    // Neither a warm-up nor a WebSocket event: a Lambda error (API Gateway would report it as
    // "Internal server error"), and still nothing written.
    let err = runtime.invoke(json!({ "warmup": "yes" })).await.expect_err("a non-event must fail");
    assert!(matches!(err, FunctionError::BadEvent(_)), "{err}");
    assert_eq!(counts(&store).await, [0, 1, 1], "only the message and its room meta remain");
}

fn authorizer_event(token: Option<&str>) -> Value {
    let mut query = serde_json::Map::new();
    if let Some(t) = token {
        query.insert("token".into(), json!(t));
    }
    json!({
        "type": "REQUEST",
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:api/production/$connect",
        "headers": {},
        "queryStringParameters": query,
        "requestContext": { "routeKey": "$connect", "eventType": "CONNECT", "requestId": "r1", "stage": "production" }
    })
}

#[test]
fn authorizer_allows_a_good_token_and_answers_unauthorized_otherwise() {
    let secret = "a-test-secret-of-enough-length-0123456789";
    let settings = AuthSettings::default().with_hs256_secret(secret.to_string());
    let token = mint_hs256(secret, "user-1", Some("alice"), Duration::from_secs(300), None, None).expect("mint");

    let allowed = authorize_event(&settings, authorizer_event(Some(&token))).expect("a good token is allowed");
    assert_eq!(allowed["policyDocument"]["Statement"][0]["Effect"], "Allow", "{allowed}");
    assert_eq!(allowed["principalId"], "user-1");

    let refused = authorize_event(&settings, authorizer_event(None)).expect_err("no token");
    assert_eq!(refused.to_string(), "Unauthorized", "API Gateway answers 401 only for exactly this message");
    let diagnostic: lambda_runtime::Diagnostic = refused.into();
    assert_eq!(diagnostic.error_message, "Unauthorized");
    assert!(authorize_event(&settings, authorizer_event(Some("not.a.jwt"))).is_err(), "a forged token");
    assert_eq!(authorize_event(&settings, json!({ "warmup": true })).expect("warm"), json!({ "warm": true }));
}
