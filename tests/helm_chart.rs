//! The Helm chart in `deploy/helm/gateway`, proven on real software: `helm lint --strict`
//! (Helm built from its Go module by `envtest/scripts/build-helm.sh`), `helm template` with the
//! default values and with every optional feature on (`ci/full-values.yaml`), each rendering
//! applied with server-side dry-run to a real kube-apiserver (schema, admission, Pod Security
//! `restricted`: any warning fails), the rendered config file read by the gateway's own parser,
//! and the default rendering compared object by object with the kustomize base in `deploy/`,
//! so the two cannot drift apart unnoticed.
//!
//! The Prometheus Operator's CRDs are not available here, so the apiserver gets schema-less
//! stand-ins for ServiceMonitor and PrometheusRule: their dry-run proves group, version, kind,
//! name and namespace only; their contents are checked like `tests/deploy_manifests.rs` checks
//! the kustomize component's (promtool, and the selector and port against the Service).
//!
//! The chart's `crds/`, `files/` and `templates/spec-immutable-policy.yaml` hold copies of
//! `deploy/crds/`, `deploy/monitoring/` and `deploy/policy/` files (Helm reads nothing outside
//! the chart); `scripts/update-golden.sh` refreshes them.
//!
//! Needs `HELM_BIN`: `export HELM_BIN="$(bash envtest/scripts/build-helm.sh)"` (`.ci/run`
//! does it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod observe_support;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use gateway::config::Config;
use gateway_envtest::{ControlPlane, Options};
use observe_support::{deploy_dir, kind_name, one, run, yaml_documents};
use serde_yaml::{Mapping, Value};

/// Environment variable naming the helm binary.
const HELM_ENV: &str = "HELM_BIN";

/// Labels the chart adds to the kustomize base's (Helm's standard ones), and the one the base
/// adds everywhere through its `labels:` transformer and the chart only to its own objects.
const CHART_ONLY_LABELS: [&str; 5] = [
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
    "app.kubernetes.io/part-of",
];

/// What the default rendering holds: the base's kinds but the Namespace (values-gated).
const DEFAULT_KINDS: [&str; 13] = [
    "ClusterRole",
    "ClusterRoleBinding",
    "ConfigMap",
    "CustomResourceDefinition",
    "Deployment",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "Role",
    "RoleBinding",
    "Service",
    "ServiceAccount",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
];

/// The chart copies these files of `deploy/` (chart path, deploy path).
const COPIES: [(&str, &str); 4] = [
    (
        "crds/remediationrequests.yaml",
        "crds/remediationrequests.yaml",
    ),
    (
        "templates/spec-immutable-policy.yaml",
        "policy/spec-immutable.yaml",
    ),
    ("files/rules.yaml", "monitoring/rules.yaml"),
    ("files/dashboard.json", "monitoring/dashboard.json"),
];

/// Schema-less stand-ins for the Prometheus Operator's CRDs (see the module docs).
const OPERATOR_STAND_INS: &str = "\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: prometheusrules.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: PrometheusRule, listKind: PrometheusRuleList, plural: prometheusrules, singular: prometheusrule}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
";

fn chart_dir() -> PathBuf {
    deploy_dir().join("helm/gateway")
}

fn full_values() -> PathBuf {
    chart_dir().join("ci/full-values.yaml")
}

/// The helm binary `HELM_BIN` names.
fn helm_bin() -> PathBuf {
    let path = std::env::var_os(HELM_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "{HELM_ENV} is not set: build helm from its Go module and export its path with \
             `export {HELM_ENV}=\"$(bash envtest/scripts/build-helm.sh)\"` (.ci/run does this)"
            )
        });
    assert!(
        path.is_file(),
        "{HELM_ENV}={} is not a file; rebuild it with envtest/scripts/build-helm.sh",
        path.display()
    );
    path
}

/// `helm <args>` with its config, cache and data folders in a temporary directory of this
/// process, so nothing of the user's Helm set-up takes part. Returns (success, stdout, stderr).
fn helm(args: &[&str]) -> (bool, String, String) {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    let home = HOME.get_or_init(|| tempfile::tempdir().unwrap()).path();
    let mut command = Command::new(helm_bin());
    command
        .args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"));
    run(command, None, Duration::from_secs(120))
}

