//! The load balancer's targets: the node role's inline policy that lets the targets controller
//! (in the cluster, `platform::targets`) keep the stack's target group and nothing else, and the
//! nodes' private IPs registered at once, so that the site answers before the controller runs.
//! The rule is `platform::targets::changes`, the controller's own: `up` and `sync-targets`
//! register the Auto Scaling group's InService instances and deregister every other target; the
//! controller then narrows that to the Ready, schedulable nodes and follows every change.

use serde_json::{Value, json};

use super::Removal;
use super::iam::{self, owned_role};
use super::load_balancer::{self, LoadBalancer};
use super::nodes::{self, Nodes};
use crate::aws::elbv2::Target;
use crate::ingress::HTTP_NODE_PORT;
use crate::plan::{OnResource, Resource, Scope, Step, StepError, StepFuture, StepId};
use crate::progress::Action;
use crate::retry::retry_not_yet;

pub const ID: StepId = StepId::new("targets");

/// The kind the inline policy is reported under.
const POLICY: &str = "IAM inline policy";

pub struct TargetsStep;

/// The node role's permission to keep the stack's target group: RegisterTargets and
/// DeregisterTargets on that one target group ARN, and DescribeTargetHealth, which has no
/// resource-level permission and so is granted on "*" (Service Authorization Reference,
/// "Actions, resources, and condition keys for Elastic Load Balancing V2",
/// <https://docs.aws.amazon.com/service-authorization/latest/reference/list_elasticloadbalancingv2.html>:
/// RegisterTargets and DeregisterTargets take the `targetgroup` resource type, DescribeTargetHealth
/// none).
pub fn targets_policy(target_group_arn: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "KeepTheStacksTargets",
                "Effect": "Allow",
                "Action": [
                    "elasticloadbalancing:RegisterTargets",
                    "elasticloadbalancing:DeregisterTargets"
                ],
                "Resource": target_group_arn
            },
            {
                "Sid": "ReadTargetHealth",
                "Effect": "Allow",
                "Action": "elasticloadbalancing:DescribeTargetHealth",
                "Resource": "*"
            }
        ]
    })
}

/// `<stack>-targets`, on the node role.
pub fn policy_name(s: &Scope<'_>) -> String {
    s.stack.display_name("targets")
}

impl Step for TargetsStep {
    fn id(&self) -> StepId {
        ID
    }

    fn title(&self) -> &'static str {
        "the nodes' IPs as load balancer targets, and the node role's right to keep them"
    }

    fn needs(&self) -> &[StepId] {
        &[iam::ID, nodes::ID, load_balancer::ID]
    }

    fn ensure<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let nodes = s.input::<Nodes>()?;
            let lb = s.input::<LoadBalancer>()?;
            ensure_policy(s, &lb.target_group_arn).await?;
            let elbv2 = s.aws.elbv2();
            let resource = format!("target group {}", s.stack.target_group());
            let registered: Vec<platform::targets::Registered> =
                registered(s, &lb.target_group_arn)
                    .await?
                    .into_iter()
                    .map(|t| {
                        platform::targets::Registered::new(
                            t.id,
                            t.port.unwrap_or(HTTP_NODE_PORT),
                            t.health,
                        )
                    })
                    .collect();
            let wanted: Vec<&str> = nodes
                .instances
                .iter()
                .map(|n| n.private_ip.as_str())
                .collect();
            let changes =
                platform::targets::changes(&registered, wanted.iter().copied(), HTTP_NODE_PORT);
            let pairs = |targets: &[platform::targets::Target]| -> Vec<(String, i32)> {
                targets.iter().map(|t| (t.ip.clone(), t.port)).collect()
            };
            if !changes.register.is_empty() {
                elbv2
                    .register_targets(&lb.target_group_arn, &pairs(&changes.register))
                    .await
                    .on(&resource)?;
            }
            if !changes.deregister.is_empty() {
                elbv2
                    .deregister_targets(&lb.target_group_arn, &pairs(&changes.deregister))
                    .await
                    .on(&resource)?;
            }
            for ip in &wanted {
                let added = changes.register.iter().any(|t| t.ip == *ip);
                let action = if added { Action::Created } else { Action::Kept };
                s.record(action, "target", format!("{ip}:{HTTP_NODE_PORT}"));
            }
            for target in &changes.deregister {
                s.record(Action::Deleted, "target", target.to_string());
            }
            Ok(())
        })
    }

    fn destroy<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        // Targets go with their target group (load-balancer step); the policy goes here, and
        // the IAM step deletes any inline policy left on the role before the role.
        Box::pin(async move {
            let (role, name) = (s.stack.node_role(), policy_name(s));
            let iam = s.aws.iam();
            let resource = format!("IAM role {role}");
            let present = match owned_role(s, &role).await? {
                Some(_) => iam
                    .inline_policy(&role, &name)
                    .await
                    .on(&resource)?
                    .is_some(),
                None => false,
            };
            if !present {
                s.record(Action::Absent, POLICY, format!("{role}/{name}"));
                return Ok(());
            }
            Removal::new(s, POLICY, format!("{role}/{name}"))
                .delete(|| iam.delete_inline_policy(&role, &name))
                .await
        })
    }

    fn inspect<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, Vec<Resource>> {
        Box::pin(async move {
            let mut found = vec![inspect_policy(s).await?];
            let Some(tg) = load_balancer::describe_tg(s).await? else {
                return Ok(found);
            };
            found.extend(registered(s, &tg.arn).await?.into_iter().map(|t| {
                let target = format!("{}:{}", t.id, t.port.unwrap_or(HTTP_NODE_PORT));
                Resource::found("target", &target, &target, t.health).observed()
            }));
            Ok(found)
        })
    }
}

