//! The detector: two models of the same per-window features, trained on a baseline and
//! frozen, each with its threshold calibrated to a share of a target false-positive rate
//! on that baseline.
//!
//! - An isolation forest sees the features together: a combination the baseline never
//!   shows (a steady rhythm to a new destination group) is isolated early.
//! - A tail model sees each feature alone, against its baseline's distribution for that
//!   hour of the day where the baseline spans days (a nightly backup makes 02:00 busy, not
//!   14:00). A forest seldom splits early on the one feature that is extreme, and scores a
//!   point 1,000 times past the baseline's maximum about as it scores the maximum; the tail
//!   model scores it by how far out it is (ECOD's idea, with an exponential tail fitted
//!   past the 99th percentile), so an extreme on any single feature is an extreme.
//!
//! Frozen on purpose: a model that kept learning would learn a long burst of exfiltration
//! as normal. No hand rule decides: a window is anomalous when a model's score passes that
//! model's threshold, and the alert names the model and the features, against the baseline.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::detect::destinations::Group;
use crate::detect::features::{WindowFeatures, N_FEATURES, PERIODICITY, RESPONSE_BYTES, RETURNING_WINDOWS, WINDOW_FEATURES};
use crate::detect::forest::{ForestParams, IsolationForest, Matrix};
use crate::detect::memory::{Memory, HORIZON_S};

pub const MODEL_FORMAT: &str = "cis-model";
/// 4: an AWS service's destination group names its region (`aws:S3@us-east-1`).
pub const MODEL_VERSION: u32 = 4;

/// Which of the model's parts decided that a window is anomalous.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    /// The isolation forest (in the function, or the endpoint serving it).
    IsolationForest,
    /// The per-feature tail model: one feature far out in its baseline's tail.
    FeatureTails,
}

impl Component {
    pub fn name(self) -> &'static str {
        match self {
            Component::IsolationForest => "isolation-forest",
            Component::FeatureTails => "feature-tails",
        }
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Features the tail model leaves to the forest. A web server's answers to its clients
/// grow tenfold in a flash crowd, and agents poll like metronomes (four connections a
/// second apart, in whole seconds, are a perfect rhythm by chance): alone, neither says
/// anything about the server's intent.
const NOT_IN_TAILS: [usize; 2] = [RESPONSE_BYTES, PERIODICITY];

/// The tail model's quantile knots, with the share of the baseline above each.
const KNOTS: [f64; 5] = [0.5, 0.75, 0.9, 0.95, 0.99];
/// Where the baseline's tail is flat (a feature that never varied), the exponential tail
/// still needs a scale: 0.3 for log-scaled features (each 35% further is e times rarer),
/// 0.05 for shares. Smaller scales made one new destination group, or a window a few KB
/// over a very regular baseline's maximum, an extreme: an allow-list under another name.
const MIN_SCALE_LOG: f64 = 0.3;
const MIN_SCALE_SHARE: f64 = 0.05;
/// For a count of windows (the memory's), one window: a network come back to once more
/// than the baseline ever did is e times rarer, not a certainty.
const MIN_SCALE_WINDOWS: f64 = 1.0;

fn min_scale(feature: usize) -> f64 {
    match feature {
        RETURNING_WINDOWS => MIN_SCALE_WINDOWS,
        f if WINDOW_FEATURES[f].log_scaled => MIN_SCALE_LOG,
        _ => MIN_SCALE_SHARE,
    }
}
/// An hour-of-day slice (the hour and its neighbours) is used once it holds this many
/// baseline windows (two days of 60-second windows); below, the whole baseline.
const MIN_HOUR_WINDOWS: usize = 300;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub forest: ForestParams,
    /// The share of baseline windows allowed above the threshold, shared evenly by the
    /// forest and the tail model.
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

/// Per-feature statistics of the windows the model was trained on, in model units (log-scaled where the feature is).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingStats {
    pub windows: usize,
    pub p50: Vec<f64>,
    pub p99: Vec<f64>,
    pub max: Vec<f64>,
    /// The share of baseline windows at or above either threshold.
    pub achieved_fpr: f64,
}

