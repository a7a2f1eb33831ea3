//! What the anomaly model sees: one vector per network interface and flow-log window,
//! summarising the traffic the interface sent.
//!
//! Exfiltration shows as volume (bytes and packets out), fan-out (connections, distinct
//! destinations and ports, destinations the baseline never saw), failure (the share of
//! outbound flows rejected, as a scan produces) and rhythm (a beacon's evenly spaced
//! connections to one host). Counts and volumes enter the model as `ln(1 + x)`: exfiltration
//! is a matter of orders of magnitude, and the isolation forest's uniform split thresholds
//! then spread evenly over them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::flowlog::{is_external, Action, Direction, FlowRecord, LogStatus};

/// One feature: its name in models and alerts, what it means, whether it is log-scaled.
#[derive(Clone, Copy, Debug)]
pub struct FeatureSpec {
    pub name: &'static str,
    pub meaning: &'static str,
    pub log_scaled: bool,
}

const fn spec(name: &'static str, meaning: &'static str, log_scaled: bool) -> FeatureSpec {
    FeatureSpec { name, meaning, log_scaled }
}

/// The window features, in the order of the model's columns.
pub const WINDOW_FEATURES: [FeatureSpec; 10] = [
    spec("bytes_out", "bytes sent", true),
    spec("packets_out", "packets sent", true),
    spec("connections", "outbound flows", true),
    spec("destinations", "distinct destination addresses", true),
    spec("ports", "distinct destination ports", true),
    spec("new_destinations", "destinations never seen in the baseline", true),
    spec("reject_share", "share of outbound flows rejected", false),
    spec("top_destination_bytes", "bytes sent to the busiest destination", true),
    spec("top_destination_connections", "flows to the busiest destination", true),
    spec("periodicity", "regularity of connections to the busiest destination (1 = a metronome)", false),
];

pub const N_FEATURES: usize = WINDOW_FEATURES.len();
const NEW_DESTINATIONS: usize = 5;

/// One interface's traffic in one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowFeatures {
    pub interface_id: String,
    pub instance_id: Option<String>,
    /// Seconds since the epoch; windows are `window_s` long and aligned to it.
    pub window_start: i64,
    /// The features in natural units (bytes, counts, shares).
    pub raw: [f64; N_FEATURES],
    /// Every destination the interface sent to, sorted.
    pub destinations: Vec<IpAddr>,
    /// The destination that received the most bytes.
    pub top_destination: Option<IpAddr>,
    /// The flows behind it, labelled positive (for evaluation), if any was.
    #[serde(default)]
    pub labelled_positive: bool,
}

impl WindowFeatures {
    /// The model's input: log-scaled where the spec says so.
    pub fn vector(&self) -> [f64; N_FEATURES] {
        let mut v = self.raw;
        for (x, s) in v.iter_mut().zip(WINDOW_FEATURES.iter()) {
            if s.log_scaled {
                *x = x.max(0.0).ln_1p();
            }
        }
        v
    }

    /// Counts the destinations `known` does not hold as new.
    pub fn set_new_destinations(&mut self, known: &BTreeSet<IpAddr>) {
        self.raw[NEW_DESTINATIONS] = self.destinations.iter().filter(|d| !known.contains(d)).count() as f64;
    }
}

/// Whether a record is traffic the interface sent. v5 records say so; older formats are
/// judged by the addresses: from inside the VPC to the internet.
pub fn is_outbound(r: &FlowRecord) -> bool {
    match (r.flow_direction, r.srcaddr, r.dstaddr) {
        (Some(d), ..) => d == Direction::Egress,
        (None, Some(src), Some(dst)) => !is_external(src) && is_external(dst),
        _ => false,
    }
}

#[derive(Default)]
struct Tally {
    instance_id: Option<String>,
    bytes: u64,
    packets: u64,
    flows: u64,
    rejected: u64,
    ports: BTreeSet<u16>,
    /// Per destination: bytes, flows, flow start seconds.
    per_destination: BTreeMap<IpAddr, (u64, u64, Vec<i64>)>,
    positive: bool,
}

/// Groups records into (interface, window) tallies; one pass, memory per window.
pub struct WindowAggregator {
    window_s: i64,
    tallies: BTreeMap<(String, i64), Tally>,
}

impl WindowAggregator {
    pub fn new(window_s: i64) -> Self {
        WindowAggregator { window_s: window_s.max(1), tallies: BTreeMap::new() }
    }

    /// Adds one record (records that carry no traffic, or inbound ones, only mark the
    /// window as seen). `positive` labels it for evaluation.
    pub fn add(&mut self, r: &FlowRecord, positive: bool) {
        let (Some(eni), Some(start)) = (&r.interface_id, r.start) else { return };
        let window = start.div_euclid(self.window_s) * self.window_s;
        let t = self.tallies.entry((eni.clone(), window)).or_default();
        if t.instance_id.is_none() {
            t.instance_id = r.instance_id.clone();
        }
        t.positive |= positive;
        if r.log_status != Some(LogStatus::Ok) || !is_outbound(r) {
            return;
        }
        let Some(dst) = r.dstaddr else { return };
        t.flows += 1;
        if r.action == Some(Action::Reject) {
            t.rejected += 1;
            return;
        }
        let bytes = r.bytes.unwrap_or(0);
        t.bytes += bytes;
        t.packets += r.packets.unwrap_or(0);
        if let Some(p) = r.dstport {
            t.ports.insert(p);
        }
        let d = t.per_destination.entry(dst).or_default();
        d.0 += bytes;
        d.1 += 1;
        d.2.push(start);
    }

