//! The detector: an isolation forest over per-window features, trained on a baseline and
//! frozen, with its threshold calibrated to a target false-positive rate on that baseline.
//!
//! Frozen on purpose: a model that kept learning would learn a long burst of exfiltration
//! as normal. An isolation forest cannot see a deviation in a feature that never varied in
//! its training data (it never splits on it), and scores points far outside the training
//! range about as it scores the baseline's most extreme points; so the model also keeps
//! each feature's baseline percentiles and maximum, and a window that more than doubles
//! the baseline's maximum on a volume, fan-out or failure feature is anomalous whatever its
//! score. Every alert names the features that made it so, against those percentiles.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::detect::features::{WindowFeatures, N_FEATURES, WINDOW_FEATURES};
use crate::detect::forest::{ForestParams, IsolationForest, Matrix};

pub const MODEL_FORMAT: &str = "cis-model";
pub const MODEL_VERSION: u32 = 1;

/// What detections are attributed to, in events and reports.
pub const DETECTOR_NAME: &str = "isolation-forest (per-window flow features, frozen baseline model)";

/// A window is anomalous whatever its score when a guarded feature reaches
/// `ln(1 + max) + ln 2` (more than double the baseline's maximum, for a log-scaled one).
const GUARD_MARGIN_LOG: f64 = std::f64::consts::LN_2;
/// The same for a share (a rejected-flow share 0.25 above the baseline's maximum).
const GUARD_MARGIN_SHARE: f64 = 0.25;
/// Features the guard watches: volume, fan-out and failure. Not packets (bytes say it),
/// not periodicity (agents poll like metronomes).
const GUARDED: [&str; 8] = [
    "bytes_out",
    "connections",
    "destinations",
    "ports",
    "new_destinations",
    "reject_share",
    "top_destination_bytes",
    "top_destination_connections",
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub forest: ForestParams,
    /// The share of baseline windows allowed above the threshold.
    pub target_fpr: f64,
    /// The flow-log aggregation window the features are computed over, in seconds.
    pub window_s: i64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        // One false alarm in about 70 days of one interface's 60-second windows: an alarm
        // here isolates a machine.
        TrainOptions { forest: ForestParams::default(), target_fpr: 1e-5, window_s: 60 }
    }
}

/// Per-feature statistics of the baseline, in model units (log-scaled where the feature is).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaselineStats {
    pub windows: usize,
    pub p50: Vec<f64>,
    pub p99: Vec<f64>,
    pub max: Vec<f64>,
    /// The share of baseline windows at or above the threshold.
    pub achieved_fpr: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub format: String,
    pub version: u32,
    pub features: Vec<String>,
    pub options: TrainOptions,
    pub threshold: f64,
    pub baseline: BaselineStats,
    /// Every destination the baseline sent to: anything else counts as new.
    pub known_destinations: BTreeSet<IpAddr>,
    /// Where the baseline came from, for people reading the file.
    pub trained_on: String,
    forest: IsolationForest,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("the baseline has {0} window(s) with traffic; the model needs at least 32: give it more flow logs (an hour of 60-second windows is enough to start)")]
    TooLittleBaseline(usize),
    #[error("{0}")]
    Unreadable(String),
}

/// Why a window is anomalous: one feature against the baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub feature: String,
    pub meaning: String,
    /// In natural units (bytes, counts, a share).
    pub value: f64,
    pub baseline_p99: f64,
    pub baseline_max: f64,
    /// Over the guard's limit: anomalous whatever the score.
    pub beyond_limit: bool,
}

/// One scored window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub interface_id: String,
    pub instance_id: Option<String>,
    pub window_start: i64,
    pub score: f64,
    pub threshold: f64,
    pub anomalous: bool,
    /// Some feature is over the limit learned from the baseline.
    pub over_limits: bool,
    pub top_destination: Option<IpAddr>,
    /// Features above the baseline's 99th percentile, the most unusual first.
    pub reasons: Vec<Reason>,
}

impl Verdict {
    /// Where the window ranks as the detector decides: over a learned limit first, then
    /// by forest score. What evaluations rank by.
    pub fn rank(&self) -> f64 {
        self.score + if self.over_limits { 1.0 } else { 0.0 }
    }

