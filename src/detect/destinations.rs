//! Destination groups: a destination counts by the way it behaves, not as an address.
//!
//! AWS's service endpoints (SSM, CloudWatch, STS, S3) and its CDN answer from addresses
//! that rotate inside the prefixes AWS publishes, so any address in one of those prefixes
//! is that service. Any other public address counts by its /24 (IPv4) or /48 (IPv6),
//! where one provider's machines sit together. Inside the VPC (private addresses) nothing
//! rotates, and each address is one machine: a neighbour counts as itself, so a sweep of
//! the subnet is a fan-out. The prefixes ship in `assets/aws-prefixes.txt`, taken
//! from AWS's `ip-ranges.json` with the file's createDate; EC2's ranges are left out on
//! purpose: they are other customers' machines, which an attacker can rent.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// An AWS service whose endpoints rotate inside published prefixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AwsService {
    /// AWS's own service endpoints (`AMAZON` only in `ip-ranges.json`): SSM, CloudWatch,
    /// STS, EC2's API and the rest.
    Amazon,
    S3,
    CloudFront,
}

impl AwsService {
    /// Every service, in declaration order (`service as usize` indexes it).
    const ALL: [AwsService; 3] = [AwsService::Amazon, AwsService::S3, AwsService::CloudFront];

    pub fn name(self) -> &'static str {
        match self {
            AwsService::Amazon => "AMAZON",
            AwsService::S3 => "S3",
            AwsService::CloudFront => "CLOUDFRONT",
        }
    }

    /// A service by its name in `ip-ranges.json` (`AMAZON`, `S3`, `CLOUDFRONT`).
    pub fn parse(name: &str) -> Option<AwsService> {
        AwsService::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Where a destination belongs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Group {
    /// Inside one of AWS's published service prefixes.
    Aws(AwsService),
    /// Any other public address, by its /24 (IPv4) or /48 (IPv6): the network's first
    /// address.
    Prefix(IpAddr),
    /// A private address (inside the VPC, or the lab's own networks): the host itself.
    Host(IpAddr),
}

impl Group {
    /// The group of a destination address.
    pub fn of(ip: IpAddr) -> Group {
        if let Some(service) = aws_service(ip) {
            return Group::Aws(service);
        }
        if !crate::formats::flowlog::is_external(ip) {
            return Group::Host(ip);
        }
        Group::Prefix(match ip {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & 0xffff_ff00)),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 80) - 1))),
        })
    }

    /// Inside an AWS service's published prefixes.
    pub fn is_aws_service(self) -> bool {
        matches!(self, Group::Aws(_))
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Group::Aws(s) => write!(f, "aws:{}", s.name()),
            Group::Prefix(ip @ IpAddr::V4(_)) => write!(f, "{ip}/24"),
            Group::Prefix(ip @ IpAddr::V6(_)) => write!(f, "{ip}/48"),
            Group::Host(ip) => write!(f, "{ip}"),
        }
    }
}

impl From<Group> for String {
    fn from(g: Group) -> String {
        g.to_string()
    }
}

impl TryFrom<String> for Group {
    type Error = String;
    fn try_from(s: String) -> Result<Group, String> {
        if let Some(name) = s.strip_prefix("aws:") {
            return AwsService::parse(name).map(Group::Aws).ok_or_else(|| format!("unknown AWS service '{name}' in group '{s}'"));
        }
        let bad = || format!("'{s}' is not a destination group");
        match s.split_once('/') {
            Some((ip, _)) => ip.parse::<IpAddr>().map(Group::Prefix).map_err(|_| bad()),
            None => s.parse::<IpAddr>().map(Group::Host).map_err(|_| bad()),
        }
    }
}

const PREFIXES: &str = include_str!("../../assets/aws-prefixes.txt");

