//! A crash at every step of `up` (and of `down`) leaves nothing `down` cannot remove.
//!
//! The simulator aborts the process, as SIGKILL would, right after its N-th persisted
//! change: the resource exists in the account but the ledger may not know its id yet.

use crate::Lab;

fn crashed_run(lab: &Lab, args: &[&str], after: usize) {
    let out = lab.cmd(args).env(cis::backends::sim::CRASH_AFTER_ENV, after.to_string()).output().unwrap();
    assert!(!out.status.success(), "cis {args:?} was to be killed after step {after}");
}

#[test]
fn killing_up_at_every_step_then_down_leaves_nothing() {
    let steps = 35;
    for k in 1..=steps {
        let lab = Lab::new();
        crashed_run(&lab, &["up"], k);
        assert_eq!(lab.graph_resources().len(), k, "step {k}: the account holds what was created");
        let down = lab.run(&["down"]);
        assert!(down.status.success(), "step {k}: down failed: {}", String::from_utf8_lossy(&down.stderr));
        assert_eq!(lab.live_resources(), vec![], "step {k}: down left resources behind");
    }
    // One step past the end: up completes, nothing to kill.
    let lab = Lab::new();
    let out = lab.cmd(&["up"]).env(cis::backends::sim::CRASH_AFTER_ENV, (steps + 1).to_string()).output().unwrap();
    assert!(out.status.success(), "the lab has exactly {steps} creating steps");
}

#[test]
fn up_after_a_crash_resumes_and_adopts_what_was_created() {
    for k in [1, 9, 17, 35] {
        let lab = Lab::new();
        crashed_run(&lab, &["up"], k);
        let up: serde_json::Value = serde_json::from_str(&lab.ok(&["up", "--output", "json"])).unwrap();
        let resources = up["resources"].as_array().unwrap();
        assert_eq!(resources.len(), 35);
        // Creates run concurrently, so a crash can catch several created but unrecorded:
        // each is adopted, none duplicated.
        let adopted = resources.iter().filter(|r| r["action"] == "adopted").count();
        assert!(adopted >= 1, "step {k}: the resource created just before the crash is adopted");
        assert_eq!(lab.graph_resources().len(), 35, "step {k}: no duplicates");
        lab.ok(&["down"]);
        assert_eq!(lab.live_resources(), vec![]);
    }
}

#[test]
fn killing_down_midway_then_down_again_leaves_nothing() {
    for k in [1, 12, 30] {
        let lab = Lab::new();
        lab.ok(&["up"]);
        crashed_run(&lab, &["down"], k);
        lab.ok(&["down"]);
        assert_eq!(lab.live_resources(), vec![], "down killed at step {k}");
    }
}
