//! Bad input: each error names the place, with CloudFormation's words, and nothing panics.

use dynamowave_template::{Error, Options, Problem, Template, parse_overrides};

fn error_of(text: &str, overrides: &[&str]) -> String {
    let options = Options { parameter_overrides: parse_overrides(overrides).expect("overrides"), ..Options::default() };
    match Template::parse(text, "template.yaml").and_then(|t| t.resolve(&options)) {
        Ok(model) => panic!("resolved: {}", model.to_json_pretty()),
        Err(e) => e.to_string(),
    }
}

/// An API with one route whose `Target` is `target`, and `extra` resources.
fn api_with(target: &str, extra: &str) -> String {
    format!(
        "Resources:
  ChatApi:
    Type: AWS::ApiGatewayV2::Api
    Properties: {{Name: chat, ProtocolType: WEBSOCKET, RouteSelectionExpression: $request.body.action}}
  SendRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref ChatApi
      RouteKey: sendmessage
      Target: {target}
  SendInteg:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref ChatApi
      IntegrationType: MOCK
{extra}"
    )
}

/// A function whose environment variable `X` is `value`, and `extra` top-level sections.
fn function_with(value: &str, extra: &str) -> String {
    format!(
        "{extra}
Resources:
  Fn:
    Type: AWS::Lambda::Function
    Properties:
      Code: ./src
      Runtime: python3.12
      Handler: app.handler
      Environment:
        Variables:
          X: {value}
  Table:
    Type: AWS::DynamoDB::Table
    Condition: Never
    Properties:
      KeySchema: [{{AttributeName: id, KeyType: HASH}}]
"
    )
}

const NEVER: &str = "Conditions:\n  Never: !Equals [a, b]";

#[test]
fn an_unknown_intrinsic_names_the_resource_and_property() {
    assert_target_errors(&[
        ("!Foo bar", "Fn::Foo is not a CloudFormation intrinsic"),
        ("{\"Fn::Concat\": [a, b]}", "Fn::Concat is not a CloudFormation intrinsic"),
    ]);
    // Nested: the path is the property's.
    assert_eq!(
        error_of(&function_with("!Join [',', [!Bogus x]]", NEVER), &[]),
        "Resources.Fn.Properties.Environment.Variables.X: Fn::Bogus is not a CloudFormation intrinsic"
    );
}

#[test]
fn a_missing_parameter_says_how_to_give_it() {
    let text = api_with("integrations/SendInteg", "")
        .replace("Resources:", "Parameters:\n  TableName: {Type: String}\nResources:");
    assert_eq!(
        error_of(&text, &[]),
        "Parameters.TableName: parameter TableName has no Default: give its value with --parameter-overrides TableName=VALUE"
    );
    let ssm = api_with("integrations/SendInteg", "").replace("Resources:", "Parameters:\n  Ami: {Type: 'AWS::SSM::Parameter::Value<String>', Default: /app/ami}\n  Key: {Type: 'AWS::SSM::Parameter::Value<String>'}\nResources:");
    assert_eq!(
        error_of(&ssm, &[]),
        "Parameters.Ami: parameter Ami has type AWS::SSM::Parameter::Value<String>, read from SSM Parameter Store on AWS (parameter /app/ami): give its value with --parameter-overrides Ami=VALUE"
    );
    assert_eq!(
        error_of(&ssm, &["Ami=ami-1"]),
        "Parameters.Key: parameter Key has type AWS::SSM::Parameter::Value<String>, read from SSM Parameter Store on AWS: give its value with --parameter-overrides Key=VALUE"
    );
    assert!(
        Template::parse(&ssm, "t")
            .and_then(|t| t.resolve(&Options {
                parameter_overrides: parse_overrides(["Ami=ami-1", "Key=k"]).expect("o"),
                ..Options::default()
            }))
            .is_ok()
    );
    assert_eq!(
        error_of(&api_with("integrations/SendInteg", ""), &["Nope=1"]),
        "Parameters.Nope: --parameter-overrides Nope=…: the template declares no parameter Nope"
    );
    assert_eq!(
        parse_overrides(["novalue"]).err().map(|e| e.to_string()).as_deref(),
        Some("parameter override \"novalue\" is not of the form KEY=VALUE")
    );
}

#[test]
fn a_value_the_parameter_refuses() {
    let text = function_with(
        "!Ref Arch",
        &format!(
            "{NEVER}\nParameters:\n  Arch: {{Type: String, Default: arm64, AllowedValues: [arm64, x86_64]}}\n  Memory: {{Type: Number, Default: 128, MinValue: 128, MaxValue: 10240}}\n  Stage: {{Type: String, Default: prod, AllowedPattern: '[a-z]+'}}"
        ),
    );
    assert_eq!(
        error_of(&text, &["Arch=sparc"]),
        "Parameters.Arch: \"sparc\" is not allowed: not one of its AllowedValues: arm64, x86_64"
    );
    assert_eq!(error_of(&text, &["Memory=64"]), "Parameters.Memory: \"64\" is not allowed: below its MinValue 128");
    assert_eq!(
        error_of(&text, &["Memory=lots"]),
        "Parameters.Memory: \"lots\" is not allowed: the parameter's Type is Number"
    );
    assert_eq!(
        error_of(&text, &["Stage=Prod-1"]),
        "Parameters.Stage: \"Prod-1\" is not allowed: does not match its AllowedPattern [a-z]+"
    );
    let bad_type = function_with("x", &format!("{NEVER}\nParameters:\n  P: {{Type: Strng, Default: x}}"));
    assert_eq!(error_of(&bad_type, &[]), "Parameters.P.Type: unknown parameter Type Strng");
}

