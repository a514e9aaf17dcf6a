//! The kustomize base under `deploy/` and its monitoring component, proven on real software:
//! rendered by `kubectl kustomize` (kubectl built from the same Kubernetes module as the
//! apiserver), every object of the base applied with server-side dry-run to a real
//! kube-apiserver (admission, validation and Pod Security included), the gateway's own config
//! parser run on the ConfigMap, and the Prometheus Operator objects — whose CRDs that apiserver
//! does not have — checked instead: the PrometheusRule's groups by `promtool check rules` and
//! by equality with `monitoring/rules.yaml`, the ServiceMonitor by matching its selector and
//! port against the rendered Service and Deployment.
//!
//! `scripts/update-golden.sh` (which runs the generating test with `UPDATE_DEPLOY=1`)
//! regenerates `monitoring/prometheusrule.yaml` from `monitoring/rules.yaml`; under CI (`CI`
//! set) the variable makes that test fail instead of rewriting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod observe_support;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use gateway_envtest::{ControlPlane, Options};
use observe_support::{Overlay, deploy_dir, kind_name, one, run, yaml_documents};
use serde_yaml::Value;

/// What the base must contain, no more, no less.
const BASE_KINDS: [&str; 14] = [
    "ClusterRole",
    "ClusterRoleBinding",
    "ConfigMap",
    "CustomResourceDefinition",
    "Deployment",
    "Namespace",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "Role",
    "RoleBinding",
    "Service",
    "ServiceAccount",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
];

/// One control plane for this binary's tests, without any CRD: the base's own CRD is
/// dry-run created. (Like `gateway_envtest::shared()`, but bare; its processes die with the
/// test process.)
async fn bare_control_plane() -> &'static ControlPlane {
    static PLANE: tokio::sync::OnceCell<ControlPlane> = tokio::sync::OnceCell::const_new();
    PLANE
        .get_or_init(|| async { ControlPlane::start(Options::default()).await.unwrap() })
        .await
}

fn kubectl(plane: &ControlPlane) -> std::path::PathBuf {
    let kubectl = plane.bin_dir().join("kubectl");
    assert!(
        kubectl.is_file(),
        "{} has no kubectl (built by envtest/scripts/build-control-plane.sh)",
        plane.bin_dir().display()
    );
    kubectl
}

fn render_base(plane: &ControlPlane) -> Vec<Value> {
    observe_support::yaml_documents(&observe_support::kustomize(&kubectl(plane), &deploy_dir()))
}

