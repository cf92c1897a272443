//! # dynamowave-local-ca: a certificate authority for this machine only
//!
//! TLS for the local gateway (`wss://`, `https://`) without a warning in every client: a CA made
//! once and kept in a directory, which clients are told to trust (`NODE_EXTRA_CA_CERTS`, a
//! browser's or system's store), and which issues the gateway a certificate for the names it is
//! reached by at each start.
//!
//! Trusting a CA is trusting whoever holds its key, so this one is limited by X.509 name
//! constraints (RFC 5280 §4.2.1.10) to `localhost` (and its subdomains), `127.0.0.0/8`, `::1`,
//! and `amazonaws.com` names (what an SDK pointed at the gateway, or a function's
//! `https://{domainName}/{stage}`, asks for): even a leaked key cannot impersonate any other
//! site to a client that checks the constraints (all current TLS stacks do). Its key is readable
//! by its owner only (0600, in a 0700 directory).
//!
//! # Layout
//!
//! - This file: [`LocalCa`] (`load_or_create` → `ca_pem_path`, `server_config`), [`CaOrigin`],
//!   [`LocalCaError`], and the constraints ([`permits`]).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use time::OffsetDateTime;

/// The CA certificate's file in the directory.
pub const CA_CERT_FILE: &str = "ca-cert.pem";
/// The CA key's file in the directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// The CA's name: the issuer every leaf names, so it is the same on every run.
const CA_NAME: &str = "DynamoWave local CA (this machine only)";
/// How long a new CA is valid.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// A CA that expires sooner than this is replaced (a leaf must not outlive its issuer).
const CA_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long a leaf is valid: issued at every start, and at most what browsers accept (398 days).
const LEAF_VALIDITY: Duration = Duration::from_secs(397 * 24 * 3600);
/// The DNS subtrees the CA may issue for (each with every subdomain).
const PERMITTED_DNS: [&str; 2] = ["localhost", "amazonaws.com"];

/// Errors loading, making or using the CA; each names the file or the name at fault.
#[derive(Debug)]
pub enum LocalCaError {
    /// Reading or writing a file (or the directory) failed.
    Io { path: PathBuf, source: std::io::Error },
    /// Generating a key or a certificate failed.
    Generate(rcgen::Error),
    /// A name the CA's constraints do not permit (or that is not a DNS name or IP address).
    NameNotPermitted(String),
    /// No names were asked for.
    NoNames,
    /// rustls refused the certificate or key.
    Tls(rustls::Error),
}

impl fmt::Display for LocalCaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocalCaError::Io { path, source } => write!(f, "local CA: {}: {source}", path.display()),
            LocalCaError::Generate(e) => write!(f, "local CA: cannot generate a certificate: {e}"),
            LocalCaError::NameNotPermitted(name) => write!(
                f,
                "local CA: {name:?} is outside the names this CA may certify (localhost, 127.0.0.0/8, ::1, \
                 *.amazonaws.com)"
            ),
            LocalCaError::NoNames => write!(f, "local CA: a server certificate needs at least one name"),
            LocalCaError::Tls(e) => write!(f, "local CA: TLS: {e}"),
        }
    }
}

impl std::error::Error for LocalCaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LocalCaError::Io { source, .. } => Some(source),
            LocalCaError::Generate(e) => Some(e),
            LocalCaError::Tls(e) => Some(e),
            _ => None,
        }
    }
}

impl From<rcgen::Error> for LocalCaError {
    fn from(e: rcgen::Error) -> Self {
        LocalCaError::Generate(e)
    }
}

impl From<rustls::Error> for LocalCaError {
    fn from(e: rustls::Error) -> Self {
        LocalCaError::Tls(e)
    }
}

/// Where the CA came from on this run: the caller tells its user (a new CA must be trusted).
#[derive(Clone, Debug, PartialEq)]
pub enum CaOrigin {
    /// The one kept in the directory.
    Loaded,
    /// None was there: made now.
    Created,
    /// The one there could not be used (the reason), so a new one was made: clients that
    /// trusted the old one must be given the new certificate.
    Regenerated(String),
}

/// A CA kept in a directory.
pub struct LocalCa {
    dir: PathBuf,
    cert_der: CertificateDer<'static>,
    key: KeyPair,
    origin: CaOrigin,
}

impl fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCa").field("dir", &self.dir).field("origin", &self.origin).finish_non_exhaustive()
    }
}

/// The rustls crypto provider everything here uses.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> LocalCaError + '_ {
    move |source| LocalCaError::Io { path: path.to_path_buf(), source }
}

