//! Templates written the way API Gateway's users write them (tests/fixtures/templates/).

use std::collections::BTreeMap;
use std::path::PathBuf;

use dynamowave_template::{Code, Model, Options, Template, parse_overrides};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/templates").join(name)
}

fn resolve(name: &str, overrides: &[&str]) -> Model {
    let options = Options { parameter_overrides: parse_overrides(overrides).expect("overrides"), ..Options::default() };
    match Template::from_file(&fixture(name)).and_then(|t| t.resolve(&options)) {
        Ok(model) => model,
        Err(e) => panic!("{e}"),
    }
}

/// [`resolve`], for a fixture that must resolve without a warning.
fn resolve_cleanly(name: &str) -> Model {
    let model = resolve(name, &[]);
    assert!(model.warnings.is_empty(), "{:?}", model.warnings);
    model
}

#[test]
fn short_forms_yaml_api_gateway_v2() {
    let model = resolve_cleanly("apigwv2-shortform.yaml");
    let api = model.api("ChatWebSocket").expect("api");
    assert_eq!(api.name, "dynamowave-chat");
    assert_eq!(api.api_key_selection_expression.as_deref(), Some("$request.header.x-api-key"));
    let routes: Vec<(&str, Option<&str>)> =
        api.routes.iter().map(|r| (r.route_key.as_str(), r.integration.as_deref())).collect();
    assert_eq!(
        routes,
        [
            ("$connect", Some("ConnectInteg")),
            ("$disconnect", Some("DisconnectInteg")),
            ("echo", Some("EchoInteg")),
            ("sendmessage", Some("SendInteg"))
        ]
    );
    let functions: BTreeMap<&str, Option<&str>> =
        api.integrations.iter().map(|i| (i.logical_id.as_str(), i.function.as_deref())).collect();
    assert_eq!(
        functions,
        BTreeMap::from([
            ("ConnectInteg", Some("OnConnectFunction")),
            ("DisconnectInteg", Some("OnDisconnectFunction")),
            ("EchoInteg", None),
            ("SendInteg", Some("SendMessageFunction")),
        ])
    );
    let send = api.integrations.iter().find(|i| i.logical_id == "SendInteg").expect("send");
    assert_eq!(send.timeout_in_millis, 10_000);
    let echo = api.integrations.iter().find(|i| i.logical_id == "EchoInteg").expect("echo");
    assert_eq!(
        (echo.integration_type.as_str(), echo.template_selection_expression.as_deref()),
        ("MOCK", Some("\\$default"))
    );
    assert_eq!(echo.request_templates["$default"], r#"{"statusCode": 200}"#);

    // Two-way routes: their route responses and integration responses.
    let send_route = api.routes.iter().find(|r| r.route_key == "sendmessage").expect("route");
    assert_eq!(send_route.route_response_selection_expression.as_deref(), Some("$default"));
    let route_responses: Vec<(&str, &str)> =
        api.route_responses.iter().map(|r| (r.route.as_str(), r.route_response_key.as_str())).collect();
    assert_eq!(route_responses, [("EchoRoute", "$default"), ("SendRoute", "$default")]);
    let echo_response = api.integration_responses.iter().find(|r| r.integration == "EchoInteg").expect("echo response");
    assert_eq!(echo_response.response_templates["$default"], r#"{"echo": $input.json('$.message')}"#);

    let [authorizer] = api.authorizers.as_slice() else { panic!("{:?}", api.authorizers) };
    assert_eq!(authorizer.identity_source, ["route.request.header.Auth", "route.request.querystring.token"]);
    assert_eq!(authorizer.function.as_deref(), Some("AuthorizerFunction"));
    assert_eq!(
        authorizer.authorizer_uri.as_deref(),
        Some(
            "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:000000000000:function:dynamowave-authorizer/invocations"
        )
    );
    let connect = api.routes.iter().find(|r| r.route_key == "$connect").expect("connect");
    assert_eq!(
        (connect.authorization_type.as_str(), connect.authorizer.as_deref()),
        ("CUSTOM", Some("ConnectAuthorizer"))
    );

    let [stage] = api.stages.as_slice() else { panic!("{:?}", api.stages) };
    assert_eq!(stage.stage_name, "dev");
    assert_eq!(stage.description.as_deref(), Some("dev stage"));
    assert_eq!(
        (stage.default_route_settings.throttling_burst_limit, stage.default_route_settings.throttling_rate_limit),
        (Some(50), Some(25.0))
    );
    assert_eq!(stage.route_settings["sendmessage"].throttling_rate_limit, Some(5.5));
    assert_eq!(
        stage.stage_variables,
        BTreeMap::from([
            ("origin".to_owned(), "https://chat.example.com".to_owned()),
            ("region".to_owned(), "east".to_owned()),
            ("zone".to_owned(), "us-east-1b".to_owned()),
        ])
    );
    // A route's own setting wins, the others come from the defaults.
    let partial = stage.settings_for("sendmessage");
    assert_eq!((partial.throttling_burst_limit, partial.throttling_rate_limit), (Some(10), Some(5.5)));
    assert_eq!(partial.logging_level.as_deref(), Some("INFO"));
    assert_eq!(stage.route_settings["sendmessage"].logging_level, None);
    let logs = stage.access_log_settings.as_ref().expect("access log");
    assert_eq!(logs.format.as_deref(), Some("$context.requestId $context.routeKey $context.status"));
    assert_eq!(
        logs.destination_arn.as_deref(),
        Some("arn:aws:logs:us-east-1:000000000000:log-group:dynamowave-AccessLogs:*")
    );
    assert_eq!(api.deployments, ["Deployment"]);

    // Globals merged the way SAM merges them.
    let connect_fn = &model.functions["OnConnectFunction"];
    assert_eq!(connect_fn.runtime.as_deref(), Some("nodejs20.x"));
    assert_eq!((connect_fn.timeout, connect_fn.memory_size), (5, 128));
    assert_eq!(
        connect_fn.environment,
        BTreeMap::from([
            ("ALLOWED_ORIGINS".to_owned(), "https://chat.example.com,https://admin.example.com".to_owned()),
            ("LOG_LEVEL".to_owned(), "debug".to_owned()),
            ("TABLE_NAME".to_owned(), "dynamowave-connections".to_owned()),
        ])
    );
    assert!(matches!(&connect_fn.code, Code::Local { uri, .. } if uri == "../apps/node-chat/"));
    assert_eq!(model.functions["OnDisconnectFunction"].memory_size, 256);
    assert_eq!(model.functions["OnDisconnectFunction"].reserved_concurrent_executions, Some(5));
    assert_eq!(model.functions["AuthorizerFunction"].runtime.as_deref(), Some("nodejs22.x"));
    let send_fn = &model.functions["SendMessageFunction"];
    assert_eq!(send_fn.environment["ENDPOINT"], "https://chatwebsocket.execute-api.us-east-1.amazonaws.com/dev");
    assert_eq!(send_fn.environment["API_ENDPOINT"], "wss://chatwebsocket.execute-api.us-east-1.amazonaws.com");
    assert_eq!(send_fn.environment["LITERAL"], "${NotAVariable} costs $5");
    assert_eq!(send_fn.layers, ["arn:aws:lambda:us-east-1:123456789012:layer:shared:3"]);
    assert_eq!(send_fn.build_method.as_deref(), Some("esbuild"));

    assert_eq!(model.tables["ConnectionsTable"].table_name, "dynamowave-connections");
    let ignored: Vec<&str> = model.ignored.iter().map(|s| s.logical_id.as_str()).collect();
    assert_eq!(ignored, ["AccessLogs", "OnConnectPermission"]);
    let absent: Vec<&str> = model.absent.iter().map(|s| s.logical_id.as_str()).collect();
    assert_eq!(absent, ["ConnectAlarm"]);
}

#[test]
fn short_forms_yaml_with_other_parameters() {
    let model = resolve("apigwv2-shortform.yaml", &["Environment=prod", "TableName=chat-prod", "EnableEcho=false"]);
    let api = model.api("ChatWebSocket").expect("api");
    assert!(api.routes.iter().all(|r| r.route_key != "echo"));
    assert!(api.integrations.iter().all(|i| i.logical_id != "EchoInteg"));
    assert_eq!(api.stages[0].description.as_deref(), Some("Production stage"));
    assert_eq!(model.tables["ConnectionsTable"].table_name, "chat-prod");
    let connect = &model.functions["OnConnectFunction"];
    assert_eq!(
        (connect.environment["TABLE_NAME"].as_str(), connect.environment["LOG_LEVEL"].as_str()),
        ("chat-prod", "warn")
    );
    assert_eq!(model.functions["OnDisconnectFunction"].memory_size, 1024);
    assert!(model.ignored.iter().any(|s| s.logical_id == "ConnectAlarm"));
    let absent: Vec<&str> = model.absent.iter().map(|s| s.logical_id.as_str()).collect();
    assert_eq!(absent, ["EchoInteg", "EchoIntegResponse", "EchoRoute", "EchoRouteResponse"]);
}

#[test]
fn long_forms_json_cloudformation() {
    let model = resolve("python-longform.json", &[]);
    assert_eq!(model.websocket_apis.len(), 1, "the HTTP API is not served");
    let api = model.api("ChatApi").expect("api");
    assert_eq!(api.name, "dynamowave-python-chat");
    assert_eq!(api.route_selection_expression, "${request.body.type}");
    let connect = api.routes.iter().find(|r| r.route_key == "$connect").expect("connect");
    assert_eq!(connect.authorization_type, "AWS_IAM");
    assert!(connect.api_key_required);
    assert!(api.routes.iter().all(|r| r.integration.as_deref() == Some("ChatIntegration")));
    assert_eq!(api.integrations[0].function.as_deref(), Some("ChatFunction"));
    assert_eq!(api.integrations[0].timeout_in_millis, 15_000);
    let stage = &api.stages[0];
    assert_eq!(stage.stage_name, "v1");
    assert_eq!(stage.route_settings["$connect"].throttling_burst_limit, Some(5));
    assert_eq!(stage.default_route_settings.throttling_rate_limit, Some(50.0));

    let chat = &model.functions["ChatFunction"];
    assert_eq!(chat.resource_type, "AWS::Lambda::Function");
    assert_eq!(chat.function_name, "dynamowave-chat");
    assert_eq!((chat.runtime.as_deref(), chat.handler.as_deref()), (Some("python3.12"), Some("app.handler")));
    assert_eq!((chat.timeout, chat.memory_size, chat.reserved_concurrent_executions), (6, 128, Some(20)));
    assert_eq!(chat.architectures, ["x86_64"]);
    let env = |k: &str| chat.environment[k].as_str();
    for (name, value) in [
        ("MESSAGES_TABLE", "dynamowave-MessagesTable"),
        ("MESSAGES_ARN", "arn:aws:dynamodb:us-east-1:000000000000:table/dynamowave-MessagesTable"),
        (
            "MESSAGES_STREAM",
            "arn:aws:dynamodb:us-east-1:000000000000:table/dynamowave-MessagesTable/stream/1970-01-01T00:00:00.000",
        ),
        ("ROLE", "arn:aws:iam::000000000000:role/dynamowave-ChatRole"),
        ("FIRST_SUBNET", "subnet-1"),
        ("SUBNET_COUNT", "2"),
        (
            "STACK_ID",
            "arn:aws:cloudformation:us-east-1:000000000000:stack/dynamowave/00000000-0000-0000-0000-000000000000",
        ),
        ("ENCODED", "Y2hhdA=="),
        ("SETTINGS", r#"{"stage":"v1","subnets":["subnet-1","subnet-2"]}"#),
    ] {
        assert_eq!(env(name), value, "{name}");
    }

    let table = &model.tables["MessagesTable"];
    assert_eq!(table.billing_mode, "PROVISIONED");
    assert_eq!(
        table.provisioned_throughput.as_ref().map(|t| (t.read_capacity_units, t.write_capacity_units)),
        Some((5, 2))
    );
    let gsi = &table.global_secondary_indexes[0];
    assert_eq!(
        (gsi.index_name.as_str(), gsi.projection_type.as_str(), gsi.non_key_attributes.as_slice()),
        ("ByAuthor", "INCLUDE", ["text".to_owned()].as_slice())
    );
    let lsi = &table.local_secondary_indexes[0];
    assert_eq!((lsi.index_name.as_str(), lsi.projection_type.as_str()), ("ByAuthorInRoom", "KEYS_ONLY"));
    assert_eq!(table.stream_view_type.as_deref(), Some("NEW_IMAGE"));
    assert_eq!(table.time_to_live_attribute.as_deref(), Some("ttl"));

    let ignored: Vec<(&str, &str)> =
        model.ignored.iter().map(|s| (s.logical_id.as_str(), s.resource_type.as_str())).collect();
    assert_eq!(
        ignored,
        [
            ("ChatPermission", "AWS::Lambda::Permission"),
            ("ChatRole", "AWS::IAM::Role"),
            ("HttpApi", "AWS::ApiGatewayV2::Api"),
            ("HttpRoute", "AWS::ApiGatewayV2::Route"),
        ]
    );

    let on_demand = resolve("python-longform.json", &["Provisioned=false"]);
    let table = &on_demand.tables["MessagesTable"];
    assert_eq!((table.billing_mode.as_str(), table.provisioned_throughput.as_ref()), ("PAY_PER_REQUEST", None));
}

#[test]
fn sam_websocket_api() {
    let model = resolve_cleanly("sam-websocketapi.yaml");
    let api = model.api("ChatApi").expect("api");
    assert_eq!(api.resource_type, "AWS::Serverless::WebSocketApi");
    assert_eq!(api.name, "dynamowave-ChatApi");
    let routes: Vec<(&str, &str, Option<&str>, &str)> = api
        .routes
        .iter()
        .map(|r| (r.logical_id.as_str(), r.route_key.as_str(), r.integration.as_deref(), r.authorization_type.as_str()))
        .collect();
    assert_eq!(
        routes,
        [
            ("ChatApiConnectRoute", "$connect", Some("ChatApiConnectIntegration"), "CUSTOM"),
            ("ChatApiDisconnectRoute", "$disconnect", Some("ChatApiDisconnectIntegration"), "NONE"),
            ("ChatApiSendmessageRoute", "sendMessage", Some("ChatApiSendmessageIntegration"), "NONE"),
        ]
    );
    assert_eq!(api.routes[0].authorizer.as_deref(), Some("ChatApiConnectAuthorizer"));
    assert_eq!(api.routes[2].route_response_selection_expression.as_deref(), Some("$default"));
    let functions: Vec<(&str, Option<&str>, u64)> =
        api.integrations.iter().map(|i| (i.logical_id.as_str(), i.function.as_deref(), i.timeout_in_millis)).collect();
    assert_eq!(
        functions,
        [
            ("ChatApiConnectIntegration", Some("ConnectFunction"), 29_000),
            ("ChatApiDisconnectIntegration", Some("DisconnectFunction"), 29_000),
            ("ChatApiSendmessageIntegration", Some("SendMessageFunction"), 5_000),
        ]
    );
    let [authorizer] = api.authorizers.as_slice() else { panic!("{:?}", api.authorizers) };
    assert_eq!(
        (authorizer.authorizer_type.as_str(), authorizer.function.as_deref()),
        ("REQUEST", Some("AuthorizerFunction"))
    );
    assert_eq!(authorizer.identity_source, ["route.request.header.Authorization"]);
    let [stage] = api.stages.as_slice() else { panic!("{:?}", api.stages) };
    assert_eq!((stage.logical_id.as_str(), stage.stage_name.as_str()), ("ChatApiStage", "prod"));
    // From Globals.WebSocketApi.
    assert_eq!(
        (stage.default_route_settings.throttling_burst_limit, stage.default_route_settings.throttling_rate_limit),
        (Some(100), Some(50.0))
    );
    assert_eq!(stage.route_settings["sendMessage"].throttling_burst_limit, Some(20));
    assert_eq!(stage.stage_variables["mode"], "chat");

    let send = &model.functions["SendMessageFunction"];
    assert_eq!(send.environment["TABLE"], "dynamowave-Connections");
    assert_eq!(send.environment["CALLBACK_URL"], "https://chatapi.execute-api.us-east-1.amazonaws.com/prod");
    assert_eq!((send.runtime.as_deref(), send.timeout), (Some("python3.13"), 10));
    let table = &model.tables["Connections"];
    assert_eq!(
        (table.key_schema[0].attribute_name.as_str(), table.attribute_definitions[0].attribute_type.as_str()),
        ("connectionId", "S")
    );
    assert_eq!(table.billing_mode, "PAY_PER_REQUEST");
    assert!(model.ignored.is_empty(), "{:?}", model.ignored);

    let default_stage = Template::parse(
        &std::fs::read_to_string(fixture("sam-websocketapi.yaml"))
            .expect("fixture")
            .replace("      StageName: !Ref Stage\n", ""),
        "sam-websocketapi.yaml",
    )
    .and_then(|t| t.resolve(&Options::default()))
    .expect("model");
    assert_eq!(default_stage.api("ChatApi").expect("api").stages[0].stage_name, "default");
    assert!(default_stage.functions["SendMessageFunction"].environment["CALLBACK_URL"].ends_with("/default"));
}
