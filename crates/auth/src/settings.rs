//! Authorization settings: which keys verify tokens, and which claims must hold.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::error::AuthError;
use crate::jwks::RemoteJwks;

/// Default clock-skew allowance for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// Shortest HS256 secret accepted, in bytes: RFC 7518 §3.2 requires a key at least as long as
/// the hash (256 bits); a shorter one can be brute-forced from any token it signed.
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// Default least time between two JWKS refetches caused by tokens with an unknown `kid`: enough
/// to pick up a rotated key within a minute, while a flood of made-up kids costs at most one
/// fetch per interval.
pub const DEFAULT_JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// Refuses an HS256 secret shorter than [`MIN_HS256_SECRET_BYTES`], with how to make a good one.
pub fn check_hs256_secret(secret: &str) -> Result<(), AuthError> {
    if secret.len() < MIN_HS256_SECRET_BYTES {
        return Err(AuthError::Config(format!(
            "the HS256 secret is {} bytes; it must be at least {MIN_HS256_SECRET_BYTES} (256 bits), \
             e.g. the output of `openssl rand -base64 32`",
            secret.len()
        )));
    }
    Ok(())
}

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
    /// Keys fetched from a JWKS URL, refetched on an unknown `kid`; shared by clones.
    pub(crate) remote_jwks: Option<Arc<RemoteJwks>>,
    pub(crate) jwks_refetch_interval: Duration,
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
            remote_jwks: None,
            jwks_refetch_interval: DEFAULT_JWKS_REFETCH_INTERVAL,
        }
    }
}

impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<_> = self.jwks.iter().map(|k| k.kid.as_deref().unwrap_or("(no kid)")).collect();
        f.debug_struct("AuthSettings")
            .field("hs256_secret", &self.hs256_secret)
            .field("jwks_kids", &kids)
            .field("jwks_url", &self.remote_jwks.as_ref().map(|r| r.url()))
            .field("jwks_refetch_interval", &self.jwks_refetch_interval)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("origin_secret", &self.origin_secret)
            .field("leeway", &self.leeway)
            .finish()
    }
}

impl AuthSettings {
    /// The HS256 secret's variable.
    pub const JWT_SECRET_ENV: &'static str = "JWT_SECRET";
    /// A JWKS document's variable (the document itself, not a path).
    pub const JWKS_JSON_ENV: &'static str = "JWKS_JSON";
    /// The accepted audiences' variable (a comma list).
    pub const JWT_AUDIENCE_ENV: &'static str = "JWT_AUDIENCE";
    /// The accepted issuers' variable (a comma list).
    pub const JWT_ISSUER_ENV: &'static str = "JWT_ISSUER";
    /// The leeway's variable (whole seconds).
    pub const JWT_LEEWAY_SECS_ENV: &'static str = "JWT_LEEWAY_SECS";
    /// The JWKS refetch interval's variable (whole seconds).
    pub const JWKS_REFETCH_SECS_ENV: &'static str = "JWKS_REFETCH_SECS";
    /// The `X-Origin-Verify` secret's variable.
    pub const ORIGIN_VERIFY_SECRET_ENV: &'static str = "ORIGIN_VERIFY_SECRET";

