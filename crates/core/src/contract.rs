//! The storage contract: checks every adapter of [`ConnectionStore`] and [`MessageLog`] must
//! pass (feature `testing`). The in-memory store, the embedded redb store and the DynamoDB store
//! (against moto) all run it, so the handlers can rely on the same behaviour everywhere.
//!
//! Each check panics with a message that names the rule broken. Ids, names and rooms carry a
//! per-run suffix, so a suite can run against a table that earlier runs (or other tests running
//! at the same time) have written to.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::error::{StoreError, StoreResult};
use crate::model::{ConnectionRecord, Framing, NewMessage, StoredMessage, now_ms};
use crate::store::{ConnectionStore, MessageLog, RoomClaim, RoomsCursor};
use crate::testing::unique_suffix;

fn record(id: &str, name: &str, room: Option<&str>) -> ConnectionRecord {
    ConnectionRecord {
        connection_id: id.to_string(),
        connected_at: 1_700_000_000_000,
        source_ip: "192.0.2.1".into(),
        user_agent: Some("contract".into()),
        framing: Framing::Json,
        name: name.to_string(),
        principal_id: None,
        room: room.map(str::to_string),
        expires_at: 1_700_007_800,
    }
}

fn new_message(room: &str, publisher: &str, id: Option<&str>, text: &str, ts: i64) -> NewMessage {
    NewMessage {
        room: room.to_string(),
        id: id.map(str::to_string),
        from: publisher.to_string(),
        publisher: publisher.to_string(),
        text: text.to_string(),
        ts,
    }
}

