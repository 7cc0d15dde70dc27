//! Nodes join the simulated cluster from the AWS emulator's instances only when a kubelet could:
//! the user data's NodeConfig names the cluster exactly as DescribeCluster does, and the instance
//! role is mapped in aws-auth. Terminated instances take their Nodes (and the pods bound to them)
//! away; Auto Scaling's replacement joins; each node serves IMDSv2 to the pods that could reach it.
//! Everything on the AWS side is made with plain SDK calls against moto (the `aws` crate).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test set-up

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use common::eventually;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::Api;
use kube::api::{ListParams, PostParams};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::config::Credentials;
use aws_sdk_ec2::types::{
    InstanceMetadataOptionsRequest, InstanceType, LaunchTemplateHttpTokensState,
    LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMetadataOptionsRequest, RequestLaunchTemplateData,
};
use cluster::{AwsJoin, LocalCommand, RunningSim, SimConfig};

const REGION: &str = "ap-northeast-2";
const CLUSTER: &str = "joined";
const WAIT: Duration = Duration::from_secs(30);

/// SDK configuration for the emulator: its endpoint, dummy (or given) credentials.
async fn sdk(endpoint: &str, credentials: Credentials) -> aws_config::SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .http_client(http)
        .load()
        .await
}

/// The emulator with a VPC, a subnet, a node role in an instance profile and an EKS cluster.
struct Aws {
    emulator: aws::AwsEmulator,
    ec2: aws_sdk_ec2::Client,
    autoscaling: aws_sdk_autoscaling::Client,
    subnet: String,
    role_arn: String,
    profile_arn: String,
    /// DescribeCluster's name, endpoint, CA data and service CIDR.
    endpoint: String,
    ca: String,
    cidr: String,
}

impl Aws {
    async fn start() -> Self {
        let emulator = aws::AwsEmulator::start(aws::Port::Any)
            .await
            .expect("the AWS emulator starts");
        let shared = sdk(
            emulator.endpoint(),
            Credentials::new("test", "test", None, None, "test"),
        )
        .await;
        let ec2 = aws_sdk_ec2::Client::new(&shared);
        let eks = aws_sdk_eks::Client::new(&shared);
        let iam = aws_sdk_iam::Client::new(&shared);
        let autoscaling = aws_sdk_autoscaling::Client::new(&shared);
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.0.0.0/16")
            .send()
            .await
            .unwrap()
            .vpc()
            .unwrap()
            .vpc_id()
            .unwrap()
            .to_string();
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block("10.0.1.0/24")
            .availability_zone(format!("{REGION}a"))
            .send()
            .await
            .unwrap()
            .subnet()
            .unwrap()
            .subnet_id()
            .unwrap()
            .to_string();
        let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
        let role_arn = iam
            .create_role()
            .role_name("joined-node")
            .path("/nodes/")
            .assume_role_policy_document(trust)
            .send()
            .await
            .unwrap()
            .role()
            .unwrap()
            .arn()
            .to_string();
        let profile_arn = iam
            .create_instance_profile()
            .instance_profile_name("joined-node")
            .send()
            .await
            .unwrap()
            .instance_profile()
            .unwrap()
            .arn()
            .to_string();
        iam.add_role_to_instance_profile()
            .instance_profile_name("joined-node")
            .role_name("joined-node")
            .send()
            .await
            .unwrap();
        let cluster_role = iam
            .create_role()
            .role_name("joined-cluster")
            .assume_role_policy_document(trust.replace("ec2.", "eks."))
            .send()
            .await
            .unwrap()
            .role()
            .unwrap()
            .arn()
            .to_string();
        eks.create_cluster()
            .name(CLUSTER)
            .role_arn(cluster_role)
            .resources_vpc_config(
                aws_sdk_eks::types::VpcConfigRequest::builder()
                    .subnet_ids(&subnet)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let described = eks.describe_cluster().name(CLUSTER).send().await.unwrap();
        let cluster = described.cluster().unwrap();
        Self {
            ec2,
            autoscaling,
            subnet,
            role_arn,
            profile_arn,
            endpoint: cluster.endpoint().unwrap().to_string(),
            ca: cluster
                .certificate_authority()
                .unwrap()
                .data()
                .unwrap()
                .to_string(),
            cidr: cluster
                .kubernetes_network_config()
                .unwrap()
                .service_ipv4_cidr()
                .unwrap()
                .to_string(),
            emulator,
        }
    }

    /// NodeConfig user data (base64, as EC2 takes it) for this cluster, `change` applied to
    /// the NodeConfig's four cluster fields (name, endpoint, CA, CIDR).
    fn user_data(&self, change: impl FnOnce(&mut [String; 4])) -> String {
        let mut fields = [
            CLUSTER.to_string(),
            self.endpoint.clone(),
            self.ca.clone(),
            self.cidr.clone(),
        ];
        change(&mut fields);
        let [name, endpoint, ca, cidr] = fields;
        let document = format!(
            "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"//\"\n\n--//\nContent-Type: text/x-shellscript\n\n#!/bin/bash\necho first\n--//\nContent-Type: application/node.eks.aws\n\n---\napiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    name: {name}\n    apiServerEndpoint: {endpoint}\n    certificateAuthority: {ca}\n    cidr: {cidr}\n  kubelet:\n    flags:\n      - --node-labels=example.com/pool=workers\n\n--//--\n"
        );
        base64::engine::general_purpose::STANDARD.encode(document)
    }

    /// One running instance with `user_data` and the node role's profile (or none).
    async fn run_instance(&self, user_data: &str, profile: bool, hop_limit: i32) -> String {
        let mut request = self
            .ec2
            .run_instances()
            .image_id("ami-12345678")
            .instance_type(InstanceType::T3Medium)
            .subnet_id(&self.subnet)
            .min_count(1)
            .max_count(1)
            .user_data(user_data)
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(aws_sdk_ec2::types::HttpTokensState::Required)
                    .http_put_response_hop_limit(hop_limit)
                    .build(),
            );
        if profile {
            request = request.iam_instance_profile(
                aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                    .arn(&self.profile_arn)
                    .build(),
            );
        }
        let out = request.send().await.unwrap();
        out.instances()[0].instance_id().unwrap().to_string()
    }

