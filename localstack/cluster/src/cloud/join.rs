//! Whether a kubelet on an instance could join the cluster: nodeadm accepts the user data and it
//! names this cluster exactly as DescribeCluster does, and the API server lets the instance
//! role's identity register its Node (aws-auth or an EC2_LINUX access entry).

use base64::Engine;

use super::userdata::{self, NodeConfig, UserDataError};

/// What DescribeCluster says about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterFacts {
    pub name: String,
    pub endpoint: String,
    /// `certificateAuthority.data`: base64, as DescribeCluster returns it.
    pub certificate_authority: String,
    /// `kubernetesNetworkConfig.serviceIpv4Cidr`.
    pub service_cidr: String,
    /// `accessConfig.authenticationMode` (None: the emulator does not say).
    pub authentication_mode: Option<String>,
}

/// Who the instance is to the API server: its instance profile's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRole {
    /// As IAM returns it (with its path).
    pub arn: String,
    pub name: String,
}

impl InstanceRole {
    /// The role as aws-iam-authenticator knows the instance's STS identity:
    /// `arn:<partition>:iam::<account>:role/<name>`, without the path (pkg/arn/arn.go
    /// Canonicalize turns `assumed-role/<name>/<session>` into that, and STS's assumed-role ARN
    /// carries no path).
    pub fn canonical_arn(&self) -> String {
        let mut fields = self.arn.splitn(6, ':');
        let (partition, account) = (fields.nth(1).unwrap_or("aws"), fields.nth(2).unwrap_or(""));
        format!("arn:{partition}:iam::{account}:role/{}", self.name)
    }
}

/// How the cluster maps the role: the aws-auth ConfigMap's `mapRoles` (None when there is no
/// such ConfigMap) and the role's access entry type, if any (None also when the access-entry
/// API does not exist).
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub map_roles: Option<String>,
    pub access_entry_type: Option<String>,
}

/// Why an instance's kubelet would not become a Node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotJoining {
    #[error("the EKS cluster {0} does not exist")]
    NoCluster(String),
    #[error("it has no private DNS name (the kubelet's node name)")]
    NoPrivateDnsName,
    #[error("nodeadm finds no usable NodeConfig in its user data: {0}")]
    UserData(#[from] UserDataError),
    #[error("NodeConfig spec.cluster.{field} {got} is not the cluster's {what} {want}")]
    Mismatch {
        field: &'static str,
        what: &'static str,
        got: String,
        want: String,
    },
    #[error(
        "NodeConfig spec.cluster.certificateAuthority is not the cluster's certificate authority (DescribeCluster certificateAuthority.data): the kubelet would not trust the API server"
    )]
    CertificateAuthority,
    #[error("it has no instance profile, so the kubelet has no AWS identity to authenticate with")]
    NoInstanceProfile,
    #[error("its instance profile {0} has no role")]
    ProfileWithoutRole(String),
    #[error(
        "its instance profile's role {role} is neither mapped in kube-system/aws-auth mapRoles nor has an EC2_LINUX access entry{mode}"
    )]
    NotMapped { role: String, mode: String },
    #[error(
        "kube-system/aws-auth maps its role {role} to username {username:?} with groups {groups:?}: a kubelet registers as system:node:{{{{EC2PrivateDNSName}}}} in group system:nodes (Node authorizer, NodeRestriction)"
    )]
    MappedAsOther {
        role: String,
        username: String,
        groups: Vec<String>,
    },
    #[error(
        "its role {role} has an access entry of type {kind}, not EC2_LINUX, so the kubelet is not a node to the API server"
    )]
    AccessEntryType { role: String, kind: String },
    #[error("the kubelet refuses its --node-labels: {0}")]
    NodeLabels(String),
}

/// The parts of an instance the join decision looks at.
pub struct Candidate<'a> {
    pub private_dns_name: &'a str,
    pub account_id: &'a str,
    pub instance_id: &'a str,
    /// Raw user data (what IMDS serves), None when the instance has none.
    pub user_data: Option<&'a [u8]>,
    /// Its instance profile's ARN, and the profile's role when it has one.
    pub profile: Option<(&'a str, Option<&'a InstanceRole>)>,
}

/// The NodeConfig a kubelet would join with, or why it would not.
pub fn decide(
    cluster: Option<&ClusterFacts>,
    wanted_cluster: &str,
    instance: &Candidate<'_>,
    access: &Access,
) -> Result<NodeConfig, NotJoining> {
    let cluster = cluster.ok_or_else(|| NotJoining::NoCluster(wanted_cluster.to_string()))?;
    if instance.private_dns_name.is_empty() {
        return Err(NotJoining::NoPrivateDnsName);
    }
    let user_data = instance.user_data.unwrap_or_default();
    let config = userdata::node_config(user_data)?;
    check_cluster(&config, cluster)?;
    kubelet_labels(&config)?;
    let (profile, role) = instance.profile.ok_or(NotJoining::NoInstanceProfile)?;
    let role = role.ok_or_else(|| NotJoining::ProfileWithoutRole(profile.to_string()))?;
    check_access(cluster, role, instance, access)?;
    Ok(config)
}

