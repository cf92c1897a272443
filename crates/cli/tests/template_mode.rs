//! `dynamowave serve --template`, black-box: the real binary reads a template and serves its
//! WebSocket APIs; real WebSocket clients; our chat's real Lambda binaries on DynamoDB Local;
//! broken templates answered as API Gateway answers a broken integration.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dynamowave_testkit::binary::mint_token;
use dynamowave_testkit::temp::tools_dir;
use dynamowave_testkit::ws::Client;
use serde_json::{Value, json};

/// The repository's root (the binary ships `infra/template.yaml` from it).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `dynamowave serve --template …` until its `DYNAMOWAVE_LISTENING` lines, with stderr kept.
struct Served {
    child: Child,
    urls: Vec<String>,
    stderr: std::sync::Arc<parking_lot::Mutex<String>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dynamowave"));
    cmd.arg("serve").args(args).arg("--tools-dir").arg(tools_dir());
    cmd.env("RUST_LOG", std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()));
    cmd.env_remove("AWS_ENDPOINT_URL_DYNAMODB");
    cmd
}

fn serve(args: &[&str], apis: usize) -> Served {
    let mut cmd = command(args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    serve_command(cmd, apis)
}

/// Spawns `cmd` (stdout and stderr piped) and waits for `apis` listening lines.
fn serve_command(mut cmd: Command, apis: usize) -> Served {
    let mut child = cmd.spawn().expect("spawn dynamowave");
    let stderr = std::sync::Arc::new(parking_lot::Mutex::new(String::new()));
    let err_pipe = child.stderr.take().expect("stderr");
    let sink = stderr.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
            if std::env::var_os("TEST_LOG").is_some() {
                eprintln!("{line}");
            }
            sink.lock().push_str(&(line + "\n"));
        }
    });
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut urls = Vec::new();
    while urls.len() < apis {
        let Some(Ok(line)) = lines.next() else {
            panic!("the server exited before listening; stderr:\n{}", stderr.lock());
        };
        if let Some(rest) = line.strip_prefix("DYNAMOWAVE_LISTENING ") {
            urls.push(rest.to_string());
        }
    }
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Served { child, urls, stderr }
}

fn print_config(template: &Path, extra: &[&str]) -> Value {
    let out = command(&["--template", template.to_str().expect("utf-8 path"), "--print-config"])
        .args(extra)
        .output()
        .expect("run dynamowave");
    assert!(out.status.success(), "--print-config failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("--print-config prints JSON")
}

#[test]
fn print_config_shows_our_templates_stage_throttles_concurrency_and_authorizer() {
    let config = print_config(&repo().join("infra/template.yaml"), &[]);
    let api = &config["apis"][0];
    assert_eq!(api["logicalId"], "WebSocketApi");
    assert_eq!(api["stage"], "production", "the template's StageName default");
    assert_eq!(api["settings"]["defaultRoute"], json!({"rate": 1000.0, "burst": 500}));
    assert_eq!(api["settings"]["routeSettings"]["sendmessage"], json!({"rate": 100.0, "burst": 200}));
    assert_eq!(api["settings"]["perRouteConcurrency"]["sendmessage"], 100);
    assert_eq!(api["settings"]["perRouteConcurrency"]["$connect"], 50);
    assert_eq!(api["authorizer"]["function"]["logicalId"], "AuthorizerFunction");
    assert_eq!(api["features"]["identitySources"], json!(["route.request.querystring.token"]));
    let send =
        api["routes"].as_array().expect("routes").iter().find(|r| r["routeKey"] == "sendmessage").expect("sendmessage");
    assert_eq!(send["target"], json!({"kind": "function", "function": "SendMessageFunction"}));
    assert!(
        api["domainNames"]
            .as_array()
            .expect("names")
            .contains(&json!("websocketapi.execute-api.us-east-1.amazonaws.com"))
    );
    let tables = config["template"]["tables"].as_object().expect("tables");
    assert_eq!(tables.len(), 3, "{tables:?}");
    // The template's own values, as the model has them, agree with what is applied.
    let stage = &config["template"]["websocketApis"][0]["stages"][0];
    assert_eq!(stage["defaultRouteSettings"]["throttlingRateLimit"], 1000.0);

    // Overrides and flags: the parameter changes the model, the flag wins over the template.
    let config = print_config(
        &repo().join("infra/template.yaml"),
        &["--parameter-overrides", "StageName=dev", "SendMessageReservedConcurrency=7", "--stage-rate", "3"],
    );
    let api = &config["apis"][0];
    assert_eq!(api["stage"], "dev");
    assert_eq!(api["settings"]["perRouteConcurrency"]["sendmessage"], 7);
    assert_eq!(api["settings"]["defaultRoute"]["rate"], 3.0);
}

/// A free loopback port: the test checks the URL the server prints against it.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn mint(secret: &str, sub: &str, name: &str) -> String {
    mint_token(secret, sub, &["--name", name, "--aud", "dynamowave", "--iss", "dynamowave"])
}

