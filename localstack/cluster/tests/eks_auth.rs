//! EKS tokens, as the product makes them (platform/src/auth.rs), authenticated by the simulator as
//! EKS's aws-iam-authenticator does (kubernetes-sigs/aws-iam-authenticator pkg/token/token.go
//! Verify, pkg/arn/arn.go, pkg/server/server.go): the presigned GetCallerIdentity sent to the AWS
//! emulator's STS with `x-k8s-aws-id`, the ARN canonicalised, then mapped by the cluster creator's
//! mapping or `kube-system/aws-auth` to a user and groups that RBAC decides on. The identities are
//! real ones of the emulator (IAM users' access keys, STS AssumeRole credentials), made with plain
//! SDK calls; what each token may do is observed through the API server's answers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test set-up

mod common;

use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::Api;
use kube::api::{ListParams, ObjectMeta, PostParams};

use cluster::{AwsJoin, RunningSim, SimConfig};

const REGION: &str = "ap-northeast-2";
const CLUSTER: &str = "authn";

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

/// The emulator with IAM users `creator` (who creates the EKS cluster), `stranger` (mapped
/// nowhere) and `operator` (mapped through aws-auth mapUsers), and a role `deployer` that
/// `operator` may assume; the simulator authenticates against it.
struct Stack {
    emulator: aws::AwsEmulator,
    sim: RunningSim,
    creator: Credentials,
    stranger: Credentials,
    operator: Credentials,
    account: String,
}

impl Stack {
    async fn start() -> Self {
        let emulator = aws::AwsEmulator::start(aws::Port::Any)
            .await
            .expect("the AWS emulator starts");
        let dummy = Credentials::new("test", "test", None, None, "test");
        let admin = sdk(emulator.endpoint(), dummy).await;
        let iam = aws_sdk_iam::Client::new(&admin);
        let ec2 = aws_sdk_ec2::Client::new(&admin);
        let mut keys = Vec::new();
        for name in ["creator", "stranger", "operator"] {
            iam.create_user().user_name(name).send().await.unwrap();
            let key = iam
                .create_access_key()
                .user_name(name)
                .send()
                .await
                .unwrap();
            let key = key.access_key().unwrap();
            keys.push(Credentials::new(
                key.access_key_id(),
                key.secret_access_key(),
                None,
                None,
                "iam-user",
            ));
        }
        let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}"#;
        iam.create_role()
            .role_name("deployer")
            .path("/teams/")
            .assume_role_policy_document(trust)
            .send()
            .await
            .unwrap();
        let cluster_role = iam
            .create_role()
            .role_name("cluster")
            .assume_role_policy_document(trust)
            .send()
            .await
            .unwrap()
            .role()
            .unwrap()
            .arn()
            .to_string();
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.0.0.0/16")
            .send()
            .await
            .unwrap();
        let subnet = ec2
            .create_subnet()
            .vpc_id(vpc.vpc().unwrap().vpc_id().unwrap())
            .cidr_block("10.0.1.0/24")
            .send()
            .await
            .unwrap()
            .subnet()
            .unwrap()
            .subnet_id()
            .unwrap()
            .to_string();
        // The creator creates the cluster with its own credentials, as `provisioner up` does.
        let creator_sdk = sdk(emulator.endpoint(), keys[0].clone()).await;
        aws_sdk_eks::Client::new(&creator_sdk)
            .create_cluster()
            .name(CLUSTER)
            .role_arn(cluster_role)
            .resources_vpc_config(
                aws_sdk_eks::types::VpcConfigRequest::builder()
                    .subnet_ids(subnet)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let account = aws_sdk_sts::Client::new(&creator_sdk)
            .get_caller_identity()
            .send()
            .await
            .unwrap()
            .account()
            .unwrap()
            .to_string();
        let sim = common::sim_with(SimConfig {
            aws: Some(AwsJoin {
                endpoint: emulator.endpoint().to_string(),
                region: REGION.to_string(),
                cluster_name: CLUSTER.to_string(),
                poll_interval: Duration::from_secs(5),
            }),
            ..SimConfig::default()
        })
        .await;
        let [creator, stranger, operator] = <[Credentials; 3]>::try_from(keys).unwrap();
        Self {
            emulator,
            sim,
            creator,
            stranger,
            operator,
            account,
        }
    }

