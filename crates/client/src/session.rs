//! One chat session: connect, run the connection, and when it drops, reconnect with backoff and
//! recover what was missed. Driven by an input channel and an output writer, so tests run it
//! exactly as the terminal does.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use dynamowave_core::SUBPROTOCOL;
use dynamowave_core::model::StoredMessage;

use crate::ChatArgs;
use crate::command::{Command, HELP, parse_line};
use crate::render::{error_line, info_line, message_line, private_line, sanitize, status_line};

/// What the user does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A line typed (text to send, or a `/command`).
    Line(String),
    /// Leave now (Ctrl-C). Closing the channel (end of input) means the same.
    Quit,
}

/// Timings, settable so tests need not wait for real-world values.
#[derive(Debug, Clone)]
pub struct Options {
    /// First reconnection delay; doubled after each failed attempt, up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A WebSocket ping this often keeps the connection from the gateway's idle timeout (10 min).
    pub keepalive: Duration,
    /// How long to wait for the server's close reply when leaving.
    pub close_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            keepalive: Duration::from_secs(240),
            close_timeout: Duration::from_secs(2),
        }
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where the client stands in a room: what it has seen, in which incarnation of the log.
#[derive(Debug, Default, Clone)]
struct RoomPosition {
    epoch: Option<String>,
    last_seq: u64,
}

/// A message sent but not yet acknowledged: re-sent, same id, after a reconnect.
#[derive(Debug, Clone)]
struct Pending {
    id: String,
    room: String,
    text: String,
}

/// How one connection ended.
enum Ended {
    /// The user left; the session is over.
    Quit,
    /// The connection was lost (or closed by the server): reconnect.
    Lost(String),
}

/// Why a connection attempt failed.
enum ConnectFailure {
    /// Retrying cannot help (refused token, wrong URL, no JSON framing).
    Fatal(anyhow::Error),
    /// Retry later (server down, restarting, overloaded).
    Retry(String),
}

/// The output side: one line at a time, flushed, so a terminal (or a test) sees it at once.
struct Output<W> {
    out: W,
}

impl<W: AsyncWrite + Unpin> Output<W> {
    async fn line(&mut self, line: &str) -> anyhow::Result<()> {
        self.out.write_all(line.as_bytes()).await.context("writing output")?;
        self.out.write_all(b"\n").await.context("writing output")?;
        self.out.flush().await.context("writing output")
    }
}

/// The session's state, kept across reconnections.
struct Session<W> {
    url: String,
    token: Option<String>,
    options: Options,
    out: Output<W>,
    /// The name to (re)claim on each connection, if the user chose one.
    name: Option<String>,
    /// The room to be in (`None` after `/leave`).
    room: Option<String>,
    positions: HashMap<String, RoomPosition>,
    unacked: Vec<Pending>,
    id_prefix: String,
    next_id: u64,
    /// Private messages waiting for their `privateAck`, by id: the recipient, to say who was not reached.
    private_to: HashMap<String, String>,
    connections: u64,
}

/// Runs a session until the user quits (or input ends); reconnects on its own meanwhile.
/// Fails only when retrying cannot help: the token is refused, the URL is wrong, the server
/// does not speak `dynamowave.v1`, or output cannot be written.
pub async fn run_session<W: AsyncWrite + Unpin>(
    args: ChatArgs,
    options: Options,
    mut input: mpsc::Receiver<Input>,
    out: W,
) -> anyhow::Result<()> {
    let id_prefix = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let mut session = Session {
        url: args.url,
        token: args.token,
        options,
        out: Output { out },
        name: args.name,
        room: Some(args.room.unwrap_or_else(|| "lobby".into())),
        positions: HashMap::new(),
        unacked: Vec::new(),
        id_prefix,
        next_id: 0,
        private_to: HashMap::new(),
        connections: 0,
    };
    session.run(&mut input).await
}