/// One feature's baseline distribution, as the tail model keeps it: its quantiles at the
/// knots and the scale of an exponential tail past the 99th percentile (the mean excess of
/// the top 1%, at least ten windows).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tail {
    pub q: [f64; 5],
    pub scale: f64,
}

impl Tail {
    fn fit(sorted: &[f64], min_scale: f64) -> Tail {
        let q = KNOTS.map(|k| quantile(sorted, k));
        let n = sorted.len();
        let k = (n / 100).max(10).min(n).max(1);
        let excess = sorted[n - k..].iter().map(|v| (v - q[4]).max(0.0)).sum::<f64>() / k as f64;
        Tail { q, scale: excess.max(min_scale) }
    }

    /// `-ln` of the share of baseline windows that reach `x`: 0 at or below the median,
    /// log-linear between the knots, and past the 99th percentile growing with the
    /// distance in tail scales.
    pub fn surprise(&self, x: f64) -> f64 {
        if x <= self.q[0] {
            return 0.0;
        }
        let ln_above = |i: usize| (1.0 - KNOTS[i]).ln();
        for j in 1..KNOTS.len() {
            if x <= self.q[j] {
                let (a, b) = (self.q[j - 1], self.q[j]);
                let ln_p = if b > a { ln_above(j - 1) + (ln_above(j) - ln_above(j - 1)) * (x - a) / (b - a) } else { ln_above(j) };
                return -ln_p;
            }
        }
        -ln_above(KNOTS.len() - 1) + (x - self.q[4]) / self.scale
    }

    /// The value at the 99th percentile, in model units.
    pub fn p99(&self) -> f64 {
        self.q[4]
    }
}

/// The tail model: each feature's baseline distribution, over the whole baseline and,
/// where the baseline spans enough days, for each hour of the day (UTC) with its
/// neighbours.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TailModel {
    pub all_day: Vec<Tail>,
    /// 24 entries, one per hour; `None` where the slice held too few windows.
    pub by_hour: Vec<Option<Vec<Tail>>>,
    /// The score's threshold: what one feature's surprise must pass alone.
    pub threshold: f64,
    /// What two families' surprises together must pass, less `threshold`: a pair is
    /// scored as `pair - pair_offset`, on the same scale.
    pub pair_offset: f64,
}

/// The tail model's features in families that move together: volume, fan-out, novelty
/// (never-seen groups in the window, and those come back to over the last hour),
/// failure. One family far out is an extreme; two families moderately out together (a
/// drip of bytes to a never-seen network, a sweep of never-seen hosts) count as their sum.
/// Within a family only the most surprising feature counts, so that bytes out and bytes to
/// the busiest destination, which rise together, are not counted twice.
const FAMILIES: [&[usize]; 4] = [&[0, 1, 7], &[2, 3, 4, 8], &[5, 11], &[6]];

impl TailModel {
    /// Each feature's tail, from its column sorted.
    fn fit_columns(columns: &[Vec<f64>]) -> Vec<Tail> {
        columns.iter().enumerate().map(|(f, c)| Tail::fit(c, min_scale(f))).collect()
    }

    /// `all_day` holds the whole baseline's columns, sorted (the model's statistics are
    /// read from the same columns).
    fn fit(rows: &[[f64; N_FEATURES]], hours: &[u8], all_day: &[Vec<f64>]) -> TailModel {
        let all_day = Self::fit_columns(all_day);
        let by_hour = (0..24u8)
            .map(|h| {
                let near = |x: u8| [(h + 23) % 24, h, (h + 1) % 24].contains(&x);
                let slice: Vec<[f64; N_FEATURES]> = rows.iter().zip(hours).filter(|(_, &x)| near(x)).map(|(r, _)| *r).collect();
                (slice.len() >= MIN_HOUR_WINDOWS).then(|| Self::fit_columns(&sorted_columns(&slice)))
            })
            .collect();
        TailModel { all_day, by_hour, threshold: f64::INFINITY, pair_offset: 0.0 }
    }

