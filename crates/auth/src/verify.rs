//! Finding, verifying and minting tokens.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::{AuthError, TokenRejection};
use crate::settings::{AuthSettings, MIN_HS256_SECRET_BYTES, check_hs256_secret};

/// Who the token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The `sub` claim; becomes the authorizer's `principalId`.
    pub principal_id: String,
    /// The `name` claim, else `preferred_username`.
    pub name: Option<String>,
}

#[derive(Deserialize)]
struct RawClaims {
    sub: Option<String>,
    name: Option<String>,
    preferred_username: Option<String>,
}

/// The token a `$connect` request carries: query parameter `token` (browsers cannot set headers
/// on a WebSocket upgrade), else `Authorization: Bearer <jwt>`.
pub fn token_from(headers: &http::HeaderMap, query: &HashMap<String, String>) -> Option<String> {
    if let Some(token) = query.get("token").map(|t| t.trim()).filter(|t| !t.is_empty()) {
        return Some(token.to_owned());
    }
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// [`verify_token`], and when the token names a `kid` that no key has and a JWKS URL is
/// configured, refetches the JWKS (at most once per refetch interval) and tries again.
pub async fn verify_token_refreshing(settings: &AuthSettings, token: &str) -> Result<Claims, AuthError> {
    crate::jwks::with_refetch(settings, || verify_token(settings, token)).await
}

/// Verifies `token` against `settings` (see the crate docs for the rules).
pub fn verify_token(settings: &AuthSettings, token: &str) -> Result<Claims, AuthError> {
    if !settings.verifies_tokens() {
        return Err(AuthError::NotConfigured);
    }
    let header = read_header(token)?;
    let alg_name = header.alg.ok_or_else(|| TokenRejection::Malformed("the header has no `alg`".into()))?;
    // jsonwebtoken cannot even parse `none`; say so plainly rather than "unsupported".
    if alg_name.eq_ignore_ascii_case("none") {
        return Err(TokenRejection::AlgNone.into());
    }
    let alg = Algorithm::from_str(&alg_name).map_err(|_| TokenRejection::UnsupportedAlgorithm(alg_name.clone()))?;
    let key = pick_key(settings, alg, &alg_name, header.kid.as_deref())?;

    let mut validation = Validation::new(alg);
    validation.leeway = settings.leeway.as_secs();
    validation.validate_exp = true;
    validation.validate_nbf = true;
    let mut required = vec!["exp"];
    if settings.audience.is_empty() {
        // jsonwebtoken rejects any `aud` when none is configured; we only check what we were told to.
        validation.validate_aud = false;
    } else {
        validation.set_audience(&settings.audience);
        required.push("aud");
    }
    if !settings.issuer.is_empty() {
        validation.set_issuer(&settings.issuer);
        required.push("iss");
    }
    validation.set_required_spec_claims(&required);

    let data = jsonwebtoken::decode::<RawClaims>(token, &key, &validation).map_err(|e| rejection(e, &alg_name))?;
    let principal_id = data.claims.sub.filter(|s| !s.is_empty()).ok_or(TokenRejection::MissingClaim("sub".into()))?;
    let name = data.claims.name.or(data.claims.preferred_username).filter(|n| !n.is_empty());
    Ok(Claims { principal_id, name })
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
}

fn read_header(token: &str) -> Result<RawHeader, TokenRejection> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenRejection::Malformed("expected three dot-separated parts".into()));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|e| TokenRejection::Malformed(format!("the header is not base64url: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| TokenRejection::Malformed(format!("the header is not JSON: {e}")))
}

/// The key for this algorithm. The token's `alg` picks the key *kind*, and a key of the other
/// kind is never tried: that is what stops an HS256 token "signed" with a public RSA key.
fn pick_key(
    settings: &AuthSettings,
    alg: Algorithm,
    alg_name: &str,
    kid: Option<&str>,
) -> Result<DecodingKey, TokenRejection> {
    let not_allowed = |why: &str| TokenRejection::AlgorithmNotAllowed { alg: alg_name.to_owned(), why: why.to_owned() };
    match alg {
        Algorithm::HS256 => match &settings.hs256_secret {
            // A short secret would be guessable from any token: verify nothing with it.
            Some(secret) if secret.expose().len() < MIN_HS256_SECRET_BYTES => {
                Err(not_allowed("the configured HMAC secret is too short to verify anything"))
            }
            Some(secret) => Ok(DecodingKey::from_secret(secret.expose().as_bytes())),
            None => {
                Err(not_allowed("no HMAC secret is configured, and HS tokens are never checked against public keys"))
            }
        },
        Algorithm::HS384 | Algorithm::HS512 => Err(not_allowed("the HMAC secret is for HS256 only")),
        _ => {
            let remote = settings.remote_jwks.as_ref().map(|r| r.keys()).unwrap_or_default();
            let all = || settings.jwks.iter().chain(remote.iter());
            if all().next().is_none() {
                return Err(not_allowed("no public keys are configured (JWKS_JSON, JWKS_URL)"));
            }
            let candidates: Vec<_> = match kid {
                Some(kid) => {
                    let found: Vec<_> = all().filter(|k| k.kid.as_deref() == Some(kid)).collect();
                    if found.is_empty() {
                        return Err(TokenRejection::UnknownKey(kid.to_owned()));
                    }
                    found
                }
                None => all().collect(),
            };
            candidates
                .into_iter()
                .find(|k| k.algorithms.contains(&alg))
                .map(|k| k.key.clone())
                .ok_or_else(|| not_allowed("no configured key of this kid allows it"))
        }
    }
}

fn rejection(error: jsonwebtoken::errors::Error, alg_name: &str) -> TokenRejection {
    match error.into_kind() {
        ErrorKind::InvalidSignature => TokenRejection::BadSignature,
        ErrorKind::ExpiredSignature => TokenRejection::Expired,
        ErrorKind::ImmatureSignature => TokenRejection::NotYetValid,
        ErrorKind::InvalidAudience => TokenRejection::WrongAudience,
        ErrorKind::InvalidIssuer => TokenRejection::WrongIssuer,
        ErrorKind::MissingRequiredClaim(claim) => TokenRejection::MissingClaim(claim),
        ErrorKind::InvalidAlgorithm => {
            TokenRejection::AlgorithmNotAllowed { alg: alg_name.to_owned(), why: "the key does not allow it".into() }
        }
        other => TokenRejection::Malformed(jsonwebtoken::errors::Error::from(other).to_string()),
    }
}

#[derive(Serialize)]
struct MintClaims<'a> {
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
}

/// Makes an HS256 token valid for `ttl` from now (tests, `dynamowave token`, local use). The
/// secret must have at least [`MIN_HS256_SECRET_BYTES`] bytes.
pub fn mint_hs256(
    secret: &str,
    sub: &str,
    name: Option<&str>,
    ttl: Duration,
    aud: Option<&str>,
    iss: Option<&str>,
) -> Result<String, AuthError> {
    if secret.is_empty() {
        return Err(AuthError::Mint("the secret is empty".into()));
    }
    check_hs256_secret(secret).map_err(|e| AuthError::Mint(e.to_string()))?;
    if sub.is_empty() {
        return Err(AuthError::Mint("the subject is empty".into()));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| AuthError::Mint(format!("the clock is before 1970: {e}")))?
        .as_secs();
    let claims = MintClaims { sub, name, iat: now, exp: now.saturating_add(ttl.as_secs()), aud, iss };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .map_err(|e| AuthError::Mint(e.to_string()))
}
