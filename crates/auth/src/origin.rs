//! Which browser pages may open a WebSocket, and which `Host`s are this API's own: one matcher
//! for the local gateway (the upgrade, `@connections`, `/metrics`) and for the Lambda functions
//! (`$connect` authorizer and `connect`), so both sides answer a cross-site page the same way.
//!
//! A browser sends `Origin` on every WebSocket upgrade and cannot be made to leave it out, so
//! the rule is: no `Origin` (a non-browser client) passes; the page's own origin passes; any other
//! origin passes only if it is listed (`*`: any). "Own" is `http(s)://H` where `H` is the
//! request's `Host` *and* `H` is known to be ours — a loopback name or address, or a configured
//! domain. Comparing `Origin` with `Host` alone would let a DNS-rebinding page in: its origin is
//! `http://evil.example:8080` and so is its `Host`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An origin (or a `Host`) that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("{0:?} is not an origin (expected scheme://host[:port], e.g. https://chat.example.com)")]
    BadOrigin(String),
    #[error(
        "\"null\" is the origin of any sandboxed or file:// page, so listing it would let every such page in; use * if that is meant"
    )]
    NullListed,
    #[error("{0:?} is not a domain name (expected a host name, optionally with :port)")]
    BadDomain(String),
}

/// An origin reduced to what browsers compare: lower-case scheme and host, and the port
/// (the scheme's default when not written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Splits `host[:port]` (IPv6 in brackets) into a lower-case host without a trailing dot and
/// the port, if any.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        inside.parse::<Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{}]", inside.to_ascii_lowercase()), port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
            None => (s.to_ascii_lowercase(), None),
        }
    };
    let host = host.strip_suffix('.').map(str::to_string).unwrap_or(host);
    let valid = !host.is_empty()
        && (host.starts_with('[') || host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)));
    if !valid {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    Some((host, port))
}

impl Origin {
    /// Reads an `Origin` header value or a configured origin. One trailing `/` is accepted
    /// (people paste URLs); any other path, a query, user info or an unknown scheme is not.
    /// `null` is not an origin here: it never matches anything but `*`.
    pub fn parse(s: &str) -> Option<Origin> {
        let s = s.trim();
        let (scheme, rest) = s.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default = default_port(&scheme)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return None;
        }
        let (host, port) = split_host_port(rest)?;
        Some(Origin { scheme, host, port: port.unwrap_or(default) })
    }
}

/// Whether `host` (a `Host` header's name part, already lower-case, IPv6 in brackets) is a
/// loopback name or address: `localhost`, `*.localhost` (RFC 6761: browsers resolve these to
/// loopback themselves), `127.0.0.0/8`, `[::1]` (and `[::ffff:127.x.y.z]`).
fn is_loopback_name(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    let ip = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => host.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    };
    match ip {
        Some(IpAddr::V4(v4)) => v4.is_loopback(),
        Some(IpAddr::V6(v6)) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        None => false,
    }
}

/// Whether a `Host` header value names a loopback host (any port).
pub fn is_loopback_host(host: &str) -> bool {
    split_host_port(host.trim()).is_some_and(|(h, _)| is_loopback_name(&h))
}

/// The names under which this API is reached besides loopback ones (a custom domain, the
/// public name of a reverse proxy in front): a `Host` naming one of them is ours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainNames(Vec<(String, Option<u16>)>);

impl DomainNames {
    /// From names like `chat.example.com` (any port) or `chat.example.com:8443` (that port).
    pub fn new<I, S>(names: I) -> Result<DomainNames, OriginError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = Vec::new();
        for name in names {
            let name = name.as_ref().trim();
            if name.is_empty() {
                continue;
            }
            out.push(split_host_port(name).ok_or_else(|| OriginError::BadDomain(name.to_string()))?);
        }
        Ok(DomainNames(out))
    }

    /// Whether a `Host` header value is ours: a loopback name or address, or a configured name.
    pub fn is_ours(&self, host: &str) -> bool {
        let Some((name, port)) = split_host_port(host.trim()) else { return false };
        is_loopback_name(&name) || self.0.iter().any(|(n, p)| *n == name && (p.is_none() || *p == port))
    }
}

/// Origins whose pages may open a WebSocket besides the API's own (`*`: any page at all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins {
    any: bool,
    listed: Vec<Origin>,
}

impl AllowedOrigins {
    /// No other origin: only non-browser clients and the API's own pages.
    pub fn none() -> AllowedOrigins {
        AllowedOrigins::default()
    }

