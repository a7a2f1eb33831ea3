//! Bad input: one line naming the thing, exit status 2, nothing lost.

use crate::Lab;

fn fails_with_2(lab: &Lab, args: &[&str], names: &str) -> String {
    let out = lab.run(args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "cis {args:?}: {err}");
    let error_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("cis: error:")).collect();
    assert_eq!(error_lines.len(), 1, "one error line: {err}");
    assert!(error_lines[0].contains(names), "error should name {names}: {err}");
    err
}

#[test]
fn arm_refuses_a_missing_lab_a_short_warmup_and_a_simulated_lab() {
    let lab = Lab::new();
    fails_with_2(&lab, &["arm"], "no lab 'default' here");
    assert!(!lab.state().join("sim/labs/default").exists(), "nothing was left for the lab that is not there");
    fails_with_2(&lab, &["arm", "--warmup", "30m"], "under an hour");
    fails_with_2(&lab, &["up", "--warmup", "2h"], "--warmup");
    assert!(!lab.state().join("sim/labs/default").exists(), "nothing was made");
    lab.ok(&["up", "--detector", "lambda"]);
    // A simulated lab is armed at `up` on its workload's simulated baseline.
    fails_with_2(&lab, &["arm"], "simulated");
    let status = lab.ok(&["status"]);
    assert!(status.contains("detector: armed (on the workload's simulated baseline)"), "{status}");
    lab.ok(&["down"]);
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let lab = Lab::new();
    fails_with_2(&lab, &["attack", "no-such-scenario"], "no-such-scenario");
    fails_with_2(&lab, &["--cloud", "mars", "up"], "--cloud");
    fails_with_2(&lab, &["up", "--window", "30"], "--window");
    fails_with_2(&lab, &["up", "--ssh-from", "0.0.0.0/0"], "--ssh-from");
    fails_with_2(&lab, &["--lab", "Bad_Name", "up"], "--lab");
    fails_with_2(&lab, &["scenarios", "show", "nope"], "nope");
    fails_with_2(&lab, &["attack"], "not up");
    fails_with_2(&lab, &["report"], "no runs");
}