    /// One line a person can act on.
    pub fn summary(&self) -> String {
        let why: Vec<String> = self.reasons.iter().map(Reason::describe).collect();
        format!(
            "score {:.3} (threshold {:.3}){}{}",
            self.score,
            self.threshold,
            self.top_destination.map(|d| format!(", top destination {d}")).unwrap_or_default(),
            if why.is_empty() { String::new() } else { format!(": {}", why.join("; ")) }
        )
    }
}

impl Reason {
    pub fn describe(&self) -> String {
        let n = |v: f64| {
            if self.feature.ends_with("share") || self.feature == "periodicity" {
                format!("{v:.2}")
            } else if self.feature.contains("bytes") {
                crate::base::units::human_bytes(v as u64)
            } else {
                format!("{v:.0}")
            }
        };
        format!(
            "{} {} (baseline p99 {}, max {}){}",
            self.meaning,
            n(self.value),
            n(self.baseline_p99),
            n(self.baseline_max),
            if self.beyond_limit { ", over twice the baseline's maximum" } else { "" }
        )
    }
}

/// The value at quantile `q` of sorted data (nearest rank, the higher one).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// The score that `target_fpr` of the baseline exceeds. Where the baseline holds at
/// least ten windows above it, that is the empirical quantile. Beyond the data (a day of
/// 60-second windows cannot show a one-in-100,000 rate) the tail is extrapolated, peaks over
/// a threshold. Scores are bounded by 1, so the tail is fitted to `y = -ln(1 - score)`,
/// which is not: the top 1% of `y` (at least ten) over their lowest, `u`, are taken as
/// exponential with their mean excess `b`, so `P(y > u + x) = (k / n) e^(-x / b)`, and
/// the threshold is the score at `y = u + b ln(k / (n * target_fpr))`.
fn calibrate(sorted: &[f64], target_fpr: f64) -> f64 {
    let n = sorted.len();
    if n as f64 * target_fpr >= 10.0 {
        return quantile(sorted, 1.0 - target_fpr);
    }
    let y = |s: f64| -(1.0 - s.min(1.0 - 1e-12)).ln();
    let k = (n / 100).max(10).min(n - 1);
    let u = y(sorted[n - 1 - k]);
    let excess = sorted[n - k..].iter().map(|&s| y(s) - u).sum::<f64>() / k as f64;
    let t = 1.0 - (-(u + excess * (k as f64 / (n as f64 * target_fpr)).ln())).exp();
    // Never below what the baseline itself reached.
    t.max(sorted[n - 1])
}

/// Natural units from model units.
fn natural(feature: usize, v: f64) -> f64 {
    if WINDOW_FEATURES[feature].log_scaled {
        v.exp_m1()
    } else {
        v
    }
}

