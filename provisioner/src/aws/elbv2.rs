//! Elastic Load Balancing v2: the NLB, its target group, listener and targets, and the tags that
//! ELBv2 returns only through DescribeTags.

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, IpAddressType, LoadBalancerSchemeEnum, LoadBalancerTypeEnum,
    ProtocolEnum, Tag, TargetDescription, TargetTypeEnum,
};

use super::{AwsError, NotFoundExt, SdkResultExt, Tags, required, required_str};

/// The ELBv2 layer; see [`super::Aws::elbv2`].
pub struct Elbv2<'a>(pub(super) &'a aws_sdk_elasticloadbalancingv2::Client);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancer {
    pub arn: String,
    pub dns_name: String,
    /// `provisioning`, `active`, `failed`, ...
    pub state: String,
    pub state_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroup {
    pub arn: String,
    pub target_type: Option<String>,
    pub protocol: Option<String>,
    pub port: Option<i32>,
    pub vpc_id: Option<String>,
    pub health_check: HealthCheck,
}

/// An HTTP health check on a port and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub protocol: Option<String>,
    pub port: Option<String>,
    pub path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub arn: String,
    pub port: Option<i32>,
    pub protocol: Option<String>,
    /// Target groups the default actions forward to.
    pub forwards_to: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: String,
    pub port: Option<i32>,
    /// `healthy`, `initial`, `unhealthy`, ...; `unknown` when AWS says nothing.
    pub health: String,
}

/// What a new TCP target group of type `ip` is made with.
pub struct NewTargetGroup<'a> {
    pub name: &'a str,
    pub port: i32,
    pub vpc_id: &'a str,
    pub health_port: i32,
    pub health_path: &'a str,
    pub tags: &'a [(String, String)],
}

