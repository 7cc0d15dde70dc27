//! The real `kubectl` against the simulator, through a generated kubeconfig (127.0.0.1 only).
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers, like #[test] bodies, may panic.

mod common;

use std::time::Duration;

use cluster::SimConfig;
use tokio::process::Command;

struct Kubectl {
    kubeconfig: std::path::PathBuf,
    _dir: TempDir,
}

/// A scratch directory removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Kubectl {
    fn new(sim: &cluster::RunningSim) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "cluster-sim-kubectl-{}",
            cluster::meta::random_suffix(8)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        let yaml = sim.kubeconfig_yaml().unwrap();
        assert!(yaml.contains("server: http://127.0.0.1:"), "{yaml}");
        std::fs::write(&kubeconfig, yaml).unwrap();
        std::fs::write(dir.join("web.yaml"), WEB).unwrap();
        Self {
            kubeconfig,
            _dir: TempDir(dir),
        }
    }

    fn manifest(&self) -> String {
        self.kubeconfig
            .with_file_name("web.yaml")
            .display()
            .to_string()
    }

    /// Runs kubectl with a hard timeout; returns (success, stdout, stderr).
    async fn run(&self, args: &[&str], timeout: Duration) -> (bool, String, String) {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG")
            .kill_on_drop(true);
        match tokio::time::timeout(timeout, cmd.output()).await {
            Ok(out) => {
                let out = out.unwrap_or_else(|e| {
                    panic!(
                        "these tests run the real kubectl, which could not be started ({e}): \
                         install kubectl on the PATH and run them again"
                    )
                });
                (
                    out.status.success(),
                    String::from_utf8_lossy(&out.stdout).into_owned(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            }
            Err(_) => (false, String::new(), "timed out".into()),
        }
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args, Duration::from_secs(40)).await;
        assert!(ok, "kubectl {args:?} failed: {err}\n{out}");
        out
    }
}

/// Client-side `kubectl apply` with validation: create, then a patch, then a typo the server rejects.
#[tokio::test]
async fn kubectl_client_side_apply_validates_against_the_server() {
    let sim = common::sim_with(SimConfig {
        anonymous_is_admin: true,
        readiness_delay: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await;
    let k = Kubectl::new(&sim);
    let out = k.ok(&["apply", "-f", &k.manifest()]).await;
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let changed = k.kubeconfig.with_file_name("changed.yaml");
    std::fs::write(
        &changed,
        WEB.replace("replicas: 2", "replicas: 3")
            .replace("nginx:1.27", "nginx:1.28"),
    )
    .unwrap();
    let out = k.ok(&["apply", "-f", &changed.display().to_string()]).await;
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let spec = k
        .ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image}",
        ])
        .await;
    assert_eq!(spec, "3 nginx:1.28");

    let typo = k.kubeconfig.with_file_name("typo.yaml");
    std::fs::write(
        &typo,
        WEB.replace(
            "image: nginx:1.27",
            "image: nginx:1.27\n        imagePullPolicyy: Always",
        ),
    )
    .unwrap();
    let typo = typo.display().to_string();
    for args in [vec!["apply", "-f", &typo], vec!["create", "-f", &typo]] {
        let (ok, _, err) = k.run(&args, Duration::from_secs(20)).await;
        assert!(
            !ok && err.contains(
                "strict decoding error: unknown field \"spec.template.spec.containers[0].imagePullPolicyy\""
            ),
            "{args:?}: {err}"
        );
    }
    // `--validate=false` sends fieldValidation=Ignore: the unknown field is dropped.
    let out = k.ok(&["apply", "--validate=false", "-f", &typo]).await;
    assert!(
        out.contains("unchanged") || out.contains("configured"),
        "{out}"
    );
    let explain = k.ok(&["explain", "deployment.spec.replicas"]).await;
    assert!(
        explain.contains("replicas") && explain.contains("integer"),
        "{explain}"
    );
}

const WEB: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: nginx:1.27
";

