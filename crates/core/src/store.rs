//! The storage ports. Each adapter (embedded redb, DynamoDB) implements both, and passes the
//! shared suite in [`crate::contract`].

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::StoreResult;
use crate::model::{Appended, ConnectionRecord, Framing, NewMessage, Page, RoomState, StoredMessage};
#[cfg(doc)]
use crate::names::name_key;

/// A fan-out recipient: all a broadcast needs of a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    pub connection_id: Arc<str>,
    pub framing: Framing,
}

/// The seed's ConnectionsTable: who is connected, under which name, in which room.
///
/// A display name is held by one owner at a time (a connection, or the principal of several),
/// compared by [`name_key`] so that look-alikes count as the same name. The store enforces it
/// atomically in [`ConnectionStore::put_connection`] and [`ConnectionStore::set_name`], and
/// releases a name when its last holder is deleted or renamed.
///
/// Fan-out reads a room's members through [`ConnectionStore::members`], a paginated query on a
/// room index: never a scan of the whole table.
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Registers a new connection and claims its display name for its
    /// [`ConnectionRecord::name_owner`], as one atomic step. Fails with `Conflict` if the id
    /// exists (a conditional put), with `NameTaken` if another owner holds a name with the same
    /// [`name_key`]; either way nothing changes. Of two puts racing for one key, one wins.
    async fn put_connection(&self, record: &ConnectionRecord) -> StoreResult<()>;

    /// The connection's item, if it is registered.
    async fn get_connection(&self, connection_id: &str) -> StoreResult<Option<ConnectionRecord>>;

    /// Removes a connection and returns what it was (`None` if it was not there). Its name is
    /// released (still held if other connections of its owner hold it).
    async fn delete_connection(&self, connection_id: &str) -> StoreResult<Option<ConnectionRecord>>;

    /// Removes many connections at once (the seed's batch operations): stale ones found by a
    /// fan-out. Ids that are already gone are not an error. Their names are released: free for
    /// the next [`ConnectionStore::put_connection`] or [`ConnectionStore::set_name`] of another
    /// owner, and no longer in [`ConnectionStore::name_holders`].
    async fn delete_connections(&self, connection_ids: &[String]) -> StoreResult<()>;

    /// Moves a connection to `room` (or out of any room), returning the record as it was
    /// before. `NotFound` if the connection is not registered.
    async fn set_room(&self, connection_id: &str, room: Option<&str>) -> StoreResult<ConnectionRecord>;

    /// Sets the display name: claims `name` for the connection's owner and releases the old
    /// one, as one atomic step, and returns the updated record. `NotFound` if the connection is
    /// not registered, `NameTaken` (and nothing changes) if another owner holds `name`'s key.
    /// A new name with the key of the old one ("grace" to "Grace") is always the owner's.
    async fn set_name(&self, connection_id: &str, name: &str) -> StoreResult<ConnectionRecord>;

    /// One page of the members of `room`, `page_size` at most, continuing from `next`.
    async fn members(&self, room: &str, next: Option<&str>, page_size: usize) -> StoreResult<Page<ConnectionRecord>>;

    /// The connections that hold `name`'s [`name_key`]: all of one owner (a user may have
    /// several tabs open), or none. A connection gone without its delete (no `$disconnect`) may
    /// linger as a claim in a store, but never here: only registered connections are listed.
    async fn name_holders(&self, name: &str) -> StoreResult<Vec<ConnectionRecord>>;

    /// Every member of `room` as fan-out recipients. The default pages through
    /// [`ConnectionStore::members`] (`page_size` a page); an adapter with an in-memory index
    /// overrides it to hand out a shared list, so a broadcast allocates nothing per member.
    async fn recipients(&self, room: &str, page_size: usize) -> StoreResult<Arc<[Recipient]>> {
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self.members(room, next.as_deref(), page_size).await?;
            out.extend(
                page.items.into_iter().map(|c| Recipient { connection_id: c.connection_id.into(), framing: c.framing }),
            );
            next = page.next;
            if next.is_none() {
                return Ok(out.into());
            }
        }
    }
}

