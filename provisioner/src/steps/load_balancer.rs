//! The internet-facing Network Load Balancer over both subnets, its target group (type `ip`, TCP,
//! on the ingress controller's HTTP NodePort, health-checked on its readiness NodePort) and a TCP
//! :80 listener.

use aws_sdk_elasticloadbalancingv2::types::{
    Action as LbAction, ActionTypeEnum, IpAddressType, LoadBalancerSchemeEnum,
    LoadBalancerStateEnum, LoadBalancerTypeEnum, ProtocolEnum, Tag, TargetTypeEnum,
};

use super::{deleted_or_absent, ignore_not_found};
use crate::aws::AwsResultExt;
use crate::ingress::{HEALTH_NODE_PORT, HEALTH_PATH, HTTP_NODE_PORT};
use crate::plan::{OnResource, Resource, Scope, Step, StepError, StepFuture, input, recorded};
use crate::progress::Action;
use crate::retry::{Poll, retry_not_yet, wait_for};

/// What the load-balancer step produces.
#[derive(Debug, Clone)]
pub struct LoadBalancer {
    pub arn: String,
    pub dns_name: String,
    pub target_group_arn: String,
}

pub struct LoadBalancerStep;

pub const LISTENER_PORT: i32 = 80;

impl Step for LoadBalancerStep {
    fn name(&self) -> &'static str {
        "load-balancer"
    }

    fn title(&self) -> &'static str {
        "Network Load Balancer, target group, listener"
    }

    fn needs(&self) -> &'static [&'static str] {
        &["network"]
    }

    fn ensure<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let (target_group_arn, lb) =
                tokio::try_join!(ensure_target_group(s), ensure_load_balancer(s))?;
            let lb_arn = lb.load_balancer_arn().unwrap_or_default().to_owned();
            ensure_listener(s, &lb_arn, &target_group_arn).await?;
            let lb = wait_active(s, &lb_arn).await?;
            let _ = s.outputs.load_balancer.set(LoadBalancer {
                arn: lb_arn,
                dns_name: lb.dns_name().unwrap_or_default().to_owned(),
                target_group_arn,
            });
            Ok(())
        })
    }

    fn destroy<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let name = s.stack.load_balancer();
            let resource = format!("load balancer {name}");
            match describe_lb(s, &name).await? {
                None => s.record(Action::Absent, "load balancer", &name),
                Some(lb) => {
                    let arn = lb.load_balancer_arn().unwrap_or_default().to_owned();
                    if !owned_arn(s, &arn).await? {
                        return Err(StepError::NotOwned { resource });
                    }
                    // Deleting the load balancer deletes its listeners.
                    ignore_not_found(
                        s.aws
                            .elbv2
                            .delete_load_balancer()
                            .load_balancer_arn(&arn)
                            .send()
                            .await
                            .op("elbv2:DeleteLoadBalancer"),
                    )
                    .on(&resource)?;
                    wait_for(
                        s.config.timeouts.resources(),
                        |state| s.waiting(state),
                        || async {
                            Ok(match describe_lb(s, &name).await? {
                                None => Poll::Ready(()),
                                Some(_) => Poll::Pending("load balancer deleting".to_owned()),
                            })
                        },
                    )
                    .await
                    .on(&resource)?;
                    s.record(Action::Deleted, "load balancer", &name);
                }
            }
            let tg_name = s.stack.target_group();
            let tg_resource = format!("target group {tg_name}");
            match describe_tg(s, &tg_name).await? {
                None => s.record(Action::Absent, "target group", &tg_name),
                Some(tg) => {
                    let arn = tg.target_group_arn().unwrap_or_default().to_owned();
                    if !owned_arn(s, &arn).await? {
                        return Err(StepError::NotOwned {
                            resource: tg_resource,
                        });
                    }
                    // ResourceInUse while the load balancer is still letting go of it.
                    let deleted = retry_not_yet(
                        s.config.timeouts.resources(),
                        |why| s.waiting(why),
                        || async {
                            ignore_not_found(
                                s.aws
                                    .elbv2
                                    .delete_target_group()
                                    .target_group_arn(&arn)
                                    .send()
                                    .await
                                    .op("elbv2:DeleteTargetGroup"),
                            )
                        },
                    )
                    .await
                    .on(&tg_resource)?;
                    s.record(deleted_or_absent(deleted), "target group", &tg_name);
                }
            }
            Ok(())
        })
    }

    fn inspect<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, Vec<Resource>> {
        Box::pin(async move {
            let mut found = Vec::new();
            let name = s.stack.load_balancer();
            match describe_lb(s, &name).await? {
                Some(lb) => {
                    let arn = lb.load_balancer_arn().unwrap_or_default();
                    found.push(Resource::found(
                        "load balancer",
                        &name,
                        arn,
                        format!(
                            "{} {}",
                            lb.state()
                                .and_then(|st| st.code())
                                .map(|c| c.as_str())
                                .unwrap_or("unknown"),
                            lb.dns_name().unwrap_or_default()
                        ),
                    ));
                    let listeners = s
                        .aws
                        .elbv2
                        .describe_listeners()
                        .load_balancer_arn(arn)
                        .send()
                        .await
                        .op("elbv2:DescribeListeners")
                        .on(format!("load balancer {name}"))?;
                    for l in listeners.listeners() {
                        found.push(Resource::found(
                            "listener",
                            format!("{name}:{}", l.port().unwrap_or_default()),
                            l.listener_arn().unwrap_or_default(),
                            l.protocol()
                                .map(|p| p.as_str().to_owned())
                                .unwrap_or_default(),
                        ));
                    }
                }
                None => found.push(Resource::missing("load balancer", &name)),
            }
            let tg_name = s.stack.target_group();
            match describe_tg(s, &tg_name).await? {
                Some(tg) => found.push(Resource::found(
                    "target group",
                    &tg_name,
                    tg.target_group_arn().unwrap_or_default(),
                    format!(
                        "{} {} port {}",
                        tg.target_type().map(|t| t.as_str()).unwrap_or_default(),
                        tg.protocol().map(|p| p.as_str()).unwrap_or_default(),
                        tg.port().unwrap_or_default()
                    ),
                )),
                None => found.push(Resource::missing("target group", &tg_name)),
            }
            Ok(found)
        })
    }
}

