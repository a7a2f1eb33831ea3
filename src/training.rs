//! The simulated lab's anomaly model, trained the way a real lab's is: on flow logs of the
//! target's benign traffic alone.
//!
//! The baseline is captured by the simulator's own data plane, not synthesised beside it:
//! a scratch account gets the lab's network, target and flow log (created through the same
//! control plane, waiting out propagation as AWS makes one wait), runs the baseline profile
//! for [`BASELINE_HOURS`] of virtual time with a training seed of its own, and the records
//! its flow log delivers train the model. A model depends only on the window length, so
//! each is trained once per process and shared.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::base::clock::Timestamp;
use crate::cloud::CloudError;
use crate::detect::anomaly::{Model, TrainOptions};
use crate::detect::features::windows_of_lines;
use crate::formats::flowlog::LogFormat;
use crate::model::lab::{rendered, DetectorMode, LabGraph, LabName, LabOptions, Refs, Role, LAB_LOG_FORMAT};
use crate::model::scenario::{WorkloadProfile, Scenario};
use crate::sim::dataplane::Context;
use crate::sim::latency::LatencyModel;
use crate::sim::world::World;

/// Virtual hours of benign traffic a model is trained on.
pub const BASELINE_HOURS: u64 = 72;
/// The training capture's own seed: the model is the same whatever the account's seed.
const TRAINING_SEED: u64 = 0x7EA1_BA5E;

/// The roles a capture needs: the network, the target and its flow log.
const CAPTURE_ROLES: [Role; 12] = [
    Role::Vpc,
    Role::Subnet,
    Role::InternetGateway,
    Role::RouteTable,
    Role::TargetSecurityGroup,
    Role::InstanceRole,
    Role::InstanceRolePolicy,
    Role::InstanceProfile,
    Role::TargetInstance,
    Role::LogGroup,
    Role::FlowLogRole,
    Role::FlowLog,
];

/// The flow-log lines a target running the baseline profile produces over `hours`.
pub fn capture(
    window_s: u32,
    profile: &str,
    hours: u64,
    seed: u64,
    latency: &LatencyModel,
    workloads: &[WorkloadProfile],
) -> Result<Vec<String>, CloudError> {
    Ok(capture_labelled(window_s, profile, hours, seed, &[], latency, workloads)?.into_iter().map(|(line, _)| line).collect())
}

/// [`capture`] with scenarios run on the target at the given seconds after its start (no
/// pipeline watches: nothing is isolated), each line with the index in `attacks` of the
/// scenario whose traffic it records, if any.
pub fn capture_labelled(
    window_s: u32,
    profile: &str,
    hours: u64,
    seed: u64,
    attacks: &[(f64, Scenario)],
    latency: &LatencyModel,
    workloads: &[WorkloadProfile],
) -> Result<Vec<(String, Option<usize>)>, CloudError> {
    let lab: LabName = "baseline".parse().expect("a valid lab name");
    let options = LabOptions { detector: DetectorMode::Lambda, window_s, workload: profile.to_string(), ..Default::default() };
    let graph = LabGraph::build(&lab, &options, "baseline");
    let mut world = World::new(seed, &options.region);
    world.capture = Some(Vec::new());
    let faults = std::sync::Mutex::new(crate::sim::faults::Injector::new(crate::sim::faults::FaultProfile::None, seed));
    let ctx = Context { latency, workloads, faults: &faults };
    let mut now = Timestamp::SIM_EPOCH;
    let mut refs = Refs::new();
    for spec in graph.resources.iter().filter(|s| CAPTURE_ROLES.contains(&s.role)) {
        let spec =
            rendered(spec, &lab, &world.region.clone(), &world.account_id.clone(), &refs).map_err(|e| CloudError::Other(e.to_string()))?;
        // Wait out propagation (roles, instance profiles) as the orchestration would.
        let id = loop {
            match world.create(&spec, &refs, now, latency) {
                Ok(id) => break id,
                Err(e) if e.is_transient() && now.0 < Timestamp::SIM_EPOCH.0 + 600_000 => {
                    now = now.plus(Duration::from_secs(1));
                    world.advance(now, &ctx);
                }
                Err(e) => return Err(e),
            }
        };
        refs.insert(spec.role, id);
    }
    let start = now;
    let end = now.plus(Duration::from_secs(hours * 3600));
    let instance = refs.get(&Role::TargetInstance).cloned().ok_or_else(|| CloudError::Other("the capture has no target".into()))?;
    let mut attacks: Vec<(usize, &(f64, Scenario))> = attacks.iter().enumerate().collect();
    attacks.sort_by(|a, b| a.1 .0.total_cmp(&b.1 .0));
    for (i, (at_s, scenario)) in attacks {
        let at = start.plus_secs_f64(*at_s);
        world.advance(at, &ctx);
        world.start_attack(&format!("capture/{i}"), &format!("run-{i:04}"), lab.as_str(), &instance, scenario, at);
    }
    world.advance(end, &ctx);
    let label = |run: Option<String>| run.and_then(|r| r.strip_prefix("capture/").and_then(|i| i.parse().ok()));
    Ok(world.capture.take().unwrap_or_default().into_iter().map(|(line, run)| (line, label(run))).collect())
}

