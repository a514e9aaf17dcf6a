//! Installing CustomResourceDefinitions, and the ValidatingAdmissionPolicies (with their
//! bindings) that go with them, from YAML files, and waiting until the CRDs are served.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::Deserialize as _;
use tokio::time::Instant;

/// Field manager of the server-side apply.
const FIELD_MANAGER: &str = "gateway-envtest";

/// How often a CRD's state is polled.
const POLL: Duration = Duration::from_millis(50);

/// What [`install`] installed.
#[derive(Debug, Default)]
pub(crate) struct Installed {
    /// Names of the CRDs.
    pub crds: Vec<String>,
    /// Resources (plurals) that an installed admission policy matches.
    pub policed: Vec<String>,
}

/// One document of an install file.
enum Document {
    Crd(Box<CustomResourceDefinition>),
    Policy(Box<ValidatingAdmissionPolicy>),
    Binding(Box<ValidatingAdmissionPolicyBinding>),
}

/// Applies every CRD, ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding in `paths`
/// (a file may hold several YAML documents), then waits until each CRD is `Established` and
/// its resources appear in discovery: a CRD can be Established a moment before its REST
/// endpoint answers, and a test that creates a resource right away would then get a 404.
/// (When a policy takes effect cannot be asked of the apiserver; see
/// `warm_up::spec_immutability`.)
pub(crate) async fn install(
    client: &kube::Client,
    paths: &[PathBuf],
    deadline: Instant,
) -> Result<Installed> {
    let crds_api = Api::<CustomResourceDefinition>::all(client.clone());
    let policies = Api::<ValidatingAdmissionPolicy>::all(client.clone());
    let bindings = Api::<ValidatingAdmissionPolicyBinding>::all(client.clone());
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let mut installed = Vec::new();
    let mut policed = Vec::new();
    for path in paths {
        for document in read(path)? {
            match document {
                Document::Crd(crd) => {
                    let name = crd.metadata.name.clone().unwrap_or_default();
                    crds_api
                        .patch(&name, &apply, &Patch::Apply(&*crd))
                        .await
                        .with_context(|| {
                            format!("installing CRD {name} from {}", path.display())
                        })?;
                    installed.push(*crd);
                }
                Document::Policy(policy) => {
                    let name = policy.metadata.name.clone().unwrap_or_default();
                    policies
                        .patch(&name, &apply, &Patch::Apply(&*policy))
                        .await
                        .with_context(|| {
                            format!("installing policy {name} from {}", path.display())
                        })?;
                    let rules = policy
                        .spec
                        .as_ref()
                        .and_then(|spec| spec.match_constraints.as_ref())
                        .and_then(|m| m.resource_rules.as_ref());
                    for rule in rules.into_iter().flatten() {
                        policed.extend(rule.resources.clone().unwrap_or_default());
                    }
                }
                Document::Binding(binding) => {
                    let name = binding.metadata.name.clone().unwrap_or_default();
                    bindings
                        .patch(&name, &apply, &Patch::Apply(&*binding))
                        .await
                        .with_context(|| {
                            format!("installing binding {name} from {}", path.display())
                        })?;
                }
            }
        }
    }
    for crd in &installed {
        wait_served(client, &crds_api, crd, deadline).await?;
    }
    Ok(Installed {
        crds: installed
            .into_iter()
            .filter_map(|crd| crd.metadata.name)
            .collect(),
        policed,
    })
}

/// The documents of one YAML file; empty documents are skipped, other kinds refused.
fn read(path: &Path) -> Result<Vec<Document>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(document)
            .with_context(|| format!("parsing {}", path.display()))?;
        if value.is_null() {
            continue;
        }
        let kind = value["kind"].as_str().unwrap_or_default().to_owned();
        let parse = || format!("{}: not a valid {kind}", path.display());
        documents.push(match kind.as_str() {
            "CustomResourceDefinition" => {
                Document::Crd(Box::new(serde_yaml::from_value(value).with_context(parse)?))
            }
            "ValidatingAdmissionPolicy" => {
                Document::Policy(Box::new(serde_yaml::from_value(value).with_context(parse)?))
            }
            "ValidatingAdmissionPolicyBinding" => {
                Document::Binding(Box::new(serde_yaml::from_value(value).with_context(parse)?))
            }
            other => bail!(
                "{}: kind {other:?} is not a CustomResourceDefinition or a ValidatingAdmissionPolicy(Binding)",
                path.display()
            ),
        });
    }
    Ok(documents)
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