impl<W: AsyncWrite + Unpin> Session<W> {
    async fn run(&mut self, input: &mut mpsc::Receiver<Input>) -> anyhow::Result<()> {
        let mut backoff = self.options.initial_backoff;
        loop {
            match self.connect().await {
                Ok(ws) => {
                    backoff = self.options.initial_backoff;
                    self.connections += 1;
                    let what = if self.connections == 1 { "connected to" } else { "reconnected to" };
                    self.out.line(&status_line(&format!("{what} {}", self.display_url()))).await?;
                    match self.connected(ws, input).await? {
                        Ended::Quit => return Ok(()),
                        Ended::Lost(why) => self.out.line(&status_line(&format!("connection lost: {why}"))).await?,
                    }
                }
                Err(ConnectFailure::Fatal(e)) => return Err(e),
                Err(ConnectFailure::Retry(why)) => {
                    self.out.line(&status_line(&format!("cannot connect: {why}"))).await?;
                }
            }
            self.out.line(&status_line(&format!("reconnecting in {:.1} s", backoff.as_secs_f64()))).await?;
            if self.wait_offline(backoff, input).await? {
                return Ok(());
            }
            backoff = (backoff * 2).min(self.options.max_backoff);
        }
    }

    /// The URL without the token (it is a credential: never print it).
    fn display_url(&self) -> String {
        sanitize(self.url.split('?').next().unwrap_or(&self.url))
    }

