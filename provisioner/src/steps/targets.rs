//! Registers the worker nodes' private IPs in the NLB's target group and deregisters IPs of
//! nodes that are gone (nodes come and go with the Auto Scaling group).

use super::load_balancer::{self, LoadBalancer};
use super::nodes::{self, Nodes};
use crate::aws::elbv2::Target;
use crate::ingress::HTTP_NODE_PORT;
use crate::plan::{OnResource, Resource, Scope, Step, StepError, StepFuture, StepId};
use crate::progress::Action;

pub const ID: StepId = StepId::new("targets");

pub struct TargetsStep;

/// Which targets to add and which to remove so that exactly `wanted` are registered on `port`.
pub fn reconcile(
    registered: &[(String, i32)],
    wanted: &[String],
    port: i32,
) -> (Vec<String>, Vec<(String, i32)>) {
    let add = wanted
        .iter()
        .filter(|ip| !registered.iter().any(|(id, p)| id == *ip && *p == port))
        .cloned()
        .collect();
    let remove = registered
        .iter()
        .filter(|(id, p)| *p != port || !wanted.contains(id))
        .cloned()
        .collect();
    (add, remove)
}

impl Step for TargetsStep {
    fn id(&self) -> StepId {
        ID
    }

    fn title(&self) -> &'static str {
        "the nodes' IPs as load balancer targets"
    }

    fn needs(&self) -> &[StepId] {
        &[nodes::ID, load_balancer::ID]
    }

    fn ensure<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let nodes = s.input::<Nodes>()?;
            let lb = s.input::<LoadBalancer>()?;
            let elbv2 = s.aws.elbv2();
            let resource = format!("target group {}", s.stack.target_group());
            let registered: Vec<(String, i32)> = registered(s, &lb.target_group_arn)
                .await?
                .into_iter()
                .map(|t| (t.id, t.port.unwrap_or(HTTP_NODE_PORT)))
                .collect();
            let wanted: Vec<String> = nodes
                .instances
                .iter()
                .map(|n| n.private_ip.clone())
                .collect();
            let (add, remove) = reconcile(&registered, &wanted, HTTP_NODE_PORT);
            if !add.is_empty() {
                let targets: Vec<(String, i32)> =
                    add.iter().map(|ip| (ip.clone(), HTTP_NODE_PORT)).collect();
                elbv2
                    .register_targets(&lb.target_group_arn, &targets)
                    .await
                    .on(&resource)?;
            }
            if !remove.is_empty() {
                elbv2
                    .deregister_targets(&lb.target_group_arn, &remove)
                    .await
                    .on(&resource)?;
            }
            for ip in &wanted {
                let action = if add.contains(ip) {
                    Action::Created
                } else {
                    Action::Kept
                };
                s.record(action, "target", format!("{ip}:{HTTP_NODE_PORT}"));
            }
            for (ip, port) in &remove {
                s.record(Action::Deleted, "target", format!("{ip}:{port}"));
            }
            Ok(())
        })
    }

    fn destroy<'a>(&'a self, _s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        // Targets go with their target group (load-balancer step).
        Box::pin(async { Ok(()) })
    }

    fn inspect<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, Vec<Resource>> {
        Box::pin(async move {
            let Some(tg) = load_balancer::describe_tg(s).await? else {
                return Ok(Vec::new());
            };
            Ok(registered(s, &tg.arn)
                .await?
                .into_iter()
                .map(|t| {
                    let target = format!("{}:{}", t.id, t.port.unwrap_or(HTTP_NODE_PORT));
                    Resource::found("target", &target, &target, t.health).observed()
                })
                .collect())
        })
    }
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
    fn registers_new_nodes_and_removes_gone_ones() {
        let registered = vec![
            ("10.0.0.5".to_owned(), 30080),
            ("10.0.0.6".to_owned(), 30080),
            ("10.0.0.7".to_owned(), 9999),
        ];
        let wanted = vec![
            "10.0.0.5".to_owned(),
            "10.0.0.7".to_owned(),
            "10.0.16.9".to_owned(),
        ];
        let (add, remove) = reconcile(&registered, &wanted, 30080);
        assert_eq!(add, ["10.0.0.7", "10.0.16.9"]);
        assert_eq!(
            remove,
            [
                ("10.0.0.6".to_owned(), 30080),
                ("10.0.0.7".to_owned(), 9999)
            ]
        );
    }

    #[test]
    fn nothing_to_do_when_in_sync() {
        let registered = vec![("10.0.0.5".to_owned(), 30080)];
        let (add, remove) = reconcile(&registered, &["10.0.0.5".to_owned()], 30080);
        assert!(add.is_empty() && remove.is_empty());
    }
}
