//! `cis sim export`: a labelled flow-log data set from the simulator. No public labelled
//! VPC Flow Logs data set exists; this makes one, with the simulator's workload profiles
//! and scenarios, and says what every record and window holds.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::app::cli::{ExportArgs, ExportFormat};
use crate::base::error::Error;
use crate::base::rng::Rng;
use crate::detect::features::{window_start, WindowAggregator};
use crate::formats::flowlog::{LogFormat, LAB_LOG_FORMAT};
use crate::model::scenario::{self, Scenario};

/// Window length of the labelled windows (the lab's default).
const WINDOW_S: i64 = 60;
/// Scenarios start this far apart at least: the longest in the catalogue runs 40 minutes,
/// and its last records are delivered minutes later.
const MIN_GAP_S: f64 = 3600.0;
const FILES: [&str; 4] = ["flows.log", "labels.txt", "records.csv", "windows.csv"];

/// What was written.
#[derive(Debug, Serialize)]
pub struct Written {
    pub dir: PathBuf,
    pub profile: String,
    pub days: u32,
    pub seed: u64,
    pub records: usize,
    pub attack_records: usize,
    pub windows: usize,
    pub attack_windows: usize,
    /// Each scenario with the second (after the capture's start) it began.
    pub scenarios: Vec<(String, f64)>,
}

impl Written {
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "wrote {} ({} days of {}, seed {}): {} records ({} of attacks), {} windows of {WINDOW_S} s ({} holding attack flows)",
            self.dir.display(),
            self.days,
            self.profile,
            self.seed,
            self.records,
            self.attack_records,
            self.windows,
            self.attack_windows
        );
        for (id, at) in &self.scenarios {
            let _ = writeln!(o, "  {id} at +{:.0} s", at);
        }
        let _ = write!(
            o,
            "evaluate a model on it: cis detect {} --eval {}",
            self.dir.join("flows.log").display(),
            self.dir.join("labels.txt").display()
        );
        o
    }
}

/// Whether a scenario's flows count as positive: an attack flow logs can see.
fn positive(s: &Scenario) -> bool {
    s.expect.detected && s.expect.visible_in_flow_logs
}

pub fn run(e: &ExportArgs, seed: u64) -> Result<Written> {
    let workloads = scenario::workloads();
    if !workloads.iter().any(|b| b.id == e.workload) {
        let known: Vec<&str> = workloads.iter().map(|b| b.id.as_str()).collect();
        return Err(Error::Usage(format!("--workload {}: no such profile (profiles: {})", e.workload, known.join(", "))).into());
    }
    let chosen: Vec<Scenario> = if e.scenarios.is_empty() {
        scenario::catalogue()
    } else {
        e.scenarios.iter().map(|id| scenario::find(id)).collect::<crate::base::error::Result<_>>()?
    };
    let span = f64::from(e.days) * 86_400.0;
    let gap = span / (chosen.len() + 1) as f64;
    if gap < MIN_GAP_S {
        return Err(Error::Usage(format!(
            "--days {}: {} scenario(s) need at least {:.0} hour(s) apart; give more --days or fewer --scenario",
            e.days,
            chosen.len(),
            MIN_GAP_S / 3600.0
        ))
        .into());
    }
    std::fs::create_dir_all(&e.out).map_err(|err| Error::io(&e.out, err))?;
    if let Some(f) = FILES.iter().find(|f| e.out.join(f).exists()) {
        return Err(Error::Usage(format!("--out {}: {} is there already; name an empty directory", e.out.display(), f)).into());
    }
    // Evenly spaced, each moved by up to a tenth of the gap: the seed's, so one seed is one
    // data set.
    let mut rng = Rng::seeded(seed);
    let attacks: Vec<(f64, Scenario)> =
        chosen.iter().enumerate().map(|(i, s)| ((i + 1) as f64 * gap + rng.range_f64(-0.1, 0.1) * gap, s.clone())).collect();
    let lines = crate::training::capture_labelled(
        WINDOW_S as u32,
        &e.workload,
        u64::from(e.days) * 24,
        seed,
        &attacks,
        &crate::sim::latency::LatencyModel::embedded(),
        &workloads,
    )
    .map_err(|err| Error::Internal(err.to_string()))?;

    let lab = LogFormat::parse(LAB_LOG_FORMAT).expect("the lab's format parses");
    let out_format = match e.format {
        ExportFormat::Lab => lab.clone(),
        ExportFormat::V2 => LogFormat::default_v2(),
    };
    let (mut flows, mut labels, mut records) = (String::new(), String::new(), String::from("line,label,scenario\n"));
    let mut agg = WindowAggregator::new(WINDOW_S);
    let mut window_scenarios: std::collections::BTreeMap<(String, i64), std::collections::BTreeSet<String>> = Default::default();
    let mut attack_records = 0;
    flows.push_str(&out_format.header());
    flows.push('\n');
    for (n, (line, label)) in lines.iter().enumerate() {
        let record = lab.read(line).ok().flatten().context("the simulator wrote a line its own format cannot read")?;
        let scenario = label.map(|i| &attacks[i].1);
        let is_positive = scenario.is_some_and(positive);
        attack_records += usize::from(is_positive);
        flows.push_str(&out_format.write(&record));
        flows.push('\n');
        labels.push_str(if is_positive { "1\n" } else { "0\n" });
        let _ = writeln!(records, "{},{},{}", n + 2, u8::from(is_positive), scenario.map_or("", |s| s.id.as_str()));
        agg.add(&record, is_positive);
        if let (Some(s), Some(eni), Some(start)) = (scenario, &record.interface_id, record.start) {
            window_scenarios.entry((eni.clone(), window_start(start, WINDOW_S))).or_default().insert(s.id.clone());
        }
    }
    let windows = agg.finish();
    let mut windows_csv = String::from("interface_id,window_start,label,scenarios\n");
    for w in &windows {
        let names =
            window_scenarios.get(&(w.interface_id.clone(), w.window_start)).map(|s| s.iter().cloned().collect::<Vec<_>>().join(" "));
        let _ =
            writeln!(windows_csv, "{},{},{},{}", w.interface_id, w.window_start, u8::from(w.labelled_positive), names.unwrap_or_default());
    }
    for (name, text) in FILES.iter().zip([&flows, &labels, &records, &windows_csv]) {
        write(&e.out.join(name), text)?;
    }
    Ok(Written {
        dir: e.out.clone(),
        profile: e.workload.clone(),
        days: e.days,
        seed,
        records: lines.len(),
        attack_records,
        windows: windows.len(),
        attack_windows: windows.iter().filter(|w| w.labelled_positive).count(),
        scenarios: attacks.iter().map(|(at, s)| (s.id.clone(), *at)).collect(),
    })
}

fn write(path: &Path, text: &str) -> Result<()> {
    crate::base::files::write_atomic(path, text.as_bytes())?;
    Ok(())
}