impl LocalCa {
    /// The CA in `dir` (made with mode 0700 if missing), or a new one written there when there
    /// is none; one that cannot be read, does not match its key, or expires within 30 days is
    /// replaced ([`LocalCa::origin`] says which happened, and why).
    pub fn load_or_create(dir: impl AsRef<Path>) -> Result<Self, LocalCaError> {
        let dir = dir.as_ref().to_path_buf();
        create_private_dir(&dir)?;
        let (cert_path, key_path) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
        let origin = if cert_path.exists() || key_path.exists() {
            match Self::load(&dir) {
                Ok(ca) => return Ok(ca),
                Err(why) => CaOrigin::Regenerated(why),
            }
        } else {
            CaOrigin::Created
        };
        let key = KeyPair::generate()?;
        let mut params = ca_params();
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + CA_VALIDITY;
        let cert = params.self_signed(&key)?;
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        std::fs::write(&cert_path, cert.pem()).map_err(io_error(&cert_path))?;
        Ok(Self { dir, cert_der: cert.der().clone(), key, origin })
    }

    /// The CA kept in `dir`, checked: `Err` says why it cannot be used.
    fn load(dir: &Path) -> Result<Self, String> {
        let (cert_path, key_path) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
        let key_pem = std::fs::read_to_string(&key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| format!("{}: not a private key: {e}", key_path.display()))?;
        let cert_der = CertificateDer::from_pem_file(&cert_path)
            .map_err(|e| format!("{}: not a certificate: {e}", cert_path.display()))?;
        restrict_to_owner(&key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
        // A trust anchor's own validity is not checked by TLS clients' path building (webpki
        // ignores it; others do not), so it is read here.
        let not_after = not_after(&cert_der).ok_or_else(|| format!("{}: no validity period", cert_path.display()))?;
        if not_after < OffsetDateTime::now_utc() + CA_RENEW_BEFORE {
            return Err(format!(
                "{}: expired or expiring within 30 days (valid until {not_after})",
                cert_path.display()
            ));
        }
        let ca = Self { dir: dir.to_path_buf(), cert_der, key, origin: CaOrigin::Loaded };
        // A leaf issued now must verify against the stored certificate a while from now: that
        // proves the certificate is this key's and a CA for our names.
        let later = std::time::SystemTime::now() + CA_RENEW_BEFORE;
        let later = UnixTime::since_unix_epoch(later.duration_since(std::time::UNIX_EPOCH).unwrap_or_default());
        let leaf = ca
            .issue(&["localhost".to_string()])
            .map_err(|e| format!("{}: cannot issue with it: {e}", cert_path.display()))?;
        ca.verify(&leaf.0, "localhost", later)
            .map_err(|e| format!("{}: not this key's CA certificate ({e})", cert_path.display()))?;
        Ok(ca)
    }

    /// What [`LocalCa::load_or_create`] did.
    pub fn origin(&self) -> &CaOrigin {
        &self.origin
    }

    /// The CA certificate's PEM file: what clients are told to trust
    /// (`NODE_EXTRA_CA_CERTS`, `AWS_CA_BUNDLE`, `SSL_CERT_FILE`, a browser's store).
    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    /// The CA certificate (for a rustls client's root store).
    pub fn ca_certificate(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// A server configuration (HTTP/1.1 by ALPN) presenting a new leaf certificate for `names`:
    /// DNS names (wildcards such as `*.execute-api.us-east-1.amazonaws.com` included) and IP
    /// addresses, each of which the CA's constraints must permit ([`permits`]).
    pub fn server_config(&self, names: &[String]) -> Result<rustls::ServerConfig, LocalCaError> {
        if names.is_empty() {
            return Err(LocalCaError::NoNames);
        }
        if let Some(name) = names.iter().find(|n| !permits(n)) {
            return Err(LocalCaError::NameNotPermitted(name.clone()));
        }
        let (leaf, key) = self.issue(names)?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![leaf, self.cert_der.clone()], key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// A leaf for `names`, signed by the CA, with its key; the names are not checked here.
    fn issue(&self, names: &[String]) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), LocalCaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        // Not a host name (it has spaces), so no TLS stack mistakes it for one to check.
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "DynamoWave local gateway");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + LEAF_VALIDITY;
        let issuer = Issuer::new(ca_params(), &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        let key = PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| LocalCaError::Tls(rustls::Error::General(e.into())))?;
        Ok((cert.der().clone(), key))
    }

