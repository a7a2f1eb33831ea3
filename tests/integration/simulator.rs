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
