//! The live connections of this gateway, and [`LocalConnectionsApi`], the `@connections` API
//! over them (what the in-process handlers post through, and what the HTTP management API
//! serves to Lambda binaries and other callers).
//!
//! A post never blocks: it puts the shared frame bytes on the connection's bounded queue. A
//! connection whose queue is full is a slow consumer: it is closed with 1008 and the post
//! answers 429 LimitExceeded, so one slow reader never slows a broadcast down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use dynamowave_core::{ConnectionInfo, ConnectionsApi, ConnectionsApiError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A frame on its way to a client.
#[derive(Debug)]
pub enum Outbound {
    Text(Utf8Bytes),
    Binary(Bytes),
}

/// Close codes the gateway sends (RFC 6455 §7.4.1).
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const NO_STATUS: u16 = 1005;
    pub const ABNORMAL: u16 = 1006;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY_VIOLATION: u16 = 1008;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
}

/// One live connection, shared by its socket tasks and everyone who posts to it.
pub struct LiveConnection {
    pub connection_id: String,
    pub connected_at: i64,
    pub source_ip: String,
    pub user_agent: Option<String>,
    pub last_active_at: AtomicI64,
    tx: mpsc::Sender<Outbound>,
    /// Cancelled when the server wants the connection closed (DeleteConnection, slow consumer,
    /// shutdown); the code and reason to close with are in `close_with`.
    pub closing: CancellationToken,
    close_with: Mutex<Option<(u16, String)>>,
}

impl LiveConnection {
    pub fn new(
        connection_id: String,
        connected_at: i64,
        source_ip: String,
        user_agent: Option<String>,
        queue: usize,
    ) -> (Arc<Self>, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let live = Arc::new(Self {
            connection_id,
            connected_at,
            source_ip,
            user_agent,
            last_active_at: AtomicI64::new(connected_at),
            tx,
            closing: CancellationToken::new(),
            close_with: Mutex::new(None),
        });
        (live, rx)
    }

    /// Asks the connection to close with `code` (the first request wins).
    pub fn close(&self, code: u16, reason: &str) {
        let mut slot = self.close_with.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some((code, reason.to_string()));
        }
        drop(slot);
        self.closing.cancel();
    }

    /// The code and reason the server asked to close with, if it did.
    pub fn close_request(&self) -> Option<(u16, String)> {
        self.close_with.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn touch(&self) {
        self.last_active_at.store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// Queues a frame without waiting.
    pub fn offer(&self, frame: Outbound) -> Result<(), ConnectionsApiError> {
        match self.tx.try_send(frame) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close(close::POLICY_VIOLATION, "slow consumer: send queue full");
                metrics::counter!("dynamowave_slow_consumers_total").increment(1);
                Err(ConnectionsApiError::LimitExceeded("the client's send buffer is full".into()))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(ConnectionsApiError::Gone),
        }
    }
}

/// All live connections by id.
#[derive(Default)]
pub struct Registry {
    // std RwLock: held only for map operations, never across an await; a broadcast takes the
    // read lock once for all its recipients.
    map: RwLock<HashMap<String, Arc<LiveConnection>>>,
    /// Live connections per source address, for the per-address limit.
    per_ip: Mutex<HashMap<String, usize>>,
}

impl Registry {
    pub fn insert(&self, live: Arc<LiveConnection>) {
        *self.per_ip.lock().unwrap_or_else(|p| p.into_inner()).entry(live.source_ip.clone()).or_insert(0) += 1;
        self.map.write().unwrap_or_else(|p| p.into_inner()).insert(live.connection_id.clone(), live);
        metrics::gauge!("dynamowave_connections").increment(1.0);
    }

