//! What the anomaly model sees: one vector per network interface and flow-log window,
//! summarising the traffic the interface sent.
//!
//! Direction first: a flow the interface opened is its own doing, and an answer to a
//! client who opened it is not. A web server answers ever-new clients all day; counted
//! as destinations they would drown any fan-out signal. So the fan-out features count
//! only flows the interface opened (the TCP flags say who sent the SYN where the log has
//! them; otherwise the ports: the side on a well-known or non-ephemeral port is the
//! server), and the bytes it sent answering others are a feature of their own.
//!
//! Destinations count by group (see [`crate::detect::destinations`]): AWS service
//! endpoints rotate inside published prefixes, so an address is new only when its
//! group is. Exfiltration shows as volume (bytes out, and bytes out to destinations
//! outside AWS's service ranges), fan-out (flows, destination groups, ports, groups the
//! baseline never saw), failure (the share of flows rejected, as a scan produces) and
//! rhythm (a beacon's evenly spaced connections to one host). Counts and volumes enter the
//! model as `ln(1 + x)`: exfiltration is a matter of orders of magnitude.

use std::collections::{HashMap as StdHashMap, HashSet as StdHashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::detect::destinations::Group;
use crate::formats::flowlog::{is_external, Action, Direction, FlowRecord, FlowRecordOf, LogFormat, LogStatus};

/// The Fx hash (rustc's): a multiply and a rotate per word. The maps it keys are filled
/// from our own parsing and only ever sorted out, never iterated in their order.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub type HashMap<K, V> = StdHashMap<K, V, BuildHasherDefault<FxHasher>>;
pub type HashSet<K> = StdHashSet<K, BuildHasherDefault<FxHasher>>;

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
pub const WINDOW_FEATURES: [FeatureSpec; 12] = [
    spec("bytes_out", "bytes sent out of the VPC on flows the interface opened", true),
    spec("external_bytes_out", "bytes sent on opened flows to the internet outside AWS's service ranges", true),
    spec("connections", "flows the interface opened", true),
    spec("destinations", "distinct destination groups (AWS service or /24)", true),
    spec("ports", "distinct destination ports", true),
    spec("new_destinations", "destination groups never seen in the baseline", true),
    spec("reject_share", "share of opened flows rejected", false),
    spec("top_destination_bytes", "bytes sent to the busiest destination", true),
    spec("top_destination_connections", "flows to the busiest destination", true),
    spec("periodicity", "regularity of connections to the busiest destination (1 = a metronome)", false),
    spec("response_bytes", "bytes sent answering flows others opened", true),
    spec("returning_windows", "windows in the last hour that went to this window's most revisited never-seen destination group", false),
];

pub const N_FEATURES: usize = WINDOW_FEATURES.len();

/// The features of one flow-log record, for ranking flows against each other.
pub const FLOW_FEATURES: [FeatureSpec; 9] = [
    spec("bytes", "bytes in the record", true),
    spec("packets", "packets in the record", true),
    spec("bytes_per_packet", "bytes per packet", true),
    spec("duration", "seconds from first to last packet", true),
    spec("dst_port", "destination port", true),
    spec("src_port", "source port", true),
    spec("protocol", "IANA protocol number", false),
    spec("rejected", "1 when the record was rejected", false),
    spec("outbound", "1 when the interface sent it", false),
];

/// A record's flow features (log-scaled where the spec says); `None` for a record
/// without traffic (NODATA, SKIPDATA).
pub fn flow_vector<S>(r: &FlowRecordOf<S>) -> Option<[f64; FLOW_FEATURES.len()]> {
    if r.log_status != Some(LogStatus::Ok) {
        return None;
    }
    let (bytes, packets) = (r.bytes.unwrap_or(0) as f64, r.packets.unwrap_or(0) as f64);
    let mut v = [
        bytes,
        packets,
        if packets > 0.0 { bytes / packets } else { 0.0 },
        r.end.zip(r.start).map(|(e, s)| (e - s).max(0) as f64).unwrap_or(0.0),
        f64::from(r.dstport.unwrap_or(0)),
        f64::from(r.srcport.unwrap_or(0)),
        f64::from(r.protocol.unwrap_or(0)),
        f64::from(u8::from(r.action == Some(Action::Reject))),
        f64::from(u8::from(is_outbound(r))),
    ];
    for (x, s) in v.iter_mut().zip(FLOW_FEATURES.iter()) {
        if s.log_scaled {
            *x = x.ln_1p();
        }
    }
    Some(v)
}
/// Columns other modules read by position.
pub const CONNECTIONS: usize = 2;
pub const NEW_DESTINATIONS: usize = 5;
pub const PERIODICITY: usize = 9;
pub const RESPONSE_BYTES: usize = 10;
/// Set from the detector's memory across windows ([`crate::detect::memory`]), not from
/// the window alone.
pub const RETURNING_WINDOWS: usize = 11;

/// One interface's traffic in one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowFeatures {
    pub interface_id: String,
    pub instance_id: Option<String>,
    /// Seconds since the epoch; windows are `window_s` long and aligned to it.
    pub window_start: i64,
    /// The features in natural units (bytes, counts, shares).
    pub raw: [f64; N_FEATURES],
    /// Every destination group the interface opened flows to, sorted.
    pub groups: Vec<Group>,
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

    /// Counts the destination groups `known` does not hold as new.
    pub fn set_new_destinations(&mut self, known: &impl Fn(&Group) -> bool) {
        self.raw[NEW_DESTINATIONS] = self.groups.iter().filter(|g| !known(g)).count() as f64;
    }

    /// The window's hour of the day, UTC.
    pub fn hour(&self) -> u8 {
        (self.window_start.div_euclid(3600).rem_euclid(24)) as u8
    }
}

