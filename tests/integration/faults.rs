//! The lab's whole life under every fault profile, over many seeds: `up` converges or
//! fails cleanly (and a rerun converges), an attack is detected and isolated exactly once,
//! the run never shows detection after isolation, and `down` leaves nothing. Under
//! `denied`, where containment cannot isolate, the attack is detected and the lab's topic
//! gets Lambda's record of the containment it gave up on: a miss, but never a silent one.
//!
//! Each life runs in-process on a paused runtime against a fresh simulated account. Under
//! the `crashes` profile the command's future is dropped at a random virtual instant,
//! which leaves exactly what a SIGKILL leaves: the account keeps what was done, the state
//! directory what was written. `CIS_FAULT_SEEDS` sets the seeds per profile: 50 by
//! default, which CI runs; `.ci/soak` runs 1,000. A failure names the profile and seed that reproduce it, and
//! `CIS_FAULT_PROFILE` with `CIS_FAULT_SEED` runs that one life alone.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cis::backends::sim::SimCloud;
use cis::cloud::Cloud;
use cis::lab::{DetectorMode, LabName, LabOptions};
use cis::orchestrator::Orchestrator;
use cis::orchestrator::Silent;
use cis::sim::faults::FaultProfile;
use cis::state::StateDir;

/// The scenario a life runs: the seed picks it from the attacks flow logs see and the
/// model must catch, in turn, so every one of them meets every fault profile.
fn scenario_for(seed: u64) -> cis::scenario::Scenario {
    let attacks: Vec<cis::scenario::Scenario> = cis::scenario::catalogue()
        .into_iter()
        .filter(|s| s.expect.visible_in_flow_logs && s.expect.detected && s.expect.isolated)
        .collect();
    attacks[(seed % attacks.len() as u64) as usize].clone()
}
/// The operator reruns a failed or killed command; after this many tries it is a failure.
const TRIES: usize = 4;

#[derive(Default)]
struct Tally {
    lives: u64,
    up_first_try: u64,
    up_failed_cleanly: u64,
    killed: u64,
    detected: u64,
    isolated: u64,
    misses: u64,
    /// Misses the lab's topic was told of by Lambda's on-failure record (`denied`).
    announced_misses: u64,
    /// Lambda's records of containment events it gave up on, on the lab's topic.
    given_up_records: u64,
    double_isolations: u64,
    detection_after_isolation: u64,
    containment_failures_retried: u64,
    down_reruns: u64,
    leftovers: u64,
    injected: BTreeMap<&'static str, u64>,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.lives += o.lives;
        self.up_first_try += o.up_first_try;
        self.up_failed_cleanly += o.up_failed_cleanly;
        self.killed += o.killed;
        self.detected += o.detected;
        self.isolated += o.isolated;
        self.misses += o.misses;
        self.announced_misses += o.announced_misses;
        self.given_up_records += o.given_up_records;
        self.double_isolations += o.double_isolations;
        self.detection_after_isolation += o.detection_after_isolation;
        self.containment_failures_retried += o.containment_failures_retried;
        self.down_reruns += o.down_reruns;
        self.leftovers += o.leftovers;
        for (k, v) in &o.injected {
            *self.injected.entry(k).or_default() += v;
        }
    }
}

/// Lambda's records of the events it gave up on, as published to the account's topics.
fn given_up_records(world: &cis::sim::world::World) -> Vec<serde_json::Value> {
    world
        .pipeline
        .notifications
        .iter()
        .filter_map(|n| serde_json::from_str::<serde_json::Value>(&n.message).ok())
        .filter(|r| r["requestContext"]["condition"] == "RetriesExhausted")
        .collect()
}

