//! The whole bring-up over the local stack: the AWS emulator for AWS, the cluster simulator for
//! Kubernetes (the only local switch), the site as our real binary under its own ServiceAccount,
//! then a request through the simulated NLB + ingress, and `down`.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test set-up

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::Api;
use platform::names::{HOST_INGRESS, SITE, SYSTEM_NAMESPACE};
use platform::verdict::ADDED_OR_UPDATED;
use provisioner::aws::{CallLog, Target};
use provisioner::config::{Overrides, StackConfig, StackFile};
use provisioner::plan::{Context, Plan};
use provisioner::progress::RecordedProgress;
use provisioner::steps::load_balancer::LoadBalancer;
use provisioner::steps::platform::Site;
use provisioner::steps::{self, PlatformSettings};
use provisioner::{Aws, remaining};
use tests::{Browser, SiteCluster, aws_emulator, eventually, route_verdict};

/// The default stack under another name, with deadlines short enough for a test to fail fast.
fn config(name: &str) -> StackConfig {
    let mut config = StackFile::default()
        .resolve(&Overrides {
            name: Some(name.to_owned()),
            ..Overrides::default()
        })
        .expect("valid test configuration");
    config.timeouts.cluster_limit = Duration::from_secs(60);
    config.timeouts.resources_limit = Duration::from_secs(60);
    config.timeouts.poll = Duration::from_millis(250);
    config
}

/// The full plan, its Kubernetes steps sent to the simulator (the only local switch).
fn full_plan(sim: &cluster::RunningSim) -> Plan {
    steps::full(PlatformSettings {
        kube_override: Some(platform::cluster::Access {
            endpoint: sim.api_url(),
            certificate_authority: None,
            token: sim.admin_token().to_owned(),
        }),
        ..PlatformSettings::default()
    })
}

/// A run against the emulator, with its own call log.
async fn context(emulator: &aws::AwsEmulator) -> (Context, CallLog) {
    let calls = CallLog::default();
    let config = config("full");
    let target = Target::Local {
        endpoint: emulator.endpoint().to_owned(),
    };
    let aws = Aws::connect(&target, &config.region, calls.clone()).await;
    let cx = Context::new(config, aws, Arc::new(RecordedProgress::default()));
    (cx, calls)
}

