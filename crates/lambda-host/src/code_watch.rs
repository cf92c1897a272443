//! Notices that a function's code changed, so that its next invocation runs in a new execution
//! environment, as after a Lambda deploy.
//!
//! The watch is the operating system's (inotify, FSEvents, ...) through `notify`: nothing is
//! walked on an invocation. Each change bumps a generation; an environment started before the
//! latest generation is retired instead of reused. Python's bytecode cache (`__pycache__`,
//! `.pyc`), which the runtime itself writes on import, is not a change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};
use parking_lot::Mutex;

use crate::function::LambdaFunction;

pub(crate) struct CodeWatch {
    state: Arc<State>,
    /// Kept for its lifetime: dropping it stops the watch.
    _watcher: Option<notify::RecommendedWatcher>,
}

#[derive(Default)]
struct State {
    generation: AtomicU64,
    last_change: Mutex<Option<Instant>>,
}

impl CodeWatch {
    /// A watch that never fires (watching is off).
    pub(crate) fn off() -> CodeWatch {
        CodeWatch { state: Arc::default(), _watcher: None }
    }

    /// Watches the task root (recursively) when the function has one, else the bootstrap file.
    /// A bootstrap outside the task root is an interpreter (`node`, the venv's `python`), not code.
    pub(crate) fn start(function: &LambdaFunction) -> CodeWatch {
        let (dir, mode, only): (PathBuf, RecursiveMode, Option<std::ffi::OsString>) = match &function.task_root {
            Some(root) => (root.clone(), RecursiveMode::Recursive, None),
            None => {
                let parent = function.bootstrap.parent().map(Path::to_path_buf).unwrap_or_default();
                // The directory, not the file: a rebuild replaces the file, which ends a watch on it.
                (parent, RecursiveMode::NonRecursive, function.bootstrap.file_name().map(|n| n.to_owned()))
            }
        };
        let state = Arc::new(State::default());
        let seen = state.clone();
        let name = function.name.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    tracing::debug!(function = %name, error = %e, "code watch error");
                    return;
                }
            };
            if !is_change(&event.kind) {
                return;
            }
            let relevant = event
                .paths
                .iter()
                .any(|p| only.as_ref().is_none_or(|f| p.file_name() == Some(f.as_os_str())) && !is_bytecode(p));
            if relevant {
                seen.generation.fetch_add(1, Ordering::SeqCst);
                *seen.last_change.lock() = Some(Instant::now());
                tracing::debug!(function = %name, paths = ?event.paths, "code changed");
            }
        };
        let watcher = notify::recommended_watcher(handler).and_then(|mut w| w.watch(&dir, mode).map(|()| w));
        match watcher {
            Ok(w) => CodeWatch { state, _watcher: Some(w) },
            Err(e) => {
                tracing::warn!(function = %function.name, dir = %dir.display(), error = %e,
                    "cannot watch the code for changes: restart the host to pick them up");
                CodeWatch { state, _watcher: None }
            }
        }
    }

    pub(crate) fn generation(&self) -> u64 {
        self.state.generation.load(Ordering::SeqCst)
    }

    /// Waits until the code has had no change for `settle`, so that a save or a build in
    /// progress is not started half-written. Returns at once when nothing changed lately.
    pub(crate) async fn settled(&self, settle: Duration) {
        loop {
            let Some(last) = *self.state.last_change.lock() else { return };
            let quiet = last.elapsed();
            if quiet >= settle {
                return;
            }
            tokio::time::sleep(settle - quiet).await;
        }
    }
}

fn is_change(kind: &EventKind) -> bool {
    use notify::event::{MetadataKind, ModifyKind};
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

fn is_bytecode(path: &Path) -> bool {
    path.components().any(|c| c.as_os_str() == "__pycache__") || path.extension().is_some_and(|e| e == "pyc")
}
