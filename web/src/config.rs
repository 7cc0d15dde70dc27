//! What an operator can set; everything else the site needs lives in the cluster.

use std::fmt;
use std::net::Ipv4Addr;
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
    /// Where developers reach the site and their endpoints: the Ingress host is its host, every
    /// link the site shows starts with it.
    pub public_url: PublicUrl,
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
    /// Longest a write (create, change, delete) waits for the cluster before it is reported as
    /// not answering; pages never wait for the cluster (they read the mirror).
    pub write_timeout: Duration,
    /// Live-update streams one user may hold open at once (each open list or detail page holds
    /// one), counted by each site replica.
    pub live_streams_per_user: usize,
}

impl Config {
    /// A configuration with the given names and the defaults for everything else.
    pub fn new(public_url: PublicUrl, names: ClusterNames) -> Self {
        Self {
            system_namespace: names.namespace,
            ingress_class: names.ingress_class,
            initial_admin_secret: names.initial_admin_secret,
            public_url,
            secure_cookies: true,
            max_replicas: 5,
            quota: Some(QuotaPolicy::default()),
            password_cost: PasswordCost::default(),
            login_limit: LoginLimit::default(),
            platform_namespaces: names.platform_namespaces,
            session_key: None,
            session_ttl: Duration::from_secs(12 * 3600),
            console: ConsoleLimits::new(names.console_upstream),
            write_timeout: Duration::from_secs(20),
            live_streams_per_user: 20,
        }
    }
}

/// The environment variable (and `--public-url` flag) the platform sets the public URL with.
pub const PUBLIC_URL_ENV: &str = "KDEPLOY_PUBLIC_URL";

/// What a public URL must look like, said once for every error.
pub const PUBLIC_URL_RULE: &str = "scheme://host[:port] with scheme http or https, host a lowercase DNS name (RFC 1123; not an IP address, since it becomes the Ingress host), an optional port 1-65535, and no user, path, query or fragment (one trailing / is accepted), e.g. http://kdeploy.localhost:8080";

/// The public base URL of the site and of every endpoint: `scheme://host[:port]`, checked once at
/// start-up so that the Ingress host, the links and the console's Host header all agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    https: bool,
    host: String,
    port: Option<u16>,
}

/// Why a public URL was refused; the message names the variable and the rule broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{PUBLIC_URL_ENV} {value:?} is not a valid public URL: {problem}. Expected {PUBLIC_URL_RULE}"
)]
pub struct PublicUrlError {
    pub value: String,
    pub problem: UrlProblem,
}

/// The one rule a refused public URL breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlProblem {
    #[error("it is empty")]
    Empty,
    #[error("it has no scheme (http:// or https://)")]
    NoScheme,
    #[error("the scheme {0:?} is neither http nor https")]
    Scheme(String),
    #[error("it has a user or password (@), which a public address must not carry")]
    UserInfo,
    #[error("it has a path ({0:?}); the site adds /<namespace>/<repository>/ itself")]
    Path(String),
    #[error("it has a query (?)")]
    Query,
    #[error("it has a fragment (#)")]
    Fragment,
    #[error("it has no host")]
    NoHost,
    #[error("the port {0:?} is not a number from 1 to 65535")]
    Port(String),
    #[error("the host {0:?} has uppercase letters; write it in lowercase")]
    Uppercase(String),
    #[error("the host {0:?} is not a DNS name (RFC 1123)")]
    Host(String),
    #[error("the host {0:?} is an IP address; an Ingress host must be a DNS name")]
    IpHost(String),
}

impl PublicUrl {
    /// Parses `scheme://host[:port]` strictly (see [`PUBLIC_URL_RULE`]).
    pub fn parse(value: &str) -> Result<Self, PublicUrlError> {
        Self::check(value).map_err(|problem| PublicUrlError {
            value: value.to_string(),
            problem,
        })
    }

    fn check(value: &str) -> Result<Self, UrlProblem> {
        if value.is_empty() {
            return Err(UrlProblem::Empty);
        }
        let (scheme, rest) = value.split_once("://").ok_or(UrlProblem::NoScheme)?;
        let https = match scheme {
            "http" => false,
            "https" => true,
            other => return Err(UrlProblem::Scheme(other.to_string())),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('#') {
            return Err(UrlProblem::Fragment);
        }
        if rest.contains('?') {
            return Err(UrlProblem::Query);
        }
        if rest.contains('@') {
            return Err(UrlProblem::UserInfo);
        }
        if let Some(at) = rest.find('/') {
            return Err(UrlProblem::Path(rest[at..].to_string()));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(parse_port(port)?)),
            None => (rest, None),
        };
        if host.is_empty() {
            return Err(UrlProblem::NoHost);
        }
        if host.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(UrlProblem::Uppercase(host.to_string()));
        }
        // Kubernetes refuses an IP as an Ingress rule's host ("must be a DNS name, not an IP
        // address": pkg/apis/networking/validation/validation.go validateIngressRules).
        if host.parse::<Ipv4Addr>().is_ok() || host.starts_with('[') {
            return Err(UrlProblem::IpHost(host.to_string()));
        }
        if !is_dns_name(host) {
            return Err(UrlProblem::Host(host.to_string()));
        }
        Ok(Self {
            https,
            host: host.to_string(),
            port,
        })
    }

    /// The host alone: what an Ingress rule matches (NGINX matches server names without the port).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `host[:port]` as written: the Host header a browser sends to this URL.
    pub fn authority(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }

    /// `scheme://host[:port]`, without a trailing `/`.
    pub fn base(&self) -> String {
        format!(
            "{}://{}",
            if self.https { "https" } else { "http" },
            self.authority()
        )
    }

    /// The address of a repository: `<base>/<namespace>/<repo>/`.
    pub fn endpoint(&self, namespace: &str, repo: &str) -> String {
        format!("{}/{namespace}/{repo}/", self.base())
    }
}

