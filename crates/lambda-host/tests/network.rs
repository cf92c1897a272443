//! The network the managed runtimes see: `ca_bundle` makes them trust a local CA, and
//! `host_map` sends AWS's host names to a local TLS server while TLS still checks the original
//! name. A real Node.js TLS server with a throwaway CA (rcgen), real Node and Python handlers
//! (`https.get`, `urllib.request`, the AWS SDK v3's and boto3's `PostToConnection`).
//! Needs python3, node and npm, and the package registries on first run (cached in DW_TOOLS_DIR).

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::{fixture, managed};
use dynamowave_lambda_host::{HostSettings, LambdaFunction, LambdaHost};
use parking_lot::Mutex;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const MAPPED: &str = "*.execute-api.us-east-1.amazonaws.com";
const API_URL: &str = "https://abc123.execute-api.us-east-1.amazonaws.com/x";

fn function(name: &str, runtime: &str, dir: &str, handler: &str) -> LambdaFunction {
    let mut f = managed(name, runtime, &fixture(dir), handler);
    f.timeout = Duration::from_secs(20);
    // The SDKs sign their requests; any key does for a local server.
    f.env.push(("AWS_ACCESS_KEY_ID".into(), "local".into()));
    f.env.push(("AWS_SECRET_ACCESS_KEY".into(), "local".into()));
    f
}

/// A CA and a leaf for `*.execute-api.us-east-1.amazonaws.com` signed by it, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("a temp dir");
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "dynamowave test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).expect("the CA certificate");
        let issuer = Issuer::new(ca, ca_key);
        let leaf_key = KeyPair::generate().expect("a leaf key");
        let mut leaf = CertificateParams::new(vec![MAPPED.to_owned()]).expect("leaf params");
        leaf.distinguished_name.push(DnType::CommonName, MAPPED);
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("the leaf certificate");
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).expect("write");
        std::fs::write(dir.path().join("leaf.pem"), leaf_cert.pem()).expect("write");
        std::fs::write(dir.path().join("leaf-key.pem"), leaf_key.serialize_pem()).expect("write");
        Pki { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }
}

/// `tests/fixtures/tls-server.mjs` and the requests it has seen.
struct TlsServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Value>>>,
    _child: tokio::process::Child,
}

impl TlsServer {
    async fn start(pki: &Pki) -> TlsServer {
        let mut child = tokio::process::Command::new("node")
            .arg(fixture("tls-server.mjs"))
            .arg(pki.path("leaf-key.pem"))
            .arg(pki.path("leaf.pem"))
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts the TLS server");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("the server starts in time")
            .expect("reads")
            .expect("a line");
        let port: u16 = first.strip_prefix("LISTENING ").and_then(|p| p.parse().ok()).expect("LISTENING PORT");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str(&line) {
                    log.lock().push(v);
                }
            }
        });
        TlsServer { addr: SocketAddr::from(([127, 0, 0, 1], port)), seen, _child: child }
    }

    fn seen(&self) -> Vec<Value> {
        self.seen.lock().clone()
    }
}

async fn host(functions: Vec<LambdaFunction>, settings: HostSettings) -> LambdaHost {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("info").try_init();
    let settings = HostSettings { init_timeout: Duration::from_secs(20), ..settings };
    LambdaHost::start_with(functions, settings).await.expect("host starts")
}