    /// The most surprising feature's surprise, and the sum of the two most surprising
    /// families' (each its most surprising feature's).
    fn single_and_pair(surprises: &[f64; N_FEATURES]) -> (f64, f64) {
        let mut by_family: Vec<f64> = FAMILIES.iter().map(|fs| fs.iter().map(|&f| surprises[f]).fold(0.0, f64::max)).collect();
        by_family.sort_by(|a, b| b.total_cmp(a));
        (by_family[0], by_family[0] + by_family[1])
    }

    /// The tails that apply at `hour`.
    pub fn tails_at(&self, hour: u8) -> &[Tail] {
        self.by_hour.get(hour as usize).and_then(|t| t.as_deref()).unwrap_or(&self.all_day)
    }

    /// Each feature's surprise (0 for the features left to the forest).
    pub fn surprises(&self, v: &[f64; N_FEATURES], hour: u8) -> [f64; N_FEATURES] {
        let tails = self.tails_at(hour);
        let mut out = [0.0; N_FEATURES];
        for f in (0..N_FEATURES).filter(|f| !NOT_IN_TAILS.contains(f)) {
            out[f] = tails[f].surprise(v[f]);
        }
        out
    }

    /// The window's score: its most surprising feature's surprise, or two families'
    /// together less the pair offset, whichever is higher.
    pub fn score(&self, v: &[f64; N_FEATURES], hour: u8) -> f64 {
        let (single, pair) = Self::single_and_pair(&self.surprises(v, hour));
        single.max(pair - self.pair_offset)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub format: String,
    pub version: u32,
    pub features: Vec<String>,
    pub options: TrainOptions,
    /// The forest's threshold.
    pub threshold: f64,
    pub baseline: TrainingStats,
    /// Every destination group the baseline sent to: anything else counts as new.
    pub known_destinations: BTreeSet<Group>,
    /// Where the baseline came from, for people reading the file.
    pub trained_on: String,
    pub tails: TailModel,
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
    /// The baseline's 99th percentile and maximum, for the window's hour where the tail
    /// model keeps hours.
    pub baseline_p99: f64,
    pub baseline_max: f64,
    /// `-ln` of the share of baseline windows that reach the value.
    pub surprise: f64,
}

/// One scored window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub interface_id: String,
    pub instance_id: Option<String>,
    pub window_start: i64,
    /// The forest's score and threshold (the endpoint's, when it scored).
    pub score: f64,
    pub threshold: f64,
    /// The tail model's score (the top feature's surprise) and threshold.
    pub tail_score: f64,
    pub tail_threshold: f64,
    pub anomalous: bool,
    /// The part that decided, when anomalous: the one further past its threshold.
    pub decided_by: Option<Component>,
    pub top_destination: Option<std::net::IpAddr>,
    /// Features above the baseline's 99th percentile, the most surprising first.
    pub reasons: Vec<Reason>,
}

impl Verdict {
    /// Where the window ranks as the detector decides: the further either part is past
    /// its threshold, relative to it. What evaluations rank by.
    pub fn rank(&self) -> f64 {
        (self.score / self.threshold).max(self.tail_score / self.tail_threshold)
    }

    /// One line a person can act on.
    pub fn summary(&self) -> String {
        let why: Vec<String> = self.reasons.iter().map(Reason::describe).collect();
        format!(
            "{}forest {:.3} (threshold {:.3}), feature tails {:.1} (threshold {:.1}){}{}",
            self.decided_by.map(|c| format!("{c} decided: ")).unwrap_or_default(),
            self.score,
            self.threshold,
            self.tail_score,
            self.tail_threshold,
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
            "{} {} (baseline p99 {}, max {}; one baseline window in {} reaches it)",
            self.meaning,
            n(self.value),
            n(self.baseline_p99),
            n(self.baseline_max),
            odds(self.surprise)
        )
    }
}

