//! Why a connection was not authorized, and the HTTP status the client sees for it.

/// Why a presented token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("unsigned tokens (`alg: none`) are never accepted")]
    AlgNone,
    // Values taken from the token are written with `{:?}`: quoted, with control characters
    // (newlines, terminal escapes) escaped, so that a crafted token cannot forge log lines.
    #[error("algorithm {0:?} is not supported")]
    UnsupportedAlgorithm(String),
    #[error("algorithm {alg:?} is not allowed: {why}")]
    AlgorithmNotAllowed { alg: String, why: String },
    #[error("no configured key has kid {0:?}")]
    UnknownKey(String),
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (`nbf` is in the future)")]
    NotYetValid,
    #[error("the required claim {0:?} is missing")]
    MissingClaim(String),
    #[error("the token's audience (`aud`) is not one this service accepts")]
    WrongAudience,
    #[error("the token's issuer (`iss`) is not one this service accepts")]
    WrongIssuer,
}

/// Errors of this crate. [`AuthError::status_code`] says what the client gets.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing token: send it as `Authorization: Bearer <jwt>` or as the `token` query parameter")]
    MissingToken,
    #[error("invalid token: {0}")]
    InvalidToken(#[from] TokenRejection),
    #[error("forbidden: header X-Origin-Verify is missing or does not match ORIGIN_VERIFY_SECRET")]
    OriginMismatch,
    #[error("token verification is not configured: set JWT_SECRET or JWKS_JSON")]
    NotConfigured,
    #[error("invalid auth configuration: {0}")]
    Config(String),
    #[error("bad authorizer request: {0}")]
    BadRequest(String),
    #[error("could not mint a token: {0}")]
    Mint(String),
}

impl AuthError {
    /// The status API Gateway answers the WebSocket upgrade with. A missing or unverifiable
    /// token is 401 (the authorizer says "Unauthorized"); a genuine token meant for someone
    /// else (audience, issuer) or a request that bypassed the CDN is 403 (a Deny policy).
    pub fn status_code(&self) -> u16 {
        match self {
            AuthError::MissingToken => 401,
            AuthError::InvalidToken(TokenRejection::WrongAudience | TokenRejection::WrongIssuer) => 403,
            AuthError::InvalidToken(_) => 401,
            AuthError::OriginMismatch => 403,
            AuthError::NotConfigured | AuthError::Config(_) | AuthError::BadRequest(_) | AuthError::Mint(_) => 500,
        }
    }
}
