//! The management API's path handling (`/{stage}/@connections/{id}`, percent-decoded, as the
//! SDKs send it) through the only public door: a real gateway on 127.0.0.1, one HTTP request per
//! input. The matching is private to the gateway (`dispatch` in crates/gateway/src/router.rs);
//! a panic there kills the request task, which this target sees as a reset connection.
//!
//! Input: the first byte picks the method, the rest is the path; bytes HTTP forbids in a
//! request target are percent-encoded so the request reaches the router (`%` is kept as is, so
//! malformed escapes get through too).
#![no_main]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use dynamowave_apigw::{App, RouteTable};
use dynamowave_gateway::{Gateway, GatewaySettings};
use libfuzzer_sys::fuzz_target;

/// One gateway for the whole run, on its own runtime thread.
fn gateway() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
            rt.block_on(async move {
                let mut settings = GatewaySettings {
                    listen: "127.0.0.1:0".parse().expect("addr"),
                    handle_signals: false,
                    ..Default::default()
                };
                // Throttling would answer 429 before the path logic runs; it is not what is fuzzed.
                settings.throttling.account.burst = u32::MAX;
                settings.throttling.account.rate = 1e12;
                settings.throttling.default_route.burst = u32::MAX;
                settings.throttling.default_route.rate = 1e12;
                let gw = Gateway::bind(settings).await.expect("gateway");
                tx.send(gw.local_addr()).expect("send addr");
                let _ = gw.serve(App::new(RouteTable::new()), None).await;
            });
        });
        rx.recv().expect("gateway started")
    })
}

fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%?".contains(&b)
}

fuzz_target!(|data: &[u8]| {
    let Some((&m, path)) = data.split_first() else { return };
    let method = ["GET", "POST", "DELETE", "PUT"][usize::from(m % 4)];
    let mut target = String::from("/");
    for &b in path {
        if is_path_byte(b) {
            target.push(b as char);
        } else {
            target.push_str(&format!("%{b:02X}"));
        }
    }
    let request =
        format!("{method} {target} HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi");
    let mut stream = TcpStream::connect(gateway()).expect("connect to the gateway");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    stream.write_all(request.as_bytes()).expect("write request");
    let mut response = Vec::new();
    if let Err(e) = stream.read_to_end(&mut response) {
        assert!(!response.is_empty(), "no answer to {method} {target}: {e}");
    }
    let head = String::from_utf8_lossy(&response);
    let status: u16 = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer to {method} {target}: {head:?}"));
    // What API Gateway answers on these paths: 403 unknown path or method, 410 gone, 426 the
    // WebSocket without an upgrade, 414 too long, 400 what HTTP itself refuses; 405 for a
    // method other than GET on the web client's own paths (`/`, `/app.js`, `/metrics`, …).
    assert!(
        [200, 204, 400, 403, 404, 405, 410, 413, 414, 426, 429].contains(&status),
        "{method} {target} answered {status}"
    );
    assert_ne!(status, 500, "{method} {target}");
});
