//! The simulator enforces what moto does not: deleting something still in use is a
//! DependencyViolation, and an instance frees its subnet and groups only once terminated.

use std::time::Duration;

use cis::cloud::{Cloud, CloudError};
use cis::lab::{DetectorMode, LabOptions, ResourceKind, Role};
use cis::orchestrator::Orchestrator;
use cis::progress::Silent;
use cis::sim::SimCloud;
use cis::state::StateDir;

#[test]
fn deleting_what_is_in_use_is_a_dependency_violation() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    runtime.block_on(async {
        let state = StateDir::new(dir.path());
        let cloud = SimCloud::open(&state.sim_account_dir(), Some(3), "us-east-1").unwrap();
        let orch = Orchestrator::new(&cloud, &Silent, &state);
        let lab = "dv".parse().unwrap();
        orch.up(&lab, &LabOptions { detector: DetectorMode::Lambda, ..Default::default() }).await.unwrap();
        let target = orch.target(&lab).unwrap();
        let id = |role: Role| target.id(role).unwrap().to_string();

        for role in [Role::Vpc, Role::Subnet, Role::TargetSecurityGroup, Role::InternetGateway, Role::InstanceRole] {
            let err = cloud.delete(role.kind(), &id(role)).await.unwrap_err();
            assert!(matches!(err, CloudError::DependencyViolation { .. }), "{role}: {err}");
        }

        // Terminating takes a while; until it is done the subnet is still in use.
        cloud.delete(ResourceKind::Instance, &id(Role::TargetInstance)).await.unwrap();
        let err = cloud.delete(ResourceKind::Subnet, &id(Role::Subnet)).await.unwrap_err();
        assert!(matches!(err, CloudError::DependencyViolation { .. }), "{err}");
        tokio::time::sleep(Duration::from_secs(180)).await;
        assert!(cloud.status(ResourceKind::Instance, &id(Role::TargetInstance)).await.unwrap_err().is_not_found());
        cloud.delete(ResourceKind::Subnet, &id(Role::Subnet)).await.unwrap();

        // down finishes the job from the ledger (NotFound counts as done) and sweeps.
        orch.down(&lab).await.unwrap();
        assert!(cloud.inspect(|w| w.live_resources().is_empty()));
    });
}

/// The detector's promise in the simulator: a day of the lab's benign baseline isolates
/// nothing, and every scenario of the catalogue that flow logs can see is detected (and
/// isolated where the scenario expects it).
#[test]
fn a_benign_day_isolates_nothing_and_every_visible_scenario_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    runtime.block_on(async {
        let state = StateDir::new(dir.path());
        let cloud = SimCloud::open(&state.sim_account_dir(), Some(11), "us-east-1").unwrap();
        let orch = Orchestrator::new(&cloud, &Silent, &state);
        let options = LabOptions { detector: DetectorMode::Lambda, ..Default::default() };

        let quiet = "quiet".parse().unwrap();
        orch.up(&quiet, &options).await.unwrap();
        tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
        let (records, detections, containments) =
            cloud.inspect(|w| (w.live_resources().len(), w.pipeline.detections.clone(), w.pipeline.containments.len()));
        println!("24 virtual hours of the idle-server baseline: {} detections, {containments} containments", detections.len());
        assert!(records > 0);
        assert!(detections.is_empty(), "false detections: {detections:#?}");
        assert_eq!(containments, 0);
        orch.down(&quiet).await.unwrap();

        for scenario in cis::scenario::catalogue() {
            let lab = format!("s-{}", scenario.id).chars().take(20).collect::<String>().trim_end_matches('-').parse().unwrap();
            orch.up(&lab, &options).await.unwrap();
            let run = orch.attack(&lab, &scenario).await.unwrap();
            println!(
                "{}: detected {}, isolated {}, latency {:?} s",
                scenario.id, run.metrics.detected, run.metrics.isolated, run.metrics.detection_latency_s
            );
            if scenario.expect.visible_in_flow_logs {
                assert_eq!(run.metrics.detected, scenario.expect.detected, "{}: {:?}", scenario.id, run.notes);
                assert_eq!(run.metrics.isolated, scenario.expect.isolated, "{}: {:?}", scenario.id, run.notes);
            } else {
                assert!(!run.metrics.detected, "{} is invisible to flow logs", scenario.id);
            }
            orch.down(&lab).await.unwrap();
        }
        assert!(cloud.inspect(|w| w.live_resources().is_empty()));
    });
}

/// False isolations are measured, not assumed: each workload profile runs for a virtual
/// day on a lab whose model learned that profile, and the detections and isolations it
/// provokes are counted (and printed); then the profile still lets an attack be caught.
#[test]
fn every_workload_profile_runs_a_virtual_day_without_a_false_isolation_and_attacks_are_still_caught() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    runtime.block_on(async {
        let state = StateDir::new(dir.path());
        let cloud = SimCloud::open(&state.sim_account_dir(), Some(5), "us-east-1").unwrap();
        let orch = Orchestrator::new(&cloud, &Silent, &state);
        let profiles = cis::scenario::baselines();
        assert_eq!(profiles.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["idle-server", "web-server", "batch-job"]);
        for profile in &profiles {
            let lab: cis::lab::LabName = profile.id.parse().unwrap();
            let options = LabOptions { detector: DetectorMode::Lambda, baseline: profile.id.clone(), ..Default::default() };
            orch.up(&lab, &options).await.unwrap();
            let before = cloud.inspect(|w| (w.pipeline.detections.len(), w.pipeline.containments.len()));
            tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
            let after = cloud.inspect(|w| (w.pipeline.detections.len(), w.pipeline.containments.len()));
            let (detections, containments) = (after.0 - before.0, after.1 - before.1);
            println!("{}: 24 virtual hours, {detections} detections, {containments} containments", profile.id);
            assert_eq!(containments, 0, "{}: false isolations in a benign day", profile.id);
            let run = orch.attack(&lab, &cis::scenario::find("exfil-unusual-port").unwrap()).await.unwrap();
            println!("{}: exfil-unusual-port detected {} after {:?} s", profile.id, run.metrics.detected, run.metrics.detection_latency_s);
            assert_eq!(run.verdict, "as expected", "{}: {:?}", profile.id, run.notes);
            orch.down(&lab).await.unwrap();
        }
    });
}

#[test]
fn a_sweep_shows_a_looser_threshold_buying_false_alarms() {
    let lab = crate::Lab::new();
    let out = lab.ok(&[
        "--output",
        "json",
        "sim",
        "sweep",
        "exfil-slow-drip",
        "--baseline",
        "web-server",
        "--runs",
        "1",
        "--hours",
        "12",
        "--windows",
        "60",
        "--target-fpr",
        "1e-5,1e-2",
    ]);
    let sweep: serde_json::Value = serde_json::from_str(&out).unwrap();
    let settings = sweep["settings"].as_array().unwrap();
    assert_eq!(settings.len(), 2);
    let (strict, loose) = (&settings[0], &settings[1]);
    assert_eq!((strict["target_fpr"].as_f64(), loose["target_fpr"].as_f64()), (Some(1e-5), Some(1e-2)));
    println!("strict: {strict}\nloose: {loose}");
    assert!(settings.iter().all(|s| s["attacks"]["detected"] == 1), "the attack is caught under both");
    assert!(
        loose["false_alerts"].as_u64().unwrap() > strict["false_alerts"].as_u64().unwrap(),
        "a threshold that lets 1% of benign windows alert raises more false alarms than one that lets 0.001% through"
    );
    let refused = lab.run(&["sim", "sweep", "--windows", "90"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--windows 90"));
}