#[test]
fn references_to_nothing() {
    assert_variable_errors(&[
        ("!GetAtt Missing.Arn", "Fn::GetAtt of Missing.Arn: Missing is not a resource of the template"),
        ("!Ref Missing", "Ref of Missing: not a parameter, a pseudo parameter or a resource of the template"),
        (
            "!Sub '${Missing}-x'",
            "Fn::Sub of Missing: not a parameter, a pseudo parameter or a resource of the template",
        ),
        ("!Ref Table", "Ref of Table: the resource does not exist, its Condition Never is false"),
        ("!GetAtt Fn.Role", "Fn::GetAtt of Fn.Role: AWS::Lambda::Function has no attribute Role (it has Arn)"),
        ("!If [Sometimes, a, b]", "condition Sometimes is not declared in Conditions"),
        (
            "!ImportValue other-stack-table",
            "Fn::ImportValue of other-stack-table: no other stack exists locally, give its value as an export",
        ),
        ("!FindInMap [Sizes, small, Memory]", "Fn::FindInMap: no mapping Sizes in Mappings"),
    ]);
}

#[test]
fn circular_references() {
    let tables = "Resources:
  A:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Ref B
      KeySchema: [{AttributeName: id, KeyType: HASH}]
  B:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub '${A}-b'
      KeySchema: [{AttributeName: id, KeyType: HASH}]
";
    assert_eq!(error_of(tables, &[]), "Resources.B.Properties.TableName: circular reference: A -> B -> A");
    let itself = "Resources:\n  A:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      TableName: !Join ['', [!GetAtt A.Arn]]\n      KeySchema: [{AttributeName: id, KeyType: HASH}]\n";
    assert_eq!(error_of(itself, &[]), "Resources.A.Properties.TableName: circular reference: A -> A");
    let conditions = function_with(
        "x",
        "Conditions:\n  Never: !Equals [a, b]\n  C1: !Condition C2\n  C2: !Or [!Condition Never, !Condition C1]",
    );
    assert_eq!(error_of(&conditions, &[]), "Conditions.C2: circular reference: C1 -> C2 -> C1");
}

#[test]
fn bad_arguments() {
    let cases = [
        ("!Sub [a, b, c]", "Fn::Sub takes a string, or a list of a string and a mapping of variables"),
        ("!Sub '${unclosed'", "Fn::Sub takes a string whose every ${ is closed by }"),
        ("!Join [',']", "Fn::Join takes a list of a delimiter and a list of strings"),
        ("!Join [',', [a, [b]]]", "Fn::Join takes a list of a delimiter and a list of strings"),
        ("!Select [3, [a, b]]", "Fn::Select: index 3 is out of range for a list of 2"),
        ("!Select [-1, [a, b]]", "Fn::Select takes an index that is a whole number from 0"),
        ("!Split ['', abc]", "Fn::Split takes a delimiter that is not empty"),
        ("!If [Never, a]", "Fn::If takes a list of a condition name, the value if true and the value if false"),
        ("!GetAtt Fn", "Fn::GetAtt takes a list of a logical id and an attribute name, or \"LogicalId.Attribute\""),
        ("!Ref [a]", "Ref takes the name of a parameter, a pseudo parameter or a resource"),
        (
            "!Cidr [10.0.0.0/16, 2, 8]",
            "Fn::Cidr is not supported locally: there is no VPC locally; give the blocks as parameters",
        ),
        ("!Equals [a]", "Fn::Equals takes a list of two values"),
        ("!And [!Condition Never]", "Fn::And takes a list of 2 to 10 conditions"),
        ("!Split [',', [a]]", "Fn::Split takes a list of a delimiter and a string"),
        ("[a, b]", "expected a string, found a list"),
    ];
    assert_variable_errors(&cases);
}

/// Each `(target, message)`: the route's `Target` set to `target` fails with `message`, named by
/// the property's path.
fn assert_target_errors(cases: &[(&str, &str)]) {
    for (target, message) in cases {
        assert_eq!(
            error_of(&api_with(target, ""), &[]),
            format!("Resources.SendRoute.Properties.Target: {message}"),
            "{target}"
        );
    }
}

/// Each `(value, message)`: the function's variable `X` set to `value` fails with `message`,
/// named by the variable's path.
fn assert_variable_errors(cases: &[(&str, &str)]) {
    for (value, message) in cases {
        assert_eq!(
            error_of(&function_with(value, NEVER), &[]),
            format!("Resources.Fn.Properties.Environment.Variables.X: {message}"),
            "{value}"
        );
    }
}

