//! The network: VPC, subnets, internet gateway, route tables, network interfaces.

use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, VpcAttributeName};

use super::{Ec2, filter, owned_by, tag_spec, tags};
use crate::aws::{AwsError, SdkResultExt, Tags, required, required_str};
use crate::stack::Stack;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vpc {
    pub id: String,
    pub cidr: String,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    pub id: String,
    pub vpc_id: String,
    pub cidr: String,
    pub zone: String,
    pub public_ip_on_launch: bool,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternetGateway {
    pub id: String,
    pub attached_to: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub destination: Option<String>,
    pub gateway: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    pub id: String,
    pub subnet_id: Option<String>,
    /// The VPC's main association, which cannot be removed.
    pub main: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    pub id: String,
    pub vpc_id: String,
    pub routes: Vec<Route>,
    pub associations: Vec<Association>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInterface {
    pub id: String,
    pub description: String,
    pub status: String,
}

/// The two DNS attributes EKS needs on the VPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsAttribute {
    Support,
    Hostnames,
}

impl DnsAttribute {
    pub fn as_str(self) -> &'static str {
        match self {
            DnsAttribute::Support => "enableDnsSupport",
            DnsAttribute::Hostnames => "enableDnsHostnames",
        }
    }
}

fn subnet(s: &aws_sdk_ec2::types::Subnet, op: &'static str) -> Result<Subnet, AwsError> {
    Ok(Subnet {
        id: required_str(s.subnet_id(), op, "SubnetId")?,
        vpc_id: s.vpc_id().unwrap_or("").to_owned(),
        cidr: s.cidr_block().unwrap_or("").to_owned(),
        zone: s.availability_zone().unwrap_or("").to_owned(),
        public_ip_on_launch: s.map_public_ip_on_launch() == Some(true),
        tags: tags(s.tags()),
    })
}

fn route_table(
    t: &aws_sdk_ec2::types::RouteTable,
    op: &'static str,
) -> Result<RouteTable, AwsError> {
    Ok(RouteTable {
        id: required_str(t.route_table_id(), op, "RouteTableId")?,
        vpc_id: t.vpc_id().unwrap_or("").to_owned(),
        routes: t
            .routes()
            .iter()
            .map(|r| Route {
                destination: r.destination_cidr_block().map(str::to_owned),
                gateway: r.gateway_id().map(str::to_owned),
            })
            .collect(),
        associations: t
            .associations()
            .iter()
            .filter_map(|a| {
                Some(Association {
                    id: a.route_table_association_id()?.to_owned(),
                    subnet_id: a.subnet_id().map(str::to_owned),
                    main: a.main() == Some(true),
                })
            })
            .collect(),
    })
}

