//! The one place AWS clients are made (region, credentials, HTTP stack, retries, the endpoint
//! override for the local emulator, the call log) and the thin layer per service that the steps
//! call: each operation once, answering with the project's own types.

pub mod autoscaling;
mod calls;
pub mod ec2;
pub mod ecr;
pub mod eks;
pub mod elb;
pub mod elbv2;
mod error;
pub mod iam;
pub mod ssm;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_credential_types::Credentials;
use aws_types::region::Region;

pub use calls::{CallCounts, CallLog, is_mutating};
pub use error::AwsError;
pub(crate) use error::{NotFoundExt, SdkResultExt, required, required_str};

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

/// The SDK clients, all sharing one configuration and one [`CallLog`]. Steps go through the
/// service layer ([`Aws::ec2`] ...); these are for tests that check AWS independently and for
/// crates that take an SDK client (`platform::join`).
#[derive(Clone, Debug)]
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub ecr: aws_sdk_ecr::Client,
    pub eks: aws_sdk_eks::Client,
    pub iam: aws_sdk_iam::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    /// Classic load balancers, which only Kubernetes makes (swept in teardown).
    pub elb: aws_sdk_elasticloadbalancing::Client,
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub sts: aws_sdk_sts::Client,
}

/// A connection to AWS (or the emulator) for one region.
#[derive(Clone, Debug)]
pub struct Aws {
    pub clients: Clients,
    pub calls: CallLog,
    pub region: String,
    /// The shared configuration, for what is not a client call (signing EKS tokens).
    pub sdk: aws_types::SdkConfig,
}

/// Builds one service's client from the shared configuration, with the call log attached.
macro_rules! client {
    ($krate:ident, $shared:expr, $calls:expr) => {
        $krate::Client::from_conf(
            $krate::config::Builder::from($shared)
                .interceptor($calls.clone())
                .build(),
        )
    };
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
        let clients = Clients {
            ec2: client!(aws_sdk_ec2, &shared, calls),
            ecr: client!(aws_sdk_ecr, &shared, calls),
            eks: client!(aws_sdk_eks, &shared, calls),
            iam: client!(aws_sdk_iam, &shared, calls),
            autoscaling: client!(aws_sdk_autoscaling, &shared, calls),
            elb: client!(aws_sdk_elasticloadbalancing, &shared, calls),
            elbv2: client!(aws_sdk_elasticloadbalancingv2, &shared, calls),
            ssm: client!(aws_sdk_ssm, &shared, calls),
            sts: client!(aws_sdk_sts, &shared, calls),
        };
        Self {
            clients,
            calls,
            region: region.to_owned(),
            sdk: shared,
        }
    }

    pub fn ec2(&self) -> ec2::Ec2<'_> {
        ec2::Ec2(&self.clients.ec2)
    }

    pub fn ecr(&self) -> ecr::Ecr<'_> {
        ecr::Ecr(&self.clients.ecr)
    }

    pub fn iam(&self) -> iam::Iam<'_> {
        iam::Iam(&self.clients.iam)
    }

    pub fn eks(&self) -> eks::Eks<'_> {
        eks::Eks(&self.clients.eks)
    }

    pub fn autoscaling(&self) -> autoscaling::AutoScaling<'_> {
        autoscaling::AutoScaling(&self.clients.autoscaling)
    }

    pub fn elb(&self) -> elb::Elb<'_> {
        elb::Elb(&self.clients.elb)
    }

    pub fn elbv2(&self) -> elbv2::Elbv2<'_> {
        elbv2::Elbv2(&self.clients.elbv2)
    }

    pub fn ssm(&self) -> ssm::Ssm<'_> {
        ssm::Ssm(&self.clients.ssm)
    }

    /// The current credentials of the standard chain (or the emulator's dummy ones).
    pub async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        let provider = self
            .sdk
            .credentials_provider()
            .ok_or(CredentialsError::NotConfigured)?;
        aws_credential_types::provider::ProvideCredentials::provide_credentials(&provider)
            .await
            .map_err(CredentialsError::Load)
    }
}

/// Why there are no AWS credentials to sign with.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("no AWS credentials are configured")]
    NotConfigured,
    #[error("loading AWS credentials: {0}")]
    Load(#[source] aws_credential_types::provider::error::CredentialsError),
}

/// A resource's tags as `(key, value)` pairs, whatever the service's tag type.
pub type Tags = Vec<(String, String)>;
