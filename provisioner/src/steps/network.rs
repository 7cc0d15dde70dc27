//! The VPC, two public subnets (zones a and c), the internet gateway and the public route table.

use std::future::Future;

use ipnet::Ipv4Net;

use super::{Removal, single};
use crate::aws::AwsError;
use crate::aws::ec2::{DnsAttribute, RouteTable, Subnet};
use crate::config::Zone;
use crate::plan::{OnResource, Output, Resource, Scope, Step, StepError, StepFuture, StepId};
use crate::progress::Action;
use crate::retry::{Fresh, Poll, WaitError, not_yet, retry_until_visible, wait_for};
use crate::stack::PART_TAG;

pub const ID: StepId = StepId::new("network");

/// What the network step produces.
#[derive(Debug, Clone)]
pub struct Network {
    pub vpc_id: String,
    pub vpc_cidr: Ipv4Net,
    /// In zone order (a, c).
    pub subnet_ids: Vec<String>,
    pub internet_gateway_id: String,
    pub route_table_id: String,
}

impl Output for Network {
    const STEP: StepId = ID;
}

pub struct NetworkStep;

const DEFAULT_ROUTE: &str = "0.0.0.0/0";
const VPC: &str = "vpc";
const GATEWAY: &str = "igw";
const ROUTES: &str = "public-routes";

impl Step for NetworkStep {
    fn id(&self) -> StepId {
        ID
    }

    fn title(&self) -> &'static str {
        "VPC, public subnets, internet gateway, routes"
    }

    fn needs(&self) -> &[StepId] {
        &[]
    }

    fn ensure<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            // Every id is `Fresh` (created or listed just now): EC2 may not know it everywhere yet.
            let vpc = ensure_vpc(s).await?;
            let subnets = futures::future::try_join_all(
                s.config
                    .zones
                    .iter()
                    .map(|zone| ensure_subnet(s, &vpc.id, zone)),
            );
            let (subnets, igw, (route_table, table)) = tokio::try_join!(
                subnets,
                ensure_internet_gateway(s, &vpc),
                ensure_route_table(s, &vpc.id),
            )?;
            let routes = ensure_default_route(s, &route_table, &table, &igw);
            let associations = futures::future::try_join_all(
                subnets
                    .iter()
                    .map(|subnet| ensure_association(s, &route_table, &table, subnet)),
            );
            tokio::try_join!(routes, associations)?;
            s.outputs.put(Network {
                vpc_id: vpc.id,
                vpc_cidr: s.config.vpc_cidr,
                subnet_ids: subnets.into_iter().map(|subnet| subnet.id).collect(),
                internet_gateway_id: igw.id,
                route_table_id: route_table.id,
            });
            Ok(())
        })
    }

    fn destroy<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let ec2 = s.aws.ec2();
            let vpcs = ec2.vpcs(&s.stack, Some(VPC)).await.on("VPC")?;
            // Route tables: associations first, then the table.
            let tables = ec2.route_tables(&s.stack, None).await.on("route tables")?;
            for table in &tables {
                for assoc in table.associations.iter().filter(|a| !a.main) {
                    Removal::new(s, "route table", &table.id)
                        .release(|| ec2.disassociate_route_table(&assoc.id))
                        .await?;
                }
                Removal::new(s, "route table", &table.id)
                    .delete(|| ec2.delete_route_table(&table.id))
                    .await?;
            }
            // Internet gateways: detach, then delete.
            let gateways = ec2
                .internet_gateways(&s.stack, None)
                .await
                .on("internet gateways")?;
            for igw in &gateways {
                for vpc in &igw.attached_to {
                    Removal::new(s, "internet gateway", &igw.id)
                        .release(|| ec2.detach_internet_gateway(&igw.id, vpc))
                        .await?;
                }
                Removal::new(s, "internet gateway", &igw.id)
                    .delete(|| ec2.delete_internet_gateway(&igw.id))
                    .await?;
            }
            // Subnets, then the VPC, each after the interfaces detached by then (and again while
            // AWS says others are still in it).
            for subnet in ec2.subnets(&s.stack, None).await.on("subnets")? {
                delete_sweeping(s, "subnet", &subnet.id, &subnet.vpc_id, || {
                    ec2.delete_subnet(&subnet.id)
                })
                .await?;
            }
            for vpc in &vpcs {
                delete_sweeping(s, "VPC", &vpc.id, &vpc.id, || ec2.delete_vpc(&vpc.id)).await?;
            }
            Ok(())
        })
    }

    fn inspect<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, Vec<Resource>> {
        Box::pin(async move {
            let ec2 = s.aws.ec2();
            let mut found = Vec::new();
            let vpcs = ec2.vpcs(&s.stack, Some(VPC)).await.on("VPC")?;
            let vpc_name = s.stack.display_name(VPC);
            if vpcs.is_empty() {
                found.push(Resource::missing("VPC", &vpc_name));
            }
            for vpc in &vpcs {
                found.push(Resource::found("VPC", &vpc_name, &vpc.id, "available"));
            }
            let subnets = ec2.subnets(&s.stack, None).await.on("subnets")?;
            for zone in &s.config.zones {
                let part = subnet_part(zone);
                let name = s.stack.display_name(&part);
                let mine: Vec<&Subnet> = subnets.iter().filter(|sn| has_part(sn, &part)).collect();
                if mine.is_empty() {
                    found.push(Resource::missing(
                        "subnet",
                        format!("{name} ({})", zone.name),
                    ));
                }
                for sn in mine {
                    let label = format!("{name} ({})", sn.zone);
                    found.push(Resource::found("subnet", label, &sn.id, &sn.cidr));
                }
            }
            let gateways = ec2
                .internet_gateways(&s.stack, None)
                .await
                .on("internet gateways")?;
            let igw_name = s.stack.display_name(GATEWAY);
            if gateways.is_empty() {
                found.push(Resource::missing("internet gateway", &igw_name));
            }
            for igw in &gateways {
                let state = if igw.attached_to.is_empty() {
                    "detached".to_owned()
                } else {
                    format!("attached to {}", igw.attached_to.join(","))
                };
                found.push(Resource::found(
                    "internet gateway",
                    &igw_name,
                    &igw.id,
                    state,
                ));
            }
            let tables = ec2
                .route_tables(&s.stack, Some(ROUTES))
                .await
                .on("route table")?;
            let table_name = s.stack.display_name(ROUTES);
            if tables.is_empty() {
                found.push(Resource::missing("route table", &table_name));
            }
            for table in &tables {
                let routes: Vec<&str> = table
                    .routes
                    .iter()
                    .filter_map(|r| r.destination.as_deref())
                    .collect();
                let subnets = table
                    .associations
                    .iter()
                    .filter(|a| a.subnet_id.is_some())
                    .count();
                let state = format!("routes {}; {subnets} subnets", routes.join(","));
                found.push(Resource::found(
                    "route table",
                    &table_name,
                    &table.id,
                    state,
                ));
            }
            for vpc in &vpcs {
                let interfaces = ec2
                    .network_interfaces(&vpc.id)
                    .await
                    .on(format!("network interfaces of {}", vpc.id))?;
                for eni in interfaces {
                    found.push(
                        Resource::found("network interface", eni.description, eni.id, eni.status)
                            .observed(),
                    );
                }
            }
            Ok(found)
        })
    }
}

