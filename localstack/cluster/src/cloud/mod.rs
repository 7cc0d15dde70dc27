//! Nodes from the AWS emulator's instances: what the kubelets on the cluster's EC2 instances
//! and the AWS cloud controller manager do on EKS.
//!
//! Every `poll_interval` the simulator reads the instances (EC2 DescribeInstances) and the
//! cluster (EKS DescribeCluster) from the emulator with the official SDK and dummy credentials,
//! and
//! - registers a Node for each running instance whose kubelet could join (see [`join`]): the
//!   kubelet registers itself, authenticated as `system:node:<name>`; here the simulator writes
//!   the Node itself, under the field manager `kubelet`;
//! - logs once, with the precise reason, each running instance that does not join (also kept for
//!   [`crate::RunningSim::instances_not_joining`]);
//! - deletes the Node of an instance that is terminated or gone, as the cloud node lifecycle
//!   controller does (kubernetes/cloud-provider `controllers/nodelifecycle/node_lifecycle_controller.go`
//!   MonitorNodes: InstanceExistsByProviderID false → delete the Node), and taints the Node of
//!   a stopped instance `node.cloudprovider.kubernetes.io/shutdown` (same file,
//!   InstanceShutdownByProviderID), its kubelet no longer posting status;
//! - runs an instance metadata service for each joined node ([`imds`]).

pub mod identity;
mod imds;
pub mod join;
mod node;
pub mod userdata;

use crate::meta::Lookup;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::config::Credentials;
use aws_sdk_ec2::types::{InstanceStateName, Reservation};
use base64::Engine;
use serde_json::{Value, json};

use crate::meta;
use crate::registry::{DeleteOptions, Registry, WriteOptions};
use crate::resources::known;
use join::{Access, Candidate, ClusterFacts, InstanceRole, NotJoining};
use node::InstanceTypeInfo;

/// The taint the cloud node lifecycle controller puts on the Node of a stopped instance
/// (k8s.io/cloud-provider api `TaintNodeShutdown`).
pub const SHUTDOWN_TAINT: &str = "node.cloudprovider.kubernetes.io/shutdown";

/// Where the cluster's instances are: the emulator, and the EKS cluster they join.
#[derive(Debug, Clone)]
pub struct AwsJoin {
    /// The emulator's URL (every service on one endpoint).
    pub endpoint: String,
    pub region: String,
    pub cluster_name: String,
    /// How often instances and the cluster are read again.
    pub poll_interval: Duration,
}

/// One joined node's machine, as its pods see it.
#[derive(Debug, Clone)]
struct Machine {
    /// The node's metadata service (None when the instance has its endpoint disabled).
    imds: Option<SocketAddr>,
    /// `MetadataOptions.HttpPutResponseHopLimit`.
    hop_limit: i64,
}

/// The joined nodes' machines by node name, shared with the kubelet.
#[derive(Default)]
pub struct Machines {
    nodes: Mutex<HashMap<String, Machine>>,
}

impl Machines {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Machine>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node's metadata service address.
    pub fn imds_address(&self, node: &str) -> Option<SocketAddr> {
        self.lock().get(node)?.imds
    }

    /// `AWS_EC2_METADATA_SERVICE_ENDPOINT` for a pod on `node` that could reach IMDS there:
    /// a pod on the host's network always; any other pod is one network hop further (its own
    /// network namespace), and the IMDSv2 token response (IP TTL = the hop limit) reaches it only
    /// when the hop limit is at least 2 (EC2 User Guide, "Instance metadata access
    /// considerations": "in a container environment, we recommend setting the hop limit to 2";
    /// "Configure the instance metadata options": HttpPutResponseHopLimit). IMDSv1 requests
    /// from such pods with optional tokens are not modelled.
    pub fn imds_endpoint(&self, node: &str, host_network: bool) -> Option<String> {
        let nodes = self.lock();
        let machine = nodes.get(node)?;
        let addr = machine.imds?;
        (host_network || machine.hop_limit >= 2).then(|| format!("http://{addr}/"))
    }
}

