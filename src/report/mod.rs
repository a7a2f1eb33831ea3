//! Reports: runs aggregated, overall and per scenario, into detection and isolation
//! latencies, bytes lost, detection rate, false isolations and alert frequency; written as
//! text, JSON (schema in README, "Report JSON"), Markdown or a self-contained HTML page
//! with charts ([`html`]).

pub mod html;
// The evasion frontier as a result: text, JSON and its chart.
pub mod frontier;

use std::fmt::Write as _;

use serde::Serialize;

use crate::base::clock::Timestamp;
use crate::base::units::human_bytes;
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

/// The least observed time a rate (alerts per hour, false isolations per day) is given for.
pub const MIN_RATE_HOURS: f64 = 1.0;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Runs counted in the figures.
    pub runs: usize,
    /// Runs left out of them: interrupted, or invalid (their pre-conditions failed).
    #[serde(skip_serializing_if = "is_zero")]
    pub set_aside: usize,
    pub expected_detections: usize,
    /// Runs detected, expected or not.
    pub detected: usize,
    /// Runs detected among those expected to be.
    pub detected_expected: usize,
    pub isolated: usize,
    /// Detected among the runs that should have been.
    pub detection_rate: Option<f64>,
    /// Isolations of runs that should not have been isolated.
    pub false_isolations: usize,
    pub detection_latency_s: Option<Stats>,
    pub isolation_latency_s: Option<Stats>,
    pub end_to_end_s: Option<Stats>,
    pub bytes_before_isolation: Option<Stats>,
    /// Hours the runs covered, attack start to the last thing observed.
    pub observed_hours: f64,
    /// Isolations of runs that should not have been, per day of observed time (with at
    /// least [`MIN_RATE_HOURS`] observed).
    pub false_isolations_per_day: Option<f64>,
    /// Detection events (one a window) per hour of observed time (with at least
    /// [`MIN_RATE_HOURS`] observed).
    pub alerts_per_hour: Option<f64>,
}

/// One scenario's runs, summarised.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScenarioSummary {
    pub scenario: String,
    pub title: String,
    pub expected_detected: bool,
    pub expected_isolated: bool,
    pub visible_in_flow_logs: bool,
    pub summary: Summary,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub format: String,
    pub version: u32,
    pub cloud: String,
    pub lab: String,
    pub summary: Summary,
    /// Per scenario, in id order.
    pub scenarios: Vec<ScenarioSummary>,
    pub runs: Vec<RunRecord>,
    /// The built-in root-cause analysis of each run that lost bytes or was detected,
    /// against the lab's security groups (`cis rca --run RUN` for one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub root_causes: Vec<crate::analysis::RunRootCause>,
}

impl Summary {
    pub fn of(all: &[&RunRecord]) -> Summary {
        // An interrupted or invalid run measured nothing: it is listed, not counted.
        let runs: Vec<&RunRecord> = all.iter().copied().filter(|r| r.verdict.counts()).collect();
        let set_aside = all.len() - runs.len();
        let collect = |f: &dyn Fn(&RunRecord) -> Option<f64>| runs.iter().filter_map(|r| f(r)).collect::<Vec<f64>>();
        let expected: Vec<&&RunRecord> = runs.iter().filter(|r| r.expected_detected).collect();
        let false_isolations = runs.iter().filter(|r| !r.expected_isolated && r.metrics.isolated).count();
        let observed_hours: f64 = runs.iter().map(|r| observed_s(r)).sum::<f64>() / 3600.0;
        // A rate over less than an hour of observation would say more about the run's
        // length than about the pipeline: left out.
        let per_hour = |n: usize| (observed_hours >= MIN_RATE_HOURS).then(|| n as f64 / observed_hours);
        Summary {
            runs: runs.len(),
            set_aside,
            expected_detections: expected.len(),
            detected: runs.iter().filter(|r| r.metrics.detected).count(),
            detected_expected: expected.iter().filter(|r| r.metrics.detected).count(),
            isolated: runs.iter().filter(|r| r.metrics.isolated).count(),
            detection_rate: (!expected.is_empty())
                .then(|| expected.iter().filter(|r| r.metrics.detected).count() as f64 / expected.len() as f64),
            false_isolations,
            detection_latency_s: Stats::of(&collect(&|r| r.metrics.detection_latency_s)),
            isolation_latency_s: Stats::of(&collect(&|r| r.metrics.isolation_latency_s)),
            end_to_end_s: Stats::of(&collect(&|r| r.metrics.end_to_end_s)),
            bytes_before_isolation: Stats::of(&collect(&|r| (r.expected_detected).then_some(r.metrics.bytes_before_isolation as f64))),
            observed_hours,
            false_isolations_per_day: per_hour(false_isolations).map(|h| h * 24.0),
            alerts_per_hour: per_hour(runs.iter().map(|r| r.metrics.detections).sum()),
        }
    }