fn subnet_part(zone: &Zone) -> String {
    format!("subnet-{}", zone.letter)
}

fn has_part(subnet: &Subnet, part: &str) -> bool {
    subnet.tags.iter().any(|(k, v)| k == PART_TAG && v == part)
}

async fn ensure_vpc(s: &Scope<'_>) -> Result<Fresh, StepError> {
    let ec2 = s.aws.ec2();
    let resource = format!("VPC {}", s.stack.display_name(VPC));
    let existing = single(
        ec2.vpcs(&s.stack, Some(VPC)).await.on(&resource)?,
        &resource,
    )?;
    let wanted = s.config.vpc_cidr.to_string();
    let (vpc_id, created) = match existing {
        Some(vpc) if vpc.cidr != wanted => {
            return Err(StepError::conflict(
                format!("{resource} ({})", vpc.id),
                format!(
                    "has CIDR {} but the configuration says {wanted}; a VPC's CIDR cannot change: restore the setting or run `provisioner down` first",
                    vpc.cidr
                ),
            ));
        }
        Some(vpc) => (vpc.id, false),
        None => {
            let tags = s.stack.tags(VPC);
            (ec2.create_vpc(&wanted, &tags).await.on(&resource)?, true)
        }
    };
    s.kept_or_created(created, "VPC", &vpc_id);
    let vpc = Fresh::learned(vpc_id.clone(), created);
    let pace = s.config.timeouts.resources();
    // EKS needs DNS resolution and hostnames in the VPC; each attribute is its own call.
    for attribute in [DnsAttribute::Support, DnsAttribute::Hostnames] {
        let resource = format!("VPC {vpc_id}");
        let enabled = retry_until_visible(
            pace,
            &[&vpc],
            |why| s.waiting(why),
            || ec2.dns_attribute(&vpc_id, attribute),
        )
        .await
        .on(&resource)?;
        if !enabled {
            retry_until_visible(
                pace,
                &[&vpc],
                |why| s.waiting(why),
                || ec2.enable_dns_attribute(&vpc_id, attribute),
            )
            .await
            .on(&resource)?;
            if !created {
                let id = format!("{vpc_id} {}", attribute.as_str());
                s.record(Action::Updated, "VPC attribute", id);
            }
        }
    }
    Ok(vpc)
}

