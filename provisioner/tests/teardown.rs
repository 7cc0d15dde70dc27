//! Issue 13, item 3: `down` deletes the cluster's LoadBalancer Services first, then sweeps the
//! load balancers Kubernetes made for them (Classic ELBs from the in-tree AWS cloud provider, and
//! ELBv2 ones) and waits until they are gone, then the rest, sweeping network interfaces that
//! became detached late. The AWS side is the emulator, the cluster the simulator; the test acts
//! as the cloud provider, and checks what is left with plain SDK calls, not the product's
//! inventory.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test set-up

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, ResourceType, TagSpecification};
use aws_sdk_elasticloadbalancingv2::types::{
    Action as ForwardAction, ActionTypeEnum, LoadBalancerTypeEnum, ProtocolEnum, TargetTypeEnum,
};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use provisioner::aws::{CallLog, Target};
use provisioner::plan::{Context, Plan};
use provisioner::progress::{Action, Change, Event, Outcome, Progress, RecordedProgress};
use provisioner::steps::network::Network;
use provisioner::steps::security_groups::SecurityGroups;
use provisioner::steps::{self, PlatformSettings, leftovers};
use provisioner::{Aws, remaining};

const STACK: &str = "teardown";
/// The Service the cloud provider made its load balancers for.
const NAMESPACE: &str = "default";
const SERVICE: &str = "shop";

/// The full plan; its Kubernetes steps reach the simulator as they reach EKS (DescribeCluster's
/// endpoint and CA, an EKS token), with no override. `down` needs no site image.
fn full_plan() -> Plan {
    steps::full(PlatformSettings::default())
}

fn ec2_tags(resource: ResourceType, pairs: &[(String, String)]) -> TagSpecification {
    let mut spec = TagSpecification::builder().resource_type(resource);
    for (k, v) in pairs {
        spec = spec.tags(aws_sdk_ec2::types::Tag::builder().key(k).value(v).build());
    }
    spec.build()
}

/// What the cloud provider made in AWS for the Service.
struct MadeByKubernetes {
    classic: String,
    classic_group: String,
    nlb: String,
    target_group: String,
    interface: String,
}

