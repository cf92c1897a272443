//! Verifying AWS Signature Version 4 on `@connections` calls (service `execute-api`), so that
//! callers off this machine can manage connections only with configured credentials — as on
//! AWS, where the API is IAM-authorized.

use hmac::{Hmac, Mac};
use http::{HeaderMap, Method};
use sha2::{Digest, Sha256};

use crate::settings::SigV4Credentials;

type HmacSha256 = Hmac<Sha256>;

/// How far a request's `x-amz-date` may be from now (AWS: 15 minutes).
const MAX_SKEW_SECS: i64 = 15 * 60;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// RFC 3986 encoding of everything but unreserved characters (SigV4's `UriEncode`).
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A request's SigV4 `Authorization` whose scope, key, date and signed headers were checked
/// ([`Signed::check_headers`]); [`Signed::verify`] then checks the signature over the body.
/// Split in two so that a caller who cannot be let in is refused before its body is read.
pub struct Signed<'a> {
    creds: &'a SigV4Credentials,
    amz_date: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

impl<'a> Signed<'a> {
    /// Everything that does not need the body: the key is `creds`', the credential scope is
    /// `{date}/{region}/execute-api/aws4_request` with this gateway's region, `x-amz-date` is
    /// within 15 minutes of now and on the scope's date, and the signed headers include `host`
    /// and `x-amz-date` (else a signature could be replayed to another host or at any time).
    pub fn check_headers(
        creds: &'a SigV4Credentials,
        region: &str,
        headers: &'a HeaderMap,
    ) -> Result<Signed<'a>, String> {
        let auth =
            headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or("no Authorization header")?;
        let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or("not an AWS4-HMAC-SHA256 signature")?;
        let mut credential = None;
        let mut signed_headers = None;
        let mut signature = None;
        for part in rest.split(',') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("Credential=") {
                credential = Some(v);
            } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
                signed_headers = Some(v);
            } else if let Some(v) = part.strip_prefix("Signature=") {
                signature = Some(v);
            }
        }
        let (credential, signed_headers, signature) = (
            credential.ok_or("no Credential")?,
            signed_headers.ok_or("no SignedHeaders")?,
            signature.ok_or("no Signature")?,
        );
        let mut scope = credential.splitn(5, '/');
        let (akid, date, scope_region, service, terminal) = (
            scope.next().unwrap_or(""),
            scope.next().unwrap_or(""),
            scope.next().unwrap_or(""),
            scope.next().unwrap_or(""),
            scope.next().unwrap_or(""),
        );
        if akid != creds.access_key_id {
            return Err("unknown access key".into());
        }
        if service != "execute-api" || terminal != "aws4_request" {
            return Err("credential scope is not for execute-api".into());
        }
        if scope_region != region {
            return Err(format!("credential scope is for region {scope_region:?}, this API is in {region:?}"));
        }
        let names: Vec<&str> = signed_headers.split(';').collect();
        for required in ["host", "x-amz-date"] {
            if !names.contains(&required) {
                return Err(format!("{required} is not among the signed headers"));
            }
        }
        let amz_date = headers.get("x-amz-date").and_then(|v| v.to_str().ok()).ok_or("no x-amz-date")?;
        let when = chrono::NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ").map_err(|_| "bad x-amz-date")?;
        if (chrono::Utc::now().naive_utc() - when).num_seconds().abs() > MAX_SKEW_SECS {
            return Err("request time too far from now".into());
        }
        if date.len() != 8 || !amz_date.starts_with(date) {
            return Err("credential date does not match x-amz-date".into());
        }
        Ok(Signed { creds, amz_date, date, region: scope_region, service, signed_headers, signature })
    }

    /// Checks the signature itself. `raw_path` is the path as it was sent (still
    /// percent-encoded); non-S3 services sign it encoded once more.
    pub fn verify(
        &self,
        method: &Method,
        raw_path: &str,
        raw_query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), String> {
        let Signed { creds, amz_date, date, region, service, signed_headers, signature } = *self;
        let canonical_uri: String = raw_path.split('/').map(|seg| uri_encode(seg, false)).collect::<Vec<_>>().join("/");
        let mut query: Vec<(String, String)> = raw_query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                let dec = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
                (uri_encode(&dec(k), false), uri_encode(&dec(v), false))
            })
            .collect();
        query.sort();
        let canonical_query = query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let mut canonical_headers = String::new();
        for name in signed_headers.split(';') {
            let values: Vec<String> = headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            if values.is_empty() {
                return Err(format!("signed header {name} is missing"));
            }
            canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
        }
        let payload_hash = match headers.get("x-amz-content-sha256").and_then(|v| v.to_str().ok()) {
            Some(h) if h != "UNSIGNED-PAYLOAD" => {
                let actual = hex::encode(Sha256::digest(body));
                if actual != h {
                    return Err("x-amz-content-sha256 does not match the body".into());
                }
                actual
            }
            _ => hex::encode(Sha256::digest(body)),
        };
        let canonical_request = format!(
            "{}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
            method.as_str()
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        );
        let k_date = hmac(format!("AWS4{}", creds.secret_access_key).as_bytes(), date.as_bytes());
        let k_region = hmac(&k_date, region.as_bytes());
        let k_service = hmac(&k_region, service.as_bytes());
        let k_signing = hmac(&k_service, b"aws4_request");
        let expected = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));
        // Constant-time comparison through the MAC type would need the raw key; the signature is
        // public-length hex, so compare bytes without early exit.
        let equal = expected.len() == signature.len()
            && expected.bytes().zip(signature.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if equal { Ok(()) } else { Err("signature does not match".into()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> SigV4Credentials {
        SigV4Credentials { access_key_id: "AKIDTEST".into(), secret_access_key: "secret".into() }
    }

    /// Headers with an `Authorization` for `scope` and `signed` headers (the signature itself
    /// is not what these checks look at).
    fn headers(scope: &str, signed: &str, amz_date: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let auth =
            format!("AWS4-HMAC-SHA256 Credential=AKIDTEST/{scope}/aws4_request, SignedHeaders={signed}, Signature=00");
        h.insert(http::header::AUTHORIZATION, auth.parse().unwrap());
        h.insert("x-amz-date", amz_date.parse().unwrap());
        h.insert(http::header::HOST, "127.0.0.1:8080".parse().unwrap());
        h
    }

    fn check(h: &HeaderMap) -> Result<(), String> {
        let creds = creds();
        Signed::check_headers(&creds, "eu-west-1", h).map(|_| ())
    }

    #[test]
    fn the_scope_must_be_this_apis_region_and_execute_api() {
        let now = chrono::Utc::now();
        let (date, amz) = (now.format("%Y%m%d").to_string(), now.format("%Y%m%dT%H%M%SZ").to_string());
        assert_eq!(check(&headers(&format!("{date}/eu-west-1/execute-api"), "host;x-amz-date", &amz)), Ok(()));
        let wrong_region = check(&headers(&format!("{date}/us-east-1/execute-api"), "host;x-amz-date", &amz));
        assert!(wrong_region.unwrap_err().contains("region"));
        let wrong_service = check(&headers(&format!("{date}/eu-west-1/s3"), "host;x-amz-date", &amz));
        assert!(wrong_service.unwrap_err().contains("execute-api"));
        let wrong_date = check(&headers("20200101/eu-west-1/execute-api", "host;x-amz-date", &amz));
        assert!(wrong_date.is_err());
    }

    #[test]
    fn host_and_date_must_be_signed_and_the_date_fresh() {
        let now = chrono::Utc::now();
        let (date, amz) = (now.format("%Y%m%d").to_string(), now.format("%Y%m%dT%H%M%SZ").to_string());
        let scope = format!("{date}/eu-west-1/execute-api");
        assert!(check(&headers(&scope, "x-amz-date", &amz)).unwrap_err().contains("host"));
        assert!(check(&headers(&scope, "host", &amz)).unwrap_err().contains("x-amz-date"));
        assert!(check(&headers(&scope, "content-type;host", &amz)).is_err());
        let old = now - chrono::Duration::minutes(16);
        let scope = format!("{}/eu-west-1/execute-api", old.format("%Y%m%d"));
        let stale = check(&headers(&scope, "host;x-amz-date", &old.format("%Y%m%dT%H%M%SZ").to_string()));
        assert!(stale.unwrap_err().contains("too far"));
    }

    #[test]
    fn an_unknown_key_or_no_signature_is_refused() {
        let creds = creds();
        let mut h = HeaderMap::new();
        assert!(Signed::check_headers(&creds, "eu-west-1", &h).is_err());
        h.insert(http::header::AUTHORIZATION, "Basic dXNlcjpwYXNz".parse().unwrap());
        assert!(Signed::check_headers(&creds, "eu-west-1", &h).is_err());
        let other = SigV4Credentials { access_key_id: "AKIDOTHER".into(), secret_access_key: "secret".into() };
        let now = chrono::Utc::now();
        let h = headers(
            &format!("{}/eu-west-1/execute-api", now.format("%Y%m%d")),
            "host;x-amz-date",
            &now.format("%Y%m%dT%H%M%SZ").to_string(),
        );
        let refused = Signed::check_headers(&other, "eu-west-1", &h).map(|_| ());
        assert!(refused.unwrap_err().contains("unknown access key"));
    }
}