/// Durable per-room history. Each room's messages carry a `seq` that is strictly increasing
/// with no gaps, allocated atomically with the write.
#[async_trait]
pub trait MessageLog: Send + Sync {
    /// Stores a message under the room's next seq, durably, before returning. When
    /// (`room`, `publisher`, `id`) was stored before, returns that message with
    /// `duplicate: true` and writes nothing.
    async fn append(&self, message: NewMessage) -> StoreResult<Appended>;

    /// Messages with seq > `after`, oldest first, at most `limit`.
    async fn read_after(&self, room: &str, after: u64, limit: usize) -> StoreResult<Vec<StoredMessage>>;

    /// Messages with seq < `before` (or the newest, when `None`), newest first, at most `limit`.
    async fn read_before(&self, room: &str, before: Option<u64>, limit: usize) -> StoreResult<Vec<StoredMessage>>;

    /// Where the room's log stands (an empty room still has an epoch once it is asked for).
    async fn room_state(&self, room: &str) -> StoreResult<RoomState>;

    /// Whether `room` exists: it has a log that has not lapsed. A room lapses when it holds no
    /// stored message (never had one, or retention pruned them all) and its last activity (its
    /// creation or newest message) is older than the adapter's empty-room TTL; a lapsed room is
    /// neither listed nor counted as existing, and the adapter deletes it (redb: at its next
    /// maintenance pass, unless a connection is in it; DynamoDB: by TTL). Never creates a room.
    async fn room_exists(&self, room: &str) -> StoreResult<bool>;

    /// One page of the rooms that exist, most recently active first, `limit` at most, after
    /// `after` (the `next` of the previous page). Served from an index ordered by last
    /// activity: never a scan, nor a sort of every room.
    async fn rooms_page(&self, after: Option<&RoomsCursor>, limit: usize) -> StoreResult<RoomsPage>;

    /// The first `limit` rooms of [`MessageLog::rooms_page`].
    async fn list_rooms(&self, limit: usize) -> StoreResult<Vec<RoomState>> {
        Ok(self.rooms_page(None, limit).await?.rooms)
    }

    /// Records that `connection_id` belongs to `room`, unless it already belongs to `max`
    /// other rooms. Atomic: concurrent claims of one connection never exceed `max`.
    /// `expires_at` (seconds since the epoch) is when the record may be dropped if
    /// [`MessageLog::release_rooms`] never comes (the connection's TTL).
    async fn claim_room(&self, connection_id: &str, room: &str, max: usize, expires_at: i64) -> StoreResult<RoomClaim>;

    /// Forgets the rooms `connection_id` belonged to (at `$disconnect`). Unknown ids are fine.
    async fn release_rooms(&self, connection_id: &str) -> StoreResult<()>;
}

/// A position in the rooms listing: the last room of a page, by its last activity and name.
/// On the wire it is the opaque string [`RoomsCursor::encode`] makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomsCursor {
    /// Milliseconds since the epoch of the room's last activity.
    pub active_ms: i64,
    pub room: String,
}

impl RoomsCursor {
    /// `ACTIVE_MS:ROOM` (a room name has no `:`).
    pub fn encode(&self) -> String {
        format!("{}:{}", self.active_ms, self.room)
    }

    /// The cursor [`RoomsCursor::encode`] made, or `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let (ms, room) = s.split_once(':')?;
        let active_ms = ms.parse::<i64>().ok().filter(|ms| *ms >= 0)?;
        crate::names::validate_room(room).ok()?;
        Some(Self { active_ms, room: room.to_string() })
    }
}

/// One page of [`MessageLog::rooms_page`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomsPage {
    pub rooms: Vec<RoomState>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<RoomsCursor>,
}

/// The answer of [`MessageLog::claim_room`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomClaim {
    /// The connection already belonged to the room.
    Member,
    /// It belongs to the room now.
    Added,
    /// It belongs to `max` other rooms: refused, nothing recorded.
    Full,
}

impl RoomClaim {
    /// Claims `room` for a connection that belongs to `rooms`, at most `max` of them, and
    /// records it in `rooms` when added: the rule of every in-memory claim set.
    pub fn claim_in(rooms: &mut HashSet<String>, room: &str, max: usize) -> RoomClaim {
        if rooms.contains(room) {
            RoomClaim::Member
        } else if rooms.len() >= max {
            RoomClaim::Full
        } else {
            rooms.insert(room.to_string());
            RoomClaim::Added
        }
    }
}