/// Reads every member of `room`, page by page, checking each page's size.
async fn all_members(store: &dyn ConnectionStore, room: &str, page_size: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..10_000 {
        let page = store.members(room, next.as_deref(), page_size).await.expect("members");
        assert!(page.items.len() <= page_size, "members returned {} items for page size {page_size}", page.items.len());
        for c in &page.items {
            assert_eq!(c.room.as_deref(), Some(room), "members({room}) returned {} in another room", c.connection_id);
        }
        ids.extend(page.items.into_iter().map(|c| c.connection_id));
        next = page.next;
        if next.is_none() {
            return ids;
        }
    }
    panic!("members({room}) pagination never ended");
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The [`ConnectionStore`] contract.
pub async fn connection_store_contract(store: Arc<dyn ConnectionStore>) {
    let run = unique_suffix();
    let id = |n: &str| format!("c-{run}-{n}");
    let room_a = format!("room-a-{run}");
    let room_b = format!("room-b-{run}");

    // Conditional put: a second put of the same id is a Conflict and changes nothing.
    let first = record(&id("1"), &format!("alice-{run}"), Some(&room_a));
    store.put_connection(&first).await.expect("put a new connection");
    let mut imposter = first.clone();
    imposter.name = "imposter".into();
    match store.put_connection(&imposter).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("a second put of the same connection id must be Conflict, got {other:?}"),
    }
    assert_eq!(store.get_connection(&first.connection_id).await.expect("get"), Some(first.clone()), "get after put");
    assert_eq!(store.get_connection(&id("never")).await.expect("get unknown"), None, "get of an unknown id is None");

    // Delete returns what was there, then None.
    let deleted = store.delete_connection(&first.connection_id).await.expect("delete");
    assert_eq!(deleted, Some(first.clone()), "delete returns the old record");
    assert_eq!(store.delete_connection(&first.connection_id).await.expect("delete again"), None, "second delete");
    assert_eq!(store.get_connection(&first.connection_id).await.expect("get"), None, "get after delete");
    store.put_connection(&first).await.expect("an id may be registered again once deleted");

    // Fan-out recipients follow membership changes (adapters may cache them).
    let ids_of = |r: &[crate::store::Recipient]| {
        let mut v: Vec<String> = r.iter().map(|x| x.connection_id.to_string()).collect();
        v.sort();
        v
    };
    let before = store.recipients(&room_a, 2).await.expect("recipients");
    assert_eq!(ids_of(&before), vec![first.connection_id.clone()], "recipients of room a");
    let joiner = record(&id("r"), &format!("rita-{run}"), Some(&room_a));
    store.put_connection(&joiner).await.expect("put");
    let mut expected = vec![first.connection_id.clone(), joiner.connection_id.clone()];
    expected.sort();
    assert_eq!(
        ids_of(&store.recipients(&room_a, 1).await.expect("recipients")),
        expected,
        "a new member is a recipient"
    );
    store.set_room(&joiner.connection_id, Some(&room_b)).await.expect("move");
    assert_eq!(
        ids_of(&store.recipients(&room_a, 1).await.expect("recipients")),
        vec![first.connection_id.clone()],
        "a member who moved out is no longer a recipient"
    );
    store.delete_connection(&joiner.connection_id).await.expect("delete");
    assert!(store.recipients(&room_b, 10).await.expect("recipients").is_empty(), "deleted members are not recipients");

    // Batch delete ignores ids that are already gone.
    let second = record(&id("2"), &format!("bob-{run}"), Some(&room_a));
    store.put_connection(&second).await.expect("put");
    store
        .delete_connections(&[first.connection_id.clone(), id("missing"), second.connection_id.clone()])
        .await
        .expect("delete_connections with a missing id is not an error");
    assert_eq!(store.get_connection(&first.connection_id).await.expect("get"), None, "batch-deleted");
    assert_eq!(store.get_connection(&second.connection_id).await.expect("get"), None, "batch-deleted");
    store.delete_connections(&[]).await.expect("delete_connections of nothing");

    // Updates of unknown connections are NotFound.
    match store.set_room(&id("ghost"), Some(&room_a)).await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("set_room of an unknown id must be NotFound, got {other:?}"),
    }
    match store.set_name(&id("ghost"), "ghost").await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("set_name of an unknown id must be NotFound, got {other:?}"),
    }
    assert_eq!(store.get_connection(&id("ghost")).await.expect("get"), None, "a failed update creates nothing");

    // Pagination: 23 members with page size 5 come back exactly once each.
    let mut expected_a = Vec::new();
    for n in 0..23 {
        let r = record(&id(&format!("m{n:02}")), &format!("member{n}-{run}"), Some(&room_a));
        store.put_connection(&r).await.expect("put member");
        expected_a.push(r.connection_id);
    }
    let outsider = record(&id("outsider"), &format!("out-{run}"), Some(&room_b));
    store.put_connection(&outsider).await.expect("put");
    let roomless = record(&id("roomless"), &format!("nowhere-{run}"), None);
    store.put_connection(&roomless).await.expect("put a connection in no room");
    let got = all_members(store.as_ref(), &room_a, 5).await;
    let unique: BTreeSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "members pagination returned a member twice: {got:?}");
    assert_eq!(sorted(got), sorted(expected_a.clone()), "members pagination must return every member once");
    assert_eq!(sorted(all_members(store.as_ref(), &room_a, 1000).await), sorted(expected_a.clone()), "one big page");
    assert_eq!(all_members(store.as_ref(), &room_b, 1).await, vec![outsider.connection_id.clone()], "room b");
    assert!(all_members(store.as_ref(), &format!("empty-{run}"), 10).await.is_empty(), "an empty room");

    // set_room moves a member between room indexes and returns the old record.
    let movers: Vec<String> = expected_a.drain(..3).collect();
    for m in &movers {
        let old = store.set_room(m, Some(&room_b)).await.expect("set_room");
        assert_eq!(old.room.as_deref(), Some(room_a.as_str()), "set_room returns the record as it was");
        let now = store.get_connection(m).await.expect("get").expect("still registered");
        assert_eq!(now.room.as_deref(), Some(room_b.as_str()), "set_room is visible to get");
    }
    assert_eq!(sorted(all_members(store.as_ref(), &room_a, 4).await), sorted(expected_a.clone()), "a after moves");
    let mut expected_b = movers.clone();
    expected_b.push(outsider.connection_id.clone());
    assert_eq!(sorted(all_members(store.as_ref(), &room_b, 2).await), sorted(expected_b.clone()), "b after moves");
    let old = store.set_room(&movers[0], None).await.expect("leave");
    assert_eq!(old.room.as_deref(), Some(room_b.as_str()));
    expected_b.retain(|m| m != &movers[0]);
    assert_eq!(sorted(all_members(store.as_ref(), &room_b, 2).await), sorted(expected_b), "b after a leave");

    // Names: set_name returns the updated record; name_holders finds the holder.
    let shared = format!("carol-{run}");
    let updated = store.set_name(&expected_a[0], &shared).await.expect("set_name");
    assert_eq!(updated.name, shared, "set_name returns the updated record");
    assert_eq!(updated.room.as_deref(), Some(room_a.as_str()), "set_name keeps the room");
    assert_eq!(holder_ids(store.as_ref(), &shared).await, vec![expected_a[0].clone()], "name_holders after set_name");
    store.set_name(&expected_a[1], &format!("dave-{run}")).await.expect("rename");
    assert!(holder_ids(store.as_ref(), &format!("nobody-{run}")).await.is_empty(), "nobody holds an unused name");

    // Delete removes a member from its room and its name.
    store.delete_connection(&expected_a[0]).await.expect("delete");
    assert!(holder_ids(store.as_ref(), &shared).await.is_empty(), "deleted connection still holds its name");
    let after = all_members(store.as_ref(), &room_a, 7).await;
    assert!(!after.contains(&expected_a[0]), "a deleted connection is still a member");
    assert_eq!(after.len(), expected_a.len() - 1);

    // Clean up, so a reused table does not grow with every run.
    let mut all: Vec<String> = expected_a.clone();
    all.extend(movers);
    all.extend([outsider.connection_id, roomless.connection_id]);
    store.delete_connections(&all).await.expect("cleanup");
    assert!(all_members(store.as_ref(), &room_a, 10).await.is_empty(), "room a after cleanup");

    name_claims_contract(&store, &run).await;
}