/// `helm template <release> <chart> --namespace <namespace> --include-crds <extra>`; panics
/// on failure or on anything written to stderr (warnings).
fn render(release: &str, namespace: &str, extra: &[&str]) -> Vec<Value> {
    let chart = chart_dir();
    let mut args = vec![
        "template",
        release,
        chart.to_str().unwrap(),
        "--namespace",
        namespace,
        "--include-crds",
    ];
    args.extend_from_slice(extra);
    let (ok, out, err) = helm(&args);
    assert!(ok, "helm {args:?} failed:\n{err}");
    assert!(err.trim().is_empty(), "helm {args:?} warned:\n{err}");
    yaml_documents(&out)
}

fn render_default(namespace: &str) -> Vec<Value> {
    render("gateway", namespace, &[])
}

fn render_full(namespace: &str) -> Vec<Value> {
    render("edge", namespace, &["-f", full_values().to_str().unwrap()])
}

/// One control plane for this binary's tests, with the operator stand-ins and without the
/// gateway's CRD (the chart's own is dry-run created).
async fn control_plane() -> &'static ControlPlane {
    static PLANE: tokio::sync::OnceCell<ControlPlane> = tokio::sync::OnceCell::const_new();
    PLANE
        .get_or_init(|| async {
            let stand_ins = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(stand_ins.path(), OPERATOR_STAND_INS).unwrap();
            ControlPlane::start(Options {
                crds: vec![stand_ins.path().to_path_buf()],
                ..Options::default()
            })
            .await
            .unwrap()
        })
        .await
}

fn kubectl(plane: &ControlPlane) -> PathBuf {
    let kubectl = plane.bin_dir().join("kubectl");
    assert!(
        kubectl.is_file(),
        "{} has no kubectl (built by envtest/scripts/build-control-plane.sh)",
        plane.bin_dir().display()
    );
    kubectl
}

fn render_base(plane: &ControlPlane) -> Vec<Value> {
    yaml_documents(&observe_support::kustomize(&kubectl(plane), &deploy_dir()))
}

/// `kubectl apply --server-side [--dry-run=server]` of `objects` as the admin; panics on
/// failure, on any warning, and unless every object was accepted.
fn apply(plane: &ControlPlane, objects: &[&Value], dry_run: bool) {
    let mut command = Command::new(kubectl(plane));
    command
        .arg("--kubeconfig")
        .arg(plane.kubeconfig_path())
        .args(["apply", "--server-side", "--field-manager=helm-chart-test"])
        .args(if dry_run {
            &["--dry-run=server"][..]
        } else {
            &[]
        })
        .args(["-f", "-"]);
    let stream = objects
        .iter()
        .map(|o| serde_yaml::to_string(o).unwrap())
        .collect::<Vec<_>>()
        .join("---\n");
    let (ok, out, err) = run(command, Some(&stream), Duration::from_secs(120));
    assert!(
        ok,
        "kubectl apply (dry run: {dry_run}) failed:\n{out}\n{err}"
    );
    // Warnings are where the apiserver reports Pod Security violations of the pod template
    // (the namespaces enforce `restricted`) and deprecated fields.
    assert!(
        !err.contains("Warning"),
        "the apiserver warned (dry run: {dry_run}):\n{err}"
    );
    let suffix = if dry_run {
        "serverside-applied (server dry run)"
    } else {
        "serverside-applied"
    };
    for object in objects {
        let kind = object["kind"].as_str().unwrap().to_lowercase();
        let name = object["metadata"]["name"].as_str().unwrap();
        let accepted = out.lines().any(|l| {
            l.ends_with(suffix) && l.starts_with(&kind) && l.contains(&format!("/{name} "))
        });
        assert!(
            accepted,
            "{} was not accepted; kubectl said:\n{out}",
            kind_name(object)
        );
    }
}

