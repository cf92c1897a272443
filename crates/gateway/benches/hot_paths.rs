//! Microbenchmarks of the gateway's hot paths: selecting a route, and posting one frame to 1,000
//! live connections: real loopback TCP sockets, written directly with the shared frame (a thread
//! drains the client ends, as clients would). `cargo bench -p dynamowave-gateway`. (The chat's
//! own, building a message event and decoding a frame: `cargo bench -p dynamowave-core`.)

use std::hint::black_box;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use dynamowave_apigw::ConnectionsApi;
use dynamowave_gateway::events::{ConnectionContext, select_route};
use dynamowave_gateway::registry::{LiveConnection, LocalConnectionsApi, Registry};

fn hot_paths(c: &mut Criterion) {
    let body = r#"{"action":"sendmessage","message":"hello, everyone!","id":"c-17"}"#;
    c.bench_function("select the route of a frame", |b| {
        b.iter(|| black_box(select_route("$request.body.action", black_box(body))))
    });

    // 1,000 live connections on real sockets; a thread reads the client ends as fast as it can.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let registry = Arc::new(Registry::default());
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for i in 0..1000 {
        let id = format!("conn-{i:04}");
        let client = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        client.set_nonblocking(true).expect("nonblocking");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        let ctx = ConnectionContext {
            connection_id: id.clone(),
            connected_at: 0,
            source_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            user_agent: None,
            domain_name: "localhost".into(),
            authorizer: Default::default(),
        };
        let live = LiveConnection::new(ctx, 4096, 4 << 20);
        let _entered = runtime.enter();
        live.attach(tokio::net::TcpStream::from_std(server).expect("register"));
        registry.insert(live);
        clients.push(client);
        ids.push(id);
    }
    // One turn of the reactor marks every socket writable.
    runtime.block_on(async { tokio::time::sleep(std::time::Duration::from_millis(20)).await });
    let stop = Arc::new(AtomicBool::new(false));
    let drainer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while !stop.load(Ordering::Relaxed) {
                for c in clients.iter_mut() {
                    while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
                }
            }
        })
    };
    // No coalescing: this measures the direct write of each delivery.
    let api = LocalConnectionsApi {
        registry,
        max_payload_bytes: 128 * 1024,
        coalesce: std::time::Duration::ZERO,
        send_queue_wait: std::time::Duration::from_secs(5),
    };
    // A chat message event of 100 characters, as the chat's fan-out posts it.
    let frame = Bytes::from(format!(
        r#"{{"type":"message","room":"lobby","seq":42,"id":"c-17","from":"ada","text":"{}","ts":1764273574000}}"#,
        "x".repeat(100)
    ));
    let targets: Vec<&str> = ids.iter().map(String::as_str).collect();
    c.bench_function("post one frame to 1,000 connections (socket writes)", |b| {
        b.iter(|| {
            let failed = runtime.block_on(api.post_to_many(&targets, Bytes::clone(&frame), 64));
            assert!(failed.is_empty());
        })
    });
    stop.store(true, Ordering::Relaxed);
    let _ = drainer.join();
}

criterion_group!(benches, hot_paths);
criterion_main!(benches);