/// What one life broke, if anything.
fn life(profile: FaultProfile, seed: u64, tally: &mut Tally) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    runtime.block_on(async {
        let state = StateDir::new(dir.path());
        let cloud = SimCloud::open_with_faults(&state.sim_account_dir(), Some(seed), "us-east-1", profile).map_err(|e| e.to_string())?;
        let orch = Orchestrator::new(&cloud, &Silent, &state);
        let lab: LabName = "faults".parse().unwrap();
        let options = LabOptions { detector: DetectorMode::Endpoint, ..Default::default() };
        tally.lives += 1;

        // up: killed at a random instant, or failed with a message that says what to do,
        // then run again, as an operator would.
        let mut up_done = false;
        for attempt in 0..TRIES {
            let kill = if attempt == 0 { cloud.kill_after(Duration::from_secs(20 * 60)) } else { None };
            let result = match kill {
                Some(after) => tokio::select! {
                    r = orch.up(&lab, &options) => Some(r),
                    () = tokio::time::sleep(after) => None,
                },
                None => Some(orch.up(&lab, &options).await),
            };
            match result {
                None => tally.killed += 1,
                Some(Ok(_)) => {
                    tally.up_first_try += u64::from(attempt == 0);
                    up_done = true;
                    break;
                }
                Some(Err(e)) => {
                    let message = e.to_string();
                    if !(message.contains("cis up") || message.contains("cis down")) {
                        return Err(format!("up failed without saying what to do: {message}"));
                    }
                    tally.up_failed_cleanly += 1;
                    if std::env::var_os("CIS_FAULT_VERBOSE").is_some() {
                        eprintln!("{profile} seed {seed}: up failed cleanly: {message}");
                    }
                }
            }
        }
        if !up_done {
            return Err(format!("up did not converge in {TRIES} tries"));
        }

        let scenario = scenario_for(seed);
        let run = orch.attack(&lab, &scenario).await.map_err(|e| format!("{}: attack: {e}", scenario.id))?;
        let m = &run.metrics;
        tally.detected += u64::from(m.detected);
        tally.isolated += u64::from(m.isolated);
        tally.containment_failures_retried += m.containment_failures as u64;
        let mut broken = Vec::new();
        // Lambda's records of containment events it gave up on, sent to the lab's topic.
        let given_up = cloud.inspect(|w| {
            given_up_records(w)
                .iter()
                .filter(|r| {
                    r["requestContext"]["functionArn"].as_str().is_some_and(|f| f.contains("containment-function"))
                        && r["requestPayload"]["detail"]["lab"] == lab.as_str()
                })
                .count() as u64
        });
        tally.given_up_records += given_up;
        if profile.isolates() {
            if !(m.detected && m.isolated) {
                tally.misses += 1;
                broken.push(format!("missed: detected {}, isolated {} ({:?})", m.detected, m.isolated, run.notes));
            }
        } else if !m.detected || m.isolated {
            broken.push(format!(
                "containment is denied: expected detected and not isolated, got detected {}, isolated {}",
                m.detected, m.isolated
            ));
        } else if given_up == 0 {
            tally.misses += 1;
            broken.push(format!("a silent miss: containment failed and nothing reached the topic ({:?})", run.notes));
        } else {
            tally.announced_misses += 1;
        }
        if m.isolations > 1 {
            tally.double_isolations += 1;
            broken.push(format!("isolated {} times", m.isolations));
        }
        if let (Some(d), Some(i)) = (run.timeline.detected, run.timeline.isolated) {
            if d > i {
                tally.detection_after_isolation += 1;
                broken.push(format!("detection at {d} after isolation at {i}"));
            }
        }

        // down: killed at a random instant, then run again until it succeeds.
        let mut down_done = false;
        for attempt in 0..TRIES {
            let kill = if attempt == 0 { cloud.kill_after(Duration::from_secs(5 * 60)) } else { None };
            let result = match kill {
                Some(after) => tokio::select! {
                    r = orch.down(&lab) => Some(r),
                    () = tokio::time::sleep(after) => None,
                },
                None => Some(orch.down(&lab).await),
            };
            match result {
                None => tally.killed += 1,
                Some(Ok(_)) => {
                    down_done = true;
                    break;
                }
                Some(Err(e)) => {
                    tally.down_reruns += 1;
                    if attempt == TRIES - 1 {
                        broken.push(format!("down failed {TRIES} times, last: {e}"));
                    }
                }
            }
        }
        let left = cloud.inspect(|w| w.live_resources().iter().map(|r| format!("{} {}", r.kind, r.id)).collect::<Vec<_>>());
        if !left.is_empty() {
            tally.leftovers += left.len() as u64;
            broken.push(format!("left behind: {}", left.join(", ")));
        }
        if down_done && state.ledger(cloud.kind(), &lab).exists() {
            broken.push("down succeeded but left the ledger".into());
        }
        for (what, n) in cloud.faults_injected() {
            *tally.injected.entry(what).or_default() += n;
        }
        if broken.is_empty() {
            Ok(())
        } else {
            Err(format!("{}: {}", scenario.id, broken.join("; ")))
        }
    })
}

