//! moto (DynamoDB and `@connections`), the SDK config pointing at it, and fresh tables per
//! test. With `DW_MOTO_URL` set, that server is used; otherwise each test starts its own
//! `scripts/moto` on a free port and kills it when the guard drops (also on panic).

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::types::AttributeValue;
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
    sdk_config_at(&moto.url, None).await
}

/// SDK config with moto's test credentials and region, every service at `endpoint` (moto, or a
/// proxy in front of it), with `timeouts` if given (the SDK's defaults otherwise). The HTTP client
/// is the functions' own ([`dynamowave_aws::http::Http1Client`]), so that the adapter tests, the
/// fault scenarios among them, exercise it.
pub async fn sdk_config_at(endpoint: &str, timeouts: Option<TimeoutConfig>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(dynamowave_aws::http::Http1Client::new())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .endpoint_url(endpoint);
    if let Some(timeouts) = timeouts {
        loader = loader.timeout_config(timeouts);
    }
    loader.load().await
}

/// `prefix-` and a new UUID: table prefixes that no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// The three tables under a new prefix starting with `prefix`, created in moto through `config`.
pub async fn create_tables(config: &SdkConfig, prefix: &str) -> Tables {
    let tables = Tables::with_prefix(&unique(prefix));
    schema::create_tables(&aws_sdk_dynamodb::Client::new(config), &tables).await.expect("create tables");
    tables
}

/// A store on three new tables.
pub async fn store(config: &SdkConfig, settings: DynamoDbSettings) -> DynamoDbStore {
    let tables = create_tables(config, "dw").await;
    DynamoDbStore::new(config, tables, settings)
}

/// A DynamoDB client's count of the items of `table` (a `Scan` with `Select::Count`).
pub async fn count(client: &aws_sdk_dynamodb::Client, table: &str) -> i32 {
    client.scan().table_name(table).select(aws_sdk_dynamodb::types::Select::Count).send().await.expect("scan").count
}

/// The item of `table` under `key` (attribute name and value of each key attribute), read
/// consistently, as moto holds it.
pub async fn get_item(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    key: &[(&str, AttributeValue)],
) -> Option<HashMap<String, AttributeValue>> {
    let mut request = client.get_item().table_name(table).consistent_read(true);
    for (name, value) in key {
        request = request.key(*name, value.clone());
    }
    request.send().await.unwrap_or_else(|e| panic!("GetItem on {table}: {e}")).item
}

/// moto, the SDK config for it, and a store on three new tables there.
pub struct MotoStore {
    pub store: DynamoDbStore,
    pub config: SdkConfig,
    // Dropped last: the store's server goes after the store.
    pub moto: Moto,
}

/// A new [`MotoStore`] with `settings`.
pub async fn moto_store(settings: DynamoDbSettings) -> MotoStore {
    let moto = moto();
    let config = sdk_config(&moto).await;
    let store = store(&config, settings).await;
    MotoStore { store, config, moto }
}
