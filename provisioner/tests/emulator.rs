//! `up`, `down`, re-runs, kills and neighbouring stacks against the local AWS emulator (moto),
//! checked through AWS's own describe calls rather than through the provisioner's outputs.

mod common;

use std::collections::BTreeSet;

use aws_sdk_ec2::types::Filter;
use base64::Engine;
use common::{
    Census, assert_nothing_left, census, config, down, emulator, left, observed, run, up,
};
use provisioner::config::Support;
use provisioner::ingress::{HEALTH_NODE_PORT, HEALTH_PATH, HTTP_NODE_PORT};
use provisioner::plan::StepError;
use provisioner::progress::{Event, Outcome};
use provisioner::stack::STACK_TAG;
use provisioner::steps;
use provisioner::steps::cluster::Cluster;
use provisioner::steps::load_balancer::LoadBalancer;
use provisioner::steps::network::Network;

fn tag(name: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{STACK_TAG}"))
        .values(name)
        .build()
}

#[tokio::test]
async fn up_builds_the_papers_stack_with_every_relationship() {
    let emu = emulator().await;
    let run = up(&emu, "paper").await;
    let aws = &run.cx.aws;

    // Network: VPC with DNS, two public subnets in 2a and 2c, IGW, default route, associations.
    let vpcs = aws
        .clients
        .ec2
        .describe_vpcs()
        .filters(tag("paper"))
        .send()
        .await
        .unwrap();
    assert_eq!(vpcs.vpcs().len(), 1);
    let vpc = &vpcs.vpcs()[0];
    let vpc_id = vpc.vpc_id().unwrap();
    assert_eq!(vpc.cidr_block(), Some("10.0.0.0/16"));
    for attribute in [
        aws_sdk_ec2::types::VpcAttributeName::EnableDnsSupport,
        aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames,
    ] {
        let a = aws
            .clients
            .ec2
            .describe_vpc_attribute()
            .vpc_id(vpc_id)
            .attribute(attribute.clone())
            .send()
            .await
            .unwrap();
        let on = a
            .enable_dns_support()
            .or(a.enable_dns_hostnames())
            .and_then(|v| v.value());
        assert_eq!(on, Some(true), "{attribute:?}");
    }
    let subnets = aws
        .clients
        .ec2
        .describe_subnets()
        .filters(tag("paper"))
        .send()
        .await
        .unwrap();
    let zones: BTreeSet<_> = subnets
        .subnets()
        .iter()
        .filter_map(|s| s.availability_zone())
        .collect();
    assert_eq!(
        zones,
        BTreeSet::from(["ap-northeast-2a", "ap-northeast-2c"])
    );
    let subnet_ids: BTreeSet<&str> = subnets
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_id())
        .collect();
    for subnet in subnets.subnets() {
        assert_eq!(subnet.vpc_id(), Some(vpc_id));
        assert_eq!(subnet.map_public_ip_on_launch(), Some(true));
        let tags: Vec<(&str, &str)> = subnet
            .tags()
            .iter()
            .map(|t| (t.key().unwrap(), t.value().unwrap()))
            .collect();
        assert!(
            tags.contains(&("kubernetes.io/cluster/paper", "shared")),
            "{tags:?}"
        );
        assert!(tags.contains(&("kubernetes.io/role/elb", "1")), "{tags:?}");
    }
    let igws = aws
        .clients
        .ec2
        .describe_internet_gateways()
        .filters(tag("paper"))
        .send()
        .await
        .unwrap();
    assert_eq!(igws.internet_gateways().len(), 1);
    let igw = &igws.internet_gateways()[0];
    assert_eq!(igw.attachments()[0].vpc_id(), Some(vpc_id));
    let tables = aws
        .clients
        .ec2
        .describe_route_tables()
        .filters(tag("paper"))
        .send()
        .await
        .unwrap();
    assert_eq!(tables.route_tables().len(), 1);
    let table = &tables.route_tables()[0];
    assert!(
        table
            .routes()
            .iter()
            .any(|r| r.destination_cidr_block() == Some("0.0.0.0/0")
                && r.gateway_id() == igw.internet_gateway_id())
    );
    let associated: BTreeSet<&str> = table
        .associations()
        .iter()
        .filter_map(|a| a.subnet_id())
        .collect();
    assert_eq!(associated, subnet_ids);

    // Security groups: rules name group ids; NodePorts open to the VPC CIDR.
    let groups = aws
        .clients
        .ec2
        .describe_security_groups()
        .filters(tag("paper"))
        .send()
        .await
        .unwrap();
    let group = |name: &str| {
        groups
            .security_groups()
            .iter()
            .find(|g| g.group_name() == Some(name))
            .unwrap_or_else(|| panic!("security group {name}"))
            .clone()
    };
    let cluster_sg = group("paper-cluster-sg");
    let node_sg = group("paper-node-sg");
    let (cluster_id, node_id) = (cluster_sg.group_id().unwrap(), node_sg.group_id().unwrap());
    let from_group = |g: &aws_sdk_ec2::types::SecurityGroup, src: &str, port: Option<i32>| {
        g.ip_permissions().iter().any(|p| {
            p.user_id_group_pairs()
                .iter()
                .any(|u| u.group_id() == Some(src))
                && port.is_none_or(|port| p.from_port() == Some(port))
        })
    };
    assert!(
        from_group(&cluster_sg, node_id, Some(443)),
        "cluster SG admits nodes on 443"
    );
    assert!(
        from_group(&node_sg, node_id, None),
        "nodes admit each other"
    );
    assert!(
        from_group(&node_sg, cluster_id, Some(1025)),
        "nodes admit the control plane"
    );
    for port in [HTTP_NODE_PORT, HEALTH_NODE_PORT] {
        assert!(
            node_sg
                .ip_permissions()
                .iter()
                .any(|p| p.from_port() == Some(port)
                    && p.ip_ranges()
                        .iter()
                        .any(|r| r.cidr_ip() == Some("10.0.0.0/16"))),
            "NodePort {port} open to the VPC"
        );
    }
    for g in [&cluster_sg, &node_sg] {
        assert!(g.ip_permissions_egress().iter().any(|p| {
            p.ip_protocol() == Some("-1")
                && p.ip_ranges()
                    .iter()
                    .any(|r| r.cidr_ip() == Some("0.0.0.0/0"))
        }));
    }

    // IAM: roles, trust, managed policies, instance profile.
    let cluster_role = run.cx.stack.cluster_role();
    let node_role = run.cx.stack.node_role();
    let attached = |role: String| async move {
        aws.clients
            .iam
            .list_attached_role_policies()
            .role_name(role)
            .send()
            .await
            .unwrap()
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_name().map(str::to_owned))
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        attached(cluster_role.clone()).await,
        BTreeSet::from(["AmazonEKSClusterPolicy".to_owned()])
    );
    assert_eq!(
        attached(node_role.clone()).await,
        BTreeSet::from([
            "AmazonEKSWorkerNodePolicy".to_owned(),
            "AmazonEKS_CNI_Policy".to_owned(),
            "AmazonEC2ContainerRegistryReadOnly".to_owned()
        ])
    );
    let role = aws
        .clients
        .iam
        .get_role()
        .role_name(&cluster_role)
        .send()
        .await
        .unwrap();
    let trust = role.role().unwrap().assume_role_policy_document().unwrap();
    // IAM returns policy documents URL-encoded.
    let trust = percent_encoding::percent_decode_str(trust).decode_utf8_lossy();
    assert!(trust.contains("eks.amazonaws.com"), "{trust}");
    let profile = aws
        .clients
        .iam
        .get_instance_profile()
        .instance_profile_name(run.cx.stack.node_instance_profile())
        .send()
        .await
        .unwrap();
    assert_eq!(
        profile.instance_profile().unwrap().roles()[0].role_name(),
        node_role
    );

    // EKS: subnets, security group, role, both endpoints.
    let cluster = aws
        .clients
        .eks
        .describe_cluster()
        .name("paper")
        .send()
        .await
        .unwrap();
    let cluster = cluster.cluster().unwrap();
    let made = run.cx.outputs.get::<Cluster>().unwrap();
    assert_eq!(cluster.version(), Some(made.version.as_str()));
    assert_eq!(cluster.role_arn(), role.role().map(|r| r.arn()));
    let vpc_config = cluster.resources_vpc_config().unwrap();
    assert!(vpc_config.endpoint_public_access() && vpc_config.endpoint_private_access());
    assert_eq!(
        vpc_config
            .subnet_ids()
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        subnet_ids
    );
    assert_eq!(vpc_config.security_group_ids(), [cluster_id]);

    // Nodes: launch template from the SSM AMI with nodeadm user data; ASG of three over both subnets.
    let ami = aws
        .clients
        .ssm
        .get_parameter()
        .name(provisioner::steps::nodes::ami_parameter(&made.version))
        .send()
        .await
        .unwrap();
    let ami = ami.parameter().unwrap().value().unwrap();
    let versions = aws
        .clients
        .ec2
        .describe_launch_template_versions()
        .launch_template_name("paper-nodes")
        .versions("$Latest")
        .send()
        .await
        .unwrap();
    let data = versions.launch_template_versions()[0]
        .launch_template_data()
        .unwrap();
    assert_eq!(data.image_id(), Some(ami));
    assert_eq!(data.security_group_ids(), [node_id]);
    assert_eq!(
        data.iam_instance_profile().and_then(|p| p.arn()),
        profile.instance_profile().map(|p| p.arn())
    );
    let user_data = base64::engine::general_purpose::STANDARD
        .decode(data.user_data().unwrap())
        .unwrap();
    let user_data = String::from_utf8(user_data).unwrap();
    assert!(user_data.contains("Content-Type: application/node.eks.aws"));
    assert!(user_data.contains("kind: NodeConfig"));
    assert!(user_data.contains(&format!(
        "apiServerEndpoint: \"{}\"",
        cluster.endpoint().unwrap()
    )));
    let groups = aws
        .clients
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("paper-nodes")
        .send()
        .await
        .unwrap();
    let asg = &groups.auto_scaling_groups()[0];
    assert_eq!(
        (asg.min_size(), asg.desired_capacity(), asg.max_size()),
        (Some(3), Some(3), Some(3))
    );
    let asg_subnets: BTreeSet<&str> = asg.vpc_zone_identifier().unwrap().split(',').collect();
    assert_eq!(asg_subnets, subnet_ids);
    assert_eq!(asg.instances().len(), 3);
    let instance_ids: Vec<String> = asg
        .instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_owned())
        .collect();
    let instances = aws
        .clients
        .ec2
        .describe_instances()
        .set_instance_ids(Some(instance_ids))
        .send()
        .await
        .unwrap();
    let node_ips: BTreeSet<String> = instances
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| i.private_ip_address().unwrap().to_owned())
        .collect();
    assert_eq!(node_ips.len(), 3);

    // NLB: internet-facing network LB over both subnets; ip target group with the node IPs; TCP :80.
    let lbs = aws
        .clients
        .elbv2
        .describe_load_balancers()
        .names("paper-nlb")
        .send()
        .await
        .unwrap();
    let lb = &lbs.load_balancers()[0];
    assert_eq!(lb.r#type().map(|t| t.as_str()), Some("network"));
    assert_eq!(lb.scheme().map(|s| s.as_str()), Some("internet-facing"));
    let lb_zones: BTreeSet<&str> = lb
        .availability_zones()
        .iter()
        .filter_map(|z| z.subnet_id())
        .collect();
    assert_eq!(lb_zones, subnet_ids);
    let tgs = aws
        .clients
        .elbv2
        .describe_target_groups()
        .names("paper-http")
        .send()
        .await
        .unwrap();
    let tg = &tgs.target_groups()[0];
    assert_eq!(tg.target_type().map(|t| t.as_str()), Some("ip"));
    assert_eq!(tg.protocol().map(|p| p.as_str()), Some("TCP"));
    assert_eq!(tg.port(), Some(HTTP_NODE_PORT));
    assert_eq!(
        tg.health_check_port(),
        Some(HEALTH_NODE_PORT.to_string().as_str())
    );
    assert_eq!(tg.health_check_path(), Some(HEALTH_PATH));
    let health = aws
        .clients
        .elbv2
        .describe_target_health()
        .target_group_arn(tg.target_group_arn().unwrap())
        .send()
        .await
        .unwrap();
    let targets: BTreeSet<String> = health
        .target_health_descriptions()
        .iter()
        .map(|d| d.target().unwrap().id().unwrap().to_owned())
        .collect();
    assert_eq!(targets, node_ips, "the nodes are registered by private IP");
    let listeners = aws
        .clients
        .elbv2
        .describe_listeners()
        .load_balancer_arn(lb.load_balancer_arn().unwrap())
        .send()
        .await
        .unwrap();
    let listener = &listeners.listeners()[0];
    assert_eq!(
        (listener.port(), listener.protocol().map(|p| p.as_str())),
        (Some(80), Some("TCP"))
    );
    assert_eq!(
        listener.default_actions()[0].target_group_arn(),
        tg.target_group_arn()
    );
    assert_eq!(
        run.cx.outputs.get::<LoadBalancer>().unwrap().dns_name,
        lb.dns_name().unwrap()
    );

    // Progress: every step started and finished successfully.
    let events = run.progress.events();
    for step in steps::infrastructure().steps() {
        assert!(
            events.contains(&Event::Started(step.name())),
            "{} started",
            step.name()
        );
        assert!(
            events.contains(&Event::Finished(step.name(), Outcome::Done)),
            "{} done",
            step.name()
        );
    }
}