    /// A kube client with the product's EKS token for `credentials`, signed at `at` for `cluster`.
    async fn client(
        &self,
        credentials: &Credentials,
        cluster: &str,
        at: SystemTime,
    ) -> kube::Client {
        let token = platform::auth::eks_token(credentials, REGION, cluster, at).unwrap();
        self.sim.client_with_token(&token).await.unwrap()
    }

    /// STS AssumeRole credentials for the role `deployer`, session `session`.
    async fn assume_deployer(&self, session: &str) -> Credentials {
        let operator = sdk(self.emulator.endpoint(), self.operator.clone()).await;
        let assumed = aws_sdk_sts::Client::new(&operator)
            .assume_role()
            .role_arn(format!("arn:aws:iam::{}:role/teams/deployer", self.account))
            .role_session_name(session)
            .send()
            .await
            .unwrap();
        let arn = assumed.assumed_role_user().unwrap().arn();
        assert_eq!(
            arn,
            format!(
                "arn:aws:sts::{}:assumed-role/deployer/{session}",
                self.account
            ),
            "STS names the session, without the role's path"
        );
        let c = assumed.credentials().unwrap();
        Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            None,
            "assumed-role",
        )
    }
}

/// The API server's status code for listing Namespaces with `client`.
async fn list_namespaces(client: &kube::Client) -> u16 {
    match Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(_) => 200,
        Err(kube::Error::Api(status)) => status.code,
        Err(e) => panic!("listing namespaces: {e}"),
    }
}

async fn list_in<K>(client: &kube::Client, namespace: &str) -> u16
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match Api::<K>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
    {
        Ok(_) => 200,
        Err(kube::Error::Api(status)) => status.code,
        Err(e) => panic!("listing in {namespace}: {e}"),
    }
}

/// aws-iam-authenticator: the creator's hidden system:masters mapping (Amazon EKS User Guide,
/// "Grant IAM users and roles access to Kubernetes APIs"); no mapping → 401; STS refuses the
/// signature when the token names another cluster than the verifier's `x-k8s-aws-id`
/// (pkg/token/token.go: the header is signed, STS checks it); a token older than the
/// 15-minute lifetime → 401 before STS is asked.
#[tokio::test]
async fn only_a_mapped_identity_with_a_fresh_token_for_this_cluster_is_authenticated() {
    let stack = Stack::start().await;
    let now = SystemTime::now();
    let creator = stack.client(&stack.creator, CLUSTER, now).await;
    assert_eq!(list_namespaces(&creator).await, 200, "the creator is admin");
    let secrets = Api::<Secret>::namespaced(creator.clone(), "kube-system");
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("made-by-the-creator".into()),
                    ..ObjectMeta::default()
                },
                ..Secret::default()
            },
        )
        .await
        .expect("the creator may write anywhere");

    let stranger = stack.client(&stack.stranger, CLUSTER, now).await;
    assert_eq!(list_namespaces(&stranger).await, 401, "no mapping");

    let elsewhere = stack.client(&stack.creator, "another-cluster", now).await;
    assert_eq!(
        list_namespaces(&elsewhere).await,
        401,
        "made for another cluster"
    );

    let stale = now - Duration::from_secs(16 * 60);
    let expired = stack.client(&stack.creator, CLUSTER, stale).await;
    assert_eq!(list_namespaces(&expired).await, 401, "expired");
}

