//! Hostile input: a seeded mutational fuzzer throws malformed variants of real records at
//! each decoder. None may panic, and whatever parses must write back and read again to the
//! same record. `CIS_FUZZ_INPUTS` sets the count per decoder: 50,000 by default, which CI
//! runs; `.ci/soak` runs a million.

use cis::flowlog::envelope::{self, LogEvent, LogsData};
use cis::flowlog::{FlowLogReader, LogFormat, DEFAULT_FORMAT};
use cis::lab::LAB_LOG_FORMAT;
use cis::rng::Rng;

fn inputs() -> usize {
    std::env::var("CIS_FUZZ_INPUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000)
}

const SEEDS: &[&str] = &[
    "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK",
    "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 1431280934 - NODATA",
    "2 123456789010 eni-1 2001:db8::1 2600:1f18::5 443 50000 6 3 180 1418530010 1418530070 REJECT OK",
    "5 123456789012 eni-0a1b2c3d 10.42.1.10 203.0.113.50 40123 80 6 12 4800 1767225610 1767225660 ACCEPT OK vpc-1 subnet-2 i-0abc 19 IPv4 10.42.1.10 203.0.113.50 egress 8",
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status",
    "2026-01-01T00:01:00.000Z 2 1 eni-1 - - - - - - - 1 2 - SKIPDATA",
];

const TOKENS: &[&str] = &[
    "-",
    "",
    "0",
    "-1",
    "65536",
    "4294967296",
    "18446744073709551616",
    "::",
    "999.1.1.1",
    "1.2.3",
    "ACCEPT",
    "OK",
    "NODATA",
    "${x}",
    "egress",
    "\u{feff}",
    "é",
    "\t",
    "version",
    "1e9",
    "+5",
    "0x10",
];

/// One mutated copy of `seed`: a few byte- and token-level edits.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = b.len().max(1);
        match rng.below(8) {
            0 => {
                let i = rng.below(len as u64) as usize;
                if i < b.len() {
                    b[i] ^= 1 << rng.below(8);
                }
            }
            1 => {
                let i = rng.below(len as u64 + 1) as usize;
                b.insert(i.min(b.len()), rng.below(256) as u8);
            }
            2 => {
                let i = rng.below(len as u64) as usize;
                let j = (i + 1 + rng.below(12) as usize).min(b.len());
                if i < j {
                    b.drain(i..j);
                }
            }
            3 => b.truncate(rng.below(len as u64) as usize),
            _ => {
                // Replace, duplicate or drop a whole token.
                let text = String::from_utf8_lossy(&b).into_owned();
                let mut toks: Vec<String> = text.split(' ').map(str::to_string).collect();
                let i = rng.below(toks.len() as u64) as usize;
                match rng.below(3) {
                    0 => toks[i] = TOKENS[rng.below(TOKENS.len() as u64) as usize].to_string(),
                    1 => {
                        let t = toks[i].clone();
                        toks.insert(i, t);
                    }
                    _ => {
                        toks.remove(i);
                    }
                }
                b = toks.join(" ").into_bytes();
            }
        }
    }
    b
}

#[test]
fn flow_log_parser_survives_mutated_lines() {
    let formats = [LogFormat::parse(DEFAULT_FORMAT).unwrap(), LogFormat::parse(LAB_LOG_FORMAT).unwrap()];
    let mut rng = Rng::seeded(0xF1_0E);
    let (mut parsed, mut rejected) = (0usize, 0usize);
    let n = inputs();
    // Many lines per reader, so header switches and errors carry over between lines.
    let mut batch = Vec::new();
    for i in 0..n {
        let seed = SEEDS[rng.below(SEEDS.len() as u64) as usize];
        let line = mutate(&mut rng, seed.as_bytes());
        let format = &formats[i % 2];
        let text = String::from_utf8_lossy(&line);
        match format.read(&text) {
            Ok(Some(record)) => {
                parsed += 1;
                let again = format.read(&format.write(&record)).expect("a written record reads back").expect("not a header");
                assert_eq!(again, record, "round trip of {text:?}");
            }
            Ok(None) => {}
            Err(_) => rejected += 1,
        }
        batch.extend_from_slice(&line);
        batch.push(b'\n');
        if batch.len() > 64 << 10 || i + 1 == n {
            let reader = FlowLogReader::new(&batch[..], formats[i % 2].clone());
            assert!(reader.count() > 0);
            batch.clear();
        }
    }
    println!("flow-log parser: {n} mutated inputs, {parsed} parsed and round-tripped, {rejected} rejected with a message, no panic");
    assert!(parsed > n / 100 && rejected > n / 2, "the mutations exercise both paths: {parsed} parsed, {rejected} rejected");
}

