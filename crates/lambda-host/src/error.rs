//! Errors starting the host. Invocation errors are the core's `IntegrationError`.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("function `{name}`: {problem}")]
    InvalidFunction { name: String, problem: String },
    #[error("setting `{setting}`: {problem}")]
    InvalidSetting { setting: &'static str, problem: String },
    #[error("two functions are named `{0}`")]
    DuplicateFunction(String),
    #[error("could not open a Runtime API listener on 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
    #[error("could not start `{path}` for function `{function}`: {source}")]
    Spawn {
        function: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
