//! `cis sim frontier`: how faint an attack may be before the pipeline goes blind. For one
//! attack family and each detector, every seed gets a fresh simulated account and lab of
//! its own, and the family's knob is bisected on it: the plainest setting first, then the
//! faintest, then halfway (on a log scale) between the faintest caught and the plainest
//! missed, one attack run a step. A run counts as caught when its own windows are
//! detected within the budget. The frontier is the faintest setting caught in at least
//! 90% of the seeds, with a distribution-free 95% interval over the seeds; false alerts
//! are counted in the runs' benign windows. Seeds run on every core, one account each, so
//! a seed's result does not depend on what ran beside it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::app::cli::{FrontierArgs, SweepDetector};
use crate::app::runtime::{runtime, Time};
use crate::backends::sim::SimCloud;
use crate::base::error::{Error, Result};
use crate::model::evasion::{Family, Knob};
use crate::model::lab::{LabName, LabOptions};
use crate::orchestrator::measure::RunRecord;
use crate::orchestrator::{Orchestrator, Silent};
use crate::report::html::{esc, page};
use crate::sim::latency::LatencyModel;
use crate::store::state::StateDir;

/// The share of seeds an attack must be caught in to stand inside the frontier.
pub const CATCH_SHARE: f64 = 0.9;
/// The confidence of the interval around it.
pub const CONFIDENCE: f64 = 0.95;

/// One run of the search.
#[derive(Clone, Debug, Serialize)]
pub struct Probe {
    pub setting: f64,
    pub caught: bool,
    pub detection_latency_s: Option<f64>,
}

/// One seed's search.
#[derive(Clone, Debug, Serialize)]
pub struct SeedSearch {
    pub seed: u64,
    /// The faintest setting caught; None when even the plainest was missed.
    pub faintest_caught: Option<f64>,
    /// The plainest setting missed; None when even the faintest was caught.
    pub plainest_missed: Option<f64>,
    pub probes: Vec<Probe>,
    #[serde(skip)]
    false_alerts: usize,
    #[serde(skip)]
    observed_hours: f64,
}

/// One detector's frontier over the seeds.
#[derive(Debug, Serialize)]
pub struct DetectorFrontier {
    pub detector: &'static str,
    /// The faintest setting caught in at least [`CATCH_SHARE`] of the seeds; None when no
    /// setting up to the plainest is.
    pub frontier: Option<f64>,
    /// The [`CONFIDENCE`] interval of that setting over the seeds, faint end first; an end
    /// is None where the seeds are too few to bound it.
    pub interval: (Option<f64>, Option<f64>),
    /// Seeds that missed even the plainest setting.
    pub never_caught: usize,
    /// Seeds that caught even the faintest setting searched.
    pub caught_at_faintest: usize,
    pub runs: usize,
    /// Detections of windows holding none of an attack's flows, over the runs.
    pub false_alerts: usize,
    pub observed_hours: f64,
    pub false_alerts_per_lab_day: Option<f64>,
    pub seeds: Vec<SeedSearch>,
}

/// `cis sim frontier`'s result.
#[derive(Debug, Serialize)]
pub struct Frontier {
    pub format: &'static str,
    pub version: u32,
    pub family: Family,
    pub base_scenario: &'static str,
    pub knob: Knob,
    pub workload: String,
    pub budget_s: u64,
    pub first_seed: u64,
    pub seeds: u32,
    pub steps: u32,
    pub catch_share: f64,
    pub confidence: f64,
    pub detectors: Vec<DetectorFrontier>,
}

