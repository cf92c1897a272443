//! Microbenchmarks of the fan-out hot path: building a message event once, selecting a route,
//! decoding a client frame, and posting one frame to 1,000 live connections (the shared bytes
//! cloned into each send queue). `cargo bench -p dynamowave-gateway`.

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use dynamowave_core::ConnectionsApi;
use dynamowave_core::model::StoredMessage;
use dynamowave_core::protocol::{ServerEvent, parse_action};
use dynamowave_gateway::events::select_route;
use dynamowave_gateway::registry::{LiveConnection, LocalConnectionsApi, Registry};

fn hot_paths(c: &mut Criterion) {
    let message = StoredMessage {
        room: "lobby".into(),
        seq: 42,
        id: Some("c-17".into()),
        from: "ada".into(),
        text: "x".repeat(100),
        ts: 1_764_273_574_000,
    };
    c.bench_function("serialise a message event (once per broadcast)", |b| {
        b.iter(|| black_box(ServerEvent::Message(black_box(&message)).to_bytes()))
    });
    let body = r#"{"action":"sendmessage","message":"hello, everyone!","id":"c-17"}"#;
    c.bench_function("select the route of a frame", |b| {
        b.iter(|| black_box(select_route("$request.body.action", black_box(body))))
    });
    c.bench_function("decode a sendmessage frame", |b| {
        b.iter(|| black_box(parse_action("sendmessage", black_box(body))))
    });

    // 1,000 live connections whose queues are drained between iterations.
    let registry = Arc::new(Registry::default());
    let mut receivers = Vec::new();
    let mut ids = Vec::new();
    for i in 0..1000 {
        let id = format!("conn-{i:04}");
        let (live, rx) = LiveConnection::new(id.clone(), 0, "127.0.0.1".into(), None, 4096);
        registry.insert(live);
        receivers.push(rx);
        ids.push(id);
    }
    let api = LocalConnectionsApi { registry, max_payload_bytes: 128 * 1024 };
    let frame = ServerEvent::Message(&message).to_bytes();
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    c.bench_function("post one frame to 1,000 connections", |b| {
        b.iter(|| {
            let targets: Vec<&str> = ids.iter().map(String::as_str).collect();
            let failed = runtime.block_on(api.post_to_many(&targets, Bytes::clone(&frame), 64));
            assert!(failed.is_empty());
            for rx in receivers.iter_mut() {
                while rx.try_recv().is_ok() {}
            }
        })
    });
}

criterion_group!(benches, hot_paths);
criterion_main!(benches);