#[tokio::test]
async fn kubectl_get_apply_rollout_restart_watch_and_delete() {
    // kubectl sends no bearer token to a plain-HTTP server, so the simulator must accept anonymous calls.
    let sim = common::sim_with(SimConfig {
        anonymous_is_admin: true,
        readiness_delay: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await;
    let k = Kubectl::new(&sim);

    let nodes = k.ok(&["get", "nodes"]).await;
    assert!(
        nodes.contains("sim-node-1") && nodes.contains("Ready"),
        "{nodes}"
    );
    let ns = k.ok(&["get", "ns", "default", "-o", "yaml"]).await;
    assert!(
        ns.contains("kind: Namespace") && ns.contains("phase: Active"),
        "{ns}"
    );

    // Validation on (kubectl's default, `--validate=strict`): kubectl finds `fieldValidation` in
    // /openapi/v3 and lets the server check the fields.
    let applied = k.ok(&["apply", "--server-side", "-f", &k.manifest()]).await;
    assert!(
        applied.contains("deployment.apps/web serverside-applied"),
        "{applied}"
    );
    let rolled = k
        .ok(&["rollout", "status", "deployment/web", "--timeout=30s"])
        .await;
    assert!(rolled.contains("successfully rolled out"), "{rolled}");
    let yaml = k
        .ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "yaml",
            "--show-managed-fields",
        ])
        .await;
    assert!(
        yaml.contains("manager: kubectl") && yaml.contains("operation: Apply"),
        "{yaml}"
    );

    let typo = k.kubeconfig.with_file_name("typo.yaml");
    std::fs::write(&typo, WEB.replace("replicas: 2", "replicaz: 2")).unwrap();
    let typo = typo.display().to_string();
    let (ok, _, err) = k
        .run(
            &["apply", "--server-side", "-f", &typo],
            Duration::from_secs(20),
        )
        .await;
    assert!(
        !ok && err.contains(".spec.replicaz: field not declared in schema"),
        "{err}"
    );

    let restarted = k.ok(&["rollout", "restart", "deployment/web"]).await;
    assert!(restarted.contains("restarted"), "{restarted}");
    let rolled = k
        .ok(&["rollout", "status", "deployment/web", "--timeout=30s"])
        .await;
    assert!(rolled.contains("successfully rolled out"), "{rolled}");
    let rs = k.ok(&["get", "rs", "-o", "name"]).await;
    assert_eq!(
        rs.lines().count(),
        2,
        "a restart makes a second ReplicaSet: {rs}"
    );

    // `-o wide` adds the columns kubectl's table printer asks the server for.
    let wide = k.ok(&["get", "pods", "-o", "wide"]).await;
    let header = wide.lines().next().unwrap_or_default();
    assert!(header.contains("IP") && header.contains("NODE"), "{wide}");
    assert!(
        wide.lines()
            .skip(1)
            .any(|l| l.starts_with("web-") && l.contains("sim-node-")),
        "{wide}"
    );
    let wide = k.ok(&["get", "deploy", "web", "-o", "wide"]).await;
    assert!(
        wide.lines().next().unwrap_or_default().contains("IMAGES"),
        "{wide}"
    );

    // `get -w` streams until kubectl's own timeout ends it.
    let (_, watched, _) = k
        .run(
            &["get", "deploy", "-w", "--request-timeout=2s"],
            Duration::from_secs(10),
        )
        .await;
    assert!(
        watched.contains("web") && watched.contains("2/2"),
        "{watched}"
    );

    let deleted = k.ok(&["delete", "deployment", "web"]).await;
    assert!(deleted.contains("deleted"), "{deleted}");
    common::eventually(
        "pods garbage-collected",
        Duration::from_secs(10),
        || async {
            let (_, out, _) = k
                .run(&["get", "pods", "-o", "name"], Duration::from_secs(10))
                .await;
            out.trim().is_empty().then_some(())
        },
    )
    .await;
    let (ok, _, err) = k
        .run(&["get", "deployment", "web"], Duration::from_secs(10))
        .await;
    assert!(!ok && err.contains("NotFound"), "{err}");
}

