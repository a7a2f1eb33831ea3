//! Measurement: runs a scenario against an up lab and turns what the pipeline did into a
//! timeline and latencies. The same code measures the simulator and AWS.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Orchestrator;
use crate::base::clock::{TimeOfDay, Timestamp};
use crate::base::error::{Error, Result};
use crate::base::files::{read_versioned, write_atomic};
use crate::cloud::{AttackHandle, LabTarget, Observation};
use crate::detect::anomaly::Reason;
use crate::model::events::{DetectionEvent, Detector, Outcome};
use crate::model::lab::{LabName, Role};
use crate::model::scenario::Scenario;
use crate::store::ledger::Ledger;

pub const RUN_FORMAT: &str = "cis-run";
pub const RUN_VERSION: u32 = 1;

/// How long flow logs may take to deliver their first records before an attack.
const WARMUP_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// After the attack ends, how long a detection may still arrive: flow-log delivery is
/// "best effort", typically 5 minutes, sometimes 10 or more (VPC user guide, "Flow log
/// records": "Flow log records are delivered ... in about 5 minutes").
const DELIVERY_ALLOWANCE: Duration = Duration::from_secs(15 * 60);
const POLL: Duration = Duration::from_secs(5);
/// How long a poll's throttling and 5xx answers are retried before the run gives up.
const POLL_RETRY_FOR: Duration = Duration::from_secs(120);
/// Between two runs in one lab, how long the last run's flow-log records may still take
/// to arrive after its window closes (delivery is typically 5 minutes, sometimes 10).
const SETTLE_ALLOWANCE: Duration = Duration::from_secs(10 * 60);
/// How long the target may take to accept commands (SSM agent registration).
const AGENT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How long the attack is watched after isolation: long enough for a tracked connection
/// that isolation failed to cut to show itself (a stream's chunks are seconds apart).
const AFTER_ISOLATION_WATCH: Duration = Duration::from_secs(60);

/// The instants of one run; absent where it did not happen.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub attack_start: Option<Timestamp>,
    pub first_exfil_flow: Option<Timestamp>,
    pub records_delivered: Option<Timestamp>,
    pub detected: Option<Timestamp>,
    /// The end of the flow-log window the counted detection is about: no detection can
    /// come before its window closes and its records are delivered.
    #[serde(default)]
    pub detected_window_end: Option<Timestamp>,
    pub containment_invoked: Option<Timestamp>,
    pub isolated: Option<Timestamp>,
    pub last_exfil_byte: Option<Timestamp>,
    pub notified: Option<Timestamp>,
    pub attack_end: Option<Timestamp>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    pub detected: bool,
    pub isolated: bool,
    /// First exfiltration flow -> detection event.
    pub detection_latency_s: Option<f64>,
    /// Detection event -> last interface in the isolation group.
    pub isolation_latency_s: Option<f64>,
    /// First exfiltration flow -> isolated.
    pub end_to_end_s: Option<f64>,
    /// Attack bytes the groups let out, in all.
    pub bytes_exfiltrated: u64,
    /// Attack bytes let out before isolation.
    pub bytes_before_isolation: u64,
    /// Attack bytes the groups dropped.
    pub bytes_blocked: u64,
    /// Attack bytes let out after isolation: zero unless a tracked connection survived
    /// it (the one-step swap AWS warns against).
    #[serde(default)]
    pub bytes_after_isolation: u64,
    /// Detection events the run raised (a window each): how often people are alerted.
    #[serde(default)]
    pub detections: usize,
    /// Containment invocations that isolated the target: one when it was isolated; more
    /// would mean duplicate deliveries were not recognised as such.
    #[serde(default)]
    pub isolations: usize,
    /// Containment invocations that failed (each retried by Lambda).
    #[serde(default)]
    pub containment_failures: usize,
    /// Detections whose window holds none of the attack's flows: false alerts of this run.
    #[serde(default)]
    pub false_alerts: usize,
    /// The target was isolated on a false alert.
    #[serde(default)]
    pub false_isolation: bool,
}

