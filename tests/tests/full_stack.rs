//! The whole bring-up over the local stack: the AWS emulator for AWS, the cluster simulator for
//! Kubernetes as the EKS cluster's control plane (the emulator's DescribeCluster reports its HTTPS
//! endpoint and CA, and it authenticates EKS tokens as EKS does), so the provisioner reaches it
//! exactly as it reaches EKS: no override. The site's image built from its static binary and
//! pushed to the emulated ECR, the site's pods started by the simulator from that image (its
//! entrypoint, user and port, chrooted where the simulator runs as root) under the site's own
//! ServiceAccount, then a request through the simulated NLB + ingress, the operator's commands
//! (`initial-admin`, `kubeconfig` with kubectl), and `down`.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test set-up

#[path = "../../provisioner/tests/common/account.rs"]
mod account;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret};
use kube::Api;
use platform::names::{HOST_INGRESS, SITE, SYSTEM_NAMESPACE};
use platform::verdict::ADDED_OR_UPDATED;
use provisioner::aws::{CallLog, Target};
use provisioner::config::{Overrides, StackConfig, StackFile};
use provisioner::plan::{Context, Plan};
use provisioner::progress::RecordedProgress;
use provisioner::steps::load_balancer::LoadBalancer;
use provisioner::steps::platform::Site;
use provisioner::steps::site_image::{SiteImage, SiteSource};
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

/// The full plan, whose Kubernetes steps reach the cluster through DescribeCluster and an EKS
/// token as on AWS; the site's image is built from `binary` and also written to the simulator's
/// image store.
fn full_plan(binary: &Path, store: &Path) -> Plan {
    steps::full(PlatformSettings {
        site: SiteSource::Binary {
            path: binary.to_path_buf(),
            layout: Some(store.to_path_buf()),
        },
        ..PlatformSettings::default()
    })
}

