//! The stack's configuration: `stack.toml` plus command-line overrides, validated up front so
//! that a bad value is reported with its field and rule before anything is created.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::Deserialize;

mod resolve;
pub mod versions;

pub use resolve::{check_stack_name, parse_duration};
pub use versions::{Date, Support};
pub const DEFAULT_REGION: &str = "ap-northeast-2";
pub const DEFAULT_NAME: &str = "kdeploy";

/// Regions of the standard `aws` partition (IAM ARNs and service principals below assume it).
pub const KNOWN_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ap-southeast-6",
];

/// The longest stack name: the NLB name `<name>-nlb` must fit ELB's 32 characters.
const MAX_NAME_LEN: usize = 24;

/// `stack.toml` as written by the operator; every field optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StackFile {
    pub name: Option<String>,
    pub region: Option<String>,
    pub kubernetes_version: Option<String>,
    /// `"standard"` (the default) or `"extended"`: whether versions in EKS extended support
    /// (billed per cluster-hour) may be used, and the cluster's upgrade policy.
    pub support: Option<String>,
    pub network: NetworkFile,
    pub nodes: NodesFile,
    pub access: AccessFile,
    pub timeouts: TimeoutsFile,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkFile {
    pub vpc_cidr: Option<String>,
    /// Explicit subnet CIDRs, one per zone; by default the first two /20s of the VPC.
    pub subnet_cidrs: Option<Vec<String>>,
    /// Zone letters appended to the region; the paper uses `a` and `c`.
    pub zones: Option<Vec<String>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodesFile {
    pub instance_type: Option<String>,
    pub min: Option<i64>,
    pub desired: Option<i64>,
    pub max: Option<i64>,
}

/// Who may reach what, beyond what the stack itself needs.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessFile {
    /// Networks outside the VPC (a VPN, a peered VPC) that may reach the Kubernetes API's
    /// private endpoint: ingress rules on 443 of the cluster security group.
    pub private_api_cidrs: Option<Vec<String>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutsFile {
    /// e.g. "30m": how long EKS may take to become ACTIVE (or to be deleted).
    pub cluster: Option<String>,
    /// How long instances may take to be InService, load balancers active, deletions finished.
    pub resources: Option<String>,
    /// The longest pause between two polls of something that is not ready yet.
    pub poll: Option<String>,
}

/// Overrides from the command line; they win over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub name: Option<String>,
    pub region: Option<String>,
    pub kubernetes_version: Option<String>,
    pub nodes: Option<i64>,
    /// `--extended-support`: as `support = "extended"` in the file.
    pub extended_support: bool,
    /// The day the support windows are judged on; the system clock when `None` (tests pin it).
    pub today: Option<Date>,
}

/// A validated stack configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackConfig {
    pub name: String,
    pub region: String,
    /// The version a new cluster is made with. Unless pinned, the newest accepted one in the
    /// release table; the cluster step then takes the newest whose node AMI is published.
    pub kubernetes_version: String,
    /// Whether the operator chose the version (file or flag).
    pub version_pinned: bool,
    /// The cluster's upgrade policy (`upgradePolicy.supportType`).
    pub support: Support,
    /// The day the version was judged on, for the warnings of `plan` and `up`.
    pub today: Date,
    pub vpc_cidr: Ipv4Net,
    pub zones: [Zone; 2],
    pub nodes: NodeCounts,
    pub instance_type: String,
    /// Networks outside the VPC admitted to the private API endpoint (cluster security group,
    /// tcp 443), sorted, no duplicates.
    pub private_api_cidrs: Vec<Ipv4Net>,
    pub timeouts: Timeouts,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// The zone letter, `a` or `c`: also the subnet's part tag (`subnet-a`).
    pub letter: String,
    /// The full availability zone name, e.g. `ap-northeast-2a`.
    pub name: String,
    pub cidr: Ipv4Net,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeCounts {
    pub min: i32,
    pub desired: i32,
    pub max: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub cluster_limit: Duration,
    pub resources_limit: Duration,
    /// Polls start after half a second and back off up to this.
    pub poll: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            cluster_limit: Duration::from_secs(30 * 60),
            resources_limit: Duration::from_secs(15 * 60),
            poll: Duration::from_secs(15),
        }
    }
}

/// How a wait proceeds: until when, and how often it looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub limit: Duration,
    pub max_poll: Duration,
}

impl Timeouts {
    /// Waits on EKS itself (create, update, delete).
    pub fn cluster(&self) -> Pace {
        Pace {
            limit: self.cluster_limit,
            max_poll: self.poll,
        }
    }

    /// Waits on everything else.
    pub fn resources(&self) -> Pace {
        Pace {
            limit: self.resources_limit,
            max_poll: self.poll,
        }
    }
}

/// One rejected value: which field, what was given, which rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub value: String,
    pub rule: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {:?}: {}", self.field, self.value, self.rule)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML for a stack: {message}")]
    Parse { path: String, message: String },
    #[error("invalid configuration:\n{}", .0.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Invalid>),
}

impl StackFile {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })
    }
}

impl StackConfig {
    /// The configuration everyone gets without a file: the paper's stack in Seoul.
    pub fn default_for(name: &str) -> Result<Self, ConfigError> {
        StackFile::default().resolve(&Overrides {
            name: Some(name.to_owned()),
            ..Overrides::default()
        })
    }
}