/// The ids of [`ConnectionStore::name_holders`], sorted.
async fn holder_ids(store: &dyn ConnectionStore, name: &str) -> Vec<String> {
    let holders = store.name_holders(name).await.expect("name_holders");
    sorted(holders.into_iter().map(|c| c.connection_id).collect())
}

fn expect_name_taken<T: std::fmt::Debug>(result: StoreResult<T>, what: &str) {
    match result {
        Err(StoreError::NameTaken(_)) => {}
        other => panic!("{what} must be NameTaken, got {other:?}"),
    }
}

/// One owner per display name, by key: refusals change nothing, renames and deletes release,
/// a principal's connections share their name, and of racing claims exactly one wins.
async fn name_claims_contract(store: &Arc<dyn ConnectionStore>, run: &str) {
    let id = |n: &str| format!("n-{run}-{n}");
    let room = format!("names-{run}");
    let grace = format!("Grace-{run}");
    let holder = record(&id("grace"), &grace, Some(&room));
    store.put_connection(&holder).await.expect("a free name is claimed with the put");

    // Nobody else may take it, in another case or in look-alike letters; a refused put
    // registers nothing.
    let spellings = [format!("grace-{run}"), format!("GRACE-{run}"), format!("Gr\u{0430}ce-{run}"), grace.clone()];
    for (n, spelling) in spellings.iter().enumerate() {
        let imposter = record(&id(&format!("imposter{n}")), spelling, Some(&room));
        expect_name_taken(store.put_connection(&imposter).await, &format!("a put as {spelling:?}"));
        assert_eq!(store.get_connection(&imposter.connection_id).await.expect("get"), None, "refused, not registered");
        assert_eq!(holder_ids(store.as_ref(), spelling).await, vec![holder.connection_id.clone()], "{spelling:?}");
    }
    assert!(
        all_members(store.as_ref(), &room, 10).await == vec![holder.connection_id.clone()],
        "refusals join no room"
    );

    // set_name: a taken key is refused and nothing changes; the owner's own key in another
    // spelling is the owner's.
    let other = record(&id("other"), &format!("Other-{run}"), Some(&room));
    store.put_connection(&other).await.expect("put");
    expect_name_taken(
        store.set_name(&other.connection_id, &format!("GR\u{0410}CE-{run}")).await,
        "set_name to a held key",
    );
    assert_eq!(store.get_connection(&other.connection_id).await.expect("get"), Some(other.clone()), "unchanged");
    assert_eq!(holder_ids(store.as_ref(), &other.name).await, vec![other.connection_id.clone()], "keeps its name");
    let recased = store.set_name(&holder.connection_id, &format!("grace-{run}")).await.expect("recase own name");
    assert_eq!(recased.name, format!("grace-{run}"));
    assert_eq!(holder_ids(store.as_ref(), &grace).await, vec![holder.connection_id.clone()], "still the holder");

    // A rename releases the old name, which another connection can then take.
    store.set_name(&holder.connection_id, &format!("Hopper-{run}")).await.expect("rename");
    assert!(holder_ids(store.as_ref(), &grace).await.is_empty(), "a rename releases the old name");
    store.set_name(&other.connection_id, &grace).await.expect("the released name is free");
    assert_eq!(holder_ids(store.as_ref(), &grace).await, vec![other.connection_id.clone()]);
    assert!(holder_ids(store.as_ref(), &format!("Other-{run}")).await.is_empty(), "the renamed one's old name");

    // A delete releases, one at a time and in a batch.
    store.delete_connection(&other.connection_id).await.expect("delete");
    assert!(holder_ids(store.as_ref(), &grace).await.is_empty(), "a delete releases the name");
    let second = record(&id("second"), &format!("GRACE-{run}"), Some(&room));
    store.put_connection(&second).await.expect("free again after the holder's delete");
    store.delete_connections(std::slice::from_ref(&second.connection_id)).await.expect("batch delete");
    assert!(holder_ids(store.as_ref(), &grace).await.is_empty(), "a batch delete releases the name");
    let third = record(&id("third"), &format!("gr\u{0430}ce-{run}"), Some(&room));
    store.put_connection(&third).await.expect("free again after a batch delete");
    let released = store.set_name(&third.connection_id, &format!("Third-{run}")).await.expect("rename");
    assert_eq!(released.name, format!("Third-{run}"));

    // A principal's connections share its name; other owners, authorized or not, may not have it.
    let zed = format!("Zed-{run}");
    let principal = |n: &str, who: &str| {
        let mut r = record(&id(n), &zed, Some(&room));
        r.principal_id = Some(format!("{who}-{run}"));
        r
    };
    let (tab1, tab2) = (principal("tab1", "user-a"), principal("tab2", "user-a"));
    store.put_connection(&tab1).await.expect("the principal's first connection");
    store.put_connection(&tab2).await.expect("the principal's second connection shares the name");
    let stranger = principal("stranger", "user-b");
    expect_name_taken(store.put_connection(&stranger).await, "another principal's put");
    expect_name_taken(store.put_connection(&record(&id("anon"), &zed, None)).await, "an anonymous put");
    assert_eq!(
        holder_ids(store.as_ref(), &zed).await,
        sorted(vec![tab1.connection_id.clone(), tab2.connection_id.clone()]),
        "both of the principal's connections hold the name"
    );
    store.delete_connection(&tab1.connection_id).await.expect("delete");
    assert_eq!(holder_ids(store.as_ref(), &zed).await, vec![tab2.connection_id.clone()], "one tab left");
    expect_name_taken(store.put_connection(&stranger).await, "a put while one tab holds the name");
    store.delete_connection(&tab2.connection_id).await.expect("delete");
    store.put_connection(&stranger).await.expect("free once the last tab has gone");

    // Races: of 8 puts, and of 8 renames, for one name, exactly one wins.
    let racer = format!("Racer-{run}");
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let store = store.clone();
            let r = record(&id(&format!("put-racer{n}")), &racer, Some(&room));
            tokio::spawn(async move { (r.connection_id.clone(), store.put_connection(&r).await) })
        })
        .collect();
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for task in tasks {
        match task.await.expect("put task panicked") {
            (id, Ok(())) => winners.push(id),
            (id, Err(StoreError::NameTaken(_))) => losers.push(id),
            (_, Err(e)) => panic!("a racing put must win or be NameTaken, got {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one of 8 racing puts wins: {winners:?}");
    assert_eq!(holder_ids(store.as_ref(), &racer).await, winners, "the winner holds the name");
    for l in &losers {
        assert_eq!(store.get_connection(l).await.expect("get"), None, "a losing put registered nothing");
    }
    let renamer = format!("Renamer-{run}");
    let mut renamers = Vec::new();
    for n in 0..8 {
        let r = record(&id(&format!("rename-racer{n}")), &format!("Before{n}-{run}"), Some(&room));
        store.put_connection(&r).await.expect("put");
        renamers.push(r);
    }
    let tasks: Vec<_> = renamers
        .iter()
        .map(|r| {
            let (store, cid, name) = (store.clone(), r.connection_id.clone(), renamer.clone());
            tokio::spawn(async move { (cid.clone(), store.set_name(&cid, &name).await) })
        })
        .collect();
    let mut renamed = Vec::new();
    for task in tasks {
        match task.await.expect("rename task panicked") {
            (id, Ok(_)) => renamed.push(id),
            (_, Err(StoreError::NameTaken(_))) => {}
            (_, Err(e)) => panic!("a racing rename must win or be NameTaken, got {e:?}"),
        }
    }
    assert_eq!(renamed.len(), 1, "exactly one of 8 racing renames wins: {renamed:?}");
    assert_eq!(holder_ids(store.as_ref(), &renamer).await, renamed, "the winner holds the name");
    for r in &renamers {
        let now = store.get_connection(&r.connection_id).await.expect("get").expect("registered");
        if now.connection_id != renamed[0] {
            assert_eq!(now.name, r.name, "a losing rename keeps its old name");
        }
    }

    let mut all: Vec<String> = vec![holder.connection_id, third.connection_id, stranger.connection_id];
    all.extend(winners);
    all.extend(renamers.into_iter().map(|r| r.connection_id));
    store.delete_connections(&all).await.expect("cleanup");
    assert!(all_members(store.as_ref(), &room, 10).await.is_empty(), "names room after cleanup");
}

fn seqs(messages: &[StoredMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

/// Every room of the listing, page by page (`page_size` each), checking each page's size and
/// that pages never repeat a room.
async fn all_rooms(log: &dyn MessageLog, page_size: usize) -> Vec<crate::model::RoomState> {
    let mut rooms: Vec<crate::model::RoomState> = Vec::new();
    let mut after: Option<RoomsCursor> = None;
    for _ in 0..100_000 {
        let page = log.rooms_page(after.as_ref(), page_size).await.expect("rooms_page");
        assert!(page.rooms.len() <= page_size, "rooms_page returned {} rooms for limit {page_size}", page.rooms.len());
        assert!(page.next.is_none() || !page.rooms.is_empty(), "a page with a `next` has rooms");
        for r in &page.rooms {
            assert!(!rooms.iter().any(|seen| seen.room == r.room), "rooms_page listed {} twice", r.room);
        }
        rooms.extend(page.rooms);
        after = page.next;
        if after.is_none() {
            return rooms;
        }
    }
    panic!("rooms_page pagination never ended");
}

/// The room index and room expiry, on a log whose empty-room TTL is `empty_room_ttl` (short:
/// the check waits for it to pass).
pub async fn room_index_contract(log: Arc<dyn MessageLog>, empty_room_ttl: std::time::Duration) {
    let run = unique_suffix();
    // Far in the future, so that no other room of a shared table comes between them.
    let future = now_ms() + 10_000_000_000;
    let names: Vec<String> = (0..7).map(|n| format!("idx-{n}-{run}")).collect();
    for (n, room) in names.iter().enumerate() {
        log.append(new_message(room, "p", None, "hi", future + 10 * n as i64)).await.expect("append");
    }
    // The third becomes the most recent.
    log.append(new_message(&names[2], "p", None, "again", future + 1000)).await.expect("append");
    let expected: Vec<&str> = [2, 6, 5, 4, 3, 1, 0].iter().map(|&n| names[n].as_str()).collect();
    for page_size in [1, 3, 1000] {
        let listed = all_rooms(log.as_ref(), page_size).await;
        let mine: Vec<&str> = listed.iter().map(|r| r.room.as_str()).filter(|r| names.iter().any(|n| n == r)).collect();
        assert_eq!(mine, expected, "rooms_page order, most recently active first, in pages of {page_size}");
        let third = listed.iter().find(|r| r.room == names[2]).expect("listed");
        assert_eq!((third.first_seq, third.last_seq), (1, 2), "rooms_page carries each room's state");
    }
    let first = log.rooms_page(None, 2).await.expect("rooms_page");
    assert_eq!(first.rooms.len(), 2, "a page holds `limit` rooms");
    assert_eq!(first.rooms[0].room, names[2], "the newest activity first");
    let cursor = first.next.clone().expect("more than 2 rooms: a next page");
    assert_eq!(RoomsCursor::parse(&cursor.encode()), Some(cursor.clone()), "a cursor survives its encoding");
    let second = log.rooms_page(Some(&cursor), 2).await.expect("rooms_page");
    assert_eq!(second.rooms.first().map(|r| r.room.as_str()), Some(names[5].as_str()), "the next page continues");

    // room_exists never creates.
    let unknown = format!("idx-unknown-{run}");
    assert!(!log.room_exists(&unknown).await.expect("room_exists"), "an unknown room does not exist");
    assert!(!log.room_exists(&unknown).await.expect("room_exists"), "asking did not create it");
    assert!(!all_rooms(log.as_ref(), 1000).await.iter().any(|r| r.room == unknown), "nor list it");

    // An empty room exists and is listed until its TTL passes; a room with history stays.
    let empty = format!("idx-empty-{run}");
    let kept = format!("idx-kept-{run}");
    log.room_state(&empty).await.expect("room_state creates the room");
    log.append(new_message(&kept, "p", None, "history", now_ms())).await.expect("append");
    assert!(log.room_exists(&empty).await.expect("room_exists"), "a new empty room exists");
    let listed = all_rooms(log.as_ref(), 1000).await;
    let empty_state = listed.iter().find(|r| r.room == empty).expect("a new empty room is listed");
    assert_eq!(empty_state.last_seq, 0);
    tokio::time::sleep(empty_room_ttl + std::time::Duration::from_millis(1500)).await;
    assert!(!log.room_exists(&empty).await.expect("room_exists"), "an empty room lapses after its TTL");
    let listed = all_rooms(log.as_ref(), 1000).await;
    assert!(!listed.iter().any(|r| r.room == empty), "a lapsed empty room is not listed");
    assert!(log.room_exists(&kept).await.expect("room_exists"), "a room with history does not lapse");
    assert!(listed.iter().any(|r| r.room == kept), "a room with history stays listed");
    let again = log.room_state(&empty).await.expect("room_state of a lapsed room");
    assert_eq!(again.last_seq, 0, "a lapsed room comes back empty");
    assert!(log.room_exists(&empty).await.expect("room_exists"), "asking for its state creates it anew");
}

/// Room membership claims: a connection belongs to at most `max` rooms, atomically.
pub async fn room_claims_contract(log: Arc<dyn MessageLog>) {
    let run = unique_suffix();
    let (a, b, c) = (format!("claim-a-{run}"), format!("claim-b-{run}"), format!("claim-c-{run}"));
    let room = |n: usize| format!("claim-room-{n}-{run}");
    let ttl = now_ms() / 1000 + 3600;
    for n in 0..3 {
        assert_eq!(log.claim_room(&a, &room(n), 3, ttl).await.expect("claim"), RoomClaim::Added, "claim {n} of 3");
    }
    assert_eq!(log.claim_room(&a, &room(1), 3, ttl).await.expect("claim"), RoomClaim::Member, "a room claimed before");
    assert_eq!(log.claim_room(&a, &room(3), 3, ttl).await.expect("claim"), RoomClaim::Full, "a 4th room of 3");
    assert_eq!(
        log.claim_room(&a, &room(3), 3, ttl).await.expect("claim"),
        RoomClaim::Full,
        "a refusal records nothing"
    );
    assert_eq!(
        log.claim_room(&a, &room(2), 3, ttl).await.expect("claim"),
        RoomClaim::Member,
        "full, yet still a member"
    );
    assert_eq!(log.claim_room(&b, &room(3), 3, ttl).await.expect("claim"), RoomClaim::Added, "connections are apart");
    log.release_rooms(&a).await.expect("release");
    log.release_rooms(&format!("claim-never-{run}")).await.expect("releasing an unknown connection is fine");
    assert_eq!(log.claim_room(&a, &room(3), 3, ttl).await.expect("claim"), RoomClaim::Added, "released: room again");

    // Concurrent claims never exceed the limit.
    let tasks: Vec<_> = (0..12)
        .map(|n| {
            let (log, c, r) = (log.clone(), c.clone(), room(100 + n));
            tokio::spawn(async move { log.claim_room(&c, &r, 4, ttl).await.expect("concurrent claim") })
        })
        .collect();
    let mut added = 0;
    for t in tasks {
        if t.await.expect("claim task") == RoomClaim::Added {
            added += 1;
        }
    }
    assert_eq!(added, 4, "12 concurrent claims with a limit of 4: exactly 4 are added");
    for conn in [&a, &b, &c] {
        log.release_rooms(conn).await.expect("cleanup");
    }
}

/// The [`MessageLog`] contract.
pub async fn message_log_contract(log: Arc<dyn MessageLog>) {
    let run = unique_suffix();
    let room = format!("log-{run}");

    // An empty room has an epoch, stable across calls and across its first appends.
    let empty = log.room_state(&room).await.expect("room_state of a new room");
    assert!(!empty.epoch.is_empty(), "an empty room has an epoch");
    assert_eq!((empty.last_seq, empty.first_seq), (0, 1), "an empty room: last_seq 0, first_seq 1");
    assert_eq!(empty.room, room);
    assert_eq!(log.room_state(&room).await.expect("room_state").epoch, empty.epoch, "epoch stable when asked twice");
    assert!(log.read_after(&room, 0, 10).await.expect("read_after").is_empty(), "empty room reads empty");
    assert!(log.read_before(&room, None, 10).await.expect("read_before").is_empty(), "empty room reads empty");

    let t0 = now_ms();
    let a = log.append(new_message(&room, "alice", None, "hello", t0)).await.expect("append");
    assert!(!a.duplicate, "a first append is not a duplicate");
    assert_eq!(
        a.message,
        StoredMessage { room: room.clone(), seq: 1, id: None, from: "alice".into(), text: "hello".into(), ts: t0 }
    );
    for n in 2..=10u64 {
        let m = log.append(new_message(&room, "alice", None, &format!("m{n}"), t0 + n as i64)).await.expect("append");
        assert_eq!(m.message.seq, n, "seqs are allocated 1, 2, 3, … with no gaps");
    }
    let state = log.room_state(&room).await.expect("room_state");
    assert_eq!(state.epoch, empty.epoch, "the epoch does not change with appends");
    assert_eq!((state.first_seq, state.last_seq), (1, 10), "first_seq/last_seq after 10 appends");

    // read_after: seq > after, oldest first, at most limit.
    assert_eq!(seqs(&log.read_after(&room, 3, 2).await.expect("read_after")), vec![4, 5], "read_after(3, 2)");
    assert_eq!(seqs(&log.read_after(&room, 0, 100).await.expect("read_after")), (1..=10).collect::<Vec<_>>());
    assert!(log.read_after(&room, 10, 5).await.expect("read_after").is_empty(), "nothing after the last seq");
    assert!(log.read_after(&room, 50, 5).await.expect("read_after").is_empty(), "nothing after a seq past the end");
    assert_eq!(log.read_after(&room, 4, 1).await.expect("read_after")[0].text, "m5", "read_after returns the text");
    // read_before: seq < before (newest when None), newest first, at most limit.
    assert_eq!(seqs(&log.read_before(&room, None, 3).await.expect("read_before")), vec![10, 9, 8], "newest 3");
    assert_eq!(seqs(&log.read_before(&room, Some(3), 10).await.expect("read_before")), vec![2, 1], "before 3");
    assert!(log.read_before(&room, Some(1), 10).await.expect("read_before").is_empty(), "nothing before seq 1");
    assert_eq!(seqs(&log.read_before(&room, Some(100), 2).await.expect("read_before")), vec![10, 9], "before 100");
    assert!(log.read_after(&format!("nothing-{run}"), 0, 5).await.expect("read_after").is_empty(), "unknown room");

    // Idempotency: (room, publisher, id) identifies a message; a retry writes nothing.
    let first = log.append(new_message(&room, "bob", Some("k1"), "once", t0 + 20)).await.expect("append");
    assert_eq!((first.message.seq, first.duplicate), (11, false));
    let retry = log.append(new_message(&room, "bob", Some("k1"), "once (retry)", t0 + 21)).await.expect("retry");
    assert!(retry.duplicate, "a retry with the same (room, publisher, id) is a duplicate");
    assert_eq!(retry.message, first.message, "a retry gets the original message back");
    let other = log.append(new_message(&room, "carol", Some("k1"), "mine", t0 + 22)).await.expect("append");
    assert_eq!((other.message.seq, other.duplicate), (12, false), "another publisher's equal id is a new message");
    let elsewhere = format!("log-other-{run}");
    let there = log.append(new_message(&elsewhere, "bob", Some("k1"), "there", t0 + 23)).await.expect("append");
    assert_eq!((there.message.seq, there.duplicate), (1, false), "the same id in another room is a new message");
    assert_eq!(log.room_state(&room).await.expect("state").last_seq, 12, "a duplicate allocates no seq");
    let texts: Vec<String> = log.read_after(&room, 10, 10).await.expect("read").into_iter().map(|m| m.text).collect();
    assert_eq!(texts, vec!["once", "mine"], "the retry was not stored twice");
    assert_eq!(log.read_after(&room, 10, 1).await.expect("read")[0].id.as_deref(), Some("k1"), "the id is stored");

    // Concurrency: 8 tasks x 50 appends into one room give exactly 1..=400.
    let busy = format!("busy-{run}");
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            let busy = busy.clone();
            tokio::spawn(async move {
                let mut mine = Vec::with_capacity(50);
                for n in 0..50 {
                    let m = new_message(&busy, &format!("p{t}"), Some(&format!("{n}")), &format!("{t}/{n}"), now_ms());
                    let appended = log.append(m).await.expect("concurrent append");
                    assert!(!appended.duplicate, "distinct ids are never duplicates");
                    mine.push(appended.message.seq);
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        let mine = task.await.expect("append task panicked");
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "one publisher's seqs must increase: {mine:?}");
        all.extend(mine);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=400).collect::<Vec<u64>>(), "400 concurrent appends must get seqs 1..=400 exactly once");
    let stored = log.read_after(&busy, 0, 1000).await.expect("read_after");
    assert_eq!(seqs(&stored), (1..=400).collect::<Vec<u64>>(), "every concurrent append is stored once, in order");
    let state = log.room_state(&busy).await.expect("room_state");
    assert_eq!((state.first_seq, state.last_seq), (1, 400));

    // list_rooms: most recently active first (by the newest message's ts), at most limit.
    let future = now_ms() + 1_000_000;
    let names: Vec<String> = ["x", "y", "z"].iter().map(|n| format!("recent-{n}-{run}")).collect();
    log.append(new_message(&names[0], "p", None, "1", future)).await.expect("append");
    log.append(new_message(&names[1], "p", None, "2", future + 1)).await.expect("append");
    log.append(new_message(&names[2], "p", None, "3", future + 2)).await.expect("append");
    log.append(new_message(&names[0], "p", None, "4", future + 3)).await.expect("append");
    let listed = log.list_rooms(1000).await.expect("list_rooms");
    let mine: Vec<&str> = listed.iter().map(|r| r.room.as_str()).filter(|r| names.iter().any(|n| n == r)).collect();
    assert_eq!(mine, vec![names[0].as_str(), names[2].as_str(), names[1].as_str()], "list_rooms order");
    let x = listed.iter().find(|r| r.room == names[0]).expect("listed");
    assert_eq!((x.first_seq, x.last_seq), (1, 2), "list_rooms carries each room's state");
    assert_eq!(log.list_rooms(2).await.expect("list_rooms").len(), 2, "list_rooms honours its limit");
}