/// The shipped prefixes, by length, then by network: a lookup tries each length, longest
/// first. `None` marks other customers' space inside a service's prefix.
struct Table {
    by_len: Vec<(u8, HashMap<u32, Option<AwsService>>)>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut by_len: Vec<(u8, HashMap<u32, Option<AwsService>>)> = Vec::new();
        for line in PREFIXES.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (service, prefix) = line.split_once(' ').expect("assets/aws-prefixes.txt: SERVICE PREFIX");
            let service = match service {
                "CUSTOMER" => None,
                name => Some(AwsService::parse(name).expect("assets/aws-prefixes.txt names known services")),
            };
            let (net, len) = prefix.split_once('/').expect("assets/aws-prefixes.txt holds CIDRs");
            let (net, len): (Ipv4Addr, u8) = (net.parse().expect("IPv4 network"), len.parse().expect("prefix length"));
            let at = match by_len.iter().position(|(l, _)| *l == len) {
                Some(at) => at,
                None => {
                    by_len.push((len, HashMap::new()));
                    by_len.len() - 1
                }
            };
            by_len[at].1.insert(u32::from(net), service);
        }
        // Longest prefix first, so the most specific entry wins.
        by_len.sort_by(|a, b| b.0.cmp(&a.0));
        Table { by_len }
    })
}

/// The AWS service whose published prefix holds `ip`, if any (IPv4 only: the shipped
/// table has no IPv6 prefixes).
pub fn aws_service(ip: IpAddr) -> Option<AwsService> {
    let IpAddr::V4(v4) = ip else { return None };
    let n = u32::from(v4);
    table().by_len.iter().find_map(|(len, nets)| nets.get(&(n & crate::base::net::ipv4_mask(*len))).copied()).flatten()
}

/// The shipped prefixes of one service, as (network, length), sorted: where the simulator
/// draws that service's rotating endpoint addresses from (every connection, so they are
/// listed once).
pub fn prefixes_of(service: AwsService) -> &'static [(Ipv4Addr, u8)] {
    static BY_SERVICE: OnceLock<[Vec<(Ipv4Addr, u8)>; 3]> = OnceLock::new();
    let all = BY_SERVICE.get_or_init(|| {
        AwsService::ALL.map(|service| {
            let mut out: Vec<(Ipv4Addr, u8)> = table()
                .by_len
                .iter()
                .flat_map(|(len, nets)| nets.iter().filter(|(_, s)| **s == Some(service)).map(move |(n, _)| (Ipv4Addr::from(*n), *len)))
                .collect();
            out.sort();
            out
        })
    });
    &all[service as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn service_addresses_group_by_service_and_others_by_network() {
        assert_eq!(Group::of(ip("52.216.20.10")), Group::Aws(AwsService::S3));
        assert_eq!(Group::of(ip("52.217.1.1")), Group::Aws(AwsService::S3), "the same /15");
        assert_eq!(Group::of(ip("52.46.141.10")), Group::Aws(AwsService::Amazon));
        let other = Group::of(ip("198.51.100.23"));
        assert_eq!(other, Group::of(ip("198.51.100.200")));
        assert_ne!(other, Group::of(ip("198.51.101.23")));
        assert_eq!(other.to_string(), "198.51.100.0/24");
        assert_eq!(Group::of(ip("2001:db8:1:2::5")).to_string(), "2001:db8:1::/48");
        assert_eq!(Group::of(ip("10.42.1.7")), Group::Host(ip("10.42.1.7")), "a neighbour is itself");
        assert_ne!(Group::of(ip("10.42.1.7")), Group::of(ip("10.42.1.8")));
        for g in [other, Group::Aws(AwsService::CloudFront), Group::of(ip("2001:db8:1:2::5")), Group::of(ip("10.42.1.7"))] {
            assert_eq!(Group::try_from(g.to_string()), Ok(g));
        }
        assert!(Group::try_from("aws:NOPE".to_string()).is_err());
        assert!(!prefixes_of(AwsService::S3).is_empty() && !prefixes_of(AwsService::CloudFront).is_empty());
    }
}
