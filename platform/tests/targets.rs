//! The targets controller in-process, between the cluster simulator (its three fixed Nodes, which
//! the test cordons, marks NotReady, deletes and adds to) and the AWS emulator (a VPC and an `ip`
//! target group made with plain SDK calls). What the target group holds is read with plain
//! DescribeTargetHealth, never through the controller's own code.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test set-up

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_elasticloadbalancingv2::types::{ProtocolEnum, TargetDescription, TargetTypeEnum};
use cluster::{ClusterSim, RunningSim, SimConfig};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use platform::names::HTTP_NODE_PORT;
use platform::targets::{Config, EXCLUDE_LABEL, Settings};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

const REGION: &str = "ap-northeast-2";
/// The simulator's fixed nodes and their InternalIPs.
const NODES: [(&str, &str); 3] = [
    ("sim-node-1", "10.0.0.11"),
    ("sim-node-2", "10.0.0.12"),
    ("sim-node-3", "10.0.0.13"),
];

fn credentials() -> Credentials {
    Credentials::new("test", "test", None, None, "test")
}

async fn sdk(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .credentials_provider(credentials())
        .load()
        .await
}

/// A VPC holding the nodes' addresses and a TCP target group of type `ip` in it; its ARN.
async fn target_group(sdk: &SdkConfig) -> String {
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .expect("a VPC");
    let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).unwrap();
    let elbv2 = aws_sdk_elasticloadbalancingv2::Client::new(sdk);
    let created = elbv2
        .create_target_group()
        .name("kdeploy-http")
        .protocol(ProtocolEnum::Tcp)
        .port(HTTP_NODE_PORT)
        .vpc_id(vpc_id)
        .target_type(TargetTypeEnum::Ip)
        .send()
        .await
        .expect("a target group");
    created.target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_owned()
}

/// `ip:port` of every target the group holds that is not draining.
async fn targets(elbv2: &aws_sdk_elasticloadbalancingv2::Client, arn: &str) -> BTreeSet<String> {
    let health = elbv2
        .describe_target_health()
        .target_group_arn(arn)
        .send()
        .await
        .expect("DescribeTargetHealth");
    health
        .target_health_descriptions()
        .iter()
        .filter(|d| {
            d.target_health()
                .and_then(|h| h.state())
                .map(|s| s.as_str())
                != Some("draining")
        })
        .map(|d| {
            let target = d.target().unwrap();
            format!("{}:{}", target.id().unwrap(), target.port().unwrap())
        })
        .collect()
}

fn on_port(ips: &[&str]) -> BTreeSet<String> {
    ips.iter()
        .map(|ip| format!("{ip}:{HTTP_NODE_PORT}"))
        .collect()
}

/// Polls `check` until it holds, or fails the test after `limit` with the last value seen.
async fn eventually<T: std::fmt::Debug, F: Future<Output = T>>(
    what: &str,
    limit: Duration,
    mut probe: impl FnMut() -> F,
    check: impl Fn(&T) -> bool,
) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let seen = probe().await;
        if check(&seen) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still {seen:?} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Bench {
    _emulator: aws::AwsEmulator,
    _sim: RunningSim,
    kube: kube::Client,
    elbv2: aws_sdk_elasticloadbalancingv2::Client,
    arn: String,
    endpoint: String,
}

async fn bench() -> Bench {
    let emulator = aws::AwsEmulator::start(aws::Port::Any)
        .await
        .expect("the AWS emulator starts");
    let sim = ClusterSim::start(SimConfig::default())
        .await
        .expect("the simulator starts");
    let kube = sim.client().await.expect("a client");
    let sdk = sdk(emulator.endpoint()).await;
    let arn = target_group(&sdk).await;
    Bench {
        endpoint: emulator.endpoint().to_owned(),
        _emulator: emulator,
        _sim: sim,
        kube,
        elbv2: aws_sdk_elasticloadbalancingv2::Client::new(&sdk),
        arn,
    }
}