#[test]
fn every_fault_profile_over_many_seeds_leaves_nothing_isolates_once_and_never_misses_in_silence() {
    let seeds: u64 = std::env::var("CIS_FAULT_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let only_profile: Option<FaultProfile> = std::env::var("CIS_FAULT_PROFILE").ok().map(|p| p.parse().unwrap());
    let only_seed: Option<u64> = std::env::var("CIS_FAULT_SEED").ok().and_then(|v| v.parse().ok());
    let profiles: Vec<FaultProfile> = FaultProfile::ALL.into_iter().filter(|p| only_profile.is_none_or(|o| o == *p)).collect();
    let seed_list: Vec<u64> = match only_seed {
        Some(s) => vec![s],
        None => (0..seeds).collect(),
    };
    let work: Vec<(FaultProfile, u64)> = profiles.iter().flat_map(|p| seed_list.iter().map(move |s| (*p, *s))).collect();

    // Lives are independent: a few workers share them (each life waits on its ledger's
    // fsyncs part of the time, so more workers than cores still help).
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
    let results: Vec<(BTreeMap<FaultProfile, Tally>, Vec<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut tallies: BTreeMap<FaultProfile, Tally> = BTreeMap::new();
                    let mut failures = Vec::new();
                    while let Some(&(profile, seed)) = work.get(next.fetch_add(1, Ordering::Relaxed)) {
                        if let Err(why) = life(profile, seed, tallies.entry(profile).or_default()) {
                            eprintln!("FAILED: CIS_FAULT_PROFILE={profile} CIS_FAULT_SEED={seed}: {why}");
                            failures.push(format!("profile {profile}, seed {seed}: {why}"));
                        }
                    }
                    (tallies, failures)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a worker panicked")).collect()
    });
    let mut tallies: BTreeMap<FaultProfile, Tally> = BTreeMap::new();
    let mut failures = Vec::new();
    for (t, f) in results {
        for (profile, tally) in t {
            tallies.entry(profile).or_default().add(&tally);
        }
        failures.extend(f);
    }
    failures.sort();

    let mut figures = String::new();
    for (profile, tally) in &tallies {
        let injected: Vec<String> = tally.injected.iter().map(|(k, v)| format!("{k} {v}")).collect();
        writeln!(
            figures,
            "{profile:>13}: {} lives, up first try {}, failed cleanly {}, killed {}; detected {}, isolated {}, misses {}, announced misses {}, double isolations {}, detection after isolation {}, failed containments retried {}, given up and sent to the topic {}; down reruns {}, leftovers {}; injected: {}",
            tally.lives,
            tally.up_first_try,
            tally.up_failed_cleanly,
            tally.killed,
            tally.detected,
            tally.isolated,
            tally.misses,
            tally.announced_misses,
            tally.double_isolations,
            tally.detection_after_isolation,
            tally.containment_failures_retried,
            tally.given_up_records,
            tally.down_reruns,
            tally.leftovers,
            if injected.is_empty() { "nothing".to_string() } else { injected.join(", ") }
        )
        .unwrap();
        if *profile != FaultProfile::None && only_seed.is_none() {
            assert!(!tally.injected.is_empty(), "profile {profile} injected nothing");
        }
    }
    println!("{figures}");
    // libtest hides a passing test's output: the figures also go to a file that `.ci/run`
    // prints at the end.
    if only_profile.is_none() && only_seed.is_none() {
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-figures.txt");
        let text = format!("{} seeds x {} fault profiles (tests/integration/faults.rs):\n{figures}", seeds, tallies.len());
        std::fs::write(&path, text).unwrap();
    }
    assert!(failures.is_empty(), "{} failing lives (rerun one with the variables printed above):\n{}", failures.len(), failures.join("\n"));
}

/// The flag as an operator meets it: a profile by name, a clear refusal of an unknown one
/// and of AWS, and a killed `up` that a plain `up` resumes and `down` clears.
#[test]
fn the_faults_flag_names_its_profiles_refuses_aws_and_a_killed_up_resumes() {
    let lab = crate::Lab::new();
    let out = lab.run(&["--faults", "flaky", "up"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--faults") && err.contains("flaky") && err.contains("server-errors") && err.contains("chaos"), "{err}");

    let out = lab.run(&["--cloud", "aws", "--faults", "chaos", "up"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("simulator only") && err.contains("nothing was done"), "{err}");

    // Seed 5 kills this `up` after 386 s of virtual time, part way: well before the
    // SageMaker endpoint is in service (the draw is the fault generator's, so it is fixed).
    let out = lab.run(&["--faults", "crashes", "--seed", "5", "up"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("killed after") && err.contains("run the command again"), "{err}");
    assert!(!lab.graph_resources().is_empty(), "the kill came after something was created");
    let up = lab.ok(&["--faults", "throttling", "up"]);
    assert!(up.contains("resumed") || up.contains("unchanged") || up.contains("adopted"), "{up}");
    lab.ok(&["--faults", "detaching", "down"]);
    assert_eq!(lab.live_resources(), vec![]);
}

/// A containment function its account denies, as an operator meets it: the attack is
/// detected and not isolated, the report says why and that the lab's topic was told, and
/// the topic holds Lambda's record of every event it gave up on, each after three attempts.
#[test]
fn a_denied_containment_misses_the_attack_but_the_topic_hears_of_it() {
    let lab = crate::Lab::new();
    lab.ok(&["up"]);
    let attack = lab.ok(&["--faults", "denied", "attack", "exfil-https-bulk"]);
    assert!(attack.contains("not isolated"), "{attack}");
    let report = lab.ok(&["report"]);
    assert!(report.contains("on-failure destination") && report.contains("UnauthorizedOperation"), "{report}");

    let path = lab.account_path();
    let world = cis::backends::sim::load_world(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
    let records = given_up_records(&world);
    assert!(!records.is_empty(), "no record of a given-up event reached the topic: {:?}", world.pipeline.notifications);
    for r in &records {
        assert!(r["requestContext"]["functionArn"].as_str().unwrap().ends_with("cis-default-containment-function:$LATEST"), "{r}");
        assert_eq!(r["requestContext"]["approximateInvokeCount"], 3, "{r}");
        assert_eq!(r["requestPayload"]["source"], "cis.detector", "the event as EventBridge sent it: {r}");
        assert!(r["responsePayload"]["errorMessage"].as_str().unwrap().contains("UnauthorizedOperation"), "{r}");
    }
    lab.ok(&["down"]);
    assert_eq!(lab.live_resources(), vec![]);
}
