//! The VPC, two public subnets (zones a and c), the internet gateway and the public route table.

use aws_sdk_ec2::types::{
    AttributeBooleanValue, ResourceType, RouteTable, Subnet, VpcAttributeName,
};
use ipnet::Ipv4Net;

use super::{deleted_or_absent, ec2_filter, ec2_filters, ec2_tags, ignore_not_found, single};
use crate::aws::AwsResultExt;
use crate::config::Zone;
use crate::plan::{OnResource, Resource, Scope, Step, StepError, StepFuture, recorded};
use crate::progress::Action;
use crate::retry::retry_not_yet;

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

pub struct NetworkStep;

const DEFAULT_ROUTE: &str = "0.0.0.0/0";

impl Step for NetworkStep {
    fn name(&self) -> &'static str {
        "network"
    }

    fn title(&self) -> &'static str {
        "VPC, public subnets, internet gateway, routes"
    }

    fn needs(&self) -> &'static [&'static str] {
        &[]
    }

    fn ensure<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let vpc_id = ensure_vpc(s).await?;
            let subnets = futures::future::try_join_all(
                s.config
                    .zones
                    .iter()
                    .map(|zone| ensure_subnet(s, &vpc_id, zone)),
            );
            let (subnet_ids, igw, route_table) = tokio::try_join!(
                subnets,
                ensure_internet_gateway(s, &vpc_id),
                ensure_route_table(s, &vpc_id),
            )?;
            let route_table_id = route_table.route_table_id().unwrap_or_default().to_owned();
            let routes = ensure_default_route(s, &route_table, &igw);
            let associations = futures::future::try_join_all(
                subnet_ids
                    .iter()
                    .map(|subnet| ensure_association(s, &route_table, subnet)),
            );
            tokio::try_join!(routes, associations)?;
            let _ = s.outputs.network.set(Network {
                vpc_id,
                vpc_cidr: s.config.vpc_cidr,
                subnet_ids,
                internet_gateway_id: igw,
                route_table_id,
            });
            Ok(())
        })
    }

    fn destroy<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let deadline = s.config.timeouts.resources();
            let ec2 = &s.aws.ec2;
            let vpcs = find_vpcs(s, None).await?;
            for vpc in &vpcs {
                sweep_detached_interfaces(s, vpc).await?;
            }
            // Route tables: associations first, then the table.
            let tables = ec2
                .describe_route_tables()
                .set_filters(Some(ec2_filters(&s.stack, None)))
                .send()
                .await
                .op("ec2:DescribeRouteTables")
                .on("route tables")?;
            for table in tables.route_tables() {
                let id = table.route_table_id().unwrap_or_default();
                for assoc in table.associations() {
                    if assoc.main() == Some(true) {
                        continue;
                    }
                    if let Some(assoc_id) = assoc.route_table_association_id() {
                        ignore_not_found(
                            ec2.disassociate_route_table()
                                .association_id(assoc_id)
                                .send()
                                .await
                                .op("ec2:DisassociateRouteTable"),
                        )
                        .on(format!("route table {id}"))?;
                    }
                }
                let gone = retry_not_yet(
                    deadline,
                    |why| s.waiting(why),
                    || async {
                        ignore_not_found(
                            ec2.delete_route_table()
                                .route_table_id(id)
                                .send()
                                .await
                                .op("ec2:DeleteRouteTable"),
                        )
                    },
                )
                .await
                .on(format!("route table {id}"))?;
                s.record(deleted_or_absent(gone), "route table", id);
            }
            // Internet gateways: detach, then delete.
            let gateways = ec2
                .describe_internet_gateways()
                .set_filters(Some(ec2_filters(&s.stack, None)))
                .send()
                .await
                .op("ec2:DescribeInternetGateways")
                .on("internet gateways")?;
            for igw in gateways.internet_gateways() {
                let id = igw.internet_gateway_id().unwrap_or_default();
                for attachment in igw.attachments() {
                    if let Some(vpc) = attachment.vpc_id() {
                        retry_not_yet(
                            deadline,
                            |why| s.waiting(why),
                            || async {
                                ignore_not_found(
                                    ec2.detach_internet_gateway()
                                        .internet_gateway_id(id)
                                        .vpc_id(vpc)
                                        .send()
                                        .await
                                        .op("ec2:DetachInternetGateway"),
                                )
                            },
                        )
                        .await
                        .on(format!("internet gateway {id}"))?;
                    }
                }
                let gone = retry_not_yet(
                    deadline,
                    |why| s.waiting(why),
                    || async {
                        ignore_not_found(
                            ec2.delete_internet_gateway()
                                .internet_gateway_id(id)
                                .send()
                                .await
                                .op("ec2:DeleteInternetGateway"),
                        )
                    },
                )
                .await
                .on(format!("internet gateway {id}"))?;
                s.record(deleted_or_absent(gone), "internet gateway", id);
            }
            // Subnets, then the VPC: both wait out interfaces that are still going away.
            let subnets = find_subnets(s, None).await?;
            for subnet in &subnets {
                let id = subnet.subnet_id().unwrap_or_default();
                let gone = retry_not_yet(
                    deadline,
                    |why| s.waiting(&format!("subnet {id}: {why}")),
                    || async {
                        ignore_not_found(
                            ec2.delete_subnet()
                                .subnet_id(id)
                                .send()
                                .await
                                .op("ec2:DeleteSubnet"),
                        )
                    },
                )
                .await
                .on(format!("subnet {id}"))?;
                s.record(deleted_or_absent(gone), "subnet", id);
            }
            for vpc in &vpcs {
                let gone = retry_not_yet(
                    deadline,
                    |why| s.waiting(&format!("VPC {vpc}: {why}")),
                    || async {
                        ignore_not_found(
                            ec2.delete_vpc()
                                .vpc_id(vpc)
                                .send()
                                .await
                                .op("ec2:DeleteVpc"),
                        )
                    },
                )
                .await
                .on(format!("VPC {vpc}"))?;
                s.record(deleted_or_absent(gone), "VPC", vpc);
            }
            Ok(())
        })
    }

    fn inspect<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, Vec<Resource>> {
        Box::pin(async move {
            let mut found = Vec::new();
            let vpcs = find_vpcs(s, Some("vpc")).await?;
            if vpcs.is_empty() {
                found.push(Resource::missing("VPC", s.stack.display_name("vpc")));
            }
            for vpc in &vpcs {
                found.push(Resource::found(
                    "VPC",
                    s.stack.display_name("vpc"),
                    vpc,
                    "available",
                ));
            }
            let subnets = find_subnets(s, None).await?;
            for zone in &s.config.zones {
                let part = subnet_part(zone);
                let mine: Vec<&Subnet> = subnets
                    .iter()
                    .filter(|sn| has_part(sn.tags(), &part))
                    .collect();
                if mine.is_empty() {
                    found.push(Resource::missing(
                        "subnet",
                        format!("{} ({})", s.stack.display_name(&part), zone.name),
                    ));
                }
                for sn in mine {
                    found.push(Resource::found(
                        "subnet",
                        format!(
                            "{} ({})",
                            s.stack.display_name(&part),
                            sn.availability_zone().unwrap_or_default()
                        ),
                        sn.subnet_id().unwrap_or_default(),
                        sn.cidr_block().unwrap_or_default(),
                    ));
                }
            }
            let gateways = s
                .aws
                .ec2
                .describe_internet_gateways()
                .set_filters(Some(ec2_filters(&s.stack, None)))
                .send()
                .await
                .op("ec2:DescribeInternetGateways")
                .on("internet gateways")?;
            if gateways.internet_gateways().is_empty() {
                found.push(Resource::missing(
                    "internet gateway",
                    s.stack.display_name("igw"),
                ));
            }
            for igw in gateways.internet_gateways() {
                let attached = igw
                    .attachments()
                    .iter()
                    .filter_map(|a| a.vpc_id())
                    .collect::<Vec<_>>()
                    .join(",");
                found.push(Resource::found(
                    "internet gateway",
                    s.stack.display_name("igw"),
                    igw.internet_gateway_id().unwrap_or_default(),
                    if attached.is_empty() {
                        "detached".to_owned()
                    } else {
                        format!("attached to {attached}")
                    },
                ));
            }
            let tables = find_route_tables(s).await?;
            if tables.is_empty() {
                found.push(Resource::missing(
                    "route table",
                    s.stack.display_name("public-routes"),
                ));
            }
            for table in &tables {
                let routes = table
                    .routes()
                    .iter()
                    .filter_map(|r| r.destination_cidr_block())
                    .collect::<Vec<_>>()
                    .join(",");
                found.push(Resource::found(
                    "route table",
                    s.stack.display_name("public-routes"),
                    table.route_table_id().unwrap_or_default(),
                    format!(
                        "routes {routes}; {} subnets",
                        table
                            .associations()
                            .iter()
                            .filter(|a| a.subnet_id().is_some())
                            .count()
                    ),
                ));
            }
            for vpc in &vpcs {
                for eni in network_interfaces(s, vpc).await? {
                    found.push(Resource::observed(
                        "network interface",
                        eni.description().unwrap_or_default().to_owned(),
                        eni.network_interface_id().unwrap_or_default(),
                        eni.status()
                            .map(|st| st.as_str().to_owned())
                            .unwrap_or_default(),
                    ));
                }
            }
            Ok(found)
        })
    }
}