impl Bench {
    /// Starts the controller against `endpoint` (the emulator, or a relay before it); it stops
    /// when the handle is aborted or dropped with the test.
    fn controller(&self, endpoint: &str) -> tokio::task::JoinHandle<()> {
        let config = Config {
            settings: Settings {
                target_group_arn: self.arn.clone(),
                port: HTTP_NODE_PORT,
                region: REGION.into(),
                endpoint: Some(endpoint.to_owned()),
            },
            kube: self.kube.clone(),
            credentials: Some(credentials()),
            resync: Duration::from_secs(1),
        };
        tokio::spawn(async move {
            if let Err(e) = platform::targets::run(config).await {
                panic!("the controller stopped: {e}");
            }
        })
    }

    async fn expect(&self, what: &str, ips: &[&str]) {
        let want = on_port(ips);
        eventually(
            what,
            Duration::from_secs(30),
            || targets(&self.elbv2, &self.arn),
            |seen| *seen == want,
        )
        .await;
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.kube.clone())
    }

    async fn patch(&self, name: &str, patch: serde_json::Value) {
        self.nodes()
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap_or_else(|e| panic!("patching Node {name}: {e}"));
    }

    /// As the node lifecycle controller does when the kubelet stops posting status.
    async fn set_ready(&self, name: &str, status: &str) {
        let patch = json!({"status": {"conditions": [{
            "type": "Ready",
            "status": status,
            "reason": if status == "True" { "KubeletReady" } else { "NodeStatusUnknown" },
            "message": "set by the test",
        }]}});
        self.nodes()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap_or_else(|e| panic!("patching the status of Node {name}: {e}"));
    }

    /// A node as a kubelet registers it: its InternalIP and, once posted, Ready.
    async fn add_node(&self, name: &str, ip: &str) {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"addresses": [
                {"type": "InternalIP", "address": ip},
                {"type": "Hostname", "address": name},
            ]},
        }))
        .unwrap();
        self.nodes()
            .create(&PostParams::default(), &node)
            .await
            .expect("a new Node");
        let status = json!({"status": {
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
        }});
        self.nodes()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .expect("the new Node's addresses");
        self.set_ready(name, "True").await;
    }

    async fn register_by_hand(&self, ip: &str) {
        self.elbv2
            .register_targets()
            .target_group_arn(&self.arn)
            .targets(
                TargetDescription::builder()
                    .id(ip)
                    .port(HTTP_NODE_PORT)
                    .build(),
            )
            .send()
            .await
            .expect("RegisterTargets by hand");
    }
}

#[tokio::test]
async fn the_target_group_follows_ready_schedulable_nodes() {
    let bench = bench().await;
    let _controller = bench.controller(&bench.endpoint.clone());
    let [(one, ip1), (two, ip2), (three, ip3)] = NODES;

    bench
        .expect("every Ready node registered on start", &[ip1, ip2, ip3])
        .await;

    bench
        .patch(one, json!({"spec": {"unschedulable": true}}))
        .await;
    bench
        .expect("a cordoned node deregistered", &[ip2, ip3])
        .await;

    bench.set_ready(two, "Unknown").await;
    bench.expect("a NotReady node deregistered", &[ip3]).await;

    bench
        .nodes()
        .delete(three, &DeleteParams::default())
        .await
        .expect("delete a Node");
    bench.expect("a deleted node deregistered", &[]).await;

    bench.add_node("sim-node-4", "10.0.0.14").await;
    bench
        .expect("a new Ready node registered", &["10.0.0.14"])
        .await;

    // Uncordoned and Ready again: back in.
    bench
        .patch(one, json!({"spec": {"unschedulable": null}}))
        .await;
    bench.set_ready(two, "True").await;
    bench
        .expect("nodes back in service registered", &[ip1, ip2, "10.0.0.14"])
        .await;

    bench
        .patch(
            "sim-node-4",
            json!({"metadata": {"labels": {EXCLUDE_LABEL: "true"}}}),
        )
        .await;
    bench
        .expect(
            "a node excluded from load balancers deregistered",
            &[ip1, ip2],
        )
        .await;

    // Someone registers an IP by hand: the next resync removes it.
    bench.register_by_hand("10.0.0.99").await;
    assert!(
        targets(&bench.elbv2, &bench.arn)
            .await
            .contains(&format!("10.0.0.99:{HTTP_NODE_PORT}"))
    );
    bench.expect("a stray target removed", &[ip1, ip2]).await;
}

