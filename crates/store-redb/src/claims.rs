//! Which rooms each live connection belongs to, for the per-connection room limit
//! (`MessageLog::claim_room`). In memory only, like the registry it goes with: connections do
//! not outlive the process (they are purged at open). A connection's claims go at its
//! `$disconnect` (`release_rooms`); those of connections that went without one are swept once
//! they are no longer registered.

use std::collections::{HashMap, HashSet};

use dynamowave_core::store::RoomClaim;

#[derive(Default)]
pub(crate) struct Claims {
    by_connection: HashMap<String, HashSet<String>>,
    /// Map size at which the next claim sweeps out unregistered connections.
    sweep_at: usize,
}

/// Connections tracked before the first sweep of unregistered ones.
const FIRST_SWEEP: usize = 1024;

impl Claims {
    pub fn claim(&mut self, connection_id: &str, room: &str, max: usize) -> RoomClaim {
        RoomClaim::claim_in(self.by_connection.entry(connection_id.to_string()).or_default(), room, max)
    }

    pub fn release(&mut self, connection_id: &str) {
        self.by_connection.remove(connection_id);
    }

    /// When the map has doubled since the last sweep, drops the connections `registered` no
    /// longer knows: the cost of a sweep is spread over as many claims as it visits.
    pub fn sweep_if_due(&mut self, registered: impl Fn(&str) -> bool) {
        if self.by_connection.len() < self.sweep_at.max(FIRST_SWEEP) {
            return;
        }
        self.by_connection.retain(|id, _| registered(id));
        self.sweep_at = self.by_connection.len() * 2;
    }

    pub fn len(&self) -> usize {
        self.by_connection.len()
    }
}
