//! The real `aws-sdk-apigatewaymanagement` client against our gateway's `@connections` API: the
//! gateway runs in this process on the embedded store, a real WebSocket client is connected,
//! and every call goes over HTTP through the SDK (directly, and through
//! [`ApiGatewayConnectionsApi`], the adapter the Lambda binaries use). Then SigV4: a gateway that
//! only accepts signed calls lets the SDK in with the right credentials and refuses it (403
//! `ForbiddenException`) with a wrong secret or none.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::config::Credentials;
use aws_sdk_apigatewaymanagement::config::http::HttpResponse;
use aws_sdk_apigatewaymanagement::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_apigatewaymanagement::operation::delete_connection::DeleteConnectionError;
use aws_sdk_apigatewaymanagement::operation::get_connection::GetConnectionError;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use bytes::Bytes;
use dynamowave_aws::ApiGatewayConnectionsApi;
use dynamowave_core::{ConnectionsApi, ConnectionsApiError};
use dynamowave_gateway::GatewaySettings;
use dynamowave_gateway::settings::{ManagementAccess, SigV4Credentials};
use dynamowave_testkit::in_process::{RunningGateway, chat_gateway_on_temp_redb};
use dynamowave_testkit::ws::Client as WsClient;

const ACCESS_KEY: &str = "AKIDDYNAMOWAVETEST";
const SECRET_KEY: &str = "dynamowave/test+secret=key";

/// A gateway on an embedded store in a temporary directory, stopped when dropped.
struct TestGateway {
    gateway: RunningGateway,
}

impl TestGateway {
    async fn start(management: ManagementAccess) -> TestGateway {
        TestGateway { gateway: chat_gateway_on_temp_redb(GatewaySettings { management, ..Default::default() }).await }
    }

    fn endpoint(&self) -> String {
        self.gateway.http("/production")
    }

    /// The SDK client for this gateway's `@connections` endpoint, signing with `credentials`
    /// (`None`: no credentials at all; the request goes out unsigned).
    fn sdk(&self, credentials: Option<(&str, &str)>) -> Client {
        let mut config = aws_sdk_apigatewaymanagement::Config::builder()
            .http_client(dynamowave_aws::http::Http1Client::new())
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.endpoint());
        config = match credentials {
            Some((id, secret)) => config.credentials_provider(Credentials::new(id, secret, None, None, "test")),
            None => config.allow_no_auth(),
        };
        Client::from_conf(config.build())
    }

    /// A JSON-framing WebSocket client and its connection id.
    async fn client(&self) -> (WsClient, String) {
        let mut c = self.gateway.connect(true).await;
        let (id, _name) = c.whoami().await;
        (c, id)
    }
}

/// The SDK config the adapter is built from, with these credentials, on the functions' HTTP
/// client.
async fn sdk_config(access_key: &str, secret: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(dynamowave_aws::http::Http1Client::new())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(access_key, secret, None, None, "test"))
        .load()
        .await
}