/// A TCP relay before the emulator that can refuse and cut every connection, as an unreachable
/// AWS endpoint would.
struct Relay {
    endpoint: String,
    down: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Relay {
    async fn start(to: &str) -> Self {
        let upstream = to.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let down = Arc::new(AtomicBool::new(false));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let refusing = down.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if refusing.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is reset
                }
                let upstream = upstream.clone();
                let mut cuts = cuts.clone();
                // Only cuts from now on end this connection.
                cuts.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Self {
            endpoint,
            down,
            cut,
        }
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            self.cut.send_modify(|n| *n += 1);
        }
    }
}

/// The controller's log line for a failed comparison (platform/src/targets/controller.rs).
const FAILED: &str = "could not bring the target group in line with the nodes";

/// Counts the controller's logged failures, so that the test waits for a failure to have
/// happened (and been logged) instead of sleeping. Installed for the test's thread, where the
/// current-thread runtime of `#[tokio::test]` also runs the controller's task.
#[derive(Clone, Default)]
struct Failures(Arc<AtomicUsize>);

impl Failures {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    /// Waits until `n` failures have been logged, for up to 30 s.
    async fn wait_for(&self, n: usize, what: &str) {
        eventually(
            &format!("{what} ({n} logged failures)"),
            Duration::from_secs(30),
            || std::future::ready(self.count()),
            |seen| *seen >= n,
        )
        .await;
    }
}

impl tracing::Subscriber for Failures {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.is_event()
            && *metadata.level() == tracing::Level::WARN
            && metadata.target().starts_with("platform")
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        struct Message(bool);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" && format!("{value:?}").contains(FAILED) {
                    self.0 = true;
                }
            }
        }
        let mut message = Message(false);
        event.record(&mut message);
        if message.0 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn the_controller_outlives_an_unreachable_aws_and_catches_up() {
    let failures = Failures::default();
    let _log = tracing::subscriber::set_default(failures.clone());
    let bench = bench().await;
    let relay = Relay::start(&bench.endpoint).await;
    relay.set_down(true);
    let controller = bench.controller(&relay.endpoint);
    let [(one, ip1), (_, ip2), (_, ip3)] = NODES;

    // AWS unreachable: the controller fails, logs, backs off, fails its retry too, and is still
    // there.
    failures
        .wait_for(2, "a failure and a failed retry after the back-off")
        .await;
    assert!(!controller.is_finished(), "the controller gave up");
    assert!(targets(&bench.elbv2, &bench.arn).await.is_empty());

    relay.set_down(false);
    bench
        .expect("every node registered once AWS answers", &[ip1, ip2, ip3])
        .await;

    // AWS goes away again while a node is cordoned; once back, the retry catches up.
    relay.set_down(true);
    bench
        .patch(one, json!({"spec": {"unschedulable": true}}))
        .await;
    // A failure logged after the cordon: the controller is failing, so only its back-off's retry
    // calls AWS again (its watch, straight to the cluster, has the cordon long before a call
    // through the relay fails).
    let before = failures.count();
    failures
        .wait_for(before + 1, "a failure after the cordon")
        .await;
    assert!(!controller.is_finished(), "the controller gave up");
    relay.set_down(false);
    bench
        .expect(
            "the cordoned node deregistered after the outage",
            &[ip2, ip3],
        )
        .await;
}