#[tokio::test]
async fn up_again_changes_nothing_and_down_twice_leaves_nothing() {
    let emu = emulator().await;
    let first = up(&emu, "rerun").await;
    let vpc_id = first.cx.outputs.get::<Network>().unwrap().vpc_id.clone();

    let again = up(&emu, "rerun").await;
    let counts = again.calls.counts();
    assert_eq!(
        counts.mutating,
        0,
        "a re-run of up made changes: {:?}",
        counts.mutating_operations()
    );
    assert!(counts.total > 0);

    down(&emu, "rerun").await;
    assert_eq!(left(&emu, "rerun").await, Vec::<String>::new());
    assert_nothing_left(&emu, "rerun", "down after two ups").await;
    // Nothing orphaned: no instance or interface of the stack anywhere.
    let aws = &first.cx.aws;
    let instances = aws
        .clients
        .ec2
        .describe_instances()
        .filters(tag("rerun"))
        .send()
        .await
        .unwrap();
    let alive: Vec<_> = instances
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated"))
        .collect();
    assert!(alive.is_empty(), "instances left: {alive:?}");
    let enis = aws
        .clients
        .ec2
        .describe_network_interfaces()
        .filters(Filter::builder().name("vpc-id").values(&vpc_id).build())
        .send()
        .await
        .unwrap();
    assert!(enis.network_interfaces().is_empty());

    let second = down(&emu, "rerun").await;
    assert_eq!(
        second.calls.counts().mutating,
        0,
        "{:?}",
        second.calls.counts().mutating_operations()
    );
    assert_nothing_left(&emu, "rerun", "a second down").await;
}

