//! # dynamowave-auth: JWT authorization for `$connect`
//!
//! API Gateway runs a WebSocket API's authorizer only on `$connect` (REQUEST type). This crate
//! is that authorizer's logic, shared by the `authorizer` Lambda binary and the local gateway:
//! take the token from `?token=` or `Authorization: Bearer`, verify it, and answer with an IAM
//! policy allowing `execute-api:Invoke` on the `methodArn`, with `principalId` and `name` in the
//! context that API Gateway then passes to every later event of the connection.
//!
//! # Layout
//!
//! - [`settings`]: [`AuthSettings`] (keys, audience, issuer, leeway, origin secret, JWKS
//!   refetch interval), read from the environment by [`AuthSettings::from_env`]; [`Secret`],
//!   which never prints itself; [`check_hs256_secret`] (at least 32 bytes).
//! - `jwks`: a JWKS URL's keys, refetched (rate-limited) when a token names an unknown `kid`;
//!   the one retry both `*_refreshing` functions make. `http://` URLs always, `https://` with
//!   the `https` feature (rustls on ring).
//! - [`verify`]: [`token_from`], [`verify_token`] (and [`verify_token_refreshing`]) and the
//!   [`Claims`] they yield; [`mint_hs256`] for tests and local use.
//! - [`authorizer`]: [`authorize`] (and [`authorize_refreshing`]), the REQUEST authorizer from
//!   event to policy; [`deny`], the policy of a refusal.
//! - [`origin`]: [`check_origin`], which browser pages may open a WebSocket ([`AllowedOrigins`])
//!   and which `Host`s are the API's own ([`DomainNames`]); shared by the local gateway and the
//!   Lambda functions.
//! - [`error`]: [`AuthError`] and [`TokenRejection`], with the HTTP status each maps to.
//!
//! Repeated on purpose: [`DomainNames::new`] and [`AllowedOrigins::new`] both take any list of
//! strings and skip empty entries, but parse each entry differently (a host and port, an origin
//! or `*`).
//!
//! # Rules
//!
//! The signature must verify with a configured key, and the token's `alg` must be one that key
//! allows: `none` is refused outright, an HS token is only ever checked against `JWT_SECRET`,
//! and an RS/ES token only against a JWKS key of that type (no HS/RS confusion). `exp` is
//! required; `exp` and `nbf` are checked with a leeway (default 30 s); `aud` and `iss` are
//! checked when configured; `sub` becomes the principal. An HS256 secret must have at least 32
//! bytes. Values from a token (`sub`, `name`, `kid`, `alg`) are logged and shown in errors
//! Debug-quoted, so that control characters in them cannot forge log lines.

pub mod authorizer;
pub mod error;
mod jwks;
pub mod origin;
pub mod settings;
pub mod verify;

pub use authorizer::{authorize, authorize_refreshing, deny};
pub use error::{AuthError, TokenRejection};
pub use jwks::MAX_JWKS_BYTES;
pub use origin::{AllowedOrigins, DomainNames, OriginAccepted, OriginError, check_origin};
pub use settings::{AuthSettings, MIN_HS256_SECRET_BYTES, Secret, check_hs256_secret};
pub use verify::{Claims, mint_hs256, token_from, verify_token, verify_token_refreshing};