#[tokio::test]
async fn up_brings_the_platform_up_and_down_takes_it_away() {
    let provisioner_binary = tests::workspace_binary("provisioner", "provisioner");
    let emu = aws_emulator().await;
    let site_cluster = SiteCluster::start("kdeploy-system", "kdeploy-web").await;
    let sim = &site_cluster.sim;

    let (first, _) = context(&emu).await;
    full_plan(sim)
        .up(&first)
        .await
        .unwrap_or_else(|e| panic!("up failed: {e}"));
    let site = first.outputs.get::<Site>().expect("site output");
    let lb = first
        .outputs
        .get::<LoadBalancer>()
        .expect("load balancer output");
    // No --public-url: the site is reached at the NLB's address.
    assert_eq!(
        site.url,
        format!("http://{}", lb.dns_name.to_ascii_lowercase())
    );
    // The site made its first administrator itself and left the credentials in a Secret, which
    // the installer shows once.
    let admin = site
        .admin
        .clone()
        .expect("the first administrator is shown");
    let (user, password) = (admin.username, admin.password);
    let kube = sim.client().await.expect("client");
    let secret = Api::<Secret>::namespaced(kube.clone(), "kdeploy-system")
        .get("kdeploy-initial-admin")
        .await
        .expect("the initial-admin Secret");
    let data = secret.data.expect("data");
    assert_eq!(data["username"].0, user.as_bytes());
    assert_eq!(data["password"].0, password.as_bytes());
    assert!(password.len() >= 16);

    // The nodes were let in through aws-auth (the emulator has no access-entry API).
    let aws_auth = Api::<ConfigMap>::namespaced(kube.clone(), "kube-system")
        .get("aws-auth")
        .await
        .expect("aws-auth");
    let roles = aws_auth.data.expect("data")["mapRoles"].clone();
    assert!(roles.contains(&first.stack.node_role()), "{roles}");

    // The site answers through the simulated NLB + ingress, under the NLB's host name: the
    // controller accepted the host's master and the site's minion, as NIC says it in its Events.
    let host = lb.dns_name.to_ascii_lowercase();
    let browser = Browser::new(sim.ingress_addr(), host);
    // NGINX learns of the site's endpoints after a propagation delay (502 until then).
    let page = eventually(
        "the site to answer through the NLB",
        Duration::from_secs(60),
        || async {
            let page = browser.get("/login").await;
            (page.status == 200).then_some(page)
        },
    )
    .await;
    assert!(
        page.body.contains("Sign in") && page.body.contains("kdeploy"),
        "the site's page: {}",
        page.body
    );
    for name in [HOST_INGRESS, SITE] {
        let verdict = route_verdict(&kube, SYSTEM_NAMESPACE, name).await;
        assert_eq!(
            verdict.map(|v| (v.reason, v.message)),
            Some((
                ADDED_OR_UPDATED.to_owned(),
                format!("Configuration for {SYSTEM_NAMESPACE}/{name} was added or updated")
            )),
            "the controller's verdict on {name}"
        );
    }
    // Through the site's minion only: a path of no repository is the site's (its 404 page).
    let elsewhere = browser.get("/nobody/nothing/").await;
    assert_eq!(elsewhere.status, 404, "{}", elsewhere.body);
    assert!(elsewhere.body.contains("kdeploy"), "{}", elsewhere.body);

    // The operator's command shows the credentials again while the Secret exists, and says what
    // to do once it is gone.
    let initial_admin = || {
        // Async: the simulator serves from this test's own runtime.
        tokio::process::Command::new(&provisioner_binary)
            .args(["--endpoint", emu.endpoint(), "--kube-endpoint"])
            .arg(sim.api_url())
            .args([
                "--kube-token",
                sim.admin_token(),
                "--name",
                "full",
                "initial-admin",
            ])
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
    };
    let shown = initial_admin()
        .await
        .expect("run provisioner initial-admin");
    let out = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&shown.stderr)
    );
    assert!(
        out.contains(&format!("`{user}`")) && out.contains(&format!("`{password}`")),
        "{out}"
    );
    assert!(out.contains("delete secret kdeploy-initial-admin"), "{out}");
    let secrets = Api::<Secret>::namespaced(kube.clone(), "kdeploy-system");
    secrets
        .delete("kdeploy-initial-admin", &Default::default())
        .await
        .expect("the operator deletes the Secret");
    let gone = initial_admin()
        .await
        .expect("run provisioner initial-admin");
    let err = String::from_utf8_lossy(&gone.stderr);
    assert_eq!(gone.status.code(), Some(1), "{err}");
    assert!(
        err.contains("kdeploy-system/kdeploy-initial-admin is gone"),
        "{err}"
    );

    // Again: no AWS change, and the credentials are not shown a second time.
    let (again, calls) = context(&emu).await;
    full_plan(sim)
        .up(&again)
        .await
        .unwrap_or_else(|e| panic!("second up failed: {e}"));
    assert_eq!(
        calls.counts().mutating,
        0,
        "{:?}",
        calls.counts().mutating_operations()
    );
    assert!(again.outputs.get::<Site>().expect("site").admin.is_none());

    let (last, _) = context(&emu).await;
    full_plan(sim)
        .down(&last)
        .await
        .unwrap_or_else(|e| panic!("down failed: {e}"));
    let left = remaining(&steps::infrastructure(), &last)
        .await
        .expect("inspecting the stack");
    assert!(left.is_empty(), "{left:?}");
    let namespaces: Api<Namespace> = Api::all(kube);
    for ns in ["kdeploy-system", "nginx-ingress"] {
        let gone = match namespaces.get_opt(ns).await.expect("get") {
            None => true,
            Some(n) => n.status.and_then(|s| s.phase).as_deref() == Some("Terminating"),
        };
        assert!(gone, "{ns} is being removed");
    }
}