/// The NodeConfig names this cluster as DescribeCluster does. AL2023 nodes never call
/// DescribeCluster themselves (nodeadm takes these four from the user data only).
fn check_cluster(config: &NodeConfig, cluster: &ClusterFacts) -> Result<(), NotJoining> {
    let mine = &config.cluster;
    let mismatch = |field, what, got: &str, want: &str| NotJoining::Mismatch {
        field,
        what,
        got: got.to_string(),
        want: want.to_string(),
    };
    if mine.name != cluster.name {
        return Err(mismatch("name", "name", &mine.name, &cluster.name));
    }
    if mine.api_server_endpoint.trim_end_matches('/') != cluster.endpoint.trim_end_matches('/') {
        return Err(mismatch(
            "apiServerEndpoint",
            "endpoint",
            &mine.api_server_endpoint,
            &cluster.endpoint,
        ));
    }
    let want_ca = base64::engine::general_purpose::STANDARD
        .decode(cluster.certificate_authority.trim())
        .unwrap_or_else(|_| cluster.certificate_authority.as_bytes().to_vec());
    if mine.certificate_authority != want_ca {
        return Err(NotJoining::CertificateAuthority);
    }
    // On EKS a wrong service CIDR still registers a Node, whose pods then get a cluster DNS
    // address (the CIDR's tenth address, nodeadm's kubelet config) that answers nothing; the
    // simulator refuses the node instead, so that the mistake shows at once.
    if mine.cidr.trim() != cluster.service_cidr.trim() {
        return Err(mismatch(
            "cidr",
            "service CIDR",
            &mine.cidr,
            &cluster.service_cidr,
        ));
    }
    Ok(())
}

/// kubelet ValidateKubeletFlags (cmd/kubelet/app/options/options.go): labels in the
/// `kubernetes.io` / `k8s.io` namespaces are refused unless the kubelet may set them
/// (`k8s.io/kubelet/pkg/apis` IsKubeletLabel); the kubelet then does not start.
fn kubelet_labels(config: &NodeConfig) -> Result<(), NotJoining> {
    const ALLOWED: [&str; 9] = [
        "kubernetes.io/hostname",
        "kubernetes.io/instance-type",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/instance-type",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
    ];
    const ALLOWED_NAMESPACES: [&str; 2] = ["kubelet.kubernetes.io", "node.kubernetes.io"];
    let refused: Vec<String> = userdata::node_labels(&config.kubelet_flags)
        .into_iter()
        .map(|(k, _)| k)
        .filter(|key| {
            let namespace = key.split_once('/').map_or("", |(ns, _)| ns);
            let reserved = ["kubernetes.io", "k8s.io"]
                .iter()
                .any(|r| namespace == *r || namespace.ends_with(&format!(".{r}")));
            reserved
                && !ALLOWED.contains(&key.as_str())
                && !ALLOWED_NAMESPACES
                    .iter()
                    .any(|ns| namespace == *ns || namespace.ends_with(&format!(".{ns}")))
                && !matches!(
                    key.as_str(),
                    "topology.kubernetes.io/region" | "topology.kubernetes.io/zone"
                )
        })
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(NotJoining::NodeLabels(format!(
            "unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: {refused:?}"
        )))
    }
}

