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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::app::cli::{FrontierArgs, SweepDetector};
use crate::app::runtime::{runtime, Time};
use crate::backends::sim::SimCloud;
use crate::base::error::{Error, Result};
use crate::model::evasion::Family;
use crate::model::lab::{LabName, LabOptions};
use crate::orchestrator::measure::RunRecord;
use crate::orchestrator::{Orchestrator, Silent};
use crate::report::frontier::{summarise, Frontier, Probe, SeedSearch, CATCH_SHARE, CONFIDENCE, FORMAT, VERSION};
use crate::sim::latency::LatencyModel;
use crate::store::state::StateDir;

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
        format: FORMAT.to_string(),
        version: VERSION,
        family: args.family,
        base_scenario: args.family.base().to_string(),
        knob: args.family.knob(),
        workload: args.workload.clone(),
        budget_s: args.budget.as_secs(),
        benign_hours: args.benign_hours,
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
    crate::base::files::remove_dir_if_present(dir)?;
    let result = runtime(Time::Virtual)?.block_on(async {
        let state = StateDir::new(dir);
        let cloud =
            SimCloud::open_with(&state.sim_account_dir(), Some(seed), region, crate::sim::faults::FaultProfile::None, latency.clone())?;
        let orch = Orchestrator::new(&cloud, &Silent, &state);
        let lab: LabName = "frontier".parse().expect("a valid lab name");
        let options = LabOptions { detector: detector.mode(), workload: args.workload.clone(), ..Default::default() };
        orch.up(&lab, &options).await?;
        // The benign stretch first: whatever it detects or isolates is false.
        let (false_alerts, false_isolations) = crate::app::sweep::benign_stretch(&cloud, args.benign_hours).await;
        if false_isolations > 0 {
            orch.release(&lab).await?;
        }
        let mut found = search(&orch, &lab, args.family, args.budget, args.steps, seed).await?;
        found.false_alerts += false_alerts;
        found.false_isolations = false_isolations;
        found.observed_hours += f64::from(args.benign_hours);
        Ok(found)
    });
    // The account is scratch: what the study keeps is in the result.
    let _ = crate::base::files::remove_dir_if_present(dir);
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
        false_isolations: 0,
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
        found.observed_hours += crate::report::observed_s(&record) / 3600.0;
        if caught {
            found.faintest_caught = Some(setting);
        } else {
            found.plainest_missed = Some(setting);
        }
        previous = Some(record);
    }
    Ok(found)
}