/// Our own template, served as it is deployed: the chat's real Lambda binaries (built beside
/// this binary by `cargo build -p dynamowave-lambda`), its authorizer, its stage and its
/// tables in DynamoDB Local.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_template_runs_the_chat_functions_with_its_authorizer() {
    const SECRET: &str = "template-mode-test-secret-0123456789abcdef";
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_dynamowave")).parent().expect("bin dir").to_path_buf();
    for name in ["connect", "disconnect", "sendmessage", "default", "authorizer"] {
        assert!(
            bin_dir.join(name).is_file(),
            "no {name} in {}: run `cargo build -p dynamowave-lambda`",
            bin_dir.display()
        );
    }
    let dir = tempfile::tempdir().expect("temp dir");
    // The authorizer reads its secret from Secrets Manager on AWS; here it is given directly.
    let env_vars = dir.path().join("env.json");
    std::fs::write(&env_vars, json!({"AuthorizerFunction": {"JWT_SECRET_ARN": "", "JWT_SECRET": SECRET}}).to_string())
        .expect("env.json");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let template = repo().join("infra/template.yaml");
    let served = serve(
        &[
            "--template",
            template.to_str().expect("utf-8"),
            "--listen",
            &listen,
            "--lambda-dir",
            bin_dir.to_str().expect("utf-8"),
            "--env-vars",
            env_vars.to_str().expect("utf-8"),
        ],
        1,
    );
    let url = &served.urls[0];
    assert_eq!(url, &format!("ws://{listen}/production"), "the template's stage");
    // No token: the authorizer says 401.
    match Client::connect(url, true).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 401),
        Err(e) => panic!("expected HTTP 401, got {e}"),
        Ok(_) => panic!("a connection without a token was accepted"),
    }
    let mut clients = Vec::new();
    for name in ["Ada", "Bob", "Cy"] {
        let token = mint(SECRET, &name.to_lowercase(), name);
        let c = Client::connect(&format!("{url}?token={token}"), true)
            .await
            .unwrap_or_else(|e| panic!("{name} connects: {e}; stderr:\n{}", served.stderr.lock()));
        clients.push(c);
    }
    for c in &mut clients {
        c.send(json!({"action": "join", "room": "ops"})).await;
        let joined = c.recv_event("joined").await;
        assert_eq!(joined["room"], "ops", "{joined}");
    }
    // Presence events of later joiners may arrive first: look for the message itself.
    clients[0].send(json!({"action": "sendmessage", "room": "ops", "message": "hello from Ada", "id": "a1"})).await;
    for c in clients.iter_mut().skip(1) {
        let m = c.recv_event("message").await;
        assert_eq!((m["from"].as_str(), m["text"].as_str()), (Some("Ada"), Some("hello from Ada")), "{m}");
    }
}

/// A template whose `$connect` is a MOCK and whose other routes are broken in each way.
const BROKEN: &str = include_str!("templates/broken.yaml");

fn write_script(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
    std::fs::write(path, text).expect("write");
    let mut perms = std::fs::metadata(path).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(path, perms).expect("chmod");
}

async fn expect_internal_error(c: &mut Client, action: &str) {
    c.send(json!({"action": action})).await;
    let frame = c.recv_json().await;
    assert_eq!(frame["message"], "Internal server error", "{action}: {frame}");
}

/// Each broken route is named at start and answered "Internal server error"; the rest of the
/// API is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_routes_are_named_and_answered_as_api_gateway_does() {
    let dir = tempfile::tempdir().expect("temp dir");
    let template = dir.path().join("template.yaml");
    std::fs::write(&template, BROKEN).expect("template");
    std::fs::create_dir_all(dir.path().join("java")).expect("java dir");
    write_script(&dir.path().join("crash/bootstrap"), "#!/bin/sh\necho dying at init >&2\nexit 3\n");
    // Takes its event, then never answers.
    write_script(
        &dir.path().join("slow/bootstrap"),
        "#!/bin/sh\ncurl -s \"http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/invocation/next\" >/dev/null\nsleep 60\n",
    );
    let served = serve(&["--template", template.to_str().expect("utf-8"), "--listen", "127.0.0.1:0"], 1);
    let url = served.urls[0].clone();
    assert!(url.ends_with("/test"), "{url}");
    let mut c = Client::connect(&url, false).await.expect("the MOCK $connect admits");
    expect_internal_error(&mut c, "nothing").await;
    expect_internal_error(&mut c, "java").await;
    expect_internal_error(&mut c, "crash").await;
    expect_internal_error(&mut c, "slow").await;
    // Still served after all that.
    expect_internal_error(&mut c, "nothing").await;
    let stderr = served.stderr.lock().clone();
    for name in ["NoIntegrationRoute", "JavaFunction", "java21"] {
        assert!(stderr.contains(name), "{name} is not named at start:\n{stderr}");
    }
}

