//! JWT parsing and verification with an HS256 secret: any string must be refused with an error
//! (never a panic), and accepted only with a principal.
#![no_main]

use std::sync::OnceLock;

use dynamowave_auth::settings::AuthSettings;
use dynamowave_auth::verify::verify_token;
use libfuzzer_sys::fuzz_target;

/// The secret the seed corpus's valid tokens were minted with.
const SECRET: &str = "fuzz-secret-0123456789abcdef0123456789";

fn settings() -> &'static AuthSettings {
    static SETTINGS: OnceLock<AuthSettings> = OnceLock::new();
    SETTINGS.get_or_init(|| AuthSettings::default().with_hs256_secret(SECRET.to_string()))
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    if let Ok(claims) = verify_token(settings(), token) {
        assert!(!claims.principal_id.is_empty());
    }
});
