//! Each intrinsic function, condition and parameter rule, seen through a function's
//! environment variables (every one is evaluated to a string).

use std::collections::BTreeMap;

use dynamowave_template::{Options, ParameterValue, PseudoParameters, Template, parse_overrides};

const BASE: &str = r#"
Parameters:
  Name: {Type: String, Default: chat}
  Count: {Type: Number, Default: 3}
  Zones: {Type: CommaDelimitedList, Default: "a,b,c"}
  Size: {Type: String, Default: small, AllowedValues: [small, large]}
Mappings:
  Sizes:
    small: {Memory: 128, Label: S}
    large: {Memory: 1024, Label: L}
Conditions:
  IsChat: !Equals [!Ref Name, chat]
  HasThree: !Equals [!Ref Count, 3]
  Both: !And [!Condition IsChat, !Condition HasThree]
  Either: !Or [!Not [!Condition IsChat], !Condition HasThree]
  Neither: !Not [!Condition Either]
  Literal: !Equals ["true", true]
Resources:
  Items:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub "${Name}-items"
      KeySchema: [{AttributeName: id, KeyType: HASH}]
      StreamSpecification: {StreamViewType: KEYS_ONLY}
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: {Name: api, ProtocolType: WEBSOCKET, RouteSelectionExpression: $request.body.action}
  Queue:
    Type: AWS::SQS::Queue
  Topic:
    Type: AWS::SNS::Topic
    Properties: {TopicName: alerts}
  Gone:
    Type: AWS::SNS::Topic
    Condition: Neither
  Fn:
    Type: AWS::Lambda::Function
    Properties:
      Code: ./src
      Runtime: nodejs20.x
      Handler: index.handler
      Environment:
        Variables:
"#;

/// The environment of `Fn` with `vars` (one `KEY: value` per line) under the base template.
fn env_with(vars: &[&str], options: &Options) -> Result<BTreeMap<String, String>, String> {
    let mut text = BASE.to_owned();
    for var in vars {
        text.push_str("          ");
        text.push_str(var);
        text.push('\n');
    }
    let model = Template::parse(&text, "test.yaml").and_then(|t| t.resolve(options)).map_err(|e| e.to_string())?;
    Ok(model.functions["Fn"].environment.clone())
}

fn env(vars: &[&str]) -> BTreeMap<String, String> {
    match env_with(vars, &Options::default()) {
        Ok(env) => env,
        Err(e) => panic!("{e}"),
    }
}

/// Each `(expression, value)`: the expression, as a function's variable, evaluates to `value`.
fn assert_values(cases: &[(&str, &str)]) {
    for (expression, value) in cases {
        assert_eq!(one(expression), *value, "{expression}");
    }
}

fn one(var: &str) -> String {
    env(&[&format!("X: {var}")]).remove("X").unwrap_or_else(|| "<absent>".to_owned())
}

#[test]
fn ref_of_parameters_pseudo_parameters_and_resources() {
    assert_eq!(one("!Ref Name"), "chat");
    // CloudFormation passes a Number parameter on as a string.
    assert_values(&[
        ("!Ref Count", "3"),
        ("{Ref: Size}", "small"),
        ("!Ref AWS::Region", "us-east-1"),
        ("!Ref AWS::AccountId", "000000000000"),
        ("!Ref AWS::StackName", "dynamowave"),
        ("!Ref AWS::Partition", "aws"),
        ("!Ref AWS::URLSuffix", "amazonaws.com"),
        ("!Ref AWS::NoValue", "<absent>"),
        ("!Ref Items", "chat-items"),
        ("!Ref Api", "api"),
        ("!Ref Fn", "dynamowave-Fn"),
        ("!Ref Topic", "arn:aws:sns:us-east-1:000000000000:alerts"),
        ("!Ref Queue", "https://sqs.us-east-1.amazonaws.com/000000000000/dynamowave-Queue"),
    ]);
}