/// Puts the policy on the node role unless the role has it as it should be.
async fn ensure_policy(s: &Scope<'_>, target_group_arn: &str) -> Result<(), StepError> {
    let iam = s.aws.iam();
    let (role, name) = (s.stack.node_role(), policy_name(s));
    let resource = format!("IAM role {role}");
    let desired = targets_policy(target_group_arn);
    let current = iam.inline_policy(&role, &name).await.on(&resource)?;
    let parsed = current
        .as_deref()
        .and_then(|doc| serde_json::from_str::<Value>(doc).ok());
    if parsed.as_ref() == Some(&desired) {
        s.record(Action::Kept, POLICY, format!("{role}/{name}"));
        return Ok(());
    }
    let document = desired.to_string();
    retry_not_yet(
        s.config.timeouts.resources(),
        |why| s.waiting(why),
        || iam.put_inline_policy(&role, &name, &document),
    )
    .await
    .on(&resource)?;
    let action = if current.is_some() {
        Action::Updated
    } else {
        Action::Created
    };
    s.record(action, POLICY, format!("{role}/{name}"));
    Ok(())
}

/// The policy as `plan` and `status` show it: what it allows, on which target group.
async fn inspect_policy(s: &Scope<'_>) -> Result<Resource, StepError> {
    let (role, name) = (s.stack.node_role(), policy_name(s));
    let document = s
        .aws
        .iam()
        .inline_policy(&role, &name)
        .await
        .on(format!("IAM role {role}"))?;
    let Some(document) = document else {
        return Ok(Resource::missing(POLICY, format!("{role}/{name}")));
    };
    let allows = serde_json::from_str::<Value>(&document)
        .ok()
        .and_then(|doc| {
            let statement = doc.pointer("/Statement/0")?;
            Some(format!(
                "Register/DeregisterTargets on {}",
                statement.get("Resource")?.as_str()?
            ))
        })
        .unwrap_or_else(|| "not the document up would put".to_owned());
    Ok(Resource::found(
        POLICY,
        format!("{role}/{name}"),
        &name,
        allows,
    ))
}

/// The targets registered in the stack's target group, with their health.
pub(crate) async fn registered(s: &Scope<'_>, tg_arn: &str) -> Result<Vec<Target>, StepError> {
    s.aws
        .elbv2()
        .targets(tg_arn)
        .await
        .on(format!("target group {}", s.stack.target_group()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_keeps_one_target_group_and_reads_health_anywhere() {
        let arn = "arn:aws:elasticloadbalancing:ap-northeast-2:123456789012:targetgroup/kdeploy-http/50dc6c495c0c9188";
        let policy = targets_policy(arn);
        let statements = policy["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 2);
        assert_eq!(
            statements[0]["Action"],
            json!([
                "elasticloadbalancing:RegisterTargets",
                "elasticloadbalancing:DeregisterTargets"
            ])
        );
        assert_eq!(statements[0]["Resource"], arn);
        assert_eq!(
            statements[1]["Action"],
            "elasticloadbalancing:DescribeTargetHealth"
        );
        assert_eq!(statements[1]["Resource"], "*");
        assert!(statements.iter().all(|s| s["Effect"] == "Allow"));
    }
}