fn to_yaml(objects: &[&Value]) -> String {
    objects
        .iter()
        .map(|o| serde_yaml::to_string(o).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

/// `kubectl apply --server-side [--dry-run=server]` of `objects` as the admin.
fn apply(plane: &ControlPlane, objects: &[&Value], dry_run: bool) -> (String, String) {
    let mut command = Command::new(kubectl(plane));
    command
        .arg("--kubeconfig")
        .arg(plane.kubeconfig_path())
        .args(["apply", "--server-side", "--field-manager=deploy-test"])
        .args(if dry_run {
            &["--dry-run=server"][..]
        } else {
            &[]
        })
        .args(["-f", "-"]);
    let (ok, out, err) = run(command, Some(&to_yaml(objects)), Duration::from_secs(120));
    assert!(
        ok,
        "kubectl apply (dry run: {dry_run}) failed:\n{out}\n{err}"
    );
    (out, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_of_the_base_passes_a_server_side_dry_run() {
    let started = std::time::Instant::now();
    let plane = bare_control_plane().await;
    let objects = render_base(plane);
    let kinds: BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    assert_eq!(kinds, BASE_KINDS.into_iter().collect(), "kinds of the base");
    for object in &objects {
        let cluster_scoped = [
            "Namespace",
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "ClusterRole",
            "ClusterRoleBinding",
        ];
        if !cluster_scoped.iter().any(|kind| object["kind"] == *kind) {
            assert_eq!(
                object["metadata"]["namespace"],
                "remediation",
                "{} is in the controller namespace",
                kind_name(object)
            );
        }
    }

    // Namespaced objects can only be dry-run into a namespace that exists, so the base's own
    // Namespace is applied for real first (its Pod Security label then judges the Deployment).
    let namespace = one(&objects, "Namespace");
    apply(plane, &[namespace], false);
    let all: Vec<&Value> = objects.iter().collect();
    let (out, err) = apply(plane, &all, true);
    for object in &objects {
        let line = format!(
            "{} serverside-applied (server dry run)",
            kind_name(object).to_lowercase()
        );
        let kind = object["kind"].as_str().unwrap().to_lowercase();
        let accepted = out.lines().any(|l| {
            l.ends_with("serverside-applied (server dry run)")
                && l.starts_with(&kind)
                && l.contains(&format!(
                    "/{}",
                    object["metadata"]["name"].as_str().unwrap()
                ))
        });
        assert!(accepted, "no `{line}` in kubectl's output:\n{out}");
    }
    // Warnings are where the apiserver reports Pod Security violations of the Deployment's
    // pod template (the Namespace enforces `restricted`) and deprecated fields.
    assert!(
        !err.contains("Warning"),
        "the apiserver warned about the base:\n{err}"
    );
    // A dry run persists nothing.
    let (ok, out, _) = run(
        {
            let mut c = Command::new(kubectl(plane));
            c.arg("--kubeconfig").arg(plane.kubeconfig_path()).args([
                "get",
                "deployments,crd",
                "-A",
                "-o",
                "name",
            ]);
            c
        },
        None,
        Duration::from_secs(60),
    );
    assert!(ok && out.trim().is_empty(), "dry run persisted: {out}");
    eprintln!(
        "dry-run of {} objects: {:?}",
        objects.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_map_holds_a_valid_gateway_config_wired_to_the_deployment() {
    let plane = bare_control_plane().await;
    let objects = render_base(plane);
    let config_map = one(&objects, "ConfigMap");
    let config_text = config_map["data"]["config.yaml"].as_str().unwrap();
    // The gateway's own parser and validation, as `gateway --config` runs them.
    let config = gateway::config::Config::from_yaml(config_text).unwrap();
    config.validate().unwrap();
    assert_eq!(
        config.kubernetes.namespace, None,
        "RRs live in the pod's own namespace, the one the Role grants"
    );

    let deployment = one(&objects, "Deployment");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 3);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "gateway");
    let containers = pod["containers"].as_sequence().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let port = |name: &str| {
        container["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port {name}"))
    };
    assert_eq!(port("api"), u64::from(config.api.listen.port()));
    assert_eq!(port("health"), u64::from(config.api.health_listen.port()));
    assert_eq!(port("metrics"), u64::from(config.api.metrics_listen.port()));
    for (probe, path) in [
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ] {
        assert_eq!(container[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], "health", "{probe}");
    }

    // The config reaches the binary: --config points into the mount of the generated map.
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let config_path = args
        .windows(2)
        .find(|w| w[0] == "--config")
        .map(|w| w[1])
        .expect("--config in args");
    let mount = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| config_path.starts_with(m["mountPath"].as_str().unwrap()))
        .expect("--config is inside a volume mount");
    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert_eq!(volume["configMap"]["name"], config_map["metadata"]["name"]);
    assert!(config_path.ends_with("/config.yaml") && config_map["data"]["config.yaml"].is_string());

    // Non-root, read-only, nothing extra; limits set.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"][0], "ALL");
    for key in ["requests", "limits"] {
        assert!(
            container["resources"][key]["memory"].is_string(),
            "resources.{key}.memory"
        );
    }
    // The drain fits in the grace period: preStop pause + shutdown_grace < termination grace.
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    let termination = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        pre_stop + config.api.shutdown_grace.as_secs() < termination,
        "preStop {pre_stop}s + shutdown_grace {:?} must end before the kill at {termination}s",
        config.api.shutdown_grace
    );

    // The Service exposes the API and metrics ports, by name, to the gateway's pods.
    let service = one(&objects, "Service");
    let selector = service["spec"]["selector"].as_mapping().unwrap();
    let pod_labels = spec["template"]["metadata"]["labels"].as_mapping().unwrap();
    for (key, value) in selector {
        assert_eq!(pod_labels.get(key), Some(value), "Service selector {key:?}");
    }
    let service_ports: Vec<(u64, &str)> = service["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["port"].as_u64().unwrap(),
                p["targetPort"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(service_ports, [(8080, "api"), (9090, "metrics")]);
    let pdb = one(&objects, "PodDisruptionBudget");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        spec["selector"]["matchLabels"]
    );
}

/// The TLS component mounts the Secret and points the gateway at its files, by the gateway's
/// own environment variables; the result still passes a server-side dry run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_component_mounts_the_secret_and_points_the_gateway_at_it() {
    let plane = bare_control_plane().await;
    let kubectl = kubectl(plane);
    let objects = Overlay::new(&["tls"], "").render(&kubectl);
    let pod = &one(&objects, "Deployment")["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tls")
        .expect("a tls volume");
    assert_eq!(volume["secret"]["secretName"], "gateway-tls");
    let container = &pod["containers"][0];
    let mount = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "tls")
        .expect("a tls mount");
    assert_eq!(mount["readOnly"], true);
    let dir = mount["mountPath"].as_str().unwrap();
    let env: BTreeMap<&str, &str> = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    assert_eq!(env["GATEWAY_TLS_CERT_FILE"], format!("{dir}/tls.crt"));
    assert_eq!(env["GATEWAY_TLS_KEY_FILE"], format!("{dir}/tls.key"));
    // The variables are the gateway's: they are in its --help.
    let help = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for name in env.keys() {
        assert!(help.contains(name), "gateway --help has no {name}");
    }
    let namespace = one(&objects, "Namespace");
    apply(plane, &[namespace], false);
    let all: Vec<&Value> = objects.iter().collect();
    apply(plane, &all, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitoring_component_and_the_image_parameter_render() {
    let plane = bare_control_plane().await;
    let kubectl = kubectl(plane);
    let base = render_base(plane);
    let overlay = Overlay::new(
        &["monitoring"],
        "images:\n  - name: gateway\n    newName: registry.test/team/gateway\n    newTag: v9.9.9\n",
    );
    let objects = overlay.render(&kubectl);

    // The component adds exactly the two Prometheus Operator objects, in the namespace.
    let names = |objects: &[Value]| -> BTreeSet<String> { objects.iter().map(kind_name).collect() };
    let added: BTreeSet<String> = names(&objects).difference(&names(&base)).cloned().collect();
    assert_eq!(
        added,
        ["PrometheusRule/gateway", "ServiceMonitor/gateway"]
            .map(String::from)
            .into()
    );
    assert!(names(&base).is_subset(&names(&objects)));
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        let object = one(&objects, kind);
        assert_eq!(object["apiVersion"], "monitoring.coreos.com/v1", "{kind}");
        assert_eq!(object["metadata"]["namespace"], "remediation", "{kind}");
    }

    // The image is a parameter.
    let container = &one(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.test/team/gateway:v9.9.9");
    let base_image = one(&base, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        base_image, "gateway:0.1.0",
        "the base's tag; overlays set the registry"
    );

    // ServiceMonitor (its CRD is not on the test apiserver, so checked here against what the
    // operator does with it): its selector picks the Service, its port is the Service's
    // metrics port, which reaches the container's metrics listener.
    let monitor = one(&objects, "ServiceMonitor");
    let service = one(&objects, "Service");
    let service_labels = service["metadata"]["labels"].as_mapping().unwrap();
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .unwrap();
    assert!(!selector.is_empty());
    for (key, value) in selector {
        assert_eq!(service_labels.get(key), Some(value), "selector {key:?}");
    }
    assert!(
        monitor["spec"]["namespaceSelector"].is_null(),
        "no namespaceSelector: the Service is in the monitor's own namespace"
    );
    let endpoints = monitor["spec"]["endpoints"].as_sequence().unwrap();
    assert_eq!(endpoints.len(), 1);
    let endpoint = &endpoints[0];
    assert_eq!(endpoint["path"], "/metrics");
    let port = endpoint["port"].as_str().unwrap();
    let service_port = service["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == port)
        .unwrap_or_else(|| panic!("the Service has no port named {port}"));
    assert_eq!(service_port["targetPort"], "metrics");
    for key in ["interval", "scrapeTimeout"] {
        let value = endpoint[key].as_str().unwrap();
        gateway::config::duration::parse(value).unwrap();
    }
    let known: BTreeSet<&str> = ["port", "path", "interval", "scrapeTimeout"].into();
    for key in endpoint.as_mapping().unwrap().keys() {
        assert!(known.contains(key.as_str().unwrap()), "unexpected {key:?}");
    }

    // PrometheusRule: its groups are rules.yaml's, and promtool accepts them.
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
}

/// The PrometheusRule wraps `rules.yaml`'s groups; regenerated by `scripts/update-golden.sh`.
#[test]
fn the_prometheus_rule_is_generated_from_rules_yaml() {
    let dir = deploy_dir().join("monitoring");
    let rules: Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("rules.yaml")).unwrap()).unwrap();
    let object = serde_json::json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "gateway",
            "namespace": "remediation",
            "labels": {"app.kubernetes.io/name": "gateway"},
        },
        "spec": {"groups": serde_json::to_value(&rules["groups"]).unwrap()},
    });
    let generated = format!(
        "# Generated from rules.yaml (UPDATE_DEPLOY=1 cargo test --test deploy_manifests); \
         do not edit by hand.\n{}",
        serde_yaml::to_string(&object).unwrap()
    );
    let path = dir.join("prometheusrule.yaml");
    let rewrite = std::env::var_os("UPDATE_DEPLOY").is_some();
    assert!(
        !(rewrite && std::env::var_os("CI").is_some()),
        "UPDATE_DEPLOY is set under CI: golden files are rewritten only by scripts/update-golden.sh"
    );
    if rewrite {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} differs from rules.yaml; run scripts/update-golden.sh and commit the result",
        path.display()
    );
    let documents = yaml_documents(&checked_in);
    assert_eq!(documents.len(), 1);
}
