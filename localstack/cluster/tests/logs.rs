//! The pod `log` subresource of local-process pods, read with the real `kubectl logs` and with a
//! second client (kube-rs) for the server's answers to bad requests (staging/src/k8s.io/api/core/v1
//! `PodLogOptions`, pkg/apis/core/validation `ValidatePodLogOptions`,
//! pkg/registry/core/pod/strategy.go `LogLocation`, pkg/kubelet/kubelet_pods.go
//! `validateContainerLogStatus`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers, like #[test] bodies, may panic.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cluster::{LocalCommand, RunningSim, SimConfig};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// A program that prints on cue: a stderr line at once, five stdout lines once `print` exists in
/// its directory, a last line once `go` exists, then exits; started again, it says so and waits.
const PRINTER: &str = r#"
if [ -f "$DIR/ran" ]; then echo "second run"; exec sleep 600; fi
: > "$DIR/ran"
echo "error line" >&2
until [ -f "$DIR/print" ]; do sleep 0.05; done
for i in 1 2 3 4 5; do echo "line $i"; done
until [ -f "$DIR/go" ]; do sleep 0.05; done
echo "late line"
"#;

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(what: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!(
        "sim-logs-{what}-{}",
        cluster::meta::random_suffix(8)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

async fn sim() -> RunningSim {
    common::sim_with(SimConfig {
        // kubectl sends no bearer token to a plain-HTTP server.
        anonymous_is_admin: true,
        readiness_delay: Duration::from_millis(100),
        local_commands: vec![LocalCommand {
            image_prefix: "registry.local/printer".into(),
            program: "sh".into(),
            args: vec!["-c".into(), PRINTER.into()],
        }],
        ..SimConfig::default()
    })
    .await
}

fn printer_pod(name: &str, dir: &Path, containers: &[&str]) -> Pod {
    let containers: Vec<_> = containers
        .iter()
        .map(|c| json!({"name": c, "image": "registry.local/printer:1", "env": [{"name": "DIR", "value": dir.display().to_string()}]}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": containers},
    }))
    .unwrap()
}

struct Kubectl {
    kubeconfig: PathBuf,
    _dir: Scratch,
}

impl Kubectl {
    fn new(sim: &RunningSim) -> Self {
        let dir = scratch("kubectl");
        let kubeconfig = dir.0.join("kubeconfig");
        std::fs::write(&kubeconfig, sim.kubeconfig_yaml().unwrap()).unwrap();
        Self {
            kubeconfig,
            _dir: dir,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG")
            .kill_on_drop(true);
        cmd
    }

    /// (success, stdout, stderr), within 30 s.
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::time::timeout(Duration::from_secs(30), self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
            .expect("the real kubectl is on the PATH");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args).await;
        assert!(ok, "kubectl {args:?} failed: {err}\n{out}");
        out
    }
}

/// Waits until `kubectl logs` of `args` prints exactly `expected`.
async fn logs_become(k: &Kubectl, args: &[&str], expected: &str) {
    common::until(
        &format!("kubectl {args:?}"),
        Duration::from_secs(20),
        || async {
            let (_, out, err) = k.run(args).await;
            if out == expected {
                Ok(())
            } else {
                Err(format!("{out}{err}"))
            }
        },
    )
    .await;
}

/// A raw GET on the API as the admin: (status, body).
async fn get(sim: &RunningSim, path_and_query: &str) -> (u16, String) {
    let client = sim.client().await.unwrap();
    let request = http::Request::get(path_and_query).body(Vec::new()).unwrap();
    match client.request_text(request).await {
        Ok(body) => (200, body),
        Err(kube::Error::Api(e)) => (e.code, e.message),
        Err(e) => panic!("GET {path_and_query}: {e}"),
    }
}

#[tokio::test]
async fn kubectl_logs_tail_since_time_follow_and_previous_of_a_local_process() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let dir = scratch("printer");
    let pods: Api<Pod> = Api::namespaced(sim.client().await.unwrap(), "default");
    pods.create(
        &Default::default(),
        &printer_pod("printer", &dir.0, &["app"]),
    )
    .await
    .unwrap();

    // stderr is in the log with stdout.
    logs_become(&k, &["logs", "printer"], "error line\n").await;
    let (ok, _, err) = k.run(&["logs", "printer", "--previous"]).await;
    assert!(
        !ok && err.contains("previous terminated container \"app\" in pod \"printer\" not found"),
        "{err}"
    );
    std::fs::write(dir.0.join("print"), "").unwrap();
    let all = "error line\nline 1\nline 2\nline 3\nline 4\nline 5\n";
    logs_become(&k, &["logs", "printer"], all).await;
    assert_eq!(
        k.ok(&["logs", "printer", "--tail=2"]).await,
        "line 4\nline 5\n"
    );
    assert_eq!(k.ok(&["logs", "printer", "--tail=0"]).await, "");
    assert_eq!(k.ok(&["logs", "printer", "--since=1h"]).await, all);
    assert_eq!(
        k.ok(&["logs", "printer", "-c", "app", "--limit-bytes=8"])
            .await,
        "error li"
    );
    let stamped = k.ok(&["logs", "printer", "--timestamps", "--tail=1"]).await;
    let (stamp, line) = stamped.split_once(' ').unwrap();
    assert_eq!(line, "line 5\n");
    assert!(
        stamp.len() >= 20 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
        "RFC 3339 timestamp: {stamped}"
    );

    // --since-time is sent with whole seconds: the lines so far are older than the next second.
    common::next_second().await;
    let since = cluster::meta::now_rfc3339();

    // -f streams what is printed after the request, and ends when the process exits.
    let mut follow = k
        .command(&["logs", "-f", "printer"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = follow.stdout.take().unwrap();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&seen).contains("line 5\n") {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout_at(deadline, stdout.read(&mut buf))
            .await
            .expect("kubectl logs -f prints the lines so far")
            .unwrap();
        assert!(
            n > 0,
            "kubectl logs -f ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    std::fs::write(dir.0.join("go"), "").unwrap();
    tokio::time::timeout_at(deadline, stdout.read_to_end(&mut seen))
        .await
        .expect("kubectl logs -f ends when the process exits")
        .unwrap();
    let status = tokio::time::timeout_at(deadline, follow.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert_eq!(String::from_utf8_lossy(&seen), format!("{all}late line\n"));

    // The kubelet starts it again; the first run's output is the previous instance's.
    logs_become(&k, &["logs", "printer"], "second run\n").await;
    assert_eq!(
        k.ok(&["logs", "printer", "--previous"]).await,
        format!("{all}late line\n")
    );
    assert_eq!(
        k.ok(&[
            "logs",
            "printer",
            "--previous",
            &format!("--since-time={since}")
        ])
        .await,
        "late line\n"
    );
    assert_eq!(
        k.ok(&["logs", "printer", "-p", "--tail=1"]).await,
        "late line\n"
    );
}

#[tokio::test]
async fn the_log_subresource_refuses_bad_options_and_containers_like_the_api_server() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let dir = scratch("pair");
    let pods: Api<Pod> = Api::namespaced(sim.client().await.unwrap(), "default");
    pods.create(
        &Default::default(),
        &printer_pod("pair", &dir.0, &["app", "sidecar"]),
    )
    .await
    .unwrap();
    logs_become(&k, &["logs", "pair", "-c", "app"], "error line\n").await;
    // The second container runs no process here: its log is empty.
    assert_eq!(k.ok(&["logs", "pair", "-c", "sidecar"]).await, "");

    let base = "/api/v1/namespaces/default/pods/pair/log";
    let (code, message) = get(&sim, base).await;
    assert_eq!(code, 400);
    assert_eq!(
        message,
        "a container name must be specified for pod pair, choose one of: [app sidecar]"
    );
    let (code, message) = get(&sim, &format!("{base}?container=nope")).await;
    assert_eq!(
        (code, message.as_str()),
        (400, "container nope is not valid for pod pair")
    );
    for (query, expected) in [
        (
            "tailLines=-1",
            "tailLines: Invalid value: -1: must be greater than or equal to 0",
        ),
        (
            "sinceSeconds=0",
            "sinceSeconds: Invalid value: 0: must be greater than 0",
        ),
        (
            "limitBytes=0",
            "limitBytes: Invalid value: 0: must be greater than 0",
        ),
        (
            "sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z",
            ": Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified",
        ),
    ] {
        let (code, message) = get(&sim, &format!("{base}?container=app&{query}")).await;
        assert_eq!(code, 422, "{query}: {message}");
        assert_eq!(
            message,
            format!("PodLogOptions \"pair\" is invalid: {expected}"),
            "{query}"
        );
    }
    let (code, _) = get(&sim, &format!("{base}?container=app&tailLines=many")).await;
    assert_eq!(code, 400);
    // Options are validated before the pod is looked up (log.go).
    let (code, _) = get(
        &sim,
        "/api/v1/namespaces/default/pods/absent/log?tailLines=-1",
    )
    .await;
    assert_eq!(code, 422);
    let (code, _) = get(&sim, "/api/v1/namespaces/default/pods/absent/log").await;
    assert_eq!(code, 404);
    let (code, body) = get(
        &sim,
        &format!("{base}?container=app&tailLines=1&timestamps=false"),
    )
    .await;
    assert_eq!((code, body.as_str()), (200, "error line\n"));

    // A container that cannot start has no log yet.
    pods.create(
        &Default::default(),
        &serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "broken"},
            "spec": {"containers": [{"name": "app", "image": "registry.local/does-not-exist:1"}]},
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    common::until("the pull failure in the log answer", Duration::from_secs(20), || async {
        let (code, message) = get(&sim, "/api/v1/namespaces/default/pods/broken/log").await;
        let pulled = [
            "container \"app\" in pod \"broken\" is waiting to start: image can't be pulled",
            "container \"app\" in pod \"broken\" is waiting to start: trying and failing to pull image",
        ];
        if code == 400 && pulled.contains(&message.as_str()) { Ok(()) } else { Err((code, message)) }
    })
    .await;
}

/// RBAC decides on the `pods/log` subresource with verb `get`, apart from `pods`.
#[tokio::test]
async fn reading_logs_needs_get_on_pods_log() {
    let sim = sim().await;
    let k = Kubectl::new(&sim);
    let dir = scratch("rbac");
    let admin = sim.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    pods.create(
        &Default::default(),
        &printer_pod("printer", &dir.0, &["app"]),
    )
    .await
    .unwrap();
    logs_become(&k, &["logs", "printer"], "error line\n").await;
    for (name, resources) in [
        ("pods-only", vec!["pods"]),
        ("pods-log", vec!["pods", "pods/log"]),
    ] {
        k.ok(&["create", "serviceaccount", name]).await;
        k.ok(&[
            "create",
            "role",
            name,
            "--verb=get",
            &format!("--resource={}", resources.join(",")),
        ])
        .await;
        k.ok(&[
            "create",
            "rolebinding",
            name,
            &format!("--role={name}"),
            &format!("--serviceaccount=default:{name}"),
        ])
        .await;
    }
    let sim = &sim;
    let as_account = |name: &str| {
        let token = sim.service_account_token("default", name);
        async move {
            let client = sim.client_with_token(&token).await.unwrap();
            Api::<Pod>::namespaced(client, "default")
                .logs("printer", &Default::default())
                .await
        }
    };
    match as_account("pods-only").await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 403);
            assert!(
                e.message.contains("cannot get resource \"pods/log\""),
                "{}",
                e.message
            );
        }
        other => panic!("pods-only read the log: {other:?}"),
    }
    assert_eq!(as_account("pods-log").await.unwrap(), "error line\n");
}
