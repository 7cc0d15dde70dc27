//! NLB targets follow the nodes. The stack's target group (type `ip`) must hold the InternalIP of
//! every Node that can take traffic, on the ingress controller's HTTP NodePort, and nothing else:
//! the Auto Scaling group replaces instances by itself, and a node that is drained, cordoned or
//! gone must stop receiving new connections. This module has the rule ([`serving_ip`],
//! [`wanted`], [`changes`]: pure, and the one copy that the provisioner's targets step and
//! `sync-targets` use too), the controller's settings with their checks ([`Settings`]), and the
//! controller that applies the rule from inside the cluster ([`run`], the site binary's
//! `web targets`).

mod controller;
mod group;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Node;

use crate::error::{Error, Result};

pub use controller::{Config, RESYNC, run};
pub use group::{TargetGroup, elbv2_client};

/// Nodes carrying this label (whatever its value) are left out of external load balancers, as
/// the cloud provider's service controller does (Kubernetes "Well-Known Labels, Annotations and
/// Taints": node.kubernetes.io/exclude-from-external-load-balancers).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// The target state ELBv2 reports while a deregistered target finishes its connections
/// (DescribeTargetHealth, `TargetHealth.State`).
pub const DRAINING: &str = "draining";

/// Why a node takes no traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfit {
    /// Its `Ready` condition is not `True` (NotReady, Unknown, or not reported yet).
    NotReady,
    /// Cordoned: `spec.unschedulable` (`kubectl cordon`, and `kubectl drain` before it evicts).
    Cordoned,
    /// Labelled with [`EXCLUDE_LABEL`].
    Excluded,
    /// It reports no IPv4 InternalIP for the target group to send to.
    NoInternalIp,
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotReady => "not Ready",
            Self::Cordoned => "cordoned (spec.unschedulable)",
            Self::Excluded => "labelled node.kubernetes.io/exclude-from-external-load-balancers",
            Self::NoInternalIp => "has no IPv4 InternalIP",
        })
    }
}

/// The node's first IPv4 InternalIP, whatever its state.
pub fn internal_ip(node: &Node) -> Option<String> {
    let addresses = node.status.as_ref()?.addresses.as_ref()?;
    addresses
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .find(|a| a.address.parse::<Ipv4Addr>().is_ok())
        .map(|a| a.address.clone())
}

/// The IP the target group should send this node's share of traffic to, or why none: a node
/// serves when it is Ready, schedulable and not excluded from external load balancers.
pub fn serving_ip(node: &Node) -> std::result::Result<String, Unfit> {
    let labels = node.metadata.labels.as_ref();
    if labels.is_some_and(|l| l.contains_key(EXCLUDE_LABEL)) {
        return Err(Unfit::Excluded);
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        return Err(Unfit::Cordoned);
    }
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    let ready =
        conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    if !ready {
        return Err(Unfit::NotReady);
    }
    internal_ip(node).ok_or(Unfit::NoInternalIp)
}

/// The IPs that should be targets, each with the name of its node.
pub fn wanted<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> BTreeMap<String, String> {
    nodes
        .into_iter()
        .filter_map(|node| {
            let ip = serving_ip(node).ok()?;
            Some((ip, node.metadata.name.clone().unwrap_or_default()))
        })
        .collect()
}

/// One target of the group: an IP and the port the load balancer sends to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    pub ip: String,
    pub port: i32,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ip, self.port)
    }
}

/// A target as DescribeTargetHealth reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub target: Target,
    /// `healthy`, `initial`, `unhealthy`, `draining`, ...
    pub state: String,
}

impl Registered {
    pub fn new(ip: impl Into<String>, port: i32, state: impl Into<String>) -> Self {
        Self {
            target: Target {
                ip: ip.into(),
                port,
            },
            state: state.into(),
        }
    }

    /// Already deregistered, finishing its connections: neither registered nor to deregister.
    pub fn draining(&self) -> bool {
        self.state == DRAINING
    }
}