/// Why each running instance that does not join does not, by instance id.
#[derive(Default)]
pub struct JoinReport {
    not_joining: Mutex<BTreeMap<String, String>>,
}

impl JoinReport {
    pub fn not_joining(&self) -> BTreeMap<String, String> {
        self.not_joining
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The instance facts the simulator uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub state: String,
    pub private_ip: String,
    pub private_dns_name: String,
    pub zone: String,
    pub instance_type: String,
    pub architecture: String,
    pub image_id: String,
    pub account_id: String,
    pub instance_profile_arn: Option<String>,
    pub tokens_required: bool,
    pub hop_limit: i64,
    pub metadata_endpoint_enabled: bool,
}

fn instances_of(reservation: &Reservation) -> impl Iterator<Item = Instance> + '_ {
    let owner = reservation.owner_id().unwrap_or_default();
    reservation.instances().iter().map(move |i| {
        let options = i.metadata_options();
        Instance {
            id: i.instance_id().unwrap_or_default().to_string(),
            state: i
                .state()
                .and_then(|s| s.name())
                .map_or("", InstanceStateName::as_str)
                .to_string(),
            private_ip: i.private_ip_address().unwrap_or_default().to_string(),
            private_dns_name: i.private_dns_name().unwrap_or_default().to_string(),
            zone: i
                .placement()
                .and_then(|p| p.availability_zone())
                .unwrap_or_default()
                .to_string(),
            instance_type: i
                .instance_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            architecture: i
                .architecture()
                .map_or("x86_64", |a| a.as_str())
                .to_string(),
            image_id: i.image_id().unwrap_or_default().to_string(),
            account_id: owner.to_string(),
            instance_profile_arn: i
                .iam_instance_profile()
                .and_then(|p| p.arn())
                .map(str::to_string),
            // EC2 defaults: optional tokens (on instances launched without options), hop limit 1.
            tokens_required: options
                .and_then(|o| o.http_tokens())
                .is_some_and(|t| t.as_str() == "required"),
            hop_limit: options
                .and_then(|o| o.http_put_response_hop_limit())
                .map_or(1, i64::from),
            metadata_endpoint_enabled: options
                .and_then(|o| o.http_endpoint())
                .is_none_or(|e| e.as_str() != "disabled"),
        }
    })
}

struct Clients {
    ec2: aws_sdk_ec2::Client,
    eks: aws_sdk_eks::Client,
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
}

impl Clients {
    /// Clients of the emulator: explicit region, endpoint and dummy credentials, so the SDK
    /// never looks for credentials or a region elsewhere (no instance metadata probing).
    async fn new(join: &AwsJoin) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(join.region.clone()))
            .endpoint_url(&join.endpoint)
            .credentials_provider(Credentials::new(
                "test",
                "test",
                None,
                None,
                "cluster-simulator",
            ))
            .http_client(http)
            .load()
            .await;
        Self {
            ec2: aws_sdk_ec2::Client::new(&shared),
            eks: aws_sdk_eks::Client::new(&shared),
            iam: aws_sdk_iam::Client::new(&shared),
            sts: aws_sdk_sts::Client::new(&shared),
        }
    }
}

/// The loop's memory between polls.
#[derive(Default)]
struct Cloud {
    /// Raw user data by instance id (it only changes while an instance is stopped).
    user_data: HashMap<String, Option<Vec<u8>>>,
    /// Instance type facts by type.
    instance_types: HashMap<String, Option<InstanceTypeInfo>>,
    /// Metadata services by instance id.
    imds: HashMap<String, imds::Imds>,
    /// The last reason logged per instance.
    logged: HashMap<String, String>,
    /// EKS here has no access-entry API (ListAccessEntries answered 404 without an error code).
    no_access_entries: bool,
    /// The last poll failure logged, so that a down emulator is not logged every poll.
    last_error: Option<String>,
}