    /// Verifies `leaf` for `name` at `now` as a client trusting only this CA would.
    fn verify(&self, leaf: &CertificateDer<'_>, name: &str, now: UnixTime) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der.clone())?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let name = ServerName::try_from(name.to_string()).map_err(|e| rustls::Error::General(e.to_string()))?;
        use rustls::client::danger::ServerCertVerifier;
        verifier.verify_server_cert(leaf, &[], &name, &[], now).map(|_| ())
    }
}

/// The CA's parameters (validity aside): the same on every run, since each leaf names its
/// issuer by them.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.distinguished_name.push(DnType::OrganizationName, "DynamoWave");
    // Path length 0: it signs leaves only, never another CA (which could escape nothing, as
    // constraints bind the whole chain, but there is no need for one).
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: PERMITTED_DNS
            .iter()
            .map(|d| GeneralSubtree::DnsName((*d).to_string()))
            .chain([
                GeneralSubtree::IpAddress(CidrSubnet::from_v4_prefix([127, 0, 0, 0], 8)),
                GeneralSubtree::IpAddress(CidrSubnet::from_v6_prefix(std::net::Ipv6Addr::LOCALHOST.octets(), 128)),
            ])
            .collect(),
        excluded_subtrees: Vec::new(),
    });
    params
}

/// Whether the CA's constraints permit `name`: `localhost` or a subdomain, a name under
/// `amazonaws.com` (a wildcard's `*` counts as one label), an address in `127.0.0.0/8`, `::1`.
pub fn permits(name: &str) -> bool {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return ip.is_loopback() && (ip.is_ipv4() || ip == IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let valid_labels = name.split('.').enumerate().all(|(i, label)| {
        (i == 0 && label == "*")
            || (!label.is_empty() && label.len() <= 63 && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    });
    valid_labels
        && PERMITTED_DNS
            .iter()
            .any(|d| name == *d || (name.ends_with(d) && name[..name.len() - d.len()].ends_with('.')))
        && name != "*.amazonaws.com"
}

/// A certificate's `notAfter`, read from its DER (Certificate → TBSCertificate → validity):
/// the few steps of DER that takes, rather than a whole X.509 parser.
fn not_after(cert: &[u8]) -> Option<OffsetDateTime> {
    /// The first element of `der`: its tag, contents, and what follows it.
    fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = der.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            (rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)), &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }
    let (_, certificate, _) = element(cert)?;
    let (_, tbs, _) = element(certificate)?;
    let mut rest = tbs;
    // [0] version (optional), serialNumber, signature, issuer, then validity.
    if rest.first() == Some(&0xa0) {
        rest = element(rest)?.2;
    }
    for _ in 0..3 {
        rest = element(rest)?.2;
    }
    let (_, validity, _) = element(rest)?;
    let (_, _, after_not_before) = element(validity)?;
    let (tag, text, _) = element(after_not_before)?;
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        // UTCTime: YYMMDDHHMMSS, years 1950-2049.
        0x17 if text.len() == 12 => {
            let yy: i32 = text[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        // GeneralizedTime: YYYYMMDDHHMMSS.
        0x18 if text.len() == 14 => (text[..4].parse().ok()?, &text[4..]),
        _ => return None,
    };
    let field = |i: usize| rest.get(i..i + 2)?.parse::<u8>().ok();
    let date = time::Date::from_calendar_date(year, time::Month::try_from(field(0)?).ok()?, field(2)?).ok()?;
    let time = time::Time::from_hms(field(4)?, field(6)?, field(8)?).ok()?;
    Some(time::PrimitiveDateTime::new(date, time).assume_utc())
}

/// Makes `dir` (and its parents) if missing, and leaves it to its owner only.
fn create_private_dir(dir: &Path) -> Result<(), LocalCaError> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_error(dir))?;
    }
    Ok(())
}

/// Writes a file its owner only may read, whole or not at all (a temporary file renamed).
fn write_private(path: &Path, contents: &[u8]) -> Result<(), LocalCaError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io_error(&tmp))?;
    file.write_all(contents).and_then(|()| file.sync_all()).map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

