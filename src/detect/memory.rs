//! Memory across windows: which never-seen destination groups an interface came back to
//! over the last hour.
//!
//! Window by window, a beacon or a drip to one never-seen network looks like a web
//! server's own calls to an API behind a CDN: one new network, a few kilobytes. What
//! tells them apart is persistence: the API's calls land on ever-different networks,
//! the implant's on the same one, window after window. A window alone cannot show that,
//! so the detector keeps this small memory between invocations (where it lives is the
//! caller's business: the detector function loads and saves it through its API).
//!
//! The memory is a set of window starts, so a batch delivered twice (a retried
//! invocation) or out of order leaves the same memory. Two invocations racing on one
//! interface can lose each other's entries; the feature then undercounts by a window,
//! which delays a detection and never invents one.
//!
//! It also keeps the lines of the last minutes' windows. A flow log's aggregation
//! intervals do not start on the minute, and each is delivered after a delay of its own
//! (one to fifteen minutes), so one window's records often arrive in two deliveries. Scored
//! batch by batch, such a window was scored as two halves, each under what the model had
//! learned from whole windows: an HTTP beacon of twelve posts a minute passed as two of six.
//! With the lines kept, a late delivery rescores the window whole.
//!
//! Only how often, not how much: bytes to a never-seen network were tried as a second
//! feature, and most windows of a baseline send nothing new, so its tail had nothing to
//! fit and two kilobytes to a new CDN edge isolated a server (an allow-list under
//! another name). Volume stays with the per-window features.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::detect::destinations::Group;
use crate::detect::features::{window_start, WindowFeatures, RETURNING_WINDOWS};
use crate::formats::flowlog::{LogFormat, LogStatus};

/// How far back the memory looks.
pub const HORIZON_S: i64 = 3600;
/// Never-seen groups remembered per interface at most (the least recently seen go
/// first): a spray over thousands of networks must not grow the memory without bound,
/// and the fan-out features see a spray anyway.
const MAX_GROUPS: usize = 64;
/// Interfaces remembered at most (the least recently seen go first).
const MAX_INTERFACES: usize = 64;

/// How long a window's lines are kept for its late records, behind the interface's
/// newest window: flow-log delivery takes 60 to 900 s after an interval ends
/// (`assets/latency.toml`), so two deliveries of one window are at most that far apart.
pub const ASSEMBLY_S: i64 = 900;
/// Lines kept per interface at most (the oldest windows go first): about a quarter of an
/// hour of a server opening 20 flows a second. A busier one has its windows scored in
/// parts again, as without the memory.
const MAX_PENDING_LINES: usize = 20_000;

/// Per interface, per never-seen destination group, the windows (their starts) that
/// sent to it; and per interface and window, the lines delivered so far.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    interfaces: BTreeMap<String, BTreeMap<Group, BTreeSet<i64>>>,
    /// A memory saved before the lines were kept loads with none.
    #[serde(default)]
    pending: BTreeMap<String, BTreeMap<i64, BTreeSet<String>>>,
    /// Per interface, the windows already announced, kept as long as their lines: a window
    /// rescored whole after an alert on its first part is not announced again.
    #[serde(default)]
    alerted: BTreeMap<String, BTreeSet<i64>>,
}

impl Memory {
    /// Reads a memory as [`Memory::to_json`] wrote it.
    pub fn from_json(text: &[u8]) -> Result<Memory, String> {
        serde_json::from_slice(text).map_err(|e| format!("not a detector memory: {e}"))
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a memory serializes")
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.interfaces.is_empty() && self.pending.is_empty() && self.alerted.is_empty()
    }

    /// Whether the interface's window was announced already.
    pub fn alerted(&self, interface: &str, window_start: i64) -> bool {
        self.alerted.get(interface).is_some_and(|w| w.contains(&window_start))
    }

    /// Remembers that the interface's window was announced (once the announcement is out:
    /// a batch whose announcement failed is retried, and must announce again).
    pub fn mark_alerted(&mut self, interface: &str, window_start: i64) {
        self.alerted.entry(interface.to_string()).or_default().insert(window_start);
        self.forget_old_lines();
    }

