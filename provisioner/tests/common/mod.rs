//! Shared set-up for tests against the local AWS emulator: each test starts its own moto on a
//! free port (stopped when the test ends) and uses its own stack names.

#![allow(dead_code, clippy::expect_used)]

pub mod account;

use std::sync::Arc;
use std::time::Duration;

use aws::{AwsEmulator, Front, Port};
use provisioner::aws::{CallLog, Target};
use provisioner::config::{Overrides, StackConfig, StackFile};
use provisioner::plan::Context;
use provisioner::progress::RecordedProgress;
use provisioner::steps;
use provisioner::steps::load_balancer::LoadBalancer;
use provisioner::steps::nodes::Nodes;
use provisioner::{Aws, remaining};

pub async fn emulator() -> AwsEmulator {
    AwsEmulator::start(Port::Any)
        .await
        .expect("the AWS emulator starts (needs python3; the venv is created on first use)")
}

/// The default stack under another name, with deadlines short enough for a test to fail fast.
pub fn config(name: &str) -> StackConfig {
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

/// A run against the emulator, with its own call log and recorded progress.
pub struct Run {
    pub cx: Context,
    pub calls: CallLog,
    pub progress: Arc<RecordedProgress>,
}

/// Where a test's AWS calls go: the emulator itself, or a realistic front before it.
pub trait Endpoint {
    fn url(&self) -> String;
}

impl Endpoint for AwsEmulator {
    fn url(&self) -> String {
        self.endpoint().to_owned()
    }
}

impl Endpoint for Front {
    fn url(&self) -> String {
        self.endpoint()
    }
}

pub async fn run(emulator: &impl Endpoint, config: StackConfig) -> Run {
    let calls = CallLog::default();
    let target = Target::Local {
        endpoint: emulator.url(),
    };
    let aws = Aws::connect(&target, &config.region, calls.clone()).await;
    let progress = Arc::new(RecordedProgress::default());
    Run {
        cx: Context::new(config, aws, progress.clone()),
        calls,
        progress,
    }
}

pub async fn up(emulator: &impl Endpoint, name: &str) -> Run {
    let run = run(emulator, config(name)).await;
    steps::infrastructure()
        .up(&run.cx)
        .await
        .unwrap_or_else(|e| panic!("up of {name} failed: {e}"));
    run
}

pub async fn down(emulator: &impl Endpoint, name: &str) -> Run {
    let run = run(emulator, config(name)).await;
    steps::infrastructure()
        .down(&run.cx)
        .await
        .unwrap_or_else(|e| panic!("down of {name} failed: {e}"));
    run
}

/// Everything of the stack still in AWS, as `kind name` lines (empty when all is gone).
pub async fn left(emulator: &impl Endpoint, name: &str) -> Vec<String> {
    let run = run(emulator, config(name)).await;
    remaining(&steps::infrastructure(), &run.cx)
        .await
        .expect("inspecting the stack")
        .into_iter()
        .map(|(step, r)| format!("{step}: {} {} {}", r.kind, r.name, r.id.unwrap_or_default()))
        .collect()
}

/// An SDK configuration for the account behind `emulator`, made here with plain `aws-config`
/// (not the provisioner's connection), for the independent observer.
pub async fn account_config(emulator: &impl Endpoint) -> aws_types::SdkConfig {
    let http = aws_smithy_http_client::Builder::new().build_http();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_types::region::Region::new(config("observer").region))
        .endpoint_url(emulator.url())
        .credentials_provider(aws_credential_types::Credentials::new(
            "test", "test", None, None, "observer",
        ))
        .http_client(http)
        .load()
        .await
}

/// Everything of the stack in the emulated account, seen by the independent observer
/// ([`account::leftovers`]); pass the emulator itself, not a front that injects faults.
pub async fn observed(emulator: &impl Endpoint, name: &str) -> Vec<String> {
    account::leftovers(&account_config(emulator).await, name).await
}

/// Asserts that the independent observer sees nothing of the stack in the account.
pub async fn assert_nothing_left(emulator: &impl Endpoint, name: &str, context: &str) {
    let left = observed(emulator, name).await;
    assert!(
        left.is_empty(),
        "{context}: the account still holds, of stack {name}:\n  {}",
        left.join("\n  ")
    );
}

/// What a stack has in AWS, counted through AWS's own describe calls (not the provisioner's).
#[derive(Debug, PartialEq, Eq)]
pub struct Census {
    pub vpcs: usize,
    pub subnets: usize,
    pub internet_gateways: usize,
    pub route_tables: usize,
    pub security_groups: usize,
    pub nodes: usize,
    pub targets: usize,
    pub listeners: usize,
    pub node_policies: usize,
}

impl Census {
    /// The paper's stack, complete.
    pub const COMPLETE: Census = Census {
        vpcs: 1,
        subnets: 2,
        internet_gateways: 1,
        route_tables: 1,
        security_groups: 2,
        nodes: 3,
        targets: 3,
        listeners: 1,
        node_policies: 3,
    };
}

/// Counts what the run's stack has, after an `up` in that run (which provides the NLB's ARNs).
pub async fn census(run: &Run) -> Census {
    let aws = &run.cx.aws.clients;
    let tagged = aws_sdk_ec2::types::Filter::builder()
        .name(format!("tag:{}", provisioner::stack::STACK_TAG))
        .values(&run.cx.stack.name)
        .build();
    let lb = run.cx.outputs.get::<LoadBalancer>().expect("an up ran");
    let nodes = run.cx.outputs.get::<Nodes>().expect("an up ran");
    Census {
        vpcs: aws
            .ec2
            .describe_vpcs()
            .filters(tagged.clone())
            .send()
            .await
            .expect("VPCs")
            .vpcs()
            .len(),
        subnets: aws
            .ec2
            .describe_subnets()
            .filters(tagged.clone())
            .send()
            .await
            .expect("subnets")
            .subnets()
            .len(),
        internet_gateways: aws
            .ec2
            .describe_internet_gateways()
            .filters(tagged.clone())
            .send()
            .await
            .expect("gateways")
            .internet_gateways()
            .len(),
        route_tables: aws
            .ec2
            .describe_route_tables()
            .filters(tagged.clone())
            .send()
            .await
            .expect("route tables")
            .route_tables()
            .len(),
        security_groups: aws
            .ec2
            .describe_security_groups()
            .filters(tagged)
            .send()
            .await
            .expect("security groups")
            .security_groups()
            .len(),
        nodes: nodes.instances.len(),
        targets: aws
            .elbv2
            .describe_target_health()
            .target_group_arn(&lb.target_group_arn)
            .send()
            .await
            .expect("targets")
            .target_health_descriptions()
            .len(),
        listeners: aws
            .elbv2
            .describe_listeners()
            .load_balancer_arn(&lb.arn)
            .send()
            .await
            .expect("listeners")
            .listeners()
            .len(),
        node_policies: aws
            .iam
            .list_attached_role_policies()
            .role_name(run.cx.stack.node_role())
            .send()
            .await
            .expect("node role policies")
            .attached_policies()
            .len(),
    }
}
