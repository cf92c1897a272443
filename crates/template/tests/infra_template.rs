//! Our own template, `infra/template.yaml`, resolved as `serve --template` will see it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use dynamowave_template::{Model, Options, Template, parse_overrides};

fn template() -> Template {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml");
    match Template::from_file(&path) {
        Ok(template) => template,
        Err(e) => panic!("{e}"),
    }
}

fn resolve(overrides: &[&str]) -> Model {
    let options = Options { parameter_overrides: parse_overrides(overrides).expect("overrides"), ..Options::default() };
    match template().resolve(&options) {
        Ok(model) => model,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn the_api_has_the_templates_routes_each_to_its_function() {
    let model = resolve(&[]);
    assert_eq!(model.websocket_apis.len(), 1);
    let api = model.api("WebSocketApi").expect("api");
    // SAM's WebSocket API, with $connect (whose authorizer is optional) beside it as
    // `AWS::ApiGatewayV2` resources attached by `ApiId`.
    assert_eq!(api.resource_type, "AWS::Serverless::WebSocketApi");
    assert_eq!(api.name, "dynamowave-websocket");
    assert_eq!(api.route_selection_expression, "$request.body.action");
    assert_eq!(api.api_endpoint, "wss://websocketapi.execute-api.us-east-1.amazonaws.com");
    let function_of = |route_key: &str| {
        let route = api.routes.iter().find(|r| r.route_key == route_key).expect(route_key);
        let integration =
            api.integrations.iter().find(|i| Some(&i.logical_id) == route.integration.as_ref()).expect("integration");
        assert_eq!(integration.integration_type, "AWS_PROXY");
        integration.function.clone().expect("function")
    };
    let routes: BTreeMap<&str, String> =
        api.routes.iter().map(|r| (r.route_key.as_str(), function_of(&r.route_key))).collect();
    let expected: BTreeMap<&str, String> = [
        ("$connect", "ConnectFunction"),
        ("$default", "DefaultFunction"),
        ("$disconnect", "DisconnectFunction"),
        ("history", "DefaultFunction"),
        ("join", "DefaultFunction"),
        ("leave", "DefaultFunction"),
        ("ping", "DefaultFunction"),
        ("rooms", "DefaultFunction"),
        ("sendmessage", "SendMessageFunction"),
        ("sendprivate", "DefaultFunction"),
        ("setname", "DefaultFunction"),
        ("who", "DefaultFunction"),
    ]
    .into_iter()
    .map(|(k, f)| (k, f.to_owned()))
    .collect();
    assert_eq!(routes, expected);
    // The integrations invoke the `live` alias (AutoPublishAlias), found back to its function.
    let connect = api.integrations.iter().find(|i| i.logical_id == "ConnectIntegration").expect("integration");
    assert_eq!(
        connect.integration_uri.as_deref(),
        Some(
            "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:000000000000:function:dynamowave-ConnectFunction:live/invocations"
        )
    );
    assert_eq!(connect.timeout_in_millis, 29_000);
    assert!(model.warnings.is_empty(), "{:?}", model.warnings);
}

#[test]
fn only_connect_is_authorized_with_the_querystring_token() {
    let model = resolve(&[]);
    let api = model.api("WebSocketApi").expect("api");
    for route in &api.routes {
        if route.route_key == "$connect" {
            assert_eq!(route.authorization_type, "CUSTOM");
            assert_eq!(route.authorizer.as_deref(), Some("ConnectAuthorizer"));
        } else {
            assert_eq!(route.authorization_type, "NONE", "{}", route.route_key);
            assert_eq!(route.authorizer, None);
        }
    }
    let [authorizer] = api.authorizers.as_slice() else { panic!("{:?}", api.authorizers) };
    assert_eq!(authorizer.authorizer_type, "REQUEST");
    assert_eq!(authorizer.identity_source, ["route.request.querystring.token"]);
    assert_eq!(authorizer.function.as_deref(), Some("AuthorizerFunction"));

    let header = resolve(&["AuthorizerTokenSource=header"]);
    let api = header.api("WebSocketApi").expect("api");
    assert_eq!(api.authorizers[0].identity_source, ["route.request.header.Authorization"]);
}

#[test]
fn without_the_authorizer_connect_is_open_and_the_function_does_not_exist() {
    let model = resolve(&["EnableAuthorizer=false"]);
    let api = model.api("WebSocketApi").expect("api");
    assert!(api.authorizers.is_empty());
    let connect = api.routes.iter().find(|r| r.route_key == "$connect").expect("route");
    assert_eq!((connect.authorization_type.as_str(), connect.authorizer.as_deref()), ("NONE", None));
    assert!(!model.functions.contains_key("AuthorizerFunction"));
    let absent: BTreeSet<&str> = model.absent.iter().map(|s| s.logical_id.as_str()).collect();
    assert!(
        absent.contains("AuthorizerFunction") && absent.contains("ConnectAuthorizer") && absent.contains("JwtSecret")
    );
    assert!(!model.conditions["UseAuthorizer"]);
}

#[test]
fn the_stage_throttles_are_the_templates() {
    let model = resolve(&[]);
    let api = model.api("WebSocketApi").expect("api");
    let [stage] = api.stages.as_slice() else { panic!("{:?}", api.stages) };
    // One stage name for AWS and the default local `serve`: the WebSocket is `/production`.
    assert_eq!(stage.stage_name, "production");
    assert_eq!(stage.default_route_settings.throttling_rate_limit, Some(1000.0));
    assert_eq!(stage.default_route_settings.throttling_burst_limit, Some(500));
    assert_eq!(stage.default_route_settings.logging_level.as_deref(), Some("ERROR"));
    assert_eq!(stage.route_settings.keys().collect::<Vec<_>>(), ["sendmessage"]);
    let send = &stage.route_settings["sendmessage"];
    assert_eq!(send.throttling_rate_limit, Some(100.0));
    assert_eq!(send.throttling_burst_limit, Some(200));
    let format = stage.access_log_settings.as_ref().and_then(|a| a.format.as_deref()).expect("format");
    assert!(format.starts_with(r#"{"requestId":"$context.requestId","#), "{format}");
    assert!(format.ends_with(r#""principalId":"$context.authorizer.principalId"}"#), "{format}");

    // What each route gets: its own settings, else the stage's defaults.
    assert_eq!(stage.settings_for("sendmessage").throttling_burst_limit, Some(200));
    assert_eq!(stage.settings_for("join").throttling_burst_limit, Some(500));
    assert_eq!(stage.settings_for("join").throttling_rate_limit, Some(1000.0));
    let api = model.api("WebSocketApi").expect("api");
    assert_eq!(api.stage("production").map(|s| s.stage_name.as_str()), Some("production"));
    let send = api.route("sendmessage").and_then(|r| api.integration(r.integration.as_deref()?)).expect("integration");
    assert_eq!(send.function.as_deref(), Some("SendMessageFunction"));
    let connect = api.route("$connect").and_then(|r| api.authorizer(r.authorizer.as_deref()?)).expect("authorizer");
    assert_eq!(connect.name, "dynamowave-connect-authorizer");

    // Overrides reach the stage.
    let model = resolve(&["ThrottlingRateLimit=20", "SendMessageThrottlingBurstLimit=3", "StageName=dev"]);
    let stage = &model.api("WebSocketApi").expect("api").stages[0];
    assert_eq!((stage.stage_name.as_str(), stage.default_route_settings.throttling_rate_limit), ("dev", Some(20.0)));
    assert_eq!(stage.route_settings["sendmessage"].throttling_burst_limit, Some(3));
}

#[test]
fn each_function_has_its_reserved_concurrency_and_the_globals() {
    let model = resolve(&[]);
    let reserved: BTreeMap<&str, Option<u64>> =
        model.functions.iter().map(|(id, f)| (id.as_str(), f.reserved_concurrent_executions)).collect();
    assert_eq!(
        reserved,
        BTreeMap::from([
            ("AuthorizerFunction", Some(50)),
            ("ConnectFunction", Some(50)),
            ("DefaultFunction", Some(50)),
            ("DisconnectFunction", Some(50)),
            ("SendMessageFunction", Some(100)),
            ("WarmerFunction", Some(1)),
        ])
    );
    for function in model.functions.values() {
        assert_eq!(function.runtime.as_deref(), Some("provided.al2023"), "{}", function.logical_id);
        assert_eq!(function.handler.as_deref(), Some("bootstrap"));
        assert_eq!((function.timeout, function.memory_size), (10, 256));
        assert_eq!(function.architectures, ["arm64"]);
        assert_eq!(function.build_method.as_deref(), Some("rust-cargolambda"));
        assert_eq!(function.environment["CONNECTIONS_TABLE"], "dynamowave-connections");
        assert_eq!(function.environment["RUST_LOG"], "info");
        // `!If [HasConnectionsEndpointOverride, …, !Ref AWS::NoValue]`: absent by default.
        assert!(!function.environment.contains_key("DYNAMOWAVE_CONNECTIONS_ENDPOINT"));
        match &function.code {
            dynamowave_template::Code::Local { uri, path } => {
                assert_eq!(uri, "..");
                assert!(path.join("Cargo.toml").is_file(), "{}", path.display());
            }
            other => panic!("{other:?}"),
        }
    }
    let binary =
        |id: &str| model.functions[id].build_properties.as_ref().and_then(|p| p["Binary"].as_str()).map(str::to_owned);
    assert_eq!(binary("SendMessageFunction").as_deref(), Some("sendmessage"));
    // Merged with the Globals' variables.
    assert_eq!(model.functions["ConnectFunction"].environment["ALLOWED_ORIGINS"], "");
    assert_eq!(model.functions["AuthorizerFunction"].environment["JWT_AUDIENCE"], "dynamowave");
    assert_eq!(
        model.functions["WarmerFunction"].environment["WARM_FUNCTIONS"],
        [
            "arn:aws:lambda:us-east-1:000000000000:function:dynamowave-ConnectFunction:live",
            "arn:aws:lambda:us-east-1:000000000000:function:dynamowave-DisconnectFunction:live",
            "arn:aws:lambda:us-east-1:000000000000:function:dynamowave-SendMessageFunction:live",
            "arn:aws:lambda:us-east-1:000000000000:function:dynamowave-DefaultFunction:live",
        ]
        .join(",")
    );
    assert_eq!(
        model.functions["WarmerFunction"].events,
        BTreeMap::from([("WarmSchedule".to_owned(), "Schedule".to_owned())])
    );

    let unreserved = resolve(&[
        "ConnectReservedConcurrency=0",
        "LambdaArchitecture=x86_64",
        "ConnectionsEndpointOverride=http://localhost:9001",
    ]);
    let connect = &unreserved.functions["ConnectFunction"];
    assert_eq!(connect.reserved_concurrent_executions, None);
    assert_eq!(connect.architectures, ["x86_64"]);
    assert_eq!(connect.environment["DYNAMOWAVE_CONNECTIONS_ENDPOINT"], "http://localhost:9001");
}

#[test]
fn the_tables_have_their_keys_indexes_and_ttl() {
    let model = resolve(&[]);
    assert_eq!(model.tables.keys().collect::<Vec<_>>(), ["ConnectionsTable", "MessagesTable", "RoomsTable"]);
    let keys = |id: &str| -> Vec<(String, String)> {
        model.tables[id].key_schema.iter().map(|k| (k.attribute_name.clone(), k.key_type.clone())).collect()
    };
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(keys("ConnectionsTable"), [pair("connectionId", "HASH")]);
    assert_eq!(keys("MessagesTable"), [pair("room", "HASH"), pair("seq", "RANGE")]);
    assert_eq!(keys("RoomsTable"), [pair("room", "HASH")]);
    let connections = &model.tables["ConnectionsTable"];
    assert_eq!(connections.table_name, "dynamowave-connections");
    assert_eq!(connections.arn, "arn:aws:dynamodb:us-east-1:000000000000:table/dynamowave-connections");
    let indexes: Vec<(&str, Vec<&str>, &str)> = connections
        .global_secondary_indexes
        .iter()
        .map(|i| {
            (
                i.index_name.as_str(),
                i.key_schema.iter().map(|k| k.attribute_name.as_str()).collect(),
                i.projection_type.as_str(),
            )
        })
        .collect();
    assert_eq!(
        indexes,
        [("RoomIndex", vec!["room", "connectionId"], "ALL"), ("NameIndex", vec!["name", "connectionId"], "ALL")]
    );
    let rooms = &model.tables["RoomsTable"];
    assert_eq!(rooms.global_secondary_indexes[0].index_name, "ActivityIndex");
    assert_eq!(
        rooms.attribute_definitions.iter().find(|a| a.attribute_name == "activeAt").map(|a| a.attribute_type.as_str()),
        Some("N")
    );
    for table in model.tables.values() {
        assert_eq!(table.time_to_live_attribute.as_deref(), Some("expiresAt"));
        assert_eq!(table.billing_mode, "PAY_PER_REQUEST");
        assert_eq!(table.provisioned_throughput, None);
        assert!(table.local_secondary_indexes.is_empty() && table.stream_view_type.is_none());
    }

    let provisioned = resolve(&["TableBillingMode=PROVISIONED", "ReadCapacityMin=7"]);
    let messages = &provisioned.tables["MessagesTable"];
    assert_eq!(messages.billing_mode, "PROVISIONED");
    assert_eq!(
        messages.provisioned_throughput.as_ref().map(|t| (t.read_capacity_units, t.write_capacity_units)),
        Some((7, 5))
    );

    // Global tables: the same tables, other resources.
    let global = resolve(&["EnableGlobalTables=true", "ReplicaRegion=us-west-2"]);
    assert_eq!(
        global.tables.keys().collect::<Vec<_>>(),
        ["ConnectionsGlobalTable", "MessagesGlobalTable", "RoomsGlobalTable"]
    );
    assert_eq!(global.tables["MessagesGlobalTable"].table_name, "dynamowave-messages");
    assert_eq!(global.tables["MessagesGlobalTable"].stream_view_type.as_deref(), Some("NEW_AND_OLD_IMAGES"));
}

#[test]
fn what_is_not_emulated_is_listed_once() {
    let model = resolve(&[]);
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for skipped in &model.ignored {
        *by_type.entry(skipped.resource_type.as_str()).or_default() += 1;
    }
    assert_eq!(
        by_type,
        BTreeMap::from([
            ("AWS::ApiGateway::Account", 1),
            ("AWS::CloudWatch::Alarm", 14),
            ("AWS::CloudWatch::Dashboard", 1),
            ("AWS::IAM::Role", 1),
            // $connect's and the authorizer's; SAM writes the other routes' permissions.
            ("AWS::Lambda::Permission", 2),
            ("AWS::Logs::LogGroup", 7),
            ("AWS::SecretsManager::Secret", 1),
        ])
    );
    let ids: BTreeSet<&str> = model.ignored.iter().map(|s| s.logical_id.as_str()).collect();
    assert!(ids.contains("ConnectPermission") && ids.contains("ApiGatewayCloudWatchRole") && ids.contains("Dashboard"));
    // Off by default: auto scaling, global tables, custom domain, Route 53, CloudFront, WAF.
    let absent: BTreeSet<&str> = model.absent.iter().map(|s| s.resource_type.as_str()).collect();
    for t in [
        "AWS::ApplicationAutoScaling::ScalableTarget",
        "AWS::DynamoDB::GlobalTable",
        "AWS::ApiGatewayV2::DomainName",
        "AWS::Route53::RecordSet",
        "AWS::CloudFront::Distribution",
        "AWS::WAFv2::WebACL",
    ] {
        assert!(absent.contains(t), "{t}");
    }
    // Each declared resource is in exactly one place; besides them, the API holds what SAM
    // generates from the `AWS::Serverless::WebSocketApi` (a route and an integration per
    // entry of its `Routes`, and its stage).
    let text = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml"))
        .expect("template");
    // A resource is a two-space-indented key followed by its `Type: AWS::…`.
    let mut declared = BTreeSet::new();
    let mut key = None;
    for line in text.lines() {
        if let Some(id) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')).filter(|l| !l.starts_with(' ')) {
            key = Some(id);
        } else if line.starts_with("    Type: AWS::") {
            declared.extend(key.take());
        }
    }
    let api = model.api("WebSocketApi").expect("api");
    let parts: Vec<&str> = std::iter::once(api.logical_id.as_str())
        .chain(api.routes.iter().map(|r| r.logical_id.as_str()))
        .chain(api.integrations.iter().map(|i| i.logical_id.as_str()))
        .chain(api.authorizers.iter().map(|a| a.logical_id.as_str()))
        .chain(api.stages.iter().map(|s| s.logical_id.as_str()))
        .collect();
    let (declared_parts, generated): (Vec<&str>, Vec<&str>) = parts.iter().partition(|id| declared.contains(*id));
    assert_eq!(generated.len(), 11 + 11 + 1, "{generated:?}");
    let placed =
        model.ignored.len() + model.absent.len() + model.functions.len() + model.tables.len() + declared_parts.len();
    assert_eq!(placed, declared.len());
}

#[test]
fn the_effective_config_is_stable_json() {
    let model = resolve(&[]);
    let json = model.to_json();
    assert_eq!(json, resolve(&[]).to_json());
    let stage = &json["websocketApis"][0]["stages"][0];
    assert_eq!(stage["defaultRouteSettings"]["throttlingRateLimit"], 1000.0);
    assert_eq!(stage["defaultRouteSettings"]["throttlingBurstLimit"], 500);
    assert_eq!(stage["routeSettings"]["sendmessage"]["throttlingRateLimit"], 100.0);
    assert_eq!(stage["routeSettings"]["sendmessage"]["throttlingBurstLimit"], 200);
    assert_eq!(json["functions"]["SendMessageFunction"]["reservedConcurrentExecutions"], 100);
    assert_eq!(json["websocketApis"][0]["authorizers"][0]["identitySource"][0], "route.request.querystring.token");
    assert_eq!(json["tables"]["ConnectionsTable"]["timeToLiveAttribute"], "expiresAt");
    assert_eq!(json["parameters"]["StageName"], "production");
    assert_eq!(json["pseudoParameters"]["region"], "us-east-1");
    assert_eq!(json["ignored"][0]["resourceType"], "AWS::Logs::LogGroup");
    assert!(model.to_json_pretty().contains("\"routeKey\": \"sendmessage\""));
}

#[test]
fn the_pseudo_parameters_are_settable() {
    let options = Options {
        pseudo: dynamowave_template::PseudoParameters {
            stack_name: "chat".to_owned(),
            account_id: "123456789012".to_owned(),
            ..dynamowave_template::PseudoParameters::for_region("eu-west-1")
        },
        ..Options::default()
    };
    let model = template().resolve(&options).expect("model");
    assert_eq!(model.tables["RoomsTable"].table_name, "chat-rooms");
    assert_eq!(
        model.functions["ConnectFunction"].arn,
        "arn:aws:lambda:eu-west-1:123456789012:function:chat-ConnectFunction"
    );
    assert_eq!(
        model.api("WebSocketApi").map(|a| a.api_endpoint.as_str()),
        Some("wss://websocketapi.execute-api.eu-west-1.amazonaws.com")
    );
}
