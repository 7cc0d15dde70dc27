//! SSM: the public parameters AWS publishes (the EKS-optimized AMI of a Kubernetes version).

use super::{AwsError, SdkResultExt, required_str};

/// The SSM layer; see [`super::Aws::ssm`].
pub struct Ssm<'a>(pub(super) &'a aws_sdk_ssm::Client);

impl Ssm<'_> {
    pub async fn parameter(&self, name: &str) -> Result<String, AwsError> {
        const OP: &str = "ssm:GetParameter";
        let out = self.0.get_parameter().name(name).send().await.op(OP)?;
        required_str(
            out.parameter().and_then(|p| p.value()),
            OP,
            "Parameter.Value",
        )
    }
}
