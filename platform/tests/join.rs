//! Both ways nodes are allowed to join: the EKS access entry (mocked EKS, since the emulator has no
//! access-entry API) and the aws-auth fallback (the emulator's EKS plus the cluster simulator).

#![allow(clippy::expect_used)] // test set-up

use aws_sdk_eks::Client as Eks;
use aws_sdk_eks::operation::create_access_entry::CreateAccessEntryOutput;
use aws_sdk_eks::operation::describe_access_entry::{
    DescribeAccessEntryError, DescribeAccessEntryOutput,
};
use aws_sdk_eks::types::AccessEntry;
use aws_sdk_eks::types::error::ResourceNotFoundException;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use cluster::{ClusterSim, SimConfig};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use platform::join::{JoinPath, RoleMapping, allow_nodes, map_role};

const NODE_ROLE: &str = "arn:aws:iam::123456789012:role/kdeploy-ap-northeast-2-eks-node";

async fn simulator() -> (cluster::RunningSim, kube::Client) {
    let sim = ClusterSim::start(SimConfig::default())
        .await
        .expect("simulator starts");
    let client = sim.client().await.expect("client");
    (sim, client)
}

#[tokio::test]
async fn an_access_entry_of_type_ec2_linux_is_created_once() {
    let (_sim, kube) = simulator().await;
    let missing = mock!(Eks::describe_access_entry).then_error(|| {
        DescribeAccessEntryError::ResourceNotFoundException(
            ResourceNotFoundException::builder().build(),
        )
    });
    let create = mock!(Eks::create_access_entry)
        .match_requests(|r| {
            r.cluster_name() == Some("kdeploy")
                && r.principal_arn() == Some(NODE_ROLE)
                && r.r#type() == Some("EC2_LINUX")
        })
        .then_output(|| CreateAccessEntryOutput::builder().build());
    let eks = mock_client!(aws_sdk_eks, RuleMode::Sequential, &[&missing, &create]);
    let joined = allow_nodes(&eks, &kube, "kdeploy", NODE_ROLE)
        .await
        .expect("join");
    assert_eq!(joined.path, JoinPath::AccessEntry);
    assert!(joined.changed);
    assert_eq!(create.num_calls(), 1);

    // Run again: the entry exists, nothing is created.
    let present = mock!(Eks::describe_access_entry).then_output(|| {
        DescribeAccessEntryOutput::builder()
            .access_entry(
                AccessEntry::builder()
                    .principal_arn(NODE_ROLE)
                    .r#type("EC2_LINUX")
                    .build(),
            )
            .build()
    });
    let eks = mock_client!(aws_sdk_eks, RuleMode::Sequential, &[&present]);
    let again = allow_nodes(&eks, &kube, "kdeploy", NODE_ROLE)
        .await
        .expect("join");
    assert_eq!((again.path, again.changed), (JoinPath::AccessEntry, false));
    // The ConfigMap path was not taken.
    let cms: Api<ConfigMap> = Api::namespaced(kube, "kube-system");
    assert!(cms.get_opt("aws-auth").await.expect("get").is_none());
}

#[tokio::test]
async fn without_the_access_entry_api_the_node_role_goes_into_aws_auth() {
    let emulator = aws::AwsEmulator::start(aws::Port::Any)
        .await
        .expect("emulator");
    let (_sim, kube) = simulator().await;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("ap-northeast-2"))
        .endpoint_url(emulator.endpoint())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .credentials_provider(aws_sdk_eks::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    let eks = Eks::new(&sdk);

    let joined = allow_nodes(&eks, &kube, "kdeploy", NODE_ROLE)
        .await
        .expect("join");
    assert_eq!(
        (joined.path, joined.changed),
        (JoinPath::AwsAuthConfigMap, true)
    );
    let again = allow_nodes(&eks, &kube, "kdeploy", NODE_ROLE)
        .await
        .expect("join");
    assert_eq!(
        (again.path, again.changed),
        (JoinPath::AwsAuthConfigMap, false)
    );

    let cms: Api<ConfigMap> = Api::namespaced(kube.clone(), "kube-system");
    let cm = cms.get("aws-auth").await.expect("aws-auth exists");
    let roles: Vec<RoleMapping> = serde_yaml::from_str(&cm.data.unwrap()["mapRoles"]).unwrap();
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0].rolearn, NODE_ROLE);
    assert_eq!(roles[0].groups, ["system:bootstrappers", "system:nodes"]);
}

#[tokio::test]
async fn existing_aws_auth_entries_are_kept() {
    let (_sim, kube) = simulator().await;
    let admin = RoleMapping {
        rolearn: "arn:aws:iam::123456789012:role/admins".into(),
        username: "admin".into(),
        groups: vec!["system:masters".into()],
    };
    assert!(map_role(&kube, &admin).await.expect("first"));
    assert!(
        map_role(&kube, &platform::join::node_mapping(NODE_ROLE))
            .await
            .expect("second")
    );
    let cms: Api<ConfigMap> = Api::namespaced(kube, "kube-system");
    let roles: Vec<RoleMapping> =
        serde_yaml::from_str(&cms.get("aws-auth").await.unwrap().data.unwrap()["mapRoles"])
            .unwrap();
    assert_eq!(
        roles
            .iter()
            .map(|r| r.username.as_str())
            .collect::<Vec<_>>(),
        ["admin", "system:node:{{EC2PrivateDNSName}}"]
    );
}