pub(crate) async fn describe_lb(
    s: &Scope<'_>,
    name: &str,
) -> Result<Option<aws_sdk_elasticloadbalancingv2::types::LoadBalancer>, StepError> {
    match s
        .aws
        .elbv2
        .describe_load_balancers()
        .names(name)
        .send()
        .await
        .op("elbv2:DescribeLoadBalancers")
    {
        Ok(out) => Ok(out.load_balancers().first().cloned()),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e).on(format!("load balancer {name}")),
    }
}

pub(crate) async fn describe_tg(
    s: &Scope<'_>,
    name: &str,
) -> Result<Option<aws_sdk_elasticloadbalancingv2::types::TargetGroup>, StepError> {
    match s
        .aws
        .elbv2
        .describe_target_groups()
        .names(name)
        .send()
        .await
        .op("elbv2:DescribeTargetGroups")
    {
        Ok(out) => Ok(out.target_groups().first().cloned()),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e).on(format!("target group {name}")),
    }
}

/// ELBv2 returns tags only through DescribeTags.
async fn owned_arn(s: &Scope<'_>, arn: &str) -> Result<bool, StepError> {
    let out = s
        .aws
        .elbv2
        .describe_tags()
        .resource_arns(arn)
        .send()
        .await
        .op("elbv2:DescribeTags")
        .on(arn)?;
    Ok(out.tag_descriptions().iter().any(|d| {
        super::owned(
            &s.stack,
            d.tags()
                .iter()
                .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
        )
    }))
}