/// How a run ended against what its scenario expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    #[serde(rename = "as expected")]
    AsExpected,
    /// An attack the scenario expects caught went undetected.
    #[serde(rename = "missed")]
    Missed,
    /// Detected, but the scenario expects isolation and none happened.
    #[serde(rename = "not isolated")]
    NotIsolated,
    /// A benign scenario's target was isolated, or an attack's on a detection of
    /// something else.
    #[serde(rename = "unexpected isolation")]
    UnexpectedIsolation,
    /// A detection whose window holds none of the attack's flows (a benign or invisible
    /// scenario's, or a false alert beside an attack).
    #[serde(rename = "unexpected detection")]
    UnexpectedDetection,
    /// The command running it was interrupted (Ctrl-C, a crash, kill -9): the script was
    /// stopped and the target released. Not counted in the figures.
    #[serde(rename = "interrupted")]
    Interrupted,
    /// Its pre-conditions failed: the target was isolated for traffic from before the run.
    /// Not counted in the figures.
    #[serde(rename = "invalid")]
    Invalid,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::AsExpected => "as expected",
            Verdict::Missed => "missed",
            Verdict::NotIsolated => "not isolated",
            Verdict::UnexpectedIsolation => "unexpected isolation",
            Verdict::UnexpectedDetection => "unexpected detection",
            Verdict::Interrupted => "interrupted",
            Verdict::Invalid => "invalid",
        }
    }

    /// Whether the run measured the pipeline: an interrupted or invalid one did not, and
    /// reports leave it out of their figures.
    pub fn counts(self) -> bool {
        !matches!(self, Verdict::Interrupted | Verdict::Invalid)
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One attack run, as stored in the lab's `runs/` directory (schema: README, "Run records").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub format: String,
    pub version: u32,
    pub run_id: String,
    pub lab: String,
    pub cloud: String,
    pub scenario: String,
    pub title: String,
    /// What decided the counted detection.
    pub detector: Option<Detector>,
    /// Why the counted detection fired, as the detector explained it.
    #[serde(default)]
    pub detection_reason: Option<String>,
    /// The feature that weighed most in it, against the baseline.
    #[serde(default)]
    pub evidence: Option<Reason>,
    pub expected_detected: bool,
    pub expected_isolated: bool,
    pub visible_in_flow_logs: bool,
    pub timeline: Timeline,
    pub metrics: RunMetrics,
    /// `as expected`, `missed`, `not isolated`, `unexpected isolation`, `unexpected
    /// detection`, `interrupted` or `invalid`.
    pub verdict: Verdict,
    pub notes: Vec<String>,
    /// Run while the lab was learning (`cis arm` had not armed it): nothing could be
    /// detected or isolated.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub learning: bool,
}

