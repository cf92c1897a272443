//! WebSocket conformance (RFC 6455), in Autobahn's categories, against the real gateway
//! (in-process chat handlers on a redb store). A raw client (the test kit's `raw`) writes frames byte by byte,
//! so each test sends exactly the violation it names. Every test also checks that the server
//! still serves a new client afterwards. The table of cases: `docs/conformance.md`.

use dynamowave_gateway::GatewaySettings;
use dynamowave_gateway::settings::Limits;
use dynamowave_testkit::in_process::{RunningGateway, chat_gateway_on_temp_redb};
use dynamowave_testkit::raw::{
    BINARY, CLOSE, CONTINUATION, FrameSpec, Length, PING, PONG, RawClient, TEXT, assert_still_serving,
};

/// The gateway with its default settings, the chat on a temporary store.
async fn spawn_server() -> RunningGateway {
    chat_gateway_on_temp_redb(GatewaySettings::default()).await
}

fn sendmessage(text: &str) -> String {
    serde_json::json!({"action": "sendmessage", "message": text}).to_string()
}

/// Sends `frames` on a fresh connection and returns the close code the server fails it with.
async fn close_code_after(server: &RunningGateway, frames: Vec<FrameSpec>) -> u16 {
    let mut c = RawClient::connect(server.addr).await;
    for f in frames {
        c.send(f).await;
    }
    let code = c.expect_close_code().await;
    c.expect_end().await;
    code
}

/// Asserts the connection is failed with `expected`, then that the server still serves others.
async fn assert_fails(server: &RunningGateway, case: &str, frames: Vec<FrameSpec>, expected: &[u16]) {
    let code = close_code_after(server, frames).await;
    assert!(expected.contains(&code), "{case}: expected close {expected:?}, got {code}");
    assert_still_serving(server.addr).await;
}

// ---- 1. Framing: payload lengths in the 7-, 16- and 64-bit encodings (Autobahn 1.x) ----

