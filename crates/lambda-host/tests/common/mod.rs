//! What the runtime tests share: the runtimes' tools dir and the fixtures.

// Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use dynamowave_lambda_host::{LambdaFunction, Runtime, RuntimeTools};

/// The kit's tools dir: the venv and the Node SDK, made once.
pub fn tools() -> RuntimeTools {
    RuntimeTools::new(dynamowave_testkit::temp::tools_dir())
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A function of a managed runtime with its code in `dir`, and a 10 s timeout.
pub fn managed(name: &str, runtime: &str, dir: &Path, handler: &str) -> LambdaFunction {
    let runtime = Runtime::parse(runtime).expect("a supported runtime");
    let mut f = tools()
        .function(name, &runtime, dir, Some(handler), &|line| eprintln!("{line}"))
        .expect("the runtime is set up");
    f.timeout = Duration::from_secs(10);
    f
}
