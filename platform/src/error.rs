//! The crate's one error type. Each variant names the resource or input that failed and keeps the
//! typed cause as its source, so a caller can still match on the Kubernetes status code.

use std::path::PathBuf;
use std::time::Duration;

/// A boxed cause from a library whose error types we do not match on.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the cluster endpoint {0:?} is not a URL")]
    Endpoint(String),
    #[error("the cluster's certificate authority is not a base64 PEM bundle: {problem}")]
    CertificateAuthority {
        problem: &'static str,
        #[source]
        source: Option<BoxError>,
    },
    #[error("cannot build a Kubernetes client for {endpoint}: {source}")]
    Client {
        endpoint: String,
        #[source]
        source: kube::Error,
    },

    #[error("could not sign the STS request for the EKS token: {0}")]
    Signing(#[source] BoxError),
    #[error("could not make a bearer token for the cluster: {0}")]
    Token(#[source] BoxError),

    #[error("EKS {operation} for {principal} failed: {code}: {message}")]
    Eks {
        operation: &'static str,
        principal: String,
        code: String,
        message: String,
    },
    #[error("the aws-auth ConfigMap's mapRoles is not valid YAML: {0}")]
    MapRoles(#[source] serde_yaml::Error),
    #[error(
        "the aws-auth ConfigMap kept changing during {attempts} attempts to add the node role; try again"
    )]
    MapRolesContended { attempts: usize },

    #[error("cannot read {}: {source}", path.display())]
    KubeconfigRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a kubeconfig: {source}", path.display())]
    KubeconfigYaml {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{} is not a kubeconfig: {problem}", path.display())]
    KubeconfigShape { path: PathBuf, problem: String },
    #[error("cannot write {}: {source}", path.display())]
    KubeconfigWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{field} = {value:?}: {rule}")]
    Value {
        field: &'static str,
        value: String,
        rule: &'static str,
    },
    #[error("{field} is not set: {rule}")]
    Unset {
        field: &'static str,
        rule: &'static str,
    },
    /// An ELBv2 call of the targets controller failed; `code` is AWS's error code (`unknown`
    /// when the call got no answer) and `message` its message or the transport's error.
    #[error("ELBv2 {operation} on target group {target_group} failed: {code}: {message}")]
    TargetGroup {
        operation: &'static str,
        target_group: String,
        code: String,
        message: String,
    },
    #[error("the manifest still has a placeholder {0} after rendering")]
    Placeholder(String),
    #[error("document {index} of the manifest is not a Kubernetes object: {source}")]
    Parse {
        index: usize,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("document {index} of the manifest is not a Kubernetes object: {missing} is missing")]
    Incomplete { index: usize, missing: &'static str },

    /// A Kubernetes API call on one resource failed; `resource` reads like `Deployment ns/name`.
    #[error("{action} {resource}: {}", describe(source))]
    Api {
        action: &'static str,
        resource: String,
        #[source]
        source: kube::Error,
    },
    #[error("waiting for {what}: {source}")]
    Watch {
        what: String,
        #[source]
        source: kube::runtime::watcher::Error,
    },
    #[error("timed out after {} waiting for {what}; last seen: {last}", format_duration(*after))]
    Timeout {
        what: String,
        after: Duration,
        last: String,
    },
    /// The ingress controller will not serve one of the platform's Ingresses as it is; `reason`
    /// and `message` are its own (NGINX Ingress Controller's Event).
    #[error("the ingress controller refused Ingress {ingress}: {reason}: {message}")]
    RouteRefused {
        ingress: String,
        reason: String,
        message: String,
    },
    #[error("secret {secret} has no usable {key:?} (it must be UTF-8 text)")]
    Credentials { secret: String, key: &'static str },
}

impl Error {
    /// Wraps a failed API call on `resource`.
    pub fn api(action: &'static str, resource: impl Into<String>, source: kube::Error) -> Self {
        Self::Api {
            action,
            resource: resource.into(),
            source,
        }
    }

    /// The Kubernetes client error behind this one, if any.
    pub fn kube_error(&self) -> Option<&kube::Error> {
        match self {
            Self::Client { source, .. } | Self::Api { source, .. } => Some(source),
            Self::Watch { source, .. } => watch_cause(source),
            _ => None,
        }
    }

    /// The API server's answer, when the error is one.
    pub fn status(&self) -> Option<&kube::core::Status> {
        match self {
            Self::Watch {
                source: kube::runtime::watcher::Error::WatchError(status),
                ..
            } => Some(status),
            _ => match self.kube_error()? {
                kube::Error::Api(status) => Some(status),
                _ => None,
            },
        }
    }

    /// The HTTP status code of the API server's answer (404, 403, 409, ...).
    pub fn http_status(&self) -> Option<u16> {
        self.status().map(|s| s.code)
    }
}

fn watch_cause(error: &kube::runtime::watcher::Error) -> Option<&kube::Error> {
    use kube::runtime::watcher::Error as W;
    match error {
        W::InitialListFailed(e) | W::WatchStartFailed(e) | W::WatchFailed(e) => Some(e),
        _ => None,
    }
}

/// "403 Forbidden: secrets is forbidden ..." rather than kube's Debug dump of the Status.
pub(crate) fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if status.reason.is_empty() => {
            format!("{} {}", status.code, status.message)
        }
        kube::Error::Api(status) => {
            format!("{} {}: {}", status.code, status.reason, status.message)
        }
        other => other.to_string(),
    }
}

/// `15m00s`, `42s`, `250ms`: how people read a deadline.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else if secs >= 1 {
        format!("{secs}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status {
                code,
                reason: reason.into(),
                message: "secrets is forbidden".into(),
                ..kube::core::Status::default()
            }
            .boxed(),
        )
    }

    #[test]
    fn api_errors_name_the_resource_and_keep_the_status() {
        let err = Error::api(
            "creating",
            "Secret kdeploy-system/x",
            status(403, "Forbidden"),
        );
        assert_eq!(
            err.to_string(),
            "creating Secret kdeploy-system/x: 403 Forbidden: secrets is forbidden"
        );
        assert_eq!(err.http_status(), Some(403));
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn durations_read_as_minutes_and_seconds() {
        assert_eq!(format_duration(Duration::from_secs(900)), "15m00s");
        assert_eq!(format_duration(Duration::from_secs(42)), "42s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }
}
