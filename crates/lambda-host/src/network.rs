//! What the processes are told about the network: a local CA to trust and host names that lead
//! to the local gateway ([`HostSettings::ca_bundle`], [`HostSettings::host_map`]).
//!
//! Each runtime reads its CA roots from its own variable, and some of them *replace* the
//! machine's roots rather than add to them (OpenSSL's `SSL_CERT_FILE`, botocore's
//! `AWS_CA_BUNDLE`, requests' `REQUESTS_CA_BUNDLE`). Pointing those at the local CA alone would
//! break every call to a real AWS endpoint, so they get a bundle of the machine's roots followed
//! by the local CA, written once per host. Node's `NODE_EXTRA_CA_CERTS` adds to Node's own roots,
//! so it gets the local CA as given.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::error::HostError;
use crate::function::HostSettings;

/// The variable the runtimes' hooks read the host map from.
pub const HOST_MAP_VAR: &str = "DYNAMOWAVE_HOST_MAP";

/// The variables every process gets, and the combined bundle they may point at (removed when the
/// host drops it).
pub(crate) struct ProcessNetwork {
    pub(crate) env: Vec<(String, String)>,
    _bundle: Option<tempfile::TempPath>,
}

impl ProcessNetwork {
    pub(crate) fn new(settings: &HostSettings) -> Result<ProcessNetwork, HostError> {
        let mut env = Vec::new();
        let mut bundle = None;
        if let Some(ca) = &settings.ca_bundle {
            let combined = combined_bundle(ca)?;
            let combined_path = combined.to_string_lossy().into_owned();
            env.push(("NODE_EXTRA_CA_CERTS".to_owned(), ca.to_string_lossy().into_owned()));
            // OpenSSL (Python's `ssl`, urllib3) and rustls-native-certs (the AWS SDK for Rust).
            env.push(("SSL_CERT_FILE".to_owned(), combined_path.clone()));
            // botocore (boto3), and requests, which brings its own roots otherwise.
            env.push(("AWS_CA_BUNDLE".to_owned(), combined_path.clone()));
            env.push(("REQUESTS_CA_BUNDLE".to_owned(), combined_path));
            bundle = Some(combined);
        }
        if !settings.host_map.is_empty() {
            env.push((HOST_MAP_VAR.to_owned(), host_map_value(&settings.host_map)?));
        }
        Ok(ProcessNetwork { env, _bundle: bundle })
    }
}

/// `PATTERN=ADDRESS:PORT,...`, after checking every pattern.
pub(crate) fn host_map_value(map: &[(String, SocketAddr)]) -> Result<String, HostError> {
    let mut entries = Vec::with_capacity(map.len());
    for (pattern, addr) in map {
        check_pattern(pattern)?;
        entries.push(format!("{}={addr}", pattern.to_ascii_lowercase()));
    }
    Ok(entries.join(","))
}

/// A host name, or `*.` and a host name of at least two labels (so `*.com` is refused: it
/// would send a whole top-level domain to the gateway).
fn check_pattern(pattern: &str) -> Result<(), HostError> {
    let invalid = |why: &str| HostError::InvalidSetting { setting: "host_map", problem: format!("`{pattern}`: {why}") };
    let (wildcard, name) = match pattern.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, pattern),
    };
    if name.is_empty() || name.len() > 253 {
        return Err(invalid("not a host name"));
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(invalid("only letters, digits, `-` and dots, with `*.` allowed at the start only"));
        }
    }
    if wildcard && labels.len() < 2 {
        return Err(invalid("a wildcard needs a suffix of at least two labels"));
    }
    Ok(())
}

/// The machine's roots (as OpenSSL finds them, `SSL_CERT_FILE` included) followed by `ca`.
fn combined_bundle(ca: &Path) -> Result<tempfile::TempPath, HostError> {
    let invalid = |problem: String| HostError::InvalidSetting { setting: "ca_bundle", problem };
    let local = std::fs::read_to_string(ca).map_err(|e| invalid(format!("`{}`: {e}", ca.display())))?;
    if !local.contains("-----BEGIN CERTIFICATE-----") {
        return Err(invalid(format!("`{}` holds no PEM certificate", ca.display())));
    }
    let mut text = String::new();
    match system_roots() {
        Some((path, roots)) => {
            tracing::debug!(roots = %path.display(), "combining the machine's CA roots with the local CA");
            text.push_str(&roots);
            if !text.ends_with('\n') {
                text.push('\n');
            }
        }
        None => tracing::warn!(
            "found no CA roots on this machine: the functions will trust only the local CA (real AWS endpoints will fail TLS)"
        ),
    }
    text.push_str(&local);
    // A private file of ours, never a predictable path in a shared temp dir.
    let mut file = tempfile::Builder::new()
        .prefix("dynamowave-ca-")
        .suffix(".pem")
        .tempfile()
        .map_err(|e| invalid(format!("cannot write the combined CA bundle: {e}")))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .map_err(|e| invalid(format!("cannot write the combined CA bundle: {e}")))?;
    Ok(file.into_temp_path())
}

fn system_roots() -> Option<(PathBuf, String)> {
    let path = openssl_probe::probe().cert_file?;
    let text = std::fs::read_to_string(&path).ok()?;
    Some((path, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_host_names_or_one_wildcard_label() {
        let addr: SocketAddr = "127.0.0.1:4443".parse().expect("an address");
        let ok = |p: &str| host_map_value(&[(p.to_owned(), addr)]);
        assert_eq!(
            ok("*.execute-api.us-east-1.amazonaws.com").expect("valid"),
            "*.execute-api.us-east-1.amazonaws.com=127.0.0.1:4443"
        );
        assert_eq!(ok("Chat.Example.com").expect("valid"), "chat.example.com=127.0.0.1:4443");
        for bad in ["", "*.com", "*", "a.*.com", "a..b", "a,b.com=1.2.3.4:5", "-a.com", "a b.com", "a.com:443"] {
            assert!(ok(bad).is_err(), "`{bad}` is refused");
        }
    }
}
