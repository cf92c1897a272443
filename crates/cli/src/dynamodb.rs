//! The DynamoDB that template and Lambda modes give their functions: the one at
//! `--dynamodb-endpoint` (or `AWS_ENDPOINT_URL_DYNAMODB`), else a DynamoDB Local this command
//! starts (in memory, or in `--dynamodb-data-dir`) and stops; the template's tables are created
//! in it before anything is served.

use std::path::PathBuf;

use anyhow::Context;
use dynamowave_dynamodb_local::{DynamoDbLocal, Install, LocalDynamoDb, Options, Storage};
use dynamowave_template::Table;

/// The variable the AWS SDKs read a DynamoDB endpoint from.
pub const ENDPOINT_ENV: &str = "AWS_ENDPOINT_URL_DYNAMODB";

/// A DynamoDB for the functions; a local one lives as long as this.
pub struct Dynamo {
    pub endpoint: String,
    /// Started by us (stopped when dropped).
    pub local: Option<DynamoDbLocal>,
}

impl Dynamo {
    /// The given endpoint, else DynamoDB Local installed under `tools_dir` and started.
    pub async fn connect(
        endpoint: Option<String>,
        data_dir: Option<PathBuf>,
        tools_dir: &std::path::Path,
    ) -> anyhow::Result<Dynamo> {
        let endpoint = endpoint.or_else(|| std::env::var(ENDPOINT_ENV).ok()).filter(|e| !e.trim().is_empty());
        if let Some(endpoint) = endpoint {
            return Ok(Dynamo { endpoint, local: None });
        }
        let install = Install::find_or_fetch(tools_dir, &|line| eprintln!("{line}"))
            .context("installing DynamoDB Local (or give --dynamodb-endpoint)")?;
        let storage = match data_dir {
            Some(dir) => {
                std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
                Storage::Dir(dir)
            }
            None => Storage::InMemory,
        };
        let local = DynamoDbLocal::start(&install, &Options { storage, ..Options::default() })
            .await
            .context("starting DynamoDB Local (or give --dynamodb-endpoint)")?;
        Ok(Dynamo { endpoint: local.endpoint().to_string(), local: Some(local) })
    }

    /// Creates each table that does not exist yet; says which were created.
    pub async fn ensure_tables<'a>(&self, tables: impl IntoIterator<Item = &'a Table>) -> anyhow::Result<()> {
        let client = LocalDynamoDb::new(self.endpoint.clone());
        for table in tables {
            let outcome = client
                .ensure_table(table)
                .await
                .with_context(|| format!("table {} ({}) in {}", table.logical_id, table.table_name, self.endpoint))?;
            let what = if outcome.created { "created" } else { "exists" };
            eprintln!("table {} ({}): {what} in {}", table.logical_id, outcome.table_name, self.endpoint);
        }
        Ok(())
    }

    pub async fn stop(self) {
        if let Some(local) = self.local {
            local.stop().await;
        }
    }
}

/// The tools dir: the flag, else `$XDG_CACHE_HOME/dynamowave`, else `~/.cache/dynamowave`, else
/// the system temp dir's.
pub fn tools_dir(flag: Option<&PathBuf>) -> PathBuf {
    if let Some(dir) = flag {
        return dir.clone();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("dynamowave")
}