#[test]
fn subscription_decoder_survives_mutated_payloads() {
    let doc = LogsData {
        message_type: "DATA_MESSAGE".into(),
        owner: "123456789012".into(),
        log_group: "/cis/fuzz/flow-logs".into(),
        log_stream: "eni-1-all".into(),
        subscription_filters: vec!["f".into()],
        log_events: SEEDS.iter().enumerate().map(|(i, m)| LogEvent { id: i.to_string(), timestamp: 1, message: m.to_string() }).collect(),
    };
    let event = envelope::encode_lambda_event(&doc);
    let data = envelope::encode_data(&doc);
    let json = serde_json::to_string(&doc).unwrap();
    let gz = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.decode(&data).unwrap()
    };
    let mut rng = Rng::seeded(0xE7_E1);
    let (mut ok, mut refused) = (0usize, 0usize);
    let n = inputs();
    for i in 0..n {
        let result = match i % 4 {
            0 => envelope::decode_lambda_event(&mutate(&mut rng, event.as_bytes())).map(|d| d.log_events.len()),
            1 => envelope::decode_data(&String::from_utf8_lossy(&mutate(&mut rng, data.as_bytes()))).map(|d| d.log_events.len()),
            2 => envelope::messages_from_json(&mutate(&mut rng, json.as_bytes())).map(|m| m.len()),
            _ => envelope::gunzip(&mutate(&mut rng, &gz)).map(|b| b.len()),
        };
        match result {
            Ok(_) => ok += 1,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                refused += 1
            }
        }
    }
    println!("subscription decoder: {n} mutated payloads, {ok} decoded, {refused} refused with a message, no panic");
    assert!(ok > 0 && refused > n / 2, "{ok} decoded, {refused} refused");
}

/// Mutates JSON or TOML documents more coarsely than lines: the byte and token edits
/// above, plus a value swapped for another kind (`"x"` for a number, `null`, a nested
/// object) so the decoders meet type confusion, not only broken syntax.
fn mutate_document(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    const VALUES: &[&str] = &["null", "true", "-1", "1e309", "\"\"", "[]", "{}", "{\"a\":[1,{}]}", "\"\u{0}\"", "18446744073709551616"];
    let mut b = mutate(rng, seed);
    if rng.below(3) == 0 {
        let text = String::from_utf8_lossy(&b).into_owned();
        let colons: Vec<usize> = text.match_indices(':').map(|(i, _)| i).collect();
        if let Some(&at) = colons.get(rng.below(colons.len().max(1) as u64) as usize) {
            let end = text[at + 1..].find([',', '}', '\n']).map_or(text.len(), |e| at + 1 + e);
            let value = VALUES[rng.below(VALUES.len() as u64) as usize];
            b = format!("{}: {value}{}", &text[..at], &text[end..]).into_bytes();
        }
    }
    b
}

