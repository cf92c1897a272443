//! Lambda's managed runtimes without their container images: what runs a function's code for a
//! `Runtime` named in a template.
//!
//! - `provided.al2023`, `provided.al2`: the function's own `bootstrap` executable.
//! - `python3.x`: PyPI's `awslambdaric` (AWS's runtime interface client) in a venv this module
//!   makes once under the tools dir, with boto3 beside it as Lambda's Python runtime has it.
//! - `nodejs20.x` and later: `runtimes/node/runtime.mjs`, a Runtime API loop of ours (npm's
//!   `aws-lambda-ric` needs Node 22 and a native build), with the AWS SDK for JavaScript v3
//!   installed once under the tools dir and found after the function's own packages.
//!
//! The interpreters are the machine's (`python3`, `node`): a template asking for `python3.12`
//! runs on whatever `python3` is (docs/lambda-local.md lists this among the differences).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::function::LambdaFunction;

/// The runtime loop for Node.js, written into the tools dir at first use.
const NODE_RUNTIME: &str = include_str!("../runtimes/node/runtime.mjs");
const NODE_RESOLVE_SDK: &str = include_str!("../runtimes/node/resolve-sdk.mjs");

/// What Lambda's Python runtime offers besides the standard library.
const PYTHON_PACKAGES: &[&str] = &["awslambdaric", "boto3"];
/// The AWS SDK for JavaScript v3 clients Lambda's Node.js runtime offers that WebSocket apps use.
const NODE_SDK_PACKAGES: &[&str] = &[
    "@aws-sdk/client-dynamodb",
    "@aws-sdk/lib-dynamodb",
    "@aws-sdk/client-apigatewaymanagementapi",
    "@aws-sdk/client-lambda",
    "@aws-sdk/client-secrets-manager",
];

/// A Lambda runtime identifier, sorted by how it is run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// `provided.al2023` / `provided.al2`: a `bootstrap` in the code dir.
    Provided(String),
    /// `python3.x`.
    Python(String),
    /// `nodejsNN.x`.
    Node(String),
}

/// Why a function cannot be run here.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "runtime {0} is not supported locally (supported: provided.al2023, provided.al2, python3.x, nodejs20.x and later)"
    )]
    Unsupported(String),
    #[error("runtime {runtime}: cannot set up {what}: {message}")]
    Setup { runtime: String, what: &'static str, message: String },
    #[error("function {function}: no executable `bootstrap` in {dir}")]
    NoBootstrap { function: String, dir: PathBuf },
    #[error("function {function}: Handler is required for runtime {runtime}")]
    NoHandler { function: String, runtime: String },
}

impl Runtime {
    pub fn parse(id: &str) -> Result<Runtime, RuntimeError> {
        if id == "provided.al2023" || id == "provided.al2" || id == "provided" {
            return Ok(Runtime::Provided(id.to_string()));
        }
        if let Some(version) = id.strip_prefix("python3.")
            && version.parse::<u32>().is_ok()
        {
            return Ok(Runtime::Python(id.to_string()));
        }
        if let Some(major) = id.strip_prefix("nodejs").and_then(|v| v.strip_suffix(".x"))
            && major.parse::<u32>().is_ok_and(|m| m >= 20)
        {
            return Ok(Runtime::Node(id.to_string()));
        }
        Err(RuntimeError::Unsupported(id.to_string()))
    }

    pub fn id(&self) -> &str {
        match self {
            Runtime::Provided(id) | Runtime::Python(id) | Runtime::Node(id) => id,
        }
    }

    /// `AWS_EXECUTION_ENV`, as Lambda sets it.
    pub fn execution_env(&self) -> String {
        format!("AWS_Lambda_{}", self.id())
    }
}

/// Where the runtimes' tools live (a venv, the Node SDK, the Node loop), made once and reused.
#[derive(Clone, Debug)]
pub struct RuntimeTools {
    pub dir: PathBuf,
}

impl RuntimeTools {
    pub fn new(dir: impl Into<PathBuf>) -> RuntimeTools {
        RuntimeTools { dir: dir.into() }
    }