impl RunRecord {
    /// Builds the record from what the cloud observed. A detection counts for the attack
    /// only if its window holds the attack's flows (as flow logs see them: not at all for
    /// an invisible scenario); any other is a false alert of the run, and an isolation it
    /// set off is a false isolation.
    pub fn from_observation(run_id: &str, lab: &str, cloud: &str, scenario: &Scenario, started: Timestamp, obs: &Observation) -> RunRecord {
        let e = &scenario.expect;
        let accepted = || obs.transfers.iter().filter(|t| t.accepted);
        // A window that closed before the run began is the last run's or the workload's:
        // not this run's to count, either way.
        let before_run = |d: &DetectionEvent| d.window_end() <= started;
        let of_attack = |d: &DetectionEvent| e.visible_in_flow_logs && obs.transfers.iter().any(|t| d.window_holds(t.at));
        let detection = obs.detections.iter().filter(|d| of_attack(d)).min_by_key(|d| d.at);
        let false_alerts = obs.detections.iter().filter(|d| !of_attack(d) && !before_run(d)).count();
        // A containment names its detection by time only, and one batch of the detector
        // puts all its detections at one time: a batch that holds a window of the attack
        // is the attack's (containment calls the batch's windows from before a release
        // stale, so an isolation from such a batch is the attack's window's).
        let batch_of_attack = |at: Timestamp| obs.detections.iter().any(|d| d.at == at && of_attack(d));
        let isolated_for_earlier = obs
            .containments
            .iter()
            .filter(|c| c.outcome == Outcome::Isolated)
            .filter_map(|c| c.detected_at)
            .any(|at| !batch_of_attack(at) && obs.detections.iter().any(|d| d.at == at && before_run(d)));
        let containment = obs.containments.iter().filter(|c| c.outcome == Outcome::Isolated).min_by_key(|c| c.invoked_at);
        // Which detection set the isolation off: the event carries its time.
        let isolation_of_attack = containment.is_some_and(|c| match c.detected_at {
            Some(at) => obs.detections.iter().any(|d| d.at == at && of_attack(d)),
            None => detection.is_some_and(|d| d.at <= c.invoked_at),
        });
        let invoked = obs.containments.iter().map(|c| c.invoked_at).min();
        let isolated = containment.and_then(|c| c.isolated_at);
        let notified = obs.notifications.iter().map(|n| n.at).min();
        let timeline = Timeline {
            attack_start: Some(started),
            first_exfil_flow: accepted().map(|t| t.at).min().or_else(|| obs.transfers.first().map(|t| t.at)),
            records_delivered: obs.first_records_delivered_at,
            detected: detection.map(|d| d.at),
            detected_window_end: detection.map(DetectionEvent::window_end),
            containment_invoked: invoked,
            isolated,
            last_exfil_byte: accepted().map(|t| t.at).max(),
            notified,
            attack_end: obs.attack_finished_at,
        };
        let secs = |a: Option<Timestamp>, b: Option<Timestamp>| match (a, b) {
            (Some(a), Some(b)) => Some(b.seconds_since(a)),
            _ => None,
        };
        let isolated_by_attack = isolated.filter(|_| isolation_of_attack);
        let metrics = RunMetrics {
            detected: detection.is_some(),
            isolated: isolated_by_attack.is_some(),
            detection_latency_s: secs(timeline.first_exfil_flow, timeline.detected),
            isolation_latency_s: secs(timeline.detected, isolated_by_attack),
            end_to_end_s: secs(timeline.first_exfil_flow, isolated_by_attack),
            bytes_exfiltrated: accepted().map(|t| t.bytes_out).sum(),
            bytes_before_isolation: accepted().filter(|t| isolated.is_none_or(|i| t.at < i)).map(|t| t.bytes_out).sum(),
            bytes_blocked: obs.transfers.iter().filter(|t| !t.accepted).map(|t| t.bytes_out).sum(),
            bytes_after_isolation: accepted().filter(|t| isolated.is_some_and(|i| t.at >= i)).map(|t| t.bytes_out).sum(),
            detections: obs.detections.len(),
            isolations: obs.containments.iter().filter(|c| c.outcome == Outcome::Isolated).count(),
            containment_failures: obs.containments.iter().filter(|c| c.outcome == Outcome::Failed).count(),
            false_alerts,
            false_isolation: isolated.is_some() && !isolation_of_attack,
        };
        let expects_catch = e.detected || e.isolated;
        let verdict = if isolated_for_earlier {
            Verdict::Invalid
        } else if isolated.is_some() && (!expects_catch || !isolation_of_attack) {
            Verdict::UnexpectedIsolation
        } else if expects_catch && !metrics.detected {
            Verdict::Missed
        } else if expects_catch && e.isolated && !metrics.isolated {
            Verdict::NotIsolated
        } else if false_alerts > 0 || (!expects_catch && metrics.detected) {
            Verdict::UnexpectedDetection
        } else {
            Verdict::AsExpected
        };
        let mut notes = Vec::new();
        if !e.visible_in_flow_logs {
            notes.push(
                "flow logs cannot see this traffic (for example DNS to the VPC resolver): no flow-log detector can catch it".to_string(),
            );
        }
        if metrics.bytes_after_isolation > 0 {
            notes.push(format!(
                "{} byte(s) left after isolation: a tracked connection outlived the group change (containment's two-step swap exists to cut it)",
                metrics.bytes_after_isolation
            ));
        }
        if isolated_for_earlier {
            notes.push(
                "invalid: the target was isolated on a detection of a window that closed before this run began (the last run's traffic or the workload's), so the run measured nothing"
                    .to_string(),
            );
        }
        if let Some(first) = obs.detections.iter().filter(|d| !of_attack(d) && !before_run(d)).min_by_key(|d| d.at) {
            notes.push(format!(
                "{false_alerts} detection(s) of windows holding none of the attack's flows: false alerts, not counted as detecting it; the first, window {} ({}): {}",
                first.window_start, first.detector, first.reason
            ));
        }
        if metrics.false_isolation {
            notes.push("the target was isolated on a false alert (a window without the attack's flows)".to_string());
        }
        if isolated.is_some() && !obs.instance_isolated {
            notes.push("containment reported isolation but the instance's groups no longer show it".to_string());
        }
        // Failures repeat (Lambda retries each event twice; each window raises an event of
        // its own): one note per outcome and detail, in the order they first came.
        let mut repeated: Vec<(Outcome, &str, Timestamp, Timestamp, usize)> = Vec::new();
        for c in obs.containments.iter().filter(|c| c.outcome != Outcome::Isolated) {
            match repeated.iter_mut().find(|r| r.0 == c.outcome && r.1 == c.detail) {
                Some(r) => {
                    r.3 = c.invoked_at;
                    r.4 += 1;
                }
                None => repeated.push((c.outcome, &c.detail, c.invoked_at, c.invoked_at, 1)),
            }
        }
        for (outcome, detail, first, last, n) in repeated {
            notes.push(if n == 1 {
                format!("containment at {first}: {outcome} ({detail})")
            } else {
                format!("containment {outcome} {n} times, {first} to {last} ({detail})")
            });
        }
        let attempts = 1 + crate::model::lab::LAMBDA_ASYNC_RETRIES as usize;
        if !metrics.isolated && metrics.containment_failures >= attempts {
            notes.push(format!(
                "containment did not isolate: once {attempts} attempts at an event have failed, Lambda sends it to the lab's topic (the function's on-failure destination), so the people subscribed hear of it"
            ));
        }
        if metrics.isolated
            && metrics.bytes_before_isolation == metrics.bytes_exfiltrated
            && timeline.attack_end.is_some_and(|end| isolated.is_some_and(|i| end <= i))
        {
            notes.push("the attack was over before isolation: every byte left first".to_string());
        }
        RunRecord {
            format: RUN_FORMAT.into(),
            version: RUN_VERSION,
            run_id: run_id.into(),
            lab: lab.into(),
            cloud: cloud.into(),
            scenario: scenario.id.clone(),
            title: scenario.title.clone(),
            detector: detection.map(|d| d.detector),
            detection_reason: detection.map(|d| d.reason.clone()),
            evidence: detection.and_then(|d| d.evidence.clone()),
            expected_detected: e.detected,
            expected_isolated: e.isolated,
            visible_in_flow_logs: e.visible_in_flow_logs,
            timeline,
            metrics,
            verdict,
            notes,
            learning: false,
        }
    }