    /// Reads `JWT_SECRET`, `JWKS_JSON`, `JWT_AUDIENCE`, `JWT_ISSUER` (comma lists),
    /// `JWT_LEEWAY_SECS`, `JWKS_REFETCH_SECS` and `ORIGIN_VERIFY_SECRET`. Unset and empty mean
    /// "not configured"; a `JWT_SECRET` shorter than [`MIN_HS256_SECRET_BYTES`] is refused.
    pub fn from_env() -> Result<Self, AuthError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`AuthSettings::from_env`] over any source of variables (tests use a map, since
    /// changing the process environment is unsafe in a threaded program).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, AuthError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let get_secs = |name: &str| -> Result<Option<u64>, AuthError> {
            get(name)
                .map(|value| {
                    value.parse().map_err(|_| {
                        AuthError::Config(format!("{name} must be a whole number of seconds, got `{value}`"))
                    })
                })
                .transpose()
        };
        let mut settings = AuthSettings::default();
        if let Some(secret) = get(Self::JWT_SECRET_ENV) {
            check_hs256_secret(&secret).map_err(|e| AuthError::Config(format!("{}: {e}", Self::JWT_SECRET_ENV)))?;
            settings = settings.with_hs256_secret(secret);
        }
        if let Some(jwks) = get(Self::JWKS_JSON_ENV) {
            settings = settings
                .with_jwks_json(&jwks)
                .map_err(|e| AuthError::Config(format!("{}: {e}", Self::JWKS_JSON_ENV)))?;
        }
        if let Some(aud) = get(Self::JWT_AUDIENCE_ENV) {
            settings = settings.with_audience(comma_list(&aud));
        }
        if let Some(iss) = get(Self::JWT_ISSUER_ENV) {
            settings = settings.with_issuer(comma_list(&iss));
        }
        if let Some(secs) = get_secs(Self::JWT_LEEWAY_SECS_ENV)? {
            settings = settings.with_leeway(Duration::from_secs(secs));
        }
        if let Some(secs) = get_secs(Self::JWKS_REFETCH_SECS_ENV)? {
            settings = settings.with_jwks_refetch_interval(Duration::from_secs(secs));
        }
        if let Some(origin) = get(Self::ORIGIN_VERIFY_SECRET_ENV) {
            settings = settings.with_origin_secret(origin);
        }
        Ok(settings)
    }

    /// Accept HS256 tokens signed with this secret. One shorter than [`MIN_HS256_SECRET_BYTES`]
    /// makes [`AuthSettings::validate`] fail and verifies no token; check it at startup with
    /// [`check_hs256_secret`] or [`AuthSettings::validate`].
    pub fn with_hs256_secret(mut self, secret: String) -> Self {
        self.hs256_secret = Some(Secret::new(secret));
        self
    }

    /// Accept RS256/RS384/RS512/PS*/ES256/ES384 tokens signed by a key of this JWKS document.
    /// A key's `alg`, when present, is the only algorithm it verifies. Symmetric (`oct`) keys
    /// are refused: a JWKS is public, and an HMAC key in it would let anyone sign.
    pub fn with_jwks_json(mut self, jwks: &str) -> Result<Self, AuthError> {
        self.jwks.extend(parse_jwks(jwks)?);
        Ok(self)
    }

    /// Accept tokens signed by a key of the JWKS document at `url`, fetched now (an error if it
    /// cannot be) and again when a token names a `kid` it lacks, at most once per
    /// [`AuthSettings::with_jwks_refetch_interval`], so that rotated keys are picked up without
    /// a restart. Use [`crate::authorize_refreshing`] for the refetch to happen.
    pub async fn with_jwks_url(mut self, url: &str) -> Result<Self, AuthError> {
        self.remote_jwks = Some(Arc::new(RemoteJwks::load(url).await?));
        Ok(self)
    }

    /// Least time between two refetches of the JWKS URL (default
    /// [`DEFAULT_JWKS_REFETCH_INTERVAL`]).
    pub fn with_jwks_refetch_interval(mut self, interval: Duration) -> Self {
        self.jwks_refetch_interval = interval;
        self
    }

    /// Refuses settings that must not run: an HS256 secret shorter than
    /// [`MIN_HS256_SECRET_BYTES`].
    pub fn validate(&self) -> Result<(), AuthError> {
        match &self.hs256_secret {
            Some(secret) => check_hs256_secret(secret.expose()),
            None => Ok(()),
        }
    }
}

impl AuthSettings {
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
        self.hs256_secret.is_some() || !self.jwks.is_empty() || self.remote_jwks.is_some()
    }
}

/// The keys of a JWKS document. A key's `alg`, when present, is the only algorithm it
/// verifies; symmetric (`oct`) keys are refused.
pub(crate) fn parse_jwks(jwks: &str) -> Result<Vec<JwksKey>, AuthError> {
    let mut keys = Vec::new();
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
                let label =
                    serde_json::to_value(declared).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
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
        keys.push(JwksKey { kid: jwk.common.key_id.clone(), algorithms, key });
    }
    Ok(keys)
}

fn comma_list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}