/// Runs the study under `root` (one scratch account a seed, removed after it).
pub fn run(args: &FrontierArgs, first_seed: u64, region: &str, latency: &LatencyModel, root: &std::path::Path) -> Result<Frontier> {
    if !crate::model::scenario::workloads().iter().any(|b| b.id == args.workload) {
        return Err(Error::Usage(format!("--workload {}: no such profile in assets/workloads.toml", args.workload)));
    }
    let budget_s = args.budget.as_secs_f64();
    // Refuses a budget the family cannot fill before any account exists.
    args.family.scenario(args.family.knob().strongest, budget_s)?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(args.seeds as usize).max(1);
    let mut detectors = Vec::new();
    for detector in &args.detectors {
        let next = AtomicUsize::new(0);
        let done: Mutex<BTreeMap<u64, SeedSearch>> = Mutex::new(BTreeMap::new());
        let failed: Mutex<Option<Error>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= args.seeds as usize || failed.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                        return;
                    }
                    let seed = first_seed + i as u64;
                    let dir = root.join(format!("{}-{}-seed{seed}", args.family.name(), detector.name()));
                    match search_seed(args, *detector, seed, region, latency, &dir) {
                        Ok(s) => {
                            done.lock().unwrap_or_else(|p| p.into_inner()).insert(seed, s);
                        }
                        Err(e) => {
                            failed.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                        }
                    }
                });
            }
        });
        if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        let seeds: Vec<SeedSearch> = done.into_inner().unwrap_or_else(|p| p.into_inner()).into_values().collect();
        detectors.push(summarise(args.family, detector.name(), seeds));
    }
    Ok(Frontier {
        format: "cis-frontier",
        version: 1,
        family: args.family,
        base_scenario: args.family.base(),
        knob: args.family.knob(),
        workload: args.workload.clone(),
        budget_s: args.budget.as_secs(),
        first_seed,
        seeds: args.seeds,
        steps: args.steps,
        catch_share: CATCH_SHARE,
        confidence: CONFIDENCE,
        detectors,
    })
}

/// One seed: a fresh account and lab, then the search, on a runtime of its own.
fn search_seed(
    args: &FrontierArgs,
    detector: SweepDetector,
    seed: u64,
    region: &str,
    latency: &LatencyModel,
    dir: &std::path::Path,
) -> Result<SeedSearch> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(dir, e)),
    }
    let result = runtime(Time::Virtual)?.block_on(async {
        let state = StateDir::new(dir);
        let cloud =
            SimCloud::open_with(&state.sim_account_dir(), Some(seed), region, crate::sim::faults::FaultProfile::None, latency.clone())?;
        let orch = Orchestrator::new(&cloud, &Silent, &state);
        let lab: LabName = "frontier".parse().expect("a valid lab name");
        let options = LabOptions { detector: detector.mode(), workload: args.workload.clone(), ..Default::default() };
        orch.up(&lab, &options).await?;
        search(&orch, &lab, args.family, args.budget, args.steps, seed).await
    });
    // The account is scratch: what the study keeps is in the result.
    let _ = std::fs::remove_dir_all(dir);
    result
}

/// The bisection on one lab: the plainest setting, the faintest, then halfway between the
/// faintest caught and the plainest missed while steps remain and the two can be split.
async fn search(orch: &Orchestrator<'_>, lab: &LabName, family: Family, budget: Duration, steps: u32, seed: u64) -> Result<SeedSearch> {
    let knob = family.knob();
    let mut found = SeedSearch {
        seed,
        faintest_caught: None,
        plainest_missed: None,
        probes: vec![],
        false_alerts: 0,
        observed_hours: 0.0,
    };
    let mut previous: Option<RunRecord> = None;
    for step in 0..steps {
        let setting = match (step, found.faintest_caught, found.plainest_missed) {
            (0, _, _) => knob.strongest,
            (_, None, Some(_)) => break,
            (1, Some(_), None) => knob.faintest,
            (_, Some(_), None) => break,
            (_, Some(caught), Some(missed)) if family.splittable(caught, missed) => family.between(caught, missed),
            _ => break,
        };
        if let Some(p) = &previous {
            orch.cut_short(lab, p).await?;
        }
        let record = orch.attack(lab, &family.scenario(setting, budget.as_secs_f64())?).await?;
        let latency = record.metrics.detection_latency_s;
        let caught = record.metrics.detected && latency.is_some_and(|l| l <= budget.as_secs_f64());
        found.probes.push(Probe { setting, caught, detection_latency_s: latency });
        found.false_alerts += record.metrics.false_alerts;
        found.observed_hours += crate::report::Summary::of(&[&record]).observed_hours;
        if caught {
            found.faintest_caught = Some(setting);
        } else {
            found.plainest_missed = Some(setting);
        }
        previous = Some(record);
    }
    Ok(found)
}

