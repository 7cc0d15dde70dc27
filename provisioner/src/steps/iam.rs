//! IAM: the role EKS assumes for the control plane, and the worker nodes' role with its instance
//! profile. IAM names are global, so ownership is checked by tag before anything is touched.

use aws_sdk_iam::types::Tag;

use super::{deleted_or_absent, ignore_not_found};
use crate::aws::AwsResultExt;
use crate::plan::{OnResource, Resource, Scope, Step, StepError, StepFuture, recorded};
use crate::progress::Action;
use crate::retry::retry_not_yet;

pub const CLUSTER_POLICIES: [&str; 1] = ["AmazonEKSClusterPolicy"];
pub const NODE_POLICIES: [&str; 3] = [
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryReadOnly",
];

/// What the IAM step produces.
#[derive(Debug, Clone)]
pub struct Roles {
    pub cluster_role_arn: String,
    pub node_role_arn: String,
    pub node_instance_profile_arn: String,
    pub node_instance_profile_name: String,
}

pub struct IamStep;

/// A trust policy letting one AWS service assume the role.
pub fn trust_policy(service: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": service },
            "Action": "sts:AssumeRole"
        }]
    })
    .to_string()
}

fn managed_policy_arn(name: &str) -> String {
    format!("arn:aws:iam::aws:policy/{name}")
}

impl Step for IamStep {
    fn name(&self) -> &'static str {
        "iam"
    }

    fn title(&self) -> &'static str {
        "IAM roles for the cluster and the nodes"
    }

    fn needs(&self) -> &'static [&'static str] {
        &[]
    }

    fn ensure<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let cluster_role = s.stack.cluster_role();
            let node_role = s.stack.node_role();
            let (cluster_role_arn, node_role_arn) = tokio::try_join!(
                ensure_role(
                    s,
                    &cluster_role,
                    "eks.amazonaws.com",
                    "cluster-role",
                    &CLUSTER_POLICIES
                ),
                ensure_role(
                    s,
                    &node_role,
                    "ec2.amazonaws.com",
                    "node-role",
                    &NODE_POLICIES
                ),
            )?;
            let (profile_arn, profile_name) = ensure_instance_profile(s, &node_role).await?;
            let _ = s.outputs.iam.set(Roles {
                cluster_role_arn,
                node_role_arn,
                node_instance_profile_arn: profile_arn,
                node_instance_profile_name: profile_name,
            });
            Ok(())
        })
    }

    fn destroy<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            destroy_instance_profile(s, &s.stack.node_instance_profile()).await?;
            let (cluster_role, node_role) = (s.stack.cluster_role(), s.stack.node_role());
            // Both, even when one fails: teardown removes as much as it can.
            let (cluster, node) =
                tokio::join!(destroy_role(s, &cluster_role), destroy_role(s, &node_role));
            cluster.and(node)
        })
    }

    fn inspect<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, Vec<Resource>> {
        Box::pin(async move {
            let mut found = Vec::new();
            for name in [s.stack.cluster_role(), s.stack.node_role()] {
                match get_role(s, &name).await? {
                    Some(role) => {
                        let attached = attached_policies(s, &name).await?;
                        let owner = if owned_role(s, &role) {
                            ""
                        } else {
                            " (NOT tagged for this stack)"
                        };
                        found.push(Resource::found(
                            "IAM role",
                            &name,
                            role.arn(),
                            format!("policies: {}{owner}", attached.join(", ")),
                        ));
                    }
                    None => found.push(Resource::missing("IAM role", &name)),
                }
            }
            let profile = s.stack.node_instance_profile();
            match get_instance_profile(s, &profile).await? {
                Some(p) => {
                    let roles: Vec<&str> = p.roles().iter().map(|r| r.role_name()).collect();
                    found.push(Resource::found(
                        "instance profile",
                        &profile,
                        p.arn(),
                        format!("roles: {}", roles.join(", ")),
                    ));
                }
                None => found.push(Resource::missing("instance profile", &profile)),
            }
            Ok(found)
        })
    }
}

fn stack_tags(s: &Scope<'_>, part: &str) -> Vec<Tag> {
    s.stack
        .tags(part)
        .into_iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect()
}

fn owned_role(s: &Scope<'_>, role: &aws_sdk_iam::types::Role) -> bool {
    super::owned(&s.stack, role.tags().iter().map(|t| (t.key(), t.value())))
}

