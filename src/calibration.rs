//! Fits the simulator's pipeline delays to runs measured elsewhere (on AWS): each run
//! record's timeline gives one observation per stage, the stage's dominant delay is refitted
//! so the simulated stage matches them, and the Kolmogorov-Smirnov distance between the
//! observed and the simulated stage is reported before and after (`cis sim calibrate`).

use serde::Serialize;

use crate::base::error::Error;
use crate::base::rng::Rng;
use crate::orchestrator::measure::RunRecord;
use crate::sim::latency::{Delay, LatencyModel};

/// Below this many observations a stage is not refitted: its uncertainty is reported
/// instead, and the shipped table kept.
pub const MIN_RUNS: usize = 5;

/// Draws of a stage from a latency model, to compare its distribution with the runs'.
const MODEL_DRAWS: usize = 20_000;

/// Rounds of quantile matching.
const FIT_ROUNDS: usize = 6;

/// The probabilities at which a fitted table gives its quantiles.
const GRID: [f64; 11] = [0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0];

/// A stretch of a run's timeline that one chain of the simulator's delays makes up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// The end of the detected flow-log window to the detection event: flow-log delivery,
    /// the subscription's hand-over to the detector and the detector's start.
    Delivery,
    /// The detection event to the containment function's invocation: EventBridge's
    /// delivery to Lambda and the function's start.
    Handoff,
}

impl Stage {
    pub const ALL: [Stage; 2] = [Stage::Delivery, Stage::Handoff];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Delivery => "delivery",
            Stage::Handoff => "hand-off",
        }
    }

    /// The delays the simulator adds up for this stage, the refitted one first: it is the
    /// one the stage's spread comes from (minutes against sub-second, for delivery).
    pub fn delays(self) -> &'static [Delay] {
        match self {
            Stage::Delivery => &[Delay::FlowLogDelivery, Delay::SubscriptionToLambda, Delay::LambdaStart],
            Stage::Handoff => &[Delay::EventBridgeToLambda, Delay::LambdaStart],
        }
    }

    /// This stage's duration in one run, in seconds, where the run has it. For delivery it
    /// is biased short: the detected window is the first of the attack's windows to
    /// arrive, so long deliveries are seen less often than they happen (measured: runs
    /// made under a 450 s median show 373 s). The stage model does not yet model that race.
    pub fn observe(self, run: &RunRecord) -> Option<f64> {
        let t = &run.timeline;
        let (from, to) = match self {
            Stage::Delivery => (t.detected_window_end?, t.detected?),
            Stage::Handoff => (t.detected?, t.containment_invoked?),
        };
        let s = to.seconds_since(from);
        (s >= 0.0).then_some(s)
    }

    /// How far a flow-log aggregation window's close may fall after the end of the
    /// detector's window it completes, in seconds. Flow logs aggregate in windows of their
    /// own phase (the VPC user guide: "the maximum aggregation interval"), which a run
    /// record does not know; the stage model takes it uniform over the lab's default
    /// 60-second window.
    fn phase_s(self) -> f64 {
        match self {
            Stage::Delivery => 60.0,
            Stage::Handoff => 0.0,
        }
    }

    /// One draw of the stage under `model`.
    fn draw(self, model: &LatencyModel, rng: &mut Rng) -> f64 {
        let phase = rng.uniform() * self.phase_s();
        phase + self.delays().iter().map(|d| model.draw(*d, rng).as_secs_f64()).sum::<f64>()
    }

    /// `MODEL_DRAWS` draws of the stage under `model`, sorted.
    fn simulate(self, model: &LatencyModel, seed: u64) -> Vec<f64> {
        let mut rng = Rng::seeded(seed);
        let mut out: Vec<f64> = (0..MODEL_DRAWS).map(|_| self.draw(model, &mut rng)).collect();
        out.sort_by(f64::total_cmp);
        out
    }
}

/// One stage's fit.
#[derive(Clone, Debug, Serialize)]
pub struct StageFit {
    pub stage: Stage,
    /// The delay refitted (its table key), or that would be with enough runs.
    pub delay: &'static str,
    pub runs: usize,
    pub observed_p50_s: Option<f64>,
    pub observed_p90_s: Option<f64>,
    pub model_p50_s: f64,
    pub fitted_p50_s: Option<f64>,
    /// Kolmogorov-Smirnov distance between the runs and the shipped model's stage.
    pub ks_before: Option<f64>,
    /// The same against the fitted model's stage.
    pub ks_after: Option<f64>,
    /// Half-width of a 95% band around the runs' distribution (Dvoretzky-Kiefer-Wolfowitz):
    /// how far the true distribution may be from what the runs show.
    pub band_95: Option<f64>,
    pub fitted: bool,
}

