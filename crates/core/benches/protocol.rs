//! Microbenchmarks of the chat protocol's hot paths: building a message event (once per
//! broadcast) and decoding a client frame. `cargo bench -p dynamowave-core`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dynamowave_core::model::StoredMessage;
use dynamowave_core::protocol::{ServerEvent, parse_action};

fn protocol(c: &mut Criterion) {
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
    c.bench_function("decode a sendmessage frame", |b| {
        b.iter(|| black_box(parse_action("sendmessage", black_box(body))))
    });
}

criterion_group!(benches, protocol);
criterion_main!(benches);