fn subnet_part(zone: &Zone) -> String {
    format!("subnet-{}", zone.letter)
}

fn has_part(tags: &[aws_sdk_ec2::types::Tag], part: &str) -> bool {
    tags.iter()
        .any(|t| t.key() == Some(crate::stack::PART_TAG) && t.value() == Some(part))
}

async fn find_vpcs(s: &Scope<'_>, part: Option<&str>) -> Result<Vec<String>, StepError> {
    let out = s
        .aws
        .ec2
        .describe_vpcs()
        .set_filters(Some(ec2_filters(&s.stack, part.or(Some("vpc")))))
        .send()
        .await
        .op("ec2:DescribeVpcs")
        .on("VPC")?;
    Ok(out
        .vpcs()
        .iter()
        .filter_map(|v| v.vpc_id().map(str::to_owned))
        .collect())
}

async fn find_subnets(s: &Scope<'_>, part: Option<&str>) -> Result<Vec<Subnet>, StepError> {
    let out = s
        .aws
        .ec2
        .describe_subnets()
        .set_filters(Some(ec2_filters(&s.stack, part)))
        .send()
        .await
        .op("ec2:DescribeSubnets")
        .on("subnets")?;
    Ok(out.subnets().to_vec())
}

async fn find_route_tables(s: &Scope<'_>) -> Result<Vec<RouteTable>, StepError> {
    let out = s
        .aws
        .ec2
        .describe_route_tables()
        .set_filters(Some(ec2_filters(&s.stack, Some("public-routes"))))
        .send()
        .await
        .op("ec2:DescribeRouteTables")
        .on("route table")?;
    Ok(out.route_tables().to_vec())
}