/// Polls the emulator until the simulator stops.
pub async fn run(
    registry: Arc<Registry>,
    join: AwsJoin,
    machines: Arc<Machines>,
    report: Arc<JoinReport>,
) {
    let clients = Clients::new(&join).await;
    let mut cloud = Cloud::default();
    let mut ticker = tokio::time::interval(join.poll_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match poll(&registry, &join, &clients, &mut cloud, &machines, &report).await {
            Ok(()) => cloud.last_error = None,
            Err(message) => {
                if cloud.last_error.as_ref() != Some(&message) {
                    tracing::warn!(%message, "cannot read the cluster's instances from the AWS emulator; retrying");
                    cloud.last_error = Some(message);
                }
            }
        }
    }
}

fn sdk_error<E: std::error::Error + 'static, R: std::fmt::Debug>(
    op: &str,
    e: aws_sdk_ec2::error::SdkError<E, R>,
) -> String {
    format!("{op}: {}", aws_sdk_ec2::error::DisplayErrorContext(e))
}

async fn describe_instances(ec2: &aws_sdk_ec2::Client) -> Result<Vec<Instance>, String> {
    let mut instances = Vec::new();
    let mut pages = ec2.describe_instances().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| sdk_error("ec2:DescribeInstances", e))?;
        for reservation in page.reservations() {
            instances.extend(instances_of(reservation));
        }
    }
    Ok(instances)
}

/// The cluster and its Kubernetes version, None when it does not exist.
async fn describe_cluster(
    eks: &aws_sdk_eks::Client,
    name: &str,
) -> Result<Option<(ClusterFacts, String)>, String> {
    let out = match eks.describe_cluster().name(name).send().await {
        Ok(out) => out,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(sdk_error("eks:DescribeCluster", e)),
    };
    let Some(cluster) = out.cluster() else {
        return Ok(None);
    };
    let facts = ClusterFacts {
        name: cluster.name().unwrap_or(name).to_string(),
        endpoint: cluster.endpoint().unwrap_or_default().to_string(),
        certificate_authority: cluster
            .certificate_authority()
            .and_then(|c| c.data())
            .unwrap_or_default()
            .to_string(),
        service_cidr: cluster
            .kubernetes_network_config()
            .and_then(|n| n.service_ipv4_cidr())
            .unwrap_or_default()
            .to_string(),
        authentication_mode: cluster
            .access_config()
            .and_then(|a| a.authentication_mode())
            .map(|m| m.as_str().to_string()),
    };
    Ok(Some((
        facts,
        cluster.version().unwrap_or("1.34").to_string(),
    )))
}

/// The instance id of a Node's `aws:///<zone>/<id>` provider ID.
fn provider_instance(node: &Value) -> Option<&str> {
    node.at("/spec/providerID")
        .and_then(Value::as_str)?
        .strip_prefix("aws:///")?
        .rsplit('/')
        .next()
}

