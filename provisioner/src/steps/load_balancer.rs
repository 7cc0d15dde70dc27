//! The internet-facing Network Load Balancer over both subnets, its target group (type `ip`, TCP,
//! on the ingress controller's HTTP NodePort, health-checked on its readiness NodePort) and a TCP
//! :80 listener.

use super::Removal;
use super::network::{self, Network};
use crate::aws::elbv2::{self, NewTargetGroup, TargetGroup};
use crate::ingress::{HEALTH_NODE_PORT, HEALTH_PATH, HTTP_NODE_PORT};
use crate::plan::{OnResource, Output, Resource, Scope, Step, StepError, StepFuture, StepId};
use crate::progress::Action;
use crate::retry::{Poll, wait_for};

pub const ID: StepId = StepId::new("load-balancer");

/// What the load-balancer step produces.
#[derive(Debug, Clone)]
pub struct LoadBalancer {
    pub arn: String,
    pub dns_name: String,
    pub target_group_arn: String,
}

impl Output for LoadBalancer {
    const STEP: StepId = ID;
}

pub struct LoadBalancerStep;

pub const LISTENER_PORT: i32 = 80;

impl Step for LoadBalancerStep {
    fn id(&self) -> StepId {
        ID
    }

    fn title(&self) -> &'static str {
        "Network Load Balancer, target group, listener"
    }

    fn needs(&self) -> &[StepId] {
        &[network::ID]
    }

    fn ensure<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let (target_group_arn, lb_arn) =
                tokio::try_join!(ensure_target_group(s), ensure_load_balancer(s))?;
            ensure_listener(s, &lb_arn, &target_group_arn).await?;
            let lb = wait_active(s, &lb_arn).await?;
            s.outputs.put(LoadBalancer {
                arn: lb.arn,
                dns_name: lb.dns_name,
                target_group_arn,
            });
            Ok(())
        })
    }

    fn destroy<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let elbv2 = s.aws.elbv2();
            let name = s.stack.load_balancer();
            match owned_load_balancer(s).await? {
                None => s.record(Action::Absent, "load balancer", &name),
                Some(lb) => {
                    Removal::new(s, "load balancer", &name)
                        .delete_and_wait(
                            || elbv2.delete_load_balancer(&lb.arn),
                            || async {
                                let left = describe_lb(s).await?;
                                Ok(left.map(|_| "load balancer deleting".to_owned()))
                            },
                        )
                        .await?;
                }
            }
            let tg_name = s.stack.target_group();
            match owned_target_group(s).await? {
                None => s.record(Action::Absent, "target group", &tg_name),
                // ResourceInUse while the load balancer is still letting go of it.
                Some(tg) => {
                    Removal::new(s, "target group", &tg_name)
                        .delete(|| elbv2.delete_target_group(&tg.arn))
                        .await?
                }
            }
            Ok(())
        })
    }

    fn inspect<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, Vec<Resource>> {
        Box::pin(async move {
            let mut found = Vec::new();
            let name = s.stack.load_balancer();
            match describe_lb(s).await? {
                Some(lb) => {
                    let listeners = s
                        .aws
                        .elbv2()
                        .listeners(&lb.arn)
                        .await
                        .on(format!("load balancer {name}"))?;
                    let state = format!("{} {}", lb.state, lb.dns_name);
                    found.push(Resource::found("load balancer", &name, lb.arn, state));
                    for l in listeners {
                        found.push(Resource::found(
                            "listener",
                            format!("{name}:{}", l.port.unwrap_or_default()),
                            l.arn,
                            l.protocol.unwrap_or_default(),
                        ));
                    }
                }
                None => found.push(Resource::missing("load balancer", &name)),
            }
            let tg_name = s.stack.target_group();
            match describe_tg(s).await? {
                Some(tg) => {
                    let state = format!(
                        "{} {} port {}",
                        tg.target_type.unwrap_or_default(),
                        tg.protocol.unwrap_or_default(),
                        tg.port.unwrap_or_default()
                    );
                    found.push(Resource::found("target group", &tg_name, tg.arn, state));
                }
                None => found.push(Resource::missing("target group", &tg_name)),
            }
            Ok(found)
        })
    }
}

async fn describe_lb(s: &Scope<'_>) -> Result<Option<elbv2::LoadBalancer>, StepError> {
    let name = s.stack.load_balancer();
    s.aws
        .elbv2()
        .load_balancer(&name)
        .await
        .on(format!("load balancer {name}"))
}

/// The stack's target group as ELB describes it now.
pub(crate) async fn describe_tg(s: &Scope<'_>) -> Result<Option<TargetGroup>, StepError> {
    let name = s.stack.target_group();
    s.aws
        .elbv2()
        .target_group(&name)
        .await
        .on(format!("target group {name}"))
}

/// ELBv2 returns tags only through DescribeTags.
async fn owned_arn(s: &Scope<'_>, arn: &str, resource: String) -> Result<(), StepError> {
    let tags = s.aws.elbv2().tags(&[arn.to_owned()]).await.on(arn)?;
    if tags.iter().any(|(_, tags)| s.stack.owns(tags)) {
        Ok(())
    } else {
        Err(StepError::NotOwned { resource })
    }
}