async fn get_role(
    s: &Scope<'_>,
    name: &str,
) -> Result<Option<aws_sdk_iam::types::Role>, StepError> {
    match s
        .aws
        .iam
        .get_role()
        .role_name(name)
        .send()
        .await
        .op("iam:GetRole")
    {
        Ok(out) => Ok(out.role().cloned()),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e).on(format!("IAM role {name}")),
    }
}

async fn get_instance_profile(
    s: &Scope<'_>,
    name: &str,
) -> Result<Option<aws_sdk_iam::types::InstanceProfile>, StepError> {
    match s
        .aws
        .iam
        .get_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
        .op("iam:GetInstanceProfile")
    {
        Ok(out) => Ok(out.instance_profile().cloned()),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e).on(format!("instance profile {name}")),
    }
}

async fn attached_policies(s: &Scope<'_>, role: &str) -> Result<Vec<String>, StepError> {
    let out = s
        .aws
        .iam
        .list_attached_role_policies()
        .role_name(role)
        .send()
        .await
        .op("iam:ListAttachedRolePolicies")
        .on(format!("IAM role {role}"))?;
    Ok(out
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_name().map(str::to_owned))
        .collect())
}

async fn ensure_role(
    s: &Scope<'_>,
    name: &str,
    service: &str,
    part: &str,
    policies: &[&str],
) -> Result<String, StepError> {
    let resource = format!("IAM role {name}");
    let (arn, created) = match get_role(s, name).await? {
        Some(role) if owned_role(s, &role) => (role.arn().to_owned(), false),
        Some(_) => return Err(StepError::NotOwned { resource }),
        None => {
            let created = s
                .aws
                .iam
                .create_role()
                .role_name(name)
                .description(format!("{service} role of stack {}", s.stack.name))
                .assume_role_policy_document(trust_policy(service))
                .set_tags(Some(stack_tags(s, part)))
                .send()
                .await
                .op("iam:CreateRole");
            match created {
                Ok(out) => (
                    out.role().map(|r| r.arn().to_owned()).unwrap_or_default(),
                    true,
                ),
                // A run killed between CreateRole and here: the role is ours if it carries our tag.
                Err(e) if e.is("EntityAlreadyExists") => match get_role(s, name).await? {
                    Some(role) if owned_role(s, &role) => (role.arn().to_owned(), false),
                    _ => return Err(StepError::NotOwned { resource }),
                },
                Err(e) => return Err(e).on(resource),
            }
        }
    };
    recorded(s, created, "IAM role", name);
    let attached = if created {
        Vec::new()
    } else {
        attached_policies(s, name).await?
    };
    for policy in policies {
        if attached.iter().any(|a| a == policy) {
            continue;
        }
        let arn_policy = managed_policy_arn(policy);
        retry_not_yet(
            s.config.timeouts.resources(),
            |why| s.waiting(why),
            || async {
                s.aws
                    .iam
                    .attach_role_policy()
                    .role_name(name)
                    .policy_arn(&arn_policy)
                    .send()
                    .await
                    .op("iam:AttachRolePolicy")
            },
        )
        .await
        .on(&resource)?;
        s.record(
            Action::Created,
            "policy attachment",
            format!("{name} <- {policy}"),
        );
    }
    Ok(arn)
}

async fn ensure_instance_profile(s: &Scope<'_>, role: &str) -> Result<(String, String), StepError> {
    let name = s.stack.node_instance_profile();
    let resource = format!("instance profile {name}");
    let profile = match get_instance_profile(s, &name).await? {
        Some(p) => {
            if !super::owned(&s.stack, p.tags().iter().map(|t| (t.key(), t.value()))) {
                return Err(StepError::NotOwned { resource });
            }
            recorded(s, false, "instance profile", &name);
            p
        }
        None => {
            let out = s
                .aws
                .iam
                .create_instance_profile()
                .instance_profile_name(&name)
                .set_tags(Some(stack_tags(s, "node-instance-profile")))
                .send()
                .await
                .op("iam:CreateInstanceProfile");
            let profile = match out {
                Ok(out) => out.instance_profile().cloned(),
                Err(e) if e.is("EntityAlreadyExists") => get_instance_profile(s, &name).await?,
                Err(e) => return Err(e).on(resource),
            };
            recorded(s, true, "instance profile", &name);
            profile.ok_or_else(|| StepError::Failed {
                resource: resource.clone(),
                reason: "IAM returned no instance profile".into(),
            })?
        }
    };
    if !profile.roles().iter().any(|r| r.role_name() == role) {
        retry_not_yet(
            s.config.timeouts.resources(),
            |why| s.waiting(why),
            || async {
                s.aws
                    .iam
                    .add_role_to_instance_profile()
                    .instance_profile_name(&name)
                    .role_name(role)
                    .send()
                    .await
                    .op("iam:AddRoleToInstanceProfile")
            },
        )
        .await
        .on(&resource)?;
        s.record(
            Action::Created,
            "instance profile role",
            format!("{name} <- {role}"),
        );
    }
    Ok((profile.arn().to_owned(), name))
}