    pub fn load(path: &Path) -> Result<RunRecord> {
        read_versioned(path, RUN_FORMAT, RUN_VERSION, "run record", "it was left as it is")
    }

    fn path(dir: &Path, run_id: &str) -> PathBuf {
        dir.join(format!("{run_id}.json"))
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Internal(e.to_string()))?;
        write_atomic(&RunRecord::path(dir, &self.run_id), text.as_bytes())
    }
}


/// The lab's run files by run number: `run-NNNN.json` records (`false`) and
/// `run-NNNN.open.json` runs begun and not yet recorded (`true`).
fn run_files(dir: &Path) -> Result<Vec<(u32, bool, PathBuf)>> {
    let mut runs: Vec<(u32, bool, PathBuf)> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_str()?.strip_prefix("run-")?.strip_suffix(".json")?.to_string();
                let (number, open) = match name.strip_suffix(".open") {
                    Some(n) => (n.to_string(), true),
                    None => (name, false),
                };
                Some((number.parse::<u32>().ok()?, open, e.path()))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(Error::io(dir, e)),
    };
    runs.sort();
    Ok(runs)
}

/// Every recorded run of a lab, in run order.
pub fn load_runs(dir: &Path) -> Result<Vec<RunRecord>> {
    run_files(dir)?.iter().filter(|(_, open, _)| !open).map(|(_, _, p)| RunRecord::load(p)).collect()
}

/// The next run's id: past every recorded and every open run, so that no two runs (nor a
/// run the cloud still holds from a crash) ever share one.
fn next_run_id(dir: &Path) -> Result<String> {
    let highest = run_files(dir)?.last().map_or(0, |(n, _, _)| *n);
    Ok(format!("run-{:04}", highest + 1))
}

pub const OPEN_RUN_FORMAT: &str = "cis-open-run";
pub const OPEN_RUN_VERSION: u32 = 1;

/// A run begun and not yet recorded (`runs/run-NNNN.open.json`), written ahead like the
/// ledger: before the script starts, so its number is taken, and again once the cloud
/// has started it. Its record replaces it. One left behind is a run whose command was
/// interrupted (Ctrl-C, a crash, kill -9): [`Orchestrator::close_interrupted`] stops its
/// script, releases the target and records it as interrupted.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OpenRun {
    pub format: String,
    pub version: u32,
    pub run_id: String,
    pub scenario: Scenario,
    /// When the run was begun, before the script started.
    pub begun_at: Timestamp,
    /// The cloud's handle, once the script started.
    pub handle: Option<AttackHandle>,
}

impl OpenRun {
    fn path(dir: &Path, run_id: &str) -> PathBuf {
        dir.join(format!("{run_id}.open.json"))
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Internal(e.to_string()))?;
        write_atomic(&OpenRun::path(dir, &self.run_id), text.as_bytes())
    }

    /// Removes the open run's file: its record replaced it, or it never started.
    fn remove(dir: &Path, run_id: &str) -> Result<()> {
        let path = OpenRun::path(dir, run_id);
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))
    }

    fn load(path: &Path) -> Result<OpenRun> {
        read_versioned(path, OPEN_RUN_FORMAT, OPEN_RUN_VERSION, "open run", "move it aside and run `cis release` if the target is isolated")
    }
}

/// The lab's open runs, in run order.
pub fn open_runs(dir: &Path) -> Result<Vec<OpenRun>> {
    run_files(dir)?.iter().filter(|(_, open, _)| *open).map(|(_, _, p)| OpenRun::load(p)).collect()
}

/// How long a run waits for the egress alarm to leave ALARM: its evaluation range (the
/// window plus 15 min) after the target was released, and a margin.
const REARM_TIMEOUT: Duration = Duration::from_secs(40 * 60);

pub(super) fn target_of(ledger: &Ledger) -> LabTarget {
    let refs = ledger.entries.iter().filter_map(|e| e.id.clone().map(|id| (e.role, id))).collect();
    LabTarget { lab: ledger.lab.clone(), refs }
}