async fn ensure_subnet(s: &Scope<'_>, vpc_id: &str, zone: &Zone) -> Result<Fresh, StepError> {
    let ec2 = s.aws.ec2();
    let part = subnet_part(zone);
    let name = s.stack.display_name(&part);
    let resource = format!("subnet {name}");
    let existing = single(
        ec2.subnets(&s.stack, Some(&part)).await.on("subnets")?,
        &resource,
    )?;
    let cidr = zone.cidr.to_string();
    let (subnet, created) = match existing {
        Some(subnet)
            if subnet.vpc_id != vpc_id || subnet.cidr != cidr || subnet.zone != zone.name =>
        {
            return Err(StepError::conflict(
                format!("{resource} ({})", subnet.id),
                format!(
                    "is {} in {} of {}, but the configuration wants {cidr} in {} of {vpc_id}; run `provisioner down` first to change it",
                    subnet.cidr, subnet.zone, subnet.vpc_id, zone.name
                ),
            ));
        }
        Some(subnet) => (subnet, false),
        None => {
            // Subnet tags for Kubernetes: the cluster may use it, load balancers may go in it.
            let mut tags = s.stack.tags(&part);
            tags.push((s.stack.kubernetes_cluster_tag(), "shared".to_owned()));
            tags.push(("kubernetes.io/role/elb".to_owned(), "1".to_owned()));
            let subnet = ec2
                .create_subnet(vpc_id, &cidr, &zone.name, &tags)
                .await
                .on(format!("{resource} in {}", zone.name))?;
            (subnet, true)
        }
    };
    s.kept_or_created(created, "subnet", &format!("{} ({})", subnet.id, zone.name));
    let fresh = Fresh::learned(subnet.id.clone(), created);
    if !subnet.public_ip_on_launch {
        retry_until_visible(
            s.config.timeouts.resources(),
            &[&fresh],
            |why| s.waiting(why),
            || ec2.map_public_ip_on_launch(&subnet.id),
        )
        .await
        .on(format!("subnet {}", subnet.id))?;
    }
    Ok(fresh)
}

async fn ensure_internet_gateway(s: &Scope<'_>, vpc: &Fresh) -> Result<Fresh, StepError> {
    let ec2 = s.aws.ec2();
    let vpc_id = vpc.id.as_str();
    let existing = single(
        ec2.internet_gateways(&s.stack, Some(GATEWAY))
            .await
            .on("internet gateway")?,
        "internet gateway",
    )?;
    let (igw_id, attached, created) = match existing {
        Some(igw) if igw.attached_to.iter().any(|v| v != vpc_id) => {
            return Err(StepError::conflict(
                format!("internet gateway {}", igw.id),
                format!(
                    "is attached to {} instead of {vpc_id}",
                    igw.attached_to.join(",")
                ),
            ));
        }
        Some(igw) => (igw.id, !igw.attached_to.is_empty(), false),
        None => {
            let tags = s.stack.tags(GATEWAY);
            let id = ec2
                .create_internet_gateway(&tags)
                .await
                .on("internet gateway")?;
            (id, false, true)
        }
    };
    s.kept_or_created(created, "internet gateway", &igw_id);
    let igw = Fresh::learned(igw_id.clone(), created);
    if !attached {
        retry_until_visible(
            s.config.timeouts.resources(),
            &[&igw, vpc],
            |why| s.waiting(why),
            || ec2.attach_internet_gateway(&igw_id, vpc_id),
        )
        .await
        .on(format!("internet gateway {igw_id}"))?;
    }
    Ok(igw)
}

async fn ensure_route_table(s: &Scope<'_>, vpc_id: &str) -> Result<(RouteTable, Fresh), StepError> {
    let ec2 = s.aws.ec2();
    let existing = single(
        ec2.route_tables(&s.stack, Some(ROUTES))
            .await
            .on("route table")?,
        "route table",
    )?;
    let (table, created) = match existing {
        Some(table) if table.vpc_id != vpc_id => {
            return Err(StepError::conflict(
                format!("route table {}", table.id),
                format!("belongs to {} instead of {vpc_id}", table.vpc_id),
            ));
        }
        Some(table) => (table, false),
        None => {
            let tags = s.stack.tags(ROUTES);
            let table = ec2
                .create_route_table(vpc_id, &tags)
                .await
                .on("route table")?;
            (table, true)
        }
    };
    s.kept_or_created(created, "route table", &table.id);
    let fresh = Fresh::learned(table.id.clone(), created);
    Ok((table, fresh))
}