impl Ec2<'_> {
    pub async fn vpcs(&self, stack: &Stack, part: Option<&str>) -> Result<Vec<Vpc>, AwsError> {
        const OP: &str = "ec2:DescribeVpcs";
        let out = self
            .0
            .describe_vpcs()
            .set_filters(Some(owned_by(stack, part)))
            .send()
            .await
            .op(OP)?;
        out.vpcs()
            .iter()
            .map(|v| {
                Ok(Vpc {
                    id: required_str(v.vpc_id(), OP, "VpcId")?,
                    cidr: v.cidr_block().unwrap_or("").to_owned(),
                    tags: tags(v.tags()),
                })
            })
            .collect()
    }

    pub async fn create_vpc(
        &self,
        cidr: &str,
        tags: &[(String, String)],
    ) -> Result<String, AwsError> {
        const OP: &str = "ec2:CreateVpc";
        let out = self
            .0
            .create_vpc()
            .cidr_block(cidr)
            .tag_specifications(tag_spec(ResourceType::Vpc, tags))
            .send()
            .await
            .op(OP)?;
        required_str(out.vpc().and_then(|v| v.vpc_id()), OP, "VpcId")
    }

    pub async fn dns_attribute(
        &self,
        vpc: &str,
        attribute: DnsAttribute,
    ) -> Result<bool, AwsError> {
        let name = match attribute {
            DnsAttribute::Support => VpcAttributeName::EnableDnsSupport,
            DnsAttribute::Hostnames => VpcAttributeName::EnableDnsHostnames,
        };
        let out = self
            .0
            .describe_vpc_attribute()
            .vpc_id(vpc)
            .attribute(name)
            .send()
            .await
            .op("ec2:DescribeVpcAttribute")?;
        let value = match attribute {
            DnsAttribute::Support => out.enable_dns_support().and_then(|v| v.value()),
            DnsAttribute::Hostnames => out.enable_dns_hostnames().and_then(|v| v.value()),
        };
        Ok(value == Some(true))
    }

    pub async fn enable_dns_attribute(
        &self,
        vpc: &str,
        attribute: DnsAttribute,
    ) -> Result<(), AwsError> {
        let yes = AttributeBooleanValue::builder().value(true).build();
        let request = self.0.modify_vpc_attribute().vpc_id(vpc);
        let request = match attribute {
            DnsAttribute::Support => request.enable_dns_support(yes),
            DnsAttribute::Hostnames => request.enable_dns_hostnames(yes),
        };
        request.send().await.op("ec2:ModifyVpcAttribute").map(drop)
    }

    pub async fn delete_vpc(&self, id: &str) -> Result<(), AwsError> {
        self.0
            .delete_vpc()
            .vpc_id(id)
            .send()
            .await
            .op("ec2:DeleteVpc")
            .map(drop)
    }

    pub async fn subnets(
        &self,
        stack: &Stack,
        part: Option<&str>,
    ) -> Result<Vec<Subnet>, AwsError> {
        const OP: &str = "ec2:DescribeSubnets";
        let out = self
            .0
            .describe_subnets()
            .set_filters(Some(owned_by(stack, part)))
            .send()
            .await
            .op(OP)?;
        out.subnets().iter().map(|s| subnet(s, OP)).collect()
    }

    pub async fn create_subnet(
        &self,
        vpc: &str,
        cidr: &str,
        zone: &str,
        tags: &[(String, String)],
    ) -> Result<Subnet, AwsError> {
        const OP: &str = "ec2:CreateSubnet";
        let out = self
            .0
            .create_subnet()
            .vpc_id(vpc)
            .cidr_block(cidr)
            .availability_zone(zone)
            .tag_specifications(tag_spec(ResourceType::Subnet, tags))
            .send()
            .await
            .op(OP)?;
        subnet(required(out.subnet(), OP, "Subnet")?, OP)
    }

    pub async fn map_public_ip_on_launch(&self, subnet: &str) -> Result<(), AwsError> {
        self.0
            .modify_subnet_attribute()
            .subnet_id(subnet)
            .map_public_ip_on_launch(AttributeBooleanValue::builder().value(true).build())
            .send()
            .await
            .op("ec2:ModifySubnetAttribute")
            .map(drop)
    }

    pub async fn delete_subnet(&self, id: &str) -> Result<(), AwsError> {
        self.0
            .delete_subnet()
            .subnet_id(id)
            .send()
            .await
            .op("ec2:DeleteSubnet")
            .map(drop)
    }

    pub async fn internet_gateways(
        &self,
        stack: &Stack,
        part: Option<&str>,
    ) -> Result<Vec<InternetGateway>, AwsError> {
        const OP: &str = "ec2:DescribeInternetGateways";
        let out = self
            .0
            .describe_internet_gateways()
            .set_filters(Some(owned_by(stack, part)))
            .send()
            .await
            .op(OP)?;
        out.internet_gateways()
            .iter()
            .map(|g| {
                Ok(InternetGateway {
                    id: required_str(g.internet_gateway_id(), OP, "InternetGatewayId")?,
                    attached_to: g
                        .attachments()
                        .iter()
                        .filter_map(|a| a.vpc_id().map(str::to_owned))
                        .collect(),
                })
            })
            .collect()
    }

    pub async fn create_internet_gateway(
        &self,
        tags: &[(String, String)],
    ) -> Result<String, AwsError> {
        const OP: &str = "ec2:CreateInternetGateway";
        let out = self
            .0
            .create_internet_gateway()
            .tag_specifications(tag_spec(ResourceType::InternetGateway, tags))
            .send()
            .await
            .op(OP)?;
        required_str(
            out.internet_gateway().and_then(|g| g.internet_gateway_id()),
            OP,
            "InternetGatewayId",
        )
    }

    pub async fn attach_internet_gateway(&self, id: &str, vpc: &str) -> Result<(), AwsError> {
        self.0
            .attach_internet_gateway()
            .internet_gateway_id(id)
            .vpc_id(vpc)
            .send()
            .await
            .op("ec2:AttachInternetGateway")
            .map(drop)
    }

    pub async fn detach_internet_gateway(&self, id: &str, vpc: &str) -> Result<(), AwsError> {
        self.0
            .detach_internet_gateway()
            .internet_gateway_id(id)
            .vpc_id(vpc)
            .send()
            .await
            .op("ec2:DetachInternetGateway")
            .map(drop)
    }

    pub async fn delete_internet_gateway(&self, id: &str) -> Result<(), AwsError> {
        self.0
            .delete_internet_gateway()
            .internet_gateway_id(id)
            .send()
            .await
            .op("ec2:DeleteInternetGateway")
            .map(drop)
    }

    pub async fn route_tables(
        &self,
        stack: &Stack,
        part: Option<&str>,
    ) -> Result<Vec<RouteTable>, AwsError> {
        const OP: &str = "ec2:DescribeRouteTables";
        let out = self
            .0
            .describe_route_tables()
            .set_filters(Some(owned_by(stack, part)))
            .send()
            .await
            .op(OP)?;
        out.route_tables()
            .iter()
            .map(|t| route_table(t, OP))
            .collect()
    }

    pub async fn create_route_table(
        &self,
        vpc: &str,
        tags: &[(String, String)],
    ) -> Result<RouteTable, AwsError> {
        const OP: &str = "ec2:CreateRouteTable";
        let out = self
            .0
            .create_route_table()
            .vpc_id(vpc)
            .tag_specifications(tag_spec(ResourceType::RouteTable, tags))
            .send()
            .await
            .op(OP)?;
        route_table(required(out.route_table(), OP, "RouteTable")?, OP)
    }

    /// Adds the route, or points an existing one for the same destination at `gateway`.
    pub async fn put_route(
        &self,
        table: &str,
        destination: &str,
        gateway: &str,
        replace: bool,
    ) -> Result<(), AwsError> {
        if replace {
            self.0
                .replace_route()
                .route_table_id(table)
                .destination_cidr_block(destination)
                .gateway_id(gateway)
                .send()
                .await
                .op("ec2:ReplaceRoute")
                .map(drop)
        } else {
            self.0
                .create_route()
                .route_table_id(table)
                .destination_cidr_block(destination)
                .gateway_id(gateway)
                .send()
                .await
                .op("ec2:CreateRoute")
                .map(drop)
        }
    }

    pub async fn associate_route_table(&self, table: &str, subnet: &str) -> Result<(), AwsError> {
        self.0
            .associate_route_table()
            .route_table_id(table)
            .subnet_id(subnet)
            .send()
            .await
            .op("ec2:AssociateRouteTable")
            .map(drop)
    }

    pub async fn disassociate_route_table(&self, association: &str) -> Result<(), AwsError> {
        self.0
            .disassociate_route_table()
            .association_id(association)
            .send()
            .await
            .op("ec2:DisassociateRouteTable")
            .map(drop)
    }

    pub async fn delete_route_table(&self, id: &str) -> Result<(), AwsError> {
        self.0
            .delete_route_table()
            .route_table_id(id)
            .send()
            .await
            .op("ec2:DeleteRouteTable")
            .map(drop)
    }

    pub async fn network_interfaces(&self, vpc: &str) -> Result<Vec<NetworkInterface>, AwsError> {
        const OP: &str = "ec2:DescribeNetworkInterfaces";
        let out = self
            .0
            .describe_network_interfaces()
            .filters(filter("vpc-id", vpc))
            .send()
            .await
            .op(OP)?;
        out.network_interfaces()
            .iter()
            .map(|e| {
                Ok(NetworkInterface {
                    id: required_str(e.network_interface_id(), OP, "NetworkInterfaceId")?,
                    description: e.description().unwrap_or("").to_owned(),
                    status: e
                        .status()
                        .map(|st| st.as_str().to_owned())
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    pub async fn delete_network_interface(&self, id: &str) -> Result<(), AwsError> {
        self.0
            .delete_network_interface()
            .network_interface_id(id)
            .send()
            .await
            .op("ec2:DeleteNetworkInterface")
            .map(drop)
    }
}
