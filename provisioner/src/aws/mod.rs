//! The one place AWS clients are made: region, credentials, HTTP stack, retries, the endpoint
//! override for the local emulator, and the call log every request passes through.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_credential_types::Credentials;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextRef,
    BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, Metadata};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_types::region::Region;

/// Where the AWS calls go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Real AWS with the standard credential chain (env, profile, SSO, ...).
    Aws { profile: Option<String> },
    /// A local emulator at this URL, with static dummy credentials.
    Local { endpoint: String },
}

/// The local emulator's default endpoint (`localstack aws`).
pub const LOCAL_ENDPOINT: &str = "http://127.0.0.1:5000";

/// One client per service, all sharing one configuration and one [`CallLog`].
#[derive(Clone, Debug)]
pub struct Aws {
    pub ec2: aws_sdk_ec2::Client,
    pub eks: aws_sdk_eks::Client,
    pub iam: aws_sdk_iam::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub sts: aws_sdk_sts::Client,
    pub calls: CallLog,
    pub region: String,
    /// The shared configuration, for what is not a client call (signing EKS tokens).
    pub sdk: aws_types::SdkConfig,
}

impl Aws {
    pub async fn connect(target: &Target, region: &str, calls: CallLog) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        // Throttling and 5xx are retried by the SDK itself; "not yet" errors by `retry`.
        let retry = RetryConfig::standard()
            .with_max_attempts(8)
            .with_initial_backoff(std::time::Duration::from_millis(200));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .http_client(http)
            .retry_config(retry);
        match target {
            Target::Aws { profile } => {
                if let Some(profile) = profile {
                    loader = loader.profile_name(profile);
                }
            }
            Target::Local { endpoint } => {
                loader = loader
                    .endpoint_url(endpoint)
                    .credentials_provider(Credentials::new(
                        "test",
                        "test",
                        None,
                        None,
                        "local-emulator",
                    ));
            }
        }
        let shared = loader.load().await;
        let interceptor = calls.clone();
        let shared_ref = &shared;
        Self {
            ec2: aws_sdk_ec2::Client::from_conf(
                aws_sdk_ec2::config::Builder::from(shared_ref)
                    .interceptor(interceptor.clone())
                    .build(),
            ),
            eks: aws_sdk_eks::Client::from_conf(
                aws_sdk_eks::config::Builder::from(shared_ref)
                    .interceptor(interceptor.clone())
                    .build(),
            ),
            iam: aws_sdk_iam::Client::from_conf(
                aws_sdk_iam::config::Builder::from(shared_ref)
                    .interceptor(interceptor.clone())
                    .build(),
            ),
            autoscaling: aws_sdk_autoscaling::Client::from_conf(
                aws_sdk_autoscaling::config::Builder::from(shared_ref)
                    .interceptor(interceptor.clone())
                    .build(),
            ),
            elbv2: aws_sdk_elasticloadbalancingv2::Client::from_conf(
                aws_sdk_elasticloadbalancingv2::config::Builder::from(shared_ref)
                    .interceptor(interceptor.clone())
                    .build(),
            ),
            ssm: aws_sdk_ssm::Client::from_conf(
                aws_sdk_ssm::config::Builder::from(shared_ref)
                    .interceptor(interceptor.clone())
                    .build(),
            ),
            sts: aws_sdk_sts::Client::from_conf(
                aws_sdk_sts::config::Builder::from(shared_ref)
                    .interceptor(interceptor)
                    .build(),
            ),
            calls,
            region: region.to_owned(),
            sdk: shared,
        }
    }
}

/// An AWS call that failed, with AWS's own error code kept so callers match on it.
#[derive(Debug, thiserror::Error)]
pub struct AwsError {
    pub operation: &'static str,
    code: Option<String>,
    message: String,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} failed: {code}: {}", self.operation, self.message),
            None => write!(f, "{} failed: {}", self.operation, self.message),
        }
    }
}

