//! Test harness: a moto server (DynamoDB and `@connections`), the SDK config pointing at it, and
//! fresh tables per test. With `DW_MOTO_URL` set, that server is used; otherwise each test starts
//! its own `scripts/moto` on a free port and kills it when the guard drops (also on panic).

#![allow(dead_code, unreachable_pub)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use dynamowave_aws::{DynamoDbSettings, DynamoDbStore, Tables, schema};

pub struct Moto {
    pub url: String,
    child: Option<Child>,
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// The moto to test against: `DW_MOTO_URL`, or a new one.
pub fn moto() -> Moto {
    if let Ok(url) = std::env::var("DW_MOTO_URL") {
        return Moto { url, child: None };
    }
    let port = free_port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/moto");
    let child = Command::new("bash")
        .arg(script)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start scripts/moto");
    let moto = Moto { url: format!("http://127.0.0.1:{port}"), child: Some(child) };
    // The first run installs moto into its venv, which can take minutes.
    let deadline = Instant::now() + Duration::from_secs(600);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto did not start on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    moto
}

/// SDK config for moto: fixed test credentials and region, every service at moto's URL.
pub async fn sdk_config(moto: &Moto) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .endpoint_url(&moto.url)
        .load()
        .await
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A store on three new tables.
pub async fn store(config: &SdkConfig, settings: DynamoDbSettings) -> DynamoDbStore {
    let tables = Tables::with_prefix(&unique("dw"));
    let store = DynamoDbStore::new(config, tables.clone(), settings);
    schema::create_tables(store.client(), &tables).await.expect("create tables");
    store
}
