//! The lab's network on EC2: VPC, subnet, internet gateway, route table and security
//! groups, created tagged (TagSpecifications, so nothing exists untagged even for an
//! instant), found again by their lab and role tags, probed and deleted. No retries or
//! waits here: the orchestration owns them.

use aws_sdk_ec2::error::SdkError;
use aws_sdk_ec2::operation::describe_instance_type_offerings::DescribeInstanceTypeOfferingsError;
use aws_sdk_ec2::types::{AttributeBooleanValue, Filter, IpPermission, IpRange, Ipv6Range, LocationType, ResourceType};
use aws_sdk_ec2::Client;

use super::error::cloud_error;
use super::{ec2_tag_filters, ec2_tag_spec, referenced};
use crate::cloud::{CloudError, ResourceStatus};
use crate::model::lab::{Refs, ResourceConfig, ResourceKind, ResourceSpec, Rule};

fn permission(rule: &Rule) -> IpPermission {
    let mut p = IpPermission::builder().ip_protocol(&rule.protocol);
    if rule.protocol != "-1" {
        p = p.from_port(rule.from_port).to_port(rule.to_port);
    }
    if rule.cidr.contains(':') {
        p = p.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(&rule.cidr).build());
    } else {
        p = p.ip_ranges(IpRange::builder().cidr_ip(&rule.cidr).build());
    }
    p.build()
}

/// Creates one network resource; its id.
pub async fn create(ec2: &Client, spec: &ResourceSpec, refs: &Refs) -> Result<String, CloudError> {
    macro_rules! err {
        () => {
            |e| cloud_error(spec.kind, &spec.name, e)
        };
    }
    match &spec.config {
        ResourceConfig::Vpc { cidr } => {
            let out = ec2
                .create_vpc()
                .cidr_block(cidr)
                .tag_specifications(ec2_tag_spec(ResourceType::Vpc, &spec.tags, &spec.name))
                .send()
                .await
                .map_err(err!())?;
            Ok(out.vpc().and_then(|v| v.vpc_id()).unwrap_or_default().to_string())
        }
        ResourceConfig::Subnet { vpc, cidr, zone_offers, .. } => {
            let zone = match zone_offers {
                Some(instance_type) => Some(zone_offering(ec2, instance_type).await.map_err(err!())?.ok_or_else(|| {
                    CloudError::Invalid(format!(
                        "no Availability Zone of this region offers instance type {instance_type}: choose another type with \
                         --instance-type, or another region with --region"
                    ))
                })?),
                None => None,
            };
            let out = ec2
                .create_subnet()
                .vpc_id(referenced(refs, *vpc)?)
                .cidr_block(cidr)
                .set_availability_zone(zone)
                .tag_specifications(ec2_tag_spec(ResourceType::Subnet, &spec.tags, &spec.name))
                .send()
                .await
                .map_err(err!())?;
            Ok(out.subnet().and_then(|s| s.subnet_id()).unwrap_or_default().to_string())
        }
        ResourceConfig::InternetGateway { .. } => {
            let out = ec2
                .create_internet_gateway()
                .tag_specifications(ec2_tag_spec(ResourceType::InternetGateway, &spec.tags, &spec.name))
                .send()
                .await
                .map_err(err!())?;
            Ok(out.internet_gateway().and_then(|g| g.internet_gateway_id()).unwrap_or_default().to_string())
        }
        ResourceConfig::RouteTable { vpc, .. } => {
            let out = ec2
                .create_route_table()
                .vpc_id(referenced(refs, *vpc)?)
                .tag_specifications(ec2_tag_spec(ResourceType::RouteTable, &spec.tags, &spec.name))
                .send()
                .await
                .map_err(err!())?;
            Ok(out.route_table().and_then(|t| t.route_table_id()).unwrap_or_default().to_string())
        }
        ResourceConfig::SecurityGroup { vpc, description, .. } => {
            let out = ec2
                .create_security_group()
                .group_name(&spec.name)
                .description(description)
                .vpc_id(referenced(refs, *vpc)?)
                .tag_specifications(ec2_tag_spec(ResourceType::SecurityGroup, &spec.tags, &spec.name))
                .send()
                .await
                .map_err(err!())?;
            Ok(out.group_id().unwrap_or_default().to_string())
        }
        other => Err(CloudError::Invalid(format!("not a network resource: {other:?}"))),
    }
}