/// The frontier over the seeds: seed i is caught at every setting at least as plain as its
/// faintest caught t_i, so the faintest setting caught in a share q of the seeds is the
/// ceil(q n)-th of the t_i from the faint end (a seed never caught last). The interval is
/// the order statistics that hold that quantile with [`CONFIDENCE`], from the binomial
/// distribution: it assumes nothing of how the t_i are spread.
fn summarise(family: Family, detector: &'static str, seeds: Vec<SeedSearch>) -> DetectorFrontier {
    let mut ordered: Vec<Option<f64>> = seeds.iter().map(|s| s.faintest_caught).collect();
    ordered.sort_by(|a, b| match (a, b) {
        (Some(x), Some(y)) if family.plainer(*x, *y) => std::cmp::Ordering::Greater,
        (Some(x), Some(y)) if family.plainer(*y, *x) => std::cmp::Ordering::Less,
        (Some(_), Some(_)) | (None, None) => std::cmp::Ordering::Equal,
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
    });
    let n = ordered.len();
    let at = |rank: usize| if (1..=n).contains(&rank) { ordered[rank - 1] } else { None };
    let k = (CATCH_SHARE * n as f64 - 1e-9).ceil() as usize;
    let (low, high) = quantile_ranks(n, CATCH_SHARE, CONFIDENCE);
    let runs = seeds.iter().map(|s| s.probes.len()).sum();
    let false_alerts = seeds.iter().map(|s| s.false_alerts).sum::<usize>();
    let observed_hours = seeds.iter().map(|s| s.observed_hours).sum::<f64>();
    let faintest = family.knob().faintest;
    DetectorFrontier {
        detector,
        frontier: at(k),
        interval: (low.and_then(at), high.and_then(at)),
        never_caught: seeds.iter().filter(|s| s.faintest_caught.is_none()).count(),
        caught_at_faintest: seeds.iter().filter(|s| s.faintest_caught == Some(faintest)).count(),
        runs,
        false_alerts,
        observed_hours,
        false_alerts_per_lab_day: (observed_hours > 0.0).then(|| false_alerts as f64 * 24.0 / observed_hours),
        seeds,
    }
}

/// The 1-based ranks (l, u) of the order statistics that cover the q-quantile of n draws
/// with at least `confidence`: P(X(l) <= x_q <= X(u)) >= confidence, from Binomial(n, q).
/// An end is None where no rank is far enough out (too few draws).
pub fn quantile_ranks(n: usize, q: f64, confidence: f64) -> (Option<usize>, Option<usize>) {
    let tail = (1.0 - confidence) / 2.0;
    // cdf[r] = P(B <= r), in log space so that large n does not underflow.
    let mut cdf = Vec::with_capacity(n + 1);
    let (mut log_choose, mut total) = (0.0_f64, 0.0_f64);
    for j in 0..=n {
        if j > 0 {
            log_choose += ((n - j + 1) as f64).ln() - (j as f64).ln();
        }
        total += (log_choose + j as f64 * q.ln() + (n - j) as f64 * (1.0 - q).ln()).exp();
        cdf.push(total.min(1.0));
    }
    // The largest l with P(B <= l - 1) <= tail, the smallest u with P(B <= u - 1) >= 1 - tail.
    let low = (1..=n).rev().find(|&l| cdf[l - 1] <= tail);
    let high = (1..=n).find(|&u| cdf[u - 1] >= 1.0 - tail);
    (low, high)
}

impl Frontier {
    fn setting(&self, v: Option<f64>) -> String {
        v.map_or_else(|| "-".to_string(), |v| self.knob.show(v))
    }