    /// The instance's private IP and DNS name (plain EC2 DescribeInstances).
    async fn addresses(&self, id: &str) -> (String, String, String) {
        let out = self
            .ec2
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .unwrap();
        let i = &out.reservations()[0].instances()[0];
        (
            i.private_ip_address().unwrap().to_string(),
            i.private_dns_name().unwrap().to_string(),
            i.placement()
                .unwrap()
                .availability_zone()
                .unwrap()
                .to_string(),
        )
    }

    async fn terminate(&self, id: &str) {
        self.ec2
            .terminate_instances()
            .instance_ids(id)
            .send()
            .await
            .unwrap();
    }

    /// The simulator with nodes from this emulator's instances of the cluster.
    async fn simulator(&self, local_commands: Vec<LocalCommand>) -> RunningSim {
        common::sim_with(SimConfig {
            readiness_delay: Duration::from_millis(100),
            aws: Some(AwsJoin {
                endpoint: self.emulator.endpoint().to_string(),
                region: REGION.to_string(),
                cluster_name: CLUSTER.to_string(),
                poll_interval: Duration::from_millis(200),
            }),
            orphaned_pod_quarantine: Duration::from_millis(500),
            local_commands,
            ..SimConfig::default()
        })
        .await
    }
}

/// Maps `role_arn` in aws-auth as the platform does for nodes (or as `username`).
async fn map_role(kube: &kube::Client, role_arn: &str, username: &str) {
    let map_roles = format!(
        "- rolearn: {role_arn}\n  username: {username}\n  groups:\n    - system:bootstrappers\n    - system:nodes\n"
    );
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "aws-auth", "namespace": "kube-system"},
        "data": {"mapRoles": map_roles},
    }))
    .unwrap();
    let api = Api::<ConfigMap>::namespaced(kube.clone(), "kube-system");
    match api.get_opt("aws-auth").await.unwrap() {
        Some(existing) => {
            let mut next = cm;
            next.metadata.resource_version = existing.metadata.resource_version;
            api.replace("aws-auth", &PostParams::default(), &next)
                .await
                .unwrap();
        }
        None => {
            api.create(&PostParams::default(), &cm).await.unwrap();
        }
    }
}

