//! up, status, attack, report and down as separate invocations, as against AWS.

use crate::Lab;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

#[test]
fn up_then_down_leaves_nothing_in_the_account() {
    let lab = Lab::new();
    let up = json(&lab.ok(&["up", "--output", "json"]));
    let n = up["resources"].as_array().unwrap().len();
    assert_eq!(n, 35, "the default lab has 35 resources");
    assert_eq!(lab.graph_resources().len(), n);
    assert_eq!(lab.live_resources().len(), n + 1, "and the target's root volume");
    let down = json(&lab.ok(&["down", "--output", "json"]));
    assert_eq!(down["deleted"].as_array().unwrap().len(), n);
    assert_eq!(lab.live_resources(), vec![]);
    assert!(!lab.state().join("sim/labs/default/ledger.json").exists(), "the ledger goes last");
    let again = lab.ok(&["down"]);
    assert!(again.contains("nothing to delete"), "{again}");
}

#[test]
fn up_twice_is_idempotent() {
    let lab = Lab::new();
    lab.ok(&["up", "--detector", "lambda"]);
    let before = lab.live_resources();
    let second = json(&lab.ok(&["up", "--output", "json"]));
    assert!(second["resources"].as_array().unwrap().iter().all(|r| r["action"] == "unchanged"), "{second}");
    assert_eq!(lab.live_resources(), before);
    let other = lab.run(&["up", "--detector", "endpoint"]);
    assert_eq!(other.status.code(), Some(2), "changing options of an existing lab is refused");
    assert_eq!(lab.live_resources(), before);
    lab.ok(&["down"]);
}

#[test]
fn lost_ledger_is_swept_by_tags() {
    let lab = Lab::new();
    lab.ok(&["up", "--lab", "class-1"]);
    lab.ok(&["up", "--lab", "class-2", "--detector", "lambda"]);
    std::fs::remove_file(lab.state().join("sim/labs/class-1/ledger.json")).unwrap();
    let down = json(&lab.ok(&["down", "--lab", "class-1", "--output", "json"]));
    assert!(down["deleted"].as_array().unwrap().iter().all(|d| d["via"] == "sweep"));
    let left = lab.live_resources();
    assert!(!left.is_empty(), "the other lab is untouched");
    let status = lab.ok(&["status", "--all"]);
    assert_eq!(status.trim(), "class-2");
    lab.ok(&["down", "--lab", "class-2"]);
    assert_eq!(lab.live_resources(), vec![]);
}

#[test]
fn attack_report_and_status_across_invocations() {
    let lab = Lab::new();
    lab.ok(&["up"]);
    let status = lab.ok(&["status"]);
    assert!(status.contains("target") && status.contains("ready") && !status.contains("drift"), "{status}");
    let runs = json(&lab.ok(&["attack", "--output", "json"]));
    let run = &runs[0];
    assert_eq!(run["scenario"], "exfil-http-beacon");
    assert_eq!(run["verdict"], "as expected");
    let t = &run["timeline"];
    for field in [
        "attack_start",
        "first_exfil_flow",
        "records_delivered",
        "detected",
        "containment_invoked",
        "isolated",
        "last_exfil_byte",
        "notified",
    ] {
        assert!(t[field].is_i64(), "timeline lacks {field}: {t}");
    }
    let at = |f: &str| t[f].as_i64().unwrap();
    assert!(at("first_exfil_flow") <= at("records_delivered"));
    assert!(at("records_delivered") <= at("detected"));
    assert!(at("detected") <= at("containment_invoked"));
    assert!(at("containment_invoked") <= at("isolated"));
    assert!(at("isolated") <= at("notified"));

    // Latencies follow the latency model: detection waits for the window to close and the
    // records to be delivered (60 s + at least 60 s, about 5 min typically).
    let m = &run["metrics"];
    let detection = m["detection_latency_s"].as_f64().unwrap();
    assert!((120.0..=1200.0).contains(&detection), "detection latency {detection}");
    let isolation = m["isolation_latency_s"].as_f64().unwrap();
    assert!(isolation < 10.0, "isolation latency {isolation}");
    assert_eq!(m["bytes_exfiltrated"], 20 * 16384);

    // The instance is isolated now: status still shows every resource, no drift.
    let status = lab.ok(&["status", "--output", "json"]);
    assert!(json(&status)["resources"].as_array().unwrap().iter().all(|r| r["drift"] == false));

    // A second run on the isolated target is refused with the command that releases it
    // (it would run blocked and be judged on the first run's isolation), and nothing of
    // it is kept: no run record, no run number taken.
    let refused = lab.run(&["attack", "benign-package-update"]);
    assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("isolated") && stderr.contains("cis release"), "{stderr}");
    lab.ok(&["release"]);
    assert!(lab.ok(&["attack", "exfil-http-beacon"]).contains("run-0002"));
    let report = json(&lab.ok(&["report", "--output", "json"]));
    assert_eq!(report["summary"]["runs"], 2);
    let text = lab.ok(&["report"]);
    assert!(text.contains("detection latency") && text.contains("run-0001") && text.contains("run-0002"), "{text}");
    lab.ok(&["down"]);
    assert_eq!(lab.live_resources(), vec![]);
    // Runs outlive the lab, so the report can still be read.
    assert!(lab.ok(&["report"]).contains("2 run(s)"));
}

