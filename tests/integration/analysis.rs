//! `cis triage` and `cis rca` with the built-in analyser, on the fixtures in
//! `tests/fixtures/analysis/`.

use std::path::PathBuf;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/analysis").join(name).display().to_string()
}

#[test]
fn triage_ranks_the_outage_and_the_attack_above_routine_errors_and_noise_and_cites_the_alerts() {
    let lab = crate::Lab::new();
    let out = lab.ok(&["triage", &fixture("alerts-mixed.jsonl"), "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let findings = report["findings"].as_array().unwrap();
    let ids = |f: &serde_json::Value| f["alert_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect::<Vec<_>>();
    // First the full disk (availability), then the scan that got through (active attack).
    assert_eq!(findings[0]["category"], "outage");
    assert_eq!(ids(&findings[0]), ["a-03"]);
    assert_eq!(findings[1]["category"], "active-attack");
    assert_eq!(ids(&findings[1]), ["a-04", "a-05", "a-06", "a-07"]);
    assert!(findings[1]["why"].as_str().unwrap().contains("denied 3 times and then let through (a-07)"), "{}", findings[1]["why"]);
    assert!(findings[..2].iter().all(|f| f["critical"] == true));
    // Every evidence line names its alert; the answer cites nothing the input lacks.
    for f in findings {
        for (id, e) in ids(f).iter().zip(f["evidence"].as_array().unwrap()) {
            assert!(e.as_str().unwrap().contains(id.as_str()), "{e} cites {id}");
        }
    }
    let rank_of = |id: &str| findings.iter().position(|f| ids(f).iter().any(|x| x == id)).unwrap();
    assert!(rank_of("a-09") < rank_of("a-11"), "a privileged permanent allow-list change above hygiene");
    assert!(rank_of("a-11") < rank_of("a-02") && rank_of("a-02") < rank_of("a-01"), "hygiene, then routine errors, then noise");
    // The repeated timeout and the repeated health check are one finding each.
    assert_eq!(ids(&findings[rank_of("a-02")]), ["a-02", "a-10"]);
    assert_eq!(ids(&findings[rank_of("a-01")]), ["a-01", "a-08"]);
    assert!(findings.iter().skip(2).all(|f| f["critical"] == false));

    // Markdown (the default) says the same, with its evidence.
    let md = lab.ok(&["triage", &fixture("alerts-mixed.jsonl")]);
    assert!(md.contains("| 1 | critical | availability outage | a-03 |"), "{md}");
    assert!(md.contains("`#3 a-03 2026-11-20T08:01:10Z on db-1: write failed: No space left on device"), "{md}");
}

#[test]
fn triage_reads_the_labs_own_records_and_names_the_line_of_bad_input() {
    let lab = crate::Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records.log");
    std::fs::write(
        &records,
        concat!(
            "2026-01-01T00:05:00Z\treq-1\tCIS_DETECTION {\"at\":1767225900000,\"lab\":\"demo\",\"instance_id\":\"i-0abc\",\"detector\":\"isolation-forest\",\"window_start\":1767225840000,\"reason\":\"bytes out 40x the baseline\"}\n",
            "2026-01-01T00:05:01Z\treq-2\tCIS_CONTAINMENT {\"invoked_at\":1767225901000,\"finished_at\":1767225901500,\"instance_id\":\"i-0abc\",\"outcome\":\"isolated\",\"isolated_at\":1767225901400,\"detail\":\"two-step\"}\n",
        ),
    )
    .unwrap();
    let out = lab.ok(&["triage", records.to_str().unwrap(), "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["findings"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["findings"][0]["category"], "active-attack");
    assert_eq!(report["findings"][0]["alert_ids"].as_array().unwrap().len(), 2);

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"id\":\"x\",\"message\":\"ok\"}\n\n{\"id\": \"y\", \"message\": \n").unwrap();
    let out = lab.run(&["triage", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:3:", bad.display())), "{err}");
    std::fs::write(&bad, "{\"id\":\"x\",\"message\":\"a\"}\n{\"id\":\"x\",\"message\":\"b\"}\n").unwrap();
    let err = String::from_utf8_lossy(&lab.run(&["triage", bad.to_str().unwrap()]).stderr).to_string();
    assert!(err.contains("alert id 'x' appears twice"), "{err}");
}

#[test]
fn rca_names_the_allow_any_rule_a_denied_scan_got_through_and_proposes_a_narrower_rule_set() {
    let lab = crate::Lab::new();
    let args = ["rca", "--logs", &fixture("scan-then-allow.md"), "--rules", &fixture("rules.csv")];
    let out = lab.ok(&[&args[..], &["--format", "json"]].concat());
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let issue = &report["issues"][0];
    assert_eq!(issue["category"], "active-attack");
    assert_eq!(issue["rule"], "allow-all");
    assert!(issue["root_cause"].as_str().unwrap().starts_with("rule allow-all allows any from 0.0.0.0/0 to 10.1.1.10 on any port"), "{issue}");
    let proposed: Vec<(String, String, String, String)> = issue["proposed_rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_string();
            (s("id"), s("action"), s("source"), s("ports"))
        })
        .collect();
    assert!(!proposed.iter().any(|p| p.0 == "allow-all"), "the allow-any rule is gone: {proposed:?}");
    assert!(proposed.contains(&("deny-203.0.113.66".into(), "deny".into(), "203.0.113.66".into(), "any".into())));
    assert!(proposed.contains(&("allow-tcp-443".into(), "allow".into(), "10.1.0.20, 10.1.0.21".into(), "443".into())));
    assert_eq!(proposed.last().unwrap().0, "default-deny");
    assert!(!proposed.iter().any(|p| p.3 == "8081" && p.1 == "allow"), "nothing opens the port only the scanner used");

    let md = lab.ok(&args);
    assert!(md.contains("| root cause | rule allow-all allows any"), "{md}");
    assert!(md.contains("| id | direction | action | source | destination | ports | protocol |"), "{md}");

    // A table with a row that does not fit its header names the file and line.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("rules.csv");
    std::fs::write(&bad, "id,action,source\nr1,allow,any\nr2,maybe,any\n").unwrap();
    let out = lab.run(&["rca", "--logs", &fixture("scan-then-allow.md"), "--rules", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:3:", bad.display())) && err.contains("expected allow or deny"), "{err}");
}

#[test]
fn rca_without_rules_reads_the_labs_security_groups_from_its_ledger() {
    let lab = crate::Lab::new();
    lab.ok(&["up", "--detector", "lambda"]);
    let out = lab.ok(&["rca", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let titles: Vec<&str> = report["issues"].as_array().unwrap().iter().map(|i| i["title"].as_str().unwrap()).collect();
    // The allow-all group exists for containment's first step; the target's egress is open.
    assert!(titles.iter().any(|t| t.contains("cis-default-allow-all-sg/inbound-1")), "{titles:?}");
    assert!(titles.iter().any(|t| t.contains("cis-default-target-sg/outbound-1")), "{titles:?}");
    lab.ok(&["down"]);
}