fn stack_tags(s: &Scope<'_>, part: &str) -> Vec<Tag> {
    s.stack
        .tags(part)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

async fn ensure_target_group(s: &Scope<'_>) -> Result<String, StepError> {
    let network = input(&s.outputs.network, "network")?;
    let name = s.stack.target_group();
    let resource = format!("target group {name}");
    if let Some(tg) = describe_tg(s, &name).await? {
        let arn = tg.target_group_arn().unwrap_or_default().to_owned();
        if !owned_arn(s, &arn).await? {
            return Err(StepError::NotOwned { resource });
        }
        let shape = (tg.target_type(), tg.protocol(), tg.port(), tg.vpc_id());
        if shape
            != (
                Some(&TargetTypeEnum::Ip),
                Some(&ProtocolEnum::Tcp),
                Some(HTTP_NODE_PORT),
                Some(network.vpc_id.as_str()),
            )
        {
            return Err(StepError::Failed {
                resource,
                reason: format!(
                    "is {:?} {:?} port {:?} in {:?}, but the stack needs ip TCP port {HTTP_NODE_PORT} in {}; these cannot change: run `provisioner down` first",
                    tg.target_type(),
                    tg.protocol(),
                    tg.port(),
                    tg.vpc_id(),
                    network.vpc_id
                ),
            });
        }
        let health_ok = tg.health_check_protocol() == Some(&ProtocolEnum::Http)
            && tg.health_check_port() == Some(HEALTH_NODE_PORT.to_string().as_str())
            && tg.health_check_path() == Some(HEALTH_PATH);
        if health_ok {
            recorded(s, false, "target group", &name);
        } else {
            s.aws
                .elbv2
                .modify_target_group()
                .target_group_arn(&arn)
                .health_check_protocol(ProtocolEnum::Http)
                .health_check_port(HEALTH_NODE_PORT.to_string())
                .health_check_path(HEALTH_PATH)
                .send()
                .await
                .op("elbv2:ModifyTargetGroup")
                .on(&resource)?;
            s.record(Action::Updated, "target group health check", &name);
        }
        return Ok(arn);
    }
    let out = s
        .aws
        .elbv2
        .create_target_group()
        .name(&name)
        .protocol(ProtocolEnum::Tcp)
        .port(HTTP_NODE_PORT)
        .vpc_id(&network.vpc_id)
        .target_type(TargetTypeEnum::Ip)
        .health_check_enabled(true)
        .health_check_protocol(ProtocolEnum::Http)
        .health_check_port(HEALTH_NODE_PORT.to_string())
        .health_check_path(HEALTH_PATH)
        .health_check_interval_seconds(10)
        .healthy_threshold_count(2)
        .unhealthy_threshold_count(2)
        .set_tags(Some(stack_tags(s, "target-group")))
        .send()
        .await
        .op("elbv2:CreateTargetGroup")
        .on(&resource)?;
    recorded(s, true, "target group", &name);
    Ok(out
        .target_groups()
        .first()
        .and_then(|t| t.target_group_arn())
        .unwrap_or_default()
        .to_owned())
}

async fn ensure_load_balancer(
    s: &Scope<'_>,
) -> Result<aws_sdk_elasticloadbalancingv2::types::LoadBalancer, StepError> {
    let network = input(&s.outputs.network, "network")?;
    let name = s.stack.load_balancer();
    let resource = format!("load balancer {name}");
    if let Some(lb) = describe_lb(s, &name).await? {
        if !owned_arn(s, lb.load_balancer_arn().unwrap_or_default()).await? {
            return Err(StepError::NotOwned { resource });
        }
        recorded(s, false, "load balancer", &name);
        return Ok(lb);
    }
    let out = s
        .aws
        .elbv2
        .create_load_balancer()
        .name(&name)
        .r#type(LoadBalancerTypeEnum::Network)
        .scheme(LoadBalancerSchemeEnum::InternetFacing)
        .ip_address_type(IpAddressType::Ipv4)
        .set_subnets(Some(network.subnet_ids.clone()))
        .set_tags(Some(stack_tags(s, "nlb")))
        .send()
        .await
        .op("elbv2:CreateLoadBalancer")
        .on(&resource)?;
    recorded(s, true, "load balancer", &name);
    out.load_balancers()
        .first()
        .cloned()
        .ok_or_else(|| StepError::Failed {
            resource,
            reason: "ELB returned no load balancer".into(),
        })
}

async fn ensure_listener(s: &Scope<'_>, lb_arn: &str, tg_arn: &str) -> Result<(), StepError> {
    let resource = format!("listener :{LISTENER_PORT} of {}", s.stack.load_balancer());
    let listeners = s
        .aws
        .elbv2
        .describe_listeners()
        .load_balancer_arn(lb_arn)
        .send()
        .await
        .op("elbv2:DescribeListeners")
        .on(&resource)?;
    let forward = LbAction::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(tg_arn)
        .build();
    match listeners
        .listeners()
        .iter()
        .find(|l| l.port() == Some(LISTENER_PORT))
    {
        Some(listener) => {
            let forwards_to_ours = listener.default_actions().iter().any(|a| {
                a.r#type() == Some(&ActionTypeEnum::Forward) && a.target_group_arn() == Some(tg_arn)
            });
            if forwards_to_ours && listener.protocol() == Some(&ProtocolEnum::Tcp) {
                recorded(s, false, "listener", &format!("TCP:{LISTENER_PORT}"));
            } else {
                s.aws
                    .elbv2
                    .modify_listener()
                    .listener_arn(listener.listener_arn().unwrap_or_default())
                    .protocol(ProtocolEnum::Tcp)
                    .default_actions(forward)
                    .send()
                    .await
                    .op("elbv2:ModifyListener")
                    .on(&resource)?;
                s.record(Action::Updated, "listener", format!("TCP:{LISTENER_PORT}"));
            }
        }
        None => {
            s.aws
                .elbv2
                .create_listener()
                .load_balancer_arn(lb_arn)
                .protocol(ProtocolEnum::Tcp)
                .port(LISTENER_PORT)
                .default_actions(forward)
                .set_tags(Some(stack_tags(s, "listener")))
                .send()
                .await
                .op("elbv2:CreateListener")
                .on(&resource)?;
            recorded(s, true, "listener", &format!("TCP:{LISTENER_PORT}"));
        }
    }
    Ok(())
}

async fn wait_active(
    s: &Scope<'_>,
    arn: &str,
) -> Result<aws_sdk_elasticloadbalancingv2::types::LoadBalancer, StepError> {
    let resource = format!("load balancer {}", s.stack.load_balancer());
    wait_for(
        s.config.timeouts.resources(),
        |state| s.waiting(state),
        || async {
            let out = s
                .aws
                .elbv2
                .describe_load_balancers()
                .load_balancer_arns(arn)
                .send()
                .await
                .op("elbv2:DescribeLoadBalancers")
                .on(&resource)?;
            let Some(lb) = out.load_balancers().first().cloned() else {
                return Err(StepError::Failed {
                    resource: resource.clone(),
                    reason: "disappeared while waiting for it to become active".into(),
                });
            };
            match lb.state().and_then(|st| st.code()) {
                Some(LoadBalancerStateEnum::Active) => Ok(Poll::Ready(lb)),
                Some(LoadBalancerStateEnum::Failed) => Err(StepError::Failed {
                    resource: resource.clone(),
                    reason: format!(
                        "failed: {}",
                        lb.state()
                            .and_then(|st| st.reason())
                            .unwrap_or("no reason given")
                    ),
                }),
                other => Ok(Poll::Pending(format!(
                    "load balancer {}",
                    other.map(|c| c.as_str()).unwrap_or("provisioning")
                ))),
            }
        },
    )
    .await
    .on(&resource)
}