async fn ensure_vpc(s: &Scope<'_>) -> Result<String, StepError> {
    let ec2 = &s.aws.ec2;
    let name = s.stack.display_name("vpc");
    let out = ec2
        .describe_vpcs()
        .set_filters(Some(ec2_filters(&s.stack, Some("vpc"))))
        .send()
        .await
        .op("ec2:DescribeVpcs")
        .on(format!("VPC {name}"))?;
    let existing = single(out.vpcs().to_vec(), &format!("VPC {name}"))?;
    let (vpc_id, created) = match existing {
        Some(vpc) => {
            let cidr = vpc.cidr_block().unwrap_or_default();
            if cidr != s.config.vpc_cidr.to_string() {
                return Err(StepError::Failed {
                    resource: format!("VPC {name} ({})", vpc.vpc_id().unwrap_or_default()),
                    reason: format!(
                        "has CIDR {cidr} but the configuration says {}; a VPC's CIDR cannot change: restore the setting or run `provisioner down` first",
                        s.config.vpc_cidr
                    ),
                });
            }
            (vpc.vpc_id().unwrap_or_default().to_owned(), false)
        }
        None => {
            let out = ec2
                .create_vpc()
                .cidr_block(s.config.vpc_cidr.to_string())
                .tag_specifications(ec2_tags(&s.stack, ResourceType::Vpc, "vpc", &[]))
                .send()
                .await
                .op("ec2:CreateVpc")
                .on(format!("VPC {name}"))?;
            let id = out
                .vpc()
                .and_then(|v| v.vpc_id())
                .unwrap_or_default()
                .to_owned();
            (id, true)
        }
    };
    recorded(s, created, "VPC", &vpc_id);
    // EKS needs DNS resolution and hostnames in the VPC; each attribute is its own call.
    for attribute in [
        VpcAttributeName::EnableDnsSupport,
        VpcAttributeName::EnableDnsHostnames,
    ] {
        let current = ec2
            .describe_vpc_attribute()
            .vpc_id(&vpc_id)
            .attribute(attribute.clone())
            .send()
            .await
            .op("ec2:DescribeVpcAttribute")
            .on(format!("VPC {vpc_id}"))?;
        let on = match attribute {
            VpcAttributeName::EnableDnsSupport => {
                current.enable_dns_support().and_then(|v| v.value())
            }
            _ => current.enable_dns_hostnames().and_then(|v| v.value()),
        };
        if on != Some(true) {
            let yes = AttributeBooleanValue::builder().value(true).build();
            let request = ec2.modify_vpc_attribute().vpc_id(&vpc_id);
            let request = match attribute {
                VpcAttributeName::EnableDnsSupport => request.enable_dns_support(yes),
                _ => request.enable_dns_hostnames(yes),
            };
            request
                .send()
                .await
                .op("ec2:ModifyVpcAttribute")
                .on(format!("VPC {vpc_id}"))?;
            if !created {
                s.record(
                    Action::Updated,
                    "VPC attribute",
                    format!("{vpc_id} {}", attribute.as_str()),
                );
            }
        }
    }
    Ok(vpc_id)
}