#[test]
fn a_long_lived_stream_is_cut_by_the_two_step_swap_and_outlives_a_one_step_one() {
    // Connection tracking: only the two-step swap (allow-all, then isolation) cuts a
    // tracked stream; moving straight to the isolation group leaves it flowing.
    let two_step = Lab::new();
    two_step.ok(&["up", "--detector", "lambda"]);
    let runs = json(&two_step.ok(&["attack", "exfil-long-stream", "--output", "json"]));
    let run = &runs[0];
    let isolated = run["timeline"]["isolated"].as_i64().expect("isolated");
    let last = run["timeline"]["last_exfil_byte"].as_i64().unwrap();
    assert!(last <= isolated, "bytes left after isolation: last {last}, isolated {isolated}");
    assert_eq!(run["metrics"]["bytes_after_isolation"], 0, "{run}");
    assert!(run["metrics"]["bytes_blocked"].as_u64().unwrap() > 0, "the next chunk is dropped: {run}");
    assert!(run["metrics"]["bytes_before_isolation"].as_u64().unwrap() < 78_643_200, "the stream was cut short");
    // Forensics: a snapshot of the root volume, kept by status as expected (not drift),
    // and down lifts termination protection and removes the kept volume and the snapshot.
    let kinds: Vec<String> = two_step.live_resources().into_iter().map(|(k, _)| k).collect();
    assert!(kinds.contains(&"ec2:snapshot".to_string()) && kinds.contains(&"ec2:volume".to_string()), "{kinds:?}");
    let status = json(&two_step.ok(&["status", "--output", "json"]));
    let snapshot = status["resources"].as_array().unwrap().iter().find(|r| r["kind"] == "ec2:snapshot").expect("snapshot listed").clone();
    assert_eq!(snapshot["drift"], false, "{snapshot}");
    // Release puts the interface back in the target's own group, with containment's code.
    let target_sg = status["resources"].as_array().unwrap().iter().find(|r| r["role"] == "target-sg").unwrap()["id"].clone();
    let released = json(&two_step.ok(&["release", "--output", "json"]));
    assert_eq!(released["restored"][0]["groups"], serde_json::json!([target_sg]), "{released}");
    let again = two_step.ok(&["attack", "exfil-long-stream", "--output", "json"]);
    assert_eq!(json(&again)[0]["metrics"]["isolated"], true, "a released lab is contained again: {again}");
    two_step.ok(&["down"]);
    assert_eq!(two_step.live_resources(), vec![], "down leaves no forensic leftovers");

    let one_step = Lab::new();
    one_step.ok(&["up", "--detector", "lambda", "--isolation", "one-step"]);
    let runs = json(&one_step.ok(&["attack", "exfil-long-stream", "--output", "json"]));
    let run = &runs[0];
    assert_eq!(run["metrics"]["isolated"], true, "{run}");
    assert!(run["metrics"]["bytes_after_isolation"].as_u64().unwrap() > 0, "a one-step swap leaves the stream flowing: {run}");
    assert_eq!(run["metrics"]["bytes_blocked"], 0, "{run}");
    assert!(run["notes"].to_string().contains("outlived the group change"), "{run}");
    one_step.ok(&["down"]);
    assert_eq!(one_step.live_resources(), vec![]);
}

