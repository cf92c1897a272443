//! Each verification rule, against real keys made with `openssl` (tests/fixtures/README.md).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dynamowave_auth::{
    AuthError, AuthSettings, Claims, TokenRejection, authorize, mint_hs256, token_from, verify_token,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const SECRET: &str = "test-secret-0123456789abcdef-0123456789";
const JWKS: &str = include_str!("fixtures/jwks.json");
const RSA_PRIVATE: &[u8] = include_bytes!("fixtures/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("fixtures/rsa_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("fixtures/ec_private.pem");

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn hs_settings() -> AuthSettings {
    AuthSettings::default().with_hs256_secret(SECRET.to_owned())
}

fn jwks_settings() -> AuthSettings {
    AuthSettings::default().with_jwks_json(JWKS).expect("fixture JWKS loads")
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("test token encodes")
}

fn hs(claims: &Value) -> String {
    sign(Algorithm::HS256, None, &EncodingKey::from_secret(SECRET.as_bytes()), claims)
}

fn rejection(result: Result<Claims, AuthError>) -> TokenRejection {
    match result {
        Err(AuthError::InvalidToken(r)) => r,
        other => panic!("expected an invalid-token error, got {other:?}"),
    }
}

#[test]
fn valid_hs256_token_yields_sub_and_name() {
    let token = hs(&json!({"sub": "user-1", "name": "Ada", "exp": now() + 60}));
    let claims = verify_token(&hs_settings(), &token).expect("valid");
    assert_eq!(claims, Claims { principal_id: "user-1".into(), name: Some("Ada".into()) });
}

#[test]
fn preferred_username_is_the_fallback_name() {
    let token = hs(&json!({"sub": "u", "preferred_username": "ada", "exp": now() + 60}));
    assert_eq!(verify_token(&hs_settings(), &token).expect("valid").name.as_deref(), Some("ada"));
}

#[test]
fn minted_token_verifies_with_audience_and_issuer() {
    let settings = hs_settings().with_audience(vec!["chat".into()]).with_issuer(vec!["me".into()]);
    let token =
        mint_hs256(SECRET, "user-2", Some("Bob"), Duration::from_secs(60), Some("chat"), Some("me")).expect("mint");
    let claims = verify_token(&settings, &token).expect("valid");
    assert_eq!(claims.principal_id, "user-2");
    assert_eq!(claims.name.as_deref(), Some("Bob"));
    assert!(matches!(mint_hs256("", "u", None, Duration::from_secs(1), None, None), Err(AuthError::Mint(_))));
}

#[test]
fn alg_none_is_refused() {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(json!({"sub": "mallory", "exp": now() + 60}).to_string());
    for token in [format!("{header}.{payload}."), format!("{header}.{payload}.c2ln")] {
        assert_eq!(rejection(verify_token(&hs_settings(), &token)), TokenRejection::AlgNone);
        assert_eq!(rejection(verify_token(&jwks_settings(), &token)), TokenRejection::AlgNone);
    }
}

#[test]
fn expired_token_is_refused_but_leeway_applies() {
    let token = hs(&json!({"sub": "u", "exp": now() - 120}));
    assert_eq!(rejection(verify_token(&hs_settings(), &token)), TokenRejection::Expired);
    let slightly = hs(&json!({"sub": "u", "exp": now() - 5}));
    assert!(verify_token(&hs_settings(), &slightly).is_ok(), "within the 30 s default leeway");
    let strict = hs_settings().with_leeway(Duration::ZERO);
    assert_eq!(rejection(verify_token(&strict, &slightly)), TokenRejection::Expired);
}

#[test]
fn exp_is_required() {
    let token = hs(&json!({"sub": "u"}));
    assert_eq!(rejection(verify_token(&hs_settings(), &token)), TokenRejection::MissingClaim("exp".into()));
}

#[test]
fn sub_is_required() {
    let token = hs(&json!({"exp": now() + 60}));
    assert_eq!(rejection(verify_token(&hs_settings(), &token)), TokenRejection::MissingClaim("sub".into()));
}

#[test]
fn not_yet_valid_token_is_refused() {
    let token = hs(&json!({"sub": "u", "exp": now() + 600, "nbf": now() + 300}));
    assert_eq!(rejection(verify_token(&hs_settings(), &token)), TokenRejection::NotYetValid);
}

#[test]
fn wrong_audience_is_refused_with_403() {
    let settings = hs_settings().with_audience(vec!["chat".into(), "chat-dev".into()]);
    let ok = hs(&json!({"sub": "u", "exp": now() + 60, "aud": ["other", "chat-dev"]}));
    assert!(verify_token(&settings, &ok).is_ok());
    let wrong = hs(&json!({"sub": "u", "exp": now() + 60, "aud": "other"}));
    let err = verify_token(&settings, &wrong).expect_err("wrong audience");
    assert!(matches!(err, AuthError::InvalidToken(TokenRejection::WrongAudience)));
    assert_eq!(err.status_code(), 403);
    let missing = hs(&json!({"sub": "u", "exp": now() + 60}));
    assert_eq!(rejection(verify_token(&settings, &missing)), TokenRejection::MissingClaim("aud".into()));
}

#[test]
fn audience_is_ignored_when_not_configured() {
    let token = hs(&json!({"sub": "u", "exp": now() + 60, "aud": "anything"}));
    assert!(verify_token(&hs_settings(), &token).is_ok());
}

#[test]
fn wrong_issuer_is_refused() {
    let settings = hs_settings().with_issuer(vec!["https://issuer.example".into()]);
    let wrong = hs(&json!({"sub": "u", "exp": now() + 60, "iss": "https://evil.example"}));
    assert_eq!(rejection(verify_token(&settings, &wrong)), TokenRejection::WrongIssuer);
    let missing = hs(&json!({"sub": "u", "exp": now() + 60}));
    assert_eq!(rejection(verify_token(&settings, &missing)), TokenRejection::MissingClaim("iss".into()));
}

#[test]
fn bad_signature_is_refused_with_401() {
    let token = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(b"another-secret"),
        &json!({"sub": "u", "exp": now() + 60}),
    );
    let err = verify_token(&hs_settings(), &token).expect_err("bad signature");
    assert!(matches!(err, AuthError::InvalidToken(TokenRejection::BadSignature)));
    assert_eq!(err.status_code(), 401);
    // A tampered payload under a valid signature fails too.
    let good = hs(&json!({"sub": "u", "exp": now() + 60}));
    let parts: Vec<&str> = good.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(json!({"sub": "admin", "exp": now() + 60}).to_string());
    let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
    assert_eq!(rejection(verify_token(&hs_settings(), &tampered)), TokenRejection::BadSignature);
}