async fn ensure_subnet(s: &Scope<'_>, vpc_id: &str, zone: &Zone) -> Result<String, StepError> {
    let ec2 = &s.aws.ec2;
    let part = subnet_part(zone);
    let name = s.stack.display_name(&part);
    let existing = single(
        find_subnets(s, Some(&part)).await?,
        &format!("subnet {name}"),
    )?;
    let (subnet, created) = match existing {
        Some(subnet) => {
            if subnet.vpc_id() != Some(vpc_id)
                || subnet.cidr_block() != Some(zone.cidr.to_string().as_str())
                || subnet.availability_zone() != Some(zone.name.as_str())
            {
                return Err(StepError::Failed {
                    resource: format!("subnet {name} ({})", subnet.subnet_id().unwrap_or_default()),
                    reason: format!(
                        "is {} in {} of {}, but the configuration wants {} in {} of {vpc_id}; run `provisioner down` first to change it",
                        subnet.cidr_block().unwrap_or_default(),
                        subnet.availability_zone().unwrap_or_default(),
                        subnet.vpc_id().unwrap_or_default(),
                        zone.cidr,
                        zone.name
                    ),
                });
            }
            (subnet, false)
        }
        None => {
            // Subnet tags for Kubernetes: the cluster may use it, load balancers may go in it.
            let extra = [
                (s.stack.kubernetes_cluster_tag(), "shared".to_owned()),
                ("kubernetes.io/role/elb".to_owned(), "1".to_owned()),
            ];
            let out = ec2
                .create_subnet()
                .vpc_id(vpc_id)
                .cidr_block(zone.cidr.to_string())
                .availability_zone(&zone.name)
                .tag_specifications(ec2_tags(&s.stack, ResourceType::Subnet, &part, &extra))
                .send()
                .await
                .op("ec2:CreateSubnet")
                .on(format!("subnet {name} in {}", zone.name))?;
            (
                out.subnet()
                    .cloned()
                    .unwrap_or_else(|| Subnet::builder().build()),
                true,
            )
        }
    };
    let subnet_id = subnet.subnet_id().unwrap_or_default().to_owned();
    recorded(
        s,
        created,
        "subnet",
        &format!("{subnet_id} ({})", zone.name),
    );
    if subnet.map_public_ip_on_launch() != Some(true) {
        ec2.modify_subnet_attribute()
            .subnet_id(&subnet_id)
            .map_public_ip_on_launch(AttributeBooleanValue::builder().value(true).build())
            .send()
            .await
            .op("ec2:ModifySubnetAttribute")
            .on(format!("subnet {subnet_id}"))?;
    }
    Ok(subnet_id)
}

