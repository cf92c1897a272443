//! Who is on the other end of a Runtime API connection.
//!
//! Anyone on the machine can reach a loopback port, and whoever polls `/invocation/next` gets
//! the next event and may answer it (an authorizer's Allow policy, say). So each connection is
//! checked once, at its first request: the peer's TCP socket, found in `/proc/net/tcp` by its
//! address pair, must be an open file of the environment's process or of one of its
//! descendants (a `bootstrap` script may start the runtime as a child). This works with every
//! runtime client, since nothing about `AWS_LAMBDA_RUNTIME_API` changes; it needs Linux's
//! `/proc`, and elsewhere every local process is trusted (the host warns at start).

use std::net::SocketAddr;

/// Whether this platform can tell which process a loopback connection comes from.
pub(crate) const CAN_CHECK: bool = cfg!(target_os = "linux");

/// Whether the connection from `peer` to our listener `local` belongs to process `pid` or to
/// one of its descendants. Errors reading `/proc` count as "no": refusing the environment's own
/// process fails its invocation loudly, answering an impostor would not.
#[cfg(target_os = "linux")]
pub(crate) fn belongs_to(pid: u32, peer: SocketAddr, local: SocketAddr) -> Result<bool, String> {
    use std::collections::HashMap;

    use procfs::process::{FDTarget, Process, all_processes};

    let entries = procfs::net::tcp().map_err(|e| format!("reading /proc/net/tcp: {e}"))?;
    let Some(inode) =
        entries.iter().find(|e| e.local_address == peer && e.remote_address == local && e.inode != 0).map(|e| e.inode)
    else {
        return Ok(false);
    };
    let holds = |pid: i32| {
        Process::new(pid)
            .and_then(|p| p.fd())
            .map(|fds| fds.flatten().any(|fd| matches!(fd.target, FDTarget::Socket(i) if i == inode)))
            .unwrap_or(false)
    };
    let Ok(root) = i32::try_from(pid) else { return Ok(false) };
    if holds(root) {
        return Ok(true);
    }
    // Not the process itself: look through its descendants.
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    let processes = all_processes().map_err(|e| format!("listing /proc: {e}"))?;
    for process in processes.flatten() {
        if let Ok(stat) = process.stat() {
            children.entry(stat.ppid).or_default().push(stat.pid);
        }
    }
    let mut pending = children.get(&root).cloned().unwrap_or_default();
    while let Some(next) = pending.pop() {
        if holds(next) {
            return Ok(true);
        }
        if let Some(more) = children.get(&next) {
            pending.extend(more);
        }
    }
    Ok(false)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn belongs_to(_pid: u32, _peer: SocketAddr, _local: SocketAddr) -> Result<bool, String> {
    Ok(true)
}