    /// A detector's frontier for people: "never" when no setting reaches the share, and
    /// "or fainter" when even the faintest setting searched does.
    fn frontier_text(&self, d: &DetectorFrontier) -> String {
        match d.frontier {
            None => "never".to_string(),
            Some(v) if v == self.knob.faintest => format!("{} or fainter", self.knob.show(v)),
            Some(v) => self.knob.show(v),
        }
    }

    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let last_seed = self.first_seed + u64::from(self.seeds) - 1;
        let _ = writeln!(
            o,
            "evasion frontier: {} (shaped from {}; knob: {}, from {} down to {}) on the {} workload, budget {} min, seeds {}-{last_seed}, up to {} runs a seed",
            self.family.name(),
            self.base_scenario,
            self.knob.name,
            self.knob.show(self.knob.strongest),
            self.knob.show(self.knob.faintest),
            self.workload,
            self.budget_s / 60,
            self.first_seed,
            self.steps
        );
        let _ = writeln!(
            o,
            "{:>14} {:>24} {:>34} {:>13} {:>18} {:>24}",
            "detector",
            format!("caught in {:.0}% from", self.catch_share * 100.0),
            format!("{:.0}% interval (faint, plain)", self.confidence * 100.0),
            "never caught",
            "caught at faintest",
            "false alerts / lab-day"
        );
        for d in &self.detectors {
            let frontier = self.frontier_text(d);
            let interval = format!("[{}, {}]", self.setting(d.interval.0), self.setting(d.interval.1));
            let rate = d.false_alerts_per_lab_day.map_or_else(|| "-".into(), |r| format!("{r:.2} ({:.0} h)", d.observed_hours));
            let _ = writeln!(
                o,
                "{:>14} {:>24} {:>34} {:>13} {:>18} {:>24}",
                d.detector,
                frontier,
                interval,
                format!("{}/{}", d.never_caught, d.seeds.len()),
                format!("{}/{}", d.caught_at_faintest, d.seeds.len()),
                rate
            );
        }
        let _ = writeln!(
            o,
            "read: an attack at least as plain as the frontier is caught within the budget in {:.0}% of seeds or more; a fainter one is not.",
            self.catch_share * 100.0
        );
        let _ = writeln!(
            o,
            "The interval is where that setting lies with {:.0}% confidence over seeds ('-': more seeds needed to bound it); the figures are the simulator's, on its {} profile.",
            self.confidence * 100.0,
            self.workload
        );
        o
    }

    /// A self-contained page: per detector, the seeds' faintest caught settings on a log
    /// axis, the interval as a band and the frontier as a bar.
    pub fn to_html(&self) -> String {
        let (left, right, lane) = (160.0_f64, 1000.0_f64, 46.0_f64);
        let (a, b) = (self.knob.faintest.ln(), self.knob.strongest.ln());
        // The faint end on the left, whichever way the knob runs.
        let x = |v: f64| left + (right - left) * (v.ln() - a) / (b - a);
        let height = 40.0 + lane * self.detectors.len() as f64;
        let drawn = self.detectors.iter().filter(|d| d.frontier.is_some()).count();
        let mut svg = format!(
            "<svg data-chart=\"frontier\" data-drawn=\"{drawn}\" width=\"1060\" height=\"{height}\" role=\"img\" aria-label=\"the evasion frontier per detector\">"
        );
        let axis_y = height - 24.0;
        let _ = write!(svg, "<line x1=\"{left}\" x2=\"{right}\" y1=\"{axis_y}\" y2=\"{axis_y}\" stroke=\"#9aa3b2\"/>");
        for i in 0..=4 {
            let v = (a + (b - a) * f64::from(i) / 4.0).exp();
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x(v),
                axis_y + 16.0,
                esc(&self.knob.show(v))
            );
        }
        for (i, d) in self.detectors.iter().enumerate() {
            let y = 12.0 + lane * i as f64;
            let _ = write!(svg, "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>", left - 10.0, y + 18.0, esc(d.detector));
            let (lo, hi) = (d.interval.0.map_or(left, x), d.interval.1.map_or(right, x));
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{}\" width=\"{:.1}\" height=\"26\" fill=\"#a8dadc\" opacity=\"0.6\"/>",
                lo.min(hi),
                y + 2.0,
                (hi - lo).abs().max(1.0)
            );
            for s in &d.seeds {
                if let Some(v) = s.faintest_caught {
                    let _ = write!(svg, "<circle cx=\"{:.1}\" cy=\"{}\" r=\"2.5\" fill=\"#457b9d\"/>", x(v), y + 15.0);
                }
            }
            match d.frontier {
                Some(v) => {
                    let _ = write!(
                        svg,
                        "<rect x=\"{:.1}\" y=\"{}\" width=\"3\" height=\"30\" fill=\"#e63946\"/><text x=\"{:.1}\" y=\"{}\">{}</text>",
                        x(v) - 1.5,
                        y,
                        x(v) + 6.0,
                        y + 40.0,
                        esc(&self.frontier_text(d))
                    );
                }
                None => {
                    let _ = write!(svg, "<text x=\"{}\" y=\"{}\">never caught in {:.0}% of seeds</text>", left, y + 18.0, self.catch_share * 100.0);
                }
            }
        }
        svg.push_str("</svg>");
        let mut body = format!(
            "<h1>Evasion frontier: {}</h1>\n<p class=\"summary\">{} shaped from <code>{}</code>, knob: {}. The {} workload, budget {} min, {} seeds from {}. Left is fainter. Each dot is a seed's faintest caught setting; the red bar is the frontier (caught in {:.0}% of seeds or more at it and anything plainer); the band is its {:.0}% interval over seeds.</p>\n",
            esc(self.family.name()),
            esc(self.family.name()),
            esc(self.base_scenario),
            esc(self.knob.name),
            esc(&self.workload),
            self.budget_s / 60,
            self.seeds,
            self.first_seed,
            self.catch_share * 100.0,
            self.confidence * 100.0
        );
        body.push_str(&svg);
        body.push_str("\n<pre>");
        body.push_str(&esc(&self.to_text()));
        body.push_str("</pre>\n");
        page(&format!("cis evasion frontier: {}", self.family.name()), &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(seed: u64, faintest_caught: Option<f64>) -> SeedSearch {
        SeedSearch { seed, faintest_caught, plainest_missed: None, probes: vec![], false_alerts: 0, observed_hours: 1.0 }
    }

    #[test]
    fn the_interval_of_the_90th_percentile_widens_with_few_seeds() {
        // 20 draws: the 15th order statistic is the lowest that holds it; no upper one does.
        assert_eq!(quantile_ranks(20, 0.9, 0.95), (Some(15), None));
        // 100 draws: about the 84th to the 96th.
        let (l, u) = quantile_ranks(100, 0.9, 0.95);
        assert!((83..=85).contains(&l.unwrap()) && (95..=97).contains(&u.unwrap()), "{l:?} {u:?}");
        // 1,000 draws do not underflow.
        let (l, u) = quantile_ranks(1000, 0.9, 0.95);
        assert!(l.unwrap() < 900 && u.unwrap() > 900);
    }

    #[test]
    fn the_frontier_is_the_setting_nine_seeds_in_ten_catch() {
        // Bytes a minute: seed i caught from i*100 up; one seed in ten never: 90% still.
        let seeds: Vec<SeedSearch> = (1..=10).map(|i| seed(i, (i < 10).then(|| i as f64 * 100.0))).collect();
        let d = summarise(Family::Drip, "model", seeds);
        assert_eq!((d.frontier, d.never_caught), (Some(900.0), 1));
        // Two in ten never: no setting reaches 90%.
        let seeds: Vec<SeedSearch> = (1..=10).map(|i| seed(i, (i < 9).then(|| i as f64 * 100.0))).collect();
        assert_eq!(summarise(Family::Drip, "model", seeds).frontier, None);
        let seeds: Vec<SeedSearch> = (1..=10).map(|i| seed(i, Some(i as f64 * 100.0))).collect();
        assert_eq!(summarise(Family::Drip, "model", seeds).frontier, Some(900.0));
        // A beacon is plainer the shorter its interval: the 9th longest from the faint end.
        let seeds: Vec<SeedSearch> = (1..=10).map(|i| seed(i, Some(i as f64 * 100.0))).collect();
        assert_eq!(summarise(Family::Beacon, "model", seeds).frontier, Some(200.0));
    }
}