/// The first Availability Zone, by name, of the client's region that offers
/// `instance_type` (every page of DescribeInstanceTypeOfferings); None when none does.
/// Left to AWS, CreateSubnet picks a zone itself, and RunInstances then fails in one that
/// lacks the type (`Unsupported`).
async fn zone_offering(ec2: &Client, instance_type: &str) -> Result<Option<String>, SdkError<DescribeInstanceTypeOfferingsError>> {
    let mut zones = std::collections::BTreeSet::new();
    let mut pages = ec2
        .describe_instance_type_offerings()
        .location_type(LocationType::AvailabilityZone)
        .filters(Filter::builder().name("instance-type").values(instance_type).build())
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        zones.extend(page?.instance_type_offerings().iter().filter_map(|o| o.location().map(str::to_string)));
    }
    Ok(zones.into_iter().next())
}

/// What a create leaves to do: the subnet's public addresses, the gateway's attachment,
/// the route table's route and association, the group's exact rules. Each step reads
/// before it writes, so a rerun after a crash does only what is missing.
pub async fn converge(ec2: &Client, spec: &ResourceSpec, id: &str, refs: &Refs) -> Result<(), CloudError> {
    match &spec.config {
        ResourceConfig::Vpc { .. } => Ok(()),
        ResourceConfig::Subnet { map_public_ip, .. } => {
            if !*map_public_ip {
                return Ok(());
            }
            let out = ec2.describe_subnets().subnet_ids(id).send().await.map_err(|e| cloud_error(spec.kind, id, e))?;
            let subnet = out.subnets().first().ok_or_else(|| CloudError::NotFound { kind: spec.kind.name(), id: id.into() })?;
            if subnet.map_public_ip_on_launch() == Some(true) {
                return Ok(());
            }
            ec2.modify_subnet_attribute()
                .subnet_id(id)
                .map_public_ip_on_launch(AttributeBooleanValue::builder().value(true).build())
                .send()
                .await
                .map_err(|e| cloud_error(spec.kind, id, e))?;
            Ok(())
        }
        ResourceConfig::InternetGateway { vpc } => attach_gateway(ec2, id, referenced(refs, *vpc)?).await,
        ResourceConfig::RouteTable { subnet, gateway, .. } => {
            converge_route_table(ec2, id, referenced(refs, *subnet)?, referenced(refs, *gateway)?).await
        }
        ResourceConfig::SecurityGroup { ingress, egress, .. } => converge_rules(ec2, id, ingress, egress).await,
        other => Err(CloudError::Invalid(format!("not a network resource: {other:?}"))),
    }
}

async fn attach_gateway(ec2: &Client, gateway: &str, vpc: &str) -> Result<(), CloudError> {
    match ec2.attach_internet_gateway().internet_gateway_id(gateway).vpc_id(vpc).send().await {
        Ok(_) => Ok(()),
        Err(e) => match cloud_error(ResourceKind::InternetGateway, gateway, e) {
            // Already attached (a resumed create): what we wanted.
            CloudError::Other(m) if m.starts_with("Resource.AlreadyAssociated") => Ok(()),
            other => Err(other),
        },
    }
}

/// The default route through the gateway and the subnet's association, whatever part of
/// them a crash left undone.
async fn converge_route_table(ec2: &Client, table: &str, subnet: &str, gateway: &str) -> Result<(), CloudError> {
    macro_rules! err {
        () => {
            |e| cloud_error(ResourceKind::RouteTable, table, e)
        };
    }
    let current = ec2.describe_route_tables().route_table_ids(table).send().await.map_err(err!())?;
    let t =
        current.route_tables().first().ok_or_else(|| CloudError::NotFound { kind: ResourceKind::RouteTable.name(), id: table.into() })?;
    if !t.routes().iter().any(|r| r.destination_cidr_block() == Some("0.0.0.0/0") && r.gateway_id() == Some(gateway)) {
        ec2.create_route()
            .route_table_id(table)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(gateway)
            .send()
            .await
            .map_err(|e| cloud_error(ResourceKind::RouteTable, table, e))?;
    }
    if !t.associations().iter().any(|a| a.subnet_id() == Some(subnet)) {
        ec2.associate_route_table()
            .route_table_id(table)
            .subnet_id(subnet)
            .send()
            .await
            .map_err(|e| cloud_error(ResourceKind::RouteTable, table, e))?;
    }
    Ok(())
}

