//! The first detector: a rate rule over flow-log records.
//!
//! Named for what it is: a threshold on connections and bytes from one interface to one
//! external destination within any span of `span_s` seconds (the aggregation window). A
//! sliding span, because records carry their first-packet second, not their window, and
//! windows are not aligned to the minute. The anomaly model (issue: the
//! detector) replaces it; the pipeline around it (subscription, event, containment) stays.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::flowlog::{is_external, Action, FlowRecord, LogStatus};

/// What the detector reports itself as, in events and reports.
pub const RATE_RULE_NAME: &str = "rate-rule (first detector: connections/bytes per destination per window)";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RateRule {
    /// Distinct connections (source ports) to one external destination in one window.
    pub max_connections: u32,
    /// Bytes sent to one external destination in one window.
    pub max_bytes: u64,
    /// The span, in seconds, that counts as one window.
    pub span_s: i64,
}

impl Default for RateRule {
    fn default() -> Self {
        RateRule { max_connections: 8, max_bytes: 1 << 20, span_s: 60 }
    }
}

/// One anomalous (interface, destination, window).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub instance_id: Option<String>,
    pub interface_id: String,
    pub window_start: i64,
    pub destination: IpAddr,
    pub connections: u32,
    pub bytes: u64,
    pub reason: String,
}

#[derive(Default)]
struct Tally {
    /// (start second, source port, bytes) of each record.
    flows: Vec<(i64, u16, u64)>,
    instance_id: Option<String>,
}

impl Tally {
    /// The busiest span: (its first second, distinct connections, bytes).
    fn busiest(&mut self, span: i64) -> (i64, u32, u64) {
        self.flows.sort_unstable();
        let mut best = (0, 0, 0);
        let mut lo = 0;
        for hi in 0..self.flows.len() {
            while self.flows[hi].0 - self.flows[lo].0 >= span {
                lo += 1;
            }
            let slice = &self.flows[lo..=hi];
            let mut ports: Vec<u16> = slice.iter().map(|f| f.1).collect();
            ports.sort_unstable();
            ports.dedup();
            let bytes = slice.iter().map(|f| f.2).sum();
            let conns = ports.len() as u32;
            if (conns, bytes) > (best.1, best.2) {
                best = (self.flows[lo].0, conns, bytes);
            }
        }
        best
    }
}

impl RateRule {
    /// Findings for a batch of records, in a stable order (interface, destination).
    pub fn evaluate(&self, records: &[FlowRecord]) -> Vec<Finding> {
        let mut tallies: BTreeMap<(String, IpAddr), Tally> = BTreeMap::new();
        for r in records {
            let (Some(eni), Some(src), Some(dst), Some(start)) = (&r.interface_id, r.srcaddr, r.dstaddr, r.start) else {
                continue;
            };
            let outbound = !is_external(src) && is_external(dst);
            if r.action != Some(Action::Accept) || r.log_status != Some(LogStatus::Ok) || !outbound {
                continue;
            }
            let t = tallies.entry((eni.clone(), dst)).or_default();
            t.flows.push((start, r.srcport.unwrap_or(0), r.bytes.unwrap_or(0)));
            if t.instance_id.is_none() {
                t.instance_id = r.instance_id.clone();
            }
        }
        tallies
            .into_iter()
            .filter_map(|((eni, dst), mut t)| {
                let (window, conns, bytes) = t.busiest(self.span_s);
                let mut why = Vec::new();
                if conns >= self.max_connections {
                    why.push(format!("{conns} connections to {dst} in one window (threshold {})", self.max_connections));
                }
                if bytes >= self.max_bytes {
                    why.push(format!("{bytes} bytes to {dst} in one window (threshold {})", self.max_bytes));
                }
                (!why.is_empty()).then(|| Finding {
                    instance_id: t.instance_id,
                    interface_id: eni,
                    window_start: window,
                    destination: dst,
                    connections: conns,
                    bytes,
                    reason: why.join("; "),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(srcport: u16, dst: &str, bytes: u64, action: Action) -> FlowRecord {
        FlowRecord {
            interface_id: Some("eni-1".into()),
            instance_id: Some("i-1".into()),
            srcaddr: Some("10.42.1.10".parse().unwrap()),
            dstaddr: Some(dst.parse().unwrap()),
            srcport: Some(srcport),
            dstport: Some(80),
            bytes: Some(bytes),
            start: Some(1_767_225_610),
            action: Some(action),
            log_status: Some(LogStatus::Ok),
            ..Default::default()
        }
    }

    #[test]
    fn fires_on_many_connections_or_bytes_to_one_external_host_only() {
        let rule = RateRule::default();
        let beacon: Vec<_> = (0..12).map(|p| rec(40000 + p, "203.0.113.50", 16_000, Action::Accept)).collect();
        let f = rule.evaluate(&beacon);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].connections, 12);
        assert_eq!(f[0].instance_id.as_deref(), Some("i-1"));

        let spread: Vec<_> = (0..12).map(|p| rec(40000 + p, &format!("203.0.113.{p}"), 1000, Action::Accept)).collect();
        assert!(rule.evaluate(&spread).is_empty());
        let rejected: Vec<_> = (0..12).map(|p| rec(40000 + p, "203.0.113.50", 1000, Action::Reject)).collect();
        assert!(rule.evaluate(&rejected).is_empty());
        let internal: Vec<_> = (0..12).map(|p| rec(40000 + p, "10.42.1.20", 1000, Action::Accept)).collect();
        assert!(rule.evaluate(&internal).is_empty());
        assert_eq!(rule.evaluate(&[rec(1, "198.51.100.9", 5 << 20, Action::Accept)]).len(), 1);

        // Ten connections 5 s apart straddling a minute boundary are one window's worth.
        let straddling: Vec<_> = (0..10)
            .map(|i| FlowRecord { start: Some(1_767_225_630 + 5 * i as i64), ..rec(41000 + i, "203.0.113.50", 1000, Action::Accept) })
            .collect();
        assert_eq!(rule.evaluate(&straddling).len(), 1);
        // Ten connections 20 s apart: three a minute.
        let sparse: Vec<_> = (0..10)
            .map(|i| FlowRecord { start: Some(1_767_225_600 + 20 * i as i64), ..rec(42000 + i, "203.0.113.50", 1000, Action::Accept) })
            .collect();
        assert!(rule.evaluate(&sparse).is_empty(), "3 connections per minute stay under the threshold");
    }
}