async fn poll(
    registry: &Registry,
    join: &AwsJoin,
    clients: &Clients,
    cloud: &mut Cloud,
    machines: &Machines,
    report: &JoinReport,
) -> Result<(), String> {
    let instances = describe_instances(&clients.ec2).await?;
    let cluster = describe_cluster(&clients.eks, &join.cluster_name).await?;
    let by_id: HashMap<&str, &Instance> = instances.iter().map(|i| (i.id.as_str(), i)).collect();

    // The cloud node lifecycle controller, first: a replacement may come back with the name
    // (private DNS name) of the node it replaces.
    let mut registered: HashMap<String, String> = HashMap::new();
    for node in registry.select(known::nodes(), None, None) {
        let Some(id) = provider_instance(&node).map(str::to_string) else {
            continue;
        };
        let name = meta::name(&node).to_string();
        match by_id.get(id.as_str()).map(|i| i.state.as_str()) {
            None | Some("terminated" | "shutting-down") => {
                tracing::info!(node = %name, instance = %id, "deleting node since it is no longer present in cloud provider");
                if let Err(e) =
                    registry.delete(known::nodes(), "", &name, &DeleteOptions::default())
                    && e.code != 404
                {
                    tracing::warn!(node = %name, error = %e, "cannot delete the node");
                    continue;
                }
                cloud.imds.remove(&id);
                machines.lock().remove(&name);
            }
            Some(state) => {
                set_shutdown(registry, &node, matches!(state, "stopped" | "stopping"));
                registered.insert(id, name);
            }
        }
    }

    let mut not_joining = BTreeMap::new();
    let cluster_facts = cluster.as_ref().map(|(facts, _)| facts);
    let kubelet_version = cluster
        .as_ref()
        .map_or("v1.34.0-eks-sim".to_string(), |(_, v)| {
            format!("v{v}.0-eks-sim")
        });
    let map_roles = registry
        .try_get(known::configmaps(), "kube-system", "aws-auth")
        .and_then(|cm| {
            cm.at("/data/mapRoles")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    let mut roles: HashMap<String, Option<InstanceRole>> = HashMap::new();
    let mut entries: Option<Vec<String>> = None;
    for instance in instances.iter().filter(|i| i.state == "running") {
        if registered.contains_key(&instance.id) {
            continue;
        }
        let user_data = fetch_user_data(clients, cloud, &instance.id).await?;
        let role = match &instance.instance_profile_arn {
            Some(arn) => match roles.get(arn) {
                Some(role) => role.clone(),
                None => {
                    let role = profile_role(&clients.iam, arn).await?;
                    roles.insert(arn.clone(), role.clone());
                    role
                }
            },
            None => None,
        };
        let mut access = Access {
            map_roles: map_roles.clone(),
            access_entry_type: None,
        };
        if let (Some((facts, _)), Some(role)) = (&cluster, &role) {
            if entries.is_none() && !cloud.no_access_entries {
                entries = Some(list_access_entries(clients, cloud, &facts.name).await?);
            }
            access.access_entry_type =
                access_entry_type(clients, &facts.name, entries.as_deref(), role).await?;
        }
        let candidate = Candidate {
            private_dns_name: &instance.private_dns_name,
            account_id: &instance.account_id,
            instance_id: &instance.id,
            user_data: user_data.as_deref(),
            profile: instance
                .instance_profile_arn
                .as_deref()
                .map(|arn| (arn, role.as_ref())),
        };
        let config = match join::decide(cluster_facts, &join.cluster_name, &candidate, &access) {
            Ok(config) => config,
            Err(reason) => {
                note_not_joining(cloud, &mut not_joining, &instance.id, &reason);
                continue;
            }
        };
        let Some(role) = role else { continue };
        let info = instance_type(clients, cloud, &instance.instance_type).await;
        let labels = userdata::node_labels(&config.kubelet_flags);
        let node = node::node_object(instance, &join.region, &kubelet_version, &labels, info);
        // The machine (and its metadata service) is up before the Node exists, so that a pod
        // bound to the Node finds it.
        let imds = if instance.metadata_endpoint_enabled {
            let metadata = imds::Metadata {
                instance: instance.clone(),
                region: join.region.clone(),
                account_id: instance.account_id.clone(),
                instance_profile_arn: instance.instance_profile_arn.clone().unwrap_or_default(),
                role,
                tokens_required: instance.tokens_required,
                user_data,
            };
            match imds::Imds::start(metadata, clients.sts.clone()).await {
                Ok(server) => {
                    let addr = server.addr();
                    cloud.imds.insert(instance.id.clone(), server);
                    Some(addr)
                }
                Err(e) => {
                    tracing::warn!(instance = %instance.id, error = %e, "cannot start the node's metadata service");
                    None
                }
            }
        } else {
            None
        };
        machines.lock().insert(
            instance.private_dns_name.clone(),
            Machine {
                imds,
                hop_limit: instance.hop_limit,
            },
        );
        let created = registry.create(
            known::nodes(),
            "",
            node,
            &WriteOptions::controller("kubelet"),
        );
        if let Err(e) = created {
            tracing::warn!(instance = %instance.id, node = %instance.private_dns_name, error = %e, "the kubelet could not register its node");
            cloud.imds.remove(&instance.id);
            machines.lock().remove(&instance.private_dns_name);
            continue;
        }
        tracing::info!(instance = %instance.id, node = %instance.private_dns_name, ip = %instance.private_ip, "node joined the cluster");
        cloud.logged.remove(&instance.id);
    }
    *report.not_joining.lock().unwrap_or_else(|p| p.into_inner()) = not_joining;
    let running: std::collections::HashSet<&str> = instances
        .iter()
        .filter(|i| i.state == "running")
        .map(|i| i.id.as_str())
        .collect();
    cloud.logged.retain(|id, _| running.contains(id.as_str()));
    cloud.user_data.retain(|id, _| {
        by_id
            .get(id.as_str())
            .is_some_and(|i| i.state != "terminated")
    });
    Ok(())
}

fn note_not_joining(
    cloud: &mut Cloud,
    not_joining: &mut BTreeMap<String, String>,
    id: &str,
    reason: &NotJoining,
) {
    let reason = reason.to_string();
    if cloud.logged.get(id) != Some(&reason) {
        tracing::info!("instance {id} does not join: {reason}");
        cloud.logged.insert(id.to_string(), reason.clone());
    }
    not_joining.insert(id.to_string(), reason);
}

/// The instance's raw user data (EC2 DescribeInstanceAttribute returns it base64-encoded).
async fn fetch_user_data(
    clients: &Clients,
    cloud: &mut Cloud,
    id: &str,
) -> Result<Option<Vec<u8>>, String> {
    if let Some(data) = cloud.user_data.get(id) {
        return Ok(data.clone());
    }
    let out = clients
        .ec2
        .describe_instance_attribute()
        .instance_id(id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .map_err(|e| sdk_error("ec2:DescribeInstanceAttribute", e))?;
    let data = out
        .user_data()
        .and_then(|u| u.value())
        .filter(|v| !v.is_empty())
        .map(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v)
                .unwrap_or_else(|_| v.as_bytes().to_vec())
        });
    cloud.user_data.insert(id.to_string(), data.clone());
    Ok(data)
}

/// The role of an instance profile (IAM GetInstanceProfile), None when it has none or is gone.
async fn profile_role(
    iam: &aws_sdk_iam::Client,
    profile_arn: &str,
) -> Result<Option<InstanceRole>, String> {
    let name = profile_arn.rsplit('/').next().unwrap_or(profile_arn);
    match iam
        .get_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .instance_profile()
            .and_then(|p| p.roles().first())
            .map(|r| InstanceRole {
                arn: r.arn().to_string(),
                name: r.role_name().to_string(),
            })),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(format!(
            "iam:GetInstanceProfile: {}",
            aws_sdk_iam::error::DisplayErrorContext(e)
        )),
    }
}

