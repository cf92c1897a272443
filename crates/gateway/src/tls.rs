//! TLS on the gateway's one listener: when the settings give a `rustls::ServerConfig`, each
//! accepted connection's first byte says what it is — 0x16 (a TLS handshake record) is served
//! over TLS, anything else as plain HTTP, so `wss://`/`https://` and `ws://`/`http://` work on
//! the same port (a function that builds its `@connections` client from
//! `https://{domainName}/{stage}` reaches the gateway as one that uses `http://`).
//!
//! The byte and the handshake are bounded by the header-read timeout: a client that opens a
//! socket and never finishes its handshake holds it no longer than one that never sends its
//! headers.
//!
//! After a WebSocket upgrade the connection's task writes the socket directly (`registry`), so
//! a TLS connection is bridged: a task moves bytes between the TLS stream and one end of a
//! loopback TCP pair, and the connection gets the other end as it would a client's socket.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::debug;

/// The first byte of a TLS record carrying a handshake (the ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;

/// An accepted connection, once its kind is known.
pub(crate) enum Accepted {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Reads (without consuming) the first byte and, for a TLS handshake, completes it, all
/// within `timeout`. `None`: the client closed, stalled or failed its handshake.
pub(crate) async fn accept(
    stream: TcpStream,
    config: &Arc<rustls::ServerConfig>,
    timeout: Duration,
) -> Option<Accepted> {
    let peer = stream.peer_addr().ok();
    let classified = tokio::time::timeout(timeout, async {
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(0) | Err(_) => None,
            Ok(_) if first[0] == TLS_HANDSHAKE => match TlsAcceptor::from(config.clone()).accept(stream).await {
                Ok(tls) => Some(Accepted::Tls(Box::new(tls))),
                Err(e) => {
                    debug!(?peer, error = %e, "TLS handshake failed");
                    None
                }
            },
            Ok(_) => Some(Accepted::Plain(stream)),
        }
    })
    .await;
    match classified {
        Ok(accepted) => accepted,
        Err(_) => {
            debug!(?peer, "no TLS handshake or request within the header-read timeout");
            None
        }
    }
}

/// Bridges an upgraded TLS connection to a loopback TCP socket the connection's task can write
/// directly. Each direction's end is passed on (a close on one side closes the other, the TLS
/// session with its `close_notify`); once either side has closed, the other has 5 s to finish,
/// so a client that never closes cannot hold the bridge.
pub(crate) async fn bridge(tls: TlsStream<TcpStream>) -> std::io::Result<TcpStream> {
    let (near, far) = loopback_pair().await?;
    tokio::spawn(async move {
        let (mut tls_read, mut tls_write) = tokio::io::split(tls);
        let (mut near_read, mut near_write) = near.into_split();
        let to_client = async {
            let _ = tokio::io::copy(&mut near_read, &mut tls_write).await;
            let _ = tls_write.shutdown().await;
        };
        let from_client = async {
            let _ = tokio::io::copy(&mut tls_read, &mut near_write).await;
            let _ = near_write.shutdown().await;
        };
        tokio::pin!(to_client, from_client);
        let linger = Duration::from_secs(5);
        tokio::select! {
            () = &mut to_client => { let _ = tokio::time::timeout(linger, from_client).await; }
            () = &mut from_client => { let _ = tokio::time::timeout(linger, to_client).await; }
        }
        debug!("TLS bridge closed");
    });
    Ok(far)
}

/// Two connected loopback TCP sockets. The listener is on an ephemeral port for an instant; a
/// connection to it from anyone but our own socket is dropped, not taken for ours.
async fn loopback_pair() -> std::io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
    let socket = TcpSocket::new_v4()?;
    socket.bind((std::net::Ipv4Addr::LOCALHOST, 0).into())?;
    let ours = socket.local_addr()?;
    let connecting = socket.connect(listener.local_addr()?);
    let accepting = async {
        loop {
            let (stream, from) = listener.accept().await?;
            if from == ours {
                return Ok::<_, std::io::Error>(stream);
            }
        }
    };
    let (near, far) = tokio::time::timeout(Duration::from_secs(5), async { tokio::try_join!(connecting, accepting) })
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "loopback pair"))??;
    let _ = near.set_nodelay(true);
    let _ = far.set_nodelay(true);
    Ok((near, far))
}