#[test]
fn rs256_via_jwks() {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("fixture RSA key");
    let token = sign(Algorithm::RS256, Some("rsa-test-1"), &key, &json!({"sub": "rsa-user", "exp": now() + 60}));
    assert_eq!(verify_token(&jwks_settings(), &token).expect("valid").principal_id, "rsa-user");
    // Without a kid, the key is found by algorithm.
    let no_kid = sign(Algorithm::RS256, None, &key, &json!({"sub": "rsa-user", "exp": now() + 60}));
    assert!(verify_token(&jwks_settings(), &no_kid).is_ok());
    let unknown = sign(Algorithm::RS256, Some("nope"), &key, &json!({"sub": "u", "exp": now() + 60}));
    assert_eq!(rejection(verify_token(&jwks_settings(), &unknown)), TokenRejection::UnknownKey("nope".into()));
}

#[test]
fn es256_via_jwks() {
    let key = EncodingKey::from_ec_pem(EC_PRIVATE).expect("fixture EC key");
    let token = sign(Algorithm::ES256, Some("ec-test-1"), &key, &json!({"sub": "ec-user", "exp": now() + 60}));
    assert_eq!(verify_token(&jwks_settings(), &token).expect("valid").principal_id, "ec-user");
    // An ES256 token naming the RSA key's kid is refused by algorithm, not tried.
    let wrong_kid = sign(Algorithm::ES256, Some("rsa-test-1"), &key, &json!({"sub": "u", "exp": now() + 60}));
    assert!(matches!(
        rejection(verify_token(&jwks_settings(), &wrong_kid)),
        TokenRejection::AlgorithmNotAllowed { .. }
    ));
}