/// `e^surprise` for people: "40", "2,000", "3e9".
fn odds(surprise: f64) -> String {
    let x = surprise.min(700.0).exp();
    if x < 1e6 {
        format!("{x:.0}")
    } else {
        format!("{x:.0e}")
    }
}

/// Each feature's column of `rows`, sorted.
fn sorted_columns(rows: &[[f64; N_FEATURES]]) -> Vec<Vec<f64>> {
    (0..N_FEATURES)
        .map(|f| {
            let mut c: Vec<f64> = rows.iter().map(|r| r[f]).collect();
            c.sort_by(f64::total_cmp);
            c
        })
        .collect()
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
/// a threshold: scores are mapped by `y` to an unbounded scale, the top 1% of `y` (at least
/// ten) over their lowest, `u`, are taken as exponential with their mean excess `b`, so
/// `P(y > u + x) = (k / n) e^(-x / b)`, and the threshold is the score at
/// `y = u + b ln(k / (n * target_fpr))`.
fn calibrate(sorted: &[f64], target_fpr: f64, y: impl Fn(f64) -> f64, score: impl Fn(f64) -> f64) -> f64 {
    let n = sorted.len();
    if n as f64 * target_fpr >= 10.0 {
        return quantile(sorted, 1.0 - target_fpr);
    }
    let k = (n / 100).max(10).min(n - 1);
    let u = y(sorted[n - 1 - k]);
    let excess = sorted[n - k..].iter().map(|&s| y(s) - u).sum::<f64>() / k as f64;
    let t = score(u + excess * (k as f64 / (n as f64 * target_fpr)).ln());
    // Never below what the baseline itself reached.
    t.max(sorted[n - 1])
}

/// The forest's threshold: its scores are bounded by 1, so the tail is fitted to
/// `y = -ln(1 - score)`, which is not.
fn calibrate_forest(sorted: &[f64], target_fpr: f64) -> f64 {
    calibrate(sorted, target_fpr, |s| -(1.0 - s.min(1.0 - 1e-12)).ln(), |y| 1.0 - (-y).exp())
}

/// Parts of the baseline, in time order, that the forest's threshold is also calibrated
/// on, each scored by a forest grown on the others.
const HELD_OUT_PARTS: usize = 3;

/// Each baseline row's score under a forest grown without its part of the baseline
/// (`data` holds rows of [`N_FEATURES`] in time order, so a part of 72 hours is a day);
/// empty when a part would be too small to grow a forest on the rest.
///
/// Why: the windows a forest was grown on are not the windows it will judge. Scores of
/// days it was not grown on say how far a benign day it has not seen reaches, and their
/// tail is the heavier one (on two 3-day idle-server baselines the threshold rose from
/// 0.811 to 0.827 and from 0.771 to 0.789). Calibrated in-sample only, the forest
/// isolated an idle server's package update, every feature inside the baseline's range,
/// in 21 of 24 runs, at 0.774 against 0.770.
fn held_out_forest_scores(data: &[f64], params: &ForestParams) -> Vec<f64> {
    let rows = data.len() / N_FEATURES;
    if rows < HELD_OUT_PARTS * 64 {
        return Vec::new();
    }
    let mut scores = Vec::with_capacity(rows);
    for part in 0..HELD_OUT_PARTS {
        let (from, to) = (rows * part / HELD_OUT_PARTS, rows * (part + 1) / HELD_OUT_PARTS);
        let rest: Vec<f64> = data[..from * N_FEATURES].iter().chain(&data[to * N_FEATURES..]).copied().collect();
        let grown = IsolationForest::fit(
            Matrix::new(&rest, N_FEATURES),
            &ForestParams { seed: params.seed.wrapping_add(1 + part as u64), ..params.clone() },
        );
        scores.extend(grown.score(Matrix::new(&data[from * N_FEATURES..to * N_FEATURES], N_FEATURES)));
    }
    scores
}

/// The tail model's thresholds, for one feature alone and for two families together, each
/// at half of `target_fpr`. A surprise is `-ln` of a tail probability, so where the fitted
/// tails hold, the chance that any of the `F` features reaches `t` is at most `F e^-t`,
/// and that two of the `K` families together reach `t` at most `C(K, 2) e^-t (1 + t)` (the
/// sum of two independent unit exponentials). Setting those to the rate keeps it, whatever
/// the baseline's own windows did: its scores cannot show the bound (they are the data the
/// tails were fitted to, so they never reach far past them), but they raise it where the
/// baseline's extremes are more common than the tails say (families are not independent).
fn calibrate_tails(singles: &[f64], pairs: &[f64], target_fpr: f64) -> (f64, f64) {
    let rate = target_fpr / 2.0;
    let features = (N_FEATURES - NOT_IN_TAILS.len()) as f64;
    let single = calibrate(singles, rate, |s| s, |y| y).max((features / rate).ln());
    let k = FAMILIES.len() as f64;
    let c = (k * (k - 1.0) / 2.0 / rate).ln();
    // t - ln(1 + t) = c, by fixed-point iteration (it converges fast: the log is flat).
    let mut t = c;
    for _ in 0..50 {
        t = c + (1.0 + t).ln();
    }
    let pair = calibrate(pairs, rate, |s| s, |y| y).max(t);
    (single, pair)
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
    /// Trains on baseline windows. Destination groups are learned in time order: the
    /// first quarter of the baseline only learns them, and from then on a window counts
    /// the groups no earlier window sent to, so the model knows how often new ones appear.
    /// The memory across windows is trained the same way: a group counts as never-seen for
    /// an hour from its first window (as it would on the day it first appeared), so the
    /// model knows how often the baseline comes back to a network it has just met.
    pub fn train(mut windows: Vec<WindowFeatures>, options: &TrainOptions, trained_on: &str) -> Result<Model, ModelError> {
        let busy = windows.iter().filter(|w| w.raw[crate::detect::features::CONNECTIONS] > 0.0 || w.raw[RESPONSE_BYTES] > 0.0).count();
        if busy < 32 {
            return Err(ModelError::TooLittleBaseline(busy));
        }
        windows.sort_by(|a, b| (a.window_start, &a.interface_id).cmp(&(b.window_start, &b.interface_id)));
        let first = windows.first().map(|w| w.window_start).unwrap_or(0);
        let last = windows.last().map(|w| w.window_start).unwrap_or(0);
        let warm_up_end = first + (last - first) / 4;
        let mut known = BTreeSet::new();
        let mut first_seen: std::collections::BTreeMap<Group, i64> = std::collections::BTreeMap::new();
        let mut memory = Memory::default();
        for w in &mut windows {
            let start = w.window_start;
            for g in &w.groups {
                first_seen.entry(*g).or_insert(start);
            }
            if start > warm_up_end {
                w.set_new_destinations(&|g| known.contains(g));
                memory.recall_and_remember(std::slice::from_mut(w), &|g| {
                    first_seen.get(g).is_some_and(|&f| f > start - HORIZON_S && f > warm_up_end)
                });
            }
            known.extend(w.groups.iter().copied());
        }
        let rows: Vec<[f64; N_FEATURES]> = windows.iter().map(|w| w.vector()).collect();
        let hours: Vec<u8> = windows.iter().map(|w| w.hour()).collect();
        let data: Vec<f64> = rows.iter().flatten().copied().collect();
        let x = Matrix::new(&data, N_FEATURES);
        let forest = IsolationForest::fit(x, &options.forest);
        let forest_scores = forest.score(x);
        let mut sorted = forest_scores.clone();
        sorted.sort_by(f64::total_cmp);
        let mut held_out = held_out_forest_scores(&data, &options.forest);
        held_out.sort_by(f64::total_cmp);
        // The target is shared by the two parts: either may alert. The threshold is the
        // higher of the two calibrations: a day the forest never saw is what it will score.
        let threshold = calibrate_forest(&sorted, options.target_fpr / 2.0).max(if held_out.is_empty() {
            0.0
        } else {
            calibrate_forest(&held_out, options.target_fpr / 2.0)
        });
        let columns = sorted_columns(&rows);
        let mut tails = TailModel::fit(&rows, &hours, &columns);
        let (mut singles, mut pairs): (Vec<f64>, Vec<f64>) =
            rows.iter().zip(&hours).map(|(r, &h)| TailModel::single_and_pair(&tails.surprises(r, h))).unzip();
        singles.sort_by(f64::total_cmp);
        pairs.sort_by(f64::total_cmp);
        let (single, pair) = calibrate_tails(&singles, &pairs, options.target_fpr / 2.0);
        tails.threshold = single;
        tails.pair_offset = pair - single;
        let tail_scores: Vec<f64> = rows.iter().zip(&hours).map(|(r, &h)| tails.score(r, h)).collect();
        // Strictly above a threshold alerts, so the baseline's own top score does not.
        let alerts = forest_scores.iter().zip(&tail_scores).filter(|(&f, &t)| f > threshold || t > tails.threshold).count();
        Ok(Model {
            format: MODEL_FORMAT.into(),
            version: MODEL_VERSION,
            features: WINDOW_FEATURES.iter().map(|f| f.name.to_string()).collect(),
            options: options.clone(),
            threshold,
            baseline: TrainingStats {
                windows: windows.len(),
                p50: columns.iter().map(|c| quantile(c, 0.5)).collect(),
                p99: columns.iter().map(|c| quantile(c, 0.99)).collect(),
                max: columns.iter().map(|c| c.last().copied().unwrap_or(0.0)).collect(),
                achieved_fpr: alerts as f64 / rows.len() as f64,
            },
            known_destinations: known,
            trained_on: trained_on.to_string(),
            tails,
            forest,
        })
    }

    /// Scores windows (their new-destination counts are set against the baseline, and
    /// their returning features from `memory`, which they update); the anomalous ones come
    /// with their reasons, the others too when `explain_all`.
    pub fn score(&self, windows: &mut [WindowFeatures], memory: &mut Memory, explain_all: bool) -> Vec<Verdict> {
        self.prepare(windows, memory);
        let scores = self.forest_scores(windows);
        self.judge(windows, &scores, self.threshold, explain_all)
    }

    /// Sets each window's new-destination count against the baseline, and its returning
    /// features from `memory` (which remembers the windows' never-seen groups): what
    /// scoring needs, here or on an endpoint.
    pub fn prepare(&self, windows: &mut [WindowFeatures], memory: &mut Memory) {
        let known = |g: &Group| self.known_destinations.contains(g);
        for w in windows.iter_mut() {
            w.set_new_destinations(&known);
        }
        memory.recall_and_remember(windows, &|g| !known(g));
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

    /// Verdicts on prepared windows from their forest scores (this model's, or an
    /// endpoint's with that scorer's threshold); the tail model scores here either way.
    pub fn judge(&self, windows: &[WindowFeatures], scores: &[f64], threshold: f64, explain_all: bool) -> Vec<Verdict> {
        windows.iter().zip(scores).map(|(w, &score)| self.verdict(w, score, threshold, explain_all)).collect()
    }

    /// The verdict on one window. Reasons are worked out for anomalous windows, and for
    /// the others only when `explain_all` asks (most windows are quiet, and a detector
    /// reading a gigabyte should not spend its time explaining them).
    fn verdict(&self, w: &WindowFeatures, score: f64, threshold: f64, explain_all: bool) -> Verdict {
        let v = w.vector();
        let hour = w.hour();
        let tail_score = self.tails.score(&v, hour);
        let (forest_over, tails_over) = (score > threshold, tail_score > self.tails.threshold);
        let decided_by = match (forest_over, tails_over) {
            (false, false) => None,
            (true, false) => Some(Component::IsolationForest),
            (false, true) => Some(Component::FeatureTails),
            // Both: the one further past its threshold, relative to it.
            (true, true) if score / threshold >= tail_score / self.tails.threshold => Some(Component::IsolationForest),
            (true, true) => Some(Component::FeatureTails),
        };
        let anomalous = decided_by.is_some();
        let tails = self.tails.tails_at(hour);
        let mut reasons: Vec<Reason> = Vec::new();
        for (f, spec) in WINDOW_FEATURES.iter().enumerate().filter(|_| anomalous || explain_all) {
            let p99 = tails[f].p99();
            if v[f] <= p99 {
                continue;
            }
            reasons.push(Reason {
                feature: spec.name.to_string(),
                meaning: spec.meaning.to_string(),
                value: w.raw[f],
                baseline_p99: natural(f, p99),
                baseline_max: natural(f, self.baseline.max[f]),
                surprise: tails[f].surprise(v[f]),
            });
        }
        reasons.sort_by(|a, b| b.surprise.total_cmp(&a.surprise));
        Verdict {
            interface_id: w.interface_id.clone(),
            instance_id: w.instance_id.clone(),
            window_start: w.window_start,
            score,
            threshold,
            tail_score,
            tail_threshold: self.tails.threshold,
            anomalous,
            decided_by,
            top_destination: w.top_destination,
            reasons,
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
        let flagged: Vec<_> = model.score(&mut benign, &mut Memory::default(), false).into_iter().filter(|v| v.anomalous).collect();
        assert!(flagged.is_empty(), "{flagged:?}");

        let t0 = 1_767_312_000;
        let beacon: Vec<FlowRecord> = (0..12).map(|i| flow(t0 + 5 * i, 40000 + i as u16, "203.0.113.50", 16_000)).collect();
        let v = model.score(&mut crate::detect::features::windows(&beacon, 60), &mut Memory::default(), false).remove(0);
        assert!(v.anomalous, "{v:?}");
        assert_eq!(v.top_destination, Some("203.0.113.50".parse().unwrap()));
        let named: Vec<&str> = v.reasons.iter().map(|r| r.feature.as_str()).collect();
        assert!(named.contains(&"new_destinations") && named.contains(&"connections"), "{named:?}");
        assert!(v.summary().contains("destination groups never seen in the baseline 1"), "{}", v.summary());
        assert!(v.decided_by.is_some() && v.summary().contains("decided"), "{}", v.summary());
    }

    /// Each third of the baseline is scored by a forest grown on the other two, and the
    /// model's threshold is at least what those scores and the in-sample ones each give.
    /// (That this keeps a benign novelty from isolating a server is the bench's to show:
    /// `benign-package-update` on the idle server, 21 of 24 runs isolated before, 0 of 100
    /// after.)
    #[test]
    fn the_forest_is_calibrated_on_days_it_was_not_grown_on() {
        let mut windows = crate::detect::features::windows(&baseline(72, 7), 60);
        windows.sort_by(|a, b| (a.window_start, &a.interface_id).cmp(&(b.window_start, &b.interface_id)));
        let data: Vec<f64> = windows.iter().flat_map(|w| w.vector()).collect();
        let params = ForestParams::default();
        let held_out = held_out_forest_scores(&data, &params);
        assert_eq!(held_out.len(), windows.len());
        // The last third, as a forest grown on the first two scores it.
        let rows = windows.len();
        let (from, to) = (rows * 2 / 3, rows);
        let grown = IsolationForest::fit(Matrix::new(&data[..from * N_FEATURES], N_FEATURES), &ForestParams { seed: params.seed + 3, ..params.clone() });
        assert_eq!(&held_out[from..], &grown.score(Matrix::new(&data[from * N_FEATURES..to * N_FEATURES], N_FEATURES))[..]);
        let in_sample = IsolationForest::fit(Matrix::new(&data, N_FEATURES), &params).score(Matrix::new(&data, N_FEATURES));
        assert_ne!(held_out, in_sample);
        let model = Model::train(windows, &TrainOptions::default(), "test").unwrap();
        let calibrated = |scores: &[f64]| {
            let mut sorted = scores.to_vec();
            sorted.sort_by(f64::total_cmp);
            calibrate_forest(&sorted, TrainOptions::default().target_fpr / 2.0)
        };
        assert_eq!(model.threshold, calibrated(&held_out).max(calibrated(&in_sample)));
        // Too little baseline to split: in-sample alone.
        assert!(held_out_forest_scores(&data[..100 * N_FEATURES], &params).is_empty());
    }

    #[test]
    fn every_feature_is_in_one_family_or_left_to_the_forest() {
        let mut seen: Vec<usize> = FAMILIES.iter().flat_map(|f| f.iter().copied()).chain(NOT_IN_TAILS).collect();
        seen.sort();
        assert_eq!(seen, (0..N_FEATURES).collect::<Vec<_>>());
        assert_eq!(WINDOW_FEATURES[PERIODICITY].name, "periodicity");
        assert_eq!(WINDOW_FEATURES[RESPONSE_BYTES].name, "response_bytes");
    }

    #[test]
    fn an_extreme_on_one_feature_is_an_extreme_and_the_tails_say_so() {
        let model = Model::train(crate::detect::features::windows(&baseline(24, 1), 60), &TrainOptions::default(), "test").unwrap();
        // One poll a window, to a known service address, but 1,000 times the bytes.
        let t0 = 1_767_312_000;
        let big = vec![flow(t0, 40000, "52.46.141.10", 3_000_000)];
        let v = model.score(&mut crate::detect::features::windows(&big, 60), &mut Memory::default(), false).remove(0);
        assert!(v.anomalous && v.decided_by == Some(Component::FeatureTails), "{v:?}");
        let named: Vec<&str> = v.reasons.iter().take(2).map(|r| r.feature.as_str()).collect();
        assert!(named.contains(&"bytes_out") && named.contains(&"top_destination_bytes"), "{}", v.summary());
        // Far past the threshold: e^5, about 150 times rarer than what alerts.
        assert!(v.tail_score > v.tail_threshold + 5.0, "{}", v.summary());
    }

    #[test]
    fn a_volume_usual_at_night_is_unusual_in_the_afternoon() {
        // Three days of polling, and a 300 MiB backup to S3 at 02:00 every night.
        let mut records = baseline(72, 5);
        for day in 0..3 {
            let t = 1_767_225_600 + day * 86_400 + 2 * 3600;
            records.extend((0..5).map(|i| flow(t + 60 * i, 41000 + i as u16, "52.216.20.10", 60 << 20)));
        }
        records.sort_by_key(|r| r.start);
        let model = Model::train(crate::detect::features::windows(&records, 60), &TrainOptions::default(), "test").unwrap();
        assert!(model.tails.by_hour.iter().all(Option::is_some), "three days fill every hour");
        let day4 = 1_767_225_600 + 3 * 86_400;
        let upload = |hour: i64| {
            let mut w = crate::detect::features::windows(&[flow(day4 + hour * 3600 + 60, 42000, "52.216.21.7", 60 << 20)], 60);
            model.score(&mut w, &mut Memory::default(), false).remove(0)
        };
        assert!(!upload(2).anomalous, "{}", upload(2).summary());
        let afternoon = upload(14);
        assert!(afternoon.anomalous, "{}", afternoon.summary());
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
        let newer = model.to_json().replacen(&format!("\"version\":{MODEL_VERSION}"), "\"version\":99", 1);
        assert!(Model::from_json(&newer).unwrap_err().to_string().contains("newer"), "{}", Model::from_json(&newer).unwrap_err());
        assert!(matches!(Model::train(vec![], &TrainOptions::default(), "x"), Err(ModelError::TooLittleBaseline(0))));
    }
}
