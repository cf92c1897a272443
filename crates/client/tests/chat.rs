//! The client against the real gateway, in-process on a redb store in a temporary directory,
//! driven as the terminal drives it: lines in, lines out.

use std::sync::Arc;
use std::time::Duration;

use dynamowave_client::{ChatArgs, Input, Options, run_session};
use dynamowave_core::ConnectionsApi;
use dynamowave_gateway::GatewaySettings;
use dynamowave_testkit::TIMEOUT;
use dynamowave_testkit::in_process::{RunningGateway, chat_gateway_on_temp_redb};
use tokio::io::{AsyncBufReadExt, BufReader, DuplexStream, Lines};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

struct Server {
    url: String,
    api: Arc<dyn ConnectionsApi>,
    _gateway: RunningGateway,
}

async fn spawn_server() -> Server {
    let gateway = chat_gateway_on_temp_redb(GatewaySettings::default()).await;
    Server { url: gateway.url(), api: gateway.connections_api.clone(), _gateway: gateway }
}

/// A client session with its terminal: what it is typed, what it printed.
struct Terminal {
    input: mpsc::Sender<Input>,
    output: Lines<BufReader<DuplexStream>>,
    task: JoinHandle<anyhow::Result<()>>,
    seen: Vec<String>,
}

impl Terminal {
    fn start(url: &str, name: &str, room: Option<&str>, options: Options) -> Terminal {
        let args = ChatArgs { url: url.into(), name: Some(name.into()), room: room.map(str::to_string), token: None };
        let (input, rx) = mpsc::channel(16);
        let (writer, reader) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(run_session(args, options, rx, writer));
        Terminal { input, output: BufReader::new(reader).lines(), task, seen: Vec::new() }
    }

    async fn type_line(&self, line: &str) {
        self.input.send(Input::Line(line.into())).await.expect("session is running");
    }