/// A namespace enforcing Pod Security `restricted`, created for real (dry runs of namespaced
/// objects need it to exist).
fn create_namespace(plane: &ControlPlane, name: &str) {
    let namespace: Value = serde_yaml::from_str(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    \
         pod-security.kubernetes.io/enforce: restricted\n"
    ))
    .unwrap();
    apply(plane, &[&namespace], false);
}

fn kinds(objects: &[Value]) -> BTreeSet<&str> {
    objects.iter().filter_map(|o| o["kind"].as_str()).collect()
}

/// The object `kind/name`.
fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in the rendering"))
}

fn container(objects: &[Value]) -> &Value {
    let containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .unwrap();
    assert_eq!(containers.len(), 1);
    &containers[0]
}

/// (name, port) of the container's ports.
fn container_ports(objects: &[Value]) -> BTreeMap<String, u64> {
    container(objects)["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// (name, port, targetPort) of the Service's ports.
fn service_ports(objects: &[Value]) -> Vec<(String, u64, String)> {
    one(objects, "Service")["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["port"].as_u64().unwrap(),
                p["targetPort"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The config file of the ConfigMap the Deployment mounts, parsed and validated by the
/// gateway as `gateway --config` does.
fn mounted_config(objects: &[Value]) -> Config {
    let pod = &one(objects, "Deployment")["spec"]["template"]["spec"];
    let args: Vec<&str> = container(objects)["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args, ["--config", "/etc/gateway/config.yaml"]);
    let mount = container(objects)["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/etc/gateway")
        .expect("a volume mounted at /etc/gateway");
    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    let name = volume["configMap"]["name"].as_str().unwrap();
    let text = named(objects, "ConfigMap", name)["data"]["config.yaml"]
        .as_str()
        .unwrap();
    let config =
        Config::from_yaml(text).unwrap_or_else(|e| panic!("the gateway refuses {text}: {e}"));
    config.validate().unwrap();
    config
}

/// Drops from `value`, at any depth, the labels in [`CHART_ONLY_LABELS`] and the config
/// checksum annotation, and writes whole floats as integers (kustomize prints the CRD's
/// `minimum: 1.0` as `1`).
fn strip_chart_only(value: &mut Value) {
    match value {
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) && n.is_f64() => {
            *value = Value::from(n.as_f64().unwrap() as i64);
        }
        Value::Mapping(map) => {
            for key in CHART_ONLY_LABELS.iter().chain(&["checksum/config"]) {
                map.remove(*key);
            }
            map.retain(|_, v| !matches!(v, Value::Mapping(m) if m.is_empty()));
            for (_, v) in map.iter_mut() {
                strip_chart_only(v);
            }
            map.retain(|_, v| !matches!(v, Value::Mapping(m) if m.is_empty()));
        }
        Value::Sequence(items) => items.iter_mut().for_each(strip_chart_only),
        _ => {}
    }
}

/// The Role's rules.
fn rules(objects: &[Value]) -> &Value {
    &one(objects, "Role")["rules"]
}

#[test]
fn helm_lint_is_clean_with_default_and_full_values() {
    let chart = chart_dir();
    let full = full_values();
    for extra in [&[][..], &["-f", full.to_str().unwrap()][..]] {
        let mut args = vec!["lint", "--strict", chart.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (ok, out, err) = helm(&args);
        assert!(ok, "helm {args:?}:\n{out}\n{err}");
        assert!(
            out.contains("0 chart(s) failed") && !out.contains("[WARNING]"),
            "helm {args:?}:\n{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_rendering_passes_a_server_side_dry_run() {
    let plane = control_plane().await;
    let objects = render_default("helm-default");
    assert_eq!(kinds(&objects), DEFAULT_KINDS.into_iter().collect());
    create_namespace(plane, "helm-default");
    apply(plane, &objects.iter().collect::<Vec<_>>(), true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_rendering_passes_a_server_side_dry_run() {
    let plane = control_plane().await;
    let objects = render_full("helm-full");
    let mut expected: BTreeSet<&str> = DEFAULT_KINDS.into_iter().collect();
    expected.extend(["Namespace", "PrometheusRule", "ServiceMonitor"]);
    assert_eq!(kinds(&objects), expected);
    // The chart's own Namespace (Pod Security `restricted`) first, for real; the RRs'
    // namespace (config.kubernetes.namespace) is the operator's to create.
    let namespace = one(&objects, "Namespace");
    assert_eq!(namespace["metadata"]["name"], "helm-full");
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    apply(plane, &[namespace], false);
    create_namespace(plane, "helm-full-rrs");
    let rest: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] != "Namespace")
        .collect();
    apply(plane, &rest, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_rendering_is_the_kustomize_base() {
    let plane = control_plane().await;
    let base = render_base(plane);
    let chart = render(
        "gateway",
        "remediation",
        &["--set", "namespace.create=true"],
    );

    // The two promises made by name: the same RBAC rules, the same ports.
    assert_eq!(rules(&chart), rules(&base), "Role rules");
    assert_eq!(
        one(&chart, "RoleBinding")["subjects"],
        one(&base, "RoleBinding")["subjects"]
    );
    assert_eq!(container_ports(&chart), container_ports(&base));
    assert_eq!(service_ports(&chart), service_ports(&base));
    // The same configuration: the base's file sets a few keys, the chart's every one.
    assert_eq!(mounted_config(&chart), mounted_config(&base));
    assert_eq!(mounted_config(&chart), Config::default());

    // And every object alike but for Helm's labels, the config checksum (the base hashes
    // the ConfigMap's name instead) and the ConfigMap's name and text (compared above).
    let normalise = |objects: &[Value]| -> BTreeMap<String, Value> {
        objects
            .iter()
            .map(|object| {
                let mut object = object.clone();
                strip_chart_only(&mut object);
                if object["kind"] == "ConfigMap" {
                    // The base's generated map carries only the `labels:` transformer's label.
                    let metadata = object["metadata"].as_mapping_mut().unwrap();
                    metadata.remove("labels");
                    metadata.insert("name".into(), "<config>".into());
                    object.as_mapping_mut().unwrap().remove("data");
                }
                if object["kind"] == "Deployment" {
                    let volumes = &mut object["spec"]["template"]["spec"]["volumes"];
                    for volume in volumes.as_sequence_mut().unwrap() {
                        if let Some(config_map) = volume.get_mut("configMap") {
                            config_map["name"] = "<config>".into();
                        }
                    }
                }
                // kustomize's built-in schema does not know the admission policy kinds are
                // cluster-scoped and gives them the base's namespace; kubectl (through
                // discovery) and the apiserver ignore it.
                if object["kind"]
                    .as_str()
                    .is_some_and(|kind| kind.starts_with("ValidatingAdmissionPolicy"))
                {
                    object["metadata"]
                        .as_mapping_mut()
                        .unwrap()
                        .remove("namespace");
                }
                let key = format!(
                    "{}/{}",
                    kind_name(&object),
                    object["metadata"]["namespace"].as_str().unwrap_or("")
                );
                (key, object)
            })
            .collect()
    };
    let (chart, base) = (normalise(&chart), normalise(&base));
    assert_eq!(
        chart.keys().collect::<Vec<_>>(),
        base.keys().collect::<Vec<_>>(),
        "the same objects"
    );
    for (key, object) in &chart {
        assert!(
            object == &base[key],
            "{key} differs.\nchart:\n{}\nkustomize base:\n{}",
            serde_yaml::to_string(object).unwrap(),
            serde_yaml::to_string(&base[key]).unwrap()
        );
    }
}

/// The dotted keys of `deploy/config.example.yaml`, the commented-out ones included (they
/// document keys whose default is "unset").
fn example_keys() -> BTreeSet<String> {
    let text = std::fs::read_to_string(deploy_dir().join("config.example.yaml")).unwrap();
    let key = |text: &str| -> Option<String> {
        let (key, _) = text.split_once(':')?;
        (!key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .then(|| key.to_owned())
    };
    let mut section = None;
    let mut keys = BTreeSet::new();
    for line in text.lines() {
        if let Some(name) = line.ends_with(':').then(|| key(line)).flatten() {
            section = Some(name);
        } else if let (Some(section), Some(rest)) = (&section, line.strip_prefix("  "))
            && let Some(name) = key(rest.trim_start_matches("# "))
        {
            keys.insert(format!("{section}.{name}"));
        }
    }
    keys
}

/// The `config` block of the chart's values.yaml and of ci/full-values.yaml.
fn values_config(path: &Path) -> Mapping {
    let values: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    values["config"].as_mapping().unwrap().clone()
}

fn dotted_keys(config: &Mapping) -> BTreeSet<String> {
    config
        .iter()
        .flat_map(|(section, keys)| {
            keys.as_mapping()
                .unwrap()
                .keys()
                .map(move |key| format!("{}.{}", section.as_str().unwrap(), key.as_str().unwrap()))
        })
        .collect()
}

#[test]
fn every_config_key_is_a_value_that_reaches_the_gateway() {
    let example = example_keys();
    assert!(example.len() >= 20, "read only {example:?}");
    let defaults = values_config(&chart_dir().join("values.yaml"));
    assert_eq!(dotted_keys(&defaults), example, "values.yaml `config` keys");
    let full = values_config(&full_values());
    assert_eq!(
        dotted_keys(&full),
        example,
        "ci/full-values.yaml `config` keys"
    );

    // The default values are the gateway's defaults, and the full values' config is rendered
    // into exactly the file those values describe.
    // As the chart renders them: an empty namespace or kubeconfig is left out (unset).
    let parse = |mapping: &Mapping| {
        let mut mapping = mapping.clone();
        for (_, keys) in mapping.iter_mut() {
            keys.as_mapping_mut().unwrap().retain(|_, v| v != "");
        }
        let config = Config::from_yaml(&serde_yaml::to_string(&mapping).unwrap()).unwrap();
        config.validate().unwrap();
        config
    };
    assert_eq!(parse(&defaults), Config::default());
    let rendered = mounted_config(&render_full("helm-full"));
    assert_eq!(rendered, parse(&full));

    // Each of the full values moves its key away from the default on its own, so each one is
    // proven to reach the parser (a key the chart dropped or renamed would not).
    for (section, keys) in &full {
        for (key, value) in keys.as_mapping().unwrap() {
            let mut single = Mapping::new();
            single.insert(
                section.clone(),
                Value::Mapping([(key.clone(), value.clone())].into_iter().collect()),
            );
            let config = Config::from_yaml(&serde_yaml::to_string(&single).unwrap())
                .unwrap_or_else(|e| panic!("{section:?}.{key:?}: {e}"));
            assert_ne!(
                config,
                Config::default(),
                "{section:?}.{key:?} = {value:?} is the default"
            );
        }
    }
    assert_eq!(
        rendered.kubernetes.namespace.as_deref(),
        Some("helm-full-rrs")
    );
}

#[test]
fn the_full_rendering_wires_every_optional_feature() {
    let objects = render_full("helm-full");
    let config = mounted_config(&objects);
    let deployment = one(&objects, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let selector = &deployment["spec"]["selector"]["matchLabels"];

    // The container's ports are the config's listen ports; the Service reaches them by name.
    let ports = container_ports(&objects);
    assert_eq!(ports["api"], u64::from(config.api.listen.port()));
    assert_eq!(ports["health"], u64::from(config.api.health_listen.port()));
    assert_eq!(
        ports["metrics"],
        u64::from(config.api.metrics_listen.port())
    );
    // The full values turn the ring off: no peer port (the default rendering, the base, has
    // it). The ring's address and Lease name come from the pod itself either way.
    assert!(!config.cluster.enabled);
    assert!(!ports.contains_key("peer"), "{ports:?}");
    let env: Vec<(String, String)> = container(&objects)["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|e| {
            let path = e["valueFrom"]["fieldRef"]["fieldPath"].as_str()?;
            Some((e["name"].as_str()?.to_owned(), path.to_owned()))
        })
        .collect();
    assert_eq!(
        env,
        [
            ("POD_IP".to_owned(), "status.podIP".to_owned()),
            ("POD_NAME".to_owned(), "metadata.name".to_owned())
        ]
    );
    assert_eq!(
        service_ports(&objects),
        [
            ("api".to_owned(), 80, "api".to_owned()),
            ("metrics".to_owned(), 9091, "metrics".to_owned())
        ]
    );
    // The drain fits in the grace period.
    let pre_stop = container(&objects)["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap();
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(pre_stop + config.api.shutdown_grace.as_secs() < grace);

    // Replicas and hard anti-affinity between them.
    assert_eq!(deployment["spec"]["replicas"], 4);
    let anti =
        &pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
    assert_eq!(anti[0]["labelSelector"]["matchLabels"], *selector);
    assert_eq!(anti[0]["topologyKey"], "kubernetes.io/hostname");

    // Security context, whatever else is switched on.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let security = &container(&objects)["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"][0], "ALL");

    // TLS: the Secret mounted read-only at the documented path.
    let mount = container(&objects)["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "tls")
        .expect("a tls mount");
    assert_eq!(mount["mountPath"], "/etc/gateway-tls");
    assert_eq!(mount["readOnly"], true);
    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tls")
        .unwrap();
    assert_eq!(volume["secret"]["secretName"], "gateway-tls");

    // RBAC: the base's rules, in the controller namespace, bound to the pods' identity.
    let role = named(&objects, "Role", "edge-gateway");
    assert_eq!(role["metadata"]["namespace"], "helm-full-rrs");
    // With kubernetes.managed_fields: keep, the gateway never patches an RR itself.
    let rr_verbs: Vec<&str> = role["rules"][0]["verbs"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(rr_verbs, ["get", "list", "watch", "create"]);
    let binding = named(&objects, "RoleBinding", "edge-gateway");
    assert_eq!(binding["metadata"]["namespace"], "helm-full-rrs");
    assert_eq!(binding["subjects"][0]["name"], pod["serviceAccountName"]);
    assert_eq!(binding["subjects"][0]["namespace"], "helm-full");
    // The owner cache with config.owners.namespaces: a Role in each listed namespace (the
    // workload rules of the base's ClusterRole but namespaces), and the listed namespaces'
    // own metadata for the scope rule, by name.
    let owner_roles: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "Role" && o["metadata"]["name"] == "edge-gateway-owner-cache")
        .collect();
    let in_namespaces: BTreeSet<&str> = owner_roles
        .iter()
        .map(|r| r["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(in_namespaces, ["helm-full", "helm-full-rrs"].into());
    let base_cluster_role = observe_support::yaml_documents(
        &std::fs::read_to_string(deploy_dir().join("rbac.yaml")).unwrap(),
    )
    .into_iter()
    .find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == "gateway-owner-cache")
    .unwrap();
    let mut workload_rules = base_cluster_role["rules"].clone();
    workload_rules[0]["resources"] = serde_yaml::from_str("[pods]").unwrap();
    for role in &owner_roles {
        assert_eq!(role["rules"], workload_rules);
    }
    let namespaces = named(
        &objects,
        "ClusterRole",
        "edge-gateway-owner-cache-namespaces",
    );
    assert_eq!(
        namespaces["rules"][0]["resourceNames"],
        serde_yaml::from_str::<Value>("[helm-full-rrs, helm-full]").unwrap()
    );
    assert_eq!(
        named(
            &objects,
            "ClusterRoleBinding",
            "edge-gateway-owner-cache-namespaces"
        )["subjects"][0]["name"],
        pod["serviceAccountName"]
    );

    // NetworkPolicy: the gateway's pods; every port it opens is a container port.
    let policy = one(&objects, "NetworkPolicy");
    assert_eq!(policy["spec"]["podSelector"]["matchLabels"], *selector);
    let opened: BTreeSet<&str> = policy["spec"]["ingress"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|rule| rule["ports"].as_sequence().unwrap())
        .map(|p| p["port"].as_str().unwrap())
        .collect();
    assert_eq!(opened, ["api", "health", "metrics"].into());
    assert_eq!(policy["spec"]["policyTypes"][1], "Egress");

    // PodDisruptionBudget: the same pods.
    let pdb = one(&objects, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["selector"]["matchLabels"], *selector);
    assert_eq!(pdb["spec"]["maxUnavailable"], 2);

    // ServiceMonitor: selects the Service, scrapes its metrics port, and names the job
    // `gateway` (what the rules and the dashboard expect) from a label the Service carries.
    let monitor = one(&objects, "ServiceMonitor");
    let service = one(&objects, "Service");
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .unwrap()
    {
        assert_eq!(
            service["metadata"]["labels"][key], *value,
            "selector {key:?}"
        );
    }
    let job_label = monitor["spec"]["jobLabel"].as_str().unwrap();
    assert_eq!(service["metadata"]["labels"][job_label], "gateway");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "metrics");
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    for key in ["interval", "scrapeTimeout"] {
        gateway::config::duration::parse(endpoint[key].as_str().unwrap()).unwrap();
    }

    // PrometheusRule: rules.yaml's groups, accepted by promtool.
    let rule = one(&objects, "PrometheusRule");
    let rules_file: Value = serde_yaml::from_str(
        &std::fs::read_to_string(deploy_dir().join("monitoring/rules.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(rule["spec"]["groups"], rules_file["groups"]);
    let extracted = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        extracted.path(),
        serde_yaml::to_string(&rule["spec"]).unwrap(),
    )
    .unwrap();
    let mut promtool = Command::new(observe_support::promtool_bin());
    promtool.args(["check", "rules"]).arg(extracted.path());
    let (ok, out, err) = run(promtool, None, Duration::from_secs(60));
    assert!(ok, "promtool check rules (PrometheusRule spec): {out}{err}");

    // Dashboard: dashboard.json as is, labelled for the Grafana sidecar.
    let dashboard = named(&objects, "ConfigMap", "edge-gateway-dashboard");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        dashboard["data"]["gateway.json"].as_str().unwrap(),
        std::fs::read_to_string(deploy_dir().join("monitoring/dashboard.json")).unwrap()
    );
}

#[test]
fn the_chart_refuses_values_the_gateway_would_refuse() {
    let cases: [(&[&str], &str); 5] = [
        (
            &["--set", "config.api.bogus=1"],
            "additional properties 'bogus'",
        ),
        (
            &["--set", "config.storm.updates=fast"],
            "/config/storm/updates",
        ),
        (
            &["--set", "config.kubernetes.call_timeout=0"],
            "/config/kubernetes/call_timeout",
        ),
        (
            &["--set", "config.storm.history_size=3"],
            "config.storm.history_size must be at least config.storm.threshold",
        ),
        (
            &["--set", "config.api.shutdown_grace=31s"],
            "must be below terminationGracePeriodSeconds",
        ),
    ];
    let chart = chart_dir();
    for (extra, expected) in cases {
        let mut args = vec!["template", "gateway", chart.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (ok, _, err) = helm(&args);
        assert!(!ok, "helm {args:?} rendered");
        assert!(err.contains(expected), "helm {args:?}: {err}");
    }
}

/// The chart's copies of `deploy/` files are those files; `scripts/update-golden.sh` (that is,
/// `UPDATE_HELM=1`) rewrites them, never under CI.
#[test]
fn the_chart_copies_of_deploy_files_are_current() {
    let rewrite = std::env::var_os("UPDATE_HELM").is_some();
    assert!(
        !(rewrite && std::env::var_os("CI").is_some()),
        "UPDATE_HELM is set under CI: golden files are rewritten only by scripts/update-golden.sh"
    );
    for (copy, source) in COPIES {
        let source = std::fs::read(deploy_dir().join(source)).unwrap();
        let copy = chart_dir().join(copy);
        if rewrite {
            std::fs::write(&copy, &source).unwrap();
        }
        assert!(
            std::fs::read(&copy).unwrap_or_default() == source,
            "{} is not a copy of its deploy/ file; run scripts/update-golden.sh and commit it",
            copy.display()
        );
    }
}