    /// Any origin (API Gateway's behaviour: it leaves the check to `$connect`).
    pub fn any() -> AllowedOrigins {
        AllowedOrigins { any: true, listed: Vec::new() }
    }

    /// From a list of origins and/or `*`; empty entries are skipped.
    pub fn new<I, S>(items: I) -> Result<AllowedOrigins, OriginError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = AllowedOrigins::default();
        for item in items {
            let item = item.as_ref().trim();
            match item {
                "" => {}
                "*" => out.any = true,
                s if s.eq_ignore_ascii_case("null") => return Err(OriginError::NullListed),
                s => out.listed.push(Origin::parse(s).ok_or_else(|| OriginError::BadOrigin(s.to_string()))?),
            }
        }
        Ok(out)
    }

    /// The variable [`AllowedOrigins::from_env`] reads.
    pub const ALLOWED_ORIGINS_ENV: &'static str = "ALLOWED_ORIGINS";

    /// From a comma-separated list (`ALLOWED_ORIGINS`, the template's `AllowedOrigins`).
    pub fn parse(list: &str) -> Result<AllowedOrigins, OriginError> {
        AllowedOrigins::new(list.split(','))
    }

    /// From the environment variable `ALLOWED_ORIGINS` (unset or empty: none).
    pub fn from_env() -> Result<AllowedOrigins, OriginError> {
        AllowedOrigins::parse(&std::env::var(Self::ALLOWED_ORIGINS_ENV).unwrap_or_default())
    }

    pub fn allows_any(&self) -> bool {
        self.any
    }

    /// Whether this `Origin` header value is listed (or `*` is).
    pub fn lists(&self, origin: &str) -> bool {
        self.any || Origin::parse(origin).is_some_and(|o| self.listed.contains(&o))
    }
}

/// Whether `origin` is the page origin of a request that came with `Host: own_host`: same host
/// and port, over http or https. The caller vouches that `own_host` is ours.
pub fn is_own_origin(origin: &str, own_host: &str) -> bool {
    let (Some(o), Some((host, port))) = (Origin::parse(origin), split_host_port(own_host.trim())) else {
        return false;
    };
    (o.scheme == "http" || o.scheme == "https") && o.host == host && port.or(default_port(&o.scheme)) == Some(o.port)
}

/// Why a browser's request was let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginAccepted {
    /// No `Origin`: not a browser page.
    NoOrigin,
    /// The page is the API's own (e.g. the local gateway's web client).
    Own,
    /// Listed in the allowed origins (or `*`).
    Listed,
}