/// A state directory that is a file, or lies under one, is the user's to fix: exit 2, the
/// path named once (not the OS error twice), what to do next, and nothing written.
#[test]
fn a_state_dir_that_is_a_file_is_named_and_nothing_is_written() {
    let lab = Lab::new();
    let file = lab.state().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let f = file.to_str().unwrap();
    let err = fails_with_2(&lab, &["--state-dir", f, "status"], "--state-dir");
    assert!(err.contains("is a file, not a directory"), "{err}");
    let under = file.join("state");
    let err = fails_with_2(&lab, &["--state-dir", under.to_str().unwrap(), "up"], "Not a directory");
    assert_eq!(err.matches("Not a directory").count(), 1, "the OS error once: {err}");
    assert!(err.contains("--state-dir (or CIS_STATE_DIR)"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
}

#[test]
fn malformed_or_newer_state_files_are_refused_and_left_alone() {
    let lab = Lab::new();
    let ledger = lab.state().join("sim/labs/default/ledger.json");
    std::fs::create_dir_all(ledger.parent().unwrap()).unwrap();
    for content in ["{\"format\": \"cis-ledger\",\n  \"version\": 1,\n  oops", "{\"format\": \"cis-ledger\", \"version\": 9}"] {
        std::fs::write(&ledger, content).unwrap();
        for verb in ["up", "down", "status"] {
            fails_with_2(&lab, &[verb], "ledger.json");
            assert_eq!(std::fs::read_to_string(&ledger).unwrap(), content, "{verb} must not touch the file");
        }
    }
    std::fs::remove_file(&ledger).unwrap();
    std::fs::create_dir_all(lab.account_path().parent().unwrap()).unwrap();
    std::fs::write(lab.account_path(), "[]").unwrap();
    fails_with_2(&lab, &["up"], "account.json");
    assert_eq!(std::fs::read_to_string(lab.account_path()).unwrap(), "[]");
}

#[test]
fn scenario_files_with_errors_name_the_file_and_line() {
    let lab = Lab::new();
    let path = lab.state().join("mine.toml");
    std::fs::write(&path, "id = \"mine\"\ntitle = \"t\"\nmitre = []\ndescription = \"d\"\nscript = \"s\"\n[expect]\ndetected = yes\n")
        .unwrap();
    let err = fails_with_2(&lab, &["scenarios", "show", path.to_str().unwrap()], "mine.toml:7");
    assert!(err.contains("mine.toml:7"), "{err}");
}

#[test]
fn every_command_says_which_cloud_it_acts_on() {
    let lab = Lab::new();
    for args in [&["plan"][..], &["status"], &["down"]] {
        let out = lab.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cloud: sim"), "cis {args:?}: {err}");
    }
    let fresh = Lab::new();
    let out = fresh.run(&["--cloud", "aws", "up"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cloud: aws"));
    assert!(!fresh.account_path().exists() && !fresh.state().join("aws").exists(), "nothing created");
}

#[test]
fn scenarios_list_and_completions() {
    let lab = Lab::new();
    let list = lab.ok(&["scenarios"]);
    assert!(list.contains("exfil-http-beacon") && list.contains("T1041"), "{list}");
    let show = lab.ok(&["scenarios", "show", "exfil-long-stream"]);
    assert!(show.contains("allow-all"), "{show}");
    assert!(lab.ok(&["completions", "bash"]).contains("cis"));
}

#[test]
fn ctrl_c_during_an_attack_stops_it_releases_the_target_and_exits_130() {
    let lab = Lab::new();
    lab.ok(&["up"]);
    let runs = lab.state().join("sim/labs/default/runs");
    let child = lab.cmd(&["attack", "--all"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // Once the first run is begun (its number taken, write-ahead), press Ctrl-C.
    let begun = runs.join("run-0001.open.json");
    for _ in 0..1200 {
        if begun.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(begun.exists(), "the first run was begun");
    let sent = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted") && stderr.contains("run-0001") && stderr.contains("cis attack"), "{stderr}");
    assert!(!begun.exists(), "the run was closed, not left open");
    let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(runs.join("run-0001.json")).unwrap()).unwrap();
    assert_eq!(record["verdict"], "interrupted", "{record}");
    // The target is released and quiet: the next attack runs and is judged on its own.
    let next: serde_json::Value = serde_json::from_str(&lab.ok(&["attack", "exfil-https-bulk", "--output", "json"])).unwrap();
    assert_eq!(next[0]["run_id"], "run-0002");
    assert_eq!(next[0]["verdict"], "as expected", "{}", next[0]);
}

#[test]
fn smaller_inputs_are_refused_by_name_and_nothing_is_created() {
    let lab = Lab::new();
    fails_with_2(&lab, &["--seed", "-1", "plan"], "'-1' is not a seed");
    fails_with_2(&lab, &["--region", "mars-1", "status"], "'mars-1' is not an AWS region");
    fails_with_2(&lab, &["--region", "us-south-1", "up"], "no S3 or service endpoints there");
    assert!(!lab.state().join("sim").exists(), "no simulated account was created in no region");
    let missing_dir = lab.state().join("no-such-dir");
    let out = format!("{}/x.html", missing_dir.display());
    fails_with_2(&lab, &["report", "--format", "html", "--out", &out], "does not exist");
    assert!(!missing_dir.exists(), "--out does not create directories");
    fails_with_2(&lab, &["report", "--all-labs", "--format", "html"], "cis attack --all-labs");
    fails_with_2(&lab, &["attack", "nowhere.toml"], "no such scenario file");
    // A file of one's own under a catalogue id would merge into that scenario's figures.
    let own = lab.state().join("mine.toml");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/exfil-https-bulk.toml")).unwrap();
    let changed = text.replacen("title = \"", "title = \"My ", 1);
    std::fs::write(&own, &changed).unwrap();
    let err = fails_with_2(&lab, &["scenarios", "show", own.to_str().unwrap()], "an id of its own");
    assert!(err.contains("mine.toml:"), "{err}");
    // The same file unchanged is the catalogue's scenario, and is accepted.
    std::fs::write(&own, &text).unwrap();
    lab.ok(&["scenarios", "show", own.to_str().unwrap()]);
}

#[test]
fn a_simulated_account_is_acted_on_only_in_its_own_region() {
    let lab = Lab::new();
    lab.ok(&["--region", "eu-west-1", "up", "--detector", "lambda"]);
    let before = std::fs::read(lab.account_path()).unwrap();
    // Another region asked for: refused, naming both, and the account is untouched.
    let err = fails_with_2(&lab, &["--region", "us-east-1", "status"], "is in eu-west-1");
    assert!(err.contains("--region us-east-1") && err.contains("--state-dir"), "{err}");
    assert_eq!(std::fs::read(lab.account_path()).unwrap(), before);
    // None asked for: the account's own.
    let status = lab.run(&["status"]);
    assert!(status.status.success() && String::from_utf8_lossy(&status.stderr).contains("eu-west-1"), "{status:?}");
    lab.ok(&["--region", "eu-west-1", "down"]);
}

#[test]
fn text_and_json_name_each_resource_alike() {
    let lab = Lab::new();
    lab.ok(&["up", "--detector", "lambda"]);
    let text = lab.ok(&["status"]);
    let json: serde_json::Value = serde_json::from_str(&lab.ok(&["--output", "json", "status"])).unwrap();
    let in_text: Vec<&str> = text.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    let resources = json["resources"].as_array().unwrap();
    assert!(resources.len() > 20, "{json}");
    for r in resources.iter().filter(|r| !r["role"].is_null()) {
        let role = r["role"].as_str().unwrap();
        assert!(in_text.contains(&role), "JSON's role {role} is not in the text: {text}");
    }
    lab.ok(&["down"]);
}

#[test]
fn an_attack_that_would_outlast_the_labs_ttl_is_refused_before_it_runs() {
    let lab = Lab::new();
    // A SageMaker endpoint's lab takes longer to stand up than 15 minutes: refused, and
    // nothing is created.
    let err = fails_with_2(&lab, &["up", "--ttl", "15m"], "to stand up");
    assert!(err.contains("--ttl 45m") && err.contains("--detector lambda"), "{err}");
    assert!(!lab.state().join("sim/labs/default").exists(), "not even the lab's folder");
    lab.ok(&["up", "--ttl", "15m", "--detector", "lambda"]);
    // The lab's janitor would delete it mid-run: refused before anything runs.
    let err = fails_with_2(&lab, &["attack", "--all"], "expires at");
    assert!(err.contains("--ttl") && err.contains("mid-run"), "{err}");
    assert!(
        !lab.state().join("sim/labs/default/runs").exists()
            || std::fs::read_dir(lab.state().join("sim/labs/default/runs")).unwrap().next().is_none()
    );
    lab.ok(&["down"]);
}

#[test]
fn quiet_prints_the_result_without_progress() {
    let lab = Lab::new();
    let loud = lab.run(&["-v", "up"]);
    let loud_text = String::from_utf8_lossy(&loud.stdout).to_string();
    assert!(loud_text.contains("creating"), "{loud_text}");
    lab.ok(&["down"]);
    // Piped without -v: one line per resource as it ends, retries in full, no step starts
    // or waits.
    let compact = lab.ok(&["up"]);
    assert!(compact.contains("(created in") && compact.contains("retrying in"), "{compact}");
    assert!(!compact.contains("creating") && !compact.contains("waiting:"), "{compact}");
    assert!(compact.lines().count() < loud_text.lines().count() * 3 / 4, "compact {} lines, -v {}", compact.lines().count(), loud_text.lines().count());
    lab.ok(&["down"]);
    let quiet = lab.run(&["--quiet", "up"]);
    assert!(quiet.status.success());
    let text = String::from_utf8_lossy(&quiet.stdout).to_string();
    let stderr = String::from_utf8_lossy(&quiet.stderr).to_string();
    assert!(!text.contains("creating") && !stderr.contains("creating"), "{text}\n{stderr}");
    assert!(
        text.lines().count() * 2 < loud_text.lines().count(),
        "quiet: {} lines, not: {}",
        text.lines().count(),
        loud_text.lines().count()
    );
    assert!(stderr.contains("acting on the simulator"), "which cloud is still said: {stderr}");
    fails_with_2(&lab, &["-q", "-v", "status"], "--quiet");
}

#[test]
fn up_with_other_options_names_the_ones_that_differ() {
    let lab = Lab::new();
    lab.ok(&["up", "--detector", "lambda"]);
    let err = fails_with_2(&lab, &["up", "--detector", "lambda", "--window", "600"], "other options");
    assert!(err.contains("window_s: was 60, now 600") && !err.contains("detector:"), "{err}");
    lab.ok(&["down"]);
}

/// `attack --at HH:MM` starts the run at that time of the lab's day, the lab's own traffic
/// going on until then (a day of web-server traffic here: it isolates nothing, or the
/// attack would be refused on an isolated target); a malformed time or a lab whose time to
/// live ends first is refused by name.
#[test]
fn attack_at_a_time_of_day_starts_then_and_bad_times_are_refused() {
    let lab = Lab::new();
    fails_with_2(&lab, &["attack", "--at", "25:00"], "'25:00' is not a time of day");
    lab.ok(&["up", "--workload", "web-server", "--detector", "lambda", "--seed", "3"]);
    let start_hour = |stdout: &str| -> (i64, i64) {
        let runs: serde_json::Value = serde_json::from_str(stdout).unwrap();
        let start = runs[0]["timeline"]["attack_start"].as_i64().unwrap();
        (start / 86_400_000, start % 86_400_000)
    };
    let (day, at) = start_hour(&lab.ok(&["--output", "json", "attack", "exfil-https-bulk", "--at", "14:30"]));
    assert!((14 * 3600 + 1800) * 1000 <= at && at < (14 * 3600 + 1800 + 600) * 1000, "started {at} ms into the day, not just after 14:30");
    lab.ok(&["release"]);
    // 02:05 has passed today: the next one is tomorrow's.
    let (next_day, at) = start_hour(&lab.ok(&["--output", "json", "attack", "exfil-https-bulk", "--at", "02:05"]));
    assert_eq!(next_day, day + 1);
    assert!((2 * 3600 + 300) * 1000 <= at && at < (2 * 3600 + 300 + 600) * 1000, "started {at} ms into the day");
    lab.ok(&["down"]);
    // A new account's clock starts at midnight: a one-hour lab is gone by 03:00.
    let short = Lab::new();
    short.ok(&["up", "--ttl", "1h", "--detector", "lambda"]);
    let err = fails_with_2(&short, &["attack", "--at", "03:00"], "expires at");
    assert!(err.contains("before 03:00 UTC"), "{err}");
    let runs = short.state().join("sim/labs/default/runs");
    assert!(!runs.exists() || std::fs::read_dir(&runs).unwrap().next().is_none(), "nothing ran");
    short.ok(&["down"]);
}
