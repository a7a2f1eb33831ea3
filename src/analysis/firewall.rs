//! Firewall rules decided the way a firewall decides them: in order (priority, then the
//! order given), the first rule that matches wins, and a packet no rule matches is denied.
//!
//! A rule's fields are read once into specs: addresses (`Any`, addresses, CIDR blocks,
//! ranges `a-b`, names such as `target`), ports (`any`, `1-65535`, lists and ranges) and
//! protocols (names or IANA numbers). A packet may lack a field (a log without a port
//! column): a rule then *may* match, and only a rule whose action agrees with what the log
//! saw can be the one that decided. The same evaluator checks that a proposed rule set is
//! never wider than the one it replaces, over every packet that tells the rules apart.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// What a rule does with the packets it matches, or what a log saw done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
}

impl Decision {
    /// The words firewalls, flow logs and people write: `Allow`, `ACCEPT`, `Permitted`,
    /// `Denied`, `Block`, `Drop`, `REJECT`... Anything else is not a decision.
    pub fn from_word(word: &str) -> Option<Decision> {
        match word.trim().to_ascii_lowercase().as_str() {
            "allow" | "allowed" | "accept" | "accepted" | "permit" | "permitted" | "pass" | "passed" => Some(Decision::Allow),
            "deny" | "denied" | "drop" | "dropped" | "reject" | "rejected" | "block" | "blocked" => Some(Decision::Deny),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which way a rule looks: at traffic to the protected hosts, or from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn from_word(word: &str) -> Option<Direction> {
        match word.trim().to_ascii_lowercase().as_str() {
            "inbound" | "in" | "ingress" => Some(Direction::Inbound),
            "outbound" | "out" | "egress" => Some(Direction::Outbound),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// The words that mean every address, port or protocol.
pub fn is_any(s: &str) -> bool {
    matches!(s.trim().to_ascii_lowercase().as_str(), "any" | "*" | "0.0.0.0/0" | "::/0" | "all" | "internet" | "-1" | "" | "any/any")
}

/// One item of an address field.
#[derive(Clone, Debug, PartialEq)]
enum AddressItem {
    Block(String),
    Range(IpAddr, IpAddr),
    /// A name (`target`, `web-1`): it matches the same name only.
    Name(String),
}

/// An address field: every address, or a list of items.
#[derive(Clone, Debug, PartialEq)]
pub struct Addresses(Option<Vec<AddressItem>>);

impl Addresses {
    pub fn parse(s: &str) -> Addresses {
        if is_any(s) {
            return Addresses(None);
        }
        let items = s
            .split([',', ';', ' '])
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                if is_any(t) {
                    return None;
                }
                if let Some((a, b)) = t.split_once('-') {
                    if let (Ok(a), Ok(b)) = (a.trim().parse::<IpAddr>(), b.trim().parse::<IpAddr>()) {
                        return Some(AddressItem::Range(a, b));
                    }
                }
                if t.parse::<IpAddr>().is_ok() || (t.contains('/') && t.split('/').next().is_some_and(|n| n.parse::<IpAddr>().is_ok())) {
                    Some(AddressItem::Block(t.to_string()))
                } else {
                    Some(AddressItem::Name(t.to_ascii_lowercase()))
                }
            })
            .collect::<Option<Vec<_>>>();
        Addresses(items)
    }

    pub fn is_any(&self) -> bool {
        self.0.is_none()
    }

    /// Whether the field holds `addr` (an address or a name).
    pub fn contains(&self, addr: &str) -> bool {
        let Some(items) = &self.0 else { return true };
        let ip = addr.trim().parse::<IpAddr>().ok();
        items.iter().any(|item| match (item, ip) {
            (AddressItem::Block(b), Some(ip)) => crate::base::net::cidr_contains(b, ip),
            (AddressItem::Range(a, b), Some(ip)) => same_family(*a, ip) && *a <= ip && ip <= *b,
            (AddressItem::Name(n), None) => n.eq_ignore_ascii_case(addr.trim()),
            _ => false,
        })
    }

    /// Addresses that tell this field's items apart: each block's first and last address
    /// and the ones just outside, each range's ends, each name.
    fn witnesses(&self, out: &mut BTreeSet<String>) {
        for item in self.0.iter().flatten() {
            match item {
                AddressItem::Block(b) => {
                    let (net, bits) = b.split_once('/').map_or((b.as_str(), None), |(n, p)| (n, p.parse::<u32>().ok()));
                    if let Ok(IpAddr::V4(n)) = net.parse::<IpAddr>() {
                        let bits = bits.unwrap_or(32).min(32);
                        let mask = crate::base::net::ipv4_mask(bits as u8);
                        let first = u32::from(n) & mask;
                        let last = first | !mask;
                        for a in [first, last, first.wrapping_sub(1), last.wrapping_add(1)] {
                            out.insert(std::net::Ipv4Addr::from(a).to_string());
                        }
                    } else {
                        out.insert(net.to_string());
                    }
                }
                AddressItem::Range(a, b) => {
                    out.insert(a.to_string());
                    out.insert(b.to_string());
                }
                AddressItem::Name(n) => {
                    out.insert(n.clone());
                }
            }
        }
    }
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// A port field: every port, or inclusive ranges.
#[derive(Clone, Debug, PartialEq)]
pub struct Ports(Option<Vec<(u16, u16)>>);

impl Ports {
    /// `None` when a part is neither a port, a range nor a word for every port.
    pub fn parse(s: &str) -> Option<Ports> {
        if is_any(s) {
            return Some(Ports(None));
        }
        let mut ranges = Vec::new();
        for part in s.split([',', ';', ' ']).map(str::trim).filter(|p| !p.is_empty()) {
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?),
                None => {
                    let p = part.parse::<u16>().ok()?;
                    (p, p)
                }
            };
            if a > b {
                return None;
            }
            ranges.push((a, b));
        }
        // 0-65535 and 1-65535 are every port (port 0 is not a port a service listens on).
        if ranges.iter().any(|&(a, b)| a <= 1 && b == u16::MAX) || ranges.is_empty() {
            return Some(Ports(None));
        }
        Some(Ports(Some(ranges)))
    }

    pub fn is_any(&self) -> bool {
        self.0.is_none()
    }

    pub fn contains(&self, port: u16) -> bool {
        self.0.as_ref().is_none_or(|r| r.iter().any(|&(a, b)| a <= port && port <= b))
    }

    fn witnesses(&self, out: &mut BTreeSet<u16>) {
        for &(a, b) in self.0.iter().flatten() {
            out.extend([a, b, a.saturating_sub(1), b.saturating_add(1)]);
        }
    }
}

/// A protocol field: every protocol, or names (IANA numbers read as their names).
#[derive(Clone, Debug, PartialEq)]
pub struct Protocols(Option<Vec<String>>);

impl Protocols {
    pub fn parse(s: &str) -> Protocols {
        let s = s.trim().to_ascii_lowercase();
        if is_any(&s) || s == "ip" {
            return Protocols(None);
        }
        Protocols(Some(s.split([',', '/', ' ']).map(str::trim).filter(|p| !p.is_empty()).map(protocol_word).collect()))
    }

    pub fn is_any(&self) -> bool {
        self.0.is_none()
    }

    pub fn contains(&self, protocol: &str) -> bool {
        let p = protocol_word(protocol);
        self.0.as_ref().is_none_or(|names| names.contains(&p))
    }
}

/// `6` is `tcp`, `TCP` is `tcp`.
pub fn protocol_word(p: &str) -> String {
    let p = p.trim().to_ascii_lowercase();
    match p.parse::<u8>() {
        Ok(n) => crate::base::net::protocol_name(n).map_or(p, str::to_string),
        Err(_) => p,
    }
}

/// A rule's match fields, read once.
#[derive(Clone, Debug, PartialEq)]
pub struct Matcher {
    pub direction: Direction,
    pub decision: Decision,
    pub source: Addresses,
    pub destination: Addresses,
    pub ports: Ports,
    pub protocols: Protocols,
}

impl Matcher {
    /// `None` when the rule's ports cannot be read.
    pub fn of(r: &super::FirewallRule) -> Option<Matcher> {
        Some(Matcher {
            direction: r.direction,
            decision: r.action,
            source: Addresses::parse(&r.source),
            destination: Addresses::parse(&r.destination),
            ports: Ports::parse(&r.ports)?,
            protocols: Protocols::parse(&r.protocol),
        })
    }

    /// Every source, every port, every protocol: an open door.
    pub fn wide_open(&self) -> bool {
        self.decision == Decision::Allow && self.source.is_any() && self.ports.is_any() && self.protocols.is_any()
    }
}

/// What a packet is known to be; a field a log did not record is `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Packet {
    pub direction: Option<Direction>,
    pub source: Option<String>,
    pub destination: Option<String>,
    pub port: Option<u16>,
    pub protocol: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fit {
    Yes,
    Maybe,
    No,
}

fn fit(m: &Matcher, p: &Packet) -> Fit {
    let mut maybe = false;
    let mut field = |known: Option<bool>| match known {
        Some(true) => true,
        Some(false) => false,
        None => {
            maybe = true;
            true
        }
    };
    let direction = p.direction.unwrap_or(Direction::Inbound) == m.direction;
    let source = field(if m.source.is_any() { Some(true) } else { p.source.as_deref().map(|s| m.source.contains(s)) });
    let destination =
        field(if m.destination.is_any() { Some(true) } else { p.destination.as_deref().map(|d| m.destination.contains(d)) });
    let port = field(if m.ports.is_any() { Some(true) } else { p.port.map(|n| m.ports.contains(n)) });
    let protocol = field(if m.protocols.is_any() { Some(true) } else { p.protocol.as_deref().map(|x| m.protocols.contains(x)) });
    if !(direction && source && destination && port && protocol) {
        Fit::No
    } else if maybe {
        Fit::Maybe
    } else {
        Fit::Yes
    }
}

/// A rule set, read once, in the order a firewall reads it: by priority (a rule without
/// one after those with one), then in the order given. A rule whose ports cannot be read
/// matches nothing (the parsers refuse such rules before they get here).
pub struct Firewall<'a> {
    rules: &'a [super::FirewallRule],
    order: Vec<(usize, Matcher)>,
}

impl<'a> Firewall<'a> {
    pub fn new(rules: &'a [super::FirewallRule]) -> Firewall<'a> {
        let mut order: Vec<usize> = (0..rules.len()).collect();
        order.sort_by_key(|&i| (rules[i].priority.is_none(), rules[i].priority.unwrap_or(0), i));
        Firewall { rules, order: order.into_iter().filter_map(|i| Matcher::of(&rules[i]).map(|m| (i, m))).collect() }
    }

    /// The index of the rule that decided a packet the log saw decided `seen` (or, with
    /// `seen` unknown, the first that surely matches). A rule that may match but did the
    /// opposite of what the log saw did not match; a rule that surely matches and did the
    /// opposite means the rules given are not the ones that decided, and nothing is blamed.
    pub fn deciding(&self, packet: &Packet, seen: Option<Decision>) -> Option<usize> {
        for (i, m) in &self.order {
            match (fit(m, packet), seen) {
                (Fit::No, _) | (Fit::Maybe, None) => {}
                (Fit::Yes, None) => return Some(*i),
                (_, Some(s)) if s == m.decision => return Some(*i),
                (Fit::Yes, Some(_)) => return None,
                (Fit::Maybe, Some(_)) => {}
            }
        }
        None
    }

    /// What the rules do with a fully known packet: the first match, or deny.
    pub fn decide(&self, packet: &Packet) -> Decision {
        self.deciding(packet, None).map_or(Decision::Deny, |i| self.rules[i].action)
    }

    /// The rules' indices in the order the firewall reads them.
    pub fn order(&self) -> impl Iterator<Item = usize> + '_ {
        self.order.iter().map(|(i, _)| *i)
    }
}

/// A packet `proposal` allows and `original` does not, if there is one. The packets tried
/// are every combination of the addresses, ports and protocols that tell the two rule sets
/// (and `also`, the addresses a log names) apart, in both directions: enough to find any
/// difference, since a rule set's decision only changes at those boundaries.
pub fn wider(proposal: &[super::FirewallRule], original: &[super::FirewallRule], also: &[String]) -> Option<Packet> {
    let mut addresses: BTreeSet<String> = also.iter().cloned().collect();
    let mut ports: BTreeSet<u16> = [0, 1, 22, 80, 443, 65_535].into_iter().collect();
    let mut protocols: BTreeSet<String> = ["tcp", "udp", "icmp"].into_iter().map(String::from).collect();
    addresses.insert("192.0.2.1".into());
    for r in proposal.iter().chain(original) {
        let Some(m) = Matcher::of(r) else { continue };
        m.source.witnesses(&mut addresses);
        m.destination.witnesses(&mut addresses);
        m.ports.witnesses(&mut ports);
        protocols.extend(m.protocols.0.iter().flatten().cloned());
    }
    let (proposal, original) = (Firewall::new(proposal), Firewall::new(original));
    for direction in [Direction::Inbound, Direction::Outbound] {
        for source in &addresses {
            for destination in &addresses {
                for &port in &ports {
                    for protocol in &protocols {
                        let p = Packet {
                            direction: Some(direction),
                            source: Some(source.clone()),
                            destination: Some(destination.clone()),
                            port: Some(port),
                            protocol: Some(protocol.clone()),
                        };
                        if proposal.decide(&p) == Decision::Allow && original.decide(&p) == Decision::Deny {
                            return Some(p);
                        }
                    }
                }
            }
        }
    }
    None
}