/// Makes the group's rules exactly these: a new group allows all egress, which the
/// isolation group must not, and a crash between creating a group and fixing its rules
/// must not leave a group that `find` adopts as it is.
async fn converge_rules(ec2: &Client, group: &str, ingress: &[Rule], egress: &[Rule]) -> Result<(), CloudError> {
    macro_rules! err {
        () => {
            |e| cloud_error(ResourceKind::SecurityGroup, group, e)
        };
    }
    let out = ec2.describe_security_groups().group_ids(group).send().await.map_err(err!())?;
    let g =
        out.security_groups().first().ok_or_else(|| CloudError::NotFound { kind: ResourceKind::SecurityGroup.name(), id: group.into() })?;
    let rules_of = |perms: &[IpPermission]| -> Vec<Rule> {
        let mut rules = Vec::new();
        for p in perms {
            let (protocol, from, to) =
                (p.ip_protocol().unwrap_or("-1").to_string(), p.from_port().unwrap_or(-1), p.to_port().unwrap_or(-1));
            let (from, to) = if protocol == "-1" { (-1, -1) } else { (from, to) };
            for r in p.ip_ranges() {
                rules.push(Rule { protocol: protocol.clone(), from_port: from, to_port: to, cidr: r.cidr_ip().unwrap_or_default().into() });
            }
            for r in p.ipv6_ranges() {
                rules.push(Rule {
                    protocol: protocol.clone(),
                    from_port: from,
                    to_port: to,
                    cidr: r.cidr_ipv6().unwrap_or_default().into(),
                });
            }
        }
        rules
    };
    let (have_in, have_out) = (rules_of(g.ip_permissions()), rules_of(g.ip_permissions_egress()));
    let extra_out: Vec<IpPermission> = have_out.iter().filter(|r| !egress.contains(r)).map(permission).collect();
    if !extra_out.is_empty() {
        ec2.revoke_security_group_egress().group_id(group).set_ip_permissions(Some(extra_out)).send().await.map_err(err!())?;
    }
    let extra_in: Vec<IpPermission> = have_in.iter().filter(|r| !ingress.contains(r)).map(permission).collect();
    if !extra_in.is_empty() {
        ec2.revoke_security_group_ingress().group_id(group).set_ip_permissions(Some(extra_in)).send().await.map_err(err!())?;
    }
    let missing_in: Vec<IpPermission> = ingress.iter().filter(|r| !have_in.contains(r)).map(permission).collect();
    if !missing_in.is_empty() {
        ec2.authorize_security_group_ingress().group_id(group).set_ip_permissions(Some(missing_in)).send().await.map_err(err!())?;
    }
    let missing_out: Vec<IpPermission> = egress.iter().filter(|r| !have_out.contains(r)).map(permission).collect();
    if !missing_out.is_empty() {
        ec2.authorize_security_group_egress().group_id(group).set_ip_permissions(Some(missing_out)).send().await.map_err(err!())?;
    }
    Ok(())
}

