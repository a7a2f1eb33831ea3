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
