//! The built-in resource types the simulator serves, as discovery and routing see them.

/// Verbs of an ordinary read-write resource, in the order the real discovery documents list them.
const CRUD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Static description of one resource type (one row of an `APIResourceList`).
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub subresources: &'static [&'static str],
}

impl ResourceType {
    /// `apps/v1` or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, the form error messages use.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Storage key prefix, unique per resource type.
    pub fn key(&self) -> &'static str {
        self.plural
    }

    pub fn has_status(&self) -> bool {
        self.subresources.contains(&"status")
    }

    pub fn is(&self, group: &str, plural: &str) -> bool {
        self.group == group && self.plural == plural
    }
}

macro_rules! resource {
    ($group:expr, $plural:expr, $singular:expr, $kind:expr, $ns:expr, [$($short:expr),*], $verbs:expr, [$($sub:expr),*]) => {
        ResourceType {
            group: $group,
            version: "v1",
            plural: $plural,
            singular: $singular,
            kind: $kind,
            namespaced: $ns,
            short_names: &[$($short),*],
            verbs: $verbs,
            subresources: &[$($sub),*],
        }
    };
}

pub static RESOURCES: &[ResourceType] = &[
    resource!(
        "",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        ["ns"],
        &[
            "create", "delete", "get", "list", "patch", "update", "watch"
        ],
        ["status"]
    ),
    resource!("", "nodes", "node", "Node", false, ["no"], CRUD, ["status"]),
    resource!(
        "",
        "pods",
        "pod",
        "Pod",
        true,
        ["po"],
        CRUD,
        ["status", "log"]
    ),
    resource!(
        "",
        "services",
        "service",
        "Service",
        true,
        ["svc"],
        CRUD,
        ["status"]
    ),
    resource!(
        "",
        "endpoints",
        "endpoints",
        "Endpoints",
        true,
        ["ep"],
        CRUD,
        []
    ),
    resource!(
        "",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        ["cm"],
        CRUD,
        []
    ),
    resource!("", "secrets", "secret", "Secret", true, [], CRUD, []),
    resource!(
        "",
        "resourcequotas",
        "resourcequota",
        "ResourceQuota",
        true,
        ["quota"],
        CRUD,
        ["status"]
    ),
    resource!(
        "",
        "limitranges",
        "limitrange",
        "LimitRange",
        true,
        ["limits"],
        CRUD,
        []
    ),
    resource!(
        "",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        ["sa"],
        CRUD,
        ["token"]
    ),
    resource!("", "events", "event", "Event", true, ["ev"], CRUD, []),
    resource!(
        "apps",
        "deployments",
        "deployment",
        "Deployment",
        true,
        ["deploy"],
        CRUD,
        ["status", "scale"]
    ),
    resource!(
        "apps",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        true,
        ["rs"],
        CRUD,
        ["status", "scale"]
    ),
    resource!(
        "networking.k8s.io",
        "ingresses",
        "ingress",
        "Ingress",
        true,
        ["ing"],
        CRUD,
        ["status"]
    ),
    resource!(
        "networking.k8s.io",
        "ingressclasses",
        "ingressclass",
        "IngressClass",
        false,
        [],
        CRUD,
        []
    ),
    resource!(
        "rbac.authorization.k8s.io",
        "roles",
        "role",
        "Role",
        true,
        [],
        CRUD,
        []
    ),
    resource!(
        "rbac.authorization.k8s.io",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        true,
        [],
        CRUD,
        []
    ),
    resource!(
        "rbac.authorization.k8s.io",
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        false,
        [],
        CRUD,
        []
    ),
    resource!(
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
        [],
        CRUD,
        []
    ),
    resource!(
        "coordination.k8s.io",
        "leases",
        "lease",
        "Lease",
        true,
        [],
        CRUD,
        []
    ),
    resource!(
        "authorization.k8s.io",
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
        "SelfSubjectAccessReview",
        false,
        [],
        &["create"],
        []
    ),
];

/// API groups in the order `/apis` lists them (the core group is served under `/api`).
pub fn groups() -> Vec<&'static str> {
    let mut groups: Vec<&'static str> = Vec::new();
    for rt in RESOURCES {
        if !rt.group.is_empty() && !groups.contains(&rt.group) {
            groups.push(rt.group);
        }
    }
    groups
}

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|rt| rt.group == group && rt.version == version && rt.plural == plural)
}

pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|rt| rt.kind == kind && rt.api_version() == api_version)
}

pub fn in_group_version<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceType> + 'a {
    RESOURCES
        .iter()
        .filter(move |rt| rt.group == group && rt.version == version)
}

/// Well-known types looked up by the controllers.
pub mod known {
    use super::{ResourceType, find};

    fn get(group: &str, plural: &str) -> &'static ResourceType {
        match find(group, "v1", plural) {
            Some(rt) => rt,
            None => unreachable!("{plural} is in the static resource table"),
        }
    }

    pub fn namespaces() -> &'static ResourceType {
        get("", "namespaces")
    }
    pub fn nodes() -> &'static ResourceType {
        get("", "nodes")
    }
    pub fn pods() -> &'static ResourceType {
        get("", "pods")
    }
    pub fn services() -> &'static ResourceType {
        get("", "services")
    }
    pub fn endpoints() -> &'static ResourceType {
        get("", "endpoints")
    }
    pub fn events() -> &'static ResourceType {
        get("", "events")
    }
    pub fn deployments() -> &'static ResourceType {
        get("apps", "deployments")
    }
    pub fn replicasets() -> &'static ResourceType {
        get("apps", "replicasets")
    }
    pub fn ingresses() -> &'static ResourceType {
        get("networking.k8s.io", "ingresses")
    }
    pub fn serviceaccounts() -> &'static ResourceType {
        get("", "serviceaccounts")
    }
    pub fn secrets() -> &'static ResourceType {
        get("", "secrets")
    }
    pub fn configmaps() -> &'static ResourceType {
        get("", "configmaps")
    }
    pub fn resourcequotas() -> &'static ResourceType {
        get("", "resourcequotas")
    }
    pub fn limitranges() -> &'static ResourceType {
        get("", "limitranges")
    }
}