/// The HTTP status of an SDK error's raw response.
fn status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_sdk_posts_gets_and_deletes_connections() {
    let gw = TestGateway::start(ManagementAccess::default()).await;
    let (mut client, id) = gw.client().await;
    let (mut bystander, bystander_id) = gw.client().await;
    let sdk = gw.sdk(Some(("local", "local")));

    // PostToConnection: the bytes arrive as one text frame, to that client only.
    sdk.post_to_connection()
        .connection_id(&id)
        .data(Blob::new(&b"{\"pushed\":\"by the SDK\"}"[..]))
        .send()
        .await
        .expect("PostToConnection");
    assert_eq!(client.recv_pushed().await, r#"{"pushed":"by the SDK"}"#);
    bystander.expect_no_message(Duration::from_millis(200)).await;

    // GetConnection: the SDK parses connectedAt, identity.sourceIp and lastActiveAt.
    let before = std::time::SystemTime::now();
    let out = sdk.get_connection().connection_id(&id).send().await.expect("GetConnection");
    let connected_at = out.connected_at().expect("connectedAt").to_millis().expect("millis");
    let last_active_at = out.last_active_at().expect("lastActiveAt").to_millis().expect("millis");
    let now_ms = before.duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    assert!(connected_at > now_ms - 60_000 && connected_at <= now_ms + 1_000, "connectedAt {connected_at} vs {now_ms}");
    assert!(last_active_at >= connected_at && last_active_at <= now_ms + 1_000, "lastActiveAt {last_active_at}");
    assert_eq!(out.identity().and_then(|i| i.source_ip()), Some("127.0.0.1"));

    // Unknown id: 410 GoneException for each operation, typed by the SDK.
    let unknown = "AAAAAAAAAAAAAAA=";
    let err = sdk.post_to_connection().connection_id(unknown).data(Blob::new("x")).send().await.unwrap_err();
    assert_eq!(status(&err), Some(410));
    assert!(
        matches!(err.into_service_error(), PostToConnectionError::GoneException(_)),
        "PostToConnection to an unknown id must be GoneException"
    );
    let err = sdk.get_connection().connection_id(unknown).send().await.unwrap_err();
    assert!(matches!(err.into_service_error(), GetConnectionError::GoneException(_)));
    let err = sdk.delete_connection().connection_id(unknown).send().await.unwrap_err();
    assert!(matches!(err.into_service_error(), DeleteConnectionError::GoneException(_)));

    // Over 128 KiB: 413 PayloadTooLargeException, and the connection is untouched.
    let err =
        sdk.post_to_connection().connection_id(&id).data(Blob::new(vec![b'a'; 129 * 1024])).send().await.unwrap_err();
    assert_eq!(status(&err), Some(413));
    let service = err.into_service_error();
    assert!(matches!(service, PostToConnectionError::PayloadTooLargeException(_)), "{service:?}");
    assert_eq!(service.code(), Some("PayloadTooLargeException"));
    // Exactly 128 KiB is allowed.
    let big = "b".repeat(128 * 1024);
    sdk.post_to_connection().connection_id(&id).data(Blob::new(big.clone())).send().await.expect("128 KiB post");
    assert_eq!(client.recv_pushed().await.len(), big.len());

    // DeleteConnection: the client sees the close (1000), and the id is gone afterwards.
    sdk.delete_connection().connection_id(&id).send().await.expect("DeleteConnection");
    assert_eq!(client.recv_close().await, Some(1000));
    let mut gone = false;
    for _ in 0..50 {
        match sdk.get_connection().connection_id(&id).send().await {
            Err(e) if matches!(e.as_service_error(), Some(GetConnectionError::GoneException(_))) => {
                gone = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(gone, "a deleted connection must answer GoneException");
    // The other client is still served.
    sdk.post_to_connection().connection_id(&bystander_id).data(Blob::new("still here")).send().await.expect("post");
    assert_eq!(bystander.recv_pushed().await, "still here");
}

/// The adapter the Lambda binaries use, over HTTP to the gateway: the same calls through the
/// core's `ConnectionsApi` port, with the SDK's errors mapped to the port's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adapter_maps_the_gateways_answers_to_the_port() {
    let gw = TestGateway::start(ManagementAccess::default()).await;
    let (mut client, id) = gw.client().await;
    let (mut other, other_id) = gw.client().await;
    let api = ApiGatewayConnectionsApi::new(&sdk_config("local", "local").await, gw.endpoint());
    assert_eq!(api.endpoint(), gw.endpoint());

    api.post_to_connection(&id, Bytes::from_static(b"through the adapter")).await.expect("post");
    assert_eq!(client.recv_pushed().await, "through the adapter");

    let info = api.get_connection(&id).await.expect("get");
    assert_eq!(info.source_ip, "127.0.0.1");
    assert!(info.connected_at > 1_700_000_000_000 && info.last_active_at >= info.connected_at, "{info:?}");

    assert_eq!(
        api.post_to_connection("AAAAAAAAAAAAAAA=", Bytes::from_static(b"x")).await,
        Err(ConnectionsApiError::Gone)
    );
    assert_eq!(api.get_connection("AAAAAAAAAAAAAAA=").await.map(|_| ()), Err(ConnectionsApiError::Gone));
    assert_eq!(api.delete_connection("AAAAAAAAAAAAAAA=").await, Err(ConnectionsApiError::Gone));
    match api.post_to_connection(&id, Bytes::from(vec![b'a'; 129 * 1024])).await {
        Err(ConnectionsApiError::PayloadTooLarge(_)) => {}
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }

    // post_to_many: the live ones get it, the unknown one is reported Gone.
    let failed = api.post_to_many(&[&id, "AAAAAAAAAAAAAAA=", &other_id], Bytes::from_static(b"to many"), 4).await;
    assert_eq!(failed, vec![("AAAAAAAAAAAAAAA=".to_string(), ConnectionsApiError::Gone)]);
    assert_eq!(client.recv_pushed().await, "to many");
    assert_eq!(other.recv_pushed().await, "to many");

    api.delete_connection(&id).await.expect("delete");
    assert_eq!(client.recv_close().await, Some(1000));
}

/// A gateway that accepts only SigV4-signed `@connections` calls (loopback not trusted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigv4_signed_by_the_configured_key_is_required() {
    let gw = TestGateway::start(ManagementAccess {
        allow_loopback: false,
        credentials: Some(SigV4Credentials { access_key_id: ACCESS_KEY.into(), secret_access_key: SECRET_KEY.into() }),
        ..ManagementAccess::default()
    })
    .await;
    let (mut client, id) = gw.client().await;

    // The real SDK, signing with the configured key: every operation is accepted. The id ends
    // in `=` and the path has `@`, so the double-encoded canonical URI is exercised.
    let signed = gw.sdk(Some((ACCESS_KEY, SECRET_KEY)));
    signed
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new("signed post"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("a valid SigV4 signature was refused: {:?}", e.into_service_error()));
    assert_eq!(client.recv_pushed().await, "signed post");
    let out = signed.get_connection().connection_id(&id).send().await.expect("signed GetConnection");
    assert_eq!(out.identity().and_then(|i| i.source_ip()), Some("127.0.0.1"));
    // A large signed body (the payload hash covers it).
    let big = "c".repeat(100 * 1024);
    signed.post_to_connection().connection_id(&id).data(Blob::new(big.clone())).send().await.expect("big signed post");
    assert_eq!(client.recv_pushed().await.len(), big.len());

    // Through the adapter too.
    let api = ApiGatewayConnectionsApi::new(&sdk_config(ACCESS_KEY, SECRET_KEY).await, gw.endpoint());
    api.post_to_connection(&id, Bytes::from_static(b"adapter, signed")).await.expect("adapter post");
    assert_eq!(client.recv_pushed().await, "adapter, signed");

    // A wrong secret: 403 ForbiddenException.
    let wrong = gw.sdk(Some((ACCESS_KEY, "not-the-secret")));
    let err = wrong.post_to_connection().connection_id(&id).data(Blob::new("nope")).send().await.unwrap_err();
    assert_eq!(status(&err), Some(403));
    assert!(matches!(err.into_service_error(), PostToConnectionError::ForbiddenException(_)));
    let err = wrong.get_connection().connection_id(&id).send().await.unwrap_err();
    assert!(matches!(err.into_service_error(), GetConnectionError::ForbiddenException(_)));
    // An unknown access key.
    let stranger = gw.sdk(Some(("AKIDSOMEONEELSE", SECRET_KEY)));
    let err = stranger.delete_connection().connection_id(&id).send().await.unwrap_err();
    assert!(matches!(err.into_service_error(), DeleteConnectionError::ForbiddenException(_)));
    // No credentials at all: an unsigned request, from loopback, which this gateway does not trust.
    let anonymous = gw.sdk(None);
    let err = anonymous.post_to_connection().connection_id(&id).data(Blob::new("nope")).send().await.unwrap_err();
    assert_eq!(status(&err), Some(403));
    assert!(matches!(err.into_service_error(), PostToConnectionError::ForbiddenException(_)));
    // Through the adapter, a refusal is the port's Forbidden.
    let api = ApiGatewayConnectionsApi::new(&sdk_config(ACCESS_KEY, "not-the-secret").await, gw.endpoint());
    match api.post_to_connection(&id, Bytes::from_static(b"nope")).await {
        Err(ConnectionsApiError::Forbidden(_)) => {}
        other => panic!("expected Forbidden, got {other:?}"),
    }

    // None of the refused calls reached the client; the connection is still there.
    signed.post_to_connection().connection_id(&id).data(Blob::new("last")).send().await.expect("post");
    assert_eq!(client.recv_pushed().await, "last");
    // A signed DeleteConnection closes it.
    signed.delete_connection().connection_id(&id).send().await.expect("signed DeleteConnection");
    assert_eq!(client.recv_close().await, Some(1000));
}