fn elb_tags(pairs: &[(String, String)]) -> Vec<Tag> {
    pairs
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

fn load_balancer(
    lb: &aws_sdk_elasticloadbalancingv2::types::LoadBalancer,
    op: &'static str,
) -> Result<LoadBalancer, AwsError> {
    Ok(LoadBalancer {
        arn: required_str(lb.load_balancer_arn(), op, "LoadBalancerArn")?,
        dns_name: lb.dns_name().unwrap_or("").to_owned(),
        state: lb
            .state()
            .and_then(|st| st.code())
            .map(|c| c.as_str().to_owned())
            .unwrap_or_else(|| "provisioning".to_owned()),
        state_reason: lb.state().and_then(|st| st.reason()).map(str::to_owned),
    })
}

fn target_group(
    tg: &aws_sdk_elasticloadbalancingv2::types::TargetGroup,
    op: &'static str,
) -> Result<TargetGroup, AwsError> {
    Ok(TargetGroup {
        arn: required_str(tg.target_group_arn(), op, "TargetGroupArn")?,
        target_type: tg.target_type().map(|t| t.as_str().to_owned()),
        protocol: tg.protocol().map(|p| p.as_str().to_owned()),
        port: tg.port(),
        vpc_id: tg.vpc_id().map(str::to_owned),
        health_check: HealthCheck {
            protocol: tg.health_check_protocol().map(|p| p.as_str().to_owned()),
            port: tg.health_check_port().map(str::to_owned),
            path: tg.health_check_path().map(str::to_owned),
        },
    })
}

fn forward(target_group: &str) -> Action {
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(target_group)
        .build()
}

impl Elbv2<'_> {
    pub async fn load_balancer(&self, name: &str) -> Result<Option<LoadBalancer>, AwsError> {
        self.describe_load_balancers(Some(name), None)
            .await
            .found()
            .map(|found| found.and_then(|lbs| lbs.into_iter().next()))
    }

    pub async fn load_balancer_by_arn(&self, arn: &str) -> Result<Option<LoadBalancer>, AwsError> {
        self.describe_load_balancers(None, Some(arn))
            .await
            .map(|lbs| lbs.into_iter().next())
    }

    /// Every load balancer of the account in the region.
    pub async fn load_balancers(&self) -> Result<Vec<LoadBalancer>, AwsError> {
        self.describe_load_balancers(None, None).await
    }

    async fn describe_load_balancers(
        &self,
        name: Option<&str>,
        arn: Option<&str>,
    ) -> Result<Vec<LoadBalancer>, AwsError> {
        const OP: &str = "elbv2:DescribeLoadBalancers";
        let mut request = self.0.describe_load_balancers();
        if let Some(name) = name {
            request = request.names(name);
        }
        if let Some(arn) = arn {
            request = request.load_balancer_arns(arn);
        }
        let out = request.send().await.op(OP)?;
        out.load_balancers()
            .iter()
            .map(|lb| load_balancer(lb, OP))
            .collect()
    }

    /// An internet-facing IPv4 Network Load Balancer over `subnets`.
    pub async fn create_network_load_balancer(
        &self,
        name: &str,
        subnets: &[String],
        tags: &[(String, String)],
    ) -> Result<LoadBalancer, AwsError> {
        const OP: &str = "elbv2:CreateLoadBalancer";
        let out = self
            .0
            .create_load_balancer()
            .name(name)
            .r#type(LoadBalancerTypeEnum::Network)
            .scheme(LoadBalancerSchemeEnum::InternetFacing)
            .ip_address_type(IpAddressType::Ipv4)
            .set_subnets(Some(subnets.to_vec()))
            .set_tags(Some(elb_tags(tags)))
            .send()
            .await
            .op(OP)?;
        load_balancer(
            required(out.load_balancers().first(), OP, "LoadBalancers")?,
            OP,
        )
    }

    /// Deleting a load balancer deletes its listeners.
    pub async fn delete_load_balancer(&self, arn: &str) -> Result<(), AwsError> {
        self.0
            .delete_load_balancer()
            .load_balancer_arn(arn)
            .send()
            .await
            .op("elbv2:DeleteLoadBalancer")
            .map(drop)
    }

    pub async fn target_group(&self, name: &str) -> Result<Option<TargetGroup>, AwsError> {
        self.describe_target_groups(Some(name))
            .await
            .found()
            .map(|found| found.and_then(|tgs| tgs.into_iter().next()))
    }

    /// Every target group of the account in the region.
    pub async fn target_groups(&self) -> Result<Vec<TargetGroup>, AwsError> {
        self.describe_target_groups(None).await
    }

    async fn describe_target_groups(
        &self,
        name: Option<&str>,
    ) -> Result<Vec<TargetGroup>, AwsError> {
        const OP: &str = "elbv2:DescribeTargetGroups";
        let mut request = self.0.describe_target_groups();
        if let Some(name) = name {
            request = request.names(name);
        }
        let out = request.send().await.op(OP)?;
        out.target_groups()
            .iter()
            .map(|tg| target_group(tg, OP))
            .collect()
    }

    pub async fn create_target_group(&self, new: &NewTargetGroup<'_>) -> Result<String, AwsError> {
        const OP: &str = "elbv2:CreateTargetGroup";
        let out = self
            .0
            .create_target_group()
            .name(new.name)
            .protocol(ProtocolEnum::Tcp)
            .port(new.port)
            .vpc_id(new.vpc_id)
            .target_type(TargetTypeEnum::Ip)
            .health_check_enabled(true)
            .health_check_protocol(ProtocolEnum::Http)
            .health_check_port(new.health_port.to_string())
            .health_check_path(new.health_path)
            .health_check_interval_seconds(10)
            .healthy_threshold_count(2)
            .unhealthy_threshold_count(2)
            .set_tags(Some(elb_tags(new.tags)))
            .send()
            .await
            .op(OP)?;
        required_str(
            out.target_groups()
                .first()
                .and_then(|t| t.target_group_arn()),
            OP,
            "TargetGroupArn",
        )
    }

    pub async fn set_http_health_check(
        &self,
        arn: &str,
        port: i32,
        path: &str,
    ) -> Result<(), AwsError> {
        self.0
            .modify_target_group()
            .target_group_arn(arn)
            .health_check_protocol(ProtocolEnum::Http)
            .health_check_port(port.to_string())
            .health_check_path(path)
            .send()
            .await
            .op("elbv2:ModifyTargetGroup")
            .map(drop)
    }

    pub async fn delete_target_group(&self, arn: &str) -> Result<(), AwsError> {
        self.0
            .delete_target_group()
            .target_group_arn(arn)
            .send()
            .await
            .op("elbv2:DeleteTargetGroup")
            .map(drop)
    }

    pub async fn listeners(&self, load_balancer: &str) -> Result<Vec<Listener>, AwsError> {
        const OP: &str = "elbv2:DescribeListeners";
        let out = self
            .0
            .describe_listeners()
            .load_balancer_arn(load_balancer)
            .send()
            .await
            .op(OP)?;
        out.listeners()
            .iter()
            .map(|l| {
                Ok(Listener {
                    arn: required_str(l.listener_arn(), OP, "ListenerArn")?,
                    port: l.port(),
                    protocol: l.protocol().map(|p| p.as_str().to_owned()),
                    forwards_to: l
                        .default_actions()
                        .iter()
                        .filter(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
                        .filter_map(|a| a.target_group_arn().map(str::to_owned))
                        .collect(),
                })
            })
            .collect()
    }

    /// A TCP listener on `port` forwarding to `target_group`.
    pub async fn create_tcp_listener(
        &self,
        load_balancer: &str,
        port: i32,
        target_group: &str,
        tags: &[(String, String)],
    ) -> Result<(), AwsError> {
        self.0
            .create_listener()
            .load_balancer_arn(load_balancer)
            .protocol(ProtocolEnum::Tcp)
            .port(port)
            .default_actions(forward(target_group))
            .set_tags(Some(elb_tags(tags)))
            .send()
            .await
            .op("elbv2:CreateListener")
            .map(drop)
    }

    pub async fn make_tcp_forward(
        &self,
        listener: &str,
        target_group: &str,
    ) -> Result<(), AwsError> {
        self.0
            .modify_listener()
            .listener_arn(listener)
            .protocol(ProtocolEnum::Tcp)
            .default_actions(forward(target_group))
            .send()
            .await
            .op("elbv2:ModifyListener")
            .map(drop)
    }

    /// Tags of each resource, at most 20 ARNs per call as DescribeTags allows.
    pub async fn tags(&self, arns: &[String]) -> Result<Vec<(String, Tags)>, AwsError> {
        const OP: &str = "elbv2:DescribeTags";
        let mut found = Vec::new();
        for batch in arns.chunks(20) {
            let out = self
                .0
                .describe_tags()
                .set_resource_arns(Some(batch.to_vec()))
                .send()
                .await
                .op(OP)?;
            for d in out.tag_descriptions() {
                let tags = d
                    .tags()
                    .iter()
                    .map(|t| {
                        (
                            t.key().unwrap_or("").to_owned(),
                            t.value().unwrap_or("").to_owned(),
                        )
                    })
                    .collect();
                found.push((required_str(d.resource_arn(), OP, "ResourceArn")?, tags));
            }
        }
        Ok(found)
    }

    pub async fn targets(&self, target_group: &str) -> Result<Vec<Target>, AwsError> {
        let out = self
            .0
            .describe_target_health()
            .target_group_arn(target_group)
            .send()
            .await
            .op("elbv2:DescribeTargetHealth")?;
        Ok(out
            .target_health_descriptions()
            .iter()
            .filter_map(|d| {
                let target = d.target()?;
                Some(Target {
                    id: target.id()?.to_owned(),
                    port: target.port(),
                    health: d
                        .target_health()
                        .and_then(|h| h.state())
                        .map_or("unknown", |st| st.as_str())
                        .to_owned(),
                })
            })
            .collect())
    }

    pub async fn register_targets(
        &self,
        target_group: &str,
        targets: &[(String, i32)],
    ) -> Result<(), AwsError> {
        self.0
            .register_targets()
            .target_group_arn(target_group)
            .set_targets(Some(descriptions(targets)))
            .send()
            .await
            .op("elbv2:RegisterTargets")
            .map(drop)
    }

    pub async fn deregister_targets(
        &self,
        target_group: &str,
        targets: &[(String, i32)],
    ) -> Result<(), AwsError> {
        self.0
            .deregister_targets()
            .target_group_arn(target_group)
            .set_targets(Some(descriptions(targets)))
            .send()
            .await
            .op("elbv2:DeregisterTargets")
            .map(drop)
    }
}

fn descriptions(targets: &[(String, i32)]) -> Vec<TargetDescription> {
    targets
        .iter()
        .map(|(ip, port)| TargetDescription::builder().id(ip).port(*port).build())
        .collect()
}
