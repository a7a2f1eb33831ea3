//! Destination groups: a destination counts by the way it behaves, not as an address.
//!
//! AWS's service endpoints (SSM, CloudWatch, STS, S3) and its CDN answer from addresses
//! that rotate inside the prefixes AWS publishes, so any address in one of those prefixes
//! is that service in that region (every region's, so a lab anywhere knows its own). Any
//! other public address counts by its /24 (IPv4) or /48 (IPv6), where one provider's
//! machines sit together. Inside the VPC (private addresses) nothing rotates, and each
//! address is one machine: a neighbour counts as itself, so a sweep of the subnet is a
//! fan-out. The prefixes ship in `assets/aws-prefixes.txt`, taken from AWS's
//! `ip-ranges.json` with the file's createDate; EC2's ranges are left out on purpose: they
//! are other customers' machines, which an attacker can rent.

use std::collections::{BTreeMap, HashMap};
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

/// A region of AWS's published ranges (`us-east-1`, or `GLOBAL` for the CDN's edge and
/// global services): an index into the shipped table's region names, sorted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AwsRegion(u8);

impl AwsRegion {
    /// A region named in the shipped table.
    pub fn named(name: &str) -> Option<AwsRegion> {
        table().regions.binary_search(&name).ok().map(|i| AwsRegion(i as u8))
    }

    pub fn name(self) -> &'static str {
        table().regions[self.0 as usize]
    }

    /// Where `service`'s endpoints answer a lab in `lab_region`: that region, or the
    /// global edge for the CDN. `None` when the shipped table has none there.
    pub fn serving(service: AwsService, lab_region: &str) -> Option<AwsRegion> {
        let region = AwsRegion::named(if service == AwsService::CloudFront { "GLOBAL" } else { lab_region })?;
        (!prefixes_of(service, region).is_empty()).then_some(region)
    }
}

/// Where a destination belongs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Group {
    /// Inside one of AWS's published service prefixes, by service and region: a lab
    /// talks to its own region's endpoints, so another region's S3 is somewhere else.
    Aws(AwsService, AwsRegion),
    /// Any other public address, by its /24 (IPv4) or /48 (IPv6): the network's first
    /// address.
    Prefix(IpAddr),
    /// A private address (inside the VPC, or the lab's own networks): the host itself.
    Host(IpAddr),
}