/// TCP flags as flow logs report them, OR-ed over the aggregation interval: the opener's
/// record carries SYN (2), the answerer's SYN-ACK (18); ACK is reported only with SYN.
const SYN: u16 = 0x02;
const SYN_ACK: u16 = 0x12;
/// Where Linux picks ephemeral ports (`ip_local_port_range`), and Windows from 49152.
const EPHEMERAL: u16 = 32768;

/// Whether the interface opened the flow of a record it sent: by its TCP flags where the
/// log has them (SYN without ACK: it opened; SYN-ACK: it answered), otherwise by the
/// ports (the server sits on a well-known port, or at least below the ephemeral range).
/// A record with neither (ICMP, mid-flow without flags, two high ports) counts as opened:
/// the interface's doing unless something says otherwise.
pub fn opened_by_sender(protocol: Option<u8>, flags: Option<u16>, srcport: Option<u16>, dstport: Option<u16>) -> bool {
    if protocol == Some(6) {
        match flags.map(|f| f & SYN_ACK) {
            Some(SYN) => return true,
            Some(SYN_ACK) => return false,
            _ => {}
        }
    }
    match (srcport, dstport) {
        (Some(s), Some(d)) if s != 0 && d != 0 => {
            let (s_server, d_server) = (s < 1024 || (s < EPHEMERAL && d >= EPHEMERAL), d < 1024 || (d < EPHEMERAL && s >= EPHEMERAL));
            !(s_server && !d_server)
        }
        _ => true,
    }
}

/// Whether a record is traffic the interface sent. v5 records say so; older formats are
/// judged by the addresses: from inside the VPC to the internet.
pub fn is_outbound<S>(r: &FlowRecordOf<S>) -> bool {
    match (r.flow_direction, r.srcaddr, r.dstaddr) {
        (Some(d), ..) => d == Direction::Egress,
        (None, Some(src), Some(dst)) => !is_external(src) && is_external(dst),
        _ => false,
    }
}

/// Flow starts kept per destination and window for the periodicity feature: the earliest
/// ones, in order, so the result does not depend on the order records arrive in. Eight
/// starts make seven gaps, plenty to tell a beacon from chance; kept inline, so a
/// destination costs no allocation.
const MAX_STARTS: usize = 8;