impl Model {
    /// Trains on baseline windows. Destinations are learned in time order: the first
    /// quarter of the baseline only learns them, and from then on a window counts the
    /// destinations no earlier window sent to, so the model knows how often new ones appear.
    pub fn train(mut windows: Vec<WindowFeatures>, options: &TrainOptions, trained_on: &str) -> Result<Model, ModelError> {
        let busy = windows.iter().filter(|w| w.raw[crate::detect::features::CONNECTIONS] > 0.0).count();
        if busy < 32 {
            return Err(ModelError::TooLittleBaseline(busy));
        }
        windows.sort_by(|a, b| (a.window_start, &a.interface_id).cmp(&(b.window_start, &b.interface_id)));
        let first = windows.first().map(|w| w.window_start).unwrap_or(0);
        let last = windows.last().map(|w| w.window_start).unwrap_or(0);
        let warm_up_end = first + (last - first) / 4;
        let mut known = BTreeSet::new();
        for w in &mut windows {
            if w.window_start > warm_up_end {
                w.set_new_destinations(&|d| known.contains(d));
            }
            known.extend(w.destinations.iter().copied());
        }
        let data: Vec<f64> = windows.iter().flat_map(|w| w.vector()).collect();
        let x = Matrix::new(&data, N_FEATURES);
        let forest = IsolationForest::fit(x, &options.forest);
        let mut scores = forest.score(x);
        scores.sort_by(f64::total_cmp);
        let threshold = calibrate(&scores, options.target_fpr);
        // Strictly above the threshold alerts, so the baseline's own top score does not.
        let achieved_fpr = scores.iter().filter(|&&s| s > threshold).count() as f64 / scores.len() as f64;
        let column = |f: usize| {
            let mut c: Vec<f64> = (0..x.rows()).map(|r| x.row(r)[f]).collect();
            c.sort_by(f64::total_cmp);
            c
        };
        let columns: Vec<Vec<f64>> = (0..N_FEATURES).map(column).collect();
        Ok(Model {
            format: MODEL_FORMAT.into(),
            version: MODEL_VERSION,
            features: WINDOW_FEATURES.iter().map(|f| f.name.to_string()).collect(),
            options: options.clone(),
            threshold,
            baseline: BaselineStats {
                windows: windows.len(),
                p50: columns.iter().map(|c| quantile(c, 0.5)).collect(),
                p99: columns.iter().map(|c| quantile(c, 0.99)).collect(),
                max: columns.iter().map(|c| c.last().copied().unwrap_or(0.0)).collect(),
                achieved_fpr,
            },
            known_destinations: known,
            trained_on: trained_on.to_string(),
            forest,
        })
    }

    /// Scores windows (their new-destination counts are set against the baseline); the
    /// anomalous ones come with their reasons, the others too when `explain_all`.
    pub fn score(&self, windows: &mut [WindowFeatures], explain_all: bool) -> Vec<Verdict> {
        self.prepare(windows);
        let scores = self.forest_scores(windows);
        self.judge(windows, &scores, self.threshold, explain_all)
    }

    /// Sets each window's new-destination count against the baseline: what scoring needs,
    /// here or on an endpoint.
    pub fn prepare(&self, windows: &mut [WindowFeatures]) {
        let known: crate::detect::features::HashSet<IpAddr> = self.known_destinations.iter().copied().collect();
        for w in windows.iter_mut() {
            w.set_new_destinations(&|d| known.contains(d));
        }
    }

    /// The forest's score of each prepared window.
    pub fn forest_scores(&self, windows: &[WindowFeatures]) -> Vec<f64> {
        if windows.is_empty() {
            return Vec::new();
        }
        let data: Vec<f64> = windows.iter().flat_map(|w| w.vector()).collect();
        self.forest.score(Matrix::new(&data, N_FEATURES))
    }