    /// The windows, in (interface, start) order.
    pub fn finish(self) -> Vec<WindowFeatures> {
        self.tallies
            .into_iter()
            .map(|((interface_id, window_start), t)| {
                let top = t.per_destination.iter().max_by_key(|(ip, (bytes, flows, _))| (*bytes, *flows, std::cmp::Reverse(**ip)));
                let (top_destination, top_bytes, top_flows, rhythm) = match top {
                    Some((ip, (bytes, flows, starts))) => (Some(*ip), *bytes, *flows, periodicity(starts)),
                    None => (None, 0, 0, 0.0),
                };
                let raw = [
                    t.bytes as f64,
                    t.packets as f64,
                    t.flows as f64,
                    t.per_destination.len() as f64,
                    t.ports.len() as f64,
                    0.0,
                    if t.flows == 0 { 0.0 } else { t.rejected as f64 / t.flows as f64 },
                    top_bytes as f64,
                    top_flows as f64,
                    rhythm,
                ];
                WindowFeatures {
                    interface_id,
                    instance_id: t.instance_id,
                    window_start,
                    raw,
                    destinations: t.per_destination.keys().copied().collect(),
                    top_destination,
                    labelled_positive: t.positive,
                }
            })
            .collect()
    }
}

/// 1 minus the coefficient of variation of the gaps between connection starts, floored at
/// 0; 0 with fewer than four connections (too few gaps to call a rhythm).
fn periodicity(starts: &[i64]) -> f64 {
    if starts.len() < 4 {
        return 0.0;
    }
    let mut s = starts.to_vec();
    s.sort_unstable();
    let gaps: Vec<f64> = s.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    if mean <= 0.0 {
        return 0.0;
    }
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
    (1.0 - var.sqrt() / mean).max(0.0)
}

/// The windows of a batch of records.
pub fn windows<'a>(records: impl IntoIterator<Item = &'a FlowRecord>, window_s: i64) -> Vec<WindowFeatures> {
    let mut agg = WindowAggregator::new(window_s);
    for r in records {
        agg.add(r, false);
    }
    agg.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(start: i64, srcport: u16, dst: &str, dstport: u16, bytes: u64, action: Action) -> FlowRecord {
        FlowRecord {
            interface_id: Some("eni-1".into()),
            instance_id: Some("i-1".into()),
            srcaddr: Some("10.42.1.10".parse().unwrap()),
            dstaddr: Some(dst.parse().unwrap()),
            srcport: Some(srcport),
            dstport: Some(dstport),
            packets: Some(bytes / 1000 + 1),
            bytes: Some(bytes),
            start: Some(start),
            action: Some(action),
            log_status: Some(LogStatus::Ok),
            ..Default::default()
        }
    }

    #[test]
    fn a_beacon_window_and_a_quiet_one() {
        let t0 = 1_767_225_600;
        let mut records: Vec<FlowRecord> = (0..12).map(|i| out(t0 + 5 * i, 40000 + i as u16, "203.0.113.50", 80, 16_000, Action::Accept)).collect();
        records.push(out(t0 + 3, 50000, "52.46.141.10", 443, 2400, Action::Accept));
        records.push(FlowRecord { flow_direction: Some(Direction::Egress), ..out(t0 + 4, 50001, "10.42.1.20", 22, 60, Action::Reject) });
        // Inbound traffic is not the interface's doing.
        records.push(FlowRecord { srcaddr: Some("45.83.64.12".parse().unwrap()), dstaddr: Some("10.42.1.10".parse().unwrap()), ..out(t0, 1, "10.0.0.1", 22, 60, Action::Reject) });
        records.push(out(t0 + 70, 50002, "52.46.141.10", 443, 2400, Action::Accept));
        let w = windows(&records, 60);
        assert_eq!(w.len(), 2);
        let beacon = &w[0];
        assert_eq!(beacon.window_start, t0);
        assert_eq!(beacon.raw[0], 12.0 * 16_000.0 + 2400.0);
        assert_eq!(beacon.raw[2], 14.0, "12 beacon flows, one to SSM, one rejected");
        assert_eq!(beacon.raw[3], 2.0);
        assert_eq!(beacon.raw[4], 2.0);
        assert!((beacon.raw[6] - 1.0 / 14.0).abs() < 1e-12);
        assert_eq!(beacon.top_destination, Some("203.0.113.50".parse().unwrap()));
        assert_eq!(beacon.raw[8], 12.0);
        assert_eq!(beacon.raw[9], 1.0, "every 5 s exactly");
        assert_eq!(w[1].raw[2], 1.0);
        assert_eq!(w[1].raw[9], 0.0);

        let mut b = beacon.clone();
        b.set_new_destinations(&BTreeSet::from(["52.46.141.10".parse().unwrap()]));
        assert_eq!(b.raw[NEW_DESTINATIONS], 1.0);
        assert!((b.vector()[2] - 15f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn direction_from_v5_field_or_addresses() {
        let mut r = out(0, 1, "203.0.113.1", 443, 1, Action::Accept);
        assert!(is_outbound(&r));
        r.flow_direction = Some(Direction::Ingress);
        assert!(!is_outbound(&r));
        r.flow_direction = None;
        r.srcaddr = Some("198.51.100.1".parse().unwrap());
        assert!(!is_outbound(&r));
        assert!(periodicity(&[0, 5, 10]) == 0.0);
        assert!(periodicity(&[0, 1, 9, 10, 30]) < 0.5);
    }
}