/// A key file others can read is made its owner's only again.
fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> UnixTime {
        UnixTime::now()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dw-local-ca-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn the_constraints_permit_local_and_aws_names_only() {
        for ok in [
            "localhost",
            "app.localhost",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "abc123.execute-api.us-east-1.amazonaws.com",
            "*.execute-api.us-east-1.amazonaws.com",
            "dynamodb.us-east-1.amazonaws.com",
        ] {
            assert!(permits(ok), "{ok}");
        }
        for no in [
            "example.com",
            "notlocalhost",
            "localhost.example.com",
            "evilamazonaws.com",
            "amazonaws.com.evil.net",
            "*.amazonaws.com",
            "*",
            "10.0.0.1",
            "::2",
            "a..localhost",
            "*.*.amazonaws.com",
        ] {
            assert!(!permits(no), "{no}");
        }
    }

    #[test]
    fn a_leaf_outside_the_constraints_is_refused_by_a_verifier_and_cannot_be_issued() {
        let dir = temp_dir("constraints");
        let ca = LocalCa::load_or_create(&dir).expect("ca");
        assert!(
            matches!(ca.server_config(&["example.com".into()]), Err(LocalCaError::NameNotPermitted(n)) if n == "example.com")
        );
        assert!(matches!(ca.server_config(&[]), Err(LocalCaError::NoNames)));
        // Even a leaf signed with the CA's key (as whoever stole it could) is refused.
        for (names, name) in [(vec!["example.com".to_string()], "example.com"), (vec!["10.0.0.1".into()], "10.0.0.1")] {
            let (leaf, _) = ca.issue(&names).expect("issued without the check");
            let refused = ca.verify(&leaf, name, now()).expect_err("a leaf outside the constraints verified");
            assert!(format!("{refused:?}").contains("NameConstraint"), "{refused:?}");
        }
        for name in ["localhost", "127.0.0.1", "::1", "x.execute-api.us-east-1.amazonaws.com"] {
            let (leaf, _) = ca.issue(&[name.to_string()]).expect("issued");
            ca.verify(&leaf, name, now()).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let (wildcard, _) = ca.issue(&["*.execute-api.us-east-1.amazonaws.com".into()]).expect("issued");
        ca.verify(&wildcard, "abc.execute-api.us-east-1.amazonaws.com", now())
            .expect("the wildcard covers an API's name");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_ca_is_kept_private_reused_and_replaced_when_unreadable() {
        let dir = temp_dir("kept");
        let first = LocalCa::load_or_create(&dir).expect("ca");
        assert_eq!(first.origin(), &CaOrigin::Created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join(CA_KEY_FILE)), 0o600);
        }
        let second = LocalCa::load_or_create(&dir).expect("ca");
        assert_eq!(second.origin(), &CaOrigin::Loaded);
        assert_eq!(second.ca_certificate(), first.ca_certificate(), "the same CA on the next run");
        assert_eq!(second.ca_pem_path(), dir.join(CA_CERT_FILE));

        std::fs::write(dir.join(CA_CERT_FILE), "not a certificate").expect("write");
        let third = LocalCa::load_or_create(&dir).expect("ca");
        match third.origin() {
            CaOrigin::Regenerated(why) => assert!(why.contains(CA_CERT_FILE), "{why}"),
            other => panic!("expected a new CA, got {other:?}"),
        }
        assert_ne!(third.ca_certificate(), first.ca_certificate());

        // A certificate that is not this key's is not used either.
        let other = temp_dir("other");
        let stranger = LocalCa::load_or_create(&other).expect("ca");
        std::fs::copy(stranger.ca_pem_path(), dir.join(CA_CERT_FILE)).expect("copy");
        assert!(matches!(LocalCa::load_or_create(&dir).expect("ca").origin(), CaOrigin::Regenerated(_)));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&other);
    }

    #[test]
    fn the_validity_is_read_from_the_der() {
        let key = KeyPair::generate().expect("key");
        let mut params = ca_params();
        params.not_after = rcgen::date_time_ymd(2031, 7, 9);
        assert_eq!(not_after(params.self_signed(&key).expect("cert").der()), Some(rcgen::date_time_ymd(2031, 7, 9)));
        params.not_after = rcgen::date_time_ymd(2060, 1, 2);
        assert_eq!(not_after(params.self_signed(&key).expect("cert").der()), Some(rcgen::date_time_ymd(2060, 1, 2)));
        assert_eq!(not_after(b"\x30\x03\x30\x01"), None);
        assert_eq!(not_after(b""), None);
    }

    #[test]
    fn an_expiring_ca_is_replaced() {
        let dir = temp_dir("expiring");
        std::fs::create_dir_all(&dir).expect("dir");
        let key = KeyPair::generate().expect("key");
        let mut params = ca_params();
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(400);
        params.not_after = now + time::Duration::days(2);
        let cert = params.self_signed(&key).expect("cert");
        write_private(&dir.join(CA_KEY_FILE), key.serialize_pem().as_bytes()).expect("key");
        std::fs::write(dir.join(CA_CERT_FILE), cert.pem()).expect("cert");
        let ca = LocalCa::load_or_create(&dir).expect("ca");
        assert!(matches!(ca.origin(), CaOrigin::Regenerated(why) if why.contains("expiring")), "{:?}", ca.origin());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