#[tokio::test]
async fn a_run_killed_mid_way_converges_when_run_again() {
    let emu = emulator().await;
    // Kill at every mutating call a full `up` makes, in turn.
    let full = up(&emu, "killfull").await.calls.counts().mutating;
    assert!(full >= 25, "a full up makes {full} mutating calls");
    for kill_at in 1..=full {
        let name = format!("kill{kill_at}");
        let killed = run(&emu, config(&name)).await;
        killed.calls.kill_after_mutating(kill_at);
        let result = steps::infrastructure().up(&killed.cx).await;
        assert!(
            killed.calls.killed(),
            "kill point {kill_at} of {full} was reached: {:?}",
            killed.calls.counts()
        );
        assert!(result.is_err(), "a killed run reports failure");

        let resumed = up(&emu, &name).await;
        assert_eq!(census(&resumed).await, Census::COMPLETE, "{name}");

        down(&emu, &name).await;
        assert_eq!(
            left(&emu, &name).await,
            Vec::<String>::new(),
            "{name}: down after a killed up"
        );
        assert_nothing_left(&emu, &name, "down after a killed and resumed up").await;
    }
}

/// `up` killed right after its `kill_at`-th mutating call reached AWS (AWS did the work, the
/// process never heard of it), then `down` at once, without resuming: the independent observer
/// sees the partial stack before `down` and nothing of it after.
async fn killed_then_down(emu: &aws::AwsEmulator, kill_at: usize, full: usize) {
    let name = format!("partial{kill_at}");
    let killed = run(emu, config(&name)).await;
    killed.calls.kill_after_mutating(kill_at);
    let result = steps::infrastructure().up(&killed.cx).await;
    assert!(
        killed.calls.killed(),
        "kill point {kill_at} of {full} was reached: {:?}",
        killed.calls.counts()
    );
    assert!(result.is_err(), "{name}: a killed run reports failure");
    let partial = observed(emu, &name).await;
    assert!(
        !partial.is_empty(),
        "{name}: {kill_at} mutating calls reached AWS, yet the account shows nothing of the stack"
    );

    down(emu, &name).await;
    assert_nothing_left(
        emu,
        &name,
        &format!(
            "down after an up killed at mutating call {kill_at} of {full} (it had made {partial:#?})"
        ),
    )
    .await;
}