/// A template that cannot be resolved is refused with the resource and property named.
#[test]
fn an_unknown_intrinsic_or_a_missing_code_uri_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (text, expected) in [
        (
            "Resources:\n  Api:\n    Type: AWS::ApiGatewayV2::Api\n    Properties: {Name: !Foo x, ProtocolType: WEBSOCKET}\n",
            "Fn::Foo",
        ),
        (
            "Transform: AWS::Serverless-2016-10-31\nResources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties: {Runtime: provided.al2023, Handler: bootstrap}\n",
            "Fn",
        ),
    ] {
        let path = dir.path().join("t.yaml");
        std::fs::write(&path, text).expect("write");
        let out = command(&["--template", path.to_str().expect("utf-8")]).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(stderr.contains(expected) && !stderr.contains("panicked"), "{stderr}");
    }
}

/// Two APIs of one template, each on its own port: composite route selection, a two-way MOCK
/// route answering from its integration response, the stage's variables, an identity source
/// checked before the authorizer, and the access log.
const TWO_APIS: &str = r#"
AWSTemplateFormatVersion: "2010-09-09"
Resources:
  EchoApi:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      Name: echo
      ProtocolType: WEBSOCKET
      RouteSelectionExpression: "${request.body.service}/${request.body.action}"
  PingRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref EchoApi
      RouteKey: chat/ping
      RouteResponseSelectionExpression: $default
      Target: !Sub "integrations/${PingIntegration}"
  PingRouteResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties:
      ApiId: !Ref EchoApi
      RouteId: !Ref PingRoute
      RouteResponseKey: $default
  PingIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref EchoApi
      IntegrationType: MOCK
      RequestTemplates:
        $default: '{"statusCode": 200}'
  PingIntegrationResponse:
    Type: AWS::ApiGatewayV2::IntegrationResponse
    Properties:
      ApiId: !Ref EchoApi
      IntegrationId: !Ref PingIntegration
      IntegrationResponseKey: $default
      ResponseTemplates:
        $default: '{"pong": true}'
  OneWayRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref EchoApi
      RouteKey: chat/quiet
      Target: !Sub "integrations/${PingIntegration}"
  EchoStage:
    Type: AWS::ApiGatewayV2::Stage
    Properties:
      ApiId: !Ref EchoApi
      StageName: dev
      StageVariables:
        color: blue
      AccessLogSettings:
        DestinationArn: arn:aws:logs:us-east-1:123456789012:log-group:echo
        Format: '{"requestId":"$context.requestId","routeKey":"$context.routeKey","status":"$context.status"}'
  GuardedApi:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      Name: guarded
      ProtocolType: WEBSOCKET
      RouteSelectionExpression: $request.body.action
  GuardedConnect:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref GuardedApi
      RouteKey: $connect
      AuthorizationType: CUSTOM
      AuthorizerId: !Ref GuardedAuthorizer
      Target: !Sub "integrations/${GuardedIntegration}"
  GuardedIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref GuardedApi
      IntegrationType: MOCK
      RequestTemplates:
        $default: '{"statusCode": 200}'
  GuardedAuthorizer:
    Type: AWS::ApiGatewayV2::Authorizer
    Properties:
      ApiId: !Ref GuardedApi
      Name: guard
      AuthorizerType: REQUEST
      AuthorizerUri: arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:elsewhere/invocations
      IdentitySource:
        - route.request.querystring.token
  GuardedStage:
    Type: AWS::ApiGatewayV2::Stage
    Properties:
      ApiId: !Ref GuardedApi
      StageName: live
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apis_with_route_responses_identity_sources_and_an_access_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let template = dir.path().join("template.yaml");
    std::fs::write(&template, TWO_APIS).expect("template");
    let access_log = dir.path().join("access.log");
    let config = print_config(&template, &[]);
    let apis = config["apis"].as_array().expect("apis");
    assert_eq!(apis.len(), 2, "{config}");
    let served = serve(
        &[
            "--template",
            template.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:0",
            "--access-log-file",
            access_log.to_str().expect("utf-8"),
        ],
        2,
    );
    let (echo, guarded) = {
        let find = |id: &str| {
            served.urls.iter().find(|u| u.ends_with(id)).and_then(|u| u.split(' ').next()).expect(id).to_string()
        };
        (find("EchoApi"), find("GuardedApi"))
    };
    assert!(echo.ends_with("/dev") && guarded.ends_with("/live"), "{echo} {guarded}");
    assert_ne!(echo.split('/').nth(2), guarded.split('/').nth(2), "each API on its own port");

    // The composite expression selects `chat/ping`, a two-way route: its integration
    // response's body comes back. `chat/quiet` has no route response: nothing comes back.
    let mut c = Client::connect(&echo, false).await.expect("no $connect route: admitted");
    c.send(json!({"service": "chat", "action": "quiet"})).await;
    c.send(json!({"service": "chat", "action": "ping"})).await;
    assert_eq!(c.recv_json().await, json!({"pong": true}), "only the two-way route answers");

    // The identity source is missing: 401, and the authorizer (whose function is not in the
    // template, so that running it would answer 500) is never reached.
    let refusal = |r: Result<Client, _>| match r {
        Ok(_) => panic!("the upgrade was admitted"),
        Err(e) => format!("{e:?}"),
    };
    let refused = refusal(Client::connect(&guarded, false).await);
    assert!(refused.contains("status: 401"), "no token: {refused}");
    let broken = refusal(Client::connect(&format!("{guarded}?token=t"), false).await);
    assert!(broken.contains("status: 500"), "a token reaches the (broken) authorizer: {broken}");

    // One JSON line per connect and message, with the variables filled in.
    drop(c);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&access_log).unwrap_or_default();
        let lines: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        if lines.iter().any(|l| l["routeKey"] == "chat/ping") || std::time::Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let keys: Vec<&str> = lines.iter().filter_map(|l| l["routeKey"].as_str()).collect();
    assert!(keys.contains(&"$connect") && keys.contains(&"chat/ping"), "{lines:?}");
    assert!(lines.iter().all(|l| l["requestId"].as_str().is_some_and(|id| !id.is_empty() && id != "-")), "{lines:?}");
}

