//! The whole bring-up over the local stack: the AWS emulator for AWS, the cluster simulator for
//! Kubernetes (the only local switch), then a request through the simulated NLB + ingress.

#![allow(clippy::expect_used)] // test set-up

mod common;

use std::time::Duration;

use cluster_sim::{ClusterSim, SimConfig};
use common::{config, emulator, left, run};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use provisioner::plan::Plan;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GET `path` from the ingress at `addr` with this Host header; returns status line and body.
async fn get(addr: std::net::SocketAddr, host: &str, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the ingress");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

#[tokio::test]
async fn up_brings_the_platform_up_and_down_takes_it_away() {
    let emu = emulator().await;
    // The site's pod runs as our `web` binary, built next to this test by the workspace build.
    let web = std::env::current_exe()
        .expect("test path")
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .join("web");
    assert!(
        web.exists(),
        "{} is built with the workspace (cargo build --workspace)",
        web.display()
    );
    // The site's process finds the simulator through a kubeconfig (the admin's, as `./dev up` does).
    let kubeconfig = std::env::temp_dir().join(format!(
        "kdeploy-full-stack-{}.kubeconfig",
        std::process::id()
    ));
    let admin_token = format!("test-{}", std::process::id());
    let sim = ClusterSim::start(SimConfig {
        readiness_delay: Duration::from_millis(100),
        admin_token: Some(admin_token),
        local_commands: vec![cluster_sim::LocalCommand {
            image_prefix: "ghcr.io/kdeploy/web".into(),
            program: "env".into(),
            args: vec![
                format!("KUBECONFIG={}", kubeconfig.display()),
                web.display().to_string(),
                "serve".into(),
                "--listen".into(),
                "127.0.0.1:{port}".into(),
                "--insecure-cookies".into(),
            ],
        }],
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    std::fs::write(&kubeconfig, sim.kubeconfig_yaml().expect("kubeconfig"))
        .expect("write kubeconfig");
    let with_sim = |mut run: common::Run| {
        run.cx.kube_override = Some(platform::cluster::Access {
            endpoint: sim.api_url(),
            certificate_authority: None,
            token: sim.admin_token().to_owned(),
        });
        run
    };

    let first = with_sim(run(&emu, config("full")).await);
    Plan::full()
        .up(&first.cx)
        .await
        .unwrap_or_else(|e| panic!("up failed: {e}"));
    let site = first.cx.outputs.site.get().expect("site output");
    let lb = first
        .cx
        .outputs
        .load_balancer
        .get()
        .expect("load balancer output");
    assert_eq!(
        site.url,
        format!("http://{}/", lb.dns_name.to_ascii_lowercase())
    );
    let (user, password) = site.admin.clone().expect("a first administrator is made");
    assert_eq!(user, provisioner::steps::platform::ADMIN);
    assert!(password.len() >= 16);

    // The nodes were let in through aws-auth (the emulator has no access-entry API).
    let kube = sim.client().await.expect("client");
    let aws_auth = Api::<ConfigMap>::namespaced(kube.clone(), "kube-system")
        .get("aws-auth")
        .await
        .expect("aws-auth");
    let roles = aws_auth.data.expect("data")["mapRoles"].clone();
    assert!(roles.contains(&first.cx.stack.node_role()), "{roles}");

    // The site answers through the simulated NLB + ingress, under the NLB's host name.
    let host = lb.dns_name.to_ascii_lowercase();
    let (status, body) = get(sim.ingress_addr(), &host, "/login").await;
    assert!(status.contains("200"), "{status} {body}");
    assert!(
        body.contains("Sign in") && body.contains("kdeploy"),
        "the site's page: {body}"
    );

    // Again: no AWS change, no second administrator.
    let again = with_sim(run(&emu, config("full")).await);
    Plan::full()
        .up(&again.cx)
        .await
        .unwrap_or_else(|e| panic!("second up failed: {e}"));
    assert_eq!(
        again.calls.counts().mutating,
        0,
        "{:?}",
        again.calls.counts().mutating_operations()
    );
    assert!(again.cx.outputs.site.get().expect("site").admin.is_none());

    let last = with_sim(run(&emu, config("full")).await);
    Plan::full()
        .down(&last.cx)
        .await
        .unwrap_or_else(|e| panic!("down failed: {e}"));
    assert_eq!(left(&emu, "full").await, Vec::<String>::new());
    let namespaces: Api<Namespace> = Api::all(kube);
    for ns in ["kdeploy-system", "nginx-ingress"] {
        let gone = match namespaces.get_opt(ns).await.expect("get") {
            None => true,
            Some(n) => n.status.and_then(|s| s.phase).as_deref() == Some("Terminating"),
        };
        assert!(gone, "{ns} is being removed");
    }
    let _ = std::fs::remove_file(kubeconfig);
}
