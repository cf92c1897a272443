//! `dynamowave serve --template T`: every WebSocket API of a SAM or CloudFormation template,
//! each on a gateway of its own, its routes to the template's functions (run by the local
//! Lambda host in their runtimes) or to `MOCK` integrations, its `$connect` authorizer, its
//! stage's throttles and its functions' reserved concurrency; the template's tables in
//! DynamoDB. What cannot be served is said once at start and answered as API Gateway answers a
//! broken integration; it never stops the rest.
//!
//! The plan ([`ApiPlan`], [`FunctionPlan`]) is made from the resolved template before anything
//! starts, so `--print-config` prints exactly what would be served.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use dynamowave_apigw::{App, RouteTable};
use dynamowave_auth::DomainNames;
use dynamowave_core::integration::Integration;
use dynamowave_gateway::settings::{AccessLog, AccessLogDestination};
use dynamowave_gateway::{ConnectAuthorizer, Gateway, GatewaySettings};
use dynamowave_lambda_host::{HostSettings, LambdaFunction, LambdaHost, Runtime, RuntimeTools};
use dynamowave_local_ca::{CaOrigin, LocalCa};
use dynamowave_template::{Code, Function, Model, Options, PseudoParameters, Template, WebSocketApi, parse_overrides};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::args::ServeArgs;
use crate::dynamodb::{self, Dynamo};
use crate::mock::{MockIntegration, Unavailable};
use crate::route_settings::StageDefaults;

/// The access log line of a stage whose `AccessLogSettings` has no `Format`: the CLF line
/// API Gateway's console offers for WebSocket APIs.
const DEFAULT_ACCESS_LOG_FORMAT: &str = "$context.identity.sourceIp $context.identity.caller $context.identity.user [$context.requestTime] \"$context.eventType $context.routeKey $context.connectionId\" $context.status $context.requestId";

/// The local CA's directory under the tools dir: kept across runs, so that a browser or a
/// client told to trust it once keeps trusting the gateway.
const LOCAL_CA_DIR: &str = "local-ca";

/// One API as it is served.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiPlan {
    pub logical_id: String,
    pub api_id: String,
    pub stage: String,
    pub route_selection_expression: String,
    /// Throttles and reserved concurrency as the gateway applies them (flags over the stage).
    pub settings: StageDefaults,
    pub routes: Vec<RoutePlan>,
    /// The `$connect` authorizer: its logical id and the function it invokes.
    pub authorizer: Option<AuthorizerPlan>,
    /// Host names the API is reached by on AWS, admitted as this gateway's own (so that the
    /// functions' `@connections` calls through them pass the `Host` check).
    pub domain_names: Vec<String>,
    pub features: ApiFeatures,
}

/// The API Gateway features the template asks for beyond routes and throttles.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiFeatures {
    /// Route keys with a `RouteResponse` (two-way routes): the integration's answer goes back
    /// to the client.
    pub route_responses: Vec<String>,
    /// The authorizer's `IdentitySource`: a `$connect` missing one is refused with 401 before
    /// the authorizer runs.
    pub identity_sources: Vec<String>,
    /// `StageVariables`, for the events' `stageVariables`.
    pub stage_variables: BTreeMap<String, String>,
    /// `AccessLogSettings`: the format and the destination ARN.
    pub access_log: Option<AccessLogPlan>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessLogPlan {
    pub format: Option<String>,
    pub destination_arn: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutePlan {
    pub route_key: String,
    pub logical_id: String,
    pub target: Target,
}

/// What answers a route.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Target {
    /// `AWS_PROXY` to a function of the template (by logical id).
    #[serde(rename_all = "camelCase")]
    Function { function: String },
    /// `MOCK`: the status and the body it answers.
    #[serde(rename_all = "camelCase")]
    Mock { status: u16, body: Option<String> },
    /// Nothing can answer it locally: every invocation fails ("Internal server error").
    #[serde(rename_all = "camelCase")]
    Unavailable { why: String },
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerPlan {
    pub logical_id: String,
    /// The function's logical id, or why there is none (every `$connect` then gets 500).
    #[serde(with = "either_function")]
    pub function: Result<String, String>,
}

/// `{"function": id}` or `{"problem": why}`, flattened into the authorizer's JSON.
mod either_function {
    use serde::Serializer;
    use serde::ser::SerializeMap;

    pub fn serialize<S: Serializer>(value: &Result<String, String>, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        match value {
            Ok(id) => map.serialize_entry("logicalId", id)?,
            Err(why) => map.serialize_entry("problem", why)?,
        }
        map.end()
    }
}

/// A function some route or authorizer reaches.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionPlan {
    pub logical_id: String,
    pub function_name: String,
    pub runtime: Option<String>,
    pub timeout_secs: u64,
    pub memory_size: u64,
    pub reserved_concurrent_executions: Option<u64>,
}

