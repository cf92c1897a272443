//! `dynamowave` refuses an HS256 secret shorter than 32 bytes, with the reason, both where it
//! verifies tokens (`serve --jwt-secret`, before it listens) and where it mints them (`token`).

use std::time::Duration;

use dynamowave_testkit::binary::run_at_most;

const SHORT: &str = "only-31-bytes-of-secret-here!!!";
const GOOD: &str = "thirty-two-bytes-of-secret-ok!!!";

/// A `serve` that accepted the secret would run until killed: it gets a few seconds.
fn dynamowave(args: &[&str]) -> std::process::Output {
    run_at_most(args, Duration::from_secs(10))
}

#[test]
fn a_short_secret_is_refused_by_serve_and_token() {
    assert_eq!((SHORT.len(), GOOD.len()), (31, 32));
    let data = tempfile::tempdir().expect("temp dir");
    let data = data.path().to_str().expect("path");
    let serve = dynamowave(&["serve", "--listen", "127.0.0.1:0", "--data-dir", data, "--jwt-secret", SHORT]);
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(!serve.status.success(), "serve must refuse a 31-byte secret: {stderr}");
    assert!(stderr.contains("--jwt-secret") && stderr.contains("at least 32"), "{stderr}");

    let token = dynamowave(&["token", "--secret", SHORT, "--sub", "alice"]);
    let stderr = String::from_utf8_lossy(&token.stderr);
    assert!(!token.status.success() && token.stdout.is_empty(), "token must refuse a 31-byte secret: {stderr}");
    assert!(stderr.contains("at least 32"), "{stderr}");

    let token = dynamowave(&["token", "--secret", GOOD, "--sub", "alice"]);
    assert!(token.status.success(), "{}", String::from_utf8_lossy(&token.stderr));
    assert_eq!(String::from_utf8_lossy(&token.stdout).trim().split('.').count(), 3);
}
