//! What an operator can set; everything else the site needs lives in the cluster.

use std::time::Duration;

/// Field manager for every server-side apply the site makes, so ownership is one name.
pub const FIELD_MANAGER: &str = "kdeploy-web";

/// The label value that marks objects the site created.
pub const MANAGED_BY: &str = "kdeploy";

/// The cluster-wide names the platform owns; the installed manifest hands them to the site, so
/// the site never keeps a second copy of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNames {
    /// The site's own namespace (its Secrets, users and settings).
    pub namespace: String,
    /// Ingress class of the controller that routes developers' endpoints.
    pub ingress_class: String,
    /// Namespaces of the platform itself, never usable as usernames.
    pub platform_namespaces: Vec<String>,
    /// Base URL of the ingress controller's Service, where the API console sends requests.
    pub console_upstream: String,
    /// Secret where the site leaves its first administrator's credentials, once.
    pub initial_admin_secret: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Namespace holding the site's own Secrets (users, session key) and settings.
    pub system_namespace: String,
    /// Ingress class of every repository's Ingress.
    pub ingress_class: String,
    /// Secret holding the first administrator's credentials until an administrator deletes it.
    pub initial_admin_secret: String,
    /// Host of the public endpoints (the load balancer's DNS name), used in Ingress rules and links.
    pub public_host: String,
    /// Marks cookies `Secure`; off only for plain-HTTP local runs.
    pub secure_cookies: bool,
    /// Upper bound of a repository's replicas (the quota must fit it).
    pub max_replicas: i32,
    /// ResourceQuota and LimitRange for each user namespace; `None` when the operator manages them.
    pub quota: Option<QuotaPolicy>,
    /// Cost of new password hashes (verification uses the cost stored in each hash).
    pub password_cost: PasswordCost,
    pub login_limit: LoginLimit,
    /// Namespaces of the platform itself, never usable as usernames.
    pub platform_namespaces: Vec<String>,
    /// Signing key for cookies (at least 64 bytes); read from or created as a Secret when `None`.
    pub session_key: Option<Vec<u8>>,
    /// How long a sign-in lasts.
    pub session_ttl: Duration,
    pub console: ConsoleLimits,
}

impl Config {
    /// A configuration with the given names and the defaults for everything else.
    pub fn new(public_host: impl Into<String>, names: ClusterNames) -> Self {
        Self {
            system_namespace: names.namespace,
            ingress_class: names.ingress_class,
            initial_admin_secret: names.initial_admin_secret,
            public_host: public_host.into(),
            secure_cookies: true,
            max_replicas: 5,
            quota: Some(QuotaPolicy::default()),
            password_cost: PasswordCost::default(),
            login_limit: LoginLimit::default(),
            platform_namespaces: names.platform_namespaces,
            session_key: None,
            session_ttl: Duration::from_secs(12 * 3600),
            console: ConsoleLimits::new(names.console_upstream),
        }
    }
}

/// Where and how the API console sends requests; each limit is shown to the user as such.
#[derive(Debug, Clone)]
pub struct ConsoleLimits {
    /// Base URL of the ingress (`http://host:port`): in the cluster the ingress controller's
    /// Service, locally the simulator's ingress. The Host header is always `public_host`.
    pub upstream: String,
    pub timeout: Duration,
    pub max_response_bytes: usize,
    /// Requests per user per `window`.
    pub max_calls: u32,
    pub window: Duration,
    /// Calls kept in each user's history.
    pub history_len: usize,
}

impl ConsoleLimits {
    /// The default limits for sending through `upstream`.
    pub fn new(upstream: String) -> Self {
        Self {
            upstream,
            timeout: Duration::from_secs(10),
            max_response_bytes: 256 * 1024,
            max_calls: 30,
            window: Duration::from_secs(60),
            history_len: 20,
        }
    }
}

/// Limits of one user namespace, sized so `max_replicas` pods of every repository can run.
#[derive(Debug, Clone)]
pub struct QuotaPolicy {
    pub pods: u32,
    pub requests_cpu: String,
    pub requests_memory: String,
    pub limits_cpu: String,
    pub limits_memory: String,
}

impl Default for QuotaPolicy {
    fn default() -> Self {
        Self {
            pods: 20,
            requests_cpu: "2".into(),
            requests_memory: "3Gi".into(),
            limits_cpu: "10".into(),
            limits_memory: "6Gi".into(),
        }
    }
}

/// Argon2id parameters (memory in KiB, iterations, lanes).
#[derive(Debug, Clone, Copy)]
pub struct PasswordCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub lanes: u32,
}

impl Default for PasswordCost {
    /// The OWASP recommendation for argon2id.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            lanes: 1,
        }
    }
}

/// Sign-in attempts allowed per user within a window before further attempts are refused.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimit {
    pub max_failures: u32,
    pub window: Duration,
}

impl Default for LoginLimit {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window: Duration::from_secs(15 * 60),
        }
    }
}
