//! IAM: the role EKS assumes for the control plane, and the worker nodes' role with its instance
//! profile. IAM names are global, so ownership is checked by tag before anything is touched.

use super::Removal;
use crate::aws::iam::{InstanceProfile, Role};
use crate::plan::{OnResource, Output, Resource, Scope, Step, StepError, StepFuture, StepId};
use crate::progress::Action;
use crate::retry::retry_not_yet;

pub const ID: StepId = StepId::new("iam");

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

impl Output for Roles {
    const STEP: StepId = ID;
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
    fn id(&self) -> StepId {
        ID
    }

    fn title(&self) -> &'static str {
        "IAM roles for the cluster and the nodes"
    }

    fn needs(&self) -> &[StepId] {
        &[]
    }

    fn ensure<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let (cluster_role, node_role) = (s.stack.cluster_role(), s.stack.node_role());
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
            let profile = ensure_instance_profile(s, &node_role).await?;
            s.outputs.put(Roles {
                cluster_role_arn,
                node_role_arn,
                node_instance_profile_arn: profile.arn,
                node_instance_profile_name: profile.name,
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
            let iam = s.aws.iam();
            let mut found = Vec::new();
            for name in [s.stack.cluster_role(), s.stack.node_role()] {
                let resource = format!("IAM role {name}");
                match iam.role(&name).await.on(&resource)? {
                    Some(role) => {
                        let attached = iam.attached_policies(&name).await.on(&resource)?;
                        let names: Vec<&str> = attached.iter().map(|p| p.name.as_str()).collect();
                        let owner = if s.stack.owns(&role.tags) {
                            ""
                        } else {
                            " (NOT tagged for this stack)"
                        };
                        let state = format!("policies: {}{owner}", names.join(", "));
                        found.push(Resource::found("IAM role", &name, role.arn, state));
                    }
                    None => found.push(Resource::missing("IAM role", &name)),
                }
            }
            let profile = s.stack.node_instance_profile();
            match iam
                .instance_profile(&profile)
                .await
                .on(format!("instance profile {profile}"))?
            {
                Some(p) => {
                    let state = format!("roles: {}", p.roles.join(", "));
                    found.push(Resource::found("instance profile", &profile, p.arn, state));
                }
                None => found.push(Resource::missing("instance profile", &profile)),
            }
            Ok(found)
        })
    }
}

/// The role if it exists and is the stack's; an untagged one is never adopted.
pub(crate) async fn owned_role(s: &Scope<'_>, name: &str) -> Result<Option<Role>, StepError> {
    let resource = format!("IAM role {name}");
    match s.aws.iam().role(name).await.on(&resource)? {
        Some(role) if !s.stack.owns(&role.tags) => Err(StepError::NotOwned { resource }),
        found => Ok(found),
    }
}

async fn owned_profile(s: &Scope<'_>, name: &str) -> Result<Option<InstanceProfile>, StepError> {
    let resource = format!("instance profile {name}");
    match s.aws.iam().instance_profile(name).await.on(&resource)? {
        Some(p) if !s.stack.owns(&p.tags) => Err(StepError::NotOwned { resource }),
        found => Ok(found),
    }
}

async fn ensure_role(
    s: &Scope<'_>,
    name: &str,
    service: &str,
    part: &str,
    policies: &[&str],
) -> Result<String, StepError> {
    let iam = s.aws.iam();
    let resource = format!("IAM role {name}");
    let (arn, created) = match owned_role(s, name).await? {
        Some(role) => (role.arn, false),
        None => {
            let description = format!("{service} role of stack {}", s.stack.name);
            let created = iam
                .create_role(
                    name,
                    &description,
                    &trust_policy(service),
                    &s.stack.tags(part),
                )
                .await;
            match created {
                Ok(role) => (role.arn, true),
                // A run killed between CreateRole and here: the role is ours if it carries our tag.
                Err(e) if e.is("EntityAlreadyExists") => match owned_role(s, name).await? {
                    Some(role) => (role.arn, false),
                    None => return Err(StepError::NotOwned { resource }),
                },
                Err(e) => return Err(e).on(resource),
            }
        }
    };
    s.kept_or_created(created, "IAM role", name);
    let attached = if created {
        Vec::new()
    } else {
        iam.attached_policies(name).await.on(&resource)?
    };
    for policy in policies {
        if attached.iter().any(|a| a.name == *policy) {
            continue;
        }
        let policy_arn = managed_policy_arn(policy);
        retry_not_yet(
            s.config.timeouts.resources(),
            |why| s.waiting(why),
            || iam.attach_policy(name, &policy_arn),
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

async fn ensure_instance_profile(s: &Scope<'_>, role: &str) -> Result<InstanceProfile, StepError> {
    let iam = s.aws.iam();
    let name = s.stack.node_instance_profile();
    let resource = format!("instance profile {name}");
    let (profile, created) = match owned_profile(s, &name).await? {
        Some(p) => (p, false),
        None => match iam
            .create_instance_profile(&name, &s.stack.tags("node-instance-profile"))
            .await
        {
            Ok(p) => (p, true),
            Err(e) if e.is("EntityAlreadyExists") => match owned_profile(s, &name).await? {
                Some(p) => (p, true),
                None => return Err(StepError::NotOwned { resource }),
            },
            Err(e) => return Err(e).on(resource),
        },
    };
    s.kept_or_created(created, "instance profile", &name);
    if !profile.roles.iter().any(|r| r == role) {
        retry_not_yet(
            s.config.timeouts.resources(),
            |why| s.waiting(why),
            || iam.add_role_to_profile(&name, role),
        )
        .await
        .on(&resource)?;
        s.record(
            Action::Created,
            "instance profile role",
            format!("{name} <- {role}"),
        );
    }
    Ok(profile)
}

async fn destroy_instance_profile(s: &Scope<'_>, name: &str) -> Result<(), StepError> {
    let iam = s.aws.iam();
    let Some(profile) = owned_profile(s, name).await? else {
        s.record(Action::Absent, "instance profile", name);
        return Ok(());
    };
    for role in &profile.roles {
        Removal::new(s, "instance profile", name)
            .release(|| iam.remove_role_from_profile(name, role))
            .await?;
    }
    Removal::new(s, "instance profile", name)
        .delete(|| iam.delete_instance_profile(name))
        .await
}

async fn destroy_role(s: &Scope<'_>, name: &str) -> Result<(), StepError> {
    let iam = s.aws.iam();
    let resource = format!("IAM role {name}");
    if owned_role(s, name).await?.is_none() {
        s.record(Action::Absent, "IAM role", name);
        return Ok(());
    }
    for policy in iam.attached_policies(name).await.on(&resource)? {
        Removal::new(s, "IAM role", name)
            .release(|| iam.detach_policy(name, &policy.arn))
            .await?;
    }
    // Inline policies (the targets step's `<stack>-targets` on the node role, if that step's
    // own removal did not run) block DeleteRole as attached ones do: DeleteRolePolicy first.
    for policy in iam.inline_policies(name).await.on(&resource)? {
        Removal::new(s, "IAM role", name)
            .release(|| iam.delete_inline_policy(name, &policy))
            .await?;
    }
    // A role still in an instance profile (made by hand, or an earlier partial run) cannot go.
    for profile in iam.profiles_for_role(name).await.on(&resource)? {
        Removal::new(s, "IAM role", name)
            .release(|| iam.remove_role_from_profile(&profile, name))
            .await?;
    }
    Removal::new(s, "IAM role", name)
        .delete(|| iam.delete_role(name))
        .await
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