#[derive(Default)]
struct Destination {
    bytes: u64,
    flows: u64,
    starts: [i64; MAX_STARTS],
    kept: usize,
}

impl Destination {
    fn start(&mut self, start: i64) {
        let kept = &mut self.starts[..self.kept];
        let at = kept.partition_point(|&s| s <= start);
        if at == MAX_STARTS {
            return;
        }
        let end = (self.kept + 1).min(MAX_STARTS);
        self.starts.copy_within(at..end - 1, at + 1);
        self.starts[at] = start;
        self.kept = end;
    }
}

/// A resource id kept inline (ENI and instance ids are 21 and 19 characters), so a flow
/// moves between threads without allocating or sharing a reference count; longer text,
/// which only odd input has, goes to the heap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Id {
    Inline { len: u8, bytes: [u8; 30] },
    Heap(Box<str>),
}

impl Id {
    pub fn new(text: &str) -> Id {
        if text.len() <= 30 {
            let mut bytes = [0u8; 30];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            Id::Inline { len: text.len() as u8, bytes }
        } else {
            Id::Heap(text.into())
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Id::Inline { len, bytes } => &bytes[..*len as usize],
            Id::Heap(s) => s.as_bytes(),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Id::Inline { len, bytes } => std::str::from_utf8(&bytes[..*len as usize]).expect("copied from a str"),
            Id::Heap(s) => s,
        }
    }
}

/// What the window features need of one record: a few numbers and the ids.
#[derive(Clone, Debug)]
pub struct Flow {
    pub interface_id: Id,
    pub instance_id: Option<Id>,
    pub start: i64,
    pub dst: Option<IpAddr>,
    pub dstport: Option<u16>,
    pub bytes: u64,
    pub packets: u64,
    /// Sent by the interface, in a record with data.
    pub outbound: bool,
    /// The interface opened the flow (not an answer to a peer).
    pub opened: bool,
    pub rejected: bool,
}

impl Flow {
    /// The flow of a record; `None` for one without an interface or a start time.
    pub fn of<S: AsRef<str>>(r: &FlowRecordOf<S>) -> Option<Flow> {
        let (Some(eni), Some(start)) = (&r.interface_id, r.start) else { return None };
        Some(Flow {
            interface_id: Id::new(eni.as_ref()),
            instance_id: r.instance_id.as_ref().map(|i| Id::new(i.as_ref())),
            start,
            dst: r.dstaddr,
            dstport: r.dstport,
            bytes: r.bytes.unwrap_or(0),
            packets: r.packets.unwrap_or(0),
            outbound: r.log_status == Some(LogStatus::Ok) && is_outbound(r),
            opened: opened_by_sender(r.protocol, r.tcp_flags, r.srcport, r.dstport),
            rejected: r.action == Some(Action::Reject),
        })
    }
}

impl Tally {
    /// Empty, keeping the maps' capacity.
    fn clear(&mut self) {
        let (mut ports, mut per_destination) = (std::mem::take(&mut self.ports), std::mem::take(&mut self.per_destination));
        ports.clear();
        per_destination.clear();
        *self = Tally { ports, per_destination, ..Tally::default() };
    }
}

#[derive(Default)]
struct Tally {
    instance_id: Option<Box<str>>,
    response_bytes: u64,
    flows: u64,
    rejected: u64,
    ports: HashSet<u16>,
    per_destination: HashMap<IpAddr, Destination>,
    positive: bool,
}

/// The start of the detector window a flow starting at `start` (epoch seconds) falls in:
/// windows of `window_s` seconds from the epoch, so every reader of a record agrees.
pub fn window_start(start: i64, window_s: i64) -> i64 {
    start.div_euclid(window_s) * window_s
}