    /// The forest's score of each row of a CSV as [`rcf_csv`] writes it: how the
    /// simulator's SageMaker endpoint serves the lab's model.
    pub fn score_csv(&self, csv: &str) -> Result<Vec<f64>, String> {
        let mut data = Vec::new();
        for (n, line) in csv.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let row: Vec<f64> =
                line.split(',').map(|v| v.trim().parse::<f64>()).collect::<Result<_, _>>().map_err(|e| format!("row {}: {e}", n + 1))?;
            if row.len() != N_FEATURES {
                return Err(format!("row {} has {} values; the model takes {N_FEATURES}", n + 1, row.len()));
            }
            data.extend(row);
        }
        if data.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.forest.score(Matrix::new(&data, N_FEATURES)))
    }

    /// Verdicts on prepared windows from their scores (this model's, or an endpoint's with
    /// that scorer's threshold); the learned limits apply either way.
    pub fn judge(&self, windows: &[WindowFeatures], scores: &[f64], threshold: f64, explain_all: bool) -> Vec<Verdict> {
        windows.iter().zip(scores).map(|(w, &score)| self.verdict(w, score, threshold, explain_all)).collect()
    }

    /// Whether feature `f` at `value` (model units) is over the guard's limit.
    fn beyond_limit(&self, f: usize, value: f64) -> bool {
        let spec = &WINDOW_FEATURES[f];
        let margin = if spec.log_scaled { GUARD_MARGIN_LOG } else { GUARD_MARGIN_SHARE };
        GUARDED.contains(&spec.name) && value >= self.baseline.max[f] + margin
    }

    /// The verdict on one window. Reasons are worked out for anomalous windows, and for
    /// the others only when `explain_all` asks (most windows are quiet, and a detector
    /// reading a gigabyte should not spend its time explaining them).
    fn verdict(&self, w: &WindowFeatures, score: f64, threshold: f64, explain_all: bool) -> Verdict {
        let v = w.vector();
        let over_limits = (0..N_FEATURES).any(|f| self.beyond_limit(f, v[f]));
        let anomalous = score > threshold || over_limits;
        let mut reasons: Vec<(f64, Reason)> = Vec::new();
        for (f, spec) in WINDOW_FEATURES.iter().enumerate().filter(|_| anomalous || explain_all) {
            let (p50, p99, max) = (self.baseline.p50[f], self.baseline.p99[f], self.baseline.max[f]);
            if v[f] <= p99 {
                continue;
            }
            let beyond_limit = self.beyond_limit(f, v[f]);
            // How unusual, in units of the baseline's own spread.
            let spread = (p99 - p50).max(0.05);
            reasons.push((
                (v[f] - p99) / spread + if beyond_limit { 1e6 } else { 0.0 },
                Reason {
                    feature: spec.name.to_string(),
                    meaning: spec.meaning.to_string(),
                    value: w.raw[f],
                    baseline_p99: natural(f, p99),
                    baseline_max: natural(f, max),
                    beyond_limit,
                },
            ));
        }
        reasons.sort_by(|a, b| b.0.total_cmp(&a.0));
        Verdict {
            interface_id: w.interface_id.clone(),
            instance_id: w.instance_id.clone(),
            window_start: w.window_start,
            score,
            threshold,
            anomalous,
            over_limits,
            top_destination: w.top_destination,
            reasons: reasons.into_iter().map(|(_, r)| r).collect(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("models serialize")
    }

    /// Reads a model file, refusing one of another format or a newer version.
    pub fn from_json(text: &str) -> Result<Model, ModelError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| ModelError::Unreadable(format!("not a cis model: {e}")))?;
        crate::base::versioned::check_header(&value, MODEL_FORMAT, MODEL_VERSION).map_err(ModelError::Unreadable)?;
        let model: Model = serde_json::from_value(value).map_err(|e| ModelError::Unreadable(format!("damaged model: {e}")))?;
        let names: Vec<&str> = WINDOW_FEATURES.iter().map(|f| f.name).collect();
        if model.features != names || model.forest.features() != N_FEATURES {
            return Err(ModelError::Unreadable(format!(
                "the model's features ({}) are not this version's ({}): train it again with `cis train`",
                model.features.join(", "),
                names.join(", ")
            )));
        }
        Ok(model)
    }

    pub fn load(path: &Path) -> crate::base::error::Result<Model> {
        let text = std::fs::read_to_string(path).map_err(|e| crate::base::error::Error::io(path, e))?;
        Model::from_json(&text).map_err(|e| crate::base::error::Error::BadState { path: path.to_path_buf(), message: e.to_string() })
    }
}