/// The identity the API server gives the kubelet, per the cluster's authentication mode (EKS
/// "Grant IAM users access to Kubernetes with EKS access entries": `API` ignores aws-auth,
/// `CONFIG_MAP` ignores access entries).
fn check_access(
    cluster: &ClusterFacts,
    role: &InstanceRole,
    instance: &Candidate<'_>,
    access: &Access,
) -> Result<(), NotJoining> {
    let mode = cluster.authentication_mode.as_deref();
    let use_entries = mode != Some("CONFIG_MAP");
    let use_config_map = mode != Some("API");
    if use_entries && let Some(kind) = &access.access_entry_type {
        // EC2_LINUX: system:node:{{EC2PrivateDNSName}} in system:nodes, set by EKS.
        return if kind == "EC2_LINUX" {
            Ok(())
        } else {
            Err(NotJoining::AccessEntryType {
                role: role.arn.clone(),
                kind: kind.clone(),
            })
        };
    }
    let mapping = use_config_map
        .then(|| super::identity::find_mapping(access.map_roles.as_deref(), &role.canonical_arn()))
        .flatten();
    let Some(mapping) = mapping else {
        return Err(NotJoining::NotMapped {
            role: role.arn.clone(),
            mode: mode
                .map(|m| format!(" (authentication mode {m})"))
                .unwrap_or_default(),
        });
    };
    // pkg/server/server.go renderTemplates: the placeholders aws-iam-authenticator fills in.
    let username = mapping
        .username
        .replace("{{EC2PrivateDNSName}}", instance.private_dns_name)
        .replace("{{SessionName}}", instance.instance_id)
        .replace("{{AccountID}}", instance.account_id);
    if username != format!("system:node:{}", instance.private_dns_name)
        || !mapping.groups.iter().any(|g| g == "system:nodes")
    {
        return Err(NotJoining::MappedAsOther {
            role: role.arn.clone(),
            username: mapping.username,
            groups: mapping.groups,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "Y2VydGlmaWNhdGU=";

    fn cluster() -> ClusterFacts {
        ClusterFacts {
            name: "kdeploy".into(),
            endpoint: "https://ABC.gr7.ap-northeast-2.eks.amazonaws.com".into(),
            certificate_authority: CA.into(),
            service_cidr: "172.20.0.0/16".into(),
            authentication_mode: None,
        }
    }

    fn user_data(cidr: &str) -> Vec<u8> {
        format!(
            "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"B\"\n\n--B\nContent-Type: application/node.eks.aws\n\napiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    name: kdeploy\n    apiServerEndpoint: https://ABC.gr7.ap-northeast-2.eks.amazonaws.com\n    certificateAuthority: {CA}\n    cidr: {cidr}\n\n--B--\n"
        )
        .into_bytes()
    }

    fn role() -> InstanceRole {
        InstanceRole {
            arn: "arn:aws:iam::123456789012:role/nodes/kdeploy-node".into(),
            name: "kdeploy-node".into(),
        }
    }

    fn node_mapping(username: &str) -> Access {
        Access {
            map_roles: Some(format!(
                "- rolearn: arn:aws:iam::123456789012:role/KDEPLOY-NODE\n  username: {username}\n  groups:\n    - system:bootstrappers\n    - system:nodes\n"
            )),
            access_entry_type: None,
        }
    }

    fn decide_with(data: &[u8], access: &Access) -> Result<NodeConfig, NotJoining> {
        let role = role();
        decide(
            Some(&cluster()),
            "kdeploy",
            &Candidate {
                private_dns_name: "ip-10-0-1-23.ap-northeast-2.compute.internal",
                account_id: "123456789012",
                instance_id: "i-0123",
                user_data: Some(data),
                profile: Some(("arn:aws:iam::123456789012:instance-profile/p", Some(&role))),
            },
            access,
        )
    }

    #[test]
    fn a_node_role_mapped_without_its_path_in_any_case_joins() {
        let access = node_mapping("system:node:{{EC2PrivateDNSName}}");
        assert!(decide_with(&user_data("172.20.0.0/16"), &access).is_ok());
    }

    #[test]
    fn the_reason_names_the_field_and_both_values() {
        let access = node_mapping("system:node:{{EC2PrivateDNSName}}");
        let err = decide_with(&user_data("10.100.0.0/16"), &access).unwrap_err();
        assert_eq!(
            err.to_string(),
            "NodeConfig spec.cluster.cidr 10.100.0.0/16 is not the cluster's service CIDR 172.20.0.0/16"
        );
    }

    #[test]
    fn a_mapping_as_another_user_or_none_keeps_the_node_out() {
        let data = user_data("172.20.0.0/16");
        let err = decide_with(&data, &node_mapping("system:node:{{SessionName}}")).unwrap_err();
        assert!(matches!(err, NotJoining::MappedAsOther { .. }), "{err}");
        let err = decide_with(&data, &Access::default()).unwrap_err();
        assert!(matches!(err, NotJoining::NotMapped { .. }), "{err}");
        let entry = Access {
            map_roles: None,
            access_entry_type: Some("EC2_LINUX".into()),
        };
        assert!(decide_with(&data, &entry).is_ok());
    }

    #[test]
    fn reserved_node_labels_stop_the_kubelet() {
        let data = String::from_utf8(user_data("172.20.0.0/16"))
            .unwrap()
            .replace(
                "    cidr: 172.20.0.0/16\n",
                "    cidr: 172.20.0.0/16\n  kubelet:\n    flags:\n      - --node-labels=node-role.kubernetes.io/worker=true\n",
            );
        let access = node_mapping("system:node:{{EC2PrivateDNSName}}");
        assert!(matches!(
            decide_with(data.as_bytes(), &access),
            Err(NotJoining::NodeLabels(_))
        ));
    }
}