/// The role ARN without its path, as aws-auth must name it.
fn canonical(role_arn: &str) -> String {
    role_arn.replace("role/nodes/", "role/")
}

fn internal_ip(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
}

async fn nodes(kube: &kube::Client) -> Vec<Node> {
    Api::<Node>::all(kube.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

#[tokio::test]
async fn only_instances_whose_kubelet_could_join_become_nodes_with_their_private_ip_and_zone() {
    let aws = Aws::start().await;
    let sim = aws.simulator(Vec::new()).await;
    let kube = sim.client().await.unwrap();
    assert!(
        nodes(&kube).await.is_empty(),
        "no fixed nodes with --aws-endpoint"
    );

    let good = aws.run_instance(&aws.user_data(|_| {}), true, 1).await;
    let wrong_name = aws
        .run_instance(&aws.user_data(|f| f[0] = "other".into()), true, 1)
        .await;
    let wrong_endpoint = aws
        .run_instance(
            &aws.user_data(|f| f[1] = "https://elsewhere.example.com".into()),
            true,
            1,
        )
        .await;
    let wrong_ca = aws
        .run_instance(
            &aws.user_data(|f| {
                f[2] = base64::engine::general_purpose::STANDARD.encode("another CA")
            }),
            true,
            1,
        )
        .await;
    let wrong_cidr = aws
        .run_instance(&aws.user_data(|f| f[3] = "10.100.0.0/16".into()), true, 1)
        .await;
    let no_profile = aws.run_instance(&aws.user_data(|_| {}), false, 1).await;

    // Nothing maps the role yet: nobody joins, each for its reason.
    let reasons: BTreeMap<String, String> = eventually("every instance judged", WAIT, || async {
        let r = sim.instances_not_joining();
        (r.len() == 6).then_some(r)
    })
    .await;
    assert!(
        reasons[&good].contains(
            "is neither mapped in kube-system/aws-auth mapRoles nor has an EC2_LINUX access entry"
        ),
        "{reasons:?}"
    );
    assert_eq!(
        reasons[&wrong_name],
        format!("NodeConfig spec.cluster.name other is not the cluster's name {CLUSTER}")
    );
    assert_eq!(
        reasons[&wrong_endpoint],
        format!(
            "NodeConfig spec.cluster.apiServerEndpoint https://elsewhere.example.com is not the cluster's endpoint {}",
            aws.endpoint
        )
    );
    assert!(
        reasons[&wrong_ca]
            .contains("certificateAuthority is not the cluster's certificate authority"),
        "{reasons:?}"
    );
    assert_eq!(
        reasons[&wrong_cidr],
        format!(
            "NodeConfig spec.cluster.cidr 10.100.0.0/16 is not the cluster's service CIDR {}",
            aws.cidr
        )
    );
    assert!(
        reasons[&no_profile].contains("no instance profile"),
        "{reasons:?}"
    );
    assert!(nodes(&kube).await.is_empty());

    // The role ARN with its path does not match the instance's identity (aws-iam-authenticator
    // compares the path-less role ARN); mapped as another user, the kubelet cannot register.
    map_role(&kube, &aws.role_arn, "system:node:{{EC2PrivateDNSName}}").await;
    // The refusal looks as before, so a later instance marks the point: the pass that first
    // judges it listed the instances after this mapping was written, and read aws-auth after
    // that (the simulator's join poll, src/cloud/mod.rs `poll`); nodes that pass lets join
    // exist before it reports.
    let marker = aws.run_instance(&aws.user_data(|_| {}), false, 1).await;
    eventually("the marker instance judged", WAIT, || async {
        sim.instances_not_joining()
            .contains_key(&marker)
            .then_some(())
    })
    .await;
    assert!(nodes(&kube).await.is_empty());
    map_role(&kube, &canonical(&aws.role_arn), "admin").await;
    eventually("the mapping as another user is judged", WAIT, || async {
        sim.instances_not_joining()
            .get(&good)
            .filter(|r| r.contains("maps its role"))
            .cloned()
    })
    .await;
    assert!(nodes(&kube).await.is_empty());

    // Mapped as a node: only the instance whose NodeConfig is right joins.
    map_role(
        &kube,
        &canonical(&aws.role_arn),
        "system:node:{{EC2PrivateDNSName}}",
    )
    .await;
    let joined = eventually("the good instance's node", WAIT, || async {
        let n = nodes(&kube).await;
        (!n.is_empty()).then_some(n)
    })
    .await;
    let (ip, dns, zone) = aws.addresses(&good).await;
    assert_eq!(joined.len(), 1, "{joined:?}");
    let node = &joined[0];
    assert_eq!(node.metadata.name.as_deref(), Some(dns.as_str()));
    assert!(
        dns.ends_with(&format!(".{REGION}.compute.internal")),
        "{dns}"
    );
    assert_eq!(internal_ip(node), Some(ip));
    let labels = node.metadata.labels.clone().unwrap();
    assert_eq!(labels["topology.kubernetes.io/zone"], zone);
    assert_eq!(labels["topology.kubernetes.io/region"], REGION);
    assert_eq!(labels["node.kubernetes.io/instance-type"], "t3.medium");
    assert_eq!(labels["kubernetes.io/hostname"], dns);
    assert_eq!(labels["example.com/pool"], "workers", "--node-labels");
    assert_eq!(
        node.spec.as_ref().unwrap().provider_id.as_deref(),
        Some(format!("aws:///{zone}/{good}").as_str())
    );
    let ready = node
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    assert!(ready);
    let still_out = sim.instances_not_joining();
    assert!(!still_out.contains_key(&good));
    assert_eq!(
        still_out.len(),
        6,
        "the five refused and the marker: {still_out:?}"
    );
}

#[tokio::test]
async fn a_terminated_instance_takes_its_node_and_pods_away_and_auto_scaling_replaces_it() {
    let aws = Aws::start().await;
    let sim = aws.simulator(Vec::new()).await;
    let kube = sim.client().await.unwrap();
    let pods = Api::<Pod>::namespaced(kube.clone(), "default");

    // No node yet: the pods wait, as kube-scheduler says.
    let deployments = Api::namespaced(kube.clone(), "default");
    common::create_deployment(&deployments, "web", "example.com/web:1", 4).await;
    let message = eventually("pods unschedulable", WAIT, || async {
        let list = pods.list(&ListParams::default()).await.unwrap().items;
        list.iter().find_map(|p| {
            let status = p.status.as_ref()?;
            let c = status
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "PodScheduled")?;
            (c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
                .then(|| c.message.clone().unwrap_or_default())
        })
    })
    .await;
    assert_eq!(message, "no nodes available to schedule pods");

    aws.ec2
        .create_launch_template()
        .launch_template_name("joined-nodes")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id("ami-12345678")
                .instance_type(InstanceType::T3Medium)
                .user_data(aws.user_data(|_| {}))
                .iam_instance_profile(
                    LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                        .arn(&aws.profile_arn)
                        .build(),
                )
                .metadata_options(
                    LaunchTemplateInstanceMetadataOptionsRequest::builder()
                        .http_tokens(LaunchTemplateHttpTokensState::Required)
                        .http_put_response_hop_limit(1)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    aws.autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name("joined-nodes")
        .launch_template(
            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                .launch_template_name("joined-nodes")
                .version("$Latest")
                .build(),
        )
        .min_size(2)
        .max_size(3)
        .desired_capacity(2)
        .vpc_zone_identifier(&aws.subnet)
        .send()
        .await
        .unwrap();
    map_role(
        &kube,
        &canonical(&aws.role_arn),
        "system:node:{{EC2PrivateDNSName}}",
    )
    .await;
    let first = eventually("two nodes from the group", WAIT, || async {
        let n = nodes(&kube).await;
        (n.len() == 2).then_some(n)
    })
    .await;
    common::rolled_out(&deployments, "web", WAIT).await;

    // Terminate the instance of the node that runs pods.
    let victim = &first[0];
    let victim_name = victim.metadata.name.clone().unwrap();
    let victim_instance = victim
        .spec
        .as_ref()
        .unwrap()
        .provider_id
        .as_ref()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let on_victim = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some(&victim_name))
        .count();
    assert!(on_victim > 0, "round-robin put pods on {victim_name}");
    aws.terminate(&victim_instance).await;

    eventually(
        "the node of the terminated instance is deleted",
        WAIT,
        || async {
            let n = nodes(&kube).await;
            (!n.iter()
                .any(|n| n.metadata.name.as_deref() == Some(&victim_name)))
            .then_some(())
        },
    )
    .await;
    // Pod GC removes its pods; the ReplicaSet's replacements run elsewhere.
    eventually("four pods on the remaining nodes", WAIT, || async {
        let list = pods.list(&ListParams::default()).await.unwrap().items;
        let placed: Vec<_> = list
            .iter()
            .filter_map(|p| p.spec.as_ref()?.node_name.clone())
            .collect();
        (placed.len() == 4 && !placed.contains(&victim_name)).then_some(())
    })
    .await;
    common::rolled_out(&deployments, "web", WAIT).await;

    // Auto Scaling launches a replacement from the template, and it joins.
    let after = eventually("the replacement joins", WAIT, || async {
        let n = nodes(&kube).await;
        let fresh = n
            .iter()
            .filter(|n| !first.iter().any(|f| f.metadata.name == n.metadata.name))
            .count();
        (n.len() == 2 && fresh == 1).then_some(n)
    })
    .await;
    let group = aws
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("joined-nodes")
        .send()
        .await
        .unwrap();
    let members: Vec<String> = group.auto_scaling_groups()[0]
        .instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_string())
        .collect();
    assert!(!members.contains(&victim_instance), "{members:?}");
    for node in &after {
        let id = node
            .spec
            .as_ref()
            .unwrap()
            .provider_id
            .as_ref()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        assert!(members.contains(&id), "{id} in {members:?}");
        assert_eq!(internal_ip(node), Some(aws.addresses(&id).await.0));
    }
}

#[tokio::test]
async fn a_node_serves_imdsv2_with_its_role_and_only_pods_that_could_reach_it_get_it() {
    let aws = Aws::start().await;
    let out_dir = std::env::temp_dir().join(format!("imds-env-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    // A local command that writes its environment to $OUT and stays up.
    let sim = aws
        .simulator(vec![LocalCommand {
            image_prefix: "example.com/env".into(),
            program: "sh".into(),
            args: vec!["-c".into(), "env > \"$OUT\"; exec sleep 600".into()],
        }])
        .await;
    let kube = sim.client().await.unwrap();
    map_role(
        &kube,
        &canonical(&aws.role_arn),
        "system:node:{{EC2PrivateDNSName}}",
    )
    .await;
    let id = aws.run_instance(&aws.user_data(|_| {}), true, 1).await;
    let (ip, dns, zone) = aws.addresses(&id).await;
    eventually("the node joins", WAIT, || async {
        (nodes(&kube).await.len() == 1).then_some(())
    })
    .await;
    let imds = sim
        .instance_metadata_address(&dns)
        .expect("IMDS of the node");

    // IMDSv2 only (HttpTokens required): no token, 401.
    let http = Http(imds);
    assert_eq!(http.get("/latest/meta-data/instance-id", None).await.0, 401);
    assert_eq!(
        http.put_token(None).await.0,
        400,
        "the TTL header is required"
    );
    let (status, token) = http.put_token(Some("21600")).await;
    assert_eq!(status, 200);
    let token = Some(token.as_str());
    assert_eq!(
        http.get("/latest/meta-data/instance-id", token).await,
        (200, id.clone())
    );
    assert_eq!(
        http.get("/latest/meta-data/placement/region", token).await,
        (200, REGION.to_string())
    );
    assert_eq!(
        http.get("/latest/meta-data/placement/availability-zone", token)
            .await,
        (200, zone)
    );
    assert_eq!(
        http.get("/latest/meta-data/local-ipv4", token).await,
        (200, ip.clone())
    );
    assert_eq!(
        http.get("/latest/meta-data/iam/security-credentials/", token)
            .await,
        (200, "joined-node".to_string())
    );
    let (status, body) = http
        .get(
            "/latest/meta-data/iam/security-credentials/joined-node",
            token,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let creds: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(creds["Code"], "Success");
    assert_eq!(creds["Type"], "AWS-HMAC");
    for field in ["AccessKeyId", "SecretAccessKey", "Token", "Expiration"] {
        assert!(
            creds[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}: {creds}"
        );
    }
    // The credentials are the node role's: STS says who they are.
    let as_node = sdk(
        aws.emulator.endpoint(),
        Credentials::new(
            creds["AccessKeyId"].as_str().unwrap(),
            creds["SecretAccessKey"].as_str().unwrap(),
            creds["Token"].as_str().map(str::to_string),
            None,
            "imds",
        ),
    )
    .await;
    let identity = aws_sdk_sts::Client::new(&as_node)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert!(
        identity
            .arn()
            .unwrap()
            .contains(":assumed-role/joined-node/"),
        "{identity:?}"
    );

    // A host-network pod reaches IMDS (and has the node's IP); with hop limit 1 a pod in its own
    // network namespace does not.
    let pods = Api::<Pod>::namespaced(kube.clone(), "default");
    for (name, host_network) in [("on-host", true), ("in-pod", false)] {
        let out = out_dir.join(name);
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {
                "hostNetwork": host_network,
                "containers": [{"name": "env", "image": "example.com/env:1", "env": [{"name": "OUT", "value": out.display().to_string()}]}],
            },
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let env_of = |name: &str| {
        let path = out_dir.join(name);
        async move {
            let text = tokio::fs::read_to_string(&path).await.ok()?;
            (!text.is_empty()).then_some(text)
        }
    };
    let on_host = eventually("the host-network pod's env", WAIT, || env_of("on-host")).await;
    let in_pod = eventually("the other pod's env", WAIT, || env_of("in-pod")).await;
    assert!(
        on_host.contains(&format!("AWS_EC2_METADATA_SERVICE_ENDPOINT=http://{imds}/")),
        "{on_host}"
    );
    assert!(
        !on_host.contains("AWS_EC2_METADATA_DISABLED"),
        "the simulator's own setting is not a pod's: {on_host}"
    );
    assert!(!on_host.contains("AWS_ACCESS_KEY_ID="), "{on_host}");
    assert!(
        !in_pod.contains("AWS_EC2_METADATA_SERVICE_ENDPOINT"),
        "hop limit 1: {in_pod}"
    );
    let host_pod = eventually("the host-network pod's IP", WAIT, || async {
        let p = pods.get("on-host").await.ok()?;
        let status = p.status?;
        status.pod_ip.clone().zip(status.host_ip.clone())
    })
    .await;
    assert_eq!(host_pod, (ip.clone(), ip));
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// A bare HTTP/1.1 client for the metadata service (the test checks its status codes).
struct Http(std::net::SocketAddr);

impl Http {
    async fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.0).await.unwrap();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\nContent-Length: 0\r\n"
        );
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let headers: Vec<(&str, &str)> = token
            .map(|t| ("X-aws-ec2-metadata-token", t))
            .into_iter()
            .collect();
        self.request("GET", path, &headers).await
    }

    async fn put_token(&self, ttl: Option<&str>) -> (u16, String) {
        let headers: Vec<(&str, &str)> = ttl
            .map(|t| ("X-aws-ec2-metadata-token-ttl-seconds", t))
            .into_iter()
            .collect();
        self.request("PUT", "/latest/api/token", &headers).await
    }
}
