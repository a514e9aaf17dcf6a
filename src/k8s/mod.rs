//! Everything that talks to Kubernetes, and the RR as it is stored there: the RR types, the
//! deduplication [`history::History`] kept in its status, the calls with deadlines behind the
//! [`store::RrStore`] trait, the circuit breaker, and client construction.

pub mod breaker;
pub mod history;
pub mod store;
pub mod types;

pub use types::{RemediationRequest, RemediationRequestSpec, RemediationRequestStatus};

/// Why no Kubernetes client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The kubeconfig file could not be read or used.
    #[error("kubeconfig {path}")]
    Kubeconfig {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// Neither in-cluster configuration nor a default kubeconfig was found.
    #[error(
        "no Kubernetes configuration (no in-cluster service account, no KUBECONFIG, no ~/.kube/config)"
    )]
    Infer(#[source] kube::config::InferConfigError),
    /// The client could not be built from the configuration.
    #[error("building the Kubernetes client")]
    Client(#[source] kube::Error),
}

/// Builds the client (from `kubeconfig`, else in-cluster, else `KUBECONFIG` /
/// `~/.kube/config`) and resolves the controller namespace (`namespace`, else the pod's or
/// kubeconfig context's namespace).
///
/// The client's own retries are off: on the request path a failed call becomes a 503 that
/// Alertmanager retries, and the watch has its own backoff.
pub async fn connect(
    kubeconfig: Option<&std::path::Path>,
    namespace: Option<&str>,
) -> Result<(kube::Client, String), ConnectError> {
    let mut kube_config = match kubeconfig {
        Some(path) => {
            let err = |source| ConnectError::Kubeconfig {
                path: path.to_owned(),
                source,
            };
            let file = kube::config::Kubeconfig::read_from(path).map_err(err)?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(err)?
        }
        None => kube::Config::infer().await.map_err(ConnectError::Infer)?,
    };
    kube_config.default_retry = false;
    let namespace = namespace.map_or_else(|| kube_config.default_namespace.clone(), str::to_owned);
    let client = kube::Client::try_from(kube_config).map_err(ConnectError::Client)?;
    Ok((client, namespace))
}