#[tokio::test]
async fn framing_7_16_and_64_bit_lengths() {
    // 64 bits are needed only above 65535 bytes, beyond API Gateway's 32 KiB frame: this
    // gateway gets larger limits (they are settings) so the encoding itself is what is tested.
    let limits = Limits { max_frame_bytes: 256 * 1024, max_message_bytes: 512 * 1024, ..Limits::default() };
    let server = chat_gateway_on_temp_redb(GatewaySettings { limits, ..GatewaySettings::default() }).await;
    let mut c = RawClient::connect(server.addr).await;
    // 7 bits: frames of 17 to 125 bytes.
    c.send(FrameSpec::new(TEXT, r#"{"action":"ping"}"#)).await;
    c.expect_event("pong").await;
    let filler = 125 - sendmessage("").len();
    let frame = FrameSpec::new(TEXT, sendmessage(&"y".repeat(filler)));
    assert_eq!(frame.payload.len(), 125);
    c.send(frame).await;
    assert_eq!(c.expect_event("message").await["text"].as_str().map(str::len), Some(filler));
    // 16 bits from 126 bytes, 64 bits from 65536.
    for size in [126usize - 30, 300, 65_535 - 37, 65_536, 70_000, 200_000] {
        let text = "x".repeat(size);
        let frame = FrameSpec::new(TEXT, sendmessage(&text));
        let len = frame.payload.len();
        c.send(frame).await;
        let m = c.expect_event("message").await;
        assert_eq!(m["text"].as_str().map(str::len), Some(size), "a {len}-byte frame");
    }
    // A short payload in the 16- and 64-bit forms (not minimal, which RFC 6455 asks senders to
    // avoid but does not tell receivers to refuse): still read correctly.
    c.send(FrameSpec::new(TEXT, r#"{"action":"ping"}"#).length(Length::Bits16)).await;
    c.expect_event("pong").await;
    c.send(FrameSpec::new(TEXT, r#"{"action":"ping"}"#).length(Length::Bits64)).await;
    c.expect_event("pong").await;
    assert_still_serving(server.addr).await;
}

// ---- 2. Reserved bits (Autobahn 3.x): no extension is negotiated, so RSV must be 0 ----

#[tokio::test]
async fn reserved_bits_fail_the_connection_with_1002() {
    let server = spawn_server().await;
    for rsv in 1..=7u8 {
        let frames = vec![FrameSpec::new(TEXT, r#"{"action":"ping"}"#).rsv(rsv)];
        assert_fails(&server, &format!("RSV={rsv:03b} on text"), frames, &[1002]).await;
    }
    let frames = vec![FrameSpec::new(PING, "x").rsv(0b100)];
    assert_fails(&server, "RSV1 on ping", frames, &[1002]).await;
}

// ---- 3. Opcodes (Autobahn 4.x): 3-7 and B-F are reserved ----

#[tokio::test]
async fn reserved_opcodes_fail_the_connection_with_1002() {
    let server = spawn_server().await;
    for opcode in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        let frames = vec![FrameSpec::new(opcode, "")];
        assert_fails(&server, &format!("opcode {opcode:#x}"), frames, &[1002]).await;
        let frames = vec![FrameSpec::new(opcode, "payload")];
        assert_fails(&server, &format!("opcode {opcode:#x} with payload"), frames, &[1002]).await;
    }
}

// ---- 4. Fragmentation (Autobahn 5.x) ----

#[tokio::test]
async fn a_text_message_in_several_fragments_arrives_whole() {
    let server = spawn_server().await;
    let mut c = RawClient::connect(server.addr).await;
    let body = sendmessage("in pieces");
    let bytes = body.as_bytes();
    let (a, rest) = bytes.split_at(5);
    let (b, d) = rest.split_at(10);
    c.send(FrameSpec::new(TEXT, a).fin(false)).await;
    c.send(FrameSpec::new(CONTINUATION, b).fin(false)).await;
    c.send(FrameSpec::new(CONTINUATION, "").fin(false)).await; // empty fragments are legal
    c.send(FrameSpec::new(CONTINUATION, d)).await;
    assert_eq!(c.expect_event("message").await["text"], "in pieces");
    // One byte per frame.
    let body = sendmessage("bytewise");
    let n = body.len();
    for (i, byte) in body.bytes().enumerate() {
        let opcode = if i == 0 { TEXT } else { CONTINUATION };
        c.send(FrameSpec::new(opcode, [byte]).fin(i == n - 1)).await;
    }
    assert_eq!(c.expect_event("message").await["text"], "bytewise");
    assert_still_serving(server.addr).await;
}

#[tokio::test]
async fn a_continuation_without_a_start_fails_with_1002() {
    let server = spawn_server().await;
    let frames = vec![FrameSpec::new(CONTINUATION, r#"{"action":"ping"}"#)];
    assert_fails(&server, "lone final continuation", frames, &[1002]).await;
    let frames = vec![FrameSpec::new(CONTINUATION, "{").fin(false), FrameSpec::new(CONTINUATION, "}")];
    assert_fails(&server, "non-final continuation first", frames, &[1002]).await;
}

#[tokio::test]
async fn a_new_data_frame_inside_a_fragmented_message_fails_with_1002() {
    let server = spawn_server().await;
    let frames = vec![FrameSpec::new(TEXT, "{").fin(false), FrameSpec::new(TEXT, r#"{"action":"ping"}"#)];
    assert_fails(&server, "text inside text", frames, &[1002]).await;
    let frames = vec![FrameSpec::new(TEXT, "{").fin(false), FrameSpec::new(BINARY, "x")];
    assert_fails(&server, "binary inside text", frames, &[1002]).await;
}

// ---- 5. Control frames inside a fragmented message (Autobahn 5.6-5.20) ----

#[tokio::test]
async fn a_ping_between_fragments_is_answered_and_the_message_still_arrives() {
    let server = spawn_server().await;
    let mut c = RawClient::connect(server.addr).await;
    let body = sendmessage("around a ping");
    let (a, b) = body.as_bytes().split_at(12);
    c.send(FrameSpec::new(TEXT, a).fin(false)).await;
    c.send(FrameSpec::new(PING, "mid-message")).await;
    c.send(FrameSpec::new(PONG, "unsolicited")).await; // unsolicited pongs are ignored (§5.5.3)
    c.send(FrameSpec::new(CONTINUATION, b)).await;
    let pong = c.read_frame().await.expect("a frame");
    assert_eq!((pong.opcode, pong.payload.as_slice()), (PONG, b"mid-message".as_slice()));
    assert_eq!(c.expect_event("message").await["text"], "around a ping");
    assert_still_serving(server.addr).await;
}

// ---- 6. Ping and pong payloads (Autobahn 2.x) ----

#[tokio::test]
async fn ping_payloads_are_echoed_exactly_up_to_125_bytes() {
    let server = spawn_server().await;
    let mut c = RawClient::connect(server.addr).await;
    let binary: Vec<u8> = (0..=255u8).cycle().skip(3).take(125).collect();
    for payload in [Vec::new(), b"hello".to_vec(), vec![0x00, 0xff, 0xfe, 0x80], binary] {
        c.send(FrameSpec::new(PING, payload.clone())).await;
        let pong = c.read_frame().await.expect("a pong");
        assert_eq!((pong.opcode, pong.fin, pong.rsv), (PONG, true, 0));
        assert_eq!(pong.payload, payload);
    }
    // Ten pings in a row, ten pongs in order.
    for i in 0..10u8 {
        c.send(FrameSpec::new(PING, [i])).await;
    }
    for i in 0..10u8 {
        assert_eq!(c.read_frame().await.expect("a pong").payload, [i]);
    }
    assert_still_serving(server.addr).await;
}

#[tokio::test]
async fn a_126_byte_ping_fails_with_1002() {
    let server = spawn_server().await;
    let frames = vec![FrameSpec::new(PING, vec![b'p'; 126])];
    assert_fails(&server, "126-byte ping", frames, &[1002]).await;
    let frames = vec![FrameSpec::new(PONG, vec![b'p'; 126])];
    assert_fails(&server, "126-byte pong", frames, &[1002]).await;
}

#[tokio::test]
async fn a_fragmented_control_frame_fails_with_1002() {
    let server = spawn_server().await;
    let frames = vec![FrameSpec::new(PING, "a").fin(false), FrameSpec::new(CONTINUATION, "b")];
    assert_fails(&server, "fragmented ping", frames, &[1002]).await;
    let frames = vec![FrameSpec::new(PONG, "a").fin(false)];
    assert_fails(&server, "fragmented pong", frames, &[1002]).await;
    let frames = vec![FrameSpec::new(CLOSE, 1000u16.to_be_bytes()).fin(false)];
    assert_fails(&server, "fragmented close", frames, &[1002]).await;
}

// ---- 7. Close handling (Autobahn 7.x) ----

fn close_frame(code: u16, reason: &[u8]) -> FrameSpec {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    FrameSpec::new(CLOSE, payload)
}

#[tokio::test]
async fn a_valid_close_code_is_echoed() {
    let server = spawn_server().await;
    for code in [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999] {
        let mut c = RawClient::connect(server.addr).await;
        c.send(close_frame(code, b"see you")).await;
        let (echoed, _) = c.expect_close().await.unwrap_or_else(|| panic!("{code}: empty close reply"));
        assert_eq!(echoed, code, "the close reply echoes the code (RFC 6455 §5.5.1)");
        c.expect_end().await;
    }
    // An empty close frame gets an empty (or 1000) reply.
    let mut c = RawClient::connect(server.addr).await;
    c.send(FrameSpec::new(CLOSE, Vec::new())).await;
    let reply = c.expect_close().await;
    assert!(matches!(reply, None | Some((1000, _))), "{reply:?}");
    c.expect_end().await;
    // Nothing after the close is processed: a message sent after it is not published.
    let mut watcher = RawClient::connect(server.addr).await;
    let mut c = RawClient::connect(server.addr).await;
    c.send(close_frame(1000, b"")).await;
    c.send_text(&sendmessage("after close")).await;
    assert_eq!(c.expect_close_code().await, 1000);
    watcher.send_text(&sendmessage("watcher")).await;
    assert_eq!(watcher.expect_event("message").await["text"], "watcher", "nothing from the closed connection");
    assert_still_serving(server.addr).await;
}

/// After the client's close frame the server has all it needs: it echoes, closes TCP and runs
/// `$disconnect` at once, even while the client keeps its own side of TCP open (before, the
/// server waited up to 2 s for the client's FIN first).
#[tokio::test]
async fn a_client_close_ends_the_connection_without_waiting_for_its_fin() {
    let server = spawn_server().await;
    let mut watcher = RawClient::connect(server.addr).await;
    let mut c = RawClient::connect(server.addr).await;
    c.send(close_frame(1000, b"bye")).await;
    let started = std::time::Instant::now();
    assert_eq!(c.expect_close_code().await, 1000);
    c.expect_end().await;
    // `c` still holds its socket open (no FIN sent); `$disconnect` must not wait for it.
    loop {
        watcher.send_text(r#"{"action":"who"}"#).await;
        let members = watcher.expect_event("members").await;
        if members["members"].as_array().map(Vec::len) == Some(1) {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_millis(1000),
            "the closed connection is still a member after 1 s: {members}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(c);
}

#[tokio::test]
async fn invalid_close_codes_fail_with_1002() {
    let server = spawn_server().await;
    for code in [0u16, 999, 1004, 1005, 1006, 1012 + 4, 1015, 1100, 2000, 2999, 5000, 65535] {
        assert_fails(&server, &format!("close code {code}"), vec![close_frame(code, b"")], &[1002]).await;
    }
}

#[tokio::test]
async fn a_close_payload_of_one_byte_fails_with_1002() {
    let server = spawn_server().await;
    assert_fails(&server, "1-byte close payload", vec![FrameSpec::new(CLOSE, [0x03])], &[1002]).await;
}

#[tokio::test]
async fn invalid_utf8_in_a_close_reason_fails_with_1007() {
    let server = spawn_server().await;
    let frames = vec![close_frame(1000, &[b'o', b'k', 0xff, 0xfe])];
    assert_fails(&server, "invalid UTF-8 close reason", frames, &[1007, 1002]).await;
    // A close frame of the maximum size (2 + 123), valid UTF-8: echoed.
    let mut c = RawClient::connect(server.addr).await;
    c.send(close_frame(1000, "é".repeat(61).as_bytes())).await;
    assert_eq!(c.expect_close_code().await, 1000);
}

// ---- 8. UTF-8 handling (Autobahn 6.x) ----

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_fails_with_1007() {
    let server = spawn_server().await;
    let cases: [(&str, &[u8]); 5] = [
        ("bad byte", b"{\"action\":\"ping\",\"x\":\"\xff\"}"),
        ("overlong", b"{\"x\":\"\xc0\xaf\"}"),
        ("surrogate", b"{\"x\":\"\xed\xa0\x80\"}"),
        ("beyond U+10FFFF", b"{\"x\":\"\xf4\x90\x80\x80\"}"),
        ("truncated at the end", b"{\"x\":\"\xe2\x82"),
    ];
    for (case, payload) in cases {
        assert_fails(&server, case, vec![FrameSpec::new(TEXT, payload)], &[1007]).await;
    }
}

#[tokio::test]
async fn utf8_split_across_fragments_is_checked_on_the_whole_message() {
    let server = spawn_server().await;
    // Valid: "€" (E2 82 AC) split inside the code point arrives whole.
    let mut c = RawClient::connect(server.addr).await;
    let body = sendmessage("price: 5€");
    let split = body.find('€').unwrap() + 1;
    let (a, b) = body.as_bytes().split_at(split);
    c.send(FrameSpec::new(TEXT, a).fin(false)).await;
    c.send(FrameSpec::new(CONTINUATION, b)).await;
    assert_eq!(c.expect_event("message").await["text"], "price: 5€");
    drop(c);
    // Invalid: a sequence that is broken only once the fragments are joined.
    let frames = vec![
        FrameSpec::new(TEXT, b"{\"x\":\"\xe2\x82".to_vec()).fin(false),
        FrameSpec::new(CONTINUATION, b"\x28\"}".to_vec()),
    ];
    assert_fails(&server, "invalid across fragments", frames, &[1007]).await;
    // Invalid within the first fragment, the message unfinished.
    let frames =
        vec![FrameSpec::new(TEXT, b"{\"x\":\"\xff".to_vec()).fin(false), FrameSpec::new(CONTINUATION, b"\"}".to_vec())];
    assert_fails(&server, "invalid in the first fragment", frames, &[1007]).await;
}

// ---- 9. Masking (RFC 6455 §5.1) ----

#[tokio::test]
async fn an_unmasked_client_frame_fails_with_1002() {
    let server = spawn_server().await;
    let frames = vec![FrameSpec::new(TEXT, r#"{"action":"ping"}"#).unmasked()];
    assert_fails(&server, "unmasked text", frames, &[1002]).await;
    let frames = vec![FrameSpec::new(PING, "x").unmasked()];
    assert_fails(&server, "unmasked ping", frames, &[1002]).await;
}

// ---- 10. Limits (API Gateway's, RFC 6455 §7.4.1 codes) ----

#[tokio::test]
async fn an_oversized_frame_or_message_fails_with_1009() {
    let server = spawn_server().await;
    // One frame above 32 KiB.
    let frames = vec![FrameSpec::new(TEXT, sendmessage(&"x".repeat(33 * 1024)))];
    assert_fails(&server, "33 KiB frame", frames, &[1009]).await;
    // A 64-bit length announcing far more than any limit: refused from the header alone.
    let mut c = RawClient::connect(server.addr).await;
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    c.send_bytes(&header).await;
    assert_eq!(c.expect_close_code().await, 1009);
    // Frames under 32 KiB each, over 128 KiB together.
    let chunk = vec![b'x'; 30 * 1024];
    let mut frames = vec![FrameSpec::new(TEXT, chunk.clone()).fin(false)];
    frames.extend((0..5).map(|_| FrameSpec::new(CONTINUATION, chunk.clone()).fin(false)));
    assert_fails(&server, "150 KiB in fragments", frames, &[1009]).await;
}

#[tokio::test]
async fn a_binary_message_fails_with_1003() {
    let server = spawn_server().await;
    assert_fails(&server, "binary", vec![FrameSpec::new(BINARY, [1u8, 2, 3])], &[1003]).await;
    let frames = vec![FrameSpec::new(BINARY, [1u8]).fin(false), FrameSpec::new(CONTINUATION, [2u8])];
    assert_fails(&server, "fragmented binary", frames, &[1003]).await;
}