    async fn connect(&self) -> Result<Ws, ConnectFailure> {
        let mut url = self.url.clone();
        if let Some(token) = &self.token {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("token=");
            url.push_str(&percent_encode(token));
        }
        let mut request = url
            .into_client_request()
            .map_err(|e| ConnectFailure::Fatal(anyhow::anyhow!("invalid URL {}: {e}", self.display_url())))?;
        request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(SUBPROTOCOL));
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, response)) => {
                let agreed = response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok());
                if agreed != Some(SUBPROTOCOL) {
                    return Err(ConnectFailure::Fatal(anyhow::anyhow!(
                        "the server at {} does not offer the {SUBPROTOCOL} subprotocol",
                        self.display_url()
                    )));
                }
                Ok(ws)
            }
            Err(WsError::Http(response)) => {
                let status = response.status();
                let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                let why = format!("the server answered HTTP {status} {}", sanitize(body.trim()));
                // 401/403/404 do not change by waiting; 429 and 5xx may.
                if status.as_u16() == 429 || status.is_server_error() {
                    Err(ConnectFailure::Retry(why))
                } else {
                    Err(ConnectFailure::Fatal(anyhow::anyhow!("cannot connect to {}: {why}", self.display_url())))
                }
            }
            Err(e @ (WsError::Url(_) | WsError::HttpFormat(_))) => {
                Err(ConnectFailure::Fatal(anyhow::anyhow!("cannot connect to {}: {e}", self.display_url())))
            }
            Err(e) => Err(ConnectFailure::Retry(e.to_string())),
        }
    }

    /// Between connections: input still works. Text is queued and sent once reconnected; `true`
    /// when the user quit.
    async fn wait_offline(&mut self, delay: Duration, input: &mut mpsc::Receiver<Input>) -> anyhow::Result<bool> {
        let deadline = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Ok(false),
                event = input.recv() => match event {
                    None | Some(Input::Quit) => return Ok(true),
                    Some(Input::Line(line)) => match parse_line(&line) {
                        Ok(Some(Command::Quit)) => return Ok(true),
                        Ok(Some(Command::Say(text))) => {
                            let Some(room) = self.room.clone() else {
                                self.out.line(&error_line("you are not in a room: /join one")).await?;
                                continue;
                            };
                            self.queue(room, text);
                            self.out.line(&status_line("offline: the message will be sent on reconnection")).await?;
                        }
                        Ok(Some(Command::Help)) => self.out.line(&info_line(HELP)).await?,
                        Ok(None) => {}
                        Ok(Some(_)) => self.out.line(&error_line("offline: try again once reconnected")).await?,
                        Err(e) => self.out.line(&error_line(&e)).await?,
                    },
                }
            }
        }
    }

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("{}-{}", self.id_prefix, self.next_id)
    }

    fn queue(&mut self, room: String, text: String) -> Pending {
        let pending = Pending { id: self.new_id(), room, text };
        self.unacked.push(pending.clone());
        pending
    }

    /// One connection's life: restore the session's state on it, then relay both ways.
    async fn connected(&mut self, ws: Ws, input: &mut mpsc::Receiver<Input>) -> anyhow::Result<Ended> {
        let (mut sink, mut stream) = ws.split();
        // The gateway invokes a connection's routes in order, so these take effect before the
        // re-sent messages: name, room (with recovery), then what was never acknowledged.
        let mut opening = Vec::new();
        if let Some(name) = &self.name {
            opening.push(json!({"action": "setname", "name": name}));
        }
        match &self.room {
            Some(room) => {
                let mut join = json!({"action": "join", "room": room});
                if let Some(position) = self.positions.get(room)
                    && let Some(epoch) = &position.epoch
                {
                    join["since"] = json!(position.last_seq);
                    join["epoch"] = json!(epoch);
                }
                opening.push(join);
            }
            None if self.connections > 1 => opening.push(json!({"action": "leave"})),
            None => {}
        }
        opening.push(json!({"action": "whoami"}));
        for p in &self.unacked {
            opening.push(json!({"action": "sendmessage", "room": p.room, "message": p.text, "id": p.id}));
        }
        for frame in opening {
            if let Err(e) = sink.send(Message::text(frame.to_string())).await {
                return Ok(Ended::Lost(e.to_string()));
            }
        }

        let mut keepalive = tokio::time::interval(self.options.keepalive);
        keepalive.reset();
        loop {
            tokio::select! {
                event = input.recv() => {
                    let command = match event {
                        None | Some(Input::Quit) => Command::Quit,
                        Some(Input::Line(line)) => match parse_line(&line) {
                            Ok(Some(c)) => c,
                            Ok(None) => continue,
                            Err(e) => { self.out.line(&error_line(&e)).await?; continue; }
                        },
                    };
                    if command == Command::Quit {
                        self.leave(&mut sink, &mut stream).await;
                        self.out.line(&status_line("bye")).await?;
                        return Ok(Ended::Quit);
                    }
                    if let Some(frame) = self.frame_for(command).await?
                        && let Err(e) = sink.send(Message::text(frame.to_string())).await
                    {
                        return Ok(Ended::Lost(e.to_string()));
                    }
                }
                frame = stream.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        for frame in self.on_event(text.as_str()).await? {
                            if let Err(e) = sink.send(Message::text(frame.to_string())).await {
                                return Ok(Ended::Lost(e.to_string()));
                            }
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let why = match frame {
                            Some(f) => format!("closed by the server ({} {})", u16::from(f.code), sanitize(&f.reason)),
                            None => "closed by the server".into(),
                        };
                        return Ok(Ended::Lost(why));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Ok(Ended::Lost(e.to_string())),
                    None => return Ok(Ended::Lost("the connection ended".into())),
                },
                _ = keepalive.tick() => {
                    if let Err(e) = sink.send(Message::Ping(Default::default())).await {
                        return Ok(Ended::Lost(e.to_string()));
                    }
                }
            }
        }
    }

    /// Leaving: close 1000, then wait (briefly) for the server's close reply, as RFC 6455 §7.1.2 asks.
    async fn leave(
        &self,
        sink: &mut futures_util::stream::SplitSink<Ws, Message>,
        stream: &mut futures_util::stream::SplitStream<Ws>,
    ) {
        let close = CloseFrame { code: CloseCode::Normal, reason: "bye".into() };
        if sink.send(Message::Close(Some(close))).await.is_err() {
            return;
        }
        let _ = tokio::time::timeout(self.options.close_timeout, async {
            while let Some(Ok(frame)) = stream.next().await {
                if matches!(frame, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }

    /// The frame a command sends, if any (some are answered locally).
    async fn frame_for(&mut self, command: Command) -> anyhow::Result<Option<Value>> {
        Ok(Some(match command {
            Command::Say(text) => {
                let Some(room) = self.room.clone() else {
                    self.out.line(&error_line("you are not in a room: /join one")).await?;
                    return Ok(None);
                };
                let p = self.queue(room, text);
                json!({"action": "sendmessage", "room": p.room, "message": p.text, "id": p.id})
            }
            Command::Join(room) => {
                self.room = Some(room.clone());
                let mut join = json!({"action": "join", "room": room});
                // Back to a room seen before: catch up on what was said meanwhile.
                if let Some(position) = self.positions.get(&room)
                    && let Some(epoch) = &position.epoch
                {
                    join["since"] = json!(position.last_seq);
                    join["epoch"] = json!(epoch);
                }
                join
            }
            Command::Leave => {
                self.room = None;
                json!({"action": "leave"})
            }
            Command::Nick(name) => {
                self.name = Some(name.clone());
                json!({"action": "setname", "name": name})
            }
            Command::Who => json!({"action": "who"}),
            Command::History => json!({"action": "history"}),
            Command::Rooms => json!({"action": "rooms"}),
            Command::Msg { to, text } => {
                let id = self.new_id();
                self.private_to.insert(id.clone(), to.clone());
                self.out.line(&format!("-> *private* to <{}>: {}", sanitize(&to), sanitize(&text))).await?;
                json!({"action": "sendprivate", "to": to, "message": text, "id": id})
            }
            Command::Help => {
                self.out.line(&info_line(HELP)).await?;
                return Ok(None);
            }
            Command::Quit => return Ok(None),
        }))
    }

    /// Shows one server event; returns frames to send in answer (e.g. `history` after a failed
    /// recovery).
    async fn on_event(&mut self, text: &str) -> anyhow::Result<Vec<Value>> {
        let event: Event = match serde_json::from_str(text) {
            Ok(e) => e,
            Err(_) => {
                self.out.line(&error_line(&format!("unreadable frame from the server: {}", sanitize(text)))).await?;
                return Ok(Vec::new());
            }
        };
        let mut replies = Vec::new();
        match event {
            Event::Message(m) => {
                let position = self.positions.entry(m.room.clone()).or_default();
                // Replays and re-sends can repeat what was already shown.
                if m.seq <= position.last_seq {
                    return Ok(replies);
                }
                position.last_seq = m.seq;
                let elsewhere = (self.room.as_deref() != Some(m.room.as_str())).then_some(m.room.as_str());
                self.out.line(&message_line(m.ts, &m.from, &m.text, elsewhere)).await?;
            }
            Event::Ack { id, .. } => self.unacked.retain(|p| p.id != id),
            Event::Joined { room, epoch, last_seq, replayed, recovered, reason } => {
                let position = self.positions.entry(room.clone()).or_default();
                let same_epoch = position.epoch.as_deref() == Some(epoch.as_str());
                position.epoch = Some(epoch);
                match recovered {
                    Some(true) => {
                        position.last_seq = position.last_seq.max(last_seq);
                        let n = replayed.unwrap_or(0);
                        self.out
                            .line(&status_line(&format!("in #{}: recovered {n} missed message(s)", sanitize(&room))))
                            .await?;
                    }
                    Some(false) => {
                        // The log is not the one we knew (or the gap is too large): start over
                        // from its end, and show its last page instead.
                        position.last_seq = last_seq;
                        let why = reason.as_deref().unwrap_or("unknown reason");
                        self.out
                            .line(&status_line(&format!(
                                "in #{}: could not recover missed messages ({}); recent history follows",
                                sanitize(&room),
                                sanitize(why)
                            )))
                            .await?;
                        replies.push(json!({"action": "history", "room": room}));
                    }
                    None => {
                        if !same_epoch {
                            position.last_seq = 0;
                        }
                        position.last_seq = position.last_seq.max(last_seq);
                        self.out
                            .line(&info_line(&format!(
                                "joined #{} ({last_seq} message(s) so far: /history shows the latest)",
                                sanitize(&room)
                            )))
                            .await?;
                    }
                }
            }
            Event::Left { room } => self.out.line(&info_line(&format!("you left #{}", sanitize(&room)))).await?,
            Event::Named { name } => self.out.line(&info_line(&format!("you are now {}", sanitize(&name)))).await?,
            Event::Presence { room, event, name } => {
                let verb = if event == "join" { "joined" } else { "left" };
                self.out.line(&info_line(&format!("{} {verb} #{}", sanitize(&name), sanitize(&room)))).await?;
            }
            Event::Members { room, members, truncated } => {
                let names: Vec<String> = members.iter().map(|m| sanitize(&m.name)).collect();
                let more = if truncated { ", …" } else { "" };
                self.out.line(&info_line(&format!("in #{}: {}{more}", sanitize(&room), names.join(", ")))).await?;
            }
            Event::History { room, messages, more } => {
                let earlier = if more { " (earlier messages exist)" } else { "" };
                self.out.line(&info_line(&format!("history of #{}{earlier}:", sanitize(&room)))).await?;
                let position = self.positions.entry(room.clone()).or_default();
                if let Some(last) = messages.last() {
                    position.last_seq = position.last_seq.max(last.seq);
                }
                for m in &messages {
                    self.out.line(&message_line(m.ts, &m.from, &m.text, None)).await?;
                }
                self.out.line(&info_line("end of history")).await?;
            }
            Event::Private { from, text, ts } => self.out.line(&private_line(ts, &from, &text)).await?,
            Event::PrivateAck { id, delivered } => {
                let to = id.and_then(|id| self.private_to.remove(&id)).unwrap_or_default();
                if delivered == 0 {
                    self.out
                        .line(&error_line(&format!("private message not delivered: {} is not online", sanitize(&to))))
                        .await?;
                }
            }
            Event::Rooms { rooms } => {
                let list: Vec<String> =
                    rooms.iter().map(|r| format!("#{} ({})", sanitize(&r.room), r.last_seq)).collect();
                self.out.line(&info_line(&format!("rooms: {}", list.join(", ")))).await?;
            }
            Event::Identity { connection_id, name, room } => {
                let room = room.map(|r| format!(" in #{}", sanitize(&r))).unwrap_or_default();
                self.out
                    .line(&status_line(&format!(
                        "you are {} (connection {}){room}",
                        sanitize(&name),
                        sanitize(&connection_id)
                    )))
                    .await?;
            }
            Event::Error { code, message, id } => {
                // A refused message will be refused again: do not re-send it.
                if let Some(id) = &id {
                    self.unacked.retain(|p| &p.id != id);
                    self.private_to.remove(id);
                }
                self.out.line(&error_line(&format!("{}: {}", sanitize(&code), sanitize(&message)))).await?;
            }
            Event::Other => {}
        }
        Ok(replies)
    }
}

/// Percent-encodes a query value (a JWT is URL-safe already; this guards against anything else).
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Deserialize)]
struct WireMember {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRoom {
    room: String,
    last_seq: u64,
}

/// The server events the client shows (`dynamowave_core::protocol::ServerEvent`, read side).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Event {
    /// The server writes a [`StoredMessage`] as it is stored; it reads back as one.
    Message(StoredMessage),
    Ack {
        id: String,
    },
    #[serde(rename_all = "camelCase")]
    Joined {
        room: String,
        epoch: String,
        last_seq: u64,
        replayed: Option<usize>,
        recovered: Option<bool>,
        reason: Option<String>,
    },
    Left {
        room: String,
    },
    Named {
        name: String,
    },
    Presence {
        room: String,
        event: String,
        name: String,
    },
    Members {
        room: String,
        members: Vec<WireMember>,
        #[serde(default)]
        truncated: bool,
    },
    History {
        room: String,
        messages: Vec<StoredMessage>,
        #[serde(default)]
        more: bool,
    },
    Private {
        from: String,
        text: String,
        ts: i64,
    },
    #[serde(rename = "privateack", alias = "privateAck")]
    PrivateAck {
        id: Option<String>,
        delivered: usize,
    },
    Rooms {
        rooms: Vec<WireRoom>,
    },
    #[serde(rename_all = "camelCase")]
    Identity {
        connection_id: String,
        name: String,
        room: Option<String>,
    },
    Error {
        code: String,
        message: String,
        id: Option<String>,
    },
    #[serde(other)]
    Other,
}

/// Fails early on a URL that can never work, before any retry loop.
pub(crate) fn check_url(url: &str) -> anyhow::Result<()> {
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        bail!("the URL must start with ws:// or wss:// (e.g. ws://127.0.0.1:8080/production), not {}", sanitize(url));
    }
    Ok(())
}
