//! Authorization settings: which keys verify tokens, and which claims must hold.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::error::AuthError;

/// Default clock-skew allowance for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// A secret string. `Debug` and `Display` are redacted so that settings can be logged.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares without stopping at the first differing byte, so response timing does not tell
    /// an attacker how much of a guess was right.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A public key from a JWKS document, with the algorithms it may verify.
#[derive(Clone)]
pub(crate) struct JwksKey {
    pub(crate) kid: Option<String>,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) key: DecodingKey,
}

/// What the authorizer checks. Built with [`AuthSettings::from_env`] or from
/// `AuthSettings::default()` and the `with_*` methods.
#[derive(Clone)]
pub struct AuthSettings {
    pub(crate) hs256_secret: Option<Secret>,
    pub(crate) jwks: Vec<JwksKey>,
    pub(crate) audience: Vec<String>,
    pub(crate) issuer: Vec<String>,
    pub(crate) origin_secret: Option<Secret>,
    pub(crate) leeway: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            hs256_secret: None,
            jwks: Vec::new(),
            audience: Vec::new(),
            issuer: Vec::new(),
            origin_secret: None,
            leeway: DEFAULT_LEEWAY,
        }
    }
}

impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<_> = self.jwks.iter().map(|k| k.kid.as_deref().unwrap_or("(no kid)")).collect();
        f.debug_struct("AuthSettings")
            .field("hs256_secret", &self.hs256_secret)
            .field("jwks_kids", &kids)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("origin_secret", &self.origin_secret)
            .field("leeway", &self.leeway)
            .finish()
    }
}

impl AuthSettings {
    /// Reads `JWT_SECRET`, `JWKS_JSON`, `JWT_AUDIENCE`, `JWT_ISSUER` (comma lists),
    /// `JWT_LEEWAY_SECS` and `ORIGIN_VERIFY_SECRET`. Unset and empty mean "not configured".
    pub fn from_env() -> Result<Self, AuthError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`AuthSettings::from_env`] over any source of variables (tests use a map, since
    /// changing the process environment is unsafe in a threaded program).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, AuthError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let mut settings = AuthSettings::default();
        if let Some(secret) = get("JWT_SECRET") {
            settings = settings.with_hs256_secret(secret);
        }
        if let Some(jwks) = get("JWKS_JSON") {
            settings = settings.with_jwks_json(&jwks).map_err(|e| AuthError::Config(format!("JWKS_JSON: {e}")))?;
        }
        if let Some(aud) = get("JWT_AUDIENCE") {
            settings = settings.with_audience(comma_list(&aud));
        }
        if let Some(iss) = get("JWT_ISSUER") {
            settings = settings.with_issuer(comma_list(&iss));
        }
        if let Some(leeway) = get("JWT_LEEWAY_SECS") {
            let secs: u64 = leeway.parse().map_err(|_| {
                AuthError::Config(format!("JWT_LEEWAY_SECS must be a whole number of seconds, got `{leeway}`"))
            })?;
            settings = settings.with_leeway(Duration::from_secs(secs));
        }
        if let Some(origin) = get("ORIGIN_VERIFY_SECRET") {
            settings = settings.with_origin_secret(origin);
        }
        Ok(settings)
    }

    /// Accept HS256 tokens signed with this secret.
    pub fn with_hs256_secret(mut self, secret: String) -> Self {
        self.hs256_secret = Some(Secret::new(secret));
        self
    }

    /// Accept RS256/RS384/RS512/PS*/ES256/ES384 tokens signed by a key of this JWKS document.
    /// A key's `alg`, when present, is the only algorithm it verifies. Symmetric (`oct`) keys
    /// are refused: a JWKS is public, and an HMAC key in it would let anyone sign.
    pub fn with_jwks_json(mut self, jwks: &str) -> Result<Self, AuthError> {
        let set: JwkSet = serde_json::from_str(jwks)
            .map_err(|e| AuthError::Config(format!("not a JWKS document ({{\"keys\": [...]}}): {e}")))?;
        if set.keys.is_empty() {
            return Err(AuthError::Config("the JWKS document has no keys".into()));
        }
        for (i, jwk) in set.keys.iter().enumerate() {
            let name = jwk.common.key_id.clone().unwrap_or_else(|| format!("#{i}"));
            let family: Vec<Algorithm> = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => vec![
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ],
                AlgorithmParameters::EllipticCurve(p) => match p.curve {
                    EllipticCurve::P256 => vec![Algorithm::ES256],
                    EllipticCurve::P384 => vec![Algorithm::ES384],
                    ref other => {
                        return Err(AuthError::Config(format!("key {name}: curve {other:?} is not supported")));
                    }
                },
                AlgorithmParameters::OctetKey(_) => {
                    return Err(AuthError::Config(format!(
                        "key {name}: symmetric (`oct`) keys do not belong in a JWKS; use JWT_SECRET"
                    )));
                }
                _ => return Err(AuthError::Config(format!("key {name}: key type is not supported"))),
            };
            let algorithms = match jwk.common.key_algorithm {
                None => family,
                Some(declared) => {
                    // KeyAlgorithm and Algorithm share their JOSE names; go through the name.
                    let label = serde_json::to_value(declared)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    match Algorithm::from_str(&label) {
                        Ok(alg) if family.contains(&alg) => vec![alg],
                        _ => {
                            return Err(AuthError::Config(format!(
                                "key {name}: `alg` {label:?} does not fit its key type"
                            )));
                        }
                    }
                }
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| AuthError::Config(format!("key {name}: {e}")))?;
            self.jwks.push(JwksKey { kid: jwk.common.key_id.clone(), algorithms, key });
        }
        Ok(self)
    }

    /// Require `aud` to contain one of these.
    pub fn with_audience(mut self, audience: Vec<String>) -> Self {
        self.audience = audience;
        self
    }

    /// Require `iss` to be one of these.
    pub fn with_issuer(mut self, issuer: Vec<String>) -> Self {
        self.issuer = issuer;
        self
    }

    /// Require header `X-Origin-Verify` to equal this (set by the CDN in front of the API, so
    /// that clients cannot bypass it).
    pub fn with_origin_secret(mut self, value: String) -> Self {
        self.origin_secret = Some(Secret::new(value));
        self
    }

    /// Clock-skew allowance for `exp` and `nbf`.
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Whether `$connect` should be authorized at all: some key or an origin secret is set.
    pub fn is_enabled(&self) -> bool {
        self.verifies_tokens() || self.origin_secret.is_some()
    }

    /// Whether a token is required (a key is configured).
    pub fn verifies_tokens(&self) -> bool {
        self.hs256_secret.is_some() || !self.jwks.is_empty()
    }
}

fn comma_list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}