/// What to call so that exactly the wanted IPs are registered, on the one port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub register: Vec<Target>,
    pub deregister: Vec<Target>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.register.is_empty() && self.deregister.is_empty()
    }
}

/// Registers each wanted IP on `port` that is not registered there, and deregisters every other
/// registered target: an IP no longer wanted, and a wanted IP on another port. Draining targets
/// count as gone: a wanted one is registered again, and none is deregistered twice. Both lists
/// are sorted and without repeats.
pub fn changes<'a>(
    registered: &[Registered],
    wanted: impl IntoIterator<Item = &'a str>,
    port: i32,
) -> Changes {
    let wanted: BTreeSet<&str> = wanted.into_iter().collect();
    let active: BTreeSet<&Target> = registered
        .iter()
        .filter(|r| !r.draining())
        .map(|r| &r.target)
        .collect();
    let register = wanted
        .iter()
        .map(|ip| Target {
            ip: (*ip).to_owned(),
            port,
        })
        .filter(|t| !active.contains(t))
        .collect();
    let deregister = active
        .into_iter()
        .filter(|t| t.port != port || !wanted.contains(t.ip.as_str()))
        .cloned()
        .collect();
    Changes {
        register,
        deregister,
    }
}

/// `web targets` reads its settings from these variables, which the controller's manifest sets.
pub const TARGET_GROUP_ARN_ENV: &str = "KDEPLOY_TARGET_GROUP_ARN";
pub const TARGET_PORT_ENV: &str = "KDEPLOY_TARGET_PORT";
/// The AWS SDKs' own variables: the region, and an endpoint only for a local emulator.
pub const REGION_ENV: &str = "AWS_REGION";
pub const ENDPOINT_ENV: &str = "AWS_ENDPOINT_URL";

const ARN_RULE: &str = "must be the ARN of an ELBv2 target group, \
     arn:<partition>:elasticloadbalancing:<region>:<12-digit account>:targetgroup/<name>/<hex id>";
const PORT_RULE: &str =
    "must be the targets' port, a number from 1 to 65535 (the ingress controller's HTTP NodePort)";
const REGION_RULE: &str =
    "must be an AWS region such as ap-northeast-2 (lowercase letters, digits and '-')";
const ENDPOINT_RULE: &str = "must be http:// or https:// and a host[:port][/path] of letters, \
     digits and . - _ : / (set only for a local AWS emulator)";

/// What the controller keeps and where its AWS calls go. Every value is checked before it is
/// used or rendered into a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub target_group_arn: String,
    /// The port every target is registered on: the ingress controller's HTTP NodePort.
    pub port: i32,
    pub region: String,
    /// The AWS endpoint, when it is not AWS itself (the local emulator).
    pub endpoint: Option<String>,
}

impl Settings {
    /// Checks each value against its rule; the error names the variable and the rule.
    pub fn check(&self) -> Result<()> {
        let refuse = |field, value: &str, rule| Error::Value {
            field,
            value: value.to_owned(),
            rule,
        };
        if !is_target_group_arn(&self.target_group_arn) {
            return Err(refuse(
                TARGET_GROUP_ARN_ENV,
                &self.target_group_arn,
                ARN_RULE,
            ));
        }
        if !(1..=65535).contains(&self.port) {
            return Err(refuse(TARGET_PORT_ENV, &self.port.to_string(), PORT_RULE));
        }
        if !is_region(&self.region) {
            return Err(refuse(REGION_ENV, &self.region, REGION_RULE));
        }
        if let Some(endpoint) = &self.endpoint
            && !is_endpoint(endpoint)
        {
            return Err(refuse(ENDPOINT_ENV, endpoint, ENDPOINT_RULE));
        }
        Ok(())
    }

