//! Short HS256 secrets and JWKS key rotation (token values in logs: `log_injection.rs`).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{GOOD_SECRET, connect_request, hs_token, jwks_with_kids, now, rsa_token};
use dynamowave_auth::{
    AuthError, AuthSettings, MIN_HS256_SECRET_BYTES, TokenRejection, authorize, authorize_refreshing,
    check_hs256_secret, mint_hs256, verify_token, verify_token_refreshing,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn hs256_secrets_shorter_than_32_bytes_are_refused_everywhere() {
    assert_eq!(GOOD_SECRET.len(), MIN_HS256_SECRET_BYTES);
    let short = &GOOD_SECRET[..31];
    assert!(check_hs256_secret(GOOD_SECRET).is_ok());
    assert!(matches!(check_hs256_secret(short), Err(AuthError::Config(m)) if m.contains("32")));

    // From the environment (the authorizer Lambda): a configuration error at start.
    let from_env = AuthSettings::from_lookup(|k| (k == "JWT_SECRET").then(|| short.to_owned()));
    assert!(matches!(from_env, Err(AuthError::Config(m)) if m.contains("JWT_SECRET")));
    assert!(AuthSettings::from_lookup(|k| (k == "JWT_SECRET").then(|| GOOD_SECRET.to_owned())).is_ok());

    // Built by hand: `validate` says no, and no token verifies, even one signed with it.
    let weak = AuthSettings::default().with_hs256_secret(short.to_owned());
    assert!(matches!(weak.validate(), Err(AuthError::Config(_))));
    let token = hs_token(short, &json!({"sub": "u", "exp": now() + 60}));
    assert!(matches!(
        verify_token(&weak, &token),
        Err(AuthError::InvalidToken(TokenRejection::AlgorithmNotAllowed { .. }))
    ));
    assert!(AuthSettings::default().with_hs256_secret(GOOD_SECRET.to_owned()).validate().is_ok());

    // Minting (`dynamowave token`) refuses too.
    assert!(
        matches!(mint_hs256(short, "u", None, Duration::from_secs(60), None, None), Err(AuthError::Mint(m)) if m.contains("32"))
    );
    let minted = mint_hs256(GOOD_SECRET, "u", None, Duration::from_secs(60), None, None).expect("mint");
    let good = AuthSettings::default().with_hs256_secret(GOOD_SECRET.to_owned());
    assert_eq!(verify_token(&good, &minted).expect("valid").principal_id, "u");
}

/// A JWKS endpoint whose document the test can change; counts the fetches.
struct JwksServer {
    url: String,
    document: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

async fn jwks_server(initial: String) -> JwksServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().expect("addr"));
    let document = Arc::new(Mutex::new(initial));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (doc, count) = (document.clone(), fetches.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (doc, count) = (doc.clone(), count.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                let body = doc.lock().expect("document").clone();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    JwksServer { url, document, fetches }
}

#[tokio::test]
async fn a_jwks_document_over_the_limit_is_refused_and_one_under_it_is_read() {
    let keys = jwks_with_kids(&["key-1"]);
    // Valid JSON either way: the padding is white space before the closing brace.
    let padded = |total: usize| format!("{}{}}}", &keys[..keys.len() - 1], " ".repeat(total - keys.len()));
    let over = jwks_server(padded(dynamowave_auth::MAX_JWKS_BYTES + 1)).await;
    let err = AuthSettings::default().with_jwks_url(&over.url).await.expect_err("an oversized JWKS is refused");
    assert!(err.to_string().contains("at most"), "{err}");
    let under = jwks_server(padded(dynamowave_auth::MAX_JWKS_BYTES)).await;
    AuthSettings::default().with_jwks_url(&under.url).await.expect("a JWKS at the limit is read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_refetches_the_jwks_at_most_once_per_interval() {
    let server = jwks_server(jwks_with_kids(&["key-1"])).await;
    let settings = AuthSettings::default()
        .with_jwks_refetch_interval(Duration::from_secs(30))
        .with_jwks_url(&server.url)
        .await
        .expect("the JWKS loads");
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);
    assert_eq!(
        verify_token_refreshing(&settings, &rsa_token("key-1", "ada")).await.expect("key-1").principal_id,
        "ada"
    );
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1, "a known kid fetches nothing");

    // The provider rotates to key-2: the first token with it triggers one refetch and passes.
    *server.document.lock().expect("document") = jwks_with_kids(&["key-2"]);
    let rotated = rsa_token("key-2", "bob");
    assert!(matches!(verify_token(&settings, &rotated), Err(AuthError::InvalidToken(TokenRejection::UnknownKey(_)))));
    let allowed = authorize_refreshing(&settings, &connect_request(&rotated)).await.expect("the rotated key passes");
    assert_eq!(allowed.principal_id.as_deref(), Some("bob"));
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
    // The dropped key is no longer accepted.
    assert!(matches!(
        verify_token_refreshing(&settings, &rsa_token("key-1", "ada")).await,
        Err(AuthError::InvalidToken(TokenRejection::UnknownKey(_)))
    ));

    // Made-up kids within the interval cost no fetch at all.
    *server.document.lock().expect("document") = jwks_with_kids(&["key-3"]);
    for i in 0..20 {
        let forged = rsa_token(&format!("made-up-{i}"), "mallory");
        assert!(authorize_refreshing(&settings, &connect_request(&forged)).await.is_err());
    }
    assert!(verify_token_refreshing(&settings, &rsa_token("key-3", "cy")).await.is_err(), "too soon to refetch");
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2, "at most one refetch per interval");

    // Once the interval has passed (a short one here), the next unknown kid refetches again.
    let quick = settings.clone().with_jwks_refetch_interval(Duration::from_millis(200));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(verify_token_refreshing(&quick, &rsa_token("key-3", "cy")).await.expect("key-3").principal_id, "cy");
    assert_eq!(server.fetches.load(Ordering::SeqCst), 3);
    // The plain, synchronous path never fetches.
    assert!(authorize(&settings, &connect_request(&rsa_token("key-4", "dee"))).is_err());
    assert_eq!(server.fetches.load(Ordering::SeqCst), 3);

    // A URL that serves no JWKS is an error at start.
    *server.document.lock().expect("document") = "not json".to_owned();
    assert!(matches!(AuthSettings::default().with_jwks_url(&server.url).await, Err(AuthError::Config(_))));
}

#[test]
fn from_env_reads_the_refetch_interval() {
    let ok = AuthSettings::from_lookup(|k| (k == "JWKS_REFETCH_SECS").then(|| "5".to_owned())).expect("settings");
    assert!(format!("{ok:?}").contains("jwks_refetch_interval: 5s"), "{ok:?}");
    let bad = AuthSettings::from_lookup(|k| (k == "JWKS_REFETCH_SECS").then(|| "soon".to_owned()));
    assert!(matches!(bad, Err(AuthError::Config(m)) if m.contains("JWKS_REFETCH_SECS")));
}