#[test]
fn pseudo_parameters_and_parameters_take_the_callers_values() {
    let options = Options {
        pseudo: PseudoParameters { stack_name: "mystack".to_owned(), ..PseudoParameters::for_region("cn-north-1") },
        parameter_overrides: parse_overrides(["Name=room", "ParameterKey=Zones,ParameterValue=x,y"])
            .expect("overrides"),
        ..Options::default()
    };
    let env = env_with(
        &["A: !Sub '${AWS::Partition} ${AWS::URLSuffix} ${AWS::StackName} ${Name}'", "B: !Join ['+', !Ref Zones]"],
        &options,
    )
    .expect("env");
    assert_eq!(env["A"], "aws-cn amazonaws.com.cn mystack room");
    assert_eq!(env["B"], "x+y");
    let model =
        Template::parse(&format!("{BASE}          K: v\n"), "t").and_then(|t| t.resolve(&options)).expect("model");
    assert_eq!(model.parameters["Zones"], ParameterValue::List(vec!["x".to_owned(), "y".to_owned()]));
    assert_eq!(model.parameters["Count"], ParameterValue::String("3".to_owned()));
    assert!(!model.conditions["IsChat"]);
}

#[test]
fn sub_in_both_forms() {
    assert_values(&[
        (r#"!Sub "${Name}/${AWS::Region}/${Items}""#, "chat/us-east-1/chat-items"),
        (r#"!Sub "${Items.Arn}""#, "arn:aws:dynamodb:us-east-1:000000000000:table/chat-items"),
        (r#"!Sub ["${A}-${B}-${Name}", {A: !Ref Count, B: !GetAtt Api.ApiId}]"#, "3-api-chat"),
        (r#"{"Fn::Sub": "plain"}"#, "plain"),
        (r#"!Sub "${!Literal} and ${!AWS::Region}""#, "${Literal} and ${AWS::Region}"),
        (r#"!Sub "costs $5, {braces}""#, "costs $5, {braces}"),
    ]);
}

#[test]
fn get_att_in_both_forms() {
    assert_values(&[
        ("!GetAtt Items.Arn", "arn:aws:dynamodb:us-east-1:000000000000:table/chat-items"),
        (
            "!GetAtt [Items, StreamArn]",
            "arn:aws:dynamodb:us-east-1:000000000000:table/chat-items/stream/1970-01-01T00:00:00.000",
        ),
        (r#"{"Fn::GetAtt": ["Fn", "Arn"]}"#, "arn:aws:lambda:us-east-1:000000000000:function:dynamowave-Fn"),
        ("!GetAtt Api.ApiEndpoint", "wss://api.execute-api.us-east-1.amazonaws.com"),
        ("!GetAtt Api.ApiId", "api"),
        // A type that is not emulated: an ARN from its logical id, other attributes by name.
        ("!GetAtt Queue.Arn", "arn:aws:sqs:us-east-1:000000000000:Queue"),
        ("!GetAtt Queue.QueueName", "Queue.QueueName"),
    ]);
}

#[test]
fn join_select_split_and_get_azs() {
    assert_values(&[
        ("!Join [':', [a, !Ref Name, 3]]", "a:chat:3"),
        ("!Join ['', []]", ""),
        ("!Join [',', !Ref Zones]", "a,b,c"),
        ("!Select [2, !Ref Zones]", "c"),
        ("!Select ['1', [x, y]]", "y"),
        ("!Select [1, !Split ['/', 'a/b/c']]", "b"),
        ("!Join ['|', !Split [',', !Join [',', !Ref Zones]]]", "a|b|c"),
        ("!Join [',', !GetAZs '']", "us-east-1a,us-east-1b,us-east-1c"),
        ("!Select [0, !GetAZs eu-west-3]", "eu-west-3a"),
    ]);
}

#[test]
fn if_and_the_conditions() {
    assert_values(&[
        ("!If [IsChat, yes-chat, not-chat]", "yes-chat"),
        ("!If [Neither, a, !Ref AWS::NoValue]", "<absent>"),
        ("!If [Both, !If [Either, both-either, both], no]", "both-either"),
        ("!If [Literal, t, f]", "t"),
    ]);
    let model = Template::parse(&format!("{BASE}          K: v\n"), "t")
        .and_then(|t| t.resolve(&Options::default()))
        .expect("model");
    let conditions: Vec<(&str, bool)> = model.conditions.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        conditions,
        [("Both", true), ("Either", true), ("HasThree", true), ("IsChat", true), ("Literal", true), ("Neither", false)]
    );
    // A resource whose condition is false does not exist.
    assert_eq!(model.absent.iter().map(|s| s.logical_id.as_str()).collect::<Vec<_>>(), ["Gone"]);
    assert!(model.ignored.iter().all(|s| s.logical_id != "Gone"));
    // Fn::Equals & co. evaluate to booleans where a value is asked for.
    assert_values(&[("!Equals [!Ref Size, small]", "true"), ("!Not [!Equals [1, 1]]", "false")]);
}

#[test]
fn find_in_map_import_value_and_the_rest() {
    assert_values(&[
        ("!FindInMap [Sizes, !Ref Size, Memory]", "128"),
        ("!FindInMap [Sizes, large, Label]", "L"),
        ("!FindInMap [Sizes, huge, Label, {DefaultValue: XL}]", "XL"),
        ("!Base64 chat", "Y2hhdA=="),
        ("!Length [a, b, c]", "3"),
        ("!ToJsonString {a: !Ref Name, b: [1, true]}", r#"{"a":"chat","b":[1,true]}"#),
    ]);
    let options = Options {
        exports: BTreeMap::from([("shared-table".to_owned(), "table-from-another-stack".to_owned())]),
        ..Options::default()
    };
    let env = env_with(
        &["X: !ImportValue shared-table", "Y: !ImportValue {\"Fn::Sub\": \"shared-${AWS::NoValue}table\"}"],
        &options,
    );
    // `${AWS::NoValue}` has no text: an error, not an empty string.
    assert_eq!(
        env.err().as_deref(),
        Some(
            "Resources.Fn.Properties.Environment.Variables.Y: expected a string, found AWS::NoValue for ${AWS::NoValue} in Fn::Sub"
        )
    );
    assert_eq!(env_with(&["X: !ImportValue shared-table"], &options).expect("env")["X"], "table-from-another-stack");
}

#[test]
fn no_value_leaves_out_list_items_and_keys() {
    let text = format!("{BASE}          X: !Join [',', [a, !Ref AWS::NoValue, b]]\n");
    let model = Template::parse(&text, "t").and_then(|t| t.resolve(&Options::default())).expect("model");
    assert_eq!(model.functions["Fn"].environment["X"], "a,b");
}

#[test]
fn json_and_yaml_read_alike() {
    let yaml = "Resources:\n  T:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      TableName: !Join ['-', [!Ref 'AWS::StackName', t]]\n      KeySchema: [{AttributeName: id, KeyType: HASH}]\n";
    let json = r#"{"Resources": {"T": {"Type": "AWS::DynamoDB::Table", "Properties": {
        "TableName": {"Fn::Join": ["-", [{"Ref": "AWS::StackName"}, "t"]]},
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}]}}}}"#;
    let a = Template::parse(yaml, "t.yaml").and_then(|t| t.resolve(&Options::default())).expect("yaml");
    let b = Template::parse(json, "t.json").and_then(|t| t.resolve(&Options::default())).expect("json");
    assert_eq!(a.tables, b.tables);
    assert_eq!(a.tables["T"].table_name, "dynamowave-t");
}

#[test]
fn yaml_anchors_and_aliases_are_expanded() {
    let yaml = "Resources:\n  A:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      KeySchema: &keys [{AttributeName: id, KeyType: HASH}]\n  B:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      KeySchema: *keys\n";
    let model = Template::parse(yaml, "t").and_then(|t| t.resolve(&Options::default())).expect("model");
    assert_eq!(model.tables["A"].key_schema, model.tables["B"].key_schema);
    assert_eq!(model.tables["B"].table_name, "dynamowave-B");
}
