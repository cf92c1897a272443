//! `dynamowave serve --handlers lambda`: the real Lambda binaries behind the local gateway — what
//! `sam local` cannot do for WebSocket APIs. The gateway hosts the Lambda Runtime API (through
//! `dynamowave-lambda-host`), starts the `bootstrap`s on demand, and maps routes to functions as
//! `infra/template.yaml` does (the chat's one route table, `dynamowave_core::app`): `$connect` →
//! connect, `$disconnect` → disconnect, `sendmessage` →
//! sendmessage, every other route → default; `authorizer` guards `$connect` when JWT settings are
//! given. The functions reach DynamoDB at `AWS_ENDPOINT_URL_DYNAMODB` (e.g. moto's server) and post
//! through this gateway's own `@connections` API.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use dynamowave_auth::AllowedOrigins;
use dynamowave_core::app::{self, Function};
use dynamowave_core::integration::Integration;
use dynamowave_gateway::{ConnectAuthorizer, Gateway};
use dynamowave_lambda_host::{LambdaFunction, LambdaHost};
use tracing::info;

use crate::args::{JwtVerification, ServeArgs};

/// The variables the functions find their tables and the `@connections` endpoint in. The
/// functions read them through `dynamowave-aws` (`Tables::CONNECTIONS_ENV`, `MESSAGES_ENV`,
/// `ROOMS_ENV`, `CONNECTIONS_ENDPOINT_ENV`), which this command does not link: only the
/// adapters and the Lambda binaries link the AWS SDK. Lambda mode's end-to-end tests
/// (crates/aws/tests/lambda_mode.rs) run the functions with these.
const CONNECTIONS_TABLE_ENV: &str = "CONNECTIONS_TABLE";
const MESSAGES_TABLE_ENV: &str = "MESSAGES_TABLE";
const ROOMS_TABLE_ENV: &str = "ROOMS_TABLE";
const CONNECTIONS_ENDPOINT_ENV: &str = "DYNAMOWAVE_CONNECTIONS_ENDPOINT";

/// `DIR/NAME/bootstrap` (cargo lambda's layout) or `DIR/NAME` (a plain cargo build).
fn find_bootstrap(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    for candidate in [dir.join(name).join("bootstrap"), dir.join(name)] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "no `{name}` binary in {} (expected {name}/bootstrap or {name}); build them with \
         `cargo lambda build -p dynamowave-lambda` or `cargo build -p dynamowave-lambda`",
        dir.display()
    )
}

pub async fn run(args: ServeArgs, jwt: Option<JwtVerification>) -> anyhow::Result<()> {
    let settings = args.gateway_settings()?;
    let authorizer_env = jwt.as_ref().map(JwtVerification::authorizer_env);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let mut env = vec![
        (CONNECTIONS_TABLE_ENV.to_string(), args.connections_table.clone()),
        (MESSAGES_TABLE_ENV.to_string(), args.messages_table.clone()),
        (ROOMS_TABLE_ENV.to_string(), args.rooms_table.clone()),
        (CONNECTIONS_ENDPOINT_ENV.to_string(), format!("http://{addr}/{}", args.stage)),
    ];
    if let (Some(id), Some(secret)) = (&args.management_access_key_id, &args.management_secret_access_key) {
        // The functions sign their `@connections` calls with their credentials, as with an
        // execution role on AWS: give them the keys the management API accepts.
        env.push(("AWS_ACCESS_KEY_ID".to_string(), id.clone()));
        env.push(("AWS_SECRET_ACCESS_KEY".to_string(), secret.clone()));
        // Their signatures must be scoped to the region the gateway checks.
        env.push(("AWS_REGION".to_string(), settings.management.region.clone()));
        env.push(("AWS_DEFAULT_REGION".to_string(), settings.management.region.clone()));
    } else {
        for (k, default) in [("AWS_ACCESS_KEY_ID", "local"), ("AWS_SECRET_ACCESS_KEY", "local")] {
            if std::env::var_os(k).is_none() {
                env.push((k.to_string(), default.to_string()));
            }
        }
    }
    let mut names: Vec<&str> = Function::ALL.iter().map(|f| f.name()).collect();
    if authorizer_env.is_some() {
        names.push("authorizer");
    }
    let mut functions = Vec::new();
    for name in &names {
        let mut f = LambdaFunction::new(*name, find_bootstrap(&args.lambda_dir, name)?);
        f.env = env.clone();
        if matches!(*name, "connect" | "authorizer") {
            // The gateway refuses foreign origins before `$connect`; the functions check again,
            // as they do on AWS, with the same list.
            f.env.push((AllowedOrigins::ALLOWED_ORIGINS_ENV.to_string(), args.allowed_origins.join(",")));
        }
        if *name == "authorizer"
            && let Some(authorizer_env) = &authorizer_env
        {
            f.env.extend(authorizer_env.iter().cloned());
        }
        f.timeout = Duration::from_secs(args.lambda_timeout_secs);
        f.concurrency = args.lambda_concurrency.max(1);
        functions.push(f);
    }
    let host = Arc::new(LambdaHost::start(functions).await.context("starting the Lambda host")?);
    // The chat's routes, each to its function's hosted binary.
    let routes = app::route_table(|function| -> anyhow::Result<Arc<dyn Integration>> {
        host.integration(function.name()).with_context(|| format!("function {} is not hosted", function.name()))
    })?;
    let authorizer: Option<Arc<dyn ConnectAuthorizer>> = authorizer_env.as_ref().map(|_| {
        Arc::new(crate::authorizer::LambdaAuthorizer { host: host.clone(), function: "authorizer".into() }) as _
    });
    let gateway = Gateway::on_listener(listener, settings)?;
    let url = format!("ws://{addr}/{}", args.stage);
    println!("DYNAMOWAVE_LISTENING {url}");
    std::io::stdout().flush()?;
    info!(lambda_dir = %args.lambda_dir.display(), functions = ?names, "Lambda mode: routes run the real binaries");
    let served = gateway.serve(app::chat(routes), authorizer).await;
    for f in host.stats().functions {
        info!(function = %f.name, invocations = f.invocations, init = ?f.init_durations, "function stats");
    }
    if let Ok(host) = Arc::try_unwrap(host) {
        host.shutdown().await;
    }
    served?;
    Ok(())
}