/// The window features of the baseline capture every lab's model learns from (and, on
/// AWS, the CSV its SageMaker Random Cut Forest trains on).
pub fn baseline_windows(
    window_s: u32,
    profile: &str,
    latency: &LatencyModel,
    workloads: &[WorkloadProfile],
) -> Result<Vec<crate::detect::features::WindowFeatures>, CloudError> {
    if !workloads.iter().any(|b| b.id == profile) {
        return Err(CloudError::Invalid(format!("no baseline profile '{profile}' in assets/workloads.toml")));
    }
    let lines = capture(window_s, profile, BASELINE_HOURS, TRAINING_SEED, latency, workloads)?;
    let format = LogFormat::parse(LAB_LOG_FORMAT).expect("the lab's format parses");
    Ok(windows_of_lines(lines.iter().map(String::as_str), &format, i64::from(window_s)))
}

/// Trained models by window length, shared by every simulated account in the process.
#[derive(Default)]
pub struct LabModels {
    by_window: Mutex<BTreeMap<(u32, String, u64), Arc<Model>>>,
}

impl LabModels {
    /// The process's models.
    pub fn shared() -> &'static LabModels {
        static MODELS: OnceLock<LabModels> = OnceLock::new();
        MODELS.get_or_init(LabModels::default)
    }

    /// The model for `window_s`-second windows of the `profile` workload, trained on first use.
    pub fn get(
        &self,
        window_s: u32,
        profile: &str,
        latency: &LatencyModel,
        workloads: &[WorkloadProfile],
    ) -> Result<Arc<Model>, CloudError> {
        self.get_calibrated(window_s, profile, None, latency, workloads)
    }

    /// [`LabModels::get`] with the threshold calibrated to `target_fpr` (the default when None).
    pub fn get_calibrated(
        &self,
        window_s: u32,
        profile: &str,
        target_fpr: Option<f64>,
        latency: &LatencyModel,
        workloads: &[WorkloadProfile],
    ) -> Result<Arc<Model>, CloudError> {
        let target_fpr = target_fpr.unwrap_or(TrainOptions::default().target_fpr);
        let key = (window_s, profile.to_string(), target_fpr.to_bits());
        let mut by_window = self.by_window.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = by_window.get(&key) {
            return Ok(Arc::clone(m));
        }
        let windows = baseline_windows(window_s, profile, latency, workloads)?;
        let options = TrainOptions { window_s: i64::from(window_s), target_fpr, ..Default::default() };
        let model = Model::train(
            windows,
            &options,
            &format!(
                "simulator: {BASELINE_HOURS} h of the {profile} baseline, {window_s}-second windows, training seed {TRAINING_SEED:#x}"
            ),
        )
        .map_err(|e| CloudError::Other(format!("training the simulated lab's model: {e}")))?;
        let model = Arc::new(model);
        by_window.insert(key, Arc::clone(&model));
        Ok(model)
    }
}

/// How far above the busiest baseline minute the egress alarm sits by default: a static
/// threshold an engineer would set after watching the server for three days.
pub const EGRESS_MARGIN: f64 = 1.5;