/// What `cis sim calibrate` found.
#[derive(Clone, Debug, Serialize)]
pub struct Calibration {
    pub runs: usize,
    pub stages: Vec<StageFit>,
    /// The refitted delays, as the override file `--latency` reads.
    #[serde(skip)]
    pub overrides: String,
}

/// Fits `base` to `runs`; `seed` fixes the model's draws, so one seed gives one fit.
pub fn calibrate(runs: &[RunRecord], base: &LatencyModel, seed: u64) -> Result<Calibration, Error> {
    let observed: Vec<(Stage, Vec<f64>)> =
        Stage::ALL.into_iter().map(|stage| (stage, runs.iter().filter_map(|r| stage.observe(r)).collect())).collect();
    fit(runs.len(), &observed, base, seed)
}

/// Fits `base` to each stage's observed durations (seconds).
fn fit(runs: usize, observations: &[(Stage, Vec<f64>)], base: &LatencyModel, seed: u64) -> Result<Calibration, Error> {
    let mut model = base.clone();
    let mut stages = Vec::new();
    let mut fitted = Vec::new();
    for (stage, observed) in observations {
        let stage = *stage;
        let mut observed = observed.clone();
        observed.sort_by(f64::total_cmp);
        let delay = stage.delays()[0];
        let before = stage.simulate(base, seed);
        let n = observed.len();
        let mut fit = StageFit {
            stage,
            delay: delay.key(),
            runs: n,
            observed_p50_s: (n > 0).then(|| quantile(&observed, 0.5)),
            observed_p90_s: (n > 0).then(|| quantile(&observed, 0.9)),
            model_p50_s: quantile(&before, 0.5),
            fitted_p50_s: None,
            ks_before: (n > 0).then(|| ks_distance(&observed, &before)),
            ks_after: None,
            band_95: (n > 0).then(|| dkw_band(n)),
            fitted: false,
        };
        if n >= MIN_RUNS {
            // Quantile matching: the refitted delay's table moves, point by point, by how
            // far the simulated stage's quantile is from the runs', until they meet (the
            // rest of the chain is fixed; a few rounds suffice, its spread being small).
            let source = format!("fitted by cis sim calibrate to {n} runs");
            let mut points: Vec<(f64, f64)> = GRID.iter().map(|&p| (p, model.get(delay).quantile(p))).collect();
            for _ in 0..FIT_ROUNDS {
                let simulated = stage.simulate(&model, seed);
                for point in points.iter_mut() {
                    point.1 = (point.1 + quantile(&observed, point.0) - quantile(&simulated, point.0)).max(0.0);
                }
                for i in 1..points.len() {
                    points[i].1 = points[i].1.max(points[i - 1].1);
                }
                model.replace(delay, points.clone(), source.clone()).map_err(|e| Error::Internal(format!("a fitted table: {e}")))?;
            }
            let after = stage.simulate(&model, seed);
            fit.fitted_p50_s = Some(quantile(&after, 0.5));
            fit.ks_after = Some(ks_distance(&observed, &after));
            fit.fitted = true;
            fitted.push(delay);
        }
        stages.push(fit);
    }
    let overrides = model.to_toml(&fitted);
    Ok(Calibration { runs, stages, overrides })
}

impl Calibration {
    pub fn to_text(&self) -> String {
        let mut o = format!("{} run records\n", self.runs);
        o.push_str("stage      delay                  runs  observed p50  shipped p50  fitted p50  KS before  KS after  95% band\n");
        // Sub-second stages (the hand-off) keep their milliseconds.
        let secs = |v: Option<f64>| match v {
            None => "-".to_string(),
            Some(v) if v < 10.0 => format!("{v:.3} s"),
            Some(v) => format!("{v:.1} s"),
        };
        let num = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        for s in &self.stages {
            o.push_str(&format!(
                "{:<10} {:<22} {:>4}  {:>12}  {:>11}  {:>10}  {:>9}  {:>8}  {:>8}\n",
                s.stage.name(),
                s.delay,
                s.runs,
                secs(s.observed_p50_s),
                secs(Some(s.model_p50_s)),
                secs(s.fitted_p50_s),
                num(s.ks_before),
                num(s.ks_after),
                s.band_95.map_or("-".to_string(), |b| format!("±{b:.2}")),
            ));
        }
        for s in self.stages.iter().filter(|s| !s.fitted) {
            o.push_str(&match s.runs {
                0 => format!("{}: no run has this stage (a run must be detected, and isolated for the hand-off); the shipped table is kept\n", s.stage.name()),
                n => format!(
                    "{}: {n} runs are too few to refit (at least {MIN_RUNS}): the runs' distribution is known only to ±{:.2} in probability; the shipped table is kept\n",
                    s.stage.name(),
                    s.band_95.unwrap_or(1.0)
                ),
            });
        }
        o.push_str("not fitted: the isolation stage (a chain of EC2 calls whose number depends on --isolation and --forensics)\n");
        o
    }
}

