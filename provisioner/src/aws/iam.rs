//! IAM: roles, their managed and inline policies, and instance profiles. Names are global to the
//! account, so every lookup returns the tags for the ownership check.

use aws_sdk_iam::types::Tag;

use super::{AwsError, NotFoundExt, SdkResultExt, Tags, required};

/// The IAM layer; see [`super::Aws::iam`].
pub struct Iam<'a>(pub(super) &'a aws_sdk_iam::Client);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub arn: String,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedPolicy {
    pub name: String,
    pub arn: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceProfile {
    pub name: String,
    pub arn: String,
    pub roles: Vec<String>,
    pub tags: Tags,
}

fn tags(tags: &[Tag]) -> Tags {
    tags.iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect()
}

fn iam_tags(pairs: &[(String, String)]) -> Vec<Tag> {
    pairs
        .iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect()
}

fn role(r: &aws_sdk_iam::types::Role) -> Role {
    Role {
        name: r.role_name().to_owned(),
        arn: r.arn().to_owned(),
        tags: tags(r.tags()),
    }
}

fn profile(p: &aws_sdk_iam::types::InstanceProfile) -> InstanceProfile {
    InstanceProfile {
        name: p.instance_profile_name().to_owned(),
        arn: p.arn().to_owned(),
        roles: p.roles().iter().map(|r| r.role_name().to_owned()).collect(),
        tags: tags(p.tags()),
    }
}

impl Iam<'_> {
    pub async fn role(&self, name: &str) -> Result<Option<Role>, AwsError> {
        const OP: &str = "iam:GetRole";
        let found = self.0.get_role().role_name(name).send().await.op(OP);
        found
            .found()?
            .map(|out| required(out.role(), OP, "Role").map(role))
            .transpose()
    }

    pub async fn create_role(
        &self,
        name: &str,
        description: &str,
        trust_policy: &str,
        tags: &[(String, String)],
    ) -> Result<Role, AwsError> {
        const OP: &str = "iam:CreateRole";
        let out = self
            .0
            .create_role()
            .role_name(name)
            .description(description)
            .assume_role_policy_document(trust_policy)
            .set_tags(Some(iam_tags(tags)))
            .send()
            .await
            .op(OP)?;
        required(out.role(), OP, "Role").map(role)
    }

    pub async fn attached_policies(&self, role: &str) -> Result<Vec<AttachedPolicy>, AwsError> {
        let out = self
            .0
            .list_attached_role_policies()
            .role_name(role)
            .send()
            .await
            .op("iam:ListAttachedRolePolicies")?;
        Ok(out
            .attached_policies()
            .iter()
            .filter_map(|p| {
                Some(AttachedPolicy {
                    name: p.policy_name()?.to_owned(),
                    arn: p.policy_arn()?.to_owned(),
                })
            })
            .collect())
    }

    pub async fn attach_policy(&self, role: &str, policy_arn: &str) -> Result<(), AwsError> {
        self.0
            .attach_role_policy()
            .role_name(role)
            .policy_arn(policy_arn)
            .send()
            .await
            .op("iam:AttachRolePolicy")
            .map(drop)
    }

    pub async fn detach_policy(&self, role: &str, policy_arn: &str) -> Result<(), AwsError> {
        self.0
            .detach_role_policy()
            .role_name(role)
            .policy_arn(policy_arn)
            .send()
            .await
            .op("iam:DetachRolePolicy")
            .map(drop)
    }

    pub async fn inline_policies(&self, role: &str) -> Result<Vec<String>, AwsError> {
        let out = self
            .0
            .list_role_policies()
            .role_name(role)
            .send()
            .await
            .op("iam:ListRolePolicies")?;
        Ok(out.policy_names().to_vec())
    }

    /// The inline policy's document, decoded (IAM returns it URL-encoded, RFC 3986); `None`
    /// when the role or the policy does not exist.
    pub async fn inline_policy(
        &self,
        role: &str,
        policy: &str,
    ) -> Result<Option<String>, AwsError> {
        const OP: &str = "iam:GetRolePolicy";
        let request = self.0.get_role_policy().role_name(role).policy_name(policy);
        let Some(out) = request.send().await.op(OP).found()? else {
            return Ok(None);
        };
        let document = percent_encoding::percent_decode_str(out.policy_document())
            .decode_utf8_lossy()
            .into_owned();
        Ok(Some(document))
    }

    /// Creates or replaces the role's inline policy `policy`.
    pub async fn put_inline_policy(
        &self,
        role: &str,
        policy: &str,
        document: &str,
    ) -> Result<(), AwsError> {
        self.0
            .put_role_policy()
            .role_name(role)
            .policy_name(policy)
            .policy_document(document)
            .send()
            .await
            .op("iam:PutRolePolicy")
            .map(drop)
    }

    pub async fn delete_inline_policy(&self, role: &str, policy: &str) -> Result<(), AwsError> {
        self.0
            .delete_role_policy()
            .role_name(role)
            .policy_name(policy)
            .send()
            .await
            .op("iam:DeleteRolePolicy")
            .map(drop)
    }

    /// Names of the instance profiles that contain `role`.
    pub async fn profiles_for_role(&self, role: &str) -> Result<Vec<String>, AwsError> {
        let out = self
            .0
            .list_instance_profiles_for_role()
            .role_name(role)
            .send()
            .await
            .op("iam:ListInstanceProfilesForRole")?;
        Ok(out
            .instance_profiles()
            .iter()
            .map(|p| p.instance_profile_name().to_owned())
            .collect())
    }

    pub async fn delete_role(&self, name: &str) -> Result<(), AwsError> {
        self.0
            .delete_role()
            .role_name(name)
            .send()
            .await
            .op("iam:DeleteRole")
            .map(drop)
    }

    pub async fn instance_profile(&self, name: &str) -> Result<Option<InstanceProfile>, AwsError> {
        const OP: &str = "iam:GetInstanceProfile";
        let request = self.0.get_instance_profile().instance_profile_name(name);
        request
            .send()
            .await
            .op(OP)
            .found()?
            .map(|out| required(out.instance_profile(), OP, "InstanceProfile").map(profile))
            .transpose()
    }

    pub async fn create_instance_profile(
        &self,
        name: &str,
        tags: &[(String, String)],
    ) -> Result<InstanceProfile, AwsError> {
        const OP: &str = "iam:CreateInstanceProfile";
        let out = self
            .0
            .create_instance_profile()
            .instance_profile_name(name)
            .set_tags(Some(iam_tags(tags)))
            .send()
            .await
            .op(OP)?;
        required(out.instance_profile(), OP, "InstanceProfile").map(profile)
    }

    pub async fn add_role_to_profile(&self, profile: &str, role: &str) -> Result<(), AwsError> {
        self.0
            .add_role_to_instance_profile()
            .instance_profile_name(profile)
            .role_name(role)
            .send()
            .await
            .op("iam:AddRoleToInstanceProfile")
            .map(drop)
    }

    pub async fn remove_role_from_profile(
        &self,
        profile: &str,
        role: &str,
    ) -> Result<(), AwsError> {
        self.0
            .remove_role_from_instance_profile()
            .instance_profile_name(profile)
            .role_name(role)
            .send()
            .await
            .op("iam:RemoveRoleFromInstanceProfile")
            .map(drop)
    }

    pub async fn delete_instance_profile(&self, name: &str) -> Result<(), AwsError> {
        self.0
            .delete_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .op("iam:DeleteInstanceProfile")
            .map(drop)
    }
}