    /// The settings from [`TARGET_GROUP_ARN_ENV`], [`TARGET_PORT_ENV`], [`REGION_ENV`] and,
    /// if set, [`ENDPOINT_ENV`], as `lookup` gives them (an empty value counts as unset).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let required = |field: &'static str, rule: &'static str| {
            get(field).ok_or(Error::Unset { field, rule })
        };
        let port = required(TARGET_PORT_ENV, PORT_RULE)?;
        let settings = Self {
            target_group_arn: required(TARGET_GROUP_ARN_ENV, ARN_RULE)?,
            port: port.trim().parse().map_err(|_| Error::Value {
                field: TARGET_PORT_ENV,
                value: port.clone(),
                rule: PORT_RULE,
            })?,
            region: required(REGION_ENV, REGION_RULE)?,
            endpoint: get(ENDPOINT_ENV),
        };
        settings.check()?;
        Ok(settings)
    }
}

fn is_target_group_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [
        "arn",
        partition,
        "elasticloadbalancing",
        region,
        account,
        resource,
    ] = parts.as_slice()
    else {
        return false;
    };
    let Some(("targetgroup", rest)) = resource.split_once('/') else {
        return false;
    };
    let Some((name, id)) = rest.split_once('/') else {
        return false;
    };
    !partition.is_empty()
        && partition.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        && is_region(region)
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        // Target group names: at most 32 alphanumerics or hyphens (CreateTargetGroup).
        && (1..=32).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !id.is_empty()
        && id.len() <= 32
        && id.chars().all(|c| c.is_ascii_hexdigit())
}