async fn owned_load_balancer(s: &Scope<'_>) -> Result<Option<elbv2::LoadBalancer>, StepError> {
    let found = describe_lb(s).await?;
    if let Some(lb) = &found {
        owned_arn(
            s,
            &lb.arn,
            format!("load balancer {}", s.stack.load_balancer()),
        )
        .await?;
    }
    Ok(found)
}

async fn owned_target_group(s: &Scope<'_>) -> Result<Option<TargetGroup>, StepError> {
    let found = describe_tg(s).await?;
    if let Some(tg) = &found {
        owned_arn(
            s,
            &tg.arn,
            format!("target group {}", s.stack.target_group()),
        )
        .await?;
    }
    Ok(found)
}

async fn ensure_target_group(s: &Scope<'_>) -> Result<String, StepError> {
    let network = s.input::<Network>()?;
    let elbv2 = s.aws.elbv2();
    let name = s.stack.target_group();
    let resource = format!("target group {name}");
    let health_port = HEALTH_NODE_PORT.to_string();
    if let Some(tg) = owned_target_group(s).await? {
        let shape = (
            tg.target_type.as_deref(),
            tg.protocol.as_deref(),
            tg.port,
            tg.vpc_id.as_deref(),
        );
        if shape
            != (
                Some("ip"),
                Some("TCP"),
                Some(HTTP_NODE_PORT),
                Some(network.vpc_id.as_str()),
            )
        {
            return Err(StepError::conflict(
                resource,
                format!(
                    "is {:?} {:?} port {:?} in {:?}, but the stack needs ip TCP port {HTTP_NODE_PORT} in {}; these cannot change: run `provisioner down` first",
                    tg.target_type, tg.protocol, tg.port, tg.vpc_id, network.vpc_id
                ),
            ));
        }
        let health = &tg.health_check;
        if health.protocol.as_deref() == Some("HTTP")
            && health.port.as_deref() == Some(health_port.as_str())
            && health.path.as_deref() == Some(HEALTH_PATH)
        {
            s.kept_or_created(false, "target group", &name);
        } else {
            elbv2
                .set_http_health_check(&tg.arn, HEALTH_NODE_PORT, HEALTH_PATH)
                .await
                .on(&resource)?;
            s.record(Action::Updated, "target group health check", &name);
        }
        return Ok(tg.arn);
    }
    let tags = s.stack.tags("target-group");
    let arn = elbv2
        .create_target_group(&NewTargetGroup {
            name: &name,
            port: HTTP_NODE_PORT,
            vpc_id: &network.vpc_id,
            health_port: HEALTH_NODE_PORT,
            health_path: HEALTH_PATH,
            tags: &tags,
        })
        .await
        .on(&resource)?;
    s.kept_or_created(true, "target group", &name);
    Ok(arn)
}

async fn ensure_load_balancer(s: &Scope<'_>) -> Result<String, StepError> {
    let network = s.input::<Network>()?;
    let name = s.stack.load_balancer();
    if let Some(lb) = owned_load_balancer(s).await? {
        s.kept_or_created(false, "load balancer", &name);
        return Ok(lb.arn);
    }
    let lb = s
        .aws
        .elbv2()
        .create_network_load_balancer(&name, &network.subnet_ids, &s.stack.tags("nlb"))
        .await
        .on(format!("load balancer {name}"))?;
    s.kept_or_created(true, "load balancer", &name);
    Ok(lb.arn)
}

async fn ensure_listener(s: &Scope<'_>, lb_arn: &str, tg_arn: &str) -> Result<(), StepError> {
    let elbv2 = s.aws.elbv2();
    let resource = format!("listener :{LISTENER_PORT} of {}", s.stack.load_balancer());
    let listeners = elbv2.listeners(lb_arn).await.on(&resource)?;
    let id = format!("TCP:{LISTENER_PORT}");
    match listeners.iter().find(|l| l.port == Some(LISTENER_PORT)) {
        Some(listener)
            if listener.forwards_to.iter().any(|t| t == tg_arn)
                && listener.protocol.as_deref() == Some("TCP") =>
        {
            s.kept_or_created(false, "listener", &id);
        }
        Some(listener) => {
            elbv2
                .make_tcp_forward(&listener.arn, tg_arn)
                .await
                .on(&resource)?;
            s.record(Action::Updated, "listener", id);
        }
        None => {
            elbv2
                .create_tcp_listener(lb_arn, LISTENER_PORT, tg_arn, &s.stack.tags("listener"))
                .await
                .on(&resource)?;
            s.kept_or_created(true, "listener", &id);
        }
    }
    Ok(())
}

async fn wait_active(s: &Scope<'_>, arn: &str) -> Result<elbv2::LoadBalancer, StepError> {
    let resource = format!("load balancer {}", s.stack.load_balancer());
    wait_for(
        s.config.timeouts.resources(),
        |state| s.waiting(state),
        || async {
            let Some(lb) = s
                .aws
                .elbv2()
                .load_balancer_by_arn(arn)
                .await
                .on(&resource)?
            else {
                return Err(StepError::conflict(
                    &resource,
                    "disappeared while waiting for it to become active",
                ));
            };
            match lb.state.as_str() {
                "active" => Ok(Poll::Ready(lb)),
                "failed" => Err(StepError::conflict(
                    &resource,
                    format!(
                        "failed: {}",
                        lb.state_reason.as_deref().unwrap_or("no reason given")
                    ),
                )),
                other => Ok(Poll::Pending(format!("load balancer {other}"))),
            }
        },
    )
    .await
    .on(&resource)
}