#[test]
fn demo_is_repeatable_per_seed_and_seeds_differ() {
    let lab = Lab::new();
    let a = lab.ok(&["demo", "--seed", "42", "--output", "json"]);
    let b = lab.ok(&["demo", "--seed", "42", "--output", "json"]);
    assert_eq!(a, b, "one seed, one report");
    let c = lab.ok(&["demo", "--seed", "43", "--output", "json"]);
    assert_ne!(a, c);
    let (a, c) = (json(&a), json(&c));
    assert_ne!(a["runs"][0]["timeline"]["detected"], c["runs"][0]["timeline"]["detected"], "different seeds, different timings");
    assert_eq!(a["summary"]["detected"], 1);
    // The documented default seed is 1: naming it changes nothing.
    let default = lab.ok(&["demo", "--output", "json"]);
    let one = lab.ok(&["demo", "--seed", "1", "--output", "json"]);
    assert_eq!(default, one, "no --seed is --seed 1");
}

#[test]
fn plan_lists_the_graph_in_order_with_costs() {
    let lab = Lab::new();
    let plan = json(&lab.ok(&["plan", "--output", "json"]));
    let resources = plan["resources"].as_array().unwrap();
    assert_eq!(resources[0]["role"], "vpc");
    let endpoint = resources.iter().find(|r| r["role"] == "anomaly-endpoint").unwrap();
    assert_eq!(endpoint["usd_per_hour"], 0.102);
    assert!((plan["usd_per_hour"].as_f64().unwrap() - 0.1174).abs() < 1e-9);
    let text = lab.ok(&["plan", "--detector", "lambda"]);
    assert!(!text.contains("anomaly-endpoint") && text.contains("$0.0154/hour"), "{text}");
    assert!(!lab.account_path().exists(), "plan creates nothing");
}

#[test]
fn a_classroom_of_30_labs_goes_up_is_attacked_compared_and_removed() {
    let lab = Lab::new();
    let up = json(&lab.ok(&["--lab", "class", "up", "--labs", "30", "--detector", "lambda", "--output", "json"]));
    assert_eq!(up.as_array().unwrap().len(), 30);
    assert!(up.as_array().unwrap().iter().all(|r| r["lab"].as_str().unwrap().starts_with("class-")));
    // A plain `down` or `status` on the default lab names the classroom's labs and the
    // flag that reaches them, rather than "nothing to delete".
    for verb in ["down", "status"] {
        let text = lab.ok(&[verb]);
        assert!(text.contains("other labs exist") && text.contains("class-01") && text.contains("class-30"), "{verb}: {text}");
    }
    assert!(lab.ok(&["down"]).contains("cis down --all-labs"));
    let runs = json(&lab.ok(&["attack", "--all-labs", "--output", "json"]));
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 30, "one run per lab");
    let mut labs: Vec<&str> = runs.iter().map(|r| r["lab"].as_str().unwrap()).collect();
    labs.dedup();
    assert_eq!(labs.len(), 30, "each lab attacked once");
    assert!(runs.iter().all(|r| r["verdict"] == "as expected"), "every lab detects and isolates its own attack");
    let compared = json(&lab.ok(&["report", "--all-labs", "--output", "json"]));
    assert_eq!(compared["labs"].as_array().unwrap().len(), 30);
    assert_eq!(compared["overall"]["runs"], 30);
    assert_eq!(compared["overall"]["isolated"], 30);
    // A plain `report` on the default lab, which has no runs, names the labs that do.
    let plain = lab.run(&["report"]);
    let err = String::from_utf8_lossy(&plain.stderr);
    assert!(!plain.status.success() && err.contains("class-01") && err.contains("class-30") && err.contains("--all-labs"), "{err}");
    // The trainer's page: a row per trainee, and a chart per figure with a bar per lab.
    let md = lab.ok(&["report", "--all-labs", "--format", "markdown"]);
    assert_eq!(md.lines().filter(|l| l.starts_with("| class-")).count(), 30, "{md}");
    assert!(md.contains("| **all labs** | 30 | 30/30 | 30 |"), "{md}");
    let page = lab.state().join("class.html");
    lab.ok(&["report", "--all-labs", "--format", "html", "--out", page.to_str().unwrap()]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("<tr><td>class-").count(), 30);
    assert_eq!(html.matches("data-drawn=\"30\"").count(), 4, "four charts of 30 bars each");
    assert!(!html.contains("<script src") && !html.contains("http://") && !html.contains("https://"), "offline: nothing fetched");
    lab.ok(&["down", "--all-labs"]);
    assert_eq!(lab.live_resources(), vec![], "down --all-labs leaves nothing");
    assert!(lab.ok(&["status", "--all"]).contains("no labs"));
}
