//! Reports: runs aggregated into detection and isolation latencies, bytes lost and
//! detection rate, as text or JSON (schema in README, "Report JSON").

use std::fmt::Write as _;

use serde::Serialize;

use crate::clock::Timestamp;
use crate::orchestrator::measure::RunRecord;

pub const FORMAT: &str = "cis-report";
pub const VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    pub count: usize,
    pub min: f64,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
    pub mean: f64,
}

impl Stats {
    /// Nearest-rank percentiles; `None` for no values.
    pub fn of(values: &[f64]) -> Option<Stats> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Some(Stats {
            count: v.len(),
            min: v[0],
            p50: rank(0.50),
            p95: rank(0.95),
            max: v[v.len() - 1],
            mean: v.iter().sum::<f64>() / v.len() as f64,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub runs: usize,
    pub expected_detections: usize,
    pub detected: usize,
    pub isolated: usize,
    /// Detected among the runs that should have been.
    pub detection_rate: Option<f64>,
    /// Isolations of runs that should not have been isolated.
    pub false_isolations: usize,
    pub detection_latency_s: Option<Stats>,
    pub isolation_latency_s: Option<Stats>,
    pub end_to_end_s: Option<Stats>,
    pub bytes_before_isolation: Option<Stats>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub format: String,
    pub version: u32,
    pub cloud: String,
    pub lab: String,
    pub summary: Summary,
    pub runs: Vec<RunRecord>,
}

impl Report {
    pub fn build(cloud: &str, lab: &str, runs: Vec<RunRecord>) -> Report {
        let collect = |f: &dyn Fn(&RunRecord) -> Option<f64>| runs.iter().filter_map(f).collect::<Vec<f64>>();
        let expected: Vec<&RunRecord> = runs.iter().filter(|r| r.expected_detected).collect();
        let summary = Summary {
            runs: runs.len(),
            expected_detections: expected.len(),
            detected: runs.iter().filter(|r| r.metrics.detected).count(),
            isolated: runs.iter().filter(|r| r.metrics.isolated).count(),
            detection_rate: (!expected.is_empty())
                .then(|| expected.iter().filter(|r| r.metrics.detected).count() as f64 / expected.len() as f64),
            false_isolations: runs.iter().filter(|r| !r.expected_isolated && r.metrics.isolated).count(),
            detection_latency_s: Stats::of(&collect(&|r| r.metrics.detection_latency_s)),
            isolation_latency_s: Stats::of(&collect(&|r| r.metrics.isolation_latency_s)),
            end_to_end_s: Stats::of(&collect(&|r| r.metrics.end_to_end_s)),
            bytes_before_isolation: Stats::of(&collect(&|r| (r.expected_detected).then_some(r.metrics.bytes_before_isolation as f64))),
        };
        Report { format: FORMAT.into(), version: VERSION, cloud: cloud.into(), lab: lab.into(), summary, runs }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialize")
    }

    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let s = &self.summary;
        let _ = writeln!(o, "cis report · cloud: {} · lab: {} · {} run(s)", self.cloud, self.lab, s.runs);
        for r in &self.runs {
            let _ = writeln!(o, "\n{} {} — {} [{}]", r.run_id, r.scenario, r.title, r.verdict);
            let t = &r.timeline;
            let start = t.attack_start;
            let rows: [(&str, Option<Timestamp>); 9] = [
                ("attack start", t.attack_start),
                ("first exfiltration flow", t.first_exfil_flow),
                ("flow-log records delivered", t.records_delivered),
                ("detected", t.detected),
                ("containment invoked", t.containment_invoked),
                ("isolated", t.isolated),
                ("last exfiltration byte", t.last_exfil_byte),
                ("notified", t.notified),
                ("attack end", t.attack_end),
            ];
            for (name, at) in rows {
                match (at, start) {
                    (Some(at), Some(s)) => {
                        let _ = writeln!(o, "  {name:<28} {at}  (+{:.3} s)", at.seconds_since(s));
                    }
                    _ => {
                        let _ = writeln!(o, "  {name:<28} -");
                    }
                }
            }
            let m = &r.metrics;
            let _ = writeln!(
                o,
                "  detection latency {}, isolation latency {}, end-to-end {}",
                secs(m.detection_latency_s),
                secs(m.isolation_latency_s),
                secs(m.end_to_end_s)
            );
            let _ = writeln!(
                o,
                "  bytes exfiltrated {} ({} before isolation), blocked {}",
                human_bytes(m.bytes_exfiltrated),
                human_bytes(m.bytes_before_isolation),
                human_bytes(m.bytes_blocked)
            );
            if let Some(d) = &r.detector {
                let _ = writeln!(o, "  detector: {d}");
            }
            for n in &r.notes {
                let _ = writeln!(o, "  note: {n}");
            }
        }
        let _ = writeln!(o, "\nsummary");
        let rate = s.detection_rate.map(|r| format!("{:.0}%", r * 100.0)).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            o,
            "  detected {}/{} expected ({rate}), isolated {}, false isolations {}",
            s.detected, s.expected_detections, s.isolated, s.false_isolations
        );
        for (name, st) in
            [("detection latency", &s.detection_latency_s), ("isolation latency", &s.isolation_latency_s), ("end-to-end", &s.end_to_end_s)]
        {
            match st {
                Some(st) => {
                    let _ = writeln!(
                        o,
                        "  {name:<18} p50 {}  p95 {}  min {}  max {}  (n={})",
                        secs(Some(st.p50)),
                        secs(Some(st.p95)),
                        secs(Some(st.min)),
                        secs(Some(st.max)),
                        st.count
                    );
                }
                None => {
                    let _ = writeln!(o, "  {name:<18} -");
                }
            }
        }
        if let Some(b) = &s.bytes_before_isolation {
            let _ = writeln!(o, "  bytes before isolation  mean {}  max {}", human_bytes(b.mean as u64), human_bytes(b.max as u64));
        }
        o
    }
}

fn secs(s: Option<f64>) -> String {
    match s {
        Some(s) if s >= 120.0 => format!("{s:.1} s ({:.1} min)", s / 60.0),
        Some(s) => format!("{s:.3} s"),
        None => "-".into(),
    }
}

/// A byte count as people read it (B, KiB, MiB, GiB).
pub fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = Stats::of(&[5.0, 1.0, 4.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.min, s.p50, s.p95, s.max, s.mean), (1.0, 3.0, 5.0, 5.0, 3.0));
        assert!(Stats::of(&[]).is_none());
    }
}
