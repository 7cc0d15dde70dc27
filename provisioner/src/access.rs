//! Access to the stack's EKS cluster with a native EKS token (a presigned STS URL, no AWS CLI):
//! one place for the `token` command and the Kubernetes steps.

use std::sync::Arc;
use std::time::SystemTime;

use futures::future::BoxFuture;
use platform::cluster::{Access, TokenSource};
use platform::error::BoxError;

use crate::aws::Aws;
use crate::error::StepError;

/// A bearer token for the EKS cluster `cluster`, signed now with the current AWS credentials.
pub async fn eks_token(aws: &Aws, cluster: &str, now: SystemTime) -> Result<String, StepError> {
    let credentials = aws.credentials().await?;
    platform::auth::eks_token(&credentials, &aws.region, cluster, now)
        .map_err(|e| StepError::platform("EKS token", e))
}

/// How to reach the API server of the EKS cluster `name` at `endpoint` (whose CA bundle is
/// `certificate_authority`, base64 PEM), with a fresh token: for one short task.
pub async fn cluster_access(
    aws: &Aws,
    name: &str,
    endpoint: &str,
    certificate_authority: &str,
) -> Result<Access, StepError> {
    Ok(Access {
        endpoint: endpoint.to_owned(),
        certificate_authority: Some(certificate_authority.to_owned()),
        token: eks_token(aws, name, SystemTime::now()).await?,
    })
}

/// EKS tokens for one cluster, each signed with the credentials current at that moment (they may
/// be temporary and refreshed in between).
struct EksTokens {
    aws: Aws,
    cluster: String,
}

impl TokenSource for EksTokens {
    fn token(&self) -> BoxFuture<'static, Result<String, BoxError>> {
        let (aws, cluster) = (self.aws.clone(), self.cluster.clone());
        Box::pin(async move {
            eks_token(&aws, &cluster, SystemTime::now())
                .await
                .map_err(Into::into)
        })
    }
}

/// A client for the EKS cluster `name` that renews its token before EKS stops accepting it
/// (15 minutes): the platform step waits longer than one token lives.
pub async fn cluster_client(
    aws: &Aws,
    name: &str,
    endpoint: &str,
    certificate_authority: &str,
) -> Result<kube::Client, StepError> {
    let tokens = Arc::new(EksTokens {
        aws: aws.clone(),
        cluster: name.to_owned(),
    });
    platform::cluster::connect_renewing(
        endpoint,
        Some(certificate_authority),
        tokens,
        platform::cluster::TOKEN_RENEW_AFTER,
    )
    .await
    .map_err(|e| StepError::platform(format!("cluster API {endpoint}"), e))
}
