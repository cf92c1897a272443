//! The in-memory connection registry: by id, by room, by name key.
//!
//! Fan-out reads a room's members for every message (1,000-member rooms at 25,000
//! deliveries/s), so `members` and `get_connection` are answered from here and never touch the
//! disk. Only the writer thread changes it, right after the transaction that wrote the same
//! change commits, so it never shows an uncommitted write. Readers take a std `RwLock` for
//! the time of a copy; it is never held across an `.await`.
//!
//! Name claims live here too, derived from the records: the holders of a name are the
//! registered connections whose name has that [`name_key`]. The writer thread checks them
//! before it commits a put or a rename, which makes a claim atomic; the purge at open releases
//! every name with the connections.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use dynamowave_core::ConnectionRecord;
use dynamowave_core::model::Page;
use dynamowave_core::names::name_key;
use dynamowave_core::store::Recipient;
use parking_lot::Mutex;

/// A record in the index's set, found by its connection id (`Borrow<str>`).
pub(crate) struct ById(ConnectionRecord);

impl std::borrow::Borrow<str> for ById {
    fn borrow(&self) -> &str {
        &self.0.connection_id
    }
}

impl std::hash::Hash for ById {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.connection_id.as_str().hash(state);
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.connection_id == other.0.connection_id
    }
}

impl Eq for ById {}

#[derive(Default)]
pub(crate) struct Index {
    /// Each room's recipient list, built on the first broadcast after a membership change and
    /// shared by every broadcast until the next one: a broadcast into a steady room of 1,000
    /// allocates nothing per member. (A Mutex inside: filled under the index's read lock.)
    recipients: Mutex<HashMap<String, Arc<[Recipient]>>>,
    /// Records found by their own `connection_id` (no second copy of the id as a key).
    by_id: HashSet<ById>,
    /// Sorted, so a page continues after the last id of the previous one.
    by_room: HashMap<String, BTreeSet<String>>,
    /// (name key, connection id) pairs: one ordered set rather than a set per name, since most
    /// names are unique (a set per name cost a 300-byte B-tree node per connection).
    by_key: BTreeSet<(String, String)>,
}

impl Index {
    pub fn get(&self, connection_id: &str) -> Option<&ConnectionRecord> {
        self.by_id.get(connection_id).map(|r| &r.0)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Sets `connection_id` to `record`, or removes it when `None`.
    pub fn set(&mut self, connection_id: &str, record: Option<ConnectionRecord>) {
        {
            let cache = self.recipients.get_mut();
            if let Some(room) = self.by_id.get(connection_id).and_then(|o| o.0.room.as_deref()) {
                cache.remove(room);
            }
            if let Some(room) = record.as_ref().and_then(|n| n.room.as_deref()) {
                cache.remove(room);
            }
        }
        // Most changes are room moves: the name, and so its key, stays (no skeleton to compute).
        let same_name = match (self.by_id.get(connection_id), &record) {
            (Some(ById(old)), Some(new)) => old.name == new.name,
            _ => false,
        };
        if let Some(ById(old)) = self.by_id.take(connection_id) {
            if let Some(room) = &old.room {
                remove_from(&mut self.by_room, room, connection_id);
            }
            if !same_name {
                self.by_key.remove(&(name_key(&old.name), connection_id.to_string()));
            }
        }
        if let Some(new) = record {
            if let Some(room) = &new.room {
                self.by_room.entry(room.clone()).or_default().insert(connection_id.to_string());
            }
            if !same_name {
                self.by_key.insert((name_key(&new.name), connection_id.to_string()));
            }
            self.by_id.replace(ById(new));
        }
    }

    pub fn members(&self, room: &str, next: Option<&str>, page_size: usize) -> Page<ConnectionRecord> {
        let page_size = page_size.max(1);
        let Some(ids) = self.by_room.get(room) else { return Page { items: Vec::new(), next: None } };
        let start = next.map_or(Bound::Unbounded, Bound::Excluded);
        let mut items = Vec::with_capacity(page_size.min(ids.len()));
        let mut more = false;
        for id in ids.range::<str, _>((start, Bound::Unbounded)) {
            if items.len() == page_size {
                more = true;
                break;
            }
            if let Some(ById(record)) = self.by_id.get(id.as_str()) {
                items.push(record.clone());
            }
        }
        let next = if more { items.last().map(|c| c.connection_id.clone()) } else { None };
        Page { items, next }
    }

    /// Whether anybody is in `room`.
    pub fn has_members(&self, room: &str) -> bool {
        self.by_room.contains_key(room)
    }

    /// Rooms somebody is in.
    pub fn rooms_with_members(&self) -> usize {
        self.by_room.len()
    }

    /// Rooms with a cached recipient list.
    pub fn cached_rooms(&self) -> usize {
        self.recipients.lock().len()
    }

    /// Every member of `room`, as a shared list.
    pub fn recipients(&self, room: &str) -> Arc<[Recipient]> {
        if !self.by_room.contains_key(room) {
            // Not cached: a post into a room nobody is in would otherwise leave an entry for
            // every room name ever posted to (no membership change ever clears it).
            return Arc::from([]);
        }
        let mut cache = self.recipients.lock();
        if let Some(list) = cache.get(room) {
            return list.clone();
        }
        let list: Arc<[Recipient]> = self
            .by_room
            .get(room)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| self.by_id.get(id.as_str()))
                    .map(|ById(c)| Recipient { connection_id: c.connection_id.as_str().into(), framing: c.framing })
                    .collect()
            })
            .unwrap_or_default();
        cache.insert(room.to_string(), list.clone());
        list
    }

    /// The ids of the connections whose name has this key.
    pub fn holder_ids(&self, key: &str) -> impl Iterator<Item = &str> {
        let from = (key.to_string(), String::new());
        self.by_key.range(from..).take_while(move |(k, _)| k == key).map(|(_, id)| id.as_str())
    }

    /// The connections whose name has this key.
    pub fn holders(&self, key: &str) -> Vec<ConnectionRecord> {
        self.holder_ids(key).filter_map(|id| self.by_id.get(id).map(|r| r.0.clone())).collect()
    }
}

fn remove_from(map: &mut HashMap<String, BTreeSet<String>>, key: &str, id: &str) {
    if let Some(set) = map.get_mut(key) {
        set.remove(id);
        if set.is_empty() {
            map.remove(key);
        }
    }
}