    /// The lines to score for a delivered batch: for every window the batch holds records
    /// of, all its lines delivered so far (this batch's among them, each once), and the
    /// lines that belong to no window (no interface or start, no data, unreadable: the
    /// reader counts or skips them as before). A batch delivered twice gives the same
    /// lines and leaves the same memory.
    pub fn assemble(&mut self, lines: &[&str], format: &LogFormat, window_s: i64) -> Vec<String> {
        let mut touched: BTreeSet<(String, i64)> = BTreeSet::new();
        let mut out: Vec<String> = Vec::new();
        for line in lines {
            match format.read(line) {
                Ok(Some(r)) if r.log_status == Some(LogStatus::Ok) && window_s > 0 => match (r.interface_id, r.start) {
                    (Some(eni), Some(start)) => {
                        let window = window_start(start, window_s);
                        self.pending.entry(eni.clone()).or_default().entry(window).or_default().insert((*line).to_string());
                        touched.insert((eni, window));
                    }
                    _ => out.push((*line).to_string()),
                },
                _ => out.push((*line).to_string()),
            }
        }
        for (eni, window) in &touched {
            out.extend(self.pending[eni][window].iter().cloned());
        }
        self.forget_old_lines();
        out
    }

    /// Drops the windows past [`ASSEMBLY_S`] behind each interface's newest, then the
    /// oldest windows past [`MAX_PENDING_LINES`], then the least recently seen interfaces
    /// past the cap; then the marks of announced windows whose lines went.
    fn forget_old_lines(&mut self) {
        for windows in self.pending.values_mut() {
            let newest = windows.keys().next_back().copied().unwrap_or(i64::MIN);
            windows.retain(|&start, _| start > newest.saturating_sub(ASSEMBLY_S));
            let mut kept: usize = windows.values().map(BTreeSet::len).sum();
            while kept > MAX_PENDING_LINES && windows.len() > 1 {
                let (_, oldest) = windows.pop_first().expect("more than one window");
                kept -= oldest.len();
            }
        }
        if self.pending.len() > MAX_INTERFACES {
            let mut by_recency: Vec<(i64, String)> =
                self.pending.iter().map(|(eni, w)| (w.keys().next_back().copied().unwrap_or(i64::MIN), eni.clone())).collect();
            by_recency.sort();
            for (_, eni) in &by_recency[..self.pending.len() - MAX_INTERFACES] {
                self.pending.remove(eni);
            }
        }
        // A window is announced once as long as its lines are kept: with them gone, so is
        // the mark (a later delivery for it is all the detector would see of it).
        for (eni, windows) in self.alerted.iter_mut() {
            let kept = self.pending.get(eni);
            windows.retain(|start| kept.is_some_and(|p| p.contains_key(start)));
        }
        self.alerted.retain(|_, windows| !windows.is_empty());
    }

    /// Remembers the windows' never-seen groups (`is_new` says which are) and sets each
    /// window's returning feature from what the memory holds within the horizon up to
    /// and including the window: the most windows any of its never-seen groups was sent
    /// to. Only groups the window itself sent to count, so an alert's window holds the
    /// flows it is about. Windows are taken in (interface, start) order whatever order
    /// they come in.
    pub fn recall_and_remember(&mut self, windows: &mut [WindowFeatures], is_new: &impl Fn(&Group) -> bool) {
        let mut order: Vec<usize> = (0..windows.len()).collect();
        order.sort_by(|&a, &b| {
            (&windows[a].interface_id, windows[a].window_start).cmp(&(&windows[b].interface_id, windows[b].window_start))
        });
        for i in order {
            let w = &mut windows[i];
            let start = w.window_start;
            let groups = self.interfaces.entry(w.interface_id.clone()).or_default();
            let mut most = 0usize;
            for g in w.groups.iter().filter(|g| is_new(g)) {
                let seen = groups.entry(*g).or_default();
                seen.insert(start);
                most = most.max(seen.range(start - HORIZON_S + 1..=start).count());
            }
            w.raw[RETURNING_WINDOWS] = most as f64;
        }
        self.forget_old();
    }