/// SageMaker's built-in Random Cut Forest sees the same window features: one window a
/// line, model units, no header, as its training jobs and CSV inference take them.
pub fn rcf_csv(windows: &[WindowFeatures]) -> String {
    let mut out = String::with_capacity(windows.len() * 96);
    for w in windows {
        let line: Vec<String> = w.vector().iter().map(|v| format!("{v:.6}")).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// A Random Cut Forest endpoint's answer, `{"scores": [{"score": 0.02}, ...]}`, one score
/// a window sent; anything else is an error that says what came back.
pub fn rcf_scores(answer: &[u8], windows: usize) -> Result<Vec<f64>, String> {
    #[derive(Deserialize)]
    struct Score {
        score: f64,
    }
    #[derive(Deserialize)]
    struct Answer {
        scores: Vec<Score>,
    }
    let shown = String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned();
    let a: Answer = serde_json::from_slice(answer)
        .map_err(|e| format!("the anomaly endpoint answered '{shown}': {e}; expected {{\"scores\": [{{\"score\": ...}}]}}"))?;
    if a.scores.len() != windows {
        return Err(format!("the anomaly endpoint scored {} windows of the {windows} sent", a.scores.len()));
    }
    Ok(a.scores.into_iter().map(|s| s.score).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::rng::Rng;
    use crate::formats::flowlog::{Action, FlowRecord};

    fn flow(start: i64, srcport: u16, dst: &str, bytes: u64) -> FlowRecord {
        crate::detect::features::tests::out(start, srcport, dst, 443, bytes, Action::Accept)
    }

    /// An agent polling one of three hosts every 30 s or so, for `hours`.
    fn baseline(hours: i64, seed: u64) -> Vec<FlowRecord> {
        let mut rng = Rng::seeded(seed);
        let hosts = ["52.46.141.10", "52.46.141.11", "52.46.141.12"];
        let mut t = 1_767_225_600.0;
        let mut out = Vec::new();
        while t < 1_767_225_600.0 + hours as f64 * 3600.0 {
            out.push(flow(t as i64, 32768 + rng.below(28000) as u16, hosts[rng.below(3) as usize], 2400 + rng.below(600)));
            t += rng.range_f64(25.0, 35.0);
        }
        out
    }

    #[test]
    fn trained_on_polling_it_flags_a_beacon_and_explains_why() {
        let model = Model::train(crate::detect::features::windows(&baseline(24, 1), 60), &TrainOptions::default(), "test").unwrap();
        assert!(model.threshold > 0.3 && model.threshold < 1.0);
        assert_eq!(model.baseline.achieved_fpr, 0.0, "extrapolated past the baseline's maximum");

        // A day of the same polling, another seed: nothing.
        let mut benign = crate::detect::features::windows(&baseline(24, 2), 60);
        let flagged: Vec<_> = model.score(&mut benign, false).into_iter().filter(|v| v.anomalous).collect();
        assert!(flagged.is_empty(), "{flagged:?}");

        let t0 = 1_767_312_000;
        let beacon: Vec<FlowRecord> = (0..12).map(|i| flow(t0 + 5 * i, 40000 + i as u16, "203.0.113.50", 16_000)).collect();
        let v = model.score(&mut crate::detect::features::windows(&beacon, 60), false).remove(0);
        assert!(v.anomalous, "{v:?}");
        assert_eq!(v.top_destination, Some("203.0.113.50".parse().unwrap()));
        let named: Vec<&str> = v.reasons.iter().map(|r| r.feature.as_str()).collect();
        assert!(named.contains(&"new_destinations") && named.contains(&"connections"), "{named:?}");
        assert!(v.summary().contains("destinations never seen in the baseline 1"), "{}", v.summary());
    }

    #[test]
    fn random_cut_forest_formats() {
        let w = crate::detect::features::windows(&baseline(1, 4), 60);
        let csv = rcf_csv(&w[..2]);
        assert_eq!(csv.lines().count(), 2);
        assert_eq!(csv.lines().next().unwrap().split(',').count(), N_FEATURES);
        assert_eq!(rcf_scores(br#"{"scores":[{"score":0.5},{"score":2.25}]}"#, 2).unwrap(), vec![0.5, 2.25]);
        assert!(rcf_scores(br#"{"scores":[{"score":0.5}]}"#, 2).unwrap_err().contains("scored 1 windows of the 2"));
        assert!(rcf_scores(b"<html>busy</html>", 1).unwrap_err().contains("answered '<html>busy</html>'"));
    }

    #[test]
    fn saves_loads_and_refuses_other_files() {
        let model = Model::train(crate::detect::features::windows(&baseline(2, 3), 60), &TrainOptions::default(), "test").unwrap();
        assert_eq!(Model::from_json(&model.to_json()).unwrap(), model);
        assert!(Model::from_json("{}").is_err());
        let newer = model.to_json().replacen("\"version\":1", "\"version\":99", 1);
        assert!(Model::from_json(&newer).unwrap_err().to_string().contains("newer"), "{}", Model::from_json(&newer).unwrap_err());
        assert!(matches!(Model::train(vec![], &TrainOptions::default(), "x"), Err(ModelError::TooLittleBaseline(0))));
    }
}