#[test]
fn hs256_signed_with_the_public_rsa_key_is_refused() {
    // The classic confusion attack: use the (public) RSA key as an HMAC secret.
    let key = EncodingKey::from_secret(RSA_PUBLIC);
    let token = sign(Algorithm::HS256, Some("rsa-test-1"), &key, &json!({"sub": "mallory", "exp": now() + 60}));
    assert!(matches!(
        rejection(verify_token(&jwks_settings(), &token)),
        TokenRejection::AlgorithmNotAllowed { ref alg, .. } if alg == "HS256"
    ));
    // With an HMAC secret also configured, it is checked against that secret only, and fails.
    let both = jwks_settings().with_hs256_secret(SECRET.to_owned());
    assert_eq!(rejection(verify_token(&both, &token)), TokenRejection::BadSignature);
}

#[test]
fn rs256_token_is_refused_when_only_a_secret_is_configured() {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("fixture RSA key");
    let token = sign(Algorithm::RS256, None, &key, &json!({"sub": "u", "exp": now() + 60}));
    assert!(matches!(rejection(verify_token(&hs_settings(), &token)), TokenRejection::AlgorithmNotAllowed { .. }));
}

#[test]
fn garbage_is_malformed() {
    for token in ["", "abc", "a.b", "a.b.c.d", "!!!.e30.sig"] {
        assert!(matches!(rejection(verify_token(&hs_settings(), token)), TokenRejection::Malformed(_)), "{token}");
    }
}

#[test]
fn not_configured_is_an_error() {
    let settings = AuthSettings::default();
    assert!(!settings.is_enabled());
    assert!(matches!(verify_token(&settings, "a.b.c"), Err(AuthError::NotConfigured)));
}

#[test]
fn token_from_query_then_bearer_header() {
    let mut headers = http::HeaderMap::new();
    let mut query = HashMap::new();
    assert_eq!(token_from(&headers, &query), None);
    headers.insert(http::header::AUTHORIZATION, "Bearer  abc.def.ghi ".parse().expect("header"));
    assert_eq!(token_from(&headers, &query).as_deref(), Some("abc.def.ghi"));
    headers.insert(http::header::AUTHORIZATION, "Basic dXNlcjpwYXNz".parse().expect("header"));
    assert_eq!(token_from(&headers, &query), None);
    headers.insert(http::header::AUTHORIZATION, "bearer x.y.z".parse().expect("header"));
    query.insert("token".to_owned(), "q.q.q".to_owned());
    assert_eq!(token_from(&headers, &query).as_deref(), Some("q.q.q"));
    query.insert("token".to_owned(), String::new());
    assert_eq!(token_from(&headers, &query).as_deref(), Some("x.y.z"));
}

