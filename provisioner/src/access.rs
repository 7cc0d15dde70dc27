//! Access to the stack's EKS cluster with a native EKS token (a presigned STS URL, no AWS CLI):
//! one place for the `token` command and the Kubernetes steps.

use std::time::SystemTime;

use platform::cluster::Access;

use crate::aws::Aws;
use crate::error::StepError;

/// A bearer token for the EKS cluster `cluster`, signed now with the current AWS credentials.
pub async fn eks_token(aws: &Aws, cluster: &str, now: SystemTime) -> Result<String, StepError> {
    let credentials = aws.credentials().await?;
    platform::auth::eks_token(&credentials, &aws.region, cluster, now)
        .map_err(|e| StepError::platform("EKS token", e))
}

/// How to reach the API server of the EKS cluster `name` at `endpoint` (whose CA bundle is
/// `certificate_authority`, base64 PEM), with a fresh token.
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