async fn ensure_default_route(
    s: &Scope<'_>,
    table: &RouteTable,
    fresh_table: &Fresh,
    igw: &Fresh,
) -> Result<(), StepError> {
    let igw_id = igw.id.as_str();
    let current = table
        .routes
        .iter()
        .find(|r| r.destination.as_deref() == Some(DEFAULT_ROUTE));
    let action = match current {
        Some(route) if route.gateway.as_deref() == Some(igw_id) => return Ok(()),
        Some(_) => Action::Updated,
        None => Action::Created,
    };
    let ec2 = s.aws.ec2();
    retry_until_visible(
        s.config.timeouts.resources(),
        &[fresh_table, igw],
        |why| s.waiting(why),
        || ec2.put_route(&table.id, DEFAULT_ROUTE, igw_id, action == Action::Updated),
    )
    .await
    .on(format!("route table {}", table.id))?;
    s.record(
        action,
        "route",
        format!("{} {DEFAULT_ROUTE} -> {igw_id}", table.id),
    );
    Ok(())
}

async fn ensure_association(
    s: &Scope<'_>,
    table: &RouteTable,
    fresh_table: &Fresh,
    subnet: &Fresh,
) -> Result<(), StepError> {
    let subnet_id = subnet.id.as_str();
    if table
        .associations
        .iter()
        .any(|a| a.subnet_id.as_deref() == Some(subnet_id))
    {
        return Ok(());
    }
    let ec2 = s.aws.ec2();
    retry_until_visible(
        s.config.timeouts.resources(),
        &[fresh_table, subnet],
        |why| s.waiting(why),
        || ec2.associate_route_table(&table.id, subnet_id),
    )
    .await
    .on(format!("route table {}", table.id))?;
    s.record(
        Action::Created,
        "route table association",
        format!("{} <-> {subnet_id}", table.id),
    );
    Ok(())
}

/// The status of an interface attached to nothing (EC2 `NetworkInterfaceStatus`); an attached
/// one (`in-use`) belongs to an instance or a load balancer and is never touched.
const DETACHED: &str = "available";

/// Deletes, once each, the interfaces in the VPC that are attached to nothing: left behind once
/// their instances or load balancers are gone (the VPC CNI's are the usual ones), they still
/// block deleting the subnets and the VPC. Answers what could not be deleted (for the progress
/// line and a timeout's "last seen") rather than failing, since the deletion this pass serves is
/// retried anyway.
async fn sweep_detached_interfaces(s: &Scope<'_>, vpc_id: &str) -> Result<Vec<String>, StepError> {
    let ec2 = s.aws.ec2();
    let interfaces = ec2
        .network_interfaces(vpc_id)
        .await
        .on(format!("network interfaces of {vpc_id}"))?;
    let mut failed = Vec::new();
    for eni in interfaces.iter().filter(|e| e.status == DETACHED) {
        match ec2.delete_network_interface(&eni.id).await {
            Ok(()) => s.record(Action::Deleted, "network interface", &eni.id),
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                tracing::debug!(interface = %eni.id, error = %e, "detached interface not deleted");
                failed.push(format!("network interface {}: {e}", eni.id));
            }
        }
    }
    Ok(failed)
}

/// Deletes a subnet or the VPC after sweeping the detached interfaces of its VPC, and while AWS
/// answers "not yet" (DependencyViolation: interfaces still in it) sweeps again and retries,
/// until the resources' deadline. The VPC CNI and load balancers release their interfaces
/// minutes after their owners are gone, so one sweep at the start of the step is not enough:
/// `down` would wait out its deadline on an interface detached after it.
async fn delete_sweeping<F, Fut>(
    s: &Scope<'_>,
    kind: &'static str,
    id: &str,
    vpc_id: &str,
    delete: F,
) -> Result<(), StepError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), AwsError>>,
{
    let deleted = wait_for(
        s.config.timeouts.resources(),
        |state| s.waiting(state),
        || async {
            let failed = sweep_detached_interfaces(s, vpc_id).await?;
            match delete().await {
                Ok(()) => Ok(Poll::Ready(true)),
                Err(e) if e.is_not_found() => Ok(Poll::Ready(false)),
                Err(e) => {
                    let Some(reason) = not_yet(&e) else {
                        return Err(e).on(format!("{kind} {id}"));
                    };
                    let mut state = format!("{kind} {id}: {reason}");
                    for why in failed {
                        state.push_str("; ");
                        state.push_str(&why);
                    }
                    Ok(Poll::Pending(state))
                }
            }
        },
    )
    .await
    .map_err(|e| match e {
        WaitError::Failed(inner) => inner,
        WaitError::Timeout { after, last } => StepError::Timeout {
            resource: format!("{kind} {id}"),
            what: "it to be deleted".into(),
            after,
            last,
        },
    })?;
    let action = if deleted {
        Action::Deleted
    } else {
        Action::Absent
    };
    s.record(action, kind, id);
    Ok(())
}