impl Orchestrator<'_> {
    /// Whether containment has the target isolated: an interface in the isolation group,
    /// or the lab subnet cut at its network ACL.
    /// Whether the target is isolated, and when it was last released.
    async fn target_state(&self, ledger: &Ledger) -> Result<(bool, Option<Timestamp>)> {
        let (Some(instance), Some(isolation)) = (
            ledger.entry(Role::TargetInstance).and_then(|e| e.id.clone()),
            ledger.entry(Role::IsolationSecurityGroup).and_then(|e| e.id.clone()),
        ) else {
            return Ok((false, None));
        };
        let api = self.cloud.containment_api();
        let view = self.retrying("attack", POLL_RETRY_FOR, || api.describe_instance(&instance)).await?;
        Ok((view.subnet_cut || view.interfaces.iter().any(|i| i.groups.contains(&isolation)), view.released_at()))
    }

    /// The ledger of a lab that is up and complete.
    fn complete_ledger(&self, lab: &LabName) -> Result<Ledger> {
        let cloud = self.cloud.kind().name();
        let ledger = self
            .load_ledger(lab)?
            .ok_or_else(|| Error::LabState(format!("lab '{lab}' is not up on {cloud}: run `cis up --lab {lab}` first")))?;
        if !ledger.complete {
            return Err(Error::LabState(format!("lab '{lab}' on {cloud} is only partly created: run `cis up --lab {lab}` to finish it")));
        }
        Ok(ledger)
    }

    /// The lab's resources, if it is up and complete.
    pub fn target(&self, lab: &LabName) -> Result<LabTarget> {
        Ok(target_of(&self.complete_ledger(lab)?))
    }

    /// Between two runs in one lab: waits for the last script to end, stops it if it goes
    /// on (a beacon's jitter can carry it past its span; isolation drops its connections,
    /// it does not stop it) and releases the target. The next [`Orchestrator::attack`]
    /// then waits for the last records to drain. Virtual time on the simulator; on AWS,
    /// real minutes.
    pub async fn settle(&self, lab: &LabName, previous: &RunRecord, scenario: &Scenario) -> Result<()> {
        let clock = self.cloud.clock();
        self.progress.update("attack", "letting the last attack end before the next run");
        let start = previous.timeline.attack_start.unwrap_or_else(|| clock.now());
        let end = previous.timeline.attack_end.unwrap_or_else(|| start.plus_secs_f64(scenario.span_s()));
        tokio::time::sleep(end.duration_since(clock.now())).await;
        self.cut_short(lab, previous).await
    }

    /// Between two runs of a study that has its answer (`cis sim frontier`): stops the
    /// last script now if it may still run, however long it would go on, and releases the
    /// target. The next [`Orchestrator::attack`] waits for the last records to drain.
    pub async fn cut_short(&self, lab: &LabName, previous: &RunRecord) -> Result<()> {
        let ledger = self.complete_ledger(lab)?;
        if previous.timeline.attack_end.is_none() {
            let target = target_of(&ledger);
            self.retrying("attack", POLL_RETRY_FOR, || self.cloud.stop_attack(&target, &previous.run_id, None)).await?;
        }
        self.release(lab).await?;
        Ok(())
    }

    /// Waits, the lab's traffic going on, until its clock next reads the time of day `at`
    /// (`cis attack --at`). A lab whose time to live ends first is refused before any wait.
    pub async fn wait_for_time_of_day(&self, lab: &LabName, at: TimeOfDay) -> Result<()> {
        let ledger = self.complete_ledger(lab)?;
        let clock = self.cloud.clock();
        let start = at.next_at_or_after(clock.now());
        if let Some(expires_at) = ledger.expires_at() {
            if start >= expires_at {
                return Err(Error::LabState(format!(
                    "lab '{lab}' expires at {expires_at} (its --ttl), before {at} ({start}): give an earlier --at, or `cis down --lab {lab}` and `cis up --lab {lab} --ttl` with more time"
                )));
            }
        }
        if start > clock.now() {
            self.progress.update("attack", &format!("waiting until {start} (--at {at}); the lab's own traffic goes on"));
            clock.sleep_until(start).await;
        }
        Ok(())
    }

    /// Closes every run of the lab that was begun and never recorded (its command was
    /// interrupted, crashed or killed): stops its script, records what the pipeline did
    /// as an `interrupted` run, and releases the target. Returns the records written.
    pub async fn close_interrupted(&self, lab: &LabName, why: &str) -> Result<Vec<RunRecord>> {
        let runs_dir = self.state.runs_dir(self.cloud.kind(), lab);
        let open = open_runs(&runs_dir)?;
        if open.is_empty() {
            return Ok(vec![]);
        }
        let ledger = self.complete_ledger(lab)?;
        let target = target_of(&ledger);
        let label = "attack";
        let mut records = Vec::new();
        for run in open {
            if RunRecord::path(&runs_dir, &run.run_id).exists() {
                // Killed between writing the record and removing this: the run finished.
                OpenRun::remove(&runs_dir, &run.run_id)?;
                continue;
            }
            self.progress.update(label, &format!("closing {} ({}), {why}", run.run_id, run.scenario.id));
            let mut notes = vec![format!("interrupted: {why}; the script was stopped and the target released")];
            let backend_ref = run.handle.as_ref().map(|h| h.backend_ref.as_str());
            if let Err(e) = self.retrying(label, POLL_RETRY_FOR, || self.cloud.stop_attack(&target, &run.run_id, backend_ref)).await {
                notes.push(format!("the script could not be stopped ({e}); it ends at its own timeout"));
            }
            let obs = match &run.handle {
                Some(h) => match self.retrying(label, POLL_RETRY_FOR, || self.cloud.observe(&target, h)).await {
                    Ok(obs) => obs,
                    Err(e) => {
                        notes.push(format!("what the pipeline did could not be read back ({e})"));
                        Observation::default()
                    }
                },
                None => Observation::default(),
            };
            let started = run.handle.as_ref().map_or(run.begun_at, |h| h.started_at);
            let mut record = RunRecord::from_observation(&run.run_id, lab.as_str(), self.cloud.kind().name(), &run.scenario, started, &obs);
            record.verdict = Verdict::Interrupted;
            notes.append(&mut record.notes);
            record.notes = notes;
            record.save(&runs_dir)?;
            OpenRun::remove(&runs_dir, &run.run_id)?;
            records.push(record);
        }
        if records.is_empty() {
            return Ok(records);
        }
        self.release(lab).await?;
        self.cloud.checkpoint().await?;
        Ok(records)
    }

    /// Runs one scenario and records its timeline in the lab's `runs/` directory. The run
    /// starts on a released, quiet target: runs left open by an interrupted command are
    /// closed first, the last run's script is stopped and its records drained, and an
    /// isolated target is refused with the command that releases it.
    pub async fn attack(&self, lab: &LabName, scenario: &Scenario) -> Result<RunRecord> {
        let ledger = self.complete_ledger(lab)?;
        let target = target_of(&ledger);
        let clock = self.cloud.clock();
        let label = "attack";
        let runs_dir = self.state.runs_dir(self.cloud.kind(), lab);

        self.close_interrupted(lab, "found open at the start of the next attack (its command was interrupted or crashed)").await?;
        if ledger.arming.is_learning() {
            // Allowed, and recorded as such: the run shows what the lab does before it is armed.
            self.progress.update(
                label,
                &format!("lab '{lab}' is learning: its detector has no model, so nothing will be detected or isolated (`cis arm` first)"),
            );
        }
        // The last run's traffic must not reach this one: stop its script if it may still
        // run, then wait until its last records have been delivered and judged.
        if let Some(last) = load_runs(&runs_dir)?.pop() {
            let quiet_from = match last.timeline.attack_end {
                Some(end) => end,
                None => {
                    self.retrying(label, POLL_RETRY_FOR, || self.cloud.stop_attack(&target, &last.run_id, None)).await?;
                    clock.now()
                }
            };
            let quiet_at = quiet_from.plus(Duration::from_secs(u64::from(ledger.options.window_s)) + SETTLE_ALLOWANCE);
            if clock.now() < quiet_at {
                self.progress.update(label, &format!("letting {}'s last flow-log records drain before the next run", last.run_id));
                tokio::time::sleep(quiet_at.duration_since(clock.now())).await;
            }
        }
        // A lab with a time to live deletes itself when the time is up: a run that would
        // outlast it would end in missing resources, not in a measurement.
        if let Some(expires_at) = ledger.expires_at() {
            let needs = Duration::from_secs_f64(scenario.span_s())
                + Duration::from_secs(u64::from(ledger.options.window_s))
                + DELIVERY_ALLOWANCE
                + AFTER_ISOLATION_WATCH;
            let now = clock.now();
            if now >= expires_at {
                return Err(Error::LabState(format!(
                    "lab '{lab}' expired at {expires_at} (its --ttl): its janitor removes it; run `cis down --lab {lab}` to finish that, then `cis up --lab {lab}` for a new one"
                )));
            }
            if now.plus(needs) > expires_at {
                return Err(Error::LabState(format!(
                    "lab '{lab}' expires at {expires_at} (its --ttl), {:.0} min from now, and {} may take {:.0} min: the janitor would delete the lab mid-run. Run a shorter scenario, or `cis down --lab {lab}` and `cis up --lab {lab} --ttl` with more time",
                    expires_at.seconds_since(now) / 60.0,
                    scenario.id,
                    needs.as_secs_f64() / 60.0
                )));
            }
        }
        let (isolated, released_at) = self.target_state(&ledger).await?;
        if isolated {
            return Err(Error::LabState(format!(
                "lab '{lab}': the target is isolated (containment of an earlier run): run `cis release --lab {lab}` first, so that this run starts on a released target"
            )));
        }
        // Containment calls a window that began before the release stale (it holds the
        // isolated period's records): a run started in the window of a release would have
        // its first window ignored. It starts in the next one.
        if let Some(released) = released_at {
            let window_ms = i64::from(ledger.options.window_s) * 1000;
            let next_window = Timestamp((released.millis().div_euclid(window_ms) + 1) * window_ms);
            if clock.now() < next_window {
                self.progress.update(label, "waiting for the first flow-log window after the release");
                tokio::time::sleep(next_window.duration_since(clock.now()) + Duration::from_secs(1)).await;
            }
        }

        // Flow logs take minutes to deliver their first records; an attack before that
        // would measure the warm-up, not the pipeline.
        let warmup_deadline = clock.now().plus(WARMUP_TIMEOUT);
        while self.retrying(label, POLL_RETRY_FOR, || self.cloud.first_delivery(&target)).await?.is_none() {
            if clock.now() >= warmup_deadline {
                return Err(Error::LabState(format!(
                    "lab '{lab}': no flow-log records reached the log group in {} min: check the flow log with `cis status --lab {lab}`",
                    WARMUP_TIMEOUT.as_secs() / 60
                )));
            }
            self.progress.update(label, "waiting for the flow log's first records (pipeline warm-up)");
            tokio::time::sleep(Duration::from_secs(15)).await;
        }

        // An alarm still in ALARM from the last run would not fire for this one.
        let rearm_deadline = clock.now().plus(REARM_TIMEOUT);
        while self.retrying(label, POLL_RETRY_FOR, || self.cloud.alarm_firing(&target)).await? {
            if clock.now() >= rearm_deadline {
                return Err(Error::LabState(format!(
                    "lab '{lab}': the egress alarm stayed in ALARM for {} min, so it could not fire for a new attack: run `cis release --lab {lab}` if the target is isolated, and check the alarm in `cis status --lab {lab}`",
                    REARM_TIMEOUT.as_secs() / 60
                )));
            }
            self.progress.update(label, "waiting for the egress alarm to return to OK (an alarm in ALARM does not fire again)");
            tokio::time::sleep(Duration::from_secs(60)).await;
        }

        let run_id = next_run_id(&runs_dir)?;
        let mut open = OpenRun {
            format: OPEN_RUN_FORMAT.into(),
            version: OPEN_RUN_VERSION,
            run_id: run_id.clone(),
            scenario: scenario.clone(),
            begun_at: clock.now(),
            handle: None,
        };
        open.save(&runs_dir)?;
        self.progress.begin(label, &run_id, &format!("running {}", scenario.id));
        // On AWS the target's SSM agent registers a minute or two after boot.
        let agent_deadline = clock.now().plus(AGENT_TIMEOUT);
        let handle = loop {
            match self.cloud.start_attack(&target, scenario, &run_id).await {
                Ok(h) => break h,
                Err(e) if e.is_transient() && clock.now() < agent_deadline => {
                    self.progress.update(label, &format!("waiting for the target to accept commands: {e}"));
                    tokio::time::sleep(Duration::from_secs(15)).await;
                }
                Err(e) => {
                    // Nothing started: the number is free again.
                    OpenRun::remove(&runs_dir, &run_id)?;
                    return Err(e.into());
                }
            }
        };
        open.handle = Some(handle.clone());
        open.save(&runs_dir)?;
        let window = Duration::from_secs(ledger.options.window_s as u64);
        let span = Duration::from_secs_f64(scenario.span_s());
        let hard_deadline = handle.started_at.plus(span + window + DELIVERY_ALLOWANCE + Duration::from_secs(15 * 60));

        let obs = loop {
            tokio::time::sleep(POLL).await;
            let obs = self.retrying(label, POLL_RETRY_FOR, || self.cloud.observe(&target, &handle)).await?;
            let now = clock.now();
            let isolated_at = obs.containments.iter().filter(|c| c.outcome == Outcome::Isolated).filter_map(|c| c.isolated_at).min();
            let contained = isolated_at.is_some_and(|i| now >= i.plus(AFTER_ISOLATION_WATCH));
            let notified = !obs.notifications.is_empty();
            // A refusal is final; a failure is not: Lambda retries the event twice.
            let settled = obs.containments.iter().any(|c| c.outcome == Outcome::Refused);
            let quiet_since = obs.attack_finished_at.map(|end| end.plus(window + DELIVERY_ALLOWANCE));
            let msg = match (&obs.detections.first(), isolated_at.is_some()) {
                (_, true) => "isolated; watching the attack and waiting for the notification".to_string(),
                (Some(_), false) => "detected; waiting for containment".to_string(),
                (None, _) if obs.attack_finished_at.is_some() => "attack over; waiting for detection".to_string(),
                (None, _) => "attack running; waiting for detection".to_string(),
            };
            self.progress.update(label, &msg);
            if (contained && notified) || settled || quiet_since.is_some_and(|q| now >= q) || now >= hard_deadline {
                break obs;
            }
        };
        let mut record = RunRecord::from_observation(&run_id, lab.as_str(), self.cloud.kind().name(), scenario, handle.started_at, &obs);
        if ledger.arming.is_learning() {
            record.learning = true;
            record.notes.push("run while the lab was learning: its detector had no model and nothing could be isolated (`cis arm`)".into());
        }
        record.save(&runs_dir)?;
        OpenRun::remove(&runs_dir, &run_id)?;
        self.cloud.checkpoint().await?;
        self.progress.finish(label, &format!("{run_id}: {}", record.verdict));
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::events::{ContainmentOutcome, Notification, Transfer};

    #[test]
    fn latencies_and_bytes_come_from_the_observation() {
        let s = crate::model::scenario::find("exfil-long-stream").unwrap();
        let t = |s: i64| Timestamp(s * 1000);
        let obs = Observation {
            attack_finished_at: Some(t(500)),
            transfers: vec![
                Transfer { at: t(10), bytes_out: 100, accepted: true },
                Transfer { at: t(300), bytes_out: 100, accepted: true },
                Transfer { at: t(400), bytes_out: 100, accepted: false },
            ],
            first_records_delivered_at: Some(t(330)),
            detections: vec![DetectionEvent {
                at: t(340),
                lab: "l".into(),
                instance_id: "i".into(),
                detector: Detector::FeatureTails,
                window_start: t(0),
                window_s: 60,
                reason: "r".into(),
                evidence: None,
            }],
            containments: vec![ContainmentOutcome {
                invoked_at: t(341),
                finished_at: t(342),
                detected_at: Some(t(340)),
                instance_id: "i".into(),
                outcome: Outcome::Isolated,
                isolated_at: Some(t(342)),
                snapshots: vec![],
                detail: String::new(),
            }],
            notifications: vec![Notification { at: t(343), subject: "s".into() }],
            instance_isolated: true,
        };
        let r = RunRecord::from_observation("run-0001", "l", "sim", &s, t(5), &obs);
        assert_eq!(r.metrics.detection_latency_s, Some(330.0));
        assert_eq!(r.metrics.isolation_latency_s, Some(2.0));
        assert_eq!(r.metrics.end_to_end_s, Some(332.0));
        assert_eq!((r.metrics.bytes_exfiltrated, r.metrics.bytes_before_isolation, r.metrics.bytes_blocked), (200, 200, 100));
        assert_eq!(r.verdict, Verdict::AsExpected);
        let missed = RunRecord::from_observation("run-0002", "l", "sim", &s, t(5), &Observation::default());
        assert_eq!(missed.verdict, Verdict::Missed);

        // The same detection of a window the attack's flows are not in: a false alert,
        // and the isolation it set off a false isolation.
        let mut elsewhere = obs.clone();
        elsewhere.detections[0].window_start = t(120);
        let r = RunRecord::from_observation("run-0003", "l", "sim", &s, t(5), &elsewhere);
        assert_eq!((r.metrics.detected, r.metrics.false_alerts, r.metrics.false_isolation), (false, 1, true));
        assert_eq!(r.metrics.detection_latency_s, None);
        assert_eq!(r.verdict, Verdict::UnexpectedIsolation);
        // Without the isolation: an attack missed beside a false alert is missed.
        elsewhere.containments.clear();
        let r = RunRecord::from_observation("run-0004", "l", "sim", &s, t(5), &elsewhere);
        assert_eq!(r.verdict, Verdict::Missed);
        // Caught and isolated, with a false alert beside it: an unexpected detection.
        elsewhere.detections.push(obs.detections[0].clone());
        elsewhere.containments = obs.containments.clone();
        let r = RunRecord::from_observation("run-0005", "l", "sim", &s, t(5), &elsewhere);
        assert_eq!((r.metrics.detected, r.verdict), (true, Verdict::UnexpectedDetection));
        // An invisible scenario's "detection" can only be a false alert.
        let dns = crate::model::scenario::find("exfil-dns-tunnel").unwrap();
        let r = RunRecord::from_observation("run-0006", "l", "sim", &dns, t(5), &Observation { containments: vec![], ..obs.clone() });
        assert_eq!((r.metrics.detected, r.metrics.false_alerts, r.verdict), (false, 1, Verdict::UnexpectedDetection));
    }

    #[test]
    fn repeated_containment_failures_are_one_note_and_a_given_up_event_says_where_it_went() {
        let s = crate::model::scenario::find("exfil-long-stream").unwrap();
        let t = |s: i64| Timestamp(s * 1000);
        let failed = |at: i64, detail: &str| ContainmentOutcome {
            invoked_at: t(at),
            finished_at: t(at),
            detected_at: Some(t(100)),
            instance_id: "i".into(),
            outcome: Outcome::Failed,
            isolated_at: None,
            snapshots: vec![],
            detail: detail.into(),
        };
        let detection = DetectionEvent {
            at: t(100),
            lab: "l".into(),
            instance_id: "i".into(),
            detector: Detector::FeatureTails,
            window_start: t(0),
            window_s: 60,
            reason: "r".into(),
            evidence: None,
        };
        let mut obs = Observation {
            transfers: vec![Transfer { at: t(10), bytes_out: 100, accepted: true }],
            detections: vec![detection],
            containments: vec![failed(101, "denied")],
            ..Default::default()
        };
        let r = RunRecord::from_observation("run-0001", "l", "sim", &s, t(5), &obs);
        assert_eq!(r.verdict, Verdict::NotIsolated);
        assert!(r.notes.iter().any(|n| n.contains("containment at") && n.contains("denied")), "{:?}", r.notes);
        assert!(!r.notes.iter().any(|n| n.contains("on-failure destination")), "Lambda still retries: {:?}", r.notes);

        obs.containments.extend([failed(161, "denied"), failed(281, "denied"), failed(282, "timeout")]);
        let r = RunRecord::from_observation("run-0002", "l", "sim", &s, t(5), &obs);
        let containment_notes: Vec<&String> = r.notes.iter().filter(|n| n.starts_with("containment")).collect();
        assert_eq!(containment_notes.len(), 3, "{containment_notes:?}");
        assert!(containment_notes[0].contains("failed 3 times") && containment_notes[0].contains("denied"), "{containment_notes:?}");
        assert!(containment_notes[1].contains("timeout"), "{containment_notes:?}");
        assert!(containment_notes[2].contains("on-failure destination"), "{containment_notes:?}");
    }
}
