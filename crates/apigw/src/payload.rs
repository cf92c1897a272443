//! An event as API Gateway puts it on the wire to a Lambda function. `aws_lambda_events`
//! serializes `queryStringParameters` as a map of lists (its `QueryMap` keeps every value),
//! where API Gateway sends one string per name — the last one, as for REST APIs — and the
//! lists only in `multiValueQueryStringParameters`. Functions in Rust read either shape;
//! handlers in Node.js or Python read `event.queryStringParameters.room` as a string.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use serde_json::Value;

/// `event` as the JSON document API Gateway sends a Lambda proxy integration.
///
/// # Errors
/// When the event does not serialize (it always does: strings, numbers and maps).
pub fn lambda_payload(event: &ApiGatewayWebsocketProxyRequest) -> Result<Vec<u8>, serde_json::Error> {
    let mut value = serde_json::to_value(event)?;
    if let Some(Value::Object(query)) = value.get_mut("queryStringParameters") {
        for v in query.values_mut() {
            if let Value::Array(values) = v {
                *v = values.pop().unwrap_or(Value::Null);
            }
        }
    }
    serde_json::to_vec(&value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_string_parameters_are_single_strings_and_the_lists_stay_in_multi_value() {
        let mut event = ApiGatewayWebsocketProxyRequest::default();
        event.query_string_parameters = "room=r1&tag=a&tag=b".parse().expect("a query");
        event.multi_value_query_string_parameters = event.query_string_parameters.clone();
        let v: Value = serde_json::from_slice(&lambda_payload(&event).expect("serializes")).expect("JSON");
        assert_eq!(v["queryStringParameters"], serde_json::json!({"room": "r1", "tag": "b"}));
        assert_eq!(v["multiValueQueryStringParameters"], serde_json::json!({"room": ["r1"], "tag": ["a", "b"]}));
        // And a Rust function still reads it back.
        let back: ApiGatewayWebsocketProxyRequest = serde_json::from_value(v).expect("reads back");
        assert_eq!(back.query_string_parameters.first("room"), Some("r1"));
    }
}
