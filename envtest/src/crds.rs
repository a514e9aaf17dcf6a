//! Installing CustomResourceDefinitions from YAML files and waiting until they are served.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::Deserialize as _;
use tokio::time::Instant;

/// Field manager of the server-side apply.
const FIELD_MANAGER: &str = "gateway-envtest";

/// How often a CRD's state is polled.
const POLL: Duration = Duration::from_millis(50);

/// Applies every CRD in `paths` (a file may hold several YAML documents), then waits until
/// each is `Established` and its resources appear in discovery: a CRD can be Established a
/// moment before its REST endpoint answers, and a test that creates a resource right away
/// would then get a 404. Returns the names of the CRDs installed.
pub(crate) async fn install(
    client: &kube::Client,
    paths: &[PathBuf],
    deadline: Instant,
) -> Result<Vec<String>> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let mut installed = Vec::new();
    for path in paths {
        for crd in read(path)? {
            let name = crd.metadata.name.clone().unwrap_or_default();
            api.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&crd),
            )
            .await
            .with_context(|| format!("installing CRD {name} from {}", path.display()))?;
            installed.push(crd);
        }
    }
    for crd in &installed {
        wait_served(client, &api, crd, deadline).await?;
    }
    Ok(installed
        .into_iter()
        .filter_map(|crd| crd.metadata.name)
        .collect())
}

/// The CRDs in one YAML file; empty documents are skipped.
fn read(path: &Path) -> Result<Vec<CustomResourceDefinition>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut crds = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(document)
            .with_context(|| format!("parsing {}", path.display()))?;
        if value.is_null() {
            continue;
        }
        crds.push(
            serde_yaml::from_value(value)
                .with_context(|| format!("{} is not a CustomResourceDefinition", path.display()))?,
        );
    }
    Ok(crds)
}

async fn wait_served(
    client: &kube::Client,
    api: &Api<CustomResourceDefinition>,
    crd: &CustomResourceDefinition,
    deadline: Instant,
) -> Result<()> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    loop {
        let current = api.get(&name).await?;
        if established(&current) && discoverable(client, &current).await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let conditions = current.status.and_then(|status| status.conditions);
            bail!("CRD {name} was not served in time; its conditions: {conditions:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

fn established(crd: &CustomResourceDefinition) -> bool {
    let conditions = crd
        .status
        .as_ref()
        .and_then(|status| status.conditions.as_ref());
    conditions.is_some_and(|conditions| {
        conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    })
}

/// Whether discovery lists the CRD's plural in every served version.
async fn discoverable(client: &kube::Client, crd: &CustomResourceDefinition) -> bool {
    for version in crd.spec.versions.iter().filter(|version| version.served) {
        let group_version = format!("{}/{}", crd.spec.group, version.name);
        let Ok(list) = client.list_api_group_resources(&group_version).await else {
            return false;
        };
        if !list
            .resources
            .iter()
            .any(|resource| resource.name == crd.spec.names.plural)
        {
            return false;
        }
    }
    true
}