/// Reads and resolves the template with the flags' parameters.
fn resolve(args: &ServeArgs, path: &Path) -> anyhow::Result<Model> {
    let template = Template::from_file(path).with_context(|| format!("reading the template {}", path.display()))?;
    let overrides = parse_overrides(&args.parameter_overrides).context("--parameter-overrides")?;
    let mut pseudo = PseudoParameters::default();
    if let Some(region) = &args.region {
        pseudo.region = region.clone();
    }
    let options = Options { pseudo, parameter_overrides: overrides, ..Options::default() };
    template.resolve(&options).with_context(|| format!("resolving the template {}", path.display()))
}

/// The plan of one API.
fn plan_api(args: &ServeArgs, model: &Model, api: &WebSocketApi) -> anyhow::Result<ApiPlan> {
    let stage = match &args.stage {
        Some(name) => Some(api.stage(name).with_context(|| {
            let names: Vec<_> = api.stages.iter().map(|s| s.stage_name.as_str()).collect();
            format!("--stage {name}: API {} has no such stage (its stages: {})", api.logical_id, names.join(", "))
        })?),
        None => api.stages.first(),
    };
    let mut settings = StageDefaults::from_api(model, api, stage);
    // The flags the user gave win over the template (the same rule as the default `serve`).
    let effective = args.gateway_settings_with(&settings)?;
    settings.default_route = crate::route_settings::BucketJson {
        rate: effective.throttling.default_route.rate,
        burst: effective.throttling.default_route.burst,
    };
    settings.route_settings = effective
        .throttling
        .route_settings
        .iter()
        .map(|(k, b)| (k.clone(), crate::route_settings::BucketJson { rate: b.rate, burst: b.burst }))
        .collect();
    settings.default_concurrency = effective.concurrency.default_route;
    settings.per_route_concurrency = effective.concurrency.per_route.clone().into_iter().collect();
    let routes = api
        .routes
        .iter()
        .map(|route| RoutePlan {
            route_key: route.route_key.clone(),
            logical_id: route.logical_id.clone(),
            target: target_of(model, api, route),
        })
        .collect();
    let connect = api.route("$connect");
    let authorizer = connect.filter(|r| r.authorization_type == "CUSTOM").map(|route| {
        let Some(id) = &route.authorizer else {
            return AuthorizerPlan {
                logical_id: String::new(),
                function: Err(format!("route {} is CUSTOM but names no AuthorizerId", route.logical_id)),
            };
        };
        let function = match api.authorizer(id) {
            None => Err(format!("authorizer {id} is not in the template")),
            Some(a) => match &a.function {
                Some(f) if model.functions.contains_key(f) => Ok(f.clone()),
                _ => Err(format!(
                    "authorizer {id}: its AuthorizerUri ({}) names no function of the template",
                    a.authorizer_uri.as_deref().unwrap_or("none")
                )),
            },
        };
        AuthorizerPlan { logical_id: id.clone(), function }
    });
    let features = ApiFeatures {
        route_responses: api
            .route_responses
            .iter()
            .filter_map(|rr| api.routes.iter().find(|r| r.logical_id == rr.route).map(|r| r.route_key.clone()))
            .collect(),
        identity_sources: authorizer
            .as_ref()
            .and_then(|a| api.authorizer(&a.logical_id))
            .map(|a| a.identity_source.clone())
            .unwrap_or_default(),
        stage_variables: stage.map(|s| s.stage_variables.clone()).unwrap_or_default(),
        access_log: stage
            .and_then(|s| s.access_log_settings.as_ref())
            .map(|a| AccessLogPlan { format: a.format.clone(), destination_arn: a.destination_arn.clone() }),
    };
    let region = &model.pseudo_parameters.region;
    let mut domain_names = vec![format!("{}.execute-api.{region}.{}", api.api_id, model.pseudo_parameters.url_suffix)];
    if let Some(host) = api.api_endpoint.split("://").nth(1).map(|h| h.trim_end_matches('/').to_string())
        && !domain_names.contains(&host)
    {
        domain_names.push(host);
    }
    Ok(ApiPlan {
        logical_id: api.logical_id.clone(),
        api_id: api.api_id.clone(),
        stage: effective.stage,
        route_selection_expression: api.route_selection_expression.clone(),
        settings,
        routes,
        authorizer,
        domain_names,
        features,
    })
}