async fn ensure_internet_gateway(s: &Scope<'_>, vpc_id: &str) -> Result<String, StepError> {
    let ec2 = &s.aws.ec2;
    let out = ec2
        .describe_internet_gateways()
        .set_filters(Some(ec2_filters(&s.stack, Some("igw"))))
        .send()
        .await
        .op("ec2:DescribeInternetGateways")
        .on("internet gateway")?;
    let existing = single(out.internet_gateways().to_vec(), "internet gateway")?;
    let (igw_id, attached, created) = match existing {
        Some(igw) => {
            let attached_to: Vec<&str> = igw
                .attachments()
                .iter()
                .filter_map(|a| a.vpc_id())
                .collect();
            if attached_to.iter().any(|v| *v != vpc_id) {
                return Err(StepError::Failed {
                    resource: format!(
                        "internet gateway {}",
                        igw.internet_gateway_id().unwrap_or_default()
                    ),
                    reason: format!(
                        "is attached to {} instead of {vpc_id}",
                        attached_to.join(",")
                    ),
                });
            }
            (
                igw.internet_gateway_id().unwrap_or_default().to_owned(),
                !attached_to.is_empty(),
                false,
            )
        }
        None => {
            let out = ec2
                .create_internet_gateway()
                .tag_specifications(ec2_tags(
                    &s.stack,
                    ResourceType::InternetGateway,
                    "igw",
                    &[],
                ))
                .send()
                .await
                .op("ec2:CreateInternetGateway")
                .on("internet gateway")?;
            let id = out
                .internet_gateway()
                .and_then(|g| g.internet_gateway_id())
                .unwrap_or_default()
                .to_owned();
            (id, false, true)
        }
    };
    recorded(s, created, "internet gateway", &igw_id);
    if !attached {
        ec2.attach_internet_gateway()
            .internet_gateway_id(&igw_id)
            .vpc_id(vpc_id)
            .send()
            .await
            .op("ec2:AttachInternetGateway")
            .on(format!("internet gateway {igw_id}"))?;
    }
    Ok(igw_id)
}

async fn ensure_route_table(s: &Scope<'_>, vpc_id: &str) -> Result<RouteTable, StepError> {
    let existing = single(find_route_tables(s).await?, "route table")?;
    if let Some(table) = existing {
        if table.vpc_id() != Some(vpc_id) {
            return Err(StepError::Failed {
                resource: format!("route table {}", table.route_table_id().unwrap_or_default()),
                reason: format!(
                    "belongs to {} instead of {vpc_id}",
                    table.vpc_id().unwrap_or_default()
                ),
            });
        }
        recorded(
            s,
            false,
            "route table",
            table.route_table_id().unwrap_or_default(),
        );
        return Ok(table);
    }
    let out = s
        .aws
        .ec2
        .create_route_table()
        .vpc_id(vpc_id)
        .tag_specifications(ec2_tags(
            &s.stack,
            ResourceType::RouteTable,
            "public-routes",
            &[],
        ))
        .send()
        .await
        .op("ec2:CreateRouteTable")
        .on("route table")?;
    let table = out
        .route_table()
        .cloned()
        .unwrap_or_else(|| RouteTable::builder().build());
    recorded(
        s,
        true,
        "route table",
        table.route_table_id().unwrap_or_default(),
    );
    Ok(table)
}