/// The egress alarm's threshold for a lab: the metric filter the lab deploys, run over the
/// baseline capture's flow records, gives bytes sent out of the VPC per minute; the
/// threshold is [`EGRESS_MARGIN`] times the busiest minute, or with a target false-positive
/// rate the minute-sum that share of the baseline's minutes exceed.
pub fn egress_threshold(
    calibration: &crate::model::lab::AlarmCalibration,
    latency: &LatencyModel,
    workloads: &[WorkloadProfile],
) -> Result<f64, CloudError> {
    let c = calibration;
    let values = egress_minutes(c.window_s, &c.workload, latency, workloads)?;
    Ok(threshold_of_minutes(&values, c.target_fpr))
}

/// The egress alarm's threshold over a baseline's per-minute egress bytes (every minute,
/// the quiet ones as zero, sorted ascending): [`EGRESS_MARGIN`] times the busiest, or with
/// a target false-positive rate the minute-sum that share of the minutes exceed. At least
/// one byte.
pub fn threshold_of_minutes(sorted: &[f64], target_fpr: Option<f64>) -> f64 {
    let busiest = sorted.last().copied().unwrap_or(0.0);
    match target_fpr {
        _ if sorted.is_empty() => 1.0,
        None => (busiest * EGRESS_MARGIN).max(1.0),
        Some(fpr) => {
            let allowed = (fpr * sorted.len() as f64).floor() as usize;
            sorted[sorted.len() - 1 - allowed.min(sorted.len() - 1)].max(1.0)
        }
    }
}

/// Every minute's egress bytes over the baseline capture, the quiet ones as zero, sorted;
/// captured once per window length and workload in a process.
fn egress_minutes(
    window_s: u32,
    workload: &str,
    latency: &LatencyModel,
    workloads: &[WorkloadProfile],
) -> Result<Arc<Vec<f64>>, CloudError> {
    static MINUTES: OnceLock<Mutex<BTreeMap<(u32, String), Arc<Vec<f64>>>>> = OnceLock::new();
    let key = (window_s, workload.to_string());
    let cache = MINUTES.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(Arc::clone(v));
    }
    if !workloads.iter().any(|b| b.id == workload) {
        return Err(CloudError::Invalid(format!("no baseline profile '{workload}' in assets/workloads.toml")));
    }
    let pattern = crate::formats::metric::FilterPattern::parse(&crate::formats::metric::egress_pattern(crate::model::lab::LAB_VPC_PREFIX))
        .map_err(CloudError::Invalid)?;
    let lines = capture(window_s, workload, BASELINE_HOURS, TRAINING_SEED, latency, workloads)?;
    let sums =
        crate::formats::metric::period_sums(&pattern, &crate::model::lab::egress_transformation(), lines.iter().map(String::as_str), 60);
    let minutes = (BASELINE_HOURS * 60) as usize;
    let mut values: Vec<f64> = sums.values().flat_map(|p| p.values().copied()).collect();
    values.resize(values.len().max(minutes), 0.0);
    values.sort_by(f64::total_cmp);
    let values = Arc::new(values);
    cache.lock().unwrap_or_else(|p| p.into_inner()).insert(key, Arc::clone(&values));
    Ok(values)
}

/// The graph leaves the egress alarm's threshold to its baseline; the orchestration fills
/// it in here, for either backend, before PutMetricAlarm. Other specs pass unchanged.
pub fn calibrated(mut spec: crate::model::lab::ResourceSpec) -> Result<crate::model::lab::ResourceSpec, CloudError> {
    use crate::model::lab::ResourceConfig as C;
    if let C::MetricAlarm { rule, calibrate, .. } = &mut spec.config {
        if let Some(c) = calibrate.take() {
            rule.threshold = egress_threshold(&c, &LatencyModel::embedded(), &crate::model::scenario::workloads())?;
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::lab::AlarmCalibration;

    #[test]
    fn the_egress_threshold_sits_above_the_baseline_and_a_looser_target_lowers_it() {
        let (latency, workloads) = (LatencyModel::embedded(), crate::model::scenario::workloads());
        for workload in ["idle-server", "web-server"] {
            let t = |target_fpr| {
                egress_threshold(&AlarmCalibration { workload: workload.into(), window_s: 60, target_fpr }, &latency, &workloads).unwrap()
            };
            let (default, strict, loose) = (t(None), t(Some(1e-5)), t(Some(1e-2)));
            println!("{workload}: default {default}, 1e-5 {strict}, 1e-2 {loose}");
            assert!(loose <= strict && strict < default, "{workload}: {loose} <= {strict} < {default}");
        }
    }
}