    /// Drops what lies beyond the horizon of each interface's newest window, and the least
    /// recently seen groups and interfaces past the caps.
    fn forget_old(&mut self) {
        let mut last_seen: Vec<(i64, String)> = Vec::new();
        for (eni, groups) in &mut self.interfaces {
            let newest = groups.values().filter_map(|s| s.last().copied()).max().unwrap_or(i64::MIN);
            let cutoff = newest.saturating_sub(HORIZON_S);
            for seen in groups.values_mut() {
                seen.retain(|&start| start > cutoff);
            }
            groups.retain(|_, seen| !seen.is_empty());
            if groups.len() > MAX_GROUPS {
                let mut by_recency: Vec<(i64, Group)> = groups.iter().map(|(g, s)| (s.last().copied().unwrap_or(i64::MIN), *g)).collect();
                by_recency.sort();
                for (_, g) in &by_recency[..groups.len() - MAX_GROUPS] {
                    groups.remove(g);
                }
            }
            last_seen.push((newest, eni.clone()));
        }
        self.interfaces.retain(|_, groups| !groups.is_empty());
        if self.interfaces.len() > MAX_INTERFACES {
            last_seen.sort();
            let excess = self.interfaces.len() - MAX_INTERFACES;
            for (_, eni) in last_seen.iter().filter(|(_, e)| self.interfaces.contains_key(e)).take(excess).cloned().collect::<Vec<_>>() {
                self.interfaces.remove(&eni);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::features::N_FEATURES;

    fn window(start: i64, groups: &[&str]) -> WindowFeatures {
        let mut gs: Vec<Group> = groups.iter().map(|ip| Group::of(ip.parse().unwrap())).collect();
        gs.sort();
        WindowFeatures {
            interface_id: "eni-1".into(),
            instance_id: Some("i-1".into()),
            window_start: start,
            raw: [0.0; N_FEATURES],
            groups: gs,
            top_destination: None,
            labelled_positive: false,
        }
    }

    #[test]
    fn the_same_new_network_window_after_window_counts_and_ever_new_ones_do_not() {
        let all_new = |_: &Group| true;
        // A beacon to 203.0.113.0/24 every minute; an API call to a different /24 each time.
        let mut ws: Vec<WindowFeatures> = (0..10).map(|i| window(i * 60, &["203.0.113.200", &format!("151.101.{i}.7")])).collect();
        // Delivered in two batches: counted across them, and the same memory in either
        // order.
        let (a, b) = ws.split_at_mut(5);
        let mut in_order = Memory::default();
        in_order.recall_and_remember(a, &all_new);
        in_order.recall_and_remember(b, &all_new);
        assert_eq!(b[4].raw[RETURNING_WINDOWS], 10.0, "ten windows to the beacon's network");
        let mut reversed = Memory::default();
        reversed.recall_and_remember(b, &all_new);
        reversed.recall_and_remember(a, &all_new);
        assert_eq!(reversed, in_order);
        let mut m2 = Memory::default();
        m2.recall_and_remember(&mut ws, &all_new);
        assert_eq!(ws[0].raw[RETURNING_WINDOWS], 1.0);
        assert_eq!(ws[9].raw[RETURNING_WINDOWS], 10.0);
        // A retried batch leaves the same memory.
        let before = m2.clone();
        m2.recall_and_remember(&mut ws[3..6], &all_new);
        assert_eq!(m2, before);
        // Known groups are not remembered at all.
        let mut known = Memory::default();
        known.recall_and_remember(&mut ws, &|_| false);
        assert!(known.is_empty());
        assert_eq!(ws[9].raw[RETURNING_WINDOWS], 0.0);
    }

    #[test]
    fn lines_are_kept_a_quarter_of_an_hour_and_no_more_than_the_cap() {
        use crate::formats::flowlog::{Action, LAB_LOG_FORMAT};
        let format = LogFormat::parse(LAB_LOG_FORMAT).unwrap();
        let line = |start: i64, port: u16| {
            format.write(&crate::detect::features::tests::out(start, port, "203.0.113.9", 443, 900, Action::Accept))
        };
        let mut m = Memory::default();
        let (a, b) = (line(10, 40_000), line(50, 40_001));
        assert_eq!(m.assemble(&[a.as_str()], &format, 60), vec![a.clone()]);
        // The window's second delivery brings the first's line back, once; so does a retry.
        assert_eq!(m.assemble(&[b.as_str()], &format, 60), vec![a.clone(), b.clone()]);
        assert_eq!(m.assemble(&[b.as_str()], &format, 60), vec![a.clone(), b.clone()]);
        // A line no window holds passes through unkept.
        assert_eq!(m.assemble(&["garbage"], &format, 60), vec!["garbage".to_string()]);
        // Past the assembly time behind the newest window, a window's lines are gone.
        let late = line(ASSEMBLY_S + 60, 40_002);
        m.assemble(&[late.as_str()], &format, 60);
        assert_eq!(m.assemble(&[b.as_str()], &format, 60), vec![b.clone()]);
        // A flood keeps at most the cap, newest windows first.
        let flood: Vec<String> = (0..MAX_PENDING_LINES as i64 + 500).map(|i| line(2 * ASSEMBLY_S + i / 100, (i % 20_000) as u16 + 30_000)).collect();
        let refs: Vec<&str> = flood.iter().map(String::as_str).collect();
        m.assemble(&refs, &format, 60);
        assert!(m.pending["eni-1"].values().map(BTreeSet::len).sum::<usize>() <= MAX_PENDING_LINES);
        assert_eq!(Memory::from_json(&m.to_json()).unwrap(), m);
        // A memory saved before lines were kept still loads.
        assert!(Memory::from_json(br#"{"interfaces":{}}"#).unwrap().is_empty());
    }

    #[test]
    fn an_announced_window_is_remembered_as_long_as_its_lines() {
        use crate::formats::flowlog::{Action, LAB_LOG_FORMAT};
        let format = LogFormat::parse(LAB_LOG_FORMAT).unwrap();
        let line = |start: i64| format.write(&crate::detect::features::tests::out(start, 40_000, "203.0.113.9", 443, 900, Action::Accept));
        let mut m = Memory::default();
        m.assemble(&[line(10).as_str()], &format, 60);
        assert!(!m.alerted("eni-1", 0));
        m.mark_alerted("eni-1", 0);
        assert!(m.alerted("eni-1", 0) && !m.alerted("eni-1", 60) && !m.alerted("eni-2", 0));
        assert_eq!(Memory::from_json(&m.to_json()).unwrap(), m);
        // Its lines gone (a window past the assembly time came), the mark goes too.
        m.assemble(&[line(ASSEMBLY_S + 60).as_str()], &format, 60);
        assert!(!m.alerted("eni-1", 0));

        // Lines dropped by the cap take their window's mark, and only theirs.
        let mut m = Memory::default();
        m.assemble(&[line(0).as_str(), line(60).as_str()], &format, 60);
        m.mark_alerted("eni-1", 0);
        m.mark_alerted("eni-1", 60);
        let crowd: Vec<String> = (0..MAX_PENDING_LINES as u64 - 1)
            .map(|n| format.write(&crate::detect::features::tests::out(120, 40_000, "203.0.113.9", 443, 1_000 + n, Action::Accept)))
            .collect();
        m.assemble(&crowd.iter().map(String::as_str).collect::<Vec<_>>(), &format, 60);
        assert!(!m.alerted("eni-1", 0) && m.alerted("eni-1", 60));
    }

    #[test]
    fn an_hour_later_it_is_forgotten_and_the_memory_stays_small() {
        let mut m = Memory::default();
        let mut first = vec![window(0, &["203.0.113.200"])];
        m.recall_and_remember(&mut first, &|_| true);
        let mut later = vec![window(HORIZON_S, &["203.0.113.200"])];
        m.recall_and_remember(&mut later, &|_| true);
        assert_eq!(later[0].raw[RETURNING_WINDOWS], 1.0, "the first window is past the horizon");
        // A spray over 1,000 networks keeps at most MAX_GROUPS of them.
        let spray: Vec<String> = (0..1000).map(|i| format!("198.{}.{}.1", 18 + i / 256, i % 256)).collect();
        let mut ws: Vec<WindowFeatures> = spray.iter().enumerate().map(|(i, ip)| window(HORIZON_S + i as i64, &[ip.as_str()])).collect();
        m.recall_and_remember(&mut ws, &|_| true);
        assert!(m.interfaces["eni-1"].len() <= MAX_GROUPS);
        assert_eq!(Memory::from_json(&m.to_json()).unwrap(), m);
        assert!(Memory::from_json(b"{\"interfaces\": 3}").unwrap_err().starts_with("not a detector memory"));
    }
}