/// Groups records into (interface, window) tallies in one pass. Hash maps for speed; no
/// order is ever read from them: what leaves is sorted.
///
/// Streams: records come roughly in time order (CloudWatch Logs orders each interface's
/// by ingestion), so a window more than [`LATENESS_WINDOWS`] windows behind the newest
/// record seen is complete, and [`WindowAggregator::drain_closed`] hands it out and forgets
/// it. Memory then holds only the last few minutes, however long the input. A record later
/// than that starts a new tally for its window, scored on its own.
pub struct WindowAggregator {
    window_s: i64,
    /// Each interface seen, with its open windows; `index` finds it by id, and `last`
    /// remembers the previous record's (records come in runs of one interface).
    interfaces: Vec<(Box<str>, HashMap<i64, Tally>)>,
    index: HashMap<Box<[u8]>, usize>,
    last: usize,
    newest: i64,
    /// Emptied tallies whose maps keep their capacity, for the next windows.
    spare: Vec<Tally>,
}

/// Emptied tallies kept for reuse at most.
const SPARE_TALLIES: usize = 4096;

/// How far behind the newest record a window may still receive records.
pub const LATENESS_WINDOWS: i64 = 10;

impl WindowAggregator {
    pub fn new(window_s: i64) -> Self {
        WindowAggregator {
            window_s: window_s.max(1),
            interfaces: Vec::new(),
            index: HashMap::default(),
            last: usize::MAX,
            newest: i64::MIN,
            spare: Vec::new(),
        }
    }

    /// The windows that can no longer change, in (interface, start) order.
    pub fn drain_closed(&mut self) -> Vec<WindowFeatures> {
        let horizon = self.newest.saturating_sub((LATENESS_WINDOWS + 1) * self.window_s);
        let mut closed = Vec::new();
        for (eni, windows) in &mut self.interfaces {
            let done: Vec<i64> = windows.keys().copied().filter(|&w| w <= horizon).collect();
            closed.extend(done.into_iter().map(|w| ((eni.clone(), w), windows.remove(&w).expect("listed above"))));
        }
        let features = features_of(&mut closed);
        for (_, mut t) in closed {
            if self.spare.len() < SPARE_TALLIES {
                t.clear();
                self.spare.push(t);
            }
        }
        features
    }

    fn tally(&mut self, eni: &Id, window: i64) -> &mut Tally {
        let id = eni.as_bytes();
        let same = self.interfaces.get(self.last).is_some_and(|(name, _)| name.as_bytes() == id);
        if !same {
            self.last = match self.index.get(id) {
                Some(&i) => i,
                None => {
                    self.interfaces.push((eni.as_str().into(), HashMap::default()));
                    self.index.insert(id.into(), self.interfaces.len() - 1);
                    self.interfaces.len() - 1
                }
            };
        }
        let spare = &mut self.spare;
        self.interfaces[self.last].1.entry(window).or_insert_with(|| spare.pop().unwrap_or_default())
    }

    /// Adds one record (records that carry no traffic, or inbound ones, only mark the
    /// window as seen). `positive` labels it for evaluation.
    pub fn add(&mut self, r: &FlowRecord, positive: bool) {
        if let Some(flow) = Flow::of(r) {
            self.add_flow(&flow, positive);
        }
    }

    /// [`WindowAggregator::add`] for a record already reduced to its flow.
    pub fn add_flow(&mut self, f: &Flow, positive: bool) {
        let window = window_start(f.start, self.window_s);
        self.newest = self.newest.max(window);
        let t = self.tally(&f.interface_id, window);
        // The least instance id, so that the order records come in does not matter.
        if let Some(id) = &f.instance_id {
            let id = id.as_str();
            if t.instance_id.as_deref().is_none_or(|mine| id < mine) {
                t.instance_id = Some(id.into());
            }
        }
        t.positive |= positive;
        let (true, Some(dst)) = (f.outbound, f.dst) else { return };
        if !f.opened {
            if !f.rejected {
                t.response_bytes += f.bytes;
            }
            return;
        }
        t.flows += 1;
        if f.rejected {
            t.rejected += 1;
            return;
        }
        if let Some(p) = f.dstport {
            t.ports.insert(p);
        }
        let d = t.per_destination.entry(dst).or_default();
        d.bytes += f.bytes;
        d.flows += 1;
        d.start(f.start);
    }

