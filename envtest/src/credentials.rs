//! Who may talk to the control plane: a static token file with an admin (in `system:masters`,
//! which RBAC lets do anything) and an unprivileged user (authenticated, bound to nothing), and
//! the key pair kube-apiserver signs service-account tokens with.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

/// User name of the admin token (group `system:masters`).
pub const ADMIN_USER: &str = "envtest-admin";

/// User name of the unprivileged token: authenticated (`system:authenticated`), and allowed
/// nothing beyond what RBAC grants every authenticated user (discovery, self reviews).
pub const UNPRIVILEGED_USER: &str = "envtest-unprivileged";

/// The bearer tokens, and the files kube-apiserver reads.
#[derive(Debug)]
pub(crate) struct Credentials {
    pub(crate) admin_token: String,
    pub(crate) unprivileged_token: String,
    /// `--token-auth-file`.
    pub(crate) token_file: PathBuf,
    /// `--service-account-signing-key-file` (private key, PKCS#8 PEM).
    pub(crate) service_account_key: PathBuf,
    /// `--service-account-key-file` (public key, PEM).
    pub(crate) service_account_public_key: PathBuf,
}

impl Credentials {
    /// Generates fresh tokens and a service-account key pair and writes them into `dir`.
    ///
    /// The key is ECDSA P-256, not RSA: kube-apiserver signs service-account tokens with either
    /// (ES256 / RS256), and the pure-Rust crypto already in the build (rcgen on ring) can
    /// generate EC keys but not RSA keys.
    pub(crate) fn generate(dir: &Path) -> Result<Self> {
        let admin_token = random_token()?;
        let unprivileged_token = random_token()?;
        let token_file = dir.join("tokens.csv");
        // token,user,uid,"group1,group2"
        std::fs::write(
            &token_file,
            format!(
                "{admin_token},{ADMIN_USER},{ADMIN_USER},\"system:masters\"\n\
                 {unprivileged_token},{UNPRIVILEGED_USER},{UNPRIVILEGED_USER}\n"
            ),
        )?;
        let key = rcgen::KeyPair::generate().context("generating the service-account key")?;
        let service_account_key = dir.join("service-account.key");
        let service_account_public_key = dir.join("service-account.pub");
        std::fs::write(&service_account_key, key.serialize_pem())?;
        std::fs::write(&service_account_public_key, key.public_key_pem())?;
        Ok(Self {
            admin_token,
            unprivileged_token,
            token_file,
            service_account_key,
            service_account_public_key,
        })
    }
}

/// 32 random bytes from the kernel, hex-encoded.
fn random_token() -> Result<String> {
    let mut bytes = [0_u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        }))
}