/// A fresh directory for the simulator's image store, removed with the value.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("kdeploy-oci-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("image store directory");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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
    let site_binary = tests::site_binary();
    let store = TempDir::new();
    let emu = aws_emulator().await;
    // The simulator's nodes are the instances `up` launches, once their kubelets could join; it
    // serves the API of the stack's cluster (name `full`) at the endpoint and with the CA the
    // emulator reports for it.
    let site_cluster = SiteCluster::from_image_store_joining(
        &store.0,
        cluster::AwsJoin {
            endpoint: emu.endpoint().to_owned(),
            region: config("full").region,
            cluster_name: "full".to_owned(),
            poll_interval: Duration::from_millis(250),
        },
    )
    .await;
    let sim = &site_cluster.sim;
    assert!(sim.api_url().starts_with("https://"), "{}", sim.api_url());
    let full_plan = || full_plan(&site_binary, &store.0);

    let (first, _) = context(&emu).await;
    full_plan()
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
    // ...and the Nodes are the stack's instances: their InternalIPs are the running instances'
    // private IPs (plain EC2 DescribeInstances).
    let described = first
        .aws
        .clients
        .ec2
        .describe_instances()
        .send()
        .await
        .expect("describe the instances");
    let mut instance_ips: Vec<String> = described
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) == Some("running"))
        .filter_map(|i| i.private_ip_address().map(str::to_owned))
        .collect();
    let mut node_ips: Vec<String> = Api::<Node>::all(kube.clone())
        .list(&kube::api::ListParams::default())
        .await
        .expect("nodes")
        .items
        .iter()
        .filter_map(|n| n.status.as_ref()?.addresses.as_ref())
        .flat_map(|addresses| addresses.iter())
        .filter(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
        .collect();
    instance_ips.sort();
    node_ips.sort();
    assert_eq!(node_ips, instance_ips);
    assert_eq!(node_ips.len(), first.config.nodes.desired as usize);

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

    // The site runs from the image `up` built and pushed: the Deployment is pinned to the digest
    // ECR holds (read with a plain ECR call), and the simulator started its pods from that image
    // (each on a pod IP of its own), not from a host binary.
    let pushed = first.outputs.get::<SiteImage>().expect("site image output");
    let (uri, digest) = pushed
        .reference
        .split_once("@sha256:")
        .expect("pinned by digest");
    let deployment = Api::<Deployment>::namespaced(kube.clone(), SYSTEM_NAMESPACE)
        .get(SITE)
        .await
        .expect("the site's Deployment");
    let containers = deployment
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod spec")
        .containers;
    assert_eq!(
        containers[0].image.as_deref(),
        Some(pushed.reference.as_str())
    );
    let images = first
        .aws
        .clients
        .ecr
        .describe_images()
        .repository_name("full/web")
        .send()
        .await
        .expect("describe the site's repository");
    let held: Vec<_> = images
        .image_details()
        .iter()
        .map(|d| {
            (
                d.image_digest().unwrap_or_default().to_owned(),
                d.image_tags().to_vec(),
            )
        })
        .collect();
    assert_eq!(
        held,
        [(
            format!("sha256:{digest}"),
            vec![env!("CARGO_PKG_VERSION").to_owned()]
        )]
    );
    assert!(uri.ends_with("/full/web"), "{uri}");
    let pods = Api::<Pod>::namespaced(kube.clone(), SYSTEM_NAMESPACE)
        .list(&kube::api::ListParams::default().labels(&format!("app.kubernetes.io/name={SITE}")))
        .await
        .expect("the site's pods");
    let running: Vec<_> = pods
        .items
        .iter()
        .filter_map(|p| p.status.as_ref())
        .filter(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .any(|c| c.ready && c.image_id.contains(digest))
        })
        .filter_map(|s| s.pod_ip.clone())
        .collect();
    assert!(
        running.len() == 2
            && running.iter().all(|ip| ip.starts_with("127."))
            && running[0] != running[1],
        "two ready replicas run from the image, each on its own loopback pod IP: {running:?}"
    );

    // The operator's kubeconfig (`provisioner kubeconfig`, whose credential plugin is
    // `provisioner token`) lets the real kubectl in: the CA and endpoint from DescribeCluster, an
    // EKS token of the emulator's credentials, which created the cluster.
    let kubeconfig = store.0.join("operator.kubeconfig");
    let written = provisioner(&provisioner_binary, emu.endpoint())
        .arg("kubeconfig")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .output()
        .await
        .expect("run provisioner kubeconfig");
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    let written = std::fs::read_to_string(&kubeconfig).expect("the kubeconfig");
    assert!(written.contains(&sim.api_url()), "{written}");
    assert!(
        written.contains(emu.endpoint()),
        "the plugin targets the emulator: {written}"
    );
    let seen = kubectl(
        &kubeconfig,
        &[
            "get",
            "secret",
            "--namespace",
            "kdeploy-system",
            "kdeploy-initial-admin",
            "--output",
            "jsonpath={.data.username}",
        ],
    )
    .await;
    assert_eq!(
        seen,
        base64::engine::general_purpose::STANDARD.encode(&user),
        "kubectl through the operator's kubeconfig"
    );

    // The operator's command shows the credentials again while the Secret exists, and says what
    // to do once it is gone.
    let initial_admin = || {
        // Async: the simulator serves from this test's own runtime.
        provisioner(&provisioner_binary, emu.endpoint())
            .arg("initial-admin")
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
    full_plan()
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

    // The Auto Scaling group replaces a node whose instance is terminated; the replacement
    // joins the cluster and the targets controller (in the cluster, from the site's image, on the
    // node role's credentials) moves the target group to it, with no operator command.
    nodes_are_replaced_and_the_target_group_follows(&again, &kube, &lb.target_group_arn).await;

    let (last, _) = context(&emu).await;
    full_plan()
        .down(&last)
        .await
        .unwrap_or_else(|e| panic!("down failed: {e}"));
    let left = remaining(&steps::infrastructure(), &last)
        .await
        .expect("inspecting the stack");
    assert!(left.is_empty(), "{left:?}");

    // The independent observer: the whole emulated account, listed with plain SDK calls (not the
    // provisioner's inventory), holds nothing of the stack.
    let observed = account::leftovers(&account_config(emu.endpoint()).await, "full").await;
    assert!(
        observed.is_empty(),
        "after down the account still holds, of stack full:\n  {}",
        observed.join("\n  ")
    );

    // The image's repository went too, after the cluster (a plain ECR call).
    let repository = last
        .aws
        .clients
        .ecr
        .describe_repositories()
        .repository_names("full/web")
        .send()
        .await;
    let code = repository
        .as_ref()
        .err()
        .and_then(|e| e.as_service_error())
        .map(|e| e.is_repository_not_found_exception());
    assert_eq!(code, Some(true), "{repository:?}");
    let namespaces: Api<Namespace> = Api::all(kube);
    for ns in ["kdeploy-system", "nginx-ingress"] {
        let gone = match namespaces.get_opt(ns).await.expect("get") {
            None => true,
            Some(n) => n.status.and_then(|s| s.phase).as_deref() == Some("Terminating"),
        };
        assert!(gone, "{ns} is being removed");
    }
}

/// `provisioner` against the emulator for the stack `full` in the test's region, with the
/// emulator's credentials and no Kubernetes override: it finds the cluster as on AWS.
/// An SDK configuration for the emulated account made with plain `aws-config`, not the
/// provisioner's connection, for the independent observer.
async fn account_config(endpoint: &str) -> aws_types::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_types::region::Region::new(config("observer").region))
        .endpoint_url(endpoint)
        .credentials_provider(aws_credential_types::Credentials::new(
            "test", "test", None, None, "observer",
        ))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .load()
        .await
}