    pub fn remove(&self, connection_id: &str) -> Option<Arc<LiveConnection>> {
        let removed = self.map.write().unwrap_or_else(|p| p.into_inner()).remove(connection_id);
        if let Some(live) = &removed {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = per_ip.get_mut(&live.source_ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per_ip.remove(&live.source_ip);
                }
            }
        }
        if removed.is_some() {
            metrics::gauge!("dynamowave_connections").decrement(1.0);
        }
        removed
    }

    /// Live connections from `source_ip`.
    pub fn count_from(&self, source_ip: &str) -> usize {
        self.per_ip.lock().unwrap_or_else(|p| p.into_inner()).get(source_ip).copied().unwrap_or(0)
    }

    pub fn get(&self, connection_id: &str) -> Option<Arc<LiveConnection>> {
        self.map.read().unwrap_or_else(|p| p.into_inner()).get(connection_id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<LiveConnection>> {
        self.map.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A text frame if the bytes are UTF-8 (they are, for every chat event), else a binary one.
fn frame_of(data: Bytes) -> Outbound {
    if std::str::from_utf8(&data).is_err() {
        return Outbound::Binary(data);
    }
    match Utf8Bytes::try_from(data) {
        Ok(text) => Outbound::Text(text),
        // Checked just above; an empty binary frame keeps the types honest.
        Err(_) => Outbound::Binary(Bytes::new()),
    }
}

/// `@connections` over the live connections of this process.
pub struct LocalConnectionsApi {
    pub registry: Arc<Registry>,
    /// PostToConnection's payload limit (API Gateway: 128 KiB).
    pub max_payload_bytes: usize,
}

#[async_trait]
impl ConnectionsApi for LocalConnectionsApi {
    async fn post_to_connection(&self, connection_id: &str, data: Bytes) -> Result<(), ConnectionsApiError> {
        if data.len() > self.max_payload_bytes {
            return Err(ConnectionsApiError::PayloadTooLarge(format!(
                "payload of {} bytes exceeds {} bytes",
                data.len(),
                self.max_payload_bytes
            )));
        }
        let live = self.registry.get(connection_id).ok_or(ConnectionsApiError::Gone)?;
        live.offer(frame_of(data))?;
        metrics::counter!("dynamowave_messages_out_total").increment(1);
        Ok(())
    }

    async fn get_connection(&self, connection_id: &str) -> Result<ConnectionInfo, ConnectionsApiError> {
        let live = self.registry.get(connection_id).ok_or(ConnectionsApiError::Gone)?;
        Ok(ConnectionInfo {
            connected_at: live.connected_at,
            source_ip: live.source_ip.clone(),
            user_agent: live.user_agent.clone(),
            last_active_at: live.last_active_at.load(Ordering::Relaxed),
        })
    }

    async fn delete_connection(&self, connection_id: &str) -> Result<(), ConnectionsApiError> {
        let live = self.registry.get(connection_id).ok_or(ConnectionsApiError::Gone)?;
        live.close(close::NORMAL, "Connection deleted by the @connections API");
        Ok(())
    }

    /// One read lock for the whole broadcast; each recipient gets a reference-counted view of
    /// the same bytes (no copy, no allocation per recipient beyond the queue slot).
    async fn post_to_many(
        &self,
        connection_ids: &[&str],
        data: Bytes,
        _concurrency: usize,
    ) -> Vec<(String, ConnectionsApiError)> {
        let mut failed = Vec::new();
        if data.len() > self.max_payload_bytes {
            let e = ConnectionsApiError::PayloadTooLarge(format!("payload of {} bytes", data.len()));
            return connection_ids.iter().map(|id| (id.to_string(), e.clone())).collect();
        }
        // Validated once per broadcast, not once per recipient.
        let text = match frame_of(data) {
            Outbound::Text(t) => Ok(t),
            Outbound::Binary(b) => Err(b),
        };
        let mut sent = 0u64;
        {
            let map = self.registry.map.read().unwrap_or_else(|p| p.into_inner());
            for id in connection_ids {
                let Some(live) = map.get(*id) else {
                    failed.push((id.to_string(), ConnectionsApiError::Gone));
                    continue;
                };
                let frame = match &text {
                    Ok(t) => Outbound::Text(t.clone()),
                    Err(b) => Outbound::Binary(b.clone()),
                };
                match live.offer(frame) {
                    Ok(()) => sent += 1,
                    Err(e) => failed.push((id.to_string(), e)),
                }
            }
        }
        metrics::counter!("dynamowave_messages_out_total").increment(sent);
        failed
    }
}