    /// The summary in one sentence: runs, detection and isolation counts, false
    /// isolations and alert frequency (the Markdown and HTML reports open with it).
    pub fn headline(&self) -> String {
        let rate = self.detection_rate.map(|r| format!("{:.0}%", r * 100.0)).unwrap_or_else(|| "-".into());
        let aside = match self.set_aside {
            0 => String::new(),
            n => format!(" ({n} interrupted or invalid run(s) left out)"),
        };
        format!(
            "{} run(s){aside} over {:.1} observed hours: detected {}/{} expected ({rate}), isolated {}, false isolations {} ({}/day), {} alerts/hour.",
            self.runs,
            self.observed_hours,
            self.detected_expected,
            self.expected_detections,
            self.isolated,
            self.false_isolations,
            self.false_isolations_per_day.map(|d| format!("{d:.2}")).unwrap_or_else(|| "-".into()),
            self.alerts_per_hour.map(|a| format!("{a:.2}")).unwrap_or_else(|| "-".into()),
        )
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Seconds from a run's attack start to the last instant its timeline holds.
pub(crate) fn observed_s(r: &RunRecord) -> f64 {
    let t = &r.timeline;
    let Some(start) = t.attack_start else { return 0.0 };
    [t.first_exfil_flow, t.records_delivered, t.detected, t.containment_invoked, t.isolated, t.last_exfil_byte, t.notified, t.attack_end]
        .into_iter()
        .flatten()
        .map(|at| at.seconds_since(start))
        .fold(0.0, f64::max)
}

impl Report {
    pub fn build(cloud: &str, lab: &str, runs: Vec<RunRecord>) -> Report {
        let summary = Summary::of(&runs.iter().collect::<Vec<_>>());
        let mut ids: Vec<&str> = runs.iter().map(|r| r.scenario.as_str()).collect();
        ids.sort();
        ids.dedup();
        let scenarios = ids
            .into_iter()
            .map(|id| {
                let of: Vec<&RunRecord> = runs.iter().filter(|r| r.scenario == id).collect();
                let first = of[0];
                ScenarioSummary {
                    scenario: id.to_string(),
                    title: first.title.clone(),
                    expected_detected: first.expected_detected,
                    expected_isolated: first.expected_isolated,
                    visible_in_flow_logs: first.visible_in_flow_logs,
                    summary: Summary::of(&of),
                }
            })
            .collect();
        Report {
            format: FORMAT.into(),
            version: VERSION,
            cloud: cloud.into(),
            lab: lab.into(),
            summary,
            scenarios,
            runs,
            root_causes: vec![],
        }
    }

    /// The per-scenario table, as Markdown rows (shared by the Markdown and text forms).
    fn scenario_rows(&self) -> Vec<[String; 8]> {
        self.scenarios
            .iter()
            .map(|s| {
                let m = &s.summary;
                let rate = match (s.expected_detected, m.detection_rate) {
                    (true, Some(r)) => format!("{:.0}%", r * 100.0),
                    _ if !s.visible_in_flow_logs => "invisible to flow logs".into(),
                    _ => "not expected".into(),
                };
                let p = |st: &Option<Stats>, q: fn(&Stats) -> f64| st.as_ref().map(|st| secs(Some(q(st)))).unwrap_or_else(|| "-".into());
                [
                    s.scenario.clone(),
                    m.runs.to_string(),
                    rate,
                    p(&m.detection_latency_s, |s| s.p50),
                    p(&m.detection_latency_s, |s| s.p95),
                    p(&m.isolation_latency_s, |s| s.p50),
                    m.bytes_before_isolation.as_ref().map(|b| human_bytes(b.mean as u64)).unwrap_or_else(|| "-".into()),
                    m.false_isolations.to_string(),
                ]
            })
            .collect()
    }

    pub fn to_markdown(&self) -> String {
        let mut o = String::new();
        let s = &self.summary;
        let _ = writeln!(o, "# cis report: lab `{}` on {}\n", self.lab, self.cloud);
        let _ = writeln!(o, "{}\n", s.headline());
        let _ = writeln!(o, "## Per scenario\n");
        let _ = writeln!(o, "| scenario | runs | detection rate | detection p50 | detection p95 | isolation p50 | bytes before isolation (mean) | false isolations |");
        let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for row in self.scenario_rows() {
            let _ = writeln!(o, "| {} |", row.iter().map(|c| c.replace('|', "\\|")).collect::<Vec<_>>().join(" | "));
        }
        let _ = writeln!(o, "\n## Runs\n");
        let _ = writeln!(
            o,
            "| run | scenario | verdict | detection latency | isolation latency | end-to-end | bytes exfiltrated | before isolation |"
        );
        let _ = writeln!(o, "|---|---|---|---:|---:|---:|---:|---:|");
        for r in &self.runs {
            let m = &r.metrics;
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.run_id,
                r.scenario,
                r.verdict,
                secs(m.detection_latency_s),
                secs(m.isolation_latency_s),
                secs(m.end_to_end_s),
                human_bytes(m.bytes_exfiltrated),
                human_bytes(m.bytes_before_isolation)
            );
        }
        let notes: Vec<String> = self.runs.iter().flat_map(|r| r.notes.iter().map(move |n| format!("- {}: {n}", r.run_id))).collect();
        if !notes.is_empty() {
            let _ = writeln!(o, "\n## Notes\n\n{}", notes.join("\n"));
        }
        if !self.root_causes.is_empty() {
            let _ = writeln!(o, "\n## Root causes\n");
            let _ = writeln!(o, "| run | scenario | issue | root cause | rule |");
            let _ = writeln!(o, "|---|---|---|---|---|");
            for rc in &self.root_causes {
                for i in &rc.issues {
                    let _ = writeln!(
                        o,
                        "| {} | {} | {} | {} | {} |",
                        rc.run_id,
                        rc.scenario,
                        crate::analysis::cell(&i.issue),
                        crate::analysis::cell(&i.root_cause),
                        i.rule.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        o
    }

    /// Adds the built-in root-cause analysis of every run that was detected or lost bytes.
    pub fn with_root_causes(mut self, rules: &[crate::analysis::FirewallRule]) -> Report {
        self.root_causes = self
            .runs
            .iter()
            .filter(|r| r.metrics.detected || r.metrics.bytes_exfiltrated > 0)
            .map(|r| {
                let input = crate::analysis::run_input(r, rules.to_vec());
                // Hygiene findings are the lab's, not the run's: only what explains the run.
                let issues = crate::analysis::builtin::rca(&input)
                    .issues
                    .into_iter()
                    .filter(|i| i.category != crate::analysis::Category::Hygiene)
                    .collect();
                crate::analysis::RunRootCause { run_id: r.run_id.clone(), scenario: r.scenario.clone(), issues }
            })
            .filter(|rc| !rc.issues.is_empty())
            .collect();
        self
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
                // What decided, and the feature that weighed most against the baseline.
                match &r.evidence {
                    Some(e) => {
                        let _ = writeln!(o, "  detector: {d}: {}", e.describe());
                    }
                    None => {
                        let _ = writeln!(o, "  detector: {d}");
                    }
                }
            }
            for n in &r.notes {
                let _ = writeln!(o, "  note: {n}");
            }
            for rc in self.root_causes.iter().filter(|rc| rc.run_id == r.run_id) {
                for i in &rc.issues {
                    let _ = writeln!(o, "  root cause: {}", i.root_cause);
                }
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
        let _ = writeln!(
            o,
            "  observed {:.1} h: false isolations {}/day, alerts {}/hour",
            s.observed_hours,
            s.false_isolations_per_day.map(|d| format!("{d:.2}")).unwrap_or_else(|| "-".into()),
            s.alerts_per_hour.map(|a| format!("{a:.2}")).unwrap_or_else(|| "-".into())
        );
        if self.scenarios.len() > 1 {
            let _ = writeln!(o, "\nper scenario");
            let header = ["scenario", "runs", "detected", "det p50", "det p95", "iso p50", "lost (mean)", "false iso"];
            let rows = self.scenario_rows();
            let widths: Vec<usize> =
                (0..8).map(|i| rows.iter().map(|r| r[i].chars().count()).chain([header[i].len()]).max().unwrap_or(0)).collect();
            let line = |cells: &[String]| cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ");
            let _ = writeln!(o, "  {}", line(&header.map(String::from)));
            for r in &rows {
                let _ = writeln!(o, "  {}", line(r));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = Stats::of(&[5.0, 1.0, 4.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.min, s.p50, s.p95, s.max, s.mean), (1.0, 3.0, 5.0, 5.0, 3.0));
        assert!(Stats::of(&[]).is_none());
    }

    fn run(scenario: &str, expected: bool, detected: bool, verdict: crate::orchestrator::measure::Verdict, hours: f64) -> RunRecord {
        let s = crate::model::scenario::find(scenario).unwrap();
        let start = Timestamp::SIM_EPOCH;
        let mut r = RunRecord::from_observation("run-0001", "l", "sim", &s, start, &Default::default());
        r.expected_detected = expected;
        r.metrics.detected = detected;
        r.metrics.detections = usize::from(detected);
        r.timeline.attack_end = Some(start.plus_secs_f64(hours * 3600.0));
        r.verdict = verdict;
        r
    }

    #[test]
    fn detected_counts_the_expected_runs_and_rates_need_an_hour() {
        use crate::orchestrator::measure::Verdict as V;
        let runs = [
            run("exfil-https-bulk", true, true, V::AsExpected, 0.05),
            run("benign-package-update", false, true, V::UnexpectedDetection, 0.05),
            run("exfil-https-bulk", true, true, V::Interrupted, 0.05),
        ];
        let s = Summary::of(&runs.iter().collect::<Vec<_>>());
        assert_eq!((s.runs, s.set_aside, s.detected, s.detected_expected, s.expected_detections), (2, 1, 2, 1, 1));
        assert!(s.headline().contains("detected 1/1 expected"), "{}", s.headline());
        assert!(s.headline().contains("1 interrupted or invalid"), "{}", s.headline());
        // Six minutes observed: no rate is given; two hours: it is.
        assert_eq!((s.alerts_per_hour, s.false_isolations_per_day), (None, None));
        let long = [run("exfil-https-bulk", true, true, V::AsExpected, 2.0)];
        assert_eq!(Summary::of(&long.iter().collect::<Vec<_>>()).alerts_per_hour, Some(0.5));
    }
}
