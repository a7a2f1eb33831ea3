//! `cis flows`, `cis train` and `cis detect` on files, as a user runs them: a baseline of
//! agent polling trains a model; a beacon hidden in a day of the same polling is the one
//! alert, with its reasons; malformed lines are named and skipped; labels evaluate.

use std::fmt::Write as _;

use cis::flowlog::{Action, FlowRecord, LogFormat, LogStatus, DEFAULT_FORMAT};
use cis::rng::Rng;

use crate::Lab;

fn flow(start: i64, srcport: u16, dst: &str, bytes: u64) -> FlowRecord {
    FlowRecord {
        version: Some(2),
        account_id: Some("123456789012".into()),
        interface_id: Some("eni-0a1b2c3d4e5f60001".into()),
        srcaddr: Some("10.42.1.10".parse().unwrap()),
        dstaddr: Some(dst.parse().unwrap()),
        srcport: Some(srcport),
        dstport: Some(443),
        protocol: Some(6),
        packets: Some(bytes / 1400 + 2),
        bytes: Some(bytes),
        start: Some(start),
        end: Some(start + 1),
        action: Some(Action::Accept),
        log_status: Some(LogStatus::Ok),
        ..Default::default()
    }
}

/// `hours` of an agent polling one of three hosts every 30 s or so, from `t0`.
fn polling(t0: i64, hours: i64, seed: u64) -> Vec<FlowRecord> {
    let mut rng = Rng::seeded(seed);
    let hosts = ["52.46.141.10", "52.46.141.11", "52.46.141.12"];
    let mut t = t0 as f64;
    let mut out = Vec::new();
    while t < (t0 + hours * 3600) as f64 {
        out.push(flow(t as i64, 32768 + rng.below(28000) as u16, hosts[rng.below(3) as usize], 2400 + rng.below(600)));
        t += rng.range_f64(25.0, 35.0);
    }
    out
}

fn text(records: &[FlowRecord]) -> String {
    let f = LogFormat::parse(DEFAULT_FORMAT).unwrap();
    records.iter().fold(String::new(), |mut o, r| {
        let _ = writeln!(o, "{}", f.write(r));
        o
    })
}

#[test]
fn train_then_detect_finds_the_beacon_and_says_why() {
    let lab = Lab::new();
    let dir = lab.state();
    let t0 = 1_767_225_600;
    std::fs::write(dir.join("baseline.log"), text(&polling(t0, 48, 1))).unwrap();

    let flows = lab.ok(&["flows", dir.join("baseline.log").to_str().unwrap(), "--output", "json"]);
    let flows: serde_json::Value = serde_json::from_str(&flows).unwrap();
    assert!(flows["records"].as_u64().unwrap() > 5000);
    assert_eq!(flows["interfaces"], 1);

    let trained = lab.ok(&["train", "--baseline", dir.join("baseline.log").to_str().unwrap()]);
    assert!(trained.contains("model written to") && trained.contains("1 known destination group(s)"), "{trained}");
    assert!(dir.join("models/default.json").exists());

    // A day of the same polling with a beacon (12 requests in a minute to a new host).
    let day = t0 + 48 * 3600;
    let mut records = polling(day, 24, 2);
    let beacon_at = day + 6 * 3600 + 2;
    let beacon: Vec<FlowRecord> = (0..12).map(|i| flow(beacon_at + 5 * i, 41000 + i as u16, "203.0.113.50", 16_000)).collect();
    let at = records.iter().position(|r| r.start > Some(beacon_at)).unwrap();
    let labels: Vec<&str> = (0..records.len() + beacon.len() + 1).map(|i| if (at..at + 12).contains(&i) { "1" } else { "0" }).collect();
    records.splice(at..at, beacon);
    let mut day_text = text(&records);
    day_text.push_str("2 123456789012 eni-0a1b2c3d4e5f60001 not-an-address\n");
    std::fs::write(dir.join("day.log"), &day_text).unwrap();
    std::fs::write(dir.join("labels.txt"), labels.join("\n")).unwrap();

    let out =
        lab.run(&["detect", dir.join("day.log").to_str().unwrap(), "--eval", dir.join("labels.txt").to_str().unwrap(), "--output", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let bad_line = records.len() + 1;
    assert!(stderr.contains(&format!("day.log:{bad_line}: srcaddr 'not-an-address' is not valid (skipped)")), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["malformed_lines"], 1);
    assert_eq!(report["anomalous"], 1, "{report:#}");
    let alert = &report["verdicts"][0];
    assert_eq!(alert["window_start"], (beacon_at / 60) * 60);
    assert_eq!(alert["top_destination"], "203.0.113.50");
    let features: Vec<&str> = alert["reasons"].as_array().unwrap().iter().map(|r| r["feature"].as_str().unwrap()).collect();
    assert!(features.contains(&"new_destinations") && features.contains(&"connections"), "{features:?}");
    let eval = &report["evaluation"];
    assert_eq!(eval["positives"], 1);
    assert_eq!(eval["roc_auc"], 1.0, "{eval}");

    // Per flow, with no model: the beacon's records rank first, by line number.
    let out = lab.ok(&[
        "detect",
        "--per-flow",
        "--top",
        "12",
        dir.join("day.log").to_str().unwrap(),
        "--eval",
        dir.join("labels.txt").to_str().unwrap(),
        "--output",
        "json",
    ]);
    let ranking: serde_json::Value = serde_json::from_str(&out).unwrap();
    let lines: Vec<u64> = ranking["top"].as_array().unwrap().iter().map(|f| f["line"].as_u64().unwrap()).collect();
    assert!(lines.iter().all(|&l| (at as u64 + 1..=at as u64 + 12).contains(&l)), "{lines:?}, beacon at lines {}..{}", at + 1, at + 12);
    assert!(ranking["evaluation"]["roc_auc"].as_f64().unwrap() > 0.99, "{}", ranking["evaluation"]);

    // Text output says the same in a line a person reads; stdin works too.
    let mut child = lab.cmd(&["detect", "-"]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), day_text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("ALERT") && stdout.contains("destination groups never seen in the baseline 1"), "{stdout}");
}

#[test]
fn bad_input_names_the_file_line_or_flag() {
    let lab = Lab::new();
    let dir = lab.state();
    let missing = lab.run(&["detect", "nowhere.log"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no model at"), "{}", String::from_utf8_lossy(&missing.stderr));

    std::fs::write(dir.join("tiny.log"), text(&polling(1_767_225_600, 1, 3)[..20])).unwrap();
    let few = lab.run(&["train", "--baseline", dir.join("tiny.log").to_str().unwrap()]);
    assert_eq!(few.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&few.stderr).contains("needs at least 32"), "{}", String::from_utf8_lossy(&few.stderr));
    let fpr = lab.run(&["train", "--baseline", "x", "--target-fpr", "2"]);
    assert_eq!(fpr.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&fpr.stderr).contains("--target-fpr 2"));

    std::fs::write(dir.join("model.json"), "{\"format\": \"cis-model\", \"version\": 7}").unwrap();
    let newer = lab.run(&["detect", "--model", dir.join("model.json").to_str().unwrap(), dir.join("tiny.log").to_str().unwrap()]);
    assert_eq!(newer.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&newer.stderr).contains("newer cis"), "{}", String::from_utf8_lossy(&newer.stderr));

    std::fs::write(dir.join("t.csv"), "a,b,label\n1,2,0\n3,x,1\n").unwrap();
    let csv = lab.run(&["detect", "--format", "csv", "--eval", "label", dir.join("t.csv").to_str().unwrap()]);
    assert_eq!(csv.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&csv.stderr).contains("t.csv:3: column 'b': 'x' is not a number"),
        "{}",
        String::from_utf8_lossy(&csv.stderr)
    );
}