/// kubectl's typed commands send protobuf bodies and do not fall back to JSON after a 415.
#[tokio::test]
async fn kubectl_typed_create_commands_send_protobuf() {
    let sim = common::sim_with(SimConfig {
        anonymous_is_admin: true,
        readiness_delay: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await;
    let k = Kubectl::new(&sim);

    let out = k.ok(&["create", "namespace", "team-a"]).await;
    assert!(out.contains("namespace/team-a created"), "{out}");
    let ns = k.ok(&["get", "ns", "team-a", "-o", "json"]).await;
    let ns: serde_json::Value = serde_json::from_str(&ns).unwrap();
    assert_eq!(ns["status"]["phase"], "Active");
    assert!(ns["metadata"].get("generation").is_none(), "{ns}");

    let out = k
        .ok(&[
            "create",
            "configmap",
            "settings",
            "-n",
            "team-a",
            "--from-literal=a=b",
            "--from-literal=c=d",
        ])
        .await;
    assert!(out.contains("configmap/settings created"), "{out}");
    let data = k
        .ok(&[
            "get",
            "cm",
            "settings",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.data}",
        ])
        .await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&data).unwrap(),
        serde_json::json!({"a": "b", "c": "d"})
    );

    let out = k
        .ok(&[
            "create",
            "secret",
            "generic",
            "creds",
            "-n",
            "team-a",
            "--from-literal=password=s3cret",
        ])
        .await;
    assert!(out.contains("secret/creds created"), "{out}");
    let password = k
        .ok(&[
            "get",
            "secret",
            "creds",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.data.password}",
        ])
        .await;
    assert_eq!(password, "czNjcmV0"); // base64("s3cret")

    let out = k
        .ok(&[
            "create",
            "deployment",
            "api",
            "-n",
            "team-a",
            "--image=nginx:1.27",
            "--port=80",
            "--replicas=2",
        ])
        .await;
    assert!(out.contains("deployment.apps/api created"), "{out}");
    let spec = k
        .ok(&[
            "get",
            "deploy",
            "api",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort}",
        ])
        .await;
    assert_eq!(spec, "2 nginx:1.27 80");
    let rolled = k
        .ok(&[
            "rollout",
            "status",
            "deployment/api",
            "-n",
            "team-a",
            "--timeout=30s",
        ])
        .await;
    assert!(rolled.contains("successfully rolled out"), "{rolled}");
    // An explicit zero in a pointer field survives decoding.
    k.ok(&[
        "create",
        "deployment",
        "idle",
        "-n",
        "team-a",
        "--image=nginx",
        "--replicas=0",
    ])
    .await;
    let replicas = k
        .ok(&[
            "get",
            "deploy",
            "idle",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .await;
    assert_eq!(replicas, "0");

    // SelfSubjectAccessReview: the anonymous admin may do anything.
    let (ok, out, err) = k
        .run(&["auth", "can-i", "get", "pods"], Duration::from_secs(20))
        .await;
    assert!(ok && out.trim() == "yes", "{out} {err}");
    let out = k.ok(&["delete", "cm", "settings", "-n", "team-a"]).await;
    assert!(out.contains("deleted"), "{out}");
}

/// The Deployment carries its newest revision; `rollout history` lists revisions with their
/// change-cause, and `rollout undo` makes the old template the newest revision.
#[tokio::test]
async fn kubectl_rollout_history_and_undo() {
    let sim = common::sim_with(SimConfig {
        anonymous_is_admin: true,
        readiness_delay: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await;
    let k = Kubectl::new(&sim);
    let revision = || async {
        k.ok(&[
            "get",
            "deploy",
            "h",
            "-o",
            "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
        ])
        .await
    };
    k.ok(&["create", "deployment", "h", "--image=nginx:1.26"])
        .await;
    k.ok(&["rollout", "status", "deployment/h", "--timeout=30s"])
        .await;
    assert_eq!(revision().await, "1");
    k.ok(&["set", "image", "deployment/h", "nginx=nginx:1.27"])
        .await;
    k.ok(&[
        "annotate",
        "deployment",
        "h",
        "kubernetes.io/change-cause=upgrade to 1.27",
    ])
    .await;
    k.ok(&["rollout", "status", "deployment/h", "--timeout=30s"])
        .await;
    common::eventually("revision 2", Duration::from_secs(10), || async {
        let history = k.ok(&["rollout", "history", "deployment/h"]).await;
        (revision().await == "2" && history.contains("2         upgrade to 1.27")).then_some(())
    })
    .await;
    let history = k.ok(&["rollout", "history", "deployment/h"]).await;
    assert!(history.contains("1         <none>"), "{history}");
    let one = k
        .ok(&["rollout", "history", "deployment/h", "--revision=1"])
        .await;
    assert!(one.contains("nginx:1.26"), "{one}");

    k.ok(&["rollout", "undo", "deployment/h"]).await;
    k.ok(&["rollout", "status", "deployment/h", "--timeout=30s"])
        .await;
    common::eventually("revision 3", Duration::from_secs(10), || async {
        (revision().await == "3").then_some(())
    })
    .await;
    let image = k
        .ok(&[
            "get",
            "deploy",
            "h",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
        .await;
    assert_eq!(image, "nginx:1.26");
}

/// kubectl's client-side → server-side apply migration (kubectl `pkg/cmd/apply/apply.go`,
/// `migrateToSSAIfNecessary`; client-go `util/csaupgrade/upgrade.go`): after the first server-side
/// apply kubectl sends a JSON patch that replaces `metadata.managedFields`, moving the fields of the
/// `kubectl-client-side-apply` Update entry into the `kubectl` Apply entry, then applies again. The
/// server honours managedFields written by a request (apimachinery
/// `pkg/util/managedfields/internal/fieldmanager.go`, `decodeLiveOrNew`), so the second apply
/// releases `b`, which only the client-side apply had set, and the field is removed.
#[tokio::test]
async fn kubectl_server_side_apply_after_client_side_apply_releases_a_field_it_no_longer_applies() {
    let sim = common::sim_with(SimConfig {
        anonymous_is_admin: true,
        ..SimConfig::default()
    })
    .await;
    let k = Kubectl::new(&sim);
    let both = k.kubeconfig.with_file_name("cm.yaml");
    let a_only = k.kubeconfig.with_file_name("cm-a-only.yaml");
    let cm = |data: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n{data}")
    };
    std::fs::write(&both, cm("  a: \"1\"\n  b: \"2\"\n")).unwrap();
    std::fs::write(&a_only, cm("  a: \"1\"\n")).unwrap();

    let out = k.ok(&["apply", "-f", &both.display().to_string()]).await;
    assert!(out.contains("configmap/settings created"), "{out}");
    let (ok, out, err) = k
        .run(
            &[
                "apply",
                "--server-side",
                "-f",
                &a_only.display().to_string(),
            ],
            Duration::from_secs(40),
        )
        .await;
    assert!(
        ok && out.contains("configmap/settings serverside-applied"),
        "{out}\n{err}"
    );
    // kubectl prints a warning when the migration patch or the re-apply fails.
    assert!(!err.contains("Warning"), "{err}");

    let got = k
        .ok(&[
            "get",
            "configmap",
            "settings",
            "-o",
            "json",
            "--show-managed-fields",
        ])
        .await;
    let got: serde_json::Value = serde_json::from_str(&got).unwrap();
    assert_eq!(got["data"], serde_json::json!({"a": "1"}), "{got:#}");
    let entries = got["metadata"]["managedFields"].as_array().unwrap();
    let owners: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["manager"].as_str().unwrap(),
                e["operation"].as_str().unwrap(),
            )
        })
        .collect();
    // kubectl keeps the annotation under its own applier (`saveLastApplyAnnotationIfNecessary`);
    // the client-side apply's Update entry is gone.
    let mut owners = owners;
    owners.sort();
    assert_eq!(
        owners,
        [("kubectl", "Apply"), ("kubectl-last-applied", "Apply")],
        "{got:#}"
    );
    let keeper = entries
        .iter()
        .find(|e| e["manager"] == "kubectl-last-applied")
        .unwrap();
    assert_eq!(
        keeper["fieldsV1"],
        serde_json::json!({"f:metadata": {"f:annotations": {
            "f:kubectl.kubernetes.io/last-applied-configuration": {}}}}),
        "{got:#}"
    );
    let kubectl = entries
        .iter()
        .find(|e| e["manager"] == "kubectl" && e["operation"] == "Apply")
        .unwrap_or_else(|| panic!("no kubectl Apply entry: {got:#}"));
    assert_eq!(
        kubectl["fieldsV1"],
        serde_json::json!({"f:data": {"f:a": {}}}),
        "{got:#}"
    );
    // The annotation follows the server-side apply (lastappliedupdater.go), so a later
    // client-side apply starts from what was applied last.
    let last_applied: serde_json::Value = serde_json::from_str(
        got["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        last_applied["data"],
        serde_json::json!({"a": "1"}),
        "{got:#}"
    );
}