fn target_of(model: &Model, api: &WebSocketApi, route: &dynamowave_template::Route) -> Target {
    let unavailable = |why: String| Target::Unavailable { why };
    let Some(id) = &route.integration else {
        return unavailable(format!("route {} ({}) has no integration (Target)", route.logical_id, route.route_key));
    };
    let Some(integration) = api.integration(id) else {
        return unavailable(format!("route {}: integration {id} is not in the template", route.logical_id));
    };
    match integration.integration_type.as_str() {
        "AWS_PROXY" => match &integration.function {
            Some(f) if model.functions.contains_key(f) => Target::Function { function: f.clone() },
            _ => unavailable(format!(
                "integration {id}: its IntegrationUri ({}) names no function of the template",
                integration.integration_uri.as_deref().unwrap_or("none")
            )),
        },
        "MOCK" => {
            let responses: Vec<_> = api.integration_responses.iter().filter(|r| r.integration == *id).collect();
            let mock = MockIntegration::new(integration, &responses);
            Target::Mock { status: mock.status(), body: mock.body().map(str::to_string) }
        }
        other => unavailable(format!(
            "integration {id}: IntegrationType {other} is not emulated locally (AWS_PROXY to a function of the template and MOCK are)"
        )),
    }
}

/// The functions the plans reach, in logical-id order.
fn reached_functions<'m>(model: &'m Model, plans: &[ApiPlan]) -> Vec<&'m Function> {
    let mut ids: Vec<&str> = plans
        .iter()
        .flat_map(|p| {
            let routes = p.routes.iter().filter_map(|r| match &r.target {
                Target::Function { function } => Some(function.as_str()),
                _ => None,
            });
            routes.chain(p.authorizer.as_ref().and_then(|a| a.function.as_ref().ok()).map(String::as_str))
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter().filter_map(|id| model.functions.get(id)).collect()
}

/// `--print-config`'s JSON.
fn config_json(model: &Model, plans: &[ApiPlan]) -> serde_json::Value {
    let functions: Vec<FunctionPlan> = reached_functions(model, plans)
        .into_iter()
        .map(|f| FunctionPlan {
            logical_id: f.logical_id.clone(),
            function_name: f.function_name.clone(),
            runtime: f.runtime.clone(),
            timeout_secs: f.timeout,
            memory_size: f.memory_size,
            reserved_concurrent_executions: f.reserved_concurrent_executions,
        })
        .collect();
    serde_json::json!({ "template": model.to_json(), "apis": plans, "functions": functions })
}

/// `--env-vars`: SAM's file, function logical id (or `Parameters`, for all) → variables.
fn read_env_vars(path: Option<&PathBuf>) -> anyhow::Result<BTreeMap<String, BTreeMap<String, String>>> {
    let Some(path) = path else { return Ok(BTreeMap::new()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading --env-vars {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("--env-vars {}: not JSON", path.display()))?;
    let mut out = BTreeMap::new();
    let Some(entries) = value.as_object() else {
        bail!("--env-vars {}: expected an object of function logical ids", path.display());
    };
    for (function, vars) in entries {
        let Some(vars) = vars.as_object() else {
            bail!("--env-vars {}: {function} is not an object of variables", path.display());
        };
        let vars = vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
            .collect();
        out.insert(function.clone(), vars);
    }
    Ok(out)
}

/// A `rust-cargolambda` function's binary: prebuilt in `--lambda-dir`, else built with
/// `cargo lambda build` (or `cargo build` without cargo-lambda) in its `CodeUri`.
fn rust_binary(args: &ServeArgs, f: &Function, code_dir: &Path) -> anyhow::Result<PathBuf> {
    let binary = f
        .build_properties
        .as_ref()
        .and_then(|p| p.get("Binary"))
        .and_then(|b| b.as_str())
        .unwrap_or(&f.logical_id)
        .to_string();
    for name in [binary.as_str(), f.logical_id.as_str(), f.function_name.as_str()] {
        for candidate in [args.lambda_dir.join(name).join("bootstrap"), args.lambda_dir.join(name)] {
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    let cargo = std::env::var_os("CARGO").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("cargo"));
    let has_cargo_lambda = which_cargo_lambda();
    eprintln!(
        "function {}: no prebuilt `{binary}` in {}; building it with `cargo {}build --bin {binary}` in {} …",
        f.logical_id,
        args.lambda_dir.display(),
        if has_cargo_lambda { "lambda " } else { "" },
        code_dir.display()
    );
    let mut cmd = std::process::Command::new(&cargo);
    if has_cargo_lambda {
        cmd.args(["lambda", "build", "--bin", &binary]);
    } else {
        cmd.args(["build", "--bin", &binary, "--message-format=json-render-diagnostics"]);
    }
    cmd.current_dir(code_dir).stderr(std::process::Stdio::inherit());
    let output = cmd.output().with_context(|| format!("function {}: running {}", f.logical_id, cargo.display()))?;
    if !output.status.success() {
        bail!("function {}: `cargo build --bin {binary}` failed ({})", f.logical_id, output.status);
    }
    if has_cargo_lambda {
        let target = target_dir(&cargo, code_dir)?;
        let path = target.join("lambda").join(&binary).join("bootstrap");
        return if path.is_file() {
            Ok(path)
        } else {
            bail!("function {}: cargo lambda built no {}", f.logical_id, path.display())
        };
    }
    // The executable cargo reports for the binary.
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == binary.as_str())
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("function {}: cargo built no executable `{binary}`", f.logical_id))
}

fn which_cargo_lambda() -> bool {
    std::process::Command::new("cargo")
        .args(["lambda", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn target_dir(cargo: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(dir)
        .output()
        .context("cargo metadata")?;
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).context("cargo metadata's output")?;
    meta["target_directory"].as_str().map(PathBuf::from).context("cargo metadata names no target directory")
}

/// The hosted function for `f`, with `env` on top of the template's variables.
fn lambda_function(
    args: &ServeArgs,
    tools: &RuntimeTools,
    f: &Function,
    env: &[(String, String)],
    overrides: &BTreeMap<String, BTreeMap<String, String>>,
) -> anyhow::Result<LambdaFunction> {
    let runtime_id = f.runtime.as_deref().with_context(|| format!("function {}: no Runtime", f.logical_id))?;
    let runtime = Runtime::parse(runtime_id).with_context(|| format!("function {}", f.logical_id))?;
    let code_dir = match &f.code {
        // Already joined to the template's directory by the template crate.
        Code::Local { path, .. } => path.clone(),
        Code::Inline { .. } => bail!("function {}: inline code is not run locally: give it a CodeUri", f.logical_id),
        Code::Image { .. } => bail!("function {}: a container image is not run locally (no Docker here)", f.logical_id),
    };
    if !code_dir.exists() {
        bail!("function {}: its CodeUri {} does not exist", f.logical_id, code_dir.display());
    }
    // Absolute, because the runtimes start in the code directory: a path relative to ours
    // (`serve --template app/template.yaml`) would be resolved again from there.
    let code_dir = std::fs::canonicalize(&code_dir)
        .with_context(|| format!("function {}: its CodeUri {}", f.logical_id, code_dir.display()))?;
    let progress = |line: &str| eprintln!("function {}: {line}", f.logical_id);
    let mut lambda = if f.build_method.as_deref() == Some("rust-cargolambda") && matches!(runtime, Runtime::Provided(_))
    {
        let binary = rust_binary(args, f, &code_dir)?;
        let mut l = LambdaFunction::new(f.function_name.clone(), binary);
        l.handler = f.handler.clone();
        l.execution_env = Some(runtime.execution_env());
        l
    } else {
        tools
            .function(&f.function_name, &runtime, &code_dir, f.handler.as_deref(), &progress)
            .with_context(|| format!("function {}", f.logical_id))?
    };
    lambda.env.extend(f.environment.iter().map(|(k, v)| (k.clone(), v.clone())));
    lambda.env.extend(env.iter().cloned());
    lambda.env.push(("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), f.memory_size.to_string()));
    for key in ["Parameters", f.logical_id.as_str()] {
        if let Some(vars) = overrides.get(key) {
            lambda.env.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    lambda.timeout = Duration::from_secs(f.timeout.max(1));
    // Past its reservation a function is throttled; without one it draws on the account's
    // pool, with at most `--lambda-concurrency` processes here (the host's machine-sized cap
    // when not given) and invocations waiting for one, as Lambda would start another.
    lambda.reserved_concurrency = f.reserved_concurrent_executions.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    if let Some(n) = args.lambda_concurrency {
        lambda.concurrency = n.max(1);
    }
    Ok(lambda)
}

/// The listener of API `index`: the first on --listen, the next ones on the ports after it
/// (or each on a free port when --listen's port is 0).
async fn bind(listen: SocketAddr, index: usize) -> anyhow::Result<TcpListener> {
    let mut addr = listen;
    if listen.port() != 0 {
        let port = u16::try_from(usize::from(listen.port()) + index).context("no port left after --listen's")?;
        addr.set_port(port);
    }
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let path = args.template.clone().context("--template is required in template mode")?;
    let model = resolve(&args, &path)?;
    if model.websocket_apis.is_empty() {
        bail!("the template {} declares no WebSocket API", path.display());
    }
    let plans =
        model.websocket_apis.iter().map(|api| plan_api(&args, &model, api)).collect::<anyhow::Result<Vec<_>>>()?;
    if args.print_config {
        println!("{}", serde_json::to_string_pretty(&config_json(&model, &plans))?);
        return Ok(());
    }
    report_not_emulated(&model);
    let overrides = read_env_vars(args.env_vars.as_ref())?;
    let tools_dir = dynamodb::tools_dir(args.tools_dir.as_ref());

    let mut listeners = Vec::new();
    for index in 0..plans.len() {
        listeners.push(bind(args.listen, index).await?);
    }

    let dynamo = if model.tables.is_empty() && args.dynamodb_endpoint.is_none() {
        None
    } else {
        let dynamo =
            Dynamo::connect(args.dynamodb_endpoint.clone(), args.dynamodb_data_dir.clone(), &tools_dir).await?;
        dynamo.ensure_tables(model.tables.values()).await?;
        Some(dynamo)
    };

    let region = model.pseudo_parameters.region.clone();
    let mut env = vec![("AWS_REGION".to_string(), region.clone()), ("AWS_DEFAULT_REGION".to_string(), region.clone())];
    if let Some(d) = &dynamo {
        env.push((dynamodb::ENDPOINT_ENV.to_string(), d.endpoint.clone()));
    }
    match (&args.management_access_key_id, &args.management_secret_access_key) {
        (Some(id), Some(secret)) => {
            env.push(("AWS_ACCESS_KEY_ID".into(), id.clone()));
            env.push(("AWS_SECRET_ACCESS_KEY".into(), secret.clone()));
        }
        // Dummy credentials: the SDKs refuse to sign without some, and nothing here checks them.
        _ => {
            env.push(("AWS_ACCESS_KEY_ID".into(), "local".into()));
            env.push(("AWS_SECRET_ACCESS_KEY".into(), "local".into()));
        }
    }
    // `wss://` and `https://` on each API's own port, with a certificate of the local CA, so that
    // functions that build their `@connections` client from `https://{domainName}/{stage}` or
    // from the API's execute-api host name reach this gateway.
    let ca = LocalCa::load_or_create(tools_dir.join(LOCAL_CA_DIR)).context("the local CA for TLS")?;
    match ca.origin() {
        CaOrigin::Loaded => {}
        CaOrigin::Created => eprintln!("local CA created: {}", ca.ca_pem_path().display()),
        CaOrigin::Regenerated(why) => eprintln!(
            "local CA replaced ({why}): {} — trust the new certificate where you trusted the old one",
            ca.ca_pem_path().display()
        ),
    }
    let tools = RuntimeTools::new(tools_dir);
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    let mut functions = Vec::new();
    for f in reached_functions(&model, &plans) {
        match lambda_function(&args, &tools, f, &env, &overrides) {
            Ok(l) => functions.push(l),
            Err(e) => {
                let why = format!("{e:#}");
                eprintln!("not served: {why}");
                failed.insert(f.logical_id.clone(), why);
            }
        }
    }
    // The functions trust the local CA, and their calls to an API's AWS host names reach its
    // listener here.
    let mut host_map = Vec::new();
    for (plan, listener) in plans.iter().zip(&listeners) {
        let addr = listener.local_addr()?;
        host_map.extend(plan.domain_names.iter().map(|name| (name.clone(), addr)));
    }
    let host_settings =
        HostSettings { region: region.clone(), ca_bundle: Some(ca.ca_pem_path()), host_map, ..HostSettings::default() };
    let host = Arc::new(LambdaHost::start_with(functions, host_settings).await.context("starting the Lambda host")?);

    let mut gateways = Vec::new();
    let mut lines = Vec::new();
    for (plan, listener) in plans.iter().zip(listeners) {
        let addr = listener.local_addr()?;
        let tls = tls_config(&ca, plan)?;
        let settings = gateway_settings(&args, plan, addr, Some(tls))?;
        let mut routes = RouteTable::new();
        for route in &plan.routes {
            routes.insert(route.route_key.clone(), integration_for(&model, &host, &failed, route, &plan.api_id));
        }
        let authorizer: Option<Arc<dyn ConnectAuthorizer>> = plan.authorizer.as_ref().map(|a| {
            // A broken authorizer names no hosted function: the host then fails every
            // `$connect` (500), as API Gateway does when its authorizer cannot run.
            let function = a
                .function
                .as_ref()
                .ok()
                .and_then(|id| model.functions.get(id))
                .filter(|f| !failed.contains_key(&f.logical_id))
                .map(|f| f.function_name.clone())
                .unwrap_or_default();
            Arc::new(crate::authorizer::LambdaAuthorizer { host: host.clone(), function }) as _
        });
        let url = format!("ws://{addr}/{}", plan.stage);
        print_plan(&model, plan, &url, &failed);
        lines.push(if plans.len() > 1 { format!("{url} {}", plan.logical_id) } else { url });
        gateways.push((Gateway::on_listener(listener, settings)?, App::new(routes), authorizer));
    }
    for line in lines {
        println!("DYNAMOWAVE_LISTENING {line}");
    }
    std::io::stdout().flush()?;

    let mut served = tokio::task::JoinSet::new();
    for (gateway, app, authorizer) in gateways {
        served.spawn(gateway.serve(app, authorizer));
    }
    let mut result = Ok(());
    while let Some(done) = served.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(anyhow::Error::from(e)),
            Err(e) => result = Err(anyhow::anyhow!("a gateway task failed: {e}")),
        }
    }
    if let Ok(host) = Arc::try_unwrap(host) {
        host.shutdown().await;
    }
    if let Some(d) = dynamo {
        d.stop().await;
    }
    result
}

fn integration_for(
    model: &Model,
    host: &LambdaHost,
    failed: &BTreeMap<String, String>,
    route: &RoutePlan,
    api_id: &str,
) -> Arc<dyn Integration> {
    match &route.target {
        Target::Function { function } => {
            if let Some(why) = failed.get(function) {
                return Arc::new(Unavailable { why: why.clone() });
            }
            let name = model.functions.get(function).map(|f| f.function_name.as_str()).unwrap_or(function);
            host.integration(name).unwrap_or_else(|| {
                Arc::new(Unavailable { why: format!("API {api_id}: function {function} is not hosted") })
            })
        }
        Target::Mock { status, body } => Arc::new(MockIntegration::answering(*status, body.clone())),
        Target::Unavailable { why } => Arc::new(Unavailable { why: why.clone() }),
    }
}

/// The gateway's settings for one API: the flags over its stage, its id, expression and names.
fn gateway_settings(
    args: &ServeArgs,
    plan: &ApiPlan,
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> anyhow::Result<GatewaySettings> {
    let mut settings = args.gateway_settings_with(&plan.settings)?;
    settings.listen = addr;
    settings.stage = plan.stage.clone();
    settings.api_id = plan.api_id.clone();
    settings.route_selection_expression = plan.route_selection_expression.clone();
    let mut names = args.domain_names.clone();
    names.extend(plan.domain_names.iter().cloned());
    settings.origins.domain_names = DomainNames::new(&names).context("the API's domain names")?;
    let f = &plan.features;
    settings.two_way_routes = f.route_responses.iter().cloned().collect();
    settings.authorizer_identity_source = f.identity_sources.clone();
    settings.stage_variables = f.stage_variables.clone().into_iter().collect();
    settings.access_log = f.access_log.as_ref().map(|log| AccessLog {
        // API Gateway's console suggests the CLF line; a stage without a format logs that.
        format: log.format.clone().unwrap_or_else(|| DEFAULT_ACCESS_LOG_FORMAT.to_string()),
        destination: match &args.access_log_file {
            Some(path) => AccessLogDestination::File(path.clone()),
            None => AccessLogDestination::Stderr,
        },
    });
    settings.tls = tls;
    Ok(settings)
}

/// A certificate for the names an API is reached by locally: loopback, and its AWS host names.
fn tls_config(ca: &LocalCa, plan: &ApiPlan) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(str::to_string).to_vec();
    names.extend(plan.domain_names.iter().filter(|n| dynamowave_local_ca::permits(n)).cloned());
    let config = ca.server_config(&names).with_context(|| format!("a TLS certificate for API {}", plan.logical_id))?;
    Ok(Arc::new(config))
}

fn report_not_emulated(model: &Model) {
    if !model.ignored.is_empty() {
        let list: Vec<_> = model.ignored.iter().map(|s| format!("{} ({})", s.logical_id, s.resource_type)).collect();
        eprintln!("not emulated ({}): {}", list.len(), list.join(", "));
    }
    if !model.absent.is_empty() {
        let list: Vec<_> = model
            .absent
            .iter()
            .map(|s| format!("{} (Condition {} is false)", s.logical_id, s.condition.as_deref().unwrap_or("?")))
            .collect();
        eprintln!("absent: {}", list.join(", "));
    }
    for warning in &model.warnings {
        eprintln!("warning: {warning}");
    }
}

fn print_plan(model: &Model, plan: &ApiPlan, url: &str, failed: &BTreeMap<String, String>) {
    let s = &plan.settings;
    eprintln!("API {} ({}) on {url}", plan.logical_id, plan.api_id);
    eprintln!("  route selection: {}", plan.route_selection_expression);
    eprintln!("  throttle: every route {}/s burst {}", s.default_route.rate, s.default_route.burst);
    for (key, b) in &s.route_settings {
        eprintln!("  throttle: {key} {}/s burst {}", b.rate, b.burst);
    }
    for route in &plan.routes {
        let target = match &route.target {
            Target::Function { function } => {
                let name = model.functions.get(function).map(|f| f.function_name.as_str()).unwrap_or("");
                match failed.get(function) {
                    Some(why) => format!("function {function} — NOT SERVED: {why}"),
                    None => format!("function {function} ({name})"),
                }
            }
            Target::Mock { status, .. } => format!("MOCK {status}"),
            Target::Unavailable { why } => format!("NOT SERVED: {why}"),
        };
        let concurrency = s.per_route_concurrency.get(&route.route_key).copied().unwrap_or(s.default_concurrency);
        eprintln!("  route {} → {target}, concurrency {concurrency}", route.route_key);
    }
    if let Some(a) = &plan.authorizer {
        match &a.function {
            Ok(f) => eprintln!("  $connect authorizer {} → function {f}", a.logical_id),
            Err(why) => eprintln!("  $connect authorizer — NOT SERVED (every $connect gets 500): {why}"),
        }
    }
    let f = &plan.features;
    if !f.route_responses.is_empty() {
        eprintln!("  two-way routes: {}", f.route_responses.join(", "));
    }
    if !f.identity_sources.is_empty() {
        eprintln!("  identity sources (401 when missing): {}", f.identity_sources.join(", "));
    }
    if !f.stage_variables.is_empty() {
        eprintln!("  stage variables: {}", f.stage_variables.keys().cloned().collect::<Vec<_>>().join(", "));
    }
    if f.access_log.is_some() {
        eprintln!("  access log: on");
    }
    for table in model.tables.values() {
        eprintln!("  table {} ({})", table.logical_id, table.table_name);
    }
}