#[test]
fn the_api_resources_must_fit_together() {
    assert_target_errors(&[
        ("integrations/Nothing", "Nothing is the id of no integration of API ChatApi"),
        ("SendInteg", "expected integrations/<IntegrationId>, found \"SendInteg\""),
    ]);
    let orphan = api_with(
        "integrations/SendInteg",
        "  Orphan:\n    Type: AWS::ApiGatewayV2::Route\n    Properties: {ApiId: abc123, RouteKey: x}\n",
    );
    assert_eq!(error_of(&orphan, &[]), "Resources.Orphan.Properties.ApiId: abc123 is the id of no API of the template");
    let keyless = api_with("integrations/SendInteg", "").replace("      RouteKey: sendmessage\n", "");
    assert_eq!(error_of(&keyless, &[]), "Resources.SendRoute.Properties.RouteKey: is required");
    let throttle = api_with(
        "integrations/SendInteg",
        "  Stage:\n    Type: AWS::ApiGatewayV2::Stage\n    Properties:\n      ApiId: !Ref ChatApi\n      StageName: prod\n      DefaultRouteSettings: {ThrottlingBurstLimit: many}\n",
    );
    assert_eq!(
        error_of(&throttle, &[]),
        "Resources.Stage.Properties.DefaultRouteSettings.ThrottlingBurstLimit: expected a whole number from 0, found the string \"many\""
    );
    // An integration whose function is not in the template is served as an error, with a warning.
    let foreign = api_with(
        "integrations/SendInteg",
        "",
    )
    .replace(
        "      IntegrationType: MOCK\n",
        "      IntegrationType: AWS_PROXY\n      IntegrationUri: arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:elsewhere/invocations\n",
    );
    let model = Template::parse(&foreign, "t").and_then(|t| t.resolve(&Options::default())).expect("model");
    assert_eq!(
        model.warnings,
        [
            "Resources.SendInteg.Properties.IntegrationUri: arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:elsewhere/invocations invokes no function of the template, so its route cannot be served locally"
        ]
    );
}

#[test]
fn code_that_is_not_local() {
    let sam = "Transform: AWS::Serverless-2016-10-31\nResources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      Runtime: python3.12\n      Handler: app.handler\n";
    assert_eq!(
        error_of(&format!("{sam}      CodeUri: {{Bucket: my-bucket, Key: code.zip}}\n"), &[]),
        "Resources.Fn.Properties.CodeUri: the code is the S3 object s3://my-bucket/code.zip, not on this machine: give a local path (what `sam build` reads)"
    );
    assert_eq!(
        error_of(&format!("{sam}      CodeUri: s3://my-bucket/code.zip\n"), &[]),
        "Resources.Fn.Properties.CodeUri: s3://my-bucket/code.zip is in S3, not on this machine: give a local path (what `sam build` reads)"
    );
    assert_eq!(
        error_of(sam, &[]),
        "Resources.Fn.Properties.CodeUri: the function has no CodeUri (nor InlineCode, nor Globals.Function.CodeUri)"
    );
    let lambda = "Resources:\n  Fn:\n    Type: AWS::Lambda::Function\n    Properties:\n      Runtime: python3.12\n      Handler: app.handler\n      Code: {S3Bucket: b, S3Key: k.zip}\n";
    assert_eq!(
        error_of(lambda, &[]),
        "Resources.Fn.Properties.Code: the code is the S3 object s3://b/k.zip, not on this machine: give a local path (what `sam build` reads)"
    );
}

#[test]
fn text_that_is_not_a_template() {
    let yaml = Template::parse("Resources:\n  A: [unclosed\n", "bad.yaml").expect_err("error");
    assert!(matches!(yaml, Error::Syntax { format: "YAML", .. }), "{yaml}");
    assert!(yaml.to_string().starts_with("bad.yaml: not a YAML template: "), "{yaml}");
    let json = Template::parse("{\"Resources\": ", "bad.json").expect_err("error");
    assert!(json.to_string().starts_with("bad.json: not a JSON template: EOF while parsing"), "{json}");
    let list = Template::parse("- a\n- b\n", "list.yaml").expect_err("error");
    assert_eq!(list.to_string(), "list.yaml: not a YAML template: the top level of a template is a mapping");
    let empty = Template::parse("Description: nothing\n", "empty.yaml").expect_err("error");
    assert_eq!(empty.to_string(), "Resources: a template declares at least one resource");
    let typeless = Template::parse("Resources:\n  A:\n    Properties: {}\n", "t").expect_err("error");
    assert_eq!(typeless.problem(), Some(&Problem::Required));
    assert_eq!(typeless.to_string(), "Resources.A.Type: is required");
    let twice = Template::parse("Resources:\n  A: {Type: AWS::SNS::Topic}\n  A: {Type: AWS::SNS::Topic}\n", "t")
        .expect_err("error");
    assert!(twice.to_string().contains("twice") || twice.to_string().contains("duplicate"), "{twice}");
    let missing = Template::from_file(std::path::Path::new("/nonexistent/template.yaml")).expect_err("error");
    assert!(missing.to_string().starts_with("cannot read /nonexistent/template.yaml: "), "{missing}");
}
