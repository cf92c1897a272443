//! The delivery port: API Gateway's `@connections` management API as a trait (defined in
//! `dynamowave-apigw`, which the gateway implements).
//!
//! The local gateway implements it by writing to its sockets; the Lambda binaries through
//! `aws-sdk-apigatewaymanagement`. Its errors are the API's own, so handler code that deals with
//! a `Gone` connection behaves the same either way.

pub use dynamowave_apigw::connections_api::{ConnectionInfo, ConnectionsApi, ConnectionsApiError, iso_time};
