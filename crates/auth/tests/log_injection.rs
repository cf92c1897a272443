//! Token values in logs: a `sub`, `name`, `kid` or `alg` can neither forge a log line nor reach a
//! terminal as an escape. A test binary of its own: tracing caches each call site's interest, and
//! a call site first reached by another test's thread while this test installed its subscriber
//! could stay disabled for it (events missing from the captured log).

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{GOOD_SECRET, connect_request, hs_token, jwks_with_kids, now, rsa_token};
use dynamowave_auth::{AuthSettings, authorize};
use serde_json::json;

/// Everything written to the log, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn values_from_tokens_cannot_forge_log_lines_or_terminal_escapes() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let evil = "eve\n2030-01-01T00:00:00Z  INFO forged: connection authorized principal_id=admin\u{1b}[2J\r";
    let settings = AuthSettings::default()
        .with_hs256_secret(GOOD_SECRET.to_owned())
        .with_jwks_json(&jwks_with_kids(&["key-1"]))
        .expect("JWKS");
    let mut events = 0;
    tracing::subscriber::with_default(subscriber, || {
        // Accepted: sub and name are logged.
        let token = hs_token(GOOD_SECRET, &json!({"sub": evil, "name": evil, "exp": now() + 60}));
        assert!(authorize(&settings, &connect_request(&token)).is_ok());
        events += 1;
        // Refused: the kid and the alg are in the logged error.
        assert!(authorize(&settings, &connect_request(&rsa_token(evil, "x"))).is_err());
        events += 1;
        let header = base64_url(&json!({"alg": evil, "typ": "JWT"}).to_string());
        let body = base64_url(&json!({"sub": "x", "exp": now() + 60}).to_string());
        assert!(authorize(&settings, &connect_request(&format!("{header}.{body}.c2ln"))).is_err());
        events += 1;
    });
    let log = String::from_utf8(captured.0.lock().expect("log buffer").clone()).expect("UTF-8 log");
    assert!(!log.contains('\u{1b}'), "a raw terminal escape reached the log:\n{log}");
    assert!(!log.contains('\r'), "a raw carriage return reached the log:\n{log}");
    assert_eq!(log.lines().count(), events, "one line per event, none forged:\n{log}");
    assert!(!log.lines().any(|l| l.starts_with("2030-01-01")), "a forged line:\n{log}");
    assert!(log.contains("\\n2030-01-01"), "the value is there, escaped:\n{log}");
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}