impl fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base())
    }
}

impl std::str::FromStr for PublicUrl {
    type Err = PublicUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn parse_port(port: &str) -> Result<u16, UrlProblem> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(UrlProblem::Port(port.to_string())),
    }
}

/// RFC 1123 host name: dot-separated labels of lowercase letters, digits and `-`, each 1-63
/// characters and not starting or ending with `-`, at most 253 in all. A last label of digits
/// only is refused, so a mistyped IPv4 address (`10.0.0.256`) is not taken for a name.
fn is_dns_name(host: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    host.len() <= 253
        && host.split('.').all(label_ok)
        && !host
            .rsplit('.')
            .next()
            .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
}

/// Where and how the API console sends requests; each limit is shown to the user as such.
#[derive(Debug, Clone)]
pub struct ConsoleLimits {
    /// Base URL of the ingress (`http://host:port`): in the cluster the ingress controller's
    /// Service, locally the simulator's ingress. The Host header is always the public URL's
    /// `host[:port]`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_give_the_host_the_authority_and_the_endpoints() {
        let local = PublicUrl::parse("http://kdeploy.localhost:8080").unwrap();
        assert_eq!(local.host(), "kdeploy.localhost");
        assert_eq!(local.authority(), "kdeploy.localhost:8080");
        assert_eq!(local.base(), "http://kdeploy.localhost:8080");
        assert_eq!(
            local.endpoint("alice", "web"),
            "http://kdeploy.localhost:8080/alice/web/"
        );
        let aws = PublicUrl::parse("https://kdeploy-nlb-1.elb.amazonaws.com/").unwrap();
        assert_eq!(aws.host(), "kdeploy-nlb-1.elb.amazonaws.com");
        assert_eq!(aws.authority(), aws.host());
        assert_eq!(aws.to_string(), "https://kdeploy-nlb-1.elb.amazonaws.com");
        assert_eq!(
            PublicUrl::parse("http://10.0.0.7:30080")
                .unwrap_err()
                .problem,
            UrlProblem::IpHost("10.0.0.7".into())
        );
    }

    #[test]
    fn refused_public_urls_name_the_variable_and_the_rule() {
        for (value, problem) in [
            ("", UrlProblem::Empty),
            ("kdeploy.localhost:8080", UrlProblem::NoScheme),
            ("ftp://x.example", UrlProblem::Scheme("ftp".into())),
            ("HTTP://x.example", UrlProblem::Scheme("HTTP".into())),
            ("http://me:pw@x.example", UrlProblem::UserInfo),
            ("http://x.example/site", UrlProblem::Path("/site".into())),
            ("http://x.example//", UrlProblem::Path("/".into())),
            ("http://x.example/?a=1", UrlProblem::Query),
            ("http://x.example#top", UrlProblem::Fragment),
            ("http://", UrlProblem::NoHost),
            ("http://:8080", UrlProblem::NoHost),
            ("http://x.example:0", UrlProblem::Port("0".into())),
            ("http://x.example:65536", UrlProblem::Port("65536".into())),
            ("http://x.example:+80", UrlProblem::Port("+80".into())),
            ("http://x.example:", UrlProblem::Port(String::new())),
            (
                "http://Kdeploy.localhost",
                UrlProblem::Uppercase("Kdeploy.localhost".into()),
            ),
            (
                "http://under_score.example",
                UrlProblem::Host("under_score.example".into()),
            ),
            ("http://-x.example", UrlProblem::Host("-x.example".into())),
            ("http://x..example", UrlProblem::Host("x..example".into())),
            ("http://10.0.0.256", UrlProblem::Host("10.0.0.256".into())),
            ("http://[::1]:8080", UrlProblem::IpHost("[::1]".into())),
            ("http://x\"\n  evil", UrlProblem::Host("x\"\n  evil".into())),
        ] {
            let e = PublicUrl::parse(value).unwrap_err();
            assert_eq!(e.problem, problem, "{value:?}");
            let text = e.to_string();
            assert!(
                text.starts_with(PUBLIC_URL_ENV) && text.contains(PUBLIC_URL_RULE),
                "{text}"
            );
        }
        let long = format!("http://{}.example", "a".repeat(64));
        assert!(matches!(
            PublicUrl::parse(&long).unwrap_err().problem,
            UrlProblem::Host(_)
        ));
    }
}