/// Copies the fixture app `name` (tests/fixtures/apps) into `dir`, without build output.
fn copy_fixture(name: &str, dir: &Path) {
    let from = repo().join("tests/fixtures/apps").join(name);
    let status = Command::new("cp").arg("-r").arg(&from).arg(dir).status().expect("cp");
    assert!(status.success(), "copy {}", from.display());
    let _ = std::fs::remove_dir_all(dir.join(name).join("echo/target"));
}

/// A `rust-cargolambda` function with no prebuilt binary is built from its `CodeUri` with cargo
/// (`cargo lambda build` where cargo-lambda is installed) and runs behind its route; source that
/// does not compile names the function and leaves the route answering as API Gateway does.
#[tokio::test(flavor = "multi_thread")]
async fn a_rust_function_is_built_from_its_code_uri() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_fixture("rust-echo", dir.path());
    let template = dir.path().join("rust-echo/template.yaml");
    let empty = dir.path().join("no-prebuilt-binaries");
    std::fs::create_dir(&empty).expect("dir");
    let target = dir.path().join("target");
    let args = |t: &Path| {
        vec![
            "--template".to_string(),
            t.to_str().expect("utf-8").to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--lambda-dir".into(),
            empty.to_str().expect("utf-8").into(),
        ]
    };
    let spawn = |t: &Path| {
        let mut cmd = command(&args(t).iter().map(String::as_str).collect::<Vec<_>>());
        cmd.env("CARGO_TARGET_DIR", &target).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    };
    let served = serve_command(spawn(&template), 1);
    let url = served.urls[0].split(' ').next().expect("url").to_string();
    let mut c = Client::connect(&url, false).await.expect("no $connect route: admitted");
    c.send(json!({"action": "anything"})).await;
    let answer = c.recv_text().await;
    assert!(answer.starts_with("rust echo: ") && answer.ends_with(" bytes of event"), "{answer}");
    drop((c, served));

    let main = dir.path().join("rust-echo/echo/src/main.rs");
    std::fs::write(&main, "fn main() { this is not rust }\n").expect("break the source");
    let served = serve_command(spawn(&template), 1);
    let url = served.urls[0].split(' ').next().expect("url").to_string();
    let mut c = Client::connect(&url, false).await.expect("admitted");
    expect_internal_error(&mut c, "anything").await;
    let stderr = served.stderr.lock().clone();
    assert!(stderr.contains("EchoFunction") && stderr.contains("failed") && !stderr.contains("panicked"), "{stderr}");
}