#[test]
fn garbage_and_huge_lines_are_refused_in_a_few_short_lines() {
    let lab = Lab::new();
    let dir = lab.state();
    // Nothing parses: the wrong file, not an empty capture (exit 2, naming the first line).
    std::fs::write(dir.join("garbage.txt"), "hello world\nthis is not a flow log\n").unwrap();
    for verb in ["flows", "train"] {
        let args: Vec<&str> = match verb {
            "train" => vec!["train", "--baseline", "garbage.txt"],
            _ => vec!["flows", "garbage.txt"],
        };
        let out = lab.cmd(&args).current_dir(dir).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{verb}: {stderr}");
        assert!(stderr.contains("garbage.txt:1:") && stderr.contains("none of the 2"), "{verb}: {stderr}");
    }
    // A 20 MB line: one error of a few hundred bytes, the records around it read.
    let record = "2 1 eni-1 10.0.0.1 203.0.113.5 40000 443 6 3 300 1767225600 1767225660 ACCEPT OK";
    std::fs::write(dir.join("huge.log"), format!("{record}\n{}\n{record}\n", "7".repeat(20 << 20))).unwrap();
    let out = lab.cmd(&["flows", "huge.log"]).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.len() < 2000, "stderr is {} bytes", out.stderr.len());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("2 records (1 malformed"), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn csv_tables_evaluate_the_forest() {
    let lab = Lab::new();
    let mut rng = Rng::seeded(5);
    let mut csv = String::from("x,y,host,label\n");
    for i in 0..3000 {
        let outlier = i % 100 == 0;
        let (x, y) =
            if outlier { (rng.range_f64(5.0, 9.0), rng.range_f64(5.0, 9.0)) } else { (rng.range_f64(-1.0, 1.0), rng.range_f64(-1.0, 1.0)) };
        let _ = writeln!(csv, "{x},{y},h{i},{}", if outlier { "malicious" } else { "benign" });
    }
    let path = lab.state().join("blobs.csv");
    std::fs::write(&path, csv).unwrap();
    let out = lab.ok(&["detect", "--format", "csv", "--eval", "label", path.to_str().unwrap(), "--output", "json", "--seed", "3"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rows"], 3000);
    assert_eq!(v["ignored_columns"][0], "host");
    assert!(v["evaluation"]["roc_auc"].as_f64().unwrap() > 0.99, "{v:#}");
    assert_eq!(v["evaluation"]["recall_at_1pct_fpr"], 1.0);
    let scaled = lab.ok(&["detect", "--format", "csv", "--eval", "label", "--log-scale", path.to_str().unwrap(), "--output", "json"]);
    let scaled: serde_json::Value = serde_json::from_str(&scaled).unwrap();
    assert_eq!(scaled["log_scale"], true);
    assert!(scaled["evaluation"]["roc_auc"].as_f64().unwrap() > 0.99, "{scaled:#}");
}

#[test]
fn train_writes_random_cut_forest_features() {
    let lab = Lab::new();
    let dir = lab.state();
    std::fs::write(dir.join("baseline.log"), text(&polling(1_767_225_600, 6, 9))).unwrap();
    let rcf = dir.join("rcf.csv");
    lab.ok(&[
        "train",
        "--baseline",
        dir.join("baseline.log").to_str().unwrap(),
        "--rcf-csv",
        rcf.to_str().unwrap(),
        "--out",
        dir.join("m.json").to_str().unwrap(),
    ]);
    let csv = std::fs::read_to_string(&rcf).unwrap();
    assert_eq!(csv.lines().count(), 360, "one line a window of six hours");
    assert!(csv.lines().all(|l| l.split(',').count() == cis::features::N_FEATURES && l.split(',').all(|v| v.parse::<f64>().is_ok())));
}
