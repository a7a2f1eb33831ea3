//! The evasion frontier as a result (`cis sim frontier` finds it): each seed's search, the
//! frontier over the seeds with its interval, and how it reads as text, as JSON and as a
//! chart, on its own page or in `cis report --format html`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::html::{esc, page};
use crate::model::evasion::{Family, Knob};

/// The share of seeds an attack must be caught in to stand inside the frontier.
pub const CATCH_SHARE: f64 = 0.9;
/// The confidence of the interval around it.
pub const CONFIDENCE: f64 = 0.95;

pub const FORMAT: &str = "cis-frontier";
pub const VERSION: u32 = 1;

/// One run of the search.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Probe {
    pub setting: f64,
    pub caught: bool,
    pub detection_latency_s: Option<f64>,
}

/// One seed's search.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SeedSearch {
    pub seed: u64,
    /// The faintest setting caught; None when even the plainest was missed.
    pub faintest_caught: Option<f64>,
    /// The plainest setting missed; None when even the faintest was caught.
    pub plainest_missed: Option<f64>,
    pub probes: Vec<Probe>,
    /// Detections of windows holding none of the attack, over this seed's runs and its
    /// benign hours (`--benign-hours`).
    pub false_alerts: usize,
    /// Isolations during the benign hours.
    #[serde(default)]
    pub false_isolations: usize,
    pub observed_hours: f64,
}

/// One detector's frontier over the seeds.
#[derive(Debug, Serialize, Deserialize)]
pub struct DetectorFrontier {
    pub detector: String,
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
    /// Detections of windows holding none of an attack's flows, over the runs and the
    /// benign hours.
    pub false_alerts: usize,
    /// Isolations during the benign hours.
    #[serde(default)]
    pub false_isolations: usize,
    pub observed_hours: f64,
    pub false_alerts_per_lab_day: Option<f64>,
    pub seeds: Vec<SeedSearch>,
}

/// `cis sim frontier`'s result.
#[derive(Debug, Serialize, Deserialize)]
pub struct Frontier {
    pub format: String,
    pub version: u32,
    pub family: Family,
    pub base_scenario: String,
    pub knob: Knob,
    pub workload: String,
    pub budget_s: u64,
    /// Benign hours each seed's lab ran before its search (`--benign-hours`).
    #[serde(default)]
    pub benign_hours: u32,
    pub first_seed: u64,
    pub seeds: u32,
    pub steps: u32,
    pub catch_share: f64,
    pub confidence: f64,
    pub detectors: Vec<DetectorFrontier>,
}

/// The frontier over the seeds: seed i is caught at every setting at least as plain as its
/// faintest caught t_i, so the faintest setting caught in a share q of the seeds is the
/// ceil(q n)-th of the t_i from the faint end (a seed never caught last). The interval is
/// the order statistics that hold that quantile with [`CONFIDENCE`], from the binomial
/// distribution: it assumes nothing of how the t_i are spread.
pub fn summarise(family: Family, detector: &str, seeds: Vec<SeedSearch>) -> DetectorFrontier {
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
        detector: detector.to_string(),
        frontier: at(k),
        interval: (low.and_then(at), high.and_then(at)),
        never_caught: seeds.iter().filter(|s| s.faintest_caught.is_none()).count(),
        caught_at_faintest: seeds.iter().filter(|s| s.faintest_caught == Some(faintest)).count(),
        runs,
        false_alerts,
        false_isolations: seeds.iter().map(|s| s.false_isolations).sum(),
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
            let mut rate = d.false_alerts_per_lab_day.map_or_else(|| "-".into(), |r| format!("{r:.2} ({:.0} h)", d.observed_hours));
            if d.false_isolations > 0 {
                rate.push_str(&format!(", {} false isolation(s)", d.false_isolations));
            }
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
        let _ = writeln!(
            o,
            "False alerts are counted in the runs' windows that hold none of the attack{}.",
            if self.benign_hours > 0 { format!(" and over {} benign hours a seed before its search", self.benign_hours) } else { String::new() }
        );
        o
    }

    /// A self-contained page: the section below, under a title of its own.
    pub fn to_html(&self) -> String {
        page(&format!("cis evasion frontier: {} on {}", self.family.name(), self.workload), &self.section("h1"))
    }

    /// The frontier as a section of a page, headed with `heading` (`h1`, `h2`): a summary,
    /// the chart (per detector, the seeds' faintest caught settings on a log axis, the
    /// interval as a band, the frontier as a bar) and the table.
    pub fn section(&self, heading: &str) -> String {
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
            let _ = write!(svg, "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>", left - 10.0, y + 18.0, esc(&d.detector));
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
            "<{heading}>Evasion frontier: {} on {}</{heading}>\n<p class=\"summary\">Shaped from <code>{}</code>, knob: {}; budget {} min, {} seeds from {}. Left is fainter. Each dot is a seed's faintest caught setting; the red bar is the frontier (caught in {:.0}% of seeds or more at it and anything plainer); the band is its {:.0}% interval over seeds.</p>\n",
            esc(self.family.name()),
            esc(&self.workload),
            esc(&self.base_scenario),
            esc(&self.knob.name),
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
        body
    }

    /// Where a study of `family` on `workload` is kept in a state directory's `frontiers/`:
    /// the last one of each replaces the one before.
    pub fn file_name(family: Family, workload: &str) -> String {
        format!("{}-{workload}.json", family.name())
    }

    /// Reads a kept study; a file of another format or version is refused by name.
    pub fn load(path: &std::path::Path) -> crate::base::error::Result<Frontier> {
        crate::base::files::read_versioned(path, FORMAT, VERSION, "frontier study", "run `cis sim frontier` again to replace it")
    }

    /// Every study kept in `dir`, by file name; none when the directory is not there.
    pub fn load_all(dir: &std::path::Path) -> crate::base::error::Result<Vec<Frontier>> {
        use crate::base::error::Error;
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(Error::io(dir, e)),
        };
        let mut paths: Vec<std::path::PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        paths.iter().map(|p| Frontier::load(p)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(seed: u64, faintest_caught: Option<f64>) -> SeedSearch {
        SeedSearch { seed, faintest_caught, plainest_missed: None, probes: vec![], false_alerts: 0, false_isolations: 0, observed_hours: 1.0 }
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