async fn destroy_instance_profile(s: &Scope<'_>, name: &str) -> Result<(), StepError> {
    let resource = format!("instance profile {name}");
    let Some(profile) = get_instance_profile(s, name).await? else {
        s.record(Action::Absent, "instance profile", name);
        return Ok(());
    };
    if !super::owned(
        &s.stack,
        profile.tags().iter().map(|t| (t.key(), t.value())),
    ) {
        return Err(StepError::NotOwned { resource });
    }
    for role in profile.roles() {
        ignore_not_found(
            s.aws
                .iam
                .remove_role_from_instance_profile()
                .instance_profile_name(name)
                .role_name(role.role_name())
                .send()
                .await
                .op("iam:RemoveRoleFromInstanceProfile"),
        )
        .on(&resource)?;
    }
    let deleted = ignore_not_found(
        s.aws
            .iam
            .delete_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .op("iam:DeleteInstanceProfile"),
    )
    .on(&resource)?;
    s.record(deleted_or_absent(deleted), "instance profile", name);
    Ok(())
}

async fn destroy_role(s: &Scope<'_>, name: &str) -> Result<(), StepError> {
    let resource = format!("IAM role {name}");
    let Some(role) = get_role(s, name).await? else {
        s.record(Action::Absent, "IAM role", name);
        return Ok(());
    };
    if !owned_role(s, &role) {
        return Err(StepError::NotOwned { resource });
    }
    let attached = s
        .aws
        .iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await
        .op("iam:ListAttachedRolePolicies")
        .on(&resource)?;
    for policy in attached.attached_policies() {
        if let Some(arn) = policy.policy_arn() {
            ignore_not_found(
                s.aws
                    .iam
                    .detach_role_policy()
                    .role_name(name)
                    .policy_arn(arn)
                    .send()
                    .await
                    .op("iam:DetachRolePolicy"),
            )
            .on(&resource)?;
        }
    }
    let inline = s
        .aws
        .iam
        .list_role_policies()
        .role_name(name)
        .send()
        .await
        .op("iam:ListRolePolicies")
        .on(&resource)?;
    for policy in inline.policy_names() {
        ignore_not_found(
            s.aws
                .iam
                .delete_role_policy()
                .role_name(name)
                .policy_name(policy)
                .send()
                .await
                .op("iam:DeleteRolePolicy"),
        )
        .on(&resource)?;
    }
    // A role still in an instance profile (made by hand, or an earlier partial run) cannot go.
    let profiles = s
        .aws
        .iam
        .list_instance_profiles_for_role()
        .role_name(name)
        .send()
        .await
        .op("iam:ListInstanceProfilesForRole")
        .on(&resource)?;
    for profile in profiles.instance_profiles() {
        ignore_not_found(
            s.aws
                .iam
                .remove_role_from_instance_profile()
                .instance_profile_name(profile.instance_profile_name())
                .role_name(name)
                .send()
                .await
                .op("iam:RemoveRoleFromInstanceProfile"),
        )
        .on(&resource)?;
    }
    let deleted = retry_not_yet(
        s.config.timeouts.resources(),
        |why| s.waiting(why),
        || async {
            ignore_not_found(
                s.aws
                    .iam
                    .delete_role()
                    .role_name(name)
                    .send()
                    .await
                    .op("iam:DeleteRole"),
            )
        },
    )
    .await
    .on(&resource)?;
    s.record(deleted_or_absent(deleted), "IAM role", name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_policies_name_the_service() {
        let doc: serde_json::Value =
            serde_json::from_str(&trust_policy("eks.amazonaws.com")).unwrap();
        assert_eq!(
            doc["Statement"][0]["Principal"]["Service"],
            "eks.amazonaws.com"
        );
        assert_eq!(doc["Statement"][0]["Action"], "sts:AssumeRole");
    }

    #[test]
    fn policy_arns_are_aws_managed() {
        assert_eq!(
            managed_policy_arn("AmazonEKS_CNI_Policy"),
            "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy"
        );
    }
}