/// The principal ARNs with an access entry; empty (and remembered) when the API does not exist.
async fn list_access_entries(
    clients: &Clients,
    cloud: &mut Cloud,
    cluster: &str,
) -> Result<Vec<String>, String> {
    match access_entry_principals(&clients.eks, cluster).await? {
        Some(principals) => Ok(principals),
        None => {
            tracing::info!(
                cluster,
                "EKS access entries are not available here; nodes join through kube-system/aws-auth only"
            );
            cloud.no_access_entries = true;
            Ok(Vec::new())
        }
    }
}

/// The principal ARNs with an access entry (ListAccessEntries), None when the API does not
/// exist: a 404 without an AWS error code, as the emulator answers an operation it lacks.
pub(crate) async fn access_entry_principals(
    eks: &aws_sdk_eks::Client,
    cluster: &str,
) -> Result<Option<Vec<String>>, String> {
    let mut principals = Vec::new();
    let mut pages = eks
        .list_access_entries()
        .cluster_name(cluster)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) => principals.extend(page.access_entries().iter().cloned()),
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                if status == Some(404)
                    && aws_sdk_eks::error::ProvideErrorMetadata::code(&e).is_none()
                {
                    return Ok(None);
                }
                return Err(format!(
                    "eks:ListAccessEntries: {}",
                    aws_sdk_eks::error::DisplayErrorContext(e)
                ));
            }
        }
    }
    Ok(Some(principals))
}

