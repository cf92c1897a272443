//! Paths for tests that need the directory not to exist yet (a store creates its own, with its
//! own permissions), which `tempfile::TempDir` cannot give; and the one cache of the tools the
//! tests install ([`tools_dir`]).

use std::path::{Path, PathBuf};

/// A fresh path under the system temp dir (not created), removed with all below it when
/// dropped.
pub struct TempPath(PathBuf);

impl TempPath {
    /// `<temp dir>/<prefix>-<unique>`.
    pub fn new(prefix: &str) -> Self {
        Self(std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple())))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where the tests keep the tools they install (Python venvs, npm packages, DynamoDB Local), so
/// that only the first run fetches them: `DW_TOOLS_DIR`, else `dw-tools` in the system temp dir.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("DW_TOOLS_DIR").map(PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("dw-tools"))
}
