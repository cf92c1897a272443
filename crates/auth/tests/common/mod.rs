//! What the auth tests share: the fixtures' keys, tokens signed with them, and the authorizer's
//! `$connect` request.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const JWKS: &str = include_str!("../fixtures/jwks.json");
pub const RSA_PRIVATE: &[u8] = include_bytes!("../fixtures/rsa_private.pem");
pub const GOOD_SECRET: &str = "a-secret-of-exactly-32-bytes-ok!";

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

pub fn hs_token(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("test token encodes")
}

pub fn rsa_token(kid: &str, sub: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("fixture RSA key");
    jsonwebtoken::encode(&header, &json!({"sub": sub, "exp": now() + 60}), &key).expect("test token encodes")
}

/// The fixture's RSA key, under these kids (a key rotation keeps the algorithm, changes the kid).
pub fn jwks_with_kids(kids: &[&str]) -> String {
    let fixture: Value = serde_json::from_str(JWKS).expect("fixture JWKS");
    let rsa = fixture["keys"].as_array().and_then(|k| k.iter().find(|k| k["kty"] == "RSA")).expect("RSA key").clone();
    let keys: Vec<Value> = kids
        .iter()
        .map(|kid| {
            let mut key = rsa.clone();
            key["kid"] = json!(kid);
            key
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

pub fn connect_request(token: &str) -> ApiGatewayCustomAuthorizerRequestTypeRequest {
    serde_json::from_value(json!({
        "type": "REQUEST",
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abcdef/prod/$connect",
        "headers": {"Authorization": format!("Bearer {token}")},
        "queryStringParameters": {},
        "requestContext": {"routeKey": "$connect", "eventType": "CONNECT", "connectionId": "c1", "apiId": "abcdef", "stage": "prod"}
    }))
    .expect("authorizer request fixture parses")
}