/// How many kill points run at once: each is sequential in itself, moto serves them all.
const KILLS_AT_ONCE: usize = 4;

#[tokio::test]
async fn down_after_a_partial_up_leaves_nothing() {
    use futures::StreamExt;

    let emu = emulator().await;
    // Every mutating call a full `up` of the AWS side makes is a kill point.
    let full = up(&emu, "partialfull").await.calls.counts().mutating;
    assert!(full >= 25, "a full up makes {full} mutating calls");
    down(&emu, "partialfull").await;
    assert_nothing_left(&emu, "partialfull", "down after a full up").await;

    let started = std::time::Instant::now();
    futures::stream::iter(1..=full)
        .map(|kill_at| killed_then_down(&emu, kill_at, full))
        .buffer_unordered(KILLS_AT_ONCE)
        .collect::<Vec<()>>()
        .await;
    eprintln!(
        "{full} kill points, each followed by down, in {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn two_stacks_do_not_touch_each_other() {
    let emu = emulator().await;
    up(&emu, "alpha").await;
    up(&emu, "beta").await;
    let beta_before = left(&emu, "beta").await;
    let beta_seen = observed(&emu, "beta").await;
    assert!(
        beta_seen.iter().any(|r| r.starts_with("EKS cluster beta"))
            && beta_seen.iter().any(|r| r.starts_with("instance ")),
        "{beta_seen:#?}"
    );
    down(&emu, "alpha").await;
    assert_eq!(left(&emu, "alpha").await, Vec::<String>::new());
    assert_nothing_left(&emu, "alpha", "alpha's down").await;
    assert_eq!(
        left(&emu, "beta").await,
        beta_before,
        "alpha's down left beta intact"
    );
    assert_eq!(
        observed(&emu, "beta").await,
        beta_seen,
        "alpha's down left beta intact, as the account shows it"
    );
    let again = up(&emu, "beta").await;
    assert_eq!(again.calls.counts().mutating, 0, "beta still complete");
}

#[tokio::test]
async fn plan_and_status_change_nothing() {
    let emu = emulator().await;
    let fresh = run(&emu, config("lookonly")).await;
    let inspected = steps::infrastructure().inspect(&fresh.cx).await;
    for (step, found) in &inspected {
        let found = found.as_ref().unwrap_or_else(|e| panic!("{step}: {e}"));
        assert!(found.iter().all(|r| r.id.is_none()), "{step}: {found:?}");
    }
    assert_eq!(fresh.calls.counts().mutating, 0);
}

#[tokio::test]
async fn a_foreign_resource_with_our_name_stops_up_with_the_step_and_resource() {
    let emu = emulator().await;
    let probe = run(&emu, config("clash")).await;
    // Someone else's role under the name the stack would use: never adopt it.
    probe
        .cx
        .aws
        .clients
        .iam
        .create_role()
        .role_name(probe.cx.stack.cluster_role())
        .assume_role_policy_document(provisioner::steps::iam::trust_policy("eks.amazonaws.com"))
        .send()
        .await
        .unwrap();
    let err = steps::infrastructure().up(&probe.cx).await.unwrap_err();
    let (step, error) = &err.failed[0];
    assert_eq!(*step, "iam");
    assert!(matches!(error, StepError::NotOwned { .. }), "{error}");
    assert!(
        err.to_string().contains(&probe.cx.stack.cluster_role()),
        "{err}"
    );
    assert!(
        err.skipped.contains(&"cluster") && err.skipped.contains(&"nodes"),
        "{:?}",
        err.skipped
    );
    // And down refuses to delete it too, but removes the rest.
    let result = steps::infrastructure().down(&probe.cx).await;
    assert!(result.is_err());
    let role = probe
        .cx
        .aws
        .clients
        .iam
        .get_role()
        .role_name(probe.cx.stack.cluster_role())
        .send()
        .await;
    assert!(role.is_ok(), "the foreign role is untouched");
    let vpcs = probe
        .cx
        .aws
        .clients
        .ec2
        .describe_vpcs()
        .filters(tag("clash"))
        .send()
        .await
        .unwrap();
    assert!(vpcs.vpcs().is_empty(), "the stack's own VPC was removed");
    // Only the foreign role is left in the account (the observer counts it by its name).
    assert_eq!(
        observed(&emu, "clash").await,
        [format!("IAM role {}", probe.cx.stack.cluster_role())],
        "down removed everything but the foreign role"
    );
}

/// Every CreateCluster request as the SDK was given it: token and `upgradePolicy.supportType`
/// (moto 5.2 accepts `upgradePolicy` but neither keeps nor returns it).
/// `(clientRequestToken, upgradePolicy.supportType)` of one CreateCluster call.
type CreateClusterRequest = (Option<String>, Option<String>);

#[derive(Debug, Clone, Default)]
struct CreateClusterRequests(std::sync::Arc<std::sync::Mutex<Vec<CreateClusterRequest>>>);

impl CreateClusterRequests {
    fn taken(&self) -> Vec<CreateClusterRequest> {
        self.0.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for CreateClusterRequests {
    fn name(&self) -> &'static str {
        "CreateClusterRequests"
    }

    fn read_before_serialization(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        use aws_sdk_eks::operation::create_cluster::CreateClusterInput;
        if let Some(input) = context.input().downcast_ref::<CreateClusterInput>() {
            let support = input
                .upgrade_policy()
                .and_then(|u| u.support_type())
                .map(|t| t.as_str().to_owned());
            if let Ok(mut taken) = self.0.lock() {
                taken.push((input.client_request_token().map(str::to_owned), support));
            }
        }
        Ok(())
    }
}

/// A run whose EKS client also records the CreateCluster requests.
async fn recorded_run(
    emu: &aws::AwsEmulator,
    config: provisioner::config::StackConfig,
) -> (common::Run, CreateClusterRequests) {
    let mut run = run(emu, config).await;
    let requests = CreateClusterRequests::default();
    let eks = &run.cx.aws.clients.eks;
    run.cx.aws.clients.eks = aws_sdk_eks::Client::from_conf(
        eks.config()
            .to_builder()
            .interceptor(requests.clone())
            .build(),
    );
    (run, requests)
}

/// The newest version in standard support today whose node AMI parameter the emulator serves.
async fn newest_with_an_ami(run: &common::Run) -> String {
    let today = run.cx.config.today;
    for release in provisioner::config::versions::accepted(today, Support::Standard) {
        let found = run
            .cx
            .aws
            .clients
            .ssm
            .get_parameter()
            .name(provisioner::steps::nodes::ami_parameter(release.version))
            .send()
            .await;
        if found.is_ok() {
            return release.version.to_owned();
        }
    }
    panic!("the emulator serves no AMI parameter of an accepted version");
}

/// Issue 13, items 4 and 5: CreateCluster asks for upgrade policy STANDARD (no extended-support
/// charges), with the newest version the AMI parameters know, and each `up` sends its own
/// `clientRequestToken` (the same one on every retry of that call).
#[tokio::test]
async fn create_cluster_asks_for_standard_support_with_a_fresh_token_per_run() {
    let emu = emulator().await;
    let name = "tokens";

    let (plan_run, _) = recorded_run(&emu, config(name)).await;
    let newest = newest_with_an_ami(&plan_run).await;
    let said = steps::cluster::support_plan(&plan_run.cx).await.unwrap();
    assert!(
        said[0].contains(&format!("Kubernetes {newest}"))
            && said[0].contains("upgrade policy STANDARD"),
        "{said:?}"
    );
    assert!(
        said.iter().any(|l| l.contains("standard support until")),
        "{said:?}"
    );

    let (first, first_requests) = recorded_run(&emu, config(name)).await;
    steps::infrastructure().up(&first.cx).await.unwrap();
    let taken = first_requests.taken();
    assert!(!taken.is_empty(), "no CreateCluster was made");
    let first_token = taken[0].0.clone().expect("a clientRequestToken");
    for (token, support) in &taken {
        assert_eq!(
            token.as_deref(),
            Some(first_token.as_str()),
            "a retry changed the token"
        );
        assert_eq!(support.as_deref(), Some("STANDARD"));
    }
    assert_ne!(first_token, format!("{name}-{}", first.cx.stack.region));
    let described = first
        .cx
        .aws
        .clients
        .eks
        .describe_cluster()
        .name(name)
        .send()
        .await
        .unwrap();
    let described = described.cluster().unwrap();
    assert_eq!(described.version(), Some(newest.as_str()));
    // moto drops upgradePolicy; should it ever keep it, it must be what was asked.
    if let Some(policy) = described.upgrade_policy() {
        assert_eq!(policy.support_type().map(|t| t.as_str()), Some("STANDARD"));
    }

    down(&emu, name).await;
    assert_nothing_left(&emu, name, "the first down").await;
    let (second, second_requests) = recorded_run(&emu, config(name)).await;
    steps::infrastructure().up(&second.cx).await.unwrap();
    let taken = second_requests.taken();
    assert!(!taken.is_empty(), "no CreateCluster in the second up");
    let second_token = taken[0].0.clone().expect("a clientRequestToken");
    assert_ne!(
        second_token, first_token,
        "the second up reused the first up's token"
    );
    assert!(taken.iter().all(|(_, s)| s.as_deref() == Some("STANDARD")));
    down(&emu, name).await;
    assert_nothing_left(&emu, name, "the second down").await;
}

/// Issue 13, item 4: with extended support asked for, CreateCluster says EXTENDED.
#[tokio::test]
async fn extended_support_is_asked_for_only_when_configured() {
    let emu = emulator().await;
    let mut config = config("extended");
    config.support = Support::Extended;
    let (run, requests) = recorded_run(&emu, config).await;
    steps::infrastructure().up(&run.cx).await.unwrap();
    let taken = requests.taken();
    assert!(!taken.is_empty());
    assert!(
        taken.iter().all(|(_, s)| s.as_deref() == Some("EXTENDED")),
        "{taken:?}"
    );
    down(&emu, "extended").await;
    assert_nothing_left(&emu, "extended", "down").await;
}

/// The independent observer (`common::account`) can fail: what is made by hand for a stack (by
/// its tag, by its names, inside its VPC, by the cloud provider's cluster tag) is listed, and
/// what belongs to other stacks or to no stack is not.
#[tokio::test]
async fn the_account_observer_sees_what_a_stack_leaves_behind() {
    use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};

    assert_eq!(common::account::STACK_TAG, STACK_TAG);
    let emu = emulator().await;
    assert_eq!(observed(&emu, "seen").await, Vec::<String>::new());

    let sdk = common::account_config(&emu).await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let iam = aws_sdk_iam::Client::new(&sdk);
    let ecr = aws_sdk_ecr::Client::new(&sdk);
    let elb = aws_sdk_elasticloadbalancing::Client::new(&sdk);
    let tags = |resource: ResourceType, stack: &str| {
        TagSpecification::builder()
            .resource_type(resource)
            .tags(Tag::builder().key(STACK_TAG).value(stack).build())
            .build()
    };
    let vpc = |stack: &'static str, cidr: &'static str| {
        let ec2 = ec2.clone();
        let spec = tags(ResourceType::Vpc, stack);
        async move {
            ec2.create_vpc()
                .cidr_block(cidr)
                .tag_specifications(spec)
                .send()
                .await
                .unwrap()
                .vpc()
                .and_then(|v| v.vpc_id())
                .unwrap()
                .to_owned()
        }
    };
    let mine = vpc("seen", "10.1.0.0/16").await;
    let theirs = vpc("seen2", "10.2.0.0/16").await;
    // Untagged, inside the stack's VPC: found by where they are.
    let subnet = ec2
        .create_subnet()
        .vpc_id(&mine)
        .cidr_block("10.1.1.0/24")
        .send()
        .await
        .unwrap();
    let subnet = subnet.subnet().and_then(|s| s.subnet_id()).unwrap();
    let group = ec2
        .create_security_group()
        .vpc_id(&mine)
        .group_name("made-by-hand")
        .description("an untagged group in the stack's VPC")
        .send()
        .await
        .unwrap();
    let group = group.group_id().unwrap();
    let table = ec2.create_route_table().vpc_id(&mine).send().await.unwrap();
    let table = table
        .route_table()
        .and_then(|t| t.route_table_id())
        .unwrap();
    let template = ec2
        .create_launch_template()
        .launch_template_name("seen-nodes")
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .image_id("ami-12c6146b")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let template = template
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .unwrap();
    // Outside: another stack's group in its VPC.
    ec2.create_security_group()
        .vpc_id(&theirs)
        .group_name("theirs")
        .description("another stack's")
        .send()
        .await
        .unwrap();

    // IAM: a role by its name, with an inline policy; one by its tag; others not.
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    for (role, tag) in [
        ("seen-ap-northeast-2-eks-node", None),
        ("kept-by-tag", Some("seen")),
        ("seen2-ap-northeast-2-eks-node", None),
        ("someone-elses", Some("seen2")),
    ] {
        let mut create = iam
            .create_role()
            .role_name(role)
            .assume_role_policy_document(trust);
        if let Some(stack) = tag {
            create = create.tags(
                aws_sdk_iam::types::Tag::builder()
                    .key(STACK_TAG)
                    .value(stack)
                    .build()
                    .unwrap(),
            );
        }
        create.send().await.unwrap();
    }
    iam.put_role_policy()
        .role_name("seen-ap-northeast-2-eks-node")
        .policy_name("seen-targets")
        .policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2:DescribeInstances","Resource":"*"}]}"#,
        )
        .send()
        .await
        .unwrap();
    iam.create_instance_profile()
        .instance_profile_name("a-profile-of-the-role")
        .send()
        .await
        .unwrap();
    iam.add_role_to_instance_profile()
        .instance_profile_name("a-profile-of-the-role")
        .role_name("seen-ap-northeast-2-eks-node")
        .send()
        .await
        .unwrap();

    // ECR: the stack's repository by name; another stack's not.
    for repository in ["seen/web", "seen2/web"] {
        ecr.create_repository()
            .repository_name(repository)
            .send()
            .await
            .unwrap();
    }
    // A Classic ELB the cloud provider made for the stack's cluster, by its cluster tag.
    elb.create_load_balancer()
        .load_balancer_name("a0123456789abcdef")
        .availability_zones("ap-northeast-2a")
        .listeners(
            aws_sdk_elasticloadbalancing::types::Listener::builder()
                .protocol("TCP")
                .load_balancer_port(80)
                .instance_port(31080)
                .build()
                .unwrap(),
        )
        .tags(
            aws_sdk_elasticloadbalancing::types::Tag::builder()
                .key("kubernetes.io/cluster/seen")
                .value("owned")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let mut expected = vec![
        format!("VPC {mine} (10.1.0.0/16)"),
        format!("subnet {subnet} (10.1.1.0/24)"),
        format!("security group {group} (made-by-hand)"),
        format!("route table {table} ({mine})"),
        format!("launch template {template} (seen-nodes)"),
        "IAM role seen-ap-northeast-2-eks-node".to_owned(),
        "IAM inline role policy seen-ap-northeast-2-eks-node/seen-targets".to_owned(),
        "IAM role kept-by-tag".to_owned(),
        "IAM instance profile a-profile-of-the-role".to_owned(),
        "ECR repository seen/web".to_owned(),
        "Classic load balancer a0123456789abcdef".to_owned(),
    ];
    expected.sort();
    assert_eq!(observed(&emu, "seen").await, expected);
    let theirs_seen = observed(&emu, "seen2").await;
    assert!(
        theirs_seen.contains(&"ECR repository seen2/web".to_owned())
            && theirs_seen.contains(&"IAM role someone-elses".to_owned()),
        "{theirs_seen:#?}"
    );
}