#[test]
fn lambda_event_decoders_survive_mutated_events() {
    // The two events the containment function is given: the detector's detection and the
    // egress alarm's state change, as EventBridge delivers them.
    let detection = cis::events::DetectionEvent {
        at: cis::clock::Timestamp(1_767_225_900_000),
        lab: "demo".into(),
        instance_id: "i-0abc".into(),
        detector: cis::events::Detector::IsolationForest,
        window_start: cis::clock::Timestamp(1_767_225_840_000),
        window_s: 60,
        reason: "bytes out".into(),
        evidence: None,
    };
    let detection_event = cis::containment::eventbridge_event(&detection, "123456789012", "us-east-1").to_string();
    let metric = cis::metric::MetricKey {
        namespace: "cis/lab".into(),
        metric_name: "EgressBytes".into(),
        dimensions: [("InstanceId".to_string(), "i-0abc".to_string())].into(),
    };
    let rule = cis::lab::egress_alarm_rule(60);
    let breaching = vec![(cis::clock::Timestamp(1_767_225_840_000), 9e6)];
    let evaluation = cis::metric::Evaluation { state: cis::metric::AlarmState::Alarm, datapoints: breaching.clone(), breaching };
    let alarm_event = cis::metric::state_change_event(&cis::metric::StateChange {
        alarm_name: "cis-demo-egress-alarm",
        alarm_arn: "arn:aws:cloudwatch:us-east-1:123456789012:alarm:cis-demo-egress-alarm",
        account: "123456789012",
        region: "us-east-1",
        metric: &metric,
        rule: &rule,
        previous: cis::metric::AlarmState::Ok,
        evaluation: &evaluation,
        at: cis::clock::Timestamp(1_767_225_960_000),
    })
    .to_string();
    let seeds = [detection_event.as_bytes(), alarm_event.as_bytes()];
    let mut rng = Rng::seeded(0xE4_E4);
    let (mut decoded, mut refused, mut not_json) = (0usize, 0usize, 0usize);
    let n = inputs();
    // `inputs()` events reach the decoder: mutations that break the JSON itself are
    // counted apart (serde_json refuses those before the function's code runs).
    let mut i = 0;
    while decoded + refused < n {
        i += 1;
        let bytes = mutate_document(&mut rng, seeds[i % 2]);
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            not_json += 1;
            continue;
        };
        match cis::containment::parse_event(&value) {
            Ok(d) => {
                decoded += 1;
                // An alarm's lab comes from its name, and is one `cis up` would accept.
                assert!(i % 2 == 0 || d.lab.parse::<cis::lab::LabName>().is_ok(), "{d:?}");
            }
            Err(why) => {
                assert!(!why.is_empty());
                refused += 1;
            }
        }
    }
    println!("containment's event decoder: {n} mutated events decoded or refused ({decoded} decoded, {refused} refused with a reason), {not_json} more not JSON, no panic");
    assert!(decoded > n / 100 && refused > n / 100, "both paths exercised: {decoded} decoded, {refused} refused");
}

#[test]
fn ledger_and_scenario_loaders_survive_mutated_files() {
    let mut ledger = cis::ledger::Ledger::new(
        "demo".parse().unwrap(),
        cis::cloud::CloudKind::Sim,
        "123456789012".into(),
        "us-east-1".into(),
        "up-1".into(),
        cis::lab::LabOptions::default(),
        cis::clock::Timestamp(1_767_225_600_000),
    );
    for (i, role) in [cis::lab::Role::Vpc, cis::lab::Role::Subnet, cis::lab::Role::TargetInstance].into_iter().enumerate() {
        ledger.set(cis::ledger::Entry {
            role,
            kind: role.kind(),
            name: format!("cis-demo-{}", role.name()),
            id: Some(format!("id-{i}")),
            state: cis::ledger::EntryState::Ready,
            updated_at: cis::clock::Timestamp(1_767_225_600_000 + i as i64),
        });
    }
    let ledger_text = serde_json::to_string_pretty(&ledger).unwrap();
    let path = std::path::Path::new("ledger.json");
    assert!(cis::ledger::Ledger::from_text(&ledger_text, path).is_ok());
    let scenarios: Vec<String> = std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    let scenario_path = std::path::Path::new("scenarios/fuzz.toml");
    let mut rng = Rng::seeded(0x1E_D6);
    let (mut ledgers, mut scenario_ok, mut refused) = (0usize, 0usize, 0usize);
    let n = inputs();
    // `inputs()` mutated files for each loader.
    for _ in 0..n {
        let text = String::from_utf8_lossy(&mutate_document(&mut rng, ledger_text.as_bytes())).into_owned();
        match cis::ledger::Ledger::from_text(&text, path) {
            Ok(l) => {
                ledgers += 1;
                // Whatever loads is a ledger this version wrote: format and version hold.
                assert_eq!((l.format.as_str(), l.version), ("cis-ledger", ledger.version), "{text}");
            }
            Err(e) => {
                let message = e.to_string();
                assert!(message.starts_with("ledger.json: ") && message.contains("left as it is"), "{message}");
                refused += 1;
            }
        }
        let seed = &scenarios[rng.below(scenarios.len() as u64) as usize];
        let text = String::from_utf8_lossy(&mutate(&mut rng, seed.as_bytes())).into_owned();
        match cis::scenario::Scenario::parse(&text, scenario_path) {
            Ok(_) => scenario_ok += 1,
            Err(e) => {
                assert!(e.to_string().starts_with("scenarios/fuzz.toml"), "{e}");
                refused += 1;
            }
        }
    }
    println!("ledger and scenario loaders: {n} mutated files each, {ledgers} ledgers and {scenario_ok} scenarios loaded, {refused} refused naming the file, no panic");
    assert!(ledgers > 0 && scenario_ok > 0 && refused > n / 2, "{ledgers} ledgers, {scenario_ok} scenarios, {refused} refused");
}