/// The type of the role's access entry (DescribeAccessEntry), if it has one.
async fn access_entry_type(
    clients: &Clients,
    cluster: &str,
    entries: Option<&[String]>,
    role: &InstanceRole,
) -> Result<Option<String>, String> {
    let wanted = [
        role.arn.to_ascii_lowercase(),
        role.canonical_arn().to_ascii_lowercase(),
    ];
    let Some(principal) = entries
        .into_iter()
        .flatten()
        .find(|p| wanted.contains(&p.to_ascii_lowercase()))
    else {
        return Ok(None);
    };
    let out = clients
        .eks
        .describe_access_entry()
        .cluster_name(cluster)
        .principal_arn(principal)
        .send()
        .await
        .map_err(|e| {
            format!(
                "eks:DescribeAccessEntry: {}",
                aws_sdk_eks::error::DisplayErrorContext(e)
            )
        })?;
    Ok(out
        .access_entry()
        .and_then(|e| e.r#type())
        .map(str::to_string))
}

/// vCPUs, memory and ENI limits of an instance type (EC2 DescribeInstanceTypes), remembered.
async fn instance_type(
    clients: &Clients,
    cloud: &mut Cloud,
    instance_type: &str,
) -> Option<InstanceTypeInfo> {
    if let Some(info) = cloud.instance_types.get(instance_type) {
        return *info;
    }
    let info = match clients
        .ec2
        .describe_instance_types()
        .instance_types(aws_sdk_ec2::types::InstanceType::from(instance_type))
        .send()
        .await
    {
        Ok(out) => out.instance_types().first().and_then(|t| {
            let network = t.network_info()?;
            Some(InstanceTypeInfo {
                vcpus: i64::from(t.v_cpu_info()?.default_v_cpus()?),
                memory_mib: t.memory_info()?.size_in_mib()?,
                max_enis: i64::from(network.maximum_network_interfaces()?),
                ipv4_per_eni: i64::from(network.ipv4_addresses_per_interface()?),
            })
        }),
        Err(e) => {
            tracing::debug!(instance_type, error = %aws_sdk_ec2::error::DisplayErrorContext(e), "instance type unknown; default capacity");
            None
        }
    };
    cloud.instance_types.insert(instance_type.to_string(), info);
    info
}

/// A stopped instance's Node: the shutdown taint and `Unknown` conditions; running again, the
/// kubelet posts Ready and the taint goes.
fn set_shutdown(registry: &Registry, node: &Value, shut_down: bool) {
    let taints: Vec<Value> = node
        .at("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let tainted = taints.iter().any(|t| t["key"] == SHUTDOWN_TAINT);
    if tainted == shut_down {
        return;
    }
    let name = meta::name(node);
    let mut next = node.clone();
    let mut taints: Vec<Value> = taints
        .into_iter()
        .filter(|t| t["key"] != SHUTDOWN_TAINT)
        .collect();
    if shut_down {
        taints.push(json!({"key": SHUTDOWN_TAINT, "effect": "NoSchedule"}));
    }
    next["spec"]["taints"] = json!(taints);
    let opts = WriteOptions::controller("cloud-node-lifecycle-controller");
    let updated = match registry.update(known::nodes(), "", name, next, None, &opts) {
        Ok(updated) => updated,
        Err(e) => {
            tracing::debug!(node = name, error = %e, "node changed meanwhile; next poll");
            return;
        }
    };
    let mut status = updated;
    status["status"]["conditions"] = node::conditions(!shut_down);
    if let Err(e) = registry.update(
        known::nodes(),
        "",
        name,
        status,
        Some("status"),
        &WriteOptions::controller("kubelet"),
    ) {
        tracing::debug!(node = name, error = %e, "node status changed meanwhile; next poll");
    }
}