#[test]
fn from_env_reads_every_setting_and_rejects_bad_values() {
    let env = HashMap::from([
        ("JWT_SECRET", SECRET),
        ("JWKS_JSON", JWKS),
        ("JWT_AUDIENCE", "chat, chat-dev"),
        ("JWT_ISSUER", "me"),
        ("JWT_LEEWAY_SECS", "0"),
        ("ORIGIN_VERIFY_SECRET", "cdn-secret"),
    ]);
    let settings = AuthSettings::from_lookup(|k| env.get(k).map(|v| v.to_string())).expect("settings");
    assert!(settings.is_enabled());
    let debug = format!("{settings:?}");
    assert!(!debug.contains(SECRET) && !debug.contains("cdn-secret"), "secrets leak into Debug: {debug}");
    assert!(debug.contains("chat-dev") && debug.contains("rsa-test-1"));
    let token = mint_hs256(SECRET, "u", None, Duration::from_secs(60), Some("chat-dev"), Some("me")).expect("mint");
    assert!(verify_token(&settings, &token).is_ok());

    let empty = AuthSettings::from_lookup(|_| Some(String::new())).expect("empty means unset");
    assert!(!empty.is_enabled());
    let bad = |k: &'static str, v: &'static str| AuthSettings::from_lookup(move |n| (n == k).then(|| v.to_owned()));
    assert!(matches!(bad("JWKS_JSON", "{not json"), Err(AuthError::Config(_))));
    assert!(matches!(bad("JWKS_JSON", r#"{"keys": []}"#), Err(AuthError::Config(_))));
    assert!(matches!(
        bad("JWKS_JSON", r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#),
        Err(AuthError::Config(m)) if m.contains("oct")
    ));
    assert!(matches!(bad("JWT_LEEWAY_SECS", "soon"), Err(AuthError::Config(_))));
}

fn connect_request(headers: &[(&str, &str)], query: &[(&str, &str)]) -> ApiGatewayCustomAuthorizerRequestTypeRequest {
    let headers: serde_json::Map<String, Value> = headers.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let query: serde_json::Map<String, Value> = query.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    serde_json::from_value(json!({
        "type": "REQUEST",
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abcdef/prod/$connect",
        "headers": headers,
        "queryStringParameters": query,
        "requestContext": {"routeKey": "$connect", "eventType": "CONNECT", "connectionId": "c1", "apiId": "abcdef", "stage": "prod"}
    }))
    .expect("authorizer request fixture parses")
}

#[test]
fn authorize_allows_with_policy_and_context() {
    let token = mint_hs256(SECRET, "user-9", Some("Nine"), Duration::from_secs(60), None, None).expect("mint");
    let response = authorize(&hs_settings(), &connect_request(&[], &[("token", &token)])).expect("allowed");
    let json = serde_json::to_value(&response).expect("serializes");
    assert_eq!(json["principalId"], "user-9");
    assert_eq!(json["policyDocument"]["Version"], "2012-10-17");
    let statement = &json["policyDocument"]["Statement"][0];
    assert_eq!(statement["Effect"], "Allow");
    assert_eq!(statement["Action"], json!(["execute-api:Invoke"]));
    assert_eq!(statement["Resource"], json!(["arn:aws:execute-api:us-east-1:123456789012:abcdef/prod/$connect"]));
    assert_eq!(json["context"], json!({"principalId": "user-9", "name": "Nine"}));
}

#[test]
fn authorize_distinguishes_missing_invalid_and_origin() {
    let settings = hs_settings().with_origin_secret("cdn-secret".into());
    let token = mint_hs256(SECRET, "u", None, Duration::from_secs(60), None, None).expect("mint");
    let bearer = format!("Bearer {token}");

    let ok =
        authorize(&settings, &connect_request(&[("X-Origin-Verify", "cdn-secret"), ("Authorization", &bearer)], &[]));
    assert_eq!(ok.expect("allowed").principal_id.as_deref(), Some("u"));

    let no_origin = authorize(&settings, &connect_request(&[("Authorization", &bearer)], &[])).expect_err("no origin");
    assert!(matches!(no_origin, AuthError::OriginMismatch));
    assert_eq!(no_origin.status_code(), 403);
    let wrong_origin =
        authorize(&settings, &connect_request(&[("X-Origin-Verify", "guess"), ("Authorization", &bearer)], &[]));
    assert!(matches!(wrong_origin, Err(AuthError::OriginMismatch)));

    let missing =
        authorize(&settings, &connect_request(&[("X-Origin-Verify", "cdn-secret")], &[])).expect_err("missing");
    assert!(matches!(missing, AuthError::MissingToken));
    assert_eq!(missing.status_code(), 401);
    assert!(missing.to_string().contains("Authorization: Bearer"));

    let invalid = authorize(&settings, &connect_request(&[("X-Origin-Verify", "cdn-secret")], &[("token", "a.b.c")]))
        .expect_err("x");
    assert!(matches!(invalid, AuthError::InvalidToken(TokenRejection::Malformed(_))));

    let origin_only = AuthSettings::default().with_origin_secret("cdn-secret".into());
    assert!(origin_only.is_enabled());
    let anon = authorize(&origin_only, &connect_request(&[("X-Origin-Verify", "cdn-secret")], &[])).expect("allowed");
    assert_eq!(anon.principal_id.as_deref(), Some("anonymous"));
}