impl Group {
    /// The group of a destination address.
    pub fn of(ip: IpAddr) -> Group {
        if let Some((service, region)) = aws_service(ip) {
            return Group::Aws(service, region);
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
        matches!(self, Group::Aws(..))
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Group::Aws(s, r) => write!(f, "aws:{}@{}", s.name(), r.name()),
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
        if let Some(rest) = s.strip_prefix("aws:") {
            let (name, region) = rest.split_once('@').ok_or_else(|| format!("group '{s}' names no region: aws:SERVICE@REGION"))?;
            let service = AwsService::parse(name).ok_or_else(|| format!("unknown AWS service '{name}' in group '{s}'"))?;
            let region = AwsRegion::named(region).ok_or_else(|| format!("unknown AWS region '{region}' in group '{s}'"))?;
            return Ok(Group::Aws(service, region));
        }
        let bad = || format!("'{s}' is not a destination group");
        match s.split_once('/') {
            Some((ip, _)) => ip.parse::<IpAddr>().map(Group::Prefix).map_err(|_| bad()),
            None => s.parse::<IpAddr>().map(Group::Host).map_err(|_| bad()),
        }
    }
}

const PREFIXES: &str = include_str!("../../assets/aws-prefixes.txt");

/// One prefix's owner: a service in a region, or other customers' space (`None`) inside
/// a service's prefix.
type Owner = Option<(AwsService, AwsRegion)>;

/// The shipped prefixes, by length, then by network (longest first); the same, flattened
/// into the address ranges where one entry is the most specific, for lookups (every flow
/// of `cis detect` makes one: a binary search, where trying each length hashed once per
/// length); and the region names they hold, sorted.
struct Table {
    regions: Vec<&'static str>,
    by_len: Vec<(u8, HashMap<u32, Owner>)>,
    /// From each start to the next, the most specific entry's owner (None: no entry).
    flat: Vec<(u32, Option<Owner>)>,
}

/// Prefixes as inclusive ranges, flattened: each CIDR either holds another or is apart
/// from it, so a sweep in order of start (the wider first) with a stack of the ranges
/// still open gives, at each boundary, the innermost one.
fn flatten(mut prefixes: Vec<(u64, u64, Owner)>) -> Vec<(u32, Option<Owner>)> {
    // The wider first at a shared start; among equal ranges the later listed wins, as it
    // did in the per-length table.
    prefixes.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    fn emit(out: &mut Vec<(u64, Option<Owner>)>, at: u64, value: Option<Owner>) {
        match out.last_mut() {
            Some(last) if last.0 == at => last.1 = value,
            Some(last) if last.1 == value => {}
            _ => out.push((at, value)),
        }
    }
    let mut out: Vec<(u64, Option<Owner>)> = vec![(0, None)];
    let mut open: Vec<(u64, Owner)> = Vec::new();
    let close_before = |out: &mut Vec<(u64, Option<Owner>)>, open: &mut Vec<(u64, Owner)>, start: u64| {
        while let Some(&(end, _)) = open.last() {
            if end >= start {
                break;
            }
            open.pop();
            emit(out, end + 1, open.last().map(|o| o.1));
        }
    };
    for (start, end, owner) in prefixes {
        close_before(&mut out, &mut open, start);
        emit(&mut out, start, Some(owner));
        open.push((end, owner));
    }
    close_before(&mut out, &mut open, u64::MAX);
    out.into_iter().filter(|(at, _)| *at <= u64::from(u32::MAX)).map(|(at, v)| (at as u32, v)).collect()
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let rows: Vec<(&'static str, &'static str, &'static str)> = PREFIXES
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|line| {
                let mut f = line.split(' ');
                match (f.next(), f.next(), f.next()) {
                    (Some(service), Some(region), Some(prefix)) => (service, region, prefix),
                    _ => panic!("assets/aws-prefixes.txt: SERVICE REGION PREFIX, not '{line}'"),
                }
            })
            .collect();
        let mut regions: Vec<&'static str> = rows.iter().filter(|r| r.0 != "CUSTOMER").map(|r| r.1).collect();
        regions.sort_unstable();
        regions.dedup();
        assert!(regions.len() <= usize::from(u8::MAX), "assets/aws-prefixes.txt: more regions than an AwsRegion holds");
        let mut by_len: Vec<(u8, HashMap<u32, Owner>)> = Vec::new();
        let mut ranges = Vec::with_capacity(rows.len());
        for (service, region, prefix) in rows {
            let owner = match service {
                "CUSTOMER" => None,
                name => Some((
                    AwsService::parse(name).expect("assets/aws-prefixes.txt names known services"),
                    AwsRegion(regions.binary_search(&region).expect("a listed region") as u8),
                )),
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
            let start = u64::from(u32::from(net) & crate::base::net::ipv4_mask(len));
            ranges.push((start, start + (1u64 << (32 - u32::from(len))) - 1, owner));
            by_len[at].1.insert(u32::from(net), owner);
        }
        // Longest prefix first, so the most specific entry wins.
        by_len.sort_by(|a, b| b.0.cmp(&a.0));
        Table { regions, by_len, flat: flatten(ranges) }
    })
}

/// The AWS service, and its region, whose published prefix holds `ip`, if any (IPv4
/// only: the shipped table has no IPv6 prefixes).
pub fn aws_service(ip: IpAddr) -> Option<(AwsService, AwsRegion)> {
    let IpAddr::V4(v4) = ip else { return None };
    let n = u32::from(v4);
    let flat = &table().flat;
    // flat[0] starts at 0, so some range holds every address.
    flat[flat.partition_point(|(start, _)| *start <= n) - 1].1.flatten()
}

