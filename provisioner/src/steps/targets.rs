//! Registers the worker nodes' private IPs in the NLB's target group and deregisters IPs of
//! nodes that are gone (nodes come and go with the Auto Scaling group).

use aws_sdk_elasticloadbalancingv2::types::TargetDescription;

use crate::aws::AwsResultExt;
use crate::ingress::HTTP_NODE_PORT;
use crate::plan::{OnResource, Resource, Scope, Step, StepError, StepFuture, input};
use crate::progress::Action;

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
    fn name(&self) -> &'static str {
        "targets"
    }

    fn title(&self) -> &'static str {
        "the nodes' IPs as load balancer targets"
    }

    fn needs(&self) -> &'static [&'static str] {
        &["nodes", "load-balancer"]
    }

    fn ensure<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let nodes = input(&s.outputs.nodes, "nodes")?;
            let lb = input(&s.outputs.load_balancer, "load-balancer")?;
            let resource = format!("target group {}", s.stack.target_group());
            let registered = registered(s, &lb.target_group_arn).await?;
            let wanted: Vec<String> = nodes
                .instances
                .iter()
                .map(|n| n.private_ip.clone())
                .collect();
            let (add, remove) = reconcile(
                &registered
                    .iter()
                    .map(|(id, port, _)| (id.clone(), *port))
                    .collect::<Vec<_>>(),
                &wanted,
                HTTP_NODE_PORT,
            );
            if !add.is_empty() {
                s.aws
                    .elbv2
                    .register_targets()
                    .target_group_arn(&lb.target_group_arn)
                    .set_targets(Some(
                        add.iter()
                            .map(|ip| {
                                TargetDescription::builder()
                                    .id(ip)
                                    .port(HTTP_NODE_PORT)
                                    .build()
                            })
                            .collect(),
                    ))
                    .send()
                    .await
                    .op("elbv2:RegisterTargets")
                    .on(&resource)?;
            }
            if !remove.is_empty() {
                s.aws
                    .elbv2
                    .deregister_targets()
                    .target_group_arn(&lb.target_group_arn)
                    .set_targets(Some(
                        remove
                            .iter()
                            .map(|(ip, port)| {
                                TargetDescription::builder().id(ip).port(*port).build()
                            })
                            .collect(),
                    ))
                    .send()
                    .await
                    .op("elbv2:DeregisterTargets")
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
            let Some(tg) = super::load_balancer::describe_tg(s, &s.stack.target_group()).await?
            else {
                return Ok(Vec::new());
            };
            let arn = tg.target_group_arn().unwrap_or_default();
            Ok(registered(s, arn)
                .await?
                .into_iter()
                .map(|(ip, port, health)| {
                    Resource::observed(
                        "target",
                        format!("{ip}:{port}"),
                        format!("{ip}:{port}"),
                        health,
                    )
                })
                .collect())
        })
    }
}

/// Registered targets: (ip, port, health state).
async fn registered(s: &Scope<'_>, tg_arn: &str) -> Result<Vec<(String, i32, String)>, StepError> {
    let out = s
        .aws
        .elbv2
        .describe_target_health()
        .target_group_arn(tg_arn)
        .send()
        .await
        .op("elbv2:DescribeTargetHealth")
        .on(format!("target group {}", s.stack.target_group()))?;
    Ok(out
        .target_health_descriptions()
        .iter()
        .filter_map(|d| {
            let target = d.target()?;
            Some((
                target.id()?.to_owned(),
                target.port().unwrap_or(HTTP_NODE_PORT),
                d.target_health()
                    .and_then(|h| h.state())
                    .map(|st| st.as_str().to_owned())
                    .unwrap_or_else(|| "unknown".to_owned()),
            ))
        })
        .collect())
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