/// Finds the resource by its lab and role tags; [`converge`] finishes what its create
/// may have left undone.
pub async fn find(ec2: &Client, spec: &ResourceSpec, _refs: &Refs) -> Result<Option<String>, CloudError> {
    macro_rules! err {
        () => {
            |e| cloud_error(spec.kind, &spec.name, e)
        };
    }
    let filters = Some(ec2_tag_filters(spec));
    let id = match &spec.config {
        ResourceConfig::Vpc { .. } => {
            ec2.describe_vpcs().set_filters(filters).send().await.map_err(err!())?.vpcs().first().and_then(|v| v.vpc_id()).map(String::from)
        }
        ResourceConfig::Subnet { .. } => ec2
            .describe_subnets()
            .set_filters(filters)
            .send()
            .await
            .map_err(err!())?
            .subnets()
            .first()
            .and_then(|s| s.subnet_id())
            .map(String::from),
        ResourceConfig::InternetGateway { .. } => ec2
            .describe_internet_gateways()
            .set_filters(filters)
            .send()
            .await
            .map_err(err!())?
            .internet_gateways()
            .first()
            .and_then(|g| g.internet_gateway_id())
            .map(String::from),
        ResourceConfig::RouteTable { .. } => ec2
            .describe_route_tables()
            .set_filters(filters)
            .send()
            .await
            .map_err(err!())?
            .route_tables()
            .first()
            .and_then(|t| t.route_table_id())
            .map(String::from),
        ResourceConfig::SecurityGroup { .. } => ec2
            .describe_security_groups()
            .set_filters(filters)
            .send()
            .await
            .map_err(err!())?
            .security_groups()
            .first()
            .and_then(|g| g.group_id())
            .map(String::from),
        other => return Err(CloudError::Invalid(format!("not a network resource: {other:?}"))),
    };
    Ok(id)
}

/// Ready while it exists; NotFound once it is gone.
pub async fn status(ec2: &Client, kind: ResourceKind, id: &str) -> Result<ResourceStatus, CloudError> {
    macro_rules! err {
        () => {
            |e| cloud_error(kind, id, e)
        };
    }
    let found = match kind {
        ResourceKind::Vpc => !ec2.describe_vpcs().vpc_ids(id).send().await.map_err(err!())?.vpcs().is_empty(),
        ResourceKind::Subnet => !ec2.describe_subnets().subnet_ids(id).send().await.map_err(err!())?.subnets().is_empty(),
        ResourceKind::InternetGateway => {
            !ec2.describe_internet_gateways().internet_gateway_ids(id).send().await.map_err(err!())?.internet_gateways().is_empty()
        }
        ResourceKind::RouteTable => {
            !ec2.describe_route_tables().route_table_ids(id).send().await.map_err(err!())?.route_tables().is_empty()
        }
        ResourceKind::SecurityGroup => {
            !ec2.describe_security_groups().group_ids(id).send().await.map_err(err!())?.security_groups().is_empty()
        }
        other => return Err(CloudError::Invalid(format!("not a network resource: {other}"))),
    };
    if found {
        Ok(ResourceStatus::Ready)
    } else {
        Err(CloudError::NotFound { kind: kind.name(), id: id.into() })
    }
}

/// Deletes one network resource (detaching or disassociating it first where AWS needs it).
pub async fn delete(ec2: &Client, kind: ResourceKind, id: &str) -> Result<(), CloudError> {
    macro_rules! err {
        () => {
            |e| cloud_error(kind, id, e)
        };
    }
    match kind {
        ResourceKind::Vpc => {
            ec2.delete_vpc().vpc_id(id).send().await.map_err(err!())?;
        }
        ResourceKind::Subnet => {
            ec2.delete_subnet().subnet_id(id).send().await.map_err(err!())?;
        }
        ResourceKind::InternetGateway => {
            let out = ec2.describe_internet_gateways().internet_gateway_ids(id).send().await.map_err(err!())?;
            for g in out.internet_gateways() {
                for a in g.attachments() {
                    if let Some(vpc) = a.vpc_id() {
                        ec2.detach_internet_gateway().internet_gateway_id(id).vpc_id(vpc).send().await.map_err(err!())?;
                    }
                }
            }
            ec2.delete_internet_gateway().internet_gateway_id(id).send().await.map_err(err!())?;
        }
        ResourceKind::RouteTable => {
            let out = ec2.describe_route_tables().route_table_ids(id).send().await.map_err(err!())?;
            for t in out.route_tables() {
                for a in t.associations().iter().filter(|a| a.main() != Some(true)) {
                    if let Some(assoc) = a.route_table_association_id() {
                        ec2.disassociate_route_table().association_id(assoc).send().await.map_err(err!())?;
                    }
                }
            }
            ec2.delete_route_table().route_table_id(id).send().await.map_err(err!())?;
        }
        ResourceKind::SecurityGroup => {
            ec2.delete_security_group().group_id(id).send().await.map_err(err!())?;
        }
        other => return Err(CloudError::Invalid(format!("not a network resource: {other}"))),
    }
    Ok(())
}
