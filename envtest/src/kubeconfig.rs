//! The kubeconfig of a control plane, and the kube-rs client configuration built from it. The
//! clients of this package are built from the very kubeconfig it writes, so that file is
//! exercised by every test, not only by the tools that read it later.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::{Context as _, Result};
use base64::Engine as _;
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};

use crate::credentials::{ADMIN_USER, UNPRIVILEGED_USER};

/// Name of the cluster and of the admin context; the unprivileged context is named after its
/// user.
pub(crate) const CONTEXT: &str = "envtest";

/// A kubeconfig for `server` that trusts `ca_pem`, with an admin context (current) and an
/// unprivileged one.
pub(crate) fn render(
    server: &str,
    ca_pem: &[u8],
    admin_token: &str,
    unprivileged_token: &str,
) -> Result<String> {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let context = |name: &str, user: &str| {
        serde_json::json!({
            "name": name,
            "context": {"cluster": CONTEXT, "user": user, "namespace": "default"},
        })
    };
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": CONTEXT,
            "cluster": {"server": server, "certificate-authority-data": ca},
        }],
        "users": [
            {"name": ADMIN_USER, "user": {"token": admin_token}},
            {"name": UNPRIVILEGED_USER, "user": {"token": unprivileged_token}},
        ],
        "contexts": [context(CONTEXT, ADMIN_USER), context(UNPRIVILEGED_USER, UNPRIVILEGED_USER)],
        "current-context": CONTEXT,
    });
    Ok(serde_yaml::to_string(&kubeconfig)?)
}

/// The client configuration of the kubeconfig's current (admin) context.
pub(crate) async fn admin_config(kubeconfig: &str) -> Result<kube::Config> {
    let kubeconfig = Kubeconfig::from_yaml(kubeconfig).context("parsing the kubeconfig")?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("loading the kubeconfig")
}

/// `config` authenticating with `token` instead.
pub(crate) fn with_token(config: &kube::Config, token: &str) -> Result<kube::Config> {
    let mut config = config.clone();
    // AuthInfo keeps the token as a secrecy::SecretString; deserializing avoids a direct
    // dependency on that crate for one constructor.
    config.auth_info = serde_json::from_value::<AuthInfo>(serde_json::json!({ "token": token }))?;
    Ok(config)
}

/// Writes `contents` to `path` readable by the owner only (it holds tokens), atomically: a
/// reader polling for the file never sees half of it.
pub(crate) fn write(path: &Path, contents: &str) -> Result<()> {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut staging = path.as_os_str().to_owned();
    staging.push(".tmp");
    let staging = std::path::PathBuf::from(staging);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&staging)
        .with_context(|| format!("writing {}", staging.display()))?;
    file.write_all(contents.as_bytes())?;
    std::fs::rename(&staging, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