fn functions() -> Vec<LambdaFunction> {
    vec![
        function("node-get", "nodejs20.x", "net-node", "app.get"),
        function("node-post", "nodejs20.x", "net-node", "app.post"),
        function("node-fetch", "nodejs20.x", "net-node", "app.fetchGet"),
        function("py-get", "python3.12", "net-python", "app.get"),
        function("py-post", "python3.12", "net-python", "app.post"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapped_names_reach_the_local_server_with_their_own_name_checked() {
    let pki = Pki::new();
    let server = TlsServer::start(&pki).await;
    let settings = HostSettings {
        ca_bundle: Some(pki.path("ca.pem")),
        host_map: vec![(MAPPED.to_owned(), server.addr)],
        ..HostSettings::default()
    };
    let host = host(functions(), settings).await;

    for name in ["node-get", "node-fetch", "py-get"] {
        let got = host.invoke_json(name, json!({"url": API_URL})).await.expect("answers");
        assert_eq!(got["status"], 200, "{name}: {got}");
        assert_eq!(got["body"]["served"], "local", "{name}: {got}");
        assert_eq!(got["body"]["host"], "abc123.execute-api.us-east-1.amazonaws.com", "{name}: {got}");
        assert_eq!(got["body"]["servername"], "abc123.execute-api.us-east-1.amazonaws.com", "{name}: SNI kept");
        assert_eq!(got["body"]["path"], "/x");
    }
    let before = server.seen().len();
    assert_eq!(before, 3);

    // Names outside the map are left alone: a look-alike with the mapped name as a prefix, a
    // deeper subdomain (the star is one label), another region, and a name that never resolves.
    for url in [
        "https://abc123.execute-api.us-east-1.amazonaws.com.evil.invalid/x",
        "https://a.abc123.execute-api.us-east-1.amazonaws.com/x",
        "https://nothere.invalid/x",
    ] {
        for name in ["node-get", "node-fetch", "py-get"] {
            let got = host.invoke_json(name, json!({"url": url})).await.expect("answers");
            assert_ne!(got["body"]["served"], "local", "{name} {url}: not redirected: {got}");
        }
    }
    assert_eq!(server.seen().len(), before, "no unmapped request reached the local server");

    // The SDKs' management clients, built as AWS's samples build them.
    for name in ["node-post", "py-post"] {
        let got = host
            .invoke_json(
                name,
                json!({
                    "endpoint": "https://abc123.execute-api.us-east-1.amazonaws.com/production",
                    "connectionId": "L0SM9cOFvHcCIhw=",
                    "data": format!("hello from {name}"),
                }),
            )
            .await
            .expect("answers");
        assert_eq!(got["status"], 200, "{name}: {got}");
        let seen = server.seen();
        let last = seen.last().expect("the post arrived");
        assert_eq!(last["method"], "POST", "{name}: {last}");
        let path = last["path"].as_str().unwrap_or_default().replace("%40", "@");
        assert!(path.starts_with("/production/@connections/L0SM9cOFvHcCIhw"), "{name}: {last}");
        assert_eq!(last["body"], format!("hello from {name}"));
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ca_the_local_certificate_is_refused() {
    let pki = Pki::new();
    let server = TlsServer::start(&pki).await;
    let settings = HostSettings { host_map: vec![(MAPPED.to_owned(), server.addr)], ..HostSettings::default() };
    let host =
        host(functions().into_iter().filter(|f| f.name == "node-get" || f.name == "py-get").collect(), settings).await;
    for name in ["node-get", "py-get"] {
        let got = host.invoke_json(name, json!({"url": API_URL})).await.expect("answers");
        let error = got["error"].as_str().unwrap_or_default().to_lowercase();
        assert!(error.contains("certificate"), "{name}: an untrusted CA fails TLS: {got}");
    }
    assert!(server.seen().is_empty(), "no request got through TLS");
    host.shutdown().await;
}

#[tokio::test]
async fn bad_network_settings_are_refused_by_name() {
    let addr: SocketAddr = "127.0.0.1:1".parse().expect("an address");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_echo-bootstrap"));
    let start = |settings| LambdaHost::start_with(vec![LambdaFunction::new("f", bin.clone())], settings);
    let err = start(HostSettings { host_map: vec![("*.com".into(), addr)], ..HostSettings::default() })
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("host_map") && err.to_string().contains("*.com"), "{err}");
    let missing = HostSettings { ca_bundle: Some("/nonexistent/ca.pem".into()), ..HostSettings::default() };
    let err = start(missing).await.err().expect("refused");
    assert!(err.to_string().contains("ca_bundle") && err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}