#[test]
fn triage_and_rca_inputs_and_filter_patterns_survive_mutations() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/analysis");
    // Every shape triage reads, in turn: JSON lines, GuardDuty and Security Hub documents,
    // EventBridge events.
    let alert_files: Vec<String> = [
        "alerts-mixed.jsonl",
        "alerts-rankings.jsonl",
        "guardduty-get-findings.json",
        "guardduty-event.json",
        "securityhub-findings.json",
        "cloudwatch-alarm-event.json",
    ]
    .iter()
    .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
    .collect();
    let logs = std::fs::read_to_string(dir.join("scan-then-allow.md")).unwrap();
    let rules = std::fs::read_to_string(dir.join("rules.csv")).unwrap();
    let parsed_rules = cis::analysis::parse_rules(&rules).unwrap();
    let pattern = cis::metric::egress_pattern("10.42.");
    let mut rng = Rng::seeded(0xA1_A1);
    let (mut ok, mut refused) = (0usize, 0usize);
    let n = inputs();
    let mut tally = |r: Result<(), String>| match r {
        Ok(()) => ok += 1,
        Err(e) => {
            assert!(!e.is_empty());
            refused += 1
        }
    };
    for i in 0..n {
        match i % 5 {
            0 => {
                let alerts = &alert_files[(i / 5) % alert_files.len()];
                let text = String::from_utf8_lossy(&mutate(&mut rng, alerts.as_bytes())).into_owned();
                tally(
                    cis::analysis::parse_alerts(&text)
                        .map(|(a, _)| {
                            let report = cis::analysis::builtin::triage(&a);
                            assert_eq!(
                                report.findings.iter().map(|f| f.alert_ids.len()).sum::<usize>(),
                                a.len(),
                                "every alert in one finding"
                            );
                        })
                        .map_err(|e| e.to_string()),
                );
            }
            1 => {
                let text = String::from_utf8_lossy(&mutate(&mut rng, logs.as_bytes())).into_owned();
                tally(
                    cis::analysis::parse_logs(&text)
                        .map(|(l, _)| {
                            let input = cis::analysis::RcaInput { logs: l, rules: parsed_rules.clone(), ..Default::default() };
                            cis::analysis::builtin::rca(&input);
                        })
                        .map_err(|e| e.to_string()),
                );
            }
            2 => {
                let text = String::from_utf8_lossy(&mutate(&mut rng, rules.as_bytes())).into_owned();
                tally(cis::analysis::parse_rules(&text).map(|_| ()).map_err(|e| e.to_string()));
            }
            3 => {
                let text = String::from_utf8_lossy(&mutate(&mut rng, pattern.as_bytes())).into_owned();
                tally(cis::metric::FilterPattern::parse(&text).map(|p| {
                    let _ = p.matches(SEEDS[3]);
                }));
            }
            _ => {
                let text = String::from_utf8_lossy(&mutate(&mut rng, b"2026-01-01T00:05:12.345+0000")).into_owned();
                tally(cis::clock::Timestamp::parse_rfc3339(&text).map(|_| ()).ok_or_else(|| "not a time".to_string()));
            }
        }
    }
    println!("triage/rca inputs, filter patterns, timestamps: {n} mutated inputs in turn ({} each), {ok} accepted, {refused} refused with a message, no panic", n / 5);
    assert!(ok > n / 100 && refused > n / 100, "{ok} accepted, {refused} refused");
}