    /// The function `name` with code in `code_dir` and `handler`, run by `runtime`. Sets up
    /// what the runtime needs on first use (`progress` hears about it: a venv and the Node SDK
    /// take a few seconds to install from the package registries).
    pub fn function(
        &self,
        name: &str,
        runtime: &Runtime,
        code_dir: &Path,
        handler: Option<&str>,
        progress: &dyn Fn(&str),
    ) -> Result<LambdaFunction, RuntimeError> {
        let needs_handler = || {
            handler.map(str::to_string).ok_or_else(|| RuntimeError::NoHandler {
                function: name.to_string(),
                runtime: runtime.id().to_string(),
            })
        };
        let mut function = match runtime {
            Runtime::Provided(_) => {
                let bootstrap = code_dir.join("bootstrap");
                if !is_executable(&bootstrap) {
                    return Err(RuntimeError::NoBootstrap { function: name.to_string(), dir: code_dir.to_path_buf() });
                }
                let mut f = LambdaFunction::new(name, bootstrap);
                f.handler = handler.map(str::to_string);
                f
            }
            Runtime::Python(_) => {
                let handler = needs_handler()?;
                let python = self.python(runtime, progress)?;
                let mut f = LambdaFunction::new(name, python);
                f.args = vec!["-m".into(), "awslambdaric".into(), handler.clone()];
                f.handler = Some(handler);
                f
            }
            Runtime::Node(_) => {
                let handler = needs_handler()?;
                let (runtime_file, sdk) = self.node(runtime, progress)?;
                let node = which::which("node").map_err(|e| RuntimeError::Setup {
                    runtime: runtime.id().to_string(),
                    what: "Node.js",
                    message: format!("no `node` on the PATH ({e}); install Node.js 20 or later"),
                })?;
                let mut f = LambdaFunction::new(name, node);
                f.args = vec![runtime_file.to_string_lossy().into_owned()];
                f.env.push(("DYNAMOWAVE_NODE_SDK_DIR".into(), sdk.to_string_lossy().into_owned()));
                f.handler = Some(handler);
                f
            }
        };
        function.task_root = Some(code_dir.to_path_buf());
        function.execution_env = Some(runtime.execution_env());
        Ok(function)
    }

    /// The venv's python, with awslambdaric and boto3 installed.
    fn python(&self, runtime: &Runtime, progress: &dyn Fn(&str)) -> Result<PathBuf, RuntimeError> {
        let venv = self.dir.join("lambda-python");
        let python = venv.join("bin").join("python");
        let ready = venv.join(".installed");
        if ready.is_file() {
            return Ok(python);
        }
        let setup = |what, message: String| RuntimeError::Setup { runtime: runtime.id().to_string(), what, message };
        progress(&format!(
            "setting up {} (a venv with {}) in {}",
            runtime.id(),
            PYTHON_PACKAGES.join(", "),
            venv.display()
        ));
        let python3 = which::which("python3")
            .map_err(|e| setup("Python", format!("no `python3` on the PATH ({e}); install Python 3.10 or later")))?;
        run(Command::new(python3).args(["-m", "venv"]).arg(&venv)).map_err(|m| setup("a Python venv", m))?;
        run(Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(PYTHON_PACKAGES))
        .map_err(|m| setup("awslambdaric and boto3 (pip)", m))?;
        std::fs::write(&ready, PYTHON_PACKAGES.join("\n")).map_err(|e| setup("the venv", e.to_string()))?;
        progress(&format!("{} ready", runtime.id()));
        Ok(python)
    }

    /// The Node loop's file and the SDK's `node_modules`.
    fn node(&self, runtime: &Runtime, progress: &dyn Fn(&str)) -> Result<(PathBuf, PathBuf), RuntimeError> {
        let setup = |what, message: String| RuntimeError::Setup { runtime: runtime.id().to_string(), what, message };
        let loop_dir = self.dir.join("lambda-node-runtime");
        std::fs::create_dir_all(&loop_dir).map_err(|e| setup("the runtime dir", e.to_string()))?;
        // Written every time: the loop is part of this program, and must match it.
        for (file, text) in [("runtime.mjs", NODE_RUNTIME), ("resolve-sdk.mjs", NODE_RESOLVE_SDK)] {
            let path = loop_dir.join(file);
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
                std::fs::write(&path, text).map_err(|e| setup("the runtime loop", e.to_string()))?;
            }
        }
        let sdk = self.dir.join("lambda-node-sdk");
        let ready = sdk.join(".installed");
        if !ready.is_file() {
            progress(&format!("setting up {} (AWS SDK for JavaScript v3 from npm) in {}", runtime.id(), sdk.display()));
            std::fs::create_dir_all(&sdk).map_err(|e| setup("the SDK dir", e.to_string()))?;
            run(Command::new("npm")
                .args(["install", "--silent", "--no-audit", "--no-fund", "--no-save", "--prefix"])
                .arg(&sdk)
                .args(NODE_SDK_PACKAGES))
            .map_err(|m| setup("the AWS SDK for JavaScript (npm)", m))?;
            std::fs::write(&ready, NODE_SDK_PACKAGES.join("\n")).map_err(|e| setup("the SDK dir", e.to_string()))?;
            progress(&format!("{} ready", runtime.id()));
        }
        Ok((loop_dir.join("runtime.mjs"), sdk.join("node_modules")))
    }
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{:?} failed ({}): {}",
        command.get_program(),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}