/// The shipped prefixes of one service in one region, as (network, length), sorted:
/// where the simulator draws that service's rotating endpoint addresses from (every
/// connection, so they are listed once).
pub fn prefixes_of(service: AwsService, region: AwsRegion) -> &'static [(Ipv4Addr, u8)] {
    static BY_OWNER: OnceLock<BTreeMap<(AwsService, AwsRegion), Vec<(Ipv4Addr, u8)>>> = OnceLock::new();
    let all = BY_OWNER.get_or_init(|| {
        let mut all: BTreeMap<(AwsService, AwsRegion), Vec<(Ipv4Addr, u8)>> = BTreeMap::new();
        for (len, nets) in &table().by_len {
            for (net, owner) in nets {
                if let Some(owner) = owner {
                    all.entry(*owner).or_default().push((Ipv4Addr::from(*net), *len));
                }
            }
        }
        all.values_mut().for_each(|v| v.sort());
        all
    });
    all.get(&(service, region)).map_or(&[], Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn service_addresses_group_by_service_and_others_by_network() {
        let us_east_1 = AwsRegion::named("us-east-1").unwrap();
        assert_eq!(Group::of(ip("52.216.20.10")), Group::Aws(AwsService::S3, us_east_1));
        assert_eq!(Group::of(ip("52.217.1.1")), Group::Aws(AwsService::S3, us_east_1), "the same /15");
        assert_eq!(Group::of(ip("52.46.141.10")), Group::Aws(AwsService::Amazon, us_east_1));
        assert_eq!(Group::of(ip("52.216.20.10")).to_string(), "aws:S3@us-east-1");
        let other = Group::of(ip("198.51.100.23"));
        assert_eq!(other, Group::of(ip("198.51.100.200")));
        assert_ne!(other, Group::of(ip("198.51.101.23")));
        assert_eq!(other.to_string(), "198.51.100.0/24");
        assert_eq!(Group::of(ip("2001:db8:1:2::5")).to_string(), "2001:db8:1::/48");
        assert_eq!(Group::of(ip("10.42.1.7")), Group::Host(ip("10.42.1.7")), "a neighbour is itself");
        assert_ne!(Group::of(ip("10.42.1.7")), Group::of(ip("10.42.1.8")));
        for g in [other, Group::of(prefixes_of(AwsService::CloudFront, AwsRegion::named("GLOBAL").unwrap())[0].0.into()), Group::of(ip("2001:db8:1:2::5")), Group::of(ip("10.42.1.7"))] {
            assert_eq!(Group::try_from(g.to_string()), Ok(g));
        }
        for bad in ["aws:NOPE@us-east-1", "aws:S3", "aws:S3@mars-1"] {
            assert!(Group::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_flat_table_finds_what_the_longest_prefix_match_finds() {
        // The reference: each prefix length tried, longest first.
        let by_len = |n: u32| table().by_len.iter().find_map(|(len, nets)| nets.get(&(n & crate::base::net::ipv4_mask(*len))).copied()).flatten();
        let mut probes: Vec<u32> = vec![0, u32::MAX];
        for (len, nets) in &table().by_len {
            for net in nets.keys() {
                let end = u64::from(*net) + (1u64 << (32 - u32::from(*len))) - 1;
                probes.extend([net.wrapping_sub(1), *net, *net + 1, end as u32, (end as u32).wrapping_add(1)]);
            }
        }
        let mut rng = crate::base::rng::Rng::seeded(7);
        probes.extend((0..200_000).map(|_| rng.next_u64() as u32));
        for n in probes {
            assert_eq!(aws_service(IpAddr::V4(Ipv4Addr::from(n))), by_len(n), "{}", Ipv4Addr::from(n));
        }
        // Nested ranges: the inner one wins inside it, the outer one on both sides.
        let (outer, inner) = (Some((AwsService::Amazon, AwsRegion(0))), None);
        assert_eq!(flatten(vec![(10, 100, outer), (20, 30, inner)]), vec![(0, None), (10, Some(outer)), (20, Some(inner)), (31, Some(outer)), (101, None)]);
    }

    #[test]
    fn each_region_has_its_own_endpoints_and_another_regions_are_elsewhere() {
        let (east, west) = (AwsRegion::serving(AwsService::S3, "us-east-1").unwrap(), AwsRegion::serving(AwsService::S3, "eu-west-1").unwrap());
        assert_ne!(east, west);
        for (region, service) in [(east, AwsService::S3), (west, AwsService::S3), (AwsRegion::serving(AwsService::Amazon, "eu-west-1").unwrap(), AwsService::Amazon)] {
            let prefixes = prefixes_of(service, region);
            assert!(!prefixes.is_empty(), "{} {}", service.name(), region.name());
            let (net, _) = prefixes[prefixes.len() / 2];
            assert_eq!(Group::of(net.into()), Group::Aws(service, region), "{net}");
        }
        // The CDN answers from its global edge, whatever the lab's region.
        assert_eq!(AwsRegion::serving(AwsService::CloudFront, "eu-west-1").unwrap().name(), "GLOBAL");
        assert_eq!(AwsRegion::serving(AwsService::S3, "us-north-9"), None, "a region the table does not hold");
    }
}
