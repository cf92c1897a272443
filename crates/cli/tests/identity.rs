//! Display names against the real server: a name is held by one connection (or one principal,
//! with the authorizer on), compared so that look-alikes count as the same name; private
//! messages to a name reach only its holder; names come free when their holder leaves; message
//! text carries no bidi controls or stray zero-width characters.

use std::time::Duration;

use dynamowave_testkit::binary::{App, mint_token, spawn_app};
use dynamowave_testkit::ws::{Client, upgrade_status};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const CYRILLIC_GRACE: &str = "Gr\u{0430}ce";

/// `setname`, answered by `named` (returned) or `error`.
async fn set_name(c: &mut Client, name: &str) -> Value {
    c.send(json!({"action": "setname", "name": name})).await;
    c.recv_any(&["named", "error"]).await
}

/// Tries `setname` until it is granted (the server runs `$disconnect` of a closed socket
/// asynchronously), at most 5 s.
async fn set_name_when_free(c: &mut Client, name: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let answer = set_name(c, name).await;
        if answer["type"] == "named" || tokio::time::Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn named(app: &App, name: &str) -> Client {
    let mut c = app.connect(true).await;
    let answer = set_name(&mut c, name).await;
    assert_eq!(answer["type"], "named", "{name:?}: {answer}");
    c
}

#[tokio::test]
async fn a_held_name_and_its_look_alikes_are_refused() {
    let app = spawn_app(&[]);
    let _grace = named(&app, "Grace").await;
    let mut observer = app.connect(true).await;
    let (_, observer_name) = observer.whoami().await;
    assert!(observer_name.starts_with("anon-"), "{observer_name}");
    let mut mallory = app.connect(true).await;
    let (_, before) = mallory.whoami().await;

    for taken in ["Grace", "grace", "GRACE", CYRILLIC_GRACE, "\u{FF27}race"] {
        let answer = set_name(&mut mallory, taken).await;
        assert_eq!(answer["type"], "error", "{taken:?} was granted while Grace is online: {answer}");
        assert_eq!(answer["code"], "name_taken", "{taken:?}: {answer}");
        assert_eq!(answer["action"], "setname");
    }
    // Spacing and invisible variants are not names at all.
    for bad in ["Grace ", "Gr\u{200B}ace", "Grac\u{0435}\u{200D}"] {
        assert_eq!(set_name(&mut mallory, bad).await["code"], "invalid_name", "{bad:?}");
    }
    // A generated name is held too: nobody can pose as another anonymous connection.
    let answer = set_name(&mut mallory, &observer_name.to_uppercase()).await;
    assert_eq!(answer["code"], "name_taken", "{answer}");

    // Nothing changed: mallory keeps its name, and nobody heard of a second Grace.
    assert_eq!(mallory.whoami().await.1, before);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout_at(deadline, observer.ws.next()).await {
        let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
        let name = v["name"].as_str().unwrap_or("");
        assert!(v["type"] != "presence" || name == before, "only mallory's own arrival is announced: {t}");
    }
    observer.send(json!({"action": "who"})).await;
    let members = observer.recv_event("members").await;
    let names: Vec<&str> =
        members["members"].as_array().expect("list").iter().filter_map(|m| m["name"].as_str()).collect();
    assert_eq!(names.iter().filter(|n| n.to_lowercase() == "grace").count(), 1, "{names:?}");
    assert!(names.contains(&before.as_str()) && !names.contains(&CYRILLIC_GRACE), "{names:?}");
}

#[tokio::test]
async fn a_private_message_to_a_name_reaches_only_its_holder() {
    let app = spawn_app(&[]);
    let mut grace = named(&app, "Grace").await;
    let (grace_id, _) = grace.whoami().await;
    let mut mallory = app.connect(true).await;
    assert_eq!(set_name(&mut mallory, "Grace").await["code"], "name_taken");
    assert_eq!(set_name(&mut mallory, CYRILLIC_GRACE).await["code"], "name_taken");
    let mut bob = named(&app, "Bob").await;

    for to in ["Grace", CYRILLIC_GRACE] {
        bob.send(json!({"action": "sendprivate", "to": to, "message": format!("for Grace's eyes ({to})")})).await;
        let ack = bob.recv_event("privateack").await;
        assert_eq!(ack["delivered"], 1, "{ack}");
        let pm = grace.recv_event("private").await;
        assert_eq!((pm["from"].as_str(), pm["to"].as_str()), (Some("Bob"), Some("Grace")), "{pm}");
        assert_eq!(pm["text"], format!("for Grace's eyes ({to})"));
    }
    mallory.expect_no_event("private", Duration::from_millis(500)).await;
    assert_eq!(grace.whoami().await.0, grace_id);
}

#[tokio::test]
async fn a_name_is_free_again_once_its_holder_leaves_and_presence_tells_it() {
    let app = spawn_app(&[]);
    let mut observer = app.connect(true).await;
    let mut grace = named(&app, "Grace").await;
    let (grace_id, _) = grace.whoami().await;
    let mut newcomer = app.connect(true).await;
    let (newcomer_id, _) = newcomer.whoami().await;
    assert_eq!(set_name(&mut newcomer, "grace").await["code"], "name_taken", "held while Grace is online");

    grace.ws.close(None).await.expect("close");
    drop(grace);
    let answer = set_name_when_free(&mut newcomer, "grace").await;
    assert_eq!(answer["type"], "named", "the name is free once its holder has gone: {answer}");

    // The observer heard Grace leave, then the new holder (another connection) arrive.
    let mut heard = Vec::new();
    let grace_left = |heard: &[((String, String), String)]| {
        heard.iter().any(|((e, n), id)| e == "leave" && n == "Grace" && *id == grace_id)
    };
    while heard.len() < 20 {
        let p = observer.recv_event("presence").await;
        let who = (p["event"].as_str().unwrap_or("").to_string(), p["name"].as_str().unwrap_or("").to_string());
        let id = p["connectionId"].as_str().unwrap_or("").to_string();
        heard.push((who, id));
        if grace_left(&heard) && heard.iter().any(|((e, n), id)| e == "join" && n == "grace" && *id == newcomer_id) {
            break;
        }
    }
    assert!(grace_left(&heard), "{heard:?}");
    assert!(heard.iter().any(|((e, n), id)| e == "join" && n == "grace" && *id == newcomer_id), "{heard:?}");

    // A private message to the name now reaches its new holder.
    observer.send(json!({"action": "sendprivate", "to": "Grace", "message": "hello, new grace"})).await;
    assert_eq!(observer.recv_event("privateack").await["delivered"], 1);
    assert_eq!(newcomer.recv_event("private").await["text"], "hello, new grace");
}

fn mint(secret: &str, sub: &str, name: &str) -> String {
    mint_token(secret, sub, &["--name", name])
}

#[tokio::test]
async fn with_tokens_a_principals_connections_share_its_name_and_another_principal_is_refused() {
    let secret = "a-test-secret-of-reasonable-length";
    let app = spawn_app(&["--jwt-secret", secret]);
    let url = |t: &str| format!("{}?token={t}", app.url);
    let alice = mint(secret, "alice", "Grace");
    let mut tab1 = Client::connect(&url(&alice), true).await.expect("alice's first tab");
    let mut tab2 = Client::connect(&url(&alice), true).await.expect("alice's second tab shares her name");
    assert_eq!(tab1.whoami().await.1, "Grace");
    assert_eq!(tab2.whoami().await.1, "Grace");

    // Another user whose token carries the same name, or a look-alike, is refused at $connect.
    for name in ["Grace", "GRACE", CYRILLIC_GRACE] {
        let eve = mint(secret, "eve", name);
        assert_eq!(upgrade_status(Client::connect(&url(&eve), true).await), 409, "{name:?}");
    }

    // A private message to the name reaches both of alice's tabs, nobody else.
    let bob = mint(secret, "bob", "Bob");
    let mut bob = Client::connect(&url(&bob), true).await.expect("bob");
    bob.send(json!({"action": "sendprivate", "to": "grace", "message": "to alice"})).await;
    assert_eq!(bob.recv_event("privateack").await["delivered"], 2);
    assert_eq!(tab1.recv_event("private").await["text"], "to alice");
    assert_eq!(tab2.recv_event("private").await["text"], "to alice");

    // While one tab is open the name stays alice's; once both have gone, it is free.
    tab1.ws.close(None).await.expect("close");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let eve = mint(secret, "eve", "Grace");
    assert_eq!(upgrade_status(Client::connect(&url(&eve), true).await), 409, "one of alice's tabs is still open");
    tab2.ws.close(None).await.expect("close");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut eve_client = loop {
        match Client::connect(&url(&eve), true).await {
            Ok(c) => break c,
            Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("the name did not come free after alice left: {e}"),
        }
    };
    assert_eq!(eve_client.whoami().await.1, "Grace");
    let _ = eve_client.ws.send(Message::Close(None)).await;
}

#[tokio::test]
async fn message_text_with_bidi_controls_or_stray_zero_width_characters_is_refused() {
    let app = spawn_app(&[]);
    let mut sender = named(&app, "Sender").await;
    let mut reader = named(&app, "Reader").await;
    for text in ["invoice\u{202E}fdp.exe", "a\u{2066}b\u{2069}", "ad\u{200B}min", "\u{FEFF}x", "pay\u{200D}pal"] {
        sender.send(json!({"action": "sendmessage", "message": text, "id": "k"})).await;
        let err = sender.recv_event("error").await;
        assert_eq!(
            (err["code"].as_str(), err["action"].as_str()),
            (Some("invalid_text"), Some("sendmessage")),
            "{text:?}"
        );
        assert_eq!(err["id"], "k");
        sender.send(json!({"action": "sendprivate", "to": "Reader", "message": text})).await;
        let err = sender.recv_event("error").await;
        assert_eq!(
            (err["code"].as_str(), err["action"].as_str()),
            (Some("invalid_text"), Some("sendprivate")),
            "{text:?}"
        );
    }
    reader.expect_no_event("message", Duration::from_millis(300)).await;
    // Joiners inside emoji are writing, not disguise.
    let emoji = "\u{1F469}\u{200D}\u{1F4BB} shipped it";
    sender.send(json!({"action": "sendmessage", "message": emoji})).await;
    assert_eq!(reader.recv_event("message").await["text"], emoji);
}
