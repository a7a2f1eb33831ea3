//! A crash at every step of `up` (and of `down`) leaves nothing `down` cannot remove; a
//! crash at every step of `attack` leaves a lab the next attack can use.
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

/// The runs' verdicts, in run order, as the report lists them.
fn verdicts(lab: &Lab) -> Vec<(String, String)> {
    let report: serde_json::Value = serde_json::from_str(&lab.ok(&["report", "--output", "json"])).unwrap();
    report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["run_id"].as_str().unwrap().into(), r["verdict"].as_str().unwrap().into()))
        .collect()
}

#[test]
fn killing_attack_at_20_points_leaves_a_lab_the_next_attack_uses() {
    // Kill points: right after the script's start is persisted (before the run file holds
    // its handle), then instants of virtual time drawn by `--faults crashes` over the
    // first 20 minutes of `attack --all` (the warm-up, the first run's attack, detection,
    // containment, the drain before the next run).
    let (mut killed, mut interrupted) = (0, 0);
    for point in 0..20 {
        let lab = Lab::new();
        lab.ok(&["up"]);
        let out = if point == 0 {
            lab.cmd(&["attack", "--all"]).env(cis::backends::sim::CRASH_AFTER_ENV, "1").output().unwrap()
        } else {
            lab.run(&["--faults", "crashes", "--seed", &point.to_string(), "attack", "--all"])
        };
        assert!(!out.status.success(), "point {point}: `attack --all` outlasts 20 minutes, so it is killed");
        killed += 1;
        // A killed run's number stays taken; the next attack closes it (script stopped,
        // target released) and runs on a released, quiet target.
        let next = lab.run(&["attack", "exfil-https-bulk", "--output", "json"]);
        assert!(next.status.success(), "point {point}: the attack after a kill failed: {}", String::from_utf8_lossy(&next.stderr));
        let runs: serde_json::Value = serde_json::from_slice(&next.stdout).unwrap();
        assert_eq!(runs[0]["verdict"], "as expected", "point {point}: {}", runs[0]);
        let all = verdicts(&lab);
        let (last, before) = all.split_last().unwrap();
        assert_eq!(last.1, "as expected", "point {point}");
        assert!(before.iter().all(|(_, v)| v == "interrupted"), "point {point}: {all:?}");
        interrupted += before.len();
        let report: serde_json::Value = serde_json::from_str(&lab.ok(&["report", "--output", "json"])).unwrap();
        assert_eq!(report["summary"]["runs"], 1, "point {point}: an interrupted run is left out of the figures");
        assert!(std::fs::read_dir(lab.state().join("sim/labs/default/runs"))
            .unwrap()
            .all(|e| { !e.unwrap().file_name().to_string_lossy().ends_with(".open.json") }));
        lab.ok(&["down"]);
        assert_eq!(lab.live_resources(), vec![], "point {point}");
    }
    println!("attack killed at {killed} points: {interrupted} inside a run, closed as interrupted by the next attack; every next attack as expected");
    assert!(killed == 20 && interrupted >= 15, "kills inside and outside a run: {killed} killed, {interrupted} inside");
}
