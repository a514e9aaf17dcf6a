//! The control plane's private directory: etcd's data, the serving certificate, the
//! service-account key, the token file, the kubeconfig and both logs.
//!
//! It is removed on drop. A process killed with `kill -9` cannot remove it, and neither can a
//! test binary whose control plane lives in a `static` (statics are never dropped), so each
//! directory holds a lock (`flock`, released by the kernel when its owner dies) and every new
//! control plane first sweeps the directories whose owner is gone. Left-overs therefore last
//! until the next start, which matters on tmpfs, where they occupy memory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use tempfile::TempDir;

/// Name prefix of every control-plane directory, so the sweep touches only ours.
const PREFIX: &str = "gateway-envtest-";

/// The lock file inside a directory.
const LOCK: &str = "owner.lock";

/// A directory without a lock file is either being created right now or was left by a crash
/// in the instant between creating it and locking it; only the second kind is this old.
const UNLOCKED_MIN_AGE: Duration = Duration::from_secs(60);

/// Where etcd's data (and with it the whole directory) lives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Storage {
    /// `/dev/shm` (memory; fast, and what tests want), or the temp dir where there is none.
    #[default]
    Tmpfs,
    /// The system temp dir (`TMPDIR`, else `/tmp`), for data that should survive memory
    /// pressure or be inspected after a run.
    Disk,
}

impl Storage {
    /// The directory under which control-plane directories are created.
    fn base(self) -> PathBuf {
        let shm = Path::new("/dev/shm");
        match self {
            Storage::Tmpfs if shm.is_dir() => shm.to_path_buf(),
            Storage::Tmpfs | Storage::Disk => std::env::temp_dir(),
        }
    }
}

/// A locked, self-removing control-plane directory.
#[derive(Debug)]
pub(crate) struct WorkDir {
    dir: TempDir,
    /// Held for the life of the directory; the kernel drops the lock when the process dies.
    _lock: File,
}

impl WorkDir {
    /// Sweeps abandoned directories under the storage's base, then creates and locks a new one.
    pub(crate) fn create(storage: Storage) -> Result<Self> {
        let base = storage.base();
        sweep(&base);
        let dir = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir_in(&base)
            .with_context(|| format!("creating a directory in {}", base.display()))?;
        let lock = File::create(dir.path().join(LOCK))?;
        lock.try_lock()
            .map_err(|error| anyhow::anyhow!("locking {}: {error}", dir.path().display()))?;
        Ok(Self { dir, _lock: lock })
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Removes the control-plane directories under `base` whose owner is gone. Best effort: a
/// directory that cannot be inspected or removed is left alone.
fn sweep(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(PREFIX));
        if !ours || !path.is_dir() {
            continue;
        }
        let abandoned = match File::open(path.join(LOCK)) {
            // Locking succeeds only if no live process holds the lock. We then hold it while
            // removing, so no other sweeper removes it at the same time.
            Ok(lock) => lock.try_lock().is_ok(),
            Err(_) => entry
                .metadata()
                .and_then(|meta| meta.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age > UNLOCKED_MIN_AGE),
        };
        if abandoned {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    tracing::debug!(path = %path.display(), "removed an abandoned control-plane directory")
                }
                Err(error) => {
                    tracing::debug!(path = %path.display(), %error, "could not remove an abandoned control-plane directory")
                }
            }
        }
    }
}