fn is_region(region: &str) -> bool {
    (1..=32).contains(&region.len())
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_endpoint(endpoint: &str) -> bool {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"));
    rest.is_some_and(|rest| {
        !rest.is_empty()
            && endpoint.len() <= 253
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_:/".contains(c))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeCondition, NodeSpec, NodeStatus};
    use kube::api::ObjectMeta;

    const ARN: &str = "arn:aws:elasticloadbalancing:ap-northeast-2:123456789012:targetgroup/kdeploy-http/50dc6c495c0c9188";

    /// A node fixture: Ready, schedulable, with an InternalIP, until told otherwise.
    struct NodeBuilder(Node);

    fn node(name: &str, ip: &str) -> NodeBuilder {
        NodeBuilder(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                addresses: Some(vec![
                    NodeAddress {
                        type_: "Hostname".into(),
                        address: name.into(),
                    },
                    NodeAddress {
                        type_: "InternalIP".into(),
                        address: ip.into(),
                    },
                ]),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..NodeCondition::default()
                }]),
                ..NodeStatus::default()
            }),
        })
    }

    impl NodeBuilder {
        fn ready(mut self, status: &str) -> Self {
            if let Some(s) = self.0.status.as_mut() {
                s.conditions = Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: status.into(),
                    ..NodeCondition::default()
                }]);
            }
            self
        }
        fn cordoned(mut self) -> Self {
            self.0.spec = Some(NodeSpec {
                unschedulable: Some(true),
                ..NodeSpec::default()
            });
            self
        }
        fn label(mut self, key: &str, value: &str) -> Self {
            self.0
                .metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(key.into(), value.into());
            self
        }
        fn addresses(mut self, addresses: &[(&str, &str)]) -> Self {
            if let Some(s) = self.0.status.as_mut() {
                s.addresses = Some(
                    addresses
                        .iter()
                        .map(|(t, a)| NodeAddress {
                            type_: (*t).into(),
                            address: (*a).into(),
                        })
                        .collect(),
                );
            }
            self
        }
        fn build(self) -> Node {
            self.0
        }
    }

    fn target(ip: &str, port: i32) -> Target {
        Target {
            ip: ip.into(),
            port,
        }
    }

    #[test]
    fn a_ready_schedulable_node_serves_on_its_internal_ip() {
        assert_eq!(
            serving_ip(&node("a", "10.0.0.11").build()),
            Ok("10.0.0.11".to_owned())
        );
        // IPv4 only (the target group is IPv4), the first InternalIP.
        let dual = node("b", "")
            .addresses(&[
                ("ExternalIP", "3.34.1.1"),
                ("InternalIP", "fd00::5"),
                ("InternalIP", "10.0.1.7"),
                ("InternalIP", "10.0.1.8"),
            ])
            .build();
        assert_eq!(serving_ip(&dual), Ok("10.0.1.7".to_owned()));
        let external_only = node("c", "").addresses(&[("ExternalIP", "3.34.1.1")]);
        assert_eq!(serving_ip(&external_only.build()), Err(Unfit::NoInternalIp));
    }

    #[test]
    fn not_ready_unknown_or_unreported_nodes_do_not_serve() {
        for status in ["False", "Unknown"] {
            let n = node("a", "10.0.0.11").ready(status).build();
            assert_eq!(serving_ip(&n), Err(Unfit::NotReady), "{status}");
        }
        let mut silent = node("a", "10.0.0.11").build();
        silent.status.as_mut().unwrap().conditions = None;
        assert_eq!(serving_ip(&silent), Err(Unfit::NotReady));
    }

    #[test]
    fn cordoned_nodes_do_not_serve() {
        let n = node("a", "10.0.0.11").cordoned().build();
        assert_eq!(serving_ip(&n), Err(Unfit::Cordoned));
    }

    #[test]
    fn the_exclusion_label_excludes_whatever_its_value() {
        for value in ["", "true", "false"] {
            let n = node("a", "10.0.0.11").label(EXCLUDE_LABEL, value).build();
            assert_eq!(serving_ip(&n), Err(Unfit::Excluded), "{value:?}");
        }
        let other = node("a", "10.0.0.11")
            .label("kubernetes.io/role", "x")
            .build();
        assert!(serving_ip(&other).is_ok());
    }

    #[test]
    fn wanted_names_each_serving_ip_by_its_node() {
        let nodes = [
            node("a", "10.0.0.11").build(),
            node("b", "10.0.0.12").cordoned().build(),
            node("c", "10.0.0.13").ready("False").build(),
            node("d", "10.0.0.14").build(),
        ];
        let wanted = wanted(&nodes);
        assert_eq!(
            wanted.into_iter().collect::<Vec<_>>(),
            [
                ("10.0.0.11".to_owned(), "a".to_owned()),
                ("10.0.0.14".to_owned(), "d".to_owned())
            ]
        );
    }

    #[test]
    fn registers_new_nodes_and_removes_gone_ones_and_wrong_ports() {
        let registered = [
            Registered::new("10.0.0.5", 30080, "healthy"),
            Registered::new("10.0.0.6", 30080, "healthy"),
            Registered::new("10.0.0.7", 9999, "healthy"),
        ];
        let changes = changes(&registered, ["10.0.0.5", "10.0.0.7", "10.0.16.9"], 30080);
        assert_eq!(
            changes.register,
            [target("10.0.0.7", 30080), target("10.0.16.9", 30080)]
        );
        assert_eq!(
            changes.deregister,
            [target("10.0.0.6", 30080), target("10.0.0.7", 9999)]
        );
    }

    #[test]
    fn nothing_to_do_when_in_sync() {
        let registered = [Registered::new("10.0.0.5", 30080, "initial")];
        assert!(changes(&registered, ["10.0.0.5"], 30080).is_empty());
    }

    #[test]
    fn no_node_serving_deregisters_everything() {
        let registered = [
            Registered::new("10.0.0.5", 30080, "healthy"),
            Registered::new("10.0.0.6", 30080, "unhealthy"),
        ];
        let changes = changes(&registered, [], 30080);
        assert!(changes.register.is_empty());
        assert_eq!(changes.deregister.len(), 2);
    }

    #[test]
    fn draining_targets_are_neither_deregistered_again_nor_counted_as_registered() {
        let registered = [
            Registered::new("10.0.0.5", 30080, DRAINING),
            Registered::new("10.0.0.6", 30080, DRAINING),
        ];
        // 10.0.0.5 is wanted again (its node came back): register it; 10.0.0.6 is left to drain.
        let changes = changes(&registered, ["10.0.0.5"], 30080);
        assert_eq!(changes.register, [target("10.0.0.5", 30080)]);
        assert!(changes.deregister.is_empty());
    }

    #[test]
    fn repeats_are_asked_for_once() {
        let registered = [
            Registered::new("10.0.0.6", 30080, "healthy"),
            Registered::new("10.0.0.6", 30080, "healthy"),
        ];
        let changes = changes(&registered, ["10.0.0.5", "10.0.0.5"], 30080);
        assert_eq!(changes.register, [target("10.0.0.5", 30080)]);
        assert_eq!(changes.deregister, [target("10.0.0.6", 30080)]);
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn settings_come_from_the_environment() {
        let vars = [
            (TARGET_GROUP_ARN_ENV, ARN),
            (TARGET_PORT_ENV, "30080"),
            (REGION_ENV, "ap-northeast-2"),
            (ENDPOINT_ENV, ""),
        ];
        let settings = Settings::from_env(env(&vars)).unwrap();
        assert_eq!(
            settings,
            Settings {
                target_group_arn: ARN.into(),
                port: 30080,
                region: "ap-northeast-2".into(),
                endpoint: None,
            }
        );
        let local = [
            (TARGET_GROUP_ARN_ENV, ARN),
            (TARGET_PORT_ENV, "30080"),
            (REGION_ENV, "ap-northeast-2"),
            (ENDPOINT_ENV, "http://127.0.0.1:5000"),
        ];
        assert_eq!(
            Settings::from_env(env(&local)).unwrap().endpoint.as_deref(),
            Some("http://127.0.0.1:5000")
        );
    }

    #[test]
    fn a_missing_or_wrong_setting_is_named_with_its_rule() {
        let missing = Settings::from_env(env(&[(TARGET_PORT_ENV, "30080")])).unwrap_err();
        assert!(
            matches!(missing, Error::Unset { field, .. } if field == TARGET_GROUP_ARN_ENV),
            "{missing}"
        );
        assert!(
            missing
                .to_string()
                .starts_with("KDEPLOY_TARGET_GROUP_ARN is not set: must be")
        );
        for (name, value) in [
            (
                TARGET_GROUP_ARN_ENV,
                "arn:aws:elasticloadbalancing:ap-northeast-2:123456789012:loadbalancer/net/x/50dc6c495c0c9188",
            ),
            (
                TARGET_GROUP_ARN_ENV,
                "arn:aws:elasticloadbalancing:ap-northeast-2:1234:targetgroup/x/50dc",
            ),
            (
                TARGET_GROUP_ARN_ENV,
                "arn:aws:elasticloadbalancing:ap-northeast-2:123456789012:targetgroup/x\"y/50dc",
            ),
            (TARGET_PORT_ENV, "http"),
            (TARGET_PORT_ENV, "0"),
            (TARGET_PORT_ENV, "65536"),
            (REGION_ENV, "Seoul"),
            (ENDPOINT_ENV, "127.0.0.1:5000"),
            (ENDPOINT_ENV, "http://x\"\n  evil: true"),
        ] {
            let mut vars = vec![
                (TARGET_GROUP_ARN_ENV, ARN),
                (TARGET_PORT_ENV, "30080"),
                (REGION_ENV, "ap-northeast-2"),
            ];
            vars.retain(|(n, _)| *n != name);
            vars.push((name, value));
            let err = Settings::from_env(env(&vars)).unwrap_err();
            assert!(
                matches!(&err, Error::Value { field, value: v, .. } if *field == name && v == value),
                "{name}={value}: {err}"
            );
            assert!(err.to_string().contains(": must be"), "{err}");
        }
    }
}