impl AwsError {
    /// AWS's error code (`DependencyViolation`, `NoSuchEntity`, ...), empty when the call never got
    /// an answer from AWS (connection, timeout).
    pub fn code(&self) -> &str {
        self.code.as_deref().unwrap_or("")
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn is(&self, code: &str) -> bool {
        self.code() == code
    }

    /// The codes AWS uses for "no such resource", across the services we call.
    pub fn is_not_found(&self) -> bool {
        let code = self.code();
        code.ends_with(".NotFound")
            || code.ends_with("NotFoundException")
            || code.ends_with("NotFound")
            || code == "NoSuchEntity"
            || (code == "ValidationError" && self.message.contains("not found"))
    }

    /// For tests and fakes: an error as AWS would return it.
    pub fn new(operation: &'static str, code: &str, message: &str) -> Self {
        Self {
            operation,
            code: Some(code.to_owned()),
            message: message.to_owned(),
        }
    }
}

/// Turns an SDK result into one with [`AwsError`], naming the operation.
pub trait AwsResultExt<T> {
    fn op(self, operation: &'static str) -> Result<T, AwsError>;
}

impl<T, E> AwsResultExt<T> for Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn op(self, operation: &'static str) -> Result<T, AwsError> {
        self.map_err(|err| {
            let code = err.code().map(str::to_owned);
            let message = match (&err, err.message()) {
                (SdkError::ServiceError(_), Some(message)) => message.to_owned(),
                _ => error_chain(&err),
            };
            AwsError {
                operation,
                code,
                message,
            }
        })
    }
}

/// "dispatch failure: io error: ... Connection refused": each cause once, without Debug dumps.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// Every AWS request the process makes, counted per operation; also the test hook that "kills"
/// the process at its N-th mutating call.
#[derive(Clone, Debug, Default)]
pub struct CallLog {
    inner: Arc<CallLogInner>,
}

#[derive(Debug, Default)]
struct CallLogInner {
    calls: Mutex<BTreeMap<String, usize>>,
    attempts: AtomicUsize,
    mutating: AtomicUsize,
    kill_after: Mutex<Option<usize>>,
    killed: AtomicBool,
}

/// A summary of the calls made so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallCounts {
    /// `service:Operation` → number of calls.
    pub by_operation: BTreeMap<String, usize>,
    pub total: usize,
    pub mutating: usize,
    /// Attempts, including the SDK's own retries of throttling and 5xx.
    pub attempts: usize,
}

impl CallCounts {
    pub fn mutating_operations(&self) -> Vec<&str> {
        self.by_operation
            .keys()
            .filter(|op| is_mutating(op.split(':').nth(1).unwrap_or(op)))
            .map(String::as_str)
            .collect()
    }
}

/// Read-only AWS operations by naming convention; everything else changes state.
pub fn is_mutating(operation: &str) -> bool {
    !["Describe", "List", "Get"]
        .iter()
        .any(|prefix| operation.starts_with(prefix))
}

impl CallLog {
    pub fn counts(&self) -> CallCounts {
        let by_operation = self
            .inner
            .calls
            .lock()
            .map(|calls| calls.clone())
            .unwrap_or_default();
        CallCounts {
            total: by_operation.values().sum(),
            by_operation,
            mutating: self.inner.mutating.load(Ordering::SeqCst),
            attempts: self.inner.attempts.load(Ordering::SeqCst),
        }
    }

    /// After the `n`-th mutating request has reached AWS, fail it and every later call, as if the
    /// process had died right then: AWS did the work, the caller never heard of it.
    pub fn kill_after_mutating(&self, n: usize) {
        if let Ok(mut kill) = self.inner.kill_after.lock() {
            *kill = Some(n);
        }
    }

    pub fn killed(&self) -> bool {
        self.inner.killed.load(Ordering::SeqCst)
    }

    fn operation(cfg: &ConfigBag) -> (String, bool) {
        match cfg.load::<Metadata>() {
            Some(md) => (
                format!("{}:{}", md.service(), md.name()),
                is_mutating(md.name()),
            ),
            None => ("unknown:Unknown".to_owned(), true),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("killed by the test hook after mutating call {0}")]
struct Killed(usize);

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "CallLog"
    }

    // Not `read_before_execution`: client interceptors run that before the operation's metadata
    // is in the config bag.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.killed() {
            return Err(Box::new(Killed(self.inner.mutating.load(Ordering::SeqCst))));
        }
        let (operation, mutating) = Self::operation(cfg);
        if let Ok(mut calls) = self.inner.calls.lock() {
            *calls.entry(operation).or_default() += 1;
        }
        if mutating {
            self.inner.mutating.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.inner.attempts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn read_after_transmit(
        &self,
        _context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (_, mutating) = Self::operation(cfg);
        let kill_after = self.inner.kill_after.lock().ok().and_then(|k| *k);
        if let Some(n) = kill_after {
            let done = self.inner.mutating.load(Ordering::SeqCst);
            if mutating && done >= n {
                self.inner.killed.store(true, Ordering::SeqCst);
                return Err(Box::new(Killed(done)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_operations_are_recognised_by_name() {
        assert!(!is_mutating("DescribeVpcs"));
        assert!(!is_mutating("ListAttachedRolePolicies"));
        assert!(!is_mutating("GetParameter"));
        assert!(is_mutating("CreateVpc"));
        assert!(is_mutating("AuthorizeSecurityGroupIngress"));
        assert!(is_mutating("RegisterTargets"));
    }

    #[test]
    fn not_found_codes_across_services() {
        for code in [
            "InvalidVpcID.NotFound",
            "ResourceNotFoundException",
            "LoadBalancerNotFound",
            "NoSuchEntity",
        ] {
            assert!(AwsError::new("x", code, "").is_not_found(), "{code}");
        }
        assert!(!AwsError::new("x", "DependencyViolation", "").is_not_found());
    }
}