/// aws-auth (pkg/mapper/configmap): an IAM user through mapUsers and a role through mapRoles,
/// the role matched by its canonical ARN although STS returns the assumed-role ARN and the role
/// has a path (pkg/arn/arn.go Canonicalize), the username rendered from `{{SessionName}}`
/// (pkg/server/server.go renderTemplates); RBAC then decides on that user and its groups.
#[tokio::test]
async fn aws_auth_maps_users_and_assumed_roles_to_the_user_and_groups_rbac_decides_on() {
    let stack = Stack::start().await;
    let account = &stack.account;
    let admin = stack.sim.client().await.unwrap();
    Api::<ConfigMap>::namespaced(admin.clone(), "kube-system")
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("aws-auth".into()),
                    ..ObjectMeta::default()
                },
                data: Some(
                    [
                        (
                            "mapRoles".to_string(),
                            format!(
                                "- rolearn: arn:aws:iam::{account}:role/DEPLOYER\n  username: deployer:{{{{SessionName}}}}\n  groups:\n    - deployers\n"
                            ),
                        ),
                        (
                            "mapUsers".to_string(),
                            format!(
                                "- userarn: arn:aws:iam::{account}:user/operator\n  username: operator\n  groups:\n    - system:masters\n"
                            ),
                        ),
                    ]
                    .into(),
                ),
                ..ConfigMap::default()
            },
        )
        .await
        .unwrap();
    // Group `deployers` may read ConfigMaps in `default`; the session `alice` also Secrets there.
    let roles = Api::<Role>::namespaced(admin.clone(), "default");
    for (name, resource) in [("configmaps", "configmaps"), ("secrets", "secrets")] {
        roles
            .create(
                &PostParams::default(),
                &Role {
                    metadata: ObjectMeta {
                        name: Some(name.into()),
                        ..ObjectMeta::default()
                    },
                    rules: Some(vec![PolicyRule {
                        api_groups: Some(vec![String::new()]),
                        resources: Some(vec![resource.into()]),
                        verbs: vec!["list".into()],
                        ..PolicyRule::default()
                    }]),
                },
            )
            .await
            .unwrap();
    }
    let bindings = Api::<RoleBinding>::namespaced(admin.clone(), "default");
    for (role, kind, subject) in [
        ("configmaps", "Group", "deployers"),
        ("secrets", "User", "deployer:alice"),
    ] {
        bindings
            .create(
                &PostParams::default(),
                &RoleBinding {
                    metadata: ObjectMeta {
                        name: Some(format!("{role}-{}", subject.replace(':', "-"))),
                        ..ObjectMeta::default()
                    },
                    role_ref: RoleRef {
                        api_group: "rbac.authorization.k8s.io".into(),
                        kind: "Role".into(),
                        name: role.into(),
                    },
                    subjects: Some(vec![Subject {
                        kind: kind.into(),
                        name: subject.into(),
                        api_group: Some("rbac.authorization.k8s.io".into()),
                        ..Subject::default()
                    }]),
                },
            )
            .await
            .unwrap();
    }

    let now = SystemTime::now();
    let operator = stack.client(&stack.operator, CLUSTER, now).await;
    assert_eq!(
        list_namespaces(&operator).await,
        200,
        "mapUsers: system:masters"
    );

    let alice = stack
        .client(&stack.assume_deployer("alice").await, CLUSTER, now)
        .await;
    let bob = stack
        .client(&stack.assume_deployer("bob").await, CLUSTER, now)
        .await;
    assert_eq!(
        list_in::<ConfigMap>(&alice, "default").await,
        200,
        "group deployers"
    );
    assert_eq!(
        list_in::<ConfigMap>(&bob, "default").await,
        200,
        "group deployers"
    );
    assert_eq!(
        list_in::<Secret>(&alice, "default").await,
        200,
        "user deployer:alice"
    );
    assert_eq!(
        list_in::<Secret>(&bob, "default").await,
        403,
        "user deployer:bob"
    );
    assert_eq!(list_in::<ConfigMap>(&alice, "kube-system").await, 403);
    assert_eq!(
        list_namespaces(&alice).await,
        403,
        "authenticated, not allowed"
    );

    // Without the mapping the role's sessions are strangers.
    Api::<ConfigMap>::namespaced(admin, "kube-system")
        .delete("aws-auth", &Default::default())
        .await
        .unwrap();
    assert_eq!(list_in::<ConfigMap>(&alice, "default").await, 401);
}
