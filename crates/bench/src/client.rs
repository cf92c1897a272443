//! Opening a benchmark connection: TCP from a chosen source address, the WebSocket upgrade with the
//! `dynamowave.v1` subprotocol, and `join`. Load and idle connections use the lean client
//! ([`crate::lean`]); churn uses tokio-tungstenite ([`Target::connect`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use dynamowave_core::SUBPROTOCOL;

use crate::event::{self, Event};
use crate::lean::{Drained, HandshakeError, LeanWs};

/// A connected benchmark client.
pub type Ws = WebSocketStream<TcpStream>;

/// Where to connect, resolved once.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server's socket address.
    pub addr: SocketAddr,
    /// The upgrade request (URL and subprotocol header), cloned per connection.
    request: Request,
    /// The `Host` header and the request target, for the lean client's handshake.
    host: String,
    path: String,
}

/// Why a connection did not get to `joined`; `kind()` names it in reports.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Bad URL or unresolvable host.
    #[error("bad target: {0}")]
    Target(String),
    /// Socket creation, bind or TCP connect failed.
    #[error("tcp: {0}")]
    Tcp(#[source] std::io::Error),
    /// The server answered the upgrade with an HTTP status (429 when it sheds connections).
    #[error("upgrade refused with HTTP {0}")]
    Http(u16),
    /// Any other WebSocket failure.
    #[error("websocket: {0}")]
    Ws(#[source] Box<tungstenite::Error>),
    /// The server did not select `dynamowave.v1`.
    #[error("the server did not accept subprotocol {SUBPROTOCOL}")]
    Subprotocol,
    /// The lean client's handshake or framing failed.
    #[error("websocket: {0}")]
    Lean(String),
    /// The server answered `join` with an error, or closed.
    #[error("join failed: {0}")]
    Join(String),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
}

impl ConnectError {
    /// A short stable label for counting failures by kind.
    pub fn kind(&self) -> String {
        match self {
            Self::Target(_) => "bad_target".to_owned(),
            Self::Tcp(e) => format!("tcp_{:?}", e.kind()).to_lowercase(),
            Self::Http(status) => format!("http_{status}"),
            Self::Ws(_) | Self::Lean(_) => "websocket".to_owned(),
            Self::Subprotocol => "no_subprotocol".to_owned(),
            Self::Join(_) => "join".to_owned(),
            Self::Timeout => "timeout".to_owned(),
        }
    }
}

impl From<tungstenite::Error> for ConnectError {
    fn from(e: tungstenite::Error) -> Self {
        match e {
            tungstenite::Error::Http(response) => Self::Http(response.status().as_u16()),
            tungstenite::Error::Io(io) => Self::Tcp(io),
            other => Self::Ws(Box::new(other)),
        }
    }
}

impl From<HandshakeError> for ConnectError {
    fn from(e: HandshakeError) -> Self {
        match e {
            HandshakeError::Io(io) => Self::Tcp(io),
            HandshakeError::Status(status) => Self::Http(status),
            HandshakeError::Subprotocol(_) => Self::Subprotocol,
            HandshakeError::Bad(why) => Self::Lean(why),
        }
    }
}

impl Target {
    /// Parses `url` and resolves its host once (load stays on 127.0.0.0/8, so this is immediate).
    pub async fn resolve(url: &str) -> Result<Self, ConnectError> {
        let mut request = url.into_client_request().map_err(|e| ConnectError::Target(e.to_string()))?;
        let uri = request.uri();
        let host = uri.host().ok_or_else(|| ConnectError::Target(format!("no host in {url}")))?;
        let port = uri.port_u16().unwrap_or(80);
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| ConnectError::Target(format!("{host}: {e}")))?
            .next()
            .ok_or_else(|| ConnectError::Target(format!("{host} resolves to nothing")))?;
        let host_header = match uri.port_u16() {
            Some(p) => format!("{}:{p}", uri.host().unwrap_or_default()),
            None => uri.host().unwrap_or_default().to_owned(),
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(SUBPROTOCOL));
        Ok(Self { addr, request, host: host_header, path })
    }

    /// TCP connect from `source` (None: let the kernel choose), with no Nagle delay.
    pub(crate) async fn tcp(&self, source: Option<IpAddr>) -> Result<TcpStream, ConnectError> {
        let socket = match self.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(ConnectError::Tcp)?;
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0)).map_err(ConnectError::Tcp)?;
        }
        let stream = socket.connect(self.addr).await.map_err(ConnectError::Tcp)?;
        // Chat frames are small and latency is what we measure: no Nagle delay on our side.
        stream.set_nodelay(true).map_err(ConnectError::Tcp)?;
        Ok(stream)
    }

    /// TCP connect from `source` and upgrade with tokio-tungstenite (churn mode).
    pub async fn connect(&self, source: Option<IpAddr>) -> Result<Ws, ConnectError> {
        let stream = self.tcp(source).await?;
        // tungstenite's default 128 KiB read buffer is allocated eagerly: 15,000 idle connections
        // would take 2 GiB of the generator's memory for nothing. Frames here are a few hundred bytes.
        let config = WebSocketConfig::default().read_buffer_size(8 * 1024).write_buffer_size(0);
        let (ws, response) =
            tokio_tungstenite::client_async_with_config(self.request.clone(), stream, Some(config)).await?;
        let accepted = response.headers().get("Sec-WebSocket-Protocol").and_then(|v| v.to_str().ok());
        if accepted != Some(SUBPROTOCOL) {
            return Err(ConnectError::Subprotocol);
        }
        Ok(ws)
    }

    /// TCP connect from `source` and upgrade with the lean client, joining nothing.
    pub(crate) async fn upgrade(&self, source: Option<IpAddr>) -> Result<LeanWs, ConnectError> {
        let stream = self.tcp(source).await?;
        Ok(LeanWs::handshake(stream, &self.host, &self.path, SUBPROTOCOL).await?)
    }

    /// Connects with the lean client and joins room `bench-<room>`, waiting for `joined`, all
    /// within `timeout`.
    pub async fn connect_and_join(
        &self,
        source: Option<IpAddr>,
        room: usize,
        timeout: Duration,
    ) -> Result<LeanWs, ConnectError> {
        tokio::time::timeout(timeout, async {
            let stream = self.tcp(source).await?;
            let mut ws = LeanWs::handshake(stream, &self.host, &self.path, SUBPROTOCOL).await?;
            ws.send_text(&event::join_frame(room)).await.map_err(ConnectError::Tcp)?;
            loop {
                let mut answer: Option<Result<(), ConnectError>> = None;
                // Stops at the answer: what follows it is the run's to count.
                let drained = ws.drain(|text| {
                    match event::parse_event(text) {
                        Ok(Event::Joined) => answer = Some(Ok(())),
                        Ok(Event::Error { code }) => answer = Some(Err(ConnectError::Join(code))),
                        // Anything before `joined` (a welcome, presence) is not ours to count.
                        _ => {}
                    }
                    answer.is_none()
                });
                let drained = drained.map_err(|e| ConnectError::Lean(e.to_string()))?;
                ws.flush_pongs().await.map_err(ConnectError::Tcp)?;
                match answer {
                    Some(Ok(())) => return Ok(ws),
                    Some(Err(e)) => return Err(e),
                    None if drained == Drained::Closed => {
                        return Err(ConnectError::Join("closed before joined".to_owned()));
                    }
                    None => {}
                }
                if !ws.fill().await.map_err(ConnectError::Tcp)? {
                    return Err(ConnectError::Join("closed before joined".to_owned()));
                }
            }
        })
        .await
        .map_err(|_| ConnectError::Timeout)?
    }
}