/// The one decision, for the gateway's upgrade and the `$connect` functions: `origin` is the
/// request's `Origin` header, `own_host` its `Host` *if that is known to be ours* (the gateway
/// checks it with [`DomainNames::is_ours`]; behind API Gateway the `Host` is the API's domain).
/// `Err` carries the refused origin, for the log.
pub fn check_origin<'a>(
    origin: Option<&'a str>,
    own_host: Option<&str>,
    allowed: &AllowedOrigins,
) -> Result<OriginAccepted, &'a str> {
    let Some(origin) = origin else { return Ok(OriginAccepted::NoOrigin) };
    if own_host.is_some_and(|h| is_own_origin(origin, h)) {
        Ok(OriginAccepted::Own)
    } else if allowed.lists(origin) {
        Ok(OriginAccepted::Listed)
    } else {
        Err(origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_as_browsers_do() {
        let o = Origin::parse("HTTPS://Chat.Example.COM").unwrap();
        assert_eq!(o, Origin { scheme: "https".into(), host: "chat.example.com".into(), port: 443 });
        assert_eq!(Origin::parse("https://chat.example.com:443/"), Some(o.clone()));
        assert_eq!(Origin::parse("https://chat.example.com."), Some(o));
        assert_eq!(Origin::parse("http://[::1]:8080").unwrap().host, "[::1]");
        for bad in [
            "null",
            "",
            "chat.example.com",
            "ftp://x",
            "https://x/path",
            "https://u@x",
            "https://x:99999",
            "https://x:",
            "https://[zz]:1",
            "https://a b",
        ] {
            assert_eq!(Origin::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn listed_origins_match_on_scheme_host_and_port() {
        let allowed = AllowedOrigins::parse("https://app.example.com, http://localhost:3000/").unwrap();
        assert!(allowed.lists("https://app.example.com"));
        assert!(allowed.lists("https://APP.example.com:443"));
        assert!(allowed.lists("http://localhost:3000"));
        assert!(!allowed.lists("http://app.example.com"), "another scheme");
        assert!(!allowed.lists("https://app.example.com:8443"), "another port");
        assert!(!allowed.lists("http://localhost:3001"));
        assert!(!allowed.lists("https://evil.app.example.com"));
        assert!(!allowed.lists("https://app.example.com.evil.example"));
        assert!(!allowed.lists("null"));
        assert!(!AllowedOrigins::none().lists("https://app.example.com"));
    }

    #[test]
    fn wildcard_allows_everything_even_null() {
        let any = AllowedOrigins::parse("*").unwrap();
        assert!(any.allows_any());
        assert!(any.lists("https://anything.example") && any.lists("null") && any.lists("garbage"));
        assert_eq!(
            AllowedOrigins::parse("https://a.example,*").unwrap(),
            AllowedOrigins { any: true, listed: vec![Origin::parse("https://a.example").unwrap()] }
        );
    }

    #[test]
    fn bad_configuration_is_an_error() {
        assert_eq!(AllowedOrigins::parse("null"), Err(OriginError::NullListed));
        assert!(matches!(AllowedOrigins::parse("app.example.com"), Err(OriginError::BadOrigin(_))));
        assert!(matches!(AllowedOrigins::parse("https://a.example/app"), Err(OriginError::BadOrigin(_))));
        assert_eq!(AllowedOrigins::parse(" , "), Ok(AllowedOrigins::none()));
        assert!(matches!(DomainNames::new(["https://chat.example.com"]), Err(OriginError::BadDomain(_))));
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "LOCALHOST:8080",
            "localhost.",
            "app.localhost:3000",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:8080",
            "[::1]",
            "[::ffff:127.0.0.1]:8080",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "10.0.0.1:8080",
            "[::2]",
            "0.0.0.0:8080",
            "",
            "127.0.0.1:x",
            "127.1",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn configured_domains_are_ours() {
        let d = DomainNames::new(["chat.example.com", "proxy.example.com:8443"]).unwrap();
        assert!(d.is_ours("chat.example.com") && d.is_ours("Chat.Example.com:443") && d.is_ours("127.0.0.1:8080"));
        assert!(d.is_ours("proxy.example.com:8443"));
        assert!(!d.is_ours("proxy.example.com:9999"));
        assert!(!d.is_ours("evil.example:8080"));
        assert!(!DomainNames::default().is_ours("chat.example.com"));
    }

    #[test]
    fn own_origin_is_the_hosts_own_page() {
        assert!(is_own_origin("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(is_own_origin("https://chat.example.com", "chat.example.com"));
        assert!(is_own_origin("https://chat.example.com", "chat.example.com:443"));
        assert!(is_own_origin("http://localhost", "LOCALHOST"));
        assert!(!is_own_origin("http://127.0.0.1:8081", "127.0.0.1:8080"), "another port is another origin");
        assert!(!is_own_origin("http://localhost:8080", "127.0.0.1:8080"));
        assert!(!is_own_origin("null", "127.0.0.1:8080"));
        assert!(!is_own_origin("http://127.0.0.1:8080", ""));
    }

    #[test]
    fn the_decision() {
        let none = AllowedOrigins::none();
        assert_eq!(check_origin(None, None, &none), Ok(OriginAccepted::NoOrigin));
        assert_eq!(check_origin(Some("http://127.0.0.1:8080"), Some("127.0.0.1:8080"), &none), Ok(OriginAccepted::Own));
        // DNS rebinding: the Host is the attacker's too, but the caller does not vouch for it.
        assert_eq!(check_origin(Some("http://evil.example:8080"), None, &none), Err("http://evil.example:8080"));
        assert_eq!(
            check_origin(Some("https://evil.example"), Some("127.0.0.1:8080"), &none),
            Err("https://evil.example")
        );
        let listed = AllowedOrigins::parse("https://app.example").unwrap();
        assert_eq!(check_origin(Some("https://app.example"), None, &listed), Ok(OriginAccepted::Listed));
        assert_eq!(check_origin(Some("null"), Some("127.0.0.1:8080"), &listed), Err("null"));
        assert_eq!(check_origin(Some("null"), None, &AllowedOrigins::any()), Ok(OriginAccepted::Listed));
    }
}
