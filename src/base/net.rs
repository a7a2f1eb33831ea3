//! Addresses and protocols as firewalls and flow logs write them.

use std::net::IpAddr;

/// The name of an IP protocol number where rules use one (IANA: 1 icmp, 6 tcp, 17 udp).
pub fn protocol_name(number: u8) -> Option<&'static str> {
    match number {
        1 => Some("icmp"),
        6 => Some("tcp"),
        17 => Some("udp"),
        _ => None,
    }
}

/// The netmask of an IPv4 prefix of `len` bits (`len` past 32 counts as 32).
pub fn ipv4_mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len.min(32))).unwrap_or(0)
}

/// Whether `ip` lies in `cidr` (`10.0.0.0/16`, `2001:db8::/32`); a bare address is a block
/// of one. An unreadable block, or one of the other address family, contains nothing.
pub fn cidr_contains(cidr: &str, ip: IpAddr) -> bool {
    let (net, bits) = match cidr.trim().split_once('/') {
        Some((net, bits)) => (net, bits.parse::<u32>().ok()),
        None => (cidr.trim(), None),
    };
    let Ok(net) = net.parse::<IpAddr>() else { return false };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let bits = bits.unwrap_or(32);
            if bits > 32 {
                return false;
            }
            let mask = ipv4_mask(bits as u8);
            (u32::from(n) & mask) == (u32::from(i) & mask)
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let bits = bits.unwrap_or(128);
            if bits > 128 {
                return false;
            }
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            (u128::from(n) & mask) == (u128::from(i) & mask)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_of_every_length() {
        assert_eq!(
            (ipv4_mask(0), ipv4_mask(8), ipv4_mask(24), ipv4_mask(32), ipv4_mask(40)),
            (0, 0xff00_0000, 0xffff_ff00, u32::MAX, u32::MAX)
        );
    }

    #[test]
    fn blocks_contain_their_addresses_and_nothing_of_the_other_family() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(cidr_contains("10.0.0.0/16", ip("10.0.255.1")));
        assert!(!cidr_contains("10.0.0.0/16", ip("10.1.0.1")));
        assert!(cidr_contains("0.0.0.0/0", ip("203.0.113.9")));
        assert!(cidr_contains("203.0.113.9", ip("203.0.113.9")));
        assert!(!cidr_contains("203.0.113.9", ip("203.0.113.8")));
        assert!(cidr_contains("::/0", ip("2001:db8::1")));
        assert!(!cidr_contains("0.0.0.0/0", ip("2001:db8::1")));
        assert!(!cidr_contains("10.0.0.0/33", ip("10.0.0.1")));
        assert!(!cidr_contains("any", ip("10.0.0.1")));
        assert_eq!(
            (protocol_name(6), protocol_name(17), protocol_name(1), protocol_name(47)),
            (Some("tcp"), Some("udp"), Some("icmp"), None)
        );
    }
}