/// A `type: LoadBalancer` Service in the simulated cluster; answers its uid.
async fn create_service(kube: &kube::Client) -> String {
    let service = Service {
        metadata: ObjectMeta {
            name: Some(SERVICE.into()),
            namespace: Some(NAMESPACE.into()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            selector: Some([("app".to_owned(), SERVICE.to_owned())].into()),
            ports: Some(vec![ServicePort {
                port: 80,
                target_port: Some(IntOrString::Int(8080)),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let created = Api::<Service>::namespaced(kube.clone(), NAMESPACE)
        .create(&PostParams::default(), &service)
        .await
        .expect("the LoadBalancer Service");
    created.metadata.uid.expect("a uid")
}

/// The Classic ELB of the Service as the in-tree AWS cloud provider makes it
/// (kubernetes/cloud-provider-aws `pkg/providers/v1/aws_loadbalancer.go`, `ensureLoadBalancer`):
/// named `a` + the Service's uid without dashes, cut to 32 (k8s.io/cloud-provider
/// `DefaultLoadBalancerName`), tagged `kubernetes.io/cluster/<cluster>=owned` and
/// `kubernetes.io/service-name`, in the cluster's subnets, with its own security group
/// (`k8s-elb-<name>`, tagged the same) that the nodes' group admits.
async fn create_classic(
    aws: &Aws,
    uid: &str,
    network: &Network,
    node_group: &str,
) -> (String, String) {
    let mut name = format!("a{}", uid.replace('-', ""));
    name.truncate(32);
    let owned = vec![
        (format!("kubernetes.io/cluster/{STACK}"), "owned".to_owned()),
        (
            "kubernetes.io/service-name".to_owned(),
            format!("{NAMESPACE}/{SERVICE}"),
        ),
    ];
    let group = aws
        .clients
        .ec2
        .create_security_group()
        .group_name(format!("k8s-elb-{name}"))
        .description(format!("Security group for Kubernetes ELB {name}"))
        .vpc_id(&network.vpc_id)
        .tag_specifications(ec2_tags(ResourceType::SecurityGroup, &owned))
        .send()
        .await
        .expect("the load balancer's security group")
        .group_id()
        .expect("a group id")
        .to_owned();
    aws.clients
        .ec2
        .authorize_security_group_ingress()
        .group_id(node_group)
        .ip_permissions(
            aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("-1")
                .user_id_group_pairs(
                    aws_sdk_ec2::types::UserIdGroupPair::builder()
                        .group_id(&group)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("the nodes admit the load balancer");
    let mut tags = Vec::new();
    for (k, v) in &owned {
        tags.push(
            aws_sdk_elasticloadbalancing::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .unwrap(),
        );
    }
    aws.clients
        .elb
        .create_load_balancer()
        .load_balancer_name(&name)
        .listeners(
            aws_sdk_elasticloadbalancing::types::Listener::builder()
                .protocol("TCP")
                .load_balancer_port(80)
                .instance_protocol("TCP")
                .instance_port(31080)
                .build()
                .unwrap(),
        )
        .set_subnets(Some(network.subnet_ids.clone()))
        .security_groups(&group)
        .set_tags(Some(tags))
        .send()
        .await
        .expect("the Classic ELB");
    (name, group)
}

/// An NLB with a target group as the AWS Load Balancer Controller makes them, tagged
/// `elbv2.k8s.aws/cluster=<cluster>` (kubernetes-sigs/aws-load-balancer-controller
/// `pkg/deploy/tracking/provider.go`); answers their ARNs.
async fn create_nlb(aws: &Aws, network: &Network) -> (String, String) {
    let tags: Vec<aws_sdk_elasticloadbalancingv2::types::Tag> = [
        ("elbv2.k8s.aws/cluster", STACK.to_owned()),
        ("service.k8s.aws/stack", format!("{NAMESPACE}/{SERVICE}")),
    ]
    .into_iter()
    .map(|(k, v)| {
        aws_sdk_elasticloadbalancingv2::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
    })
    .collect();
    let elbv2 = &aws.clients.elbv2;
    let lb = elbv2
        .create_load_balancer()
        .name("k8s-default-shop-0123456789")
        .r#type(LoadBalancerTypeEnum::Network)
        .set_subnets(Some(network.subnet_ids.clone()))
        .set_tags(Some(tags.clone()))
        .send()
        .await
        .expect("the NLB");
    let lb_arn = lb.load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_owned();
    let tg = elbv2
        .create_target_group()
        .name("k8s-default-shop-abcdef0123")
        .protocol(ProtocolEnum::Tcp)
        .port(31080)
        .vpc_id(&network.vpc_id)
        .target_type(TargetTypeEnum::Ip)
        .set_tags(Some(tags))
        .send()
        .await
        .expect("the target group");
    let tg_arn = tg.target_groups()[0].target_group_arn().unwrap().to_owned();
    elbv2
        .create_listener()
        .load_balancer_arn(&lb_arn)
        .protocol(ProtocolEnum::Tcp)
        .port(80)
        .default_actions(
            ForwardAction::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(&tg_arn)
                .build(),
        )
        .send()
        .await
        .expect("the listener");
    (lb_arn, tg_arn)
}

/// A network interface attached to nothing in `subnet`, as the VPC CNI leaves them behind.
async fn create_detached_interface(ec2: &aws_sdk_ec2::Client, subnet: &str) -> String {
    let eni = ec2
        .create_network_interface()
        .subnet_id(subnet)
        .description("aws-K8S-i-0123456789abcdef0")
        .send()
        .await
        .expect("a detached network interface");
    eni.network_interface()
        .and_then(|e| e.network_interface_id())
        .expect("an interface id")
        .to_owned()
}

/// A Classic ELB of another cluster, outside the stack: `down` must leave it.
async fn create_foreign_classic(aws: &Aws) -> String {
    let name = "another-clusters-elb".to_owned();
    aws.clients
        .elb
        .create_load_balancer()
        .load_balancer_name(&name)
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
                .key("kubernetes.io/cluster/teardown2")
                .value("owned")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("another cluster's Classic ELB");
    name
}

/// The recorder, and a network interface made detached in a stack subnet the moment the network
/// step has removed the internet gateway: after the step's first look at the VPC, as when the
/// VPC CNI or a load balancer releases one late.
struct LateInterface {
    recorded: RecordedProgress,
    ec2: aws_sdk_ec2::Client,
    subnet: String,
    runtime: tokio::runtime::Handle,
    made: Mutex<Option<String>>,
}

impl Progress for LateInterface {
    fn started(&self, step: &'static str, title: &str) {
        self.recorded.started(step, title);
    }

    fn waiting(&self, step: &'static str, status: &str) {
        self.recorded.waiting(step, status);
    }

    fn changed(&self, change: &Change) {
        self.recorded.changed(change);
        let gateway_gone = change.step == "network"
            && change.kind == "internet gateway"
            && change.action == Action::Deleted;
        let mut made = self.made.lock().unwrap();
        if gateway_gone && made.is_none() {
            let id = tokio::task::block_in_place(|| {
                self.runtime
                    .block_on(create_detached_interface(&self.ec2, &self.subnet))
            });
            *made = Some(id);
        }
    }

    fn finished(&self, step: &'static str, outcome: &Outcome, elapsed: Duration) {
        self.recorded.finished(step, outcome, elapsed);
    }
}

/// Acts as the cloud provider's service controller: while the Service exists, its Classic ELB
/// exists (made again when it is missing); it stops once the Service is gone. A sweep before the
/// Service's deletion would see the load balancer come back.
fn cloud_provider(
    kube: kube::Client,
    elb: aws_sdk_elasticloadbalancing::Client,
    name: String,
    subnets: Vec<String>,
    group: String,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let services = Api::<Service>::namespaced(kube, NAMESPACE);
        let mut remade = 0;
        while services.get_opt(SERVICE).await.expect("Service").is_some() {
            let described = elb
                .describe_load_balancers()
                .load_balancer_names(&name)
                .send()
                .await;
            if described.is_err() {
                elb.create_load_balancer()
                    .load_balancer_name(&name)
                    .listeners(
                        aws_sdk_elasticloadbalancing::types::Listener::builder()
                            .protocol("TCP")
                            .load_balancer_port(80)
                            .instance_port(31080)
                            .build()
                            .unwrap(),
                    )
                    .set_subnets(Some(subnets.clone()))
                    .security_groups(&group)
                    .tags(
                        aws_sdk_elasticloadbalancing::types::Tag::builder()
                            .key(format!("kubernetes.io/cluster/{STACK}"))
                            .value("owned")
                            .build()
                            .unwrap(),
                    )
                    .send()
                    .await
                    .expect("the Classic ELB, again");
                remade += 1;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        remade
    })
}

fn position(events: &[Event], wanted: &Event) -> usize {
    events
        .iter()
        .position(|e| e == wanted)
        .unwrap_or_else(|| panic!("{wanted:?} not in {events:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_deletes_the_services_then_what_kubernetes_made_then_the_network() {
    let emu = common::emulator().await;
    // The simulator as the stack's EKS control plane: HTTPS with its own CA, announced to the
    // emulator so DescribeCluster reports it, EKS tokens authenticated through the emulator's STS
    // and the cluster's access entries (the platform teardown branch runs on the real token path).
    let sim = ::cluster::ClusterSim::start(::cluster::SimConfig {
        admin_token: Some("teardown-admin".into()),
        tls: Some(::cluster::TlsIdentity::generate().expect("the cluster's certificates")),
        aws: Some(::cluster::cloud::AwsJoin {
            endpoint: emu.endpoint().to_owned(),
            region: common::config(STACK).region,
            cluster_name: STACK.to_owned(),
            poll_interval: Duration::from_millis(200),
        }),
        ..::cluster::SimConfig::default()
    })
    .await
    .expect("the cluster simulator");
    sim.announce_to_emulator(emu.endpoint(), STACK)
        .await
        .expect("the emulator takes the cluster's endpoint");
    let kube = sim.client().await.expect("a client of the simulator");

    let up = common::up(&emu, STACK).await;
    let aws = &up.cx.aws;
    let network = up.cx.outputs.get::<Network>().expect("the network");
    let groups = up.cx.outputs.get::<SecurityGroups>().expect("the groups");

    // Acting as the cloud provider for a `type: LoadBalancer` Service.
    let uid = create_service(&kube).await;
    let (classic, classic_group) = create_classic(aws, &uid, &network, &groups.node_sg_id).await;
    let (nlb, target_group) = create_nlb(aws, &network).await;
    let interface = create_detached_interface(&aws.clients.ec2, &network.subnet_ids[0]).await;
    let made = MadeByKubernetes {
        classic,
        classic_group,
        nlb,
        target_group,
        interface,
    };
    let foreign = create_foreign_classic(aws).await;

    // `plan` and `status` show what Kubernetes made, both kinds.
    let inspected = steps::infrastructure().inspect(&up.cx).await;
    let (_, swept) = inspected
        .iter()
        .find(|(step, _)| *step == leftovers::ID.name())
        .expect("the leftovers step");
    let ids: Vec<&str> = swept
        .as_ref()
        .expect("inspect")
        .iter()
        .filter_map(|r| r.id.as_deref())
        .collect();
    for id in [&made.classic, &made.nlb, &made.target_group] {
        assert!(ids.contains(&id.as_str()), "{id} not in {ids:?}");
    }
    assert!(!ids.contains(&foreign.as_str()), "{ids:?}");

    let provider = cloud_provider(
        kube.clone(),
        aws.clients.elb.clone(),
        made.classic.clone(),
        network.subnet_ids.clone(),
        made.classic_group.clone(),
    );

    let progress = Arc::new(LateInterface {
        recorded: RecordedProgress::default(),
        ec2: aws.clients.ec2.clone(),
        subnet: network.subnet_ids[1].clone(),
        runtime: tokio::runtime::Handle::current(),
        made: Mutex::new(None),
    });
    let config = common::config(STACK);
    let target = Target::Local {
        endpoint: emu.endpoint().to_owned(),
    };
    let connection = Aws::connect(&target, &config.region, CallLog::default()).await;
    let cx = Context::new(config, connection, progress.clone());
    full_plan()
        .down(&cx)
        .await
        .unwrap_or_else(|e| panic!("down failed: {e}"));

    let remade = tokio::time::timeout(Duration::from_secs(10), provider)
        .await
        .expect("the cloud provider stops with the Service")
        .expect("the cloud provider's task");
    assert_eq!(
        remade, 0,
        "the load balancer was swept while its Service existed"
    );
    let late = progress
        .made
        .lock()
        .unwrap()
        .clone()
        .expect("the late interface was made during down");

    // The order: the Services, then what Kubernetes made, then the network.
    let events = progress.recorded.events();
    let platform_done = position(&events, &Event::Finished("platform", Outcome::Done));
    let sweep_started = position(&events, &Event::Started(leftovers::ID.name()));
    let sweep_done = position(
        &events,
        &Event::Finished(leftovers::ID.name(), Outcome::Done),
    );
    let network_started = position(&events, &Event::Started("network"));
    let groups_started = position(&events, &Event::Started("security-groups"));
    assert!(platform_done < sweep_started, "{events:#?}");
    assert!(sweep_done < network_started, "{events:#?}");
    assert!(sweep_done < groups_started, "{events:#?}");
    let deleted = |kind: &str, id: &str| {
        progress
            .recorded
            .changes()
            .iter()
            .any(|c| c.action == Action::Deleted && c.kind.starts_with(kind) && c.id == id)
    };
    assert!(deleted("Classic load balancer", &made.classic));
    assert!(deleted("load balancer", &made.nlb));
    assert!(deleted("target group", &made.target_group));
    assert!(deleted("network interface", &made.interface));
    assert!(deleted("network interface", &late));

    // What is left, through plain SDK calls.
    let services = Api::<Service>::namespaced(kube.clone(), NAMESPACE);
    assert!(services.get_opt(SERVICE).await.unwrap().is_none());
    let classic_left: Vec<String> = aws
        .clients
        .elb
        .describe_load_balancers()
        .send()
        .await
        .unwrap()
        .load_balancer_descriptions()
        .iter()
        .filter_map(|lb| lb.load_balancer_name().map(str::to_owned))
        .collect();
    assert_eq!(classic_left, [foreign], "only another cluster's ELB stays");
    let elbv2 = &aws.clients.elbv2;
    let lbs = elbv2.describe_load_balancers().send().await.unwrap();
    assert!(lbs.load_balancers().is_empty(), "{lbs:?}");
    let tgs = elbv2.describe_target_groups().send().await.unwrap();
    assert!(tgs.target_groups().is_empty(), "{tgs:?}");
    let ec2 = &aws.clients.ec2;
    let in_vpc = Filter::builder()
        .name("vpc-id")
        .values(&network.vpc_id)
        .build();
    let enis = ec2
        .describe_network_interfaces()
        .filters(in_vpc.clone())
        .send()
        .await
        .unwrap();
    assert!(enis.network_interfaces().is_empty(), "{enis:?}");
    let in_subnets = Filter::builder()
        .name("subnet-id")
        .set_values(Some(network.subnet_ids.clone()))
        .build();
    let enis = ec2
        .describe_network_interfaces()
        .filters(in_subnets)
        .send()
        .await
        .unwrap();
    assert!(enis.network_interfaces().is_empty(), "{enis:?}");
    let groups = ec2
        .describe_security_groups()
        .filters(in_vpc)
        .send()
        .await
        .unwrap();
    assert!(groups.security_groups().is_empty(), "{groups:?}");
    let subnets = ec2
        .describe_subnets()
        .filters(
            Filter::builder()
                .name("vpc-id")
                .values(&network.vpc_id)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(subnets.subnets().is_empty(), "{subnets:?}");
    let vpcs = ec2
        .describe_vpcs()
        .filters(
            Filter::builder()
                .name(format!("tag:{}", provisioner::stack::STACK_TAG))
                .values(STACK)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(vpcs.vpcs().is_empty(), "{vpcs:?}");
    // And the product agrees.
    let left = remaining(&full_plan(), &cx).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    // And the whole account, listed by the independent observer, holds nothing of the stack.
    common::assert_nothing_left(&emu, STACK, "down of the full plan").await;
    assert_eq!(
        common::observed(&emu, "teardown2").await,
        ["Classic load balancer another-clusters-elb"],
        "another cluster's ELB stays"
    );
}
