//! `cis sim sweep`: what-if studies. One scenario under several pipeline settings (the
//! detector: the anomaly model or a metric filter with an alarm; the flow-log window; the
//! detector's threshold as a target false-positive rate), each in a
//! fresh simulated account with the same seed: a benign stretch first, whose isolations
//! are all false, then the attack run several times. The table shows what a setting buys
//! in detection latency and what it costs in false isolations.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::app::cli::SweepArgs;
use crate::backends::sim::SimCloud;
use crate::base::error::{Error, Result};
use crate::cloud::Cloud;
use crate::model::events::Outcome;
use crate::model::lab::{LabName, LabOptions};
use crate::orchestrator::Orchestrator;
use crate::orchestrator::Silent;
use crate::report::{Stats, Summary};
use crate::store::state::StateDir;

#[derive(Debug, Serialize)]
pub struct Setting {
    /// `model` or `metric-filter`.
    pub detector: &'static str,
    pub window_s: u32,
    pub target_fpr: f64,
    /// Detections during the benign hours (every one is false).
    pub false_alerts: usize,
    /// Isolations during the benign hours (every one is false).
    pub false_isolations: usize,
    pub false_isolations_per_day: f64,
    /// Over the attack runs.
    pub attacks: Summary,
}

#[derive(Debug, Serialize)]
pub struct Sweep {
    pub format: &'static str,
    pub version: u32,
    pub scenario: String,
    pub baseline: String,
    pub seed: u64,
    pub benign_hours: u32,
    pub runs_per_setting: u32,
    pub settings: Vec<Setting>,
}

/// Lets the simulated account's labs run `hours` of their benign traffic, and counts the
/// detections and isolations meanwhile: all of them false. `sim sweep` and `sim frontier`
/// measure false alerts so; what to do with an isolated target is theirs to decide.
pub(super) async fn benign_stretch(cloud: &SimCloud, hours: u32) -> (usize, usize) {
    let counts = || {
        cloud.inspect(|w| (w.pipeline.detections.len(), w.pipeline.containments.iter().filter(|o| o.outcome == Outcome::Isolated).count()))
    };
    let before = counts();
    tokio::time::sleep(Duration::from_secs(u64::from(hours) * 3600)).await;
    let after = counts();
    (after.0 - before.0, after.1 - before.1)
}

/// Runs the sweep under `root` (one fresh account a setting, removed first).
pub async fn run(args: &SweepArgs, seed: u64, region: &str, latency: &crate::sim::latency::LatencyModel, root: &std::path::Path) -> Result<Sweep> {
    let scenario = crate::model::scenario::find(&args.scenario)?;
    for w in &args.windows {
        if *w != 60 && *w != 600 {
            return Err(Error::Usage(format!("--windows {w}: flow logs aggregate over 60 or 600 seconds")));
        }
    }
    for f in &args.target_fprs {
        if !(*f > 0.0 && *f < 0.5) {
            return Err(Error::Usage(format!("--target-fpr {f}: give a share between 0 and 0.5, such as 1e-3")));
        }
    }
    if !crate::model::scenario::workloads().iter().any(|b| b.id == args.workload) {
        return Err(Error::Usage(format!("--workload {}: no such profile in assets/workloads.toml", args.workload)));
    }
    let lab: LabName = "sweep".parse().expect("a valid lab name");
    let mut settings = Vec::new();
    let combinations =
        args.detectors.iter().flat_map(|d| args.windows.iter().flat_map(move |w| args.target_fprs.iter().map(move |f| (*d, *w, *f))));
    for (detector, window_s, target_fpr) in combinations {
        let dir = root.join(format!("{}-w{window_s}-fpr{target_fpr:e}", detector.name()));
        crate::base::files::remove_dir_if_present(&dir)?;
        let state = StateDir::new(&dir);
        let cloud = SimCloud::open_with(&state.sim_account_dir(), Some(seed), region, crate::sim::faults::FaultProfile::None, latency.clone())?;
        let orch = Orchestrator::new(&cloud, &Silent, &state);
        let options = LabOptions {
            detector: detector.mode(),
            window_s,
            target_fpr: Some(target_fpr),
            workload: args.workload.clone(),
            ..Default::default()
        };
        orch.up(&lab, &options).await?;
        let (false_alerts, false_isolations) = benign_stretch(&cloud, args.hours).await;
        // Whatever the benign stretch isolated is put back before the attacks.
        orch.release(&lab).await?;
        let mut records = Vec::new();
        for _ in 0..args.runs {
            if let Some(previous) = records.last() {
                orch.settle(&lab, previous, &scenario).await?;
            }
            records.push(orch.attack(&lab, &scenario).await?);
        }
        orch.down(&lab).await?;
        cloud.checkpoint().await?;
        settings.push(Setting {
            detector: detector.name(),
            window_s,
            target_fpr,
            false_alerts,
            false_isolations,
            false_isolations_per_day: false_isolations as f64 * 24.0 / f64::from(args.hours),
            attacks: Summary::of(&records.iter().collect::<Vec<_>>()),
        });
    }
    Ok(Sweep {
        format: "cis-sweep",
        version: 1,
        scenario: scenario.id,
        baseline: args.workload.clone(),
        seed,
        benign_hours: args.hours,
        runs_per_setting: args.runs,
        settings,
    })
}

impl Sweep {
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "what-if: {} x {} run(s) per setting on a {} target, {} benign virtual hours each, seed {}",
            self.scenario, self.runs_per_setting, self.baseline, self.benign_hours, self.seed
        );
        let _ = writeln!(
            o,
            "{:>13} {:>8} {:>11} {:>10} {:>14} {:>14} {:>14} {:>13} {:>16}",
            "detector",
            "window",
            "target fpr",
            "detected",
            "detection p50",
            "detection p95",
            "end-to-end p50",
            "false alerts",
            "false iso / day"
        );
        let p = |st: &Option<Stats>, q: fn(&Stats) -> f64| st.as_ref().map(|s| format!("{:.1} s", q(s))).unwrap_or_else(|| "-".into());
        for s in &self.settings {
            let a = &s.attacks;
            let _ = writeln!(
                o,
                "{:>13} {:>7}s {:>11} {:>10} {:>14} {:>14} {:>14} {:>13} {:>16.2}",
                s.detector,
                s.window_s,
                format!("{:e}", s.target_fpr),
                format!("{}/{}", a.detected, a.runs),
                p(&a.detection_latency_s, |s| s.p50),
                p(&a.detection_latency_s, |s| s.p95),
                p(&a.end_to_end_s, |s| s.p50),
                s.false_alerts,
                s.false_isolations_per_day
            );
        }
        let _ = writeln!(
            o,
            "a longer window or a stricter threshold waits longer for evidence; a looser threshold isolates benign servers sooner;"
        );
        let _ = writeln!(
            o,
            "a metric filter sees only bytes, a minute late to its alarm: it misses what moves little data and answers later than the model"
        );
        o
    }
}