/// A scenario file's stream with one extreme value in each numeric key, as a hostile or
/// careless author would write it.
fn extreme_scenario(rng: &mut Rng, n: usize) -> String {
    // Each key keeps a sane value (the first) two times in three, so that some files run.
    let pick = |rng: &mut Rng, values: &[&str]| {
        let i = if rng.below(3) < 2 { 0 } else { 1 + rng.below(values.len() as u64 - 1) as usize };
        values[i].to_string()
    };
    let times = ["2.0", "0.0", "-1.0", "inf", "-inf", "nan", "1e300", "1e-300", "86401.0", "604801.0"];
    let connections = pick(rng, &["3", "0", "1", "-1", "1000001", "4294967295"]);
    let start = pick(rng, &times);
    let interval = pick(rng, &["5.0", "0.0", "-5.0", "inf", "nan", "1e300", "86401.0"]);
    let jitter = pick(rng, &["1.0", "0.0", "-1.0", "inf", "nan", "6.0"]);
    let bytes_out = pick(rng, &["16384", "0", "1099511627776", "1099511627777", "1000000000000000000", "9223372036854775807", "-1"]);
    let bytes_in = pick(rng, &["512", "0", "1000000000000000000"]);
    let duration = pick(rng, &times);
    let spread = pick(rng, &["0.0", "3.0", "3.5", "inf", "nan", "-0.5"]);
    format!(
        "id = \"fuzz-{n}\"\ntitle = \"t\"\nmitre = []\ndescription = \"d\"\nscript = \"s\"\n[expect]\ndetected = true\nisolated = true\n\n[[traffic]]\nremotes = [\"203.0.113.9\"]\nports = [443]\nconnections = {connections}\nstart_s = {start}\ninterval_s = {interval}\njitter_s = {jitter}\nbytes_out = {bytes_out}\nbytes_in = {bytes_in}\nduration_s = {duration}\nsize_spread = {spread}\n"
    )
}

#[test]
fn scenario_files_with_extreme_values_run_or_are_refused_and_the_account_survives() {
    let lab = crate::Lab::new();
    lab.ok(&["up"]);
    let mut rng = Rng::seeded(0x5CE7);
    let (mut ran, mut refused) = (0, 0);
    for n in 0..40 {
        let text = extreme_scenario(&mut rng, n);
        let path = lab.state().join(format!("fuzz-{n}.toml"));
        std::fs::write(&path, &text).unwrap();
        let file = path.to_str().unwrap();
        let shown = lab.run(&["scenarios", "show", file]);
        let out = lab.run(&["attack", file]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => {
                ran += 1;
                assert!(shown.status.success(), "show refused what attack ran:\n{text}");
                lab.ok(&["release"]);
            }
            Some(2) => {
                refused += 1;
                assert!(stderr.contains(&format!("fuzz-{n}.toml:")), "the error names the file and line: {stderr}\n{text}");
                assert_eq!(shown.status.code(), Some(2), "show accepted what attack refused:\n{text}");
            }
            other => panic!("exit {other:?} (a panic is 101):\n{stderr}\n{text}"),
        }
        // Nothing invalid was persisted: the account loads, and the lab still answers.
        let account = std::fs::read_to_string(lab.account_path()).unwrap();
        cis::backends::sim::load_world(&account, &lab.account_path()).expect("the account loads");
        lab.ok(&["status"]);
    }
    println!("extreme scenario files: {ran} ran, {refused} refused naming file and line, no panic, account loadable");
    assert!(ran > 0 && refused > 0, "{ran} ran, {refused} refused");
    lab.ok(&["down"]);
    assert_eq!(lab.live_resources(), vec![]);
}