/// The `p` quantile of sorted `v`, interpolated between order statistics.
fn quantile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let x = p.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (i, frac) = (x.floor() as usize, x - x.floor());
    match v.get(i + 1) {
        Some(next) => v[i] + (next - v[i]) * frac,
        None => v[i],
    }
}

/// The two-sample Kolmogorov-Smirnov statistic of sorted `a` and `b`: the largest gap
/// between their empirical distribution functions.
pub fn ks_distance(a: &[f64], b: &[f64]) -> f64 {
    let (mut i, mut j, mut d) = (0usize, 0usize, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

/// The Dvoretzky-Kiefer-Wolfowitz 95% band's half-width for `n` observations.
fn dkw_band(n: usize) -> f64 {
    ((2.0f64 / 0.05).ln() / (2.0 * n as f64)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ks_distance_is_zero_on_equal_samples_and_one_on_disjoint_ones() {
        let a = [1.0, 2.0, 3.0];
        assert_eq!(ks_distance(&a, &a), 0.0);
        assert_eq!(ks_distance(&a, &[4.0, 5.0]), 1.0);
        assert!((ks_distance(&[1.0, 2.0, 3.0, 4.0], &[3.0, 4.0, 5.0, 6.0]) - 0.5).abs() < 1e-12);
    }

    /// Stage durations drawn from `model` as the simulator chains them.
    fn drawn(stage: Stage, model: &LatencyModel, n: usize, seed: u64) -> Vec<f64> {
        let mut rng = Rng::seeded(seed);
        (0..n).map(|_| stage.draw(model, &mut rng)).collect()
    }

    #[test]
    fn a_known_table_is_recovered_from_the_stages_it_produces() {
        let shipped = LatencyModel::embedded();
        // The account being calibrated: delivery a third slower, EventBridge three times.
        let mut truth = shipped.clone();
        truth.stretch(Delay::FlowLogDelivery, 1.3);
        truth.stretch(Delay::EventBridgeToLambda, 3.0);
        let observations: Vec<(Stage, Vec<f64>)> = Stage::ALL.into_iter().map(|s| (s, drawn(s, &truth, 400, 11))).collect();
        let c = fit(400, &observations, &shipped, 1).unwrap();
        // The override file holds exactly the refitted delays.
        let fitted = shipped.with_overrides(&c.overrides).unwrap();
        assert_eq!(fitted.get(Delay::LambdaStart).quantile(0.5), shipped.get(Delay::LambdaStart).quantile(0.5));
        for (delay, tolerance) in [(Delay::FlowLogDelivery, 0.05), (Delay::EventBridgeToLambda, 0.10)] {
            for p in [0.25, 0.5, 0.9] {
                let (want, got) = (truth.get(delay).quantile(p), fitted.get(delay).quantile(p));
                assert!((got - want).abs() <= tolerance * want, "{}: p{p}: fitted {got:.3} s, true {want:.3} s", delay.key());
            }
        }
        for s in &c.stages {
            assert!(s.fitted);
            let (before, after) = (s.ks_before.unwrap(), s.ks_after.unwrap());
            assert!(after < 0.1 && after < before / 2.0, "{}: KS {before:.3} -> {after:.3}", s.stage.name());
        }
    }

    #[test]
    fn too_few_runs_keep_the_shipped_table_and_say_how_uncertain_they_are() {
        let shipped = LatencyModel::embedded();
        let observations = vec![(Stage::Delivery, vec![400.0, 420.0, 380.0]), (Stage::Handoff, vec![])];
        let c = fit(3, &observations, &shipped, 1).unwrap();
        assert!(c.stages.iter().all(|s| !s.fitted));
        assert_eq!(c.overrides.trim(), "");
        assert!((c.stages[0].band_95.unwrap() - 0.784).abs() < 1e-3);
        let text = c.to_text();
        assert!(text.contains("3 runs are too few to refit") && text.contains("±0.78"), "{text}");
        assert!(text.contains("hand-off: no run has this stage"), "{text}");
    }

    #[test]
    fn quantiles_interpolate_between_order_statistics() {
        let v = [0.0, 10.0, 20.0];
        assert_eq!(quantile(&v, 0.0), 0.0);
        assert_eq!(quantile(&v, 0.25), 5.0);
        assert_eq!(quantile(&v, 1.0), 20.0);
    }
}