    /// The next printed line containing `needle`; earlier lines are kept in `seen`.
    async fn expect(&mut self, needle: &str) -> String {
        loop {
            let line = match tokio::time::timeout(TIMEOUT, self.output.next_line()).await {
                Ok(Ok(Some(line))) => line,
                other => panic!("waiting for {needle:?}: {other:?}; printed so far:\n{}", self.seen.join("\n")),
            };
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// This session's connection id, from the status line printed on each connection.
    async fn connection_id(&mut self) -> String {
        let line = self.expect("(connection ").await;
        let start = line.find("(connection ").unwrap() + "(connection ".len();
        line[start..].split(')').next().unwrap().to_string()
    }

    async fn quit(self, how: Input) -> Vec<String> {
        let Terminal { input, mut output, task, mut seen } = self;
        match how {
            Input::Quit => input.send(Input::Quit).await.expect("send quit"),
            Input::Line(l) => input.send(Input::Line(l)).await.expect("send line"),
        }
        let result = tokio::time::timeout(TIMEOUT, task).await.expect("session ended in time").expect("no panic");
        result.expect("session ends with Ok");
        while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_millis(100), output.next_line()).await {
            seen.push(line);
        }
        seen
    }
}

fn fast() -> Options {
    Options { initial_backoff: Duration::from_millis(100), ..Options::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_chat() {
    let server = spawn_server().await;
    let mut alice = Terminal::start(&server.url, "alice", None, fast());
    alice.expect("-- connected to ws://").await;
    alice.expect("joined #lobby").await;
    let mut bob = Terminal::start(&server.url, "bob", None, fast());
    bob.expect("joined #lobby").await;
    alice.expect("bob joined #lobby").await;

    alice.type_line("hello bob").await;
    let line = bob.expect("<alice> hello bob").await;
    assert!(line.starts_with('[') && line.as_bytes()[3] == b':', "[HH:MM] prefix: {line}");
    alice.expect("<alice> hello bob").await;

    bob.type_line("/msg alice psst").await;
    alice.expect("*private* <bob> psst").await;
    bob.type_line("/msg nobody hi").await;
    bob.expect("! no_such_recipient").await;

    bob.type_line("/who").await;
    let who = bob.expect("in #lobby:").await;
    assert!(who.contains("alice") && who.contains("bob"), "{who}");

    // The server refuses control characters; the client says so and does not retry.
    bob.type_line("ring\u{7}").await;
    bob.expect("! invalid_text").await;
    bob.type_line("/fly").await;
    bob.expect("! unknown command /fly").await;

    bob.type_line("/join ops").await;
    bob.expect("joined #ops").await;
    alice.expect("bob left #lobby").await;
    alice.type_line("/join ops").await;
    alice.type_line("in ops now").await;
    bob.expect("<alice> in ops now").await;
    bob.type_line("/history").await;
    bob.expect("history of #ops").await;
    bob.expect("<alice> in ops now").await;
    bob.expect("end of history").await;
    bob.type_line("/rooms").await;
    let rooms = bob.expect("rooms:").await;
    assert!(rooms.contains("#lobby (1)") && rooms.contains("#ops (1)"), "{rooms}");

    let printed = bob.quit(Input::Line("/quit".into())).await;
    assert!(printed.iter().any(|l| l == "-- bye"), "{printed:?}");
    alice.expect("bob left #ops").await;
    // Ctrl-C leaves the same way.
    alice.quit(Input::Quit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_recovers_what_it_missed() {
    let server = spawn_server().await;
    let mut alice = Terminal::start(&server.url, "alice", Some("ops"), fast());
    alice.expect("joined #ops").await;
    // Bob waits a whole second before reconnecting: time for alice to talk meanwhile.
    let slow = Options { initial_backoff: Duration::from_secs(1), ..Options::default() };
    let mut bob = Terminal::start(&server.url, "bob", Some("ops"), slow);
    let bob_id = bob.connection_id().await;
    alice.type_line("one").await;
    bob.expect("<alice> one").await;

    // The server drops bob (DeleteConnection, as a backend or an idle timeout would).
    server.api.delete_connection(&bob_id).await.expect("delete bob's connection");
    bob.expect("-- connection lost").await;
    alice.type_line("two").await;
    alice.expect("<alice> two").await;
    alice.type_line("three").await;
    alice.expect("<alice> three").await;
    // Typed while offline: queued, sent (once) after reconnecting.
    bob.type_line("sorry, I was away").await;
    bob.expect("offline: the message will be sent").await;

    bob.expect("-- reconnected to").await;
    bob.expect("<alice> two").await;
    bob.expect("<alice> three").await;
    bob.expect("recovered 2 missed message(s)").await;
    alice.expect("<bob> sorry, I was away").await;

    // Nothing is shown twice: the next message line bob prints is the next new one.
    alice.type_line("four").await;
    bob.expect("<alice> four").await;
    let messages: Vec<&String> = bob.seen.iter().filter(|l| l.contains("] <")).collect();
    let texts: Vec<&str> = messages.iter().map(|l| l.split("> ").nth(1).unwrap_or_default()).collect();
    assert_eq!(texts, ["one", "two", "three", "sorry, I was away", "four"], "{:#?}", bob.seen);

    // The end of input leaves cleanly too.
    let Terminal { input, task, .. } = bob;
    drop(input);
    tokio::time::timeout(TIMEOUT, task).await.expect("ends").expect("no panic").expect("Ok");
    alice.expect("bob left #ops").await;
}

#[tokio::test]
async fn a_refused_upgrade_is_an_error_not_a_retry_loop() {
    let server = spawn_server().await;
    let url = server.url.replace("/production", "/nostage");
    let (_tx, rx) = mpsc::channel(1);
    let args = ChatArgs { url, name: None, room: None, token: None };
    let result =
        tokio::time::timeout(TIMEOUT, run_session(args, fast(), rx, tokio::io::sink())).await.expect("fails fast");
    let message = format!("{:#}", result.expect_err("403 is fatal"));
    assert!(message.contains("403"), "{message}");
}