    /// The windows, in (interface, start) order.
    pub fn finish(self) -> Vec<WindowFeatures> {
        let mut tallies: Vec<((Box<str>, i64), Tally)> =
            self.interfaces.into_iter().flat_map(|(eni, windows)| windows.into_iter().map(move |(w, t)| ((eni.clone(), w), t))).collect();
        features_of(&mut tallies)
    }
}

fn features_of(tallies: &mut [((Box<str>, i64), Tally)]) -> Vec<WindowFeatures> {
    tallies.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    tallies
        .iter()
        .map(|((interface_id, window_start), t)| {
            let top = t.per_destination.iter().max_by_key(|(ip, d)| (d.bytes, d.flows, std::cmp::Reverse(**ip)));
            let (top_destination, top_bytes, top_flows, rhythm) = match top {
                Some((ip, d)) => (Some(*ip), d.bytes, d.flows, periodicity(&d.starts[..d.kept])),
                None => (None, 0, 0, 0.0),
            };
            // Bytes count where they leave the VPC: a neighbour in the subnet is no
            // exfiltration, and a web server's database traffic grows with its load.
            let mut groups: Vec<Group> = Vec::with_capacity(t.per_destination.len());
            let (mut public_bytes, mut external_bytes) = (0u64, 0u64);
            for (ip, d) in &t.per_destination {
                let g = Group::of(*ip);
                if is_external(*ip) {
                    public_bytes += d.bytes;
                    if !g.is_aws_service() {
                        external_bytes += d.bytes;
                    }
                }
                groups.push(g);
            }
            groups.sort_unstable();
            groups.dedup();
            let raw = [
                public_bytes as f64,
                external_bytes as f64,
                t.flows as f64,
                groups.len() as f64,
                t.ports.len() as f64,
                0.0,
                if t.flows == 0 { 0.0 } else { t.rejected as f64 / t.flows as f64 },
                top_bytes as f64,
                top_flows as f64,
                rhythm,
                t.response_bytes as f64,
                0.0,
            ];
            WindowFeatures {
                interface_id: interface_id.to_string(),
                instance_id: t.instance_id.as_ref().map(|i| i.to_string()),
                window_start: *window_start,
                raw,
                groups,
                top_destination,
                labelled_positive: t.positive,
            }
        })
        .collect()
}

/// 1 minus the coefficient of variation of the gaps between connection starts, floored at
/// 0; 0 with fewer than four connections (too few gaps to call a rhythm).
fn periodicity(starts: &[i64]) -> f64 {
    if starts.len() < 4 {
        return 0.0;
    }
    debug_assert!(starts.is_sorted());
    let gaps: Vec<f64> = starts.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    if mean <= 0.0 {
        return 0.0;
    }
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
    (1.0 - var.sqrt() / mean).max(0.0)
}

