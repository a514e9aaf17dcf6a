//! Finding the control-plane binaries: an explicit folder, else `ENVTEST_BIN_DIR`, else the
//! folder `scripts/build-control-plane.sh` prints (it builds them from their Go modules the
//! first time and reuses its cache afterwards).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context as _, Result, bail};
use tokio::sync::OnceCell;

/// Environment variable naming a folder with `etcd` and `kube-apiserver`.
pub const BIN_DIR_ENV: &str = "ENVTEST_BIN_DIR";

/// The programs a control plane runs.
const REQUIRED: [&str; 2] = ["etcd", "kube-apiserver"];

/// The build script's answer, asked once per process: it is quick when the cache is warm, but
/// it still runs `go list`.
static BUILT: OnceCell<PathBuf> = OnceCell::const_new();

/// The folder holding the binaries; see the module docs for the order of the sources.
pub(crate) async fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    let dir = match (explicit, std::env::var_os(BIN_DIR_ENV)) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, Some(dir)) => PathBuf::from(dir),
        (None, None) => BUILT.get_or_try_init(build).await?.clone(),
    };
    for program in REQUIRED {
        if !dir.join(program).is_file() {
            bail!("{} has no {program}", dir.display());
        }
    }
    Ok(dir)
}

/// Runs the build script. Its progress (stderr) goes to our stderr, so a cold build of
/// several minutes shows what it is doing.
///
/// Holds a file lock meanwhile: two test binaries (or a test and the load test) starting on a
/// machine without the cache would otherwise both build into the same staging folder.
async fn build() -> Result<PathBuf> {
    let lock_path = crate::workspace_root().join("target/envtest-bin.lock");
    let _lock = tokio::task::spawn_blocking(move || -> Result<File> {
        if let Some(parent) = lock_path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let lock = File::create(&lock_path)
            .with_context(|| format!("creating {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
        Ok(lock)
    })
    .await??;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-control-plane.sh");
    let output = tokio::process::Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!("{} failed ({})", script.display(), output.status);
    }
    let stdout = String::from_utf8(output.stdout).context("the build script printed non-UTF-8")?;
    let dir = stdout.lines().last().unwrap_or_default().trim();
    if dir.is_empty() {
        bail!("{} printed no folder", script.display());
    }
    Ok(PathBuf::from(dir))
}