async fn ensure_default_route(
    s: &Scope<'_>,
    table: &RouteTable,
    igw_id: &str,
) -> Result<(), StepError> {
    let table_id = table.route_table_id().unwrap_or_default();
    let current = table
        .routes()
        .iter()
        .find(|r| r.destination_cidr_block() == Some(DEFAULT_ROUTE));
    match current {
        Some(route) if route.gateway_id() == Some(igw_id) => Ok(()),
        Some(_) => {
            s.aws
                .ec2
                .replace_route()
                .route_table_id(table_id)
                .destination_cidr_block(DEFAULT_ROUTE)
                .gateway_id(igw_id)
                .send()
                .await
                .op("ec2:ReplaceRoute")
                .on(format!("route table {table_id}"))?;
            s.record(
                Action::Updated,
                "route",
                format!("{table_id} {DEFAULT_ROUTE} -> {igw_id}"),
            );
            Ok(())
        }
        None => {
            s.aws
                .ec2
                .create_route()
                .route_table_id(table_id)
                .destination_cidr_block(DEFAULT_ROUTE)
                .gateway_id(igw_id)
                .send()
                .await
                .op("ec2:CreateRoute")
                .on(format!("route table {table_id}"))?;
            s.record(
                Action::Created,
                "route",
                format!("{table_id} {DEFAULT_ROUTE} -> {igw_id}"),
            );
            Ok(())
        }
    }
}

async fn ensure_association(
    s: &Scope<'_>,
    table: &RouteTable,
    subnet_id: &str,
) -> Result<(), StepError> {
    let table_id = table.route_table_id().unwrap_or_default();
    if table
        .associations()
        .iter()
        .any(|a| a.subnet_id() == Some(subnet_id))
    {
        return Ok(());
    }
    s.aws
        .ec2
        .associate_route_table()
        .route_table_id(table_id)
        .subnet_id(subnet_id)
        .send()
        .await
        .op("ec2:AssociateRouteTable")
        .on(format!("route table {table_id}"))?;
    s.record(
        Action::Created,
        "route table association",
        format!("{table_id} <-> {subnet_id}"),
    );
    Ok(())
}

async fn network_interfaces(
    s: &Scope<'_>,
    vpc_id: &str,
) -> Result<Vec<aws_sdk_ec2::types::NetworkInterface>, StepError> {
    let out = s
        .aws
        .ec2
        .describe_network_interfaces()
        .filters(ec2_filter("vpc-id", vpc_id))
        .send()
        .await
        .op("ec2:DescribeNetworkInterfaces")
        .on(format!("network interfaces of {vpc_id}"))?;
    Ok(out.network_interfaces().to_vec())
}

/// Interfaces left behind in the VPC once their instances are gone (the VPC CNI's are the usual
/// ones): detached, they still block deleting the subnets.
async fn sweep_detached_interfaces(s: &Scope<'_>, vpc_id: &str) -> Result<(), StepError> {
    for eni in network_interfaces(s, vpc_id).await? {
        let available = eni.status().is_some_and(|st| st.as_str() == "available");
        let Some(id) = eni.network_interface_id() else {
            continue;
        };
        if !available {
            continue;
        }
        let deleted = ignore_not_found(
            s.aws
                .ec2
                .delete_network_interface()
                .network_interface_id(id)
                .send()
                .await
                .op("ec2:DeleteNetworkInterface"),
        )
        .on(format!("network interface {id}"))?;
        s.record(deleted_or_absent(deleted), "network interface", id);
    }
    Ok(())
}