/// The windows of flow-log lines in `format`, as a detector function receives them from
/// its subscription (lines that do not parse are left out).
pub fn windows_of_lines<'a>(lines: impl IntoIterator<Item = &'a str>, format: &LogFormat, window_s: i64) -> Vec<WindowFeatures> {
    let mut agg = WindowAggregator::new(window_s);
    for r in lines.into_iter().filter_map(|l| format.read(l).ok().flatten()) {
        agg.add(&r, false);
    }
    agg.finish()
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
pub(crate) mod tests {
    use super::*;

    /// An outbound record from the lab's usual interface, for tests here and beside.
    pub(crate) fn out(start: i64, srcport: u16, dst: &str, dstport: u16, bytes: u64, action: Action) -> FlowRecord {
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

    use std::collections::BTreeSet;

    #[test]
    fn a_beacon_window_and_a_quiet_one() {
        let t0 = 1_767_225_600;
        let mut records: Vec<FlowRecord> =
            (0..12).map(|i| out(t0 + 5 * i, 40000 + i as u16, "203.0.113.50", 80, 16_000, Action::Accept)).collect();
        records.push(out(t0 + 3, 50000, "52.46.141.10", 443, 2400, Action::Accept));
        records.push(FlowRecord { flow_direction: Some(Direction::Egress), ..out(t0 + 4, 50001, "10.42.1.20", 22, 60, Action::Reject) });
        // Inbound traffic is not the interface's doing.
        records.push(FlowRecord {
            srcaddr: Some("45.83.64.12".parse().unwrap()),
            dstaddr: Some("10.42.1.10".parse().unwrap()),
            ..out(t0, 1, "10.0.0.1", 22, 60, Action::Reject)
        });
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

        assert_eq!(beacon.raw[1], 12.0 * 16_000.0, "the SSM poll went to an AWS service range");

        let mut b = beacon.clone();
        // Another address of the same service is no new destination.
        let known: BTreeSet<Group> = BTreeSet::from([Group::of("52.46.141.99".parse().unwrap())]);
        b.set_new_destinations(&|g| known.contains(g));
        assert_eq!(b.raw[NEW_DESTINATIONS], 1.0);
        assert!((b.vector()[2] - 15f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn who_opened_a_flow_by_flags_then_ports() {
        // Flags decide where the log has them: SYN alone opens, SYN-ACK answers.
        assert!(opened_by_sender(Some(6), Some(0x02), Some(443), Some(50000)));
        assert!(!opened_by_sender(Some(6), Some(0x13), Some(40000), Some(443)));
        // Otherwise the ports: the server's side is the well-known or non-ephemeral one.
        assert!(opened_by_sender(Some(6), Some(0), Some(40000), Some(443)));
        assert!(!opened_by_sender(Some(6), None, Some(443), Some(51000)));
        assert!(!opened_by_sender(Some(6), None, Some(8080), Some(40000)));
        assert!(opened_by_sender(Some(6), None, Some(40000), Some(4444)));
        assert!(opened_by_sender(Some(1), None, Some(0), Some(0)));

        // A web server's answers are response bytes, not destinations.
        let t0 = 1_767_225_600;
        let answers: Vec<FlowRecord> =
            (0..50).map(|i| out(t0 + i, 443, &format!("81.2.{i}.9"), 50000 + i as u16, 48_000, Action::Accept)).collect();
        let w = windows(&answers, 60);
        assert_eq!((w[0].raw[CONNECTIONS], w[0].raw[RESPONSE_BYTES]), (0.0, 50.0 * 48_000.0));
        assert!(w[0].groups.is_empty());
    }

    #[test]
    fn flow_features_of_a_record() {
        let r = FlowRecord { end: Some(1010), packets: Some(10), ..out(1000, 40000, "203.0.113.9", 443, 15_000, Action::Accept) };
        let v = flow_vector(&r).unwrap();
        assert_eq!(v[0], 15_000f64.ln_1p());
        assert_eq!(v[2], 1500f64.ln_1p());
        assert_eq!(v[3], 10f64.ln_1p());
        assert_eq!((v[7], v[8]), (0.0, 1.0));
        assert!(flow_vector(&FlowRecord { log_status: Some(LogStatus::NoData), ..r }).is_none());
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
    }

    #[test]
    fn closed_windows_are_handed_out_once_time_moves_past_them() {
        let t0 = 1_767_225_600;
        let mut agg = WindowAggregator::new(60);
        for i in 0..30 {
            agg.add(&out(t0 + 60 * i, 40000, "203.0.113.1", 443, 100, Action::Accept), false);
        }
        // Windows more than the lateness (10 windows) behind the newest record are done.
        let closed = agg.drain_closed();
        assert_eq!(closed.len(), 19);
        assert_eq!(closed[0].window_start, t0);
        assert!(agg.drain_closed().is_empty());
        let rest = agg.finish();
        assert_eq!(rest.len(), 11);
        assert_eq!(rest[0].window_start, t0 + 60 * 19);
    }
}