fn provisioner(binary: &Path, endpoint: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(binary);
    command
        .args(["--endpoint", endpoint, "--name", "full", "--region"])
        .arg(config("full").region)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("PROVISIONER_KUBE_ENDPOINT")
        .env_remove("PROVISIONER_KUBE_TOKEN")
        .kill_on_drop(true);
    command
}

/// Runs the real kubectl with `kubeconfig` and returns its output; fails the test on an error.
/// Its credential plugin (`provisioner token --endpoint`, as `provisioner kubeconfig` wrote it for
/// a local stack) signs with the emulator's credentials: kubectl runs with no AWS settings of its
/// own, as in an operator's fresh shell.
async fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_PROFILE")
            .env_remove("PROVISIONER_ENDPOINT")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("kubectl answers within 60 s")
    .unwrap_or_else(|e| {
        panic!("this test runs the real kubectl, which could not be started ({e}): install it")
    });
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The running instances' private IPs (plain EC2 DescribeInstances).
async fn running_instance_ips(cx: &Context) -> Vec<(String, String)> {
    let described = cx
        .aws
        .clients
        .ec2
        .describe_instances()
        .send()
        .await
        .expect("describe the instances");
    let mut found: Vec<(String, String)> = described
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) == Some("running"))
        .filter_map(|i| {
            Some((
                i.instance_id()?.to_owned(),
                i.private_ip_address()?.to_owned(),
            ))
        })
        .collect();
    found.sort();
    found
}

/// The InternalIPs of the Ready Nodes.
async fn ready_node_ips(kube: &kube::Client) -> Vec<String> {
    let mut ips: Vec<String> = Api::<Node>::all(kube.clone())
        .list(&kube::api::ListParams::default())
        .await
        .expect("nodes")
        .items
        .iter()
        .filter_map(|n| n.status.as_ref())
        .filter(|s| {
            s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
        .filter_map(|s| s.addresses.as_ref())
        .flat_map(|addresses| addresses.iter())
        .filter(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
        .collect();
    ips.sort();
    ips
}

/// The target group's targets that are not leaving (plain ELBv2 DescribeTargetHealth).
async fn registered_targets(cx: &Context, target_group_arn: &str) -> Vec<String> {
    let health = cx
        .aws
        .clients
        .elbv2
        .describe_target_health()
        .target_group_arn(target_group_arn)
        .send()
        .await
        .expect("describe the target health");
    let mut ips: Vec<String> = health
        .target_health_descriptions()
        .iter()
        .filter(|d| {
            d.target_health()
                .and_then(|h| h.state())
                .map(|s| s.as_str())
                != Some("draining")
        })
        .filter_map(|d| d.target()?.id().map(str::to_owned))
        .collect();
    ips.sort();
    ips
}

async fn nodes_are_replaced_and_the_target_group_follows(
    cx: &Context,
    kube: &kube::Client,
    target_group_arn: &str,
) {
    use platform::names::TARGETS_CONTROLLER;
    // The controller runs from the pushed image on the host network of a joined node.
    let controller = eventually(
        "the targets controller to run",
        Duration::from_secs(60),
        || async {
            let pods = Api::<Pod>::namespaced(kube.clone(), SYSTEM_NAMESPACE)
                .list(
                    &kube::api::ListParams::default()
                        .labels(&format!("app.kubernetes.io/name={TARGETS_CONTROLLER}")),
                )
                .await
                .expect("the controller's pods");
            pods.items
                .into_iter()
                .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        },
    )
    .await;
    let status = controller.status.expect("status");
    assert_eq!(
        status.pod_ip, status.host_ip,
        "a host-network pod has its node's IP"
    );

    let before = running_instance_ips(cx).await;
    let ips = |found: &[(String, String)]| {
        let mut ips: Vec<String> = found.iter().map(|(_, ip)| ip.clone()).collect();
        ips.sort();
        ips
    };
    assert_eq!(registered_targets(cx, target_group_arn).await, ips(&before));

    let (victim, victim_ip) = before[0].clone();
    cx.aws
        .clients
        .ec2
        .terminate_instances()
        .instance_ids(&victim)
        .send()
        .await
        .expect("terminate a node's instance");
    let after = eventually(
        "the Auto Scaling group to replace the instance and the replacement to join",
        Duration::from_secs(180),
        || async {
            let now = running_instance_ips(cx).await;
            let joined = ready_node_ips(kube).await;
            (now.len() == before.len()
                && now.iter().all(|(id, _)| *id != victim)
                && joined == ips(&now))
            .then_some(now)
        },
    )
    .await;
    assert!(!ips(&after).contains(&victim_ip), "{after:?}");
    eventually(
        "the target group to hold exactly the Ready nodes",
        Duration::from_secs(120),
        || async { (registered_targets(cx, target_group_arn).await == ips(&after)).then_some(()) },
    )
    .await;
}
