//! The containment function: isolates an instance the way AWS recommends.
//!
//! A plain async function over a small trait ([`ContainmentApi`]) for the EC2 and SNS
//! calls, so the Lambda (`lambda/`, with the AWS SDK), the simulator and unit tests run
//! the same code. The procedure follows the AWS Security Incident Response Guide
//! ("Source containment") and the runbook AWSSupport-ContainEC2Instance:
//! 1. accept only a `cis.detector` event for this lab, and only an instance that carries
//!    this lab's tag: the function never acts outside its lab;
//! 2. do nothing if it is already isolated (EventBridge and Lambda deliver at least once);
//! 3. record the original groups in a tag, so `cis release` or a failure can restore them;
//! 4. forensics first (unless turned off): termination protection, volumes kept on
//!    termination, a snapshot of each volume tagged with the lab; a forensic step that
//!    fails is reported but does not hold back the isolation;
//! 5. cut tracked connections: by default a deny-all entry in each direction of the lab
//!    subnet's network ACL (the lab owns its subnet), which cuts them at once; or, with
//!    `two-step`, AWS's runbook: every ENI to an allow-all group, so they become
//!    untracked; then every ENI to the isolation group (a one-step swap, for training
//!    only, leaves tracked connections flowing);
//! 6. on error put the original groups back, lift the cut, and report it;
//! 7. publish one message with the timeline.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::base::clock::Timestamp;
use crate::base::error::CloudError;
use crate::model::events::{ContainmentOutcome, DetectionEvent, Detector, Outcome};
pub use crate::model::lab::IsolationSteps;
use crate::model::lab::{Tags, DETECTION_DETAIL_TYPE, DETECTION_SOURCE, TAG_LAB};

pub const TAG_ORIGINAL_GROUPS: &str = "cis:original-groups";
/// When `release` last put the instance back (Unix milliseconds): a detection of a window
/// that began before it saw the isolated period's own rejected flows, not a new attack.
pub const TAG_RELEASED_AT: &str = "cis:released-at";
pub const TAG_ISOLATED_AT: &str = "cis:isolated-at";
/// On the instance: the forensic snapshots taken, so a duplicate delivery takes none.
pub const TAG_SNAPSHOTS: &str = "cis:forensic-snapshots";
/// On a snapshot: the instance it preserves.
pub const TAG_FORENSICS_OF: &str = "cis:forensics-of";

/// An instance as containment sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceView {
    pub id: String,
    pub tags: Tags,
    pub interfaces: Vec<InterfaceView>,
    #[serde(default)]
    pub volumes: Vec<VolumeView>,
    #[serde(default)]
    pub termination_protected: bool,
    /// The subnet of its primary interface.
    #[serde(default)]
    pub subnet_id: String,
    /// Whether that subnet's network ACL carries containment's deny-all entries.
    #[serde(default)]
    pub subnet_cut: bool,
}

impl InstanceView {
    /// When `cis release` last released the instance (its `cis:released-at` tag).
    pub fn released_at(&self) -> Option<Timestamp> {
        self.tags.get(TAG_RELEASED_AT).and_then(|t| t.parse::<i64>().ok()).map(Timestamp)
    }
}

/// The network ACL rule number of containment's deny-all entries: the lowest, so they
/// come before every allow.
pub const CUT_RULE_NUMBER: i32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterfaceView {
    pub id: String,
    pub groups: Vec<String>,
}

/// An EBS volume attached to the instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VolumeView {
    pub id: String,
    pub device: String,
    pub delete_on_termination: bool,
}

/// The calls containment makes.
#[async_trait]
pub trait ContainmentApi: Send + Sync {
    fn now(&self) -> Timestamp;
    async fn describe_instance(&self, instance_id: &str) -> Result<InstanceView, CloudError>;
    /// ModifyNetworkInterfaceAttribute(Groups): covers every ENI, unlike
    /// ModifyInstanceAttribute which changes only the primary one.
    async fn set_interface_groups(&self, interface_id: &str, groups: &[String]) -> Result<(), CloudError>;
    async fn tag_instance(&self, instance_id: &str, tags: &Tags) -> Result<(), CloudError>;
    /// ModifyInstanceAttribute(DisableApiTermination=true).
    async fn protect_from_termination(&self, instance_id: &str) -> Result<(), CloudError>;
    /// ModifyInstanceAttribute(BlockDeviceMappings: DeleteOnTermination=false) for these devices.
    async fn keep_volumes(&self, instance_id: &str, devices: &[String]) -> Result<(), CloudError>;
    /// CreateSnapshot with the tags applied at creation; returns the snapshot id.
    async fn snapshot_volume(&self, volume_id: &str, description: &str, tags: &Tags) -> Result<String, CloudError>;
    async fn publish(&self, topic_arn: &str, subject: &str, message: &str) -> Result<(), CloudError>;
    /// CreateNetworkAclEntry: deny all traffic, inbound and outbound, at rule
    /// [`CUT_RULE_NUMBER`] of the subnet's network ACL; done already counts as done.
    async fn cut_subnet(&self, subnet_id: &str) -> Result<(), CloudError>;
    /// DeleteNetworkAclEntry of those two entries; gone already counts as done.
    async fn restore_subnet(&self, subnet_id: &str) -> Result<(), CloudError>;
}

/// The function's configuration (its environment on Lambda).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainmentConfig {
    pub lab: String,
    pub topic_arn: String,
    /// Only for `two-step`.
    pub allow_all_group: Option<String>,
    pub isolation_group: String,
    /// Termination protection, volumes kept, snapshots; on unless `CIS_FORENSICS=off`.
    pub forensics: bool,
    pub steps: IsolationSteps,
}

impl ContainmentConfig {
    /// From the function's environment variables (`CIS_LAB`, `CIS_TOPIC_ARN`,
    /// `CIS_ISOLATION_SG`, and optionally `CIS_FORENSICS=on|off`,
    /// `CIS_ISOLATION=network-acl|two-step|one-step`; `CIS_ALLOW_ALL_SG` for two-step).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let need = |k: &str| get(k).filter(|v| !v.is_empty()).ok_or_else(|| format!("environment variable {k} is not set"));
        let forensics = match get("CIS_FORENSICS").as_deref() {
            None | Some("") | Some("on") => true,
            Some("off") => false,
            Some(other) => return Err(format!("CIS_FORENSICS={other}: expected on or off")),
        };
        let steps = match get("CIS_ISOLATION").as_deref() {
            None | Some("") => IsolationSteps::NetworkAcl,
            Some(s) => IsolationSteps::parse(s).ok_or_else(|| format!("CIS_ISOLATION={s}: expected network-acl, two-step or one-step"))?,
        };
        Ok(ContainmentConfig {
            lab: need("CIS_LAB")?,
            topic_arn: need("CIS_TOPIC_ARN")?,
            allow_all_group: if steps == IsolationSteps::TwoStep { Some(need("CIS_ALLOW_ALL_SG")?) } else { None },
            isolation_group: need("CIS_ISOLATION_SG")?,
            forensics,
            steps,
        })
    }
}

/// The EventBridge event the detector puts and the rule delivers, as Lambda receives it.
pub fn eventbridge_event(detection: &DetectionEvent, account: &str, region: &str) -> serde_json::Value {
    serde_json::json!({
        "version": "0",
        "id": format!("cis-{}-{}-{}", detection.lab, detection.instance_id, detection.window_start.millis()),
        "detail-type": DETECTION_DETAIL_TYPE,
        "source": DETECTION_SOURCE,
        "account": account,
        "time": detection.at.to_string(),
        "region": region,
        "resources": [],
        "detail": detection,
    })
}

/// The detection inside an EventBridge event, or why the event is not one: a
/// `cis.detector` detection, or the lab's egress alarm moving into ALARM.
pub fn parse_event(event: &serde_json::Value) -> Result<DetectionEvent, String> {
    let field = |k: &str| event.get(k).and_then(|v| v.as_str());
    if field("source") == Some(crate::formats::metric::ALARM_SOURCE) {
        return parse_alarm_event(event);
    }
    if field("source") != Some(DETECTION_SOURCE) {
        return Err(format!(
            "not a detection: source is {}, expected {DETECTION_SOURCE} or {}",
            field("source").map_or("missing".to_string(), |s| format!("'{s}'")),
            crate::formats::metric::ALARM_SOURCE
        ));
    }
    if field("detail-type") != Some(DETECTION_DETAIL_TYPE) {
        return Err(format!("not a detection: detail-type is not '{DETECTION_DETAIL_TYPE}'"));
    }
    let detail = event.get("detail").ok_or("the event has no detail")?;
    serde_json::from_value(detail.clone()).map_err(|e| format!("the detection in the event is malformed: {e}"))
}

/// A "CloudWatch Alarm State Change" into ALARM of a lab's egress alarm, as a detection:
/// the lab from the alarm's name (`cis-<lab>-egress-alarm`), the instance from the
/// metric's InstanceId dimension, the time of the state change, and as the window's start
/// the end of the latest breaching period: the stale check (window before the last
/// release) then refuses only an alarm whose every breaching period ended before it.
fn parse_alarm_event(event: &serde_json::Value) -> Result<DetectionEvent, String> {
    if event.get("detail-type").and_then(|v| v.as_str()) != Some(crate::formats::metric::ALARM_DETAIL_TYPE) {
        return Err(format!(
            "not a detection: an {} event whose detail-type is not '{}'",
            crate::formats::metric::ALARM_SOURCE,
            crate::formats::metric::ALARM_DETAIL_TYPE
        ));
    }
    let detail = event.get("detail").ok_or("the alarm event has no detail")?;
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let name = text(&detail["alarmName"]).ok_or("the alarm event names no alarm (detail.alarmName)")?;
    let state = text(&detail["state"]["value"]).ok_or("the alarm event has no state (detail.state.value)")?;
    if state != "ALARM" {
        return Err(format!("alarm {name} moved to {state}, not ALARM: nothing to contain"));
    }
    // The lab's name must be one `cis up` accepts: `cis--egress-alarm` names no lab.
    let lab = name
        .strip_prefix("cis-")
        .and_then(|n| n.strip_suffix(&format!("-{}", crate::model::lab::Role::EgressAlarm.name())))
        .filter(|l| l.parse::<crate::model::lab::LabName>().is_ok())
        .ok_or_else(|| format!("alarm {name} is not a lab's egress alarm (cis-<lab>-{})", crate::model::lab::Role::EgressAlarm.name()))?;
    let instance_id = detail["configuration"]["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|m| text(&m["metricStat"]["metric"]["dimensions"][crate::formats::metric::INSTANCE_DIMENSION]))
        .ok_or_else(|| format!("alarm {name}: its metric has no {} dimension", crate::formats::metric::INSTANCE_DIMENSION))?;
    let at = text(&detail["state"]["timestamp"])
        .and_then(|t| Timestamp::parse_rfc3339(&t))
        .ok_or_else(|| format!("alarm {name}: detail.state.timestamp is missing or not a time"))?;
    let reason_data: serde_json::Value =
        text(&detail["state"]["reasonData"]).and_then(|r| serde_json::from_str(&r).ok()).unwrap_or_default();
    // Hostile input must not overflow: a period is at most a day.
    let period_s = reason_data["period"].as_i64().unwrap_or(60).clamp(1, 86_400);
    // The latest datapoint evaluated: the minute (period) whose flows tripped the alarm.
    let window_start = reason_data["evaluatedDatapoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| text(&d["timestamp"]).and_then(|t| Timestamp::parse_rfc3339(&t)))
        .max()
        .unwrap_or(Timestamp(at.0.saturating_sub(period_s * 1000)));
    Ok(DetectionEvent {
        at,
        lab: lab.to_string(),
        instance_id,
        detector: Detector::MetricFilter,
        window_start,
        window_s: period_s as u32,
        reason: text(&detail["state"]["reason"]).unwrap_or_default(),
        evidence: None,
    })
}

/// Handles one EventBridge delivery. A malformed event is refused, not failed: Lambda
/// would retry a failure, and the same bytes would fail again.
pub async fn handle(api: &dyn ContainmentApi, config: &ContainmentConfig, event: &serde_json::Value) -> ContainmentOutcome {
    match parse_event(event) {
        Ok(detection) => contain(api, config, &detection).await,
        Err(why) => {
            let now = api.now();
            ContainmentOutcome {
                invoked_at: now,
                finished_at: now,
                detected_at: None,
                instance_id: String::new(),
                outcome: Outcome::Refused,
                isolated_at: None,
                snapshots: vec![],
                detail: why,
            }
        }
    }
}

/// Handles one detection.
pub async fn contain(api: &dyn ContainmentApi, config: &ContainmentConfig, event: &DetectionEvent) -> ContainmentOutcome {
    let invoked_at = api.now();
    let outcome = |kind: Outcome, isolated_at: Option<Timestamp>, snapshots: Vec<String>, detail: String| ContainmentOutcome {
        invoked_at,
        finished_at: api.now(),
        detected_at: Some(event.at),
        instance_id: event.instance_id.clone(),
        outcome: kind,
        isolated_at,
        snapshots,
        detail,
    };

    if event.lab != config.lab {
        return outcome(
            Outcome::Refused,
            None,
            vec![],
            format!("the detection is for lab '{}'; this function contains only lab '{}'", event.lab, config.lab),
        );
    }
    let instance = match api.describe_instance(&event.instance_id).await {
        Ok(i) => i,
        Err(e) => return outcome(Outcome::Failed, None, vec![], format!("could not describe {}: {e}", event.instance_id)),
    };
    if instance.tags.get(TAG_LAB) != Some(&config.lab) {
        return outcome(
            Outcome::Refused,
            None,
            vec![],
            format!("{} does not carry {TAG_LAB}={}: containment acts only inside its own lab", instance.id, config.lab),
        );
    }
    if let Some(released) = instance.released_at() {
        // A model's window holds the records that began in it; an alarm's datapoint sums a
        // whole period, so one that ends after the release may hold new traffic.
        let mark = match event.detector {
            Detector::MetricFilter => event.window_end(),
            _ => event.window_start,
        };
        if mark < released {
            return outcome(Outcome::Stale,
                None,
                vec![],
                format!(
                    "the detected window began at {} before the instance was released at {released}: flow records of its isolated period, not a new attack",
                    event.window_start
                ),
            );
        }
    }
    let isolated = |i: &InterfaceView| i.groups == [config.isolation_group.clone()];
    let cut_if_needed = config.steps != IsolationSteps::NetworkAcl || instance.subnet_cut;
    if !instance.interfaces.is_empty() && instance.interfaces.iter().all(isolated) && cut_if_needed {
        return outcome(Outcome::AlreadyIsolated, None, vec![], "duplicate delivery: the instance is already isolated".into());
    }

    // Keep the groups from before any earlier, interrupted attempt.
    let original = instance.tags.get(TAG_ORIGINAL_GROUPS).cloned().unwrap_or_else(|| encode_groups(&instance.interfaces));
    let originals = decode_groups(&original);
    if let Err(e) = api.tag_instance(&instance.id, &Tags::from([(TAG_ORIGINAL_GROUPS.to_string(), original.clone())])).await {
        return outcome(Outcome::Failed, None, vec![], format!("could not record the original groups: {e}"));
    }

    let (snapshots, forensic_problems) = if config.forensics { preserve(api, config, &instance, event).await } else { (vec![], vec![]) };

    let steps: Vec<&String> = match (config.steps, &config.allow_all_group) {
        (IsolationSteps::TwoStep, Some(allow_all)) => vec![allow_all, &config.isolation_group],
        _ => vec![&config.isolation_group],
    };
    let swap = async {
        if config.steps == IsolationSteps::NetworkAcl {
            api.cut_subnet(&instance.subnet_id).await?;
        }
        for step in &steps {
            for i in &instance.interfaces {
                api.set_interface_groups(&i.id, std::slice::from_ref(*step)).await?;
            }
        }
        Ok::<_, CloudError>(api.now())
    };
    let isolated_at = match swap.await {
        Ok(t) => t,
        Err(e) => {
            let mut restore_errors = Vec::new();
            for (eni, groups) in &originals {
                if let Err(re) = api.set_interface_groups(eni, groups).await {
                    restore_errors.push(format!("{eni}: {re}"));
                }
            }
            if config.steps == IsolationSteps::NetworkAcl {
                if let Err(re) = api.restore_subnet(&instance.subnet_id).await {
                    restore_errors.push(format!("{}'s network ACL: {re}", instance.subnet_id));
                }
            }
            let detail = if restore_errors.is_empty() {
                format!("isolation failed ({e}); the original groups were restored")
            } else {
                format!("isolation failed ({e}); restoring failed too: {}", restore_errors.join(", "))
            };
            let _ = api.publish(&config.topic_arn, &format!("cis: containment of {} FAILED", instance.id), &detail).await;
            return outcome(Outcome::Failed, None, snapshots, detail);
        }
    };
    let _ = api.tag_instance(&instance.id, &Tags::from([(TAG_ISOLATED_AT.to_string(), isolated_at.to_string())])).await;

    let message = serde_json::json!({
        "lab": config.lab,
        "instance": instance.id,
        "detected_at": event.at.to_string(),
        "containment_invoked_at": invoked_at.to_string(),
        "isolated_at": isolated_at.to_string(),
        "isolation": config.steps.name(),
        "detector": event.detector,
        "evidence": event.reason,
        "original_groups": original,
        "forensic_snapshots": snapshots,
        "forensic_problems": forensic_problems,
    });
    let subject = format!("cis: {} isolated in lab {}", instance.id, config.lab);
    let mut detail = format!("isolated {} interface(s) ({})", instance.interfaces.len(), config.steps.name());
    if !snapshots.is_empty() {
        detail.push_str(&format!("; {} forensic snapshot(s)", snapshots.len()));
    }
    if !forensic_problems.is_empty() {
        detail.push_str(&format!("; forensics incomplete: {}", forensic_problems.join("; ")));
    }
    match api.publish(&config.topic_arn, &subject, &message.to_string()).await {
        Ok(()) => detail.push_str("; notified"),
        Err(e) => detail.push_str(&format!("; notification failed: {e}")),
    }
    outcome(Outcome::Isolated, Some(isolated_at), snapshots, detail)
}

/// Forensic preservation: the snapshots taken (or taken by an earlier delivery) and what
/// went wrong. Each step is idempotent: protection and DeleteOnTermination are states,
/// and the snapshots are recorded on the instance.
async fn preserve(
    api: &dyn ContainmentApi,
    config: &ContainmentConfig,
    instance: &InstanceView,
    event: &DetectionEvent,
) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    if !instance.termination_protected {
        if let Err(e) = api.protect_from_termination(&instance.id).await {
            problems.push(format!("termination protection: {e}"));
        }
    }
    let devices: Vec<String> = instance.volumes.iter().filter(|v| v.delete_on_termination).map(|v| v.device.clone()).collect();
    if !devices.is_empty() {
        if let Err(e) = api.keep_volumes(&instance.id, &devices).await {
            problems.push(format!("keeping volumes: {e}"));
        }
    }
    if let Some(taken) = instance.tags.get(TAG_SNAPSHOTS) {
        return (taken.split('+').filter(|s| !s.is_empty()).map(String::from).collect(), problems);
    }
    let mut snapshots = Vec::new();
    for v in &instance.volumes {
        let tags = Tags::from([
            (TAG_LAB.to_string(), config.lab.clone()),
            (crate::model::lab::TAG_MANAGED.to_string(), "true".to_string()),
            (TAG_FORENSICS_OF.to_string(), instance.id.clone()),
        ]);
        let description = format!("cis forensics: {} {} at detection {}", instance.id, v.device, event.at);
        match api.snapshot_volume(&v.id, &description, &tags).await {
            Ok(id) => snapshots.push(id),
            Err(e) => problems.push(format!("snapshot of {}: {e}", v.id)),
        }
    }
    if !snapshots.is_empty() {
        if let Err(e) = api.tag_instance(&instance.id, &Tags::from([(TAG_SNAPSHOTS.to_string(), snapshots.join("+"))])).await {
            problems.push(format!("recording the snapshots: {e}"));
        }
    }
    (snapshots, problems)
}

/// Undoes an isolation: every interface back to the groups recorded before it. What
/// `cis release` runs; forensic snapshots stay until `cis down`.
pub async fn release(
    api: &dyn ContainmentApi,
    config: &ContainmentConfig,
    instance_id: &str,
) -> Result<Vec<(String, Vec<String>)>, CloudError> {
    let instance = api.describe_instance(instance_id).await?;
    if instance.tags.get(TAG_LAB) != Some(&config.lab) {
        return Err(CloudError::Invalid(format!("{instance_id} does not carry {TAG_LAB}={}: not this lab's instance", config.lab)));
    }
    let originals = instance.tags.get(TAG_ORIGINAL_GROUPS).map(|o| decode_groups(o)).unwrap_or_default();
    // Marked first, and even when nothing was isolated: detections of windows that began
    // before now (a stopped run's late records, the isolated period's rejected flows) are
    // stale, so they cannot isolate the target again. Marked after the restore, a
    // containment running meanwhile saw a target no longer isolated and not yet marked,
    // and isolated it again (idle-server seed 56 of the 100-seed bench: `attack --all` stopped
    // on an isolated target).
    api.tag_instance(instance_id, &Tags::from([(TAG_RELEASED_AT.to_string(), api.now().millis().to_string())])).await?;
    for (eni, groups) in &originals {
        api.set_interface_groups(eni, groups).await?;
    }
    // Groups first: lifting the cut while the isolation group is not yet in place would
    // let the attack's connections through again for a moment.
    if instance.subnet_cut {
        api.restore_subnet(&instance.subnet_id).await?;
    }
    Ok(originals)
}

/// `eni-a=sg-1+sg-2;eni-b=sg-3`: fits an EC2 tag value (256 characters) for a few ENIs.
pub fn encode_groups(interfaces: &[InterfaceView]) -> String {
    interfaces.iter().map(|i| format!("{}={}", i.id, i.groups.join("+"))).collect::<Vec<_>>().join(";")
}

pub fn decode_groups(s: &str) -> Vec<(String, Vec<String>)> {
    s.split(';')
        .filter_map(|part| part.split_once('='))
        .map(|(eni, groups)| (eni.to_string(), groups.split('+').filter(|g| !g.is_empty()).map(String::from).collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    //! Driven by the JSON fixtures in `lambda/fixtures/`: the event as EventBridge
    //! delivers it to the Lambda, and instances as DescribeInstances shows them.
    use super::*;
    use std::sync::Mutex;

    const EVENT: &str = include_str!("../../lambda/fixtures/detection-event.json");
    const OTHER_SOURCE: &str = include_str!("../../lambda/fixtures/other-source-event.json");
    const IN_LAB: &str = include_str!("../../lambda/fixtures/instance-in-lab.json");
    const FOREIGN: &str = include_str!("../../lambda/fixtures/instance-foreign.json");
    const OTHER_LAB: &str = include_str!("../../lambda/fixtures/instance-other-lab.json");

    /// EC2 and SNS as a list of calls on one instance; fails the n-th interface change,
    /// or every call of one name, when asked.
    struct Recorder {
        instance: Mutex<InstanceView>,
        calls: Mutex<Vec<String>>,
        fail_set_call: Option<usize>,
        fail_call: Option<&'static str>,
        next_snapshot: Mutex<u32>,
    }

    impl Recorder {
        fn new(instance: &str) -> Recorder {
            Recorder {
                instance: Mutex::new(serde_json::from_str(instance).unwrap()),
                calls: Mutex::new(vec![]),
                fail_set_call: None,
                fail_call: None,
                next_snapshot: Mutex::new(1),
            }
        }
        fn call(&self, name: &'static str, detail: String) -> Result<(), CloudError> {
            self.calls.lock().unwrap().push(format!("{name} {detail}").trim_end().to_string());
            if self.fail_call == Some(name) {
                return Err(CloudError::Unavailable(format!("{name} injected")));
            }
            Ok(())
        }
        fn calls(&self, prefix: &str) -> Vec<String> {
            self.calls.lock().unwrap().iter().filter(|c| c.starts_with(prefix)).cloned().collect()
        }
        fn all(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl ContainmentApi for Recorder {
        fn now(&self) -> Timestamp {
            Timestamp(1_767_226_040_000 + self.calls.lock().unwrap().len() as i64 * 100)
        }
        async fn describe_instance(&self, id: &str) -> Result<InstanceView, CloudError> {
            self.call("describe", id.into())?;
            Ok(self.instance.lock().unwrap().clone())
        }
        async fn set_interface_groups(&self, eni: &str, groups: &[String]) -> Result<(), CloudError> {
            let n = self.calls("set").len();
            self.call("set", format!("{eni} {}", groups.join(",")))?;
            if self.fail_set_call == Some(n) {
                return Err(CloudError::Unavailable("injected".into()));
            }
            let mut inst = self.instance.lock().unwrap();
            inst.interfaces.iter_mut().find(|i| i.id == eni).unwrap().groups = groups.to_vec();
            Ok(())
        }
        async fn tag_instance(&self, _: &str, tags: &Tags) -> Result<(), CloudError> {
            self.call("tag", tags.keys().cloned().collect::<Vec<_>>().join(","))?;
            self.instance.lock().unwrap().tags.extend(tags.clone());
            Ok(())
        }
        async fn protect_from_termination(&self, _: &str) -> Result<(), CloudError> {
            self.call("protect", String::new())?;
            self.instance.lock().unwrap().termination_protected = true;
            Ok(())
        }
        async fn keep_volumes(&self, _: &str, devices: &[String]) -> Result<(), CloudError> {
            self.call("keep", devices.join(","))?;
            for v in self.instance.lock().unwrap().volumes.iter_mut().filter(|v| devices.contains(&v.device)) {
                v.delete_on_termination = false;
            }
            Ok(())
        }
        async fn snapshot_volume(&self, volume: &str, _: &str, tags: &Tags) -> Result<String, CloudError> {
            self.call("snapshot", format!("{volume} {}", tags[TAG_FORENSICS_OF]))?;
            let mut n = self.next_snapshot.lock().unwrap();
            *n += 1;
            Ok(format!("snap-{}", *n - 1))
        }
        async fn publish(&self, _: &str, subject: &str, message: &str) -> Result<(), CloudError> {
            self.call("publish", format!("{subject} {message}"))
        }
        async fn cut_subnet(&self, subnet: &str) -> Result<(), CloudError> {
            self.call("cut", subnet.into())?;
            self.instance.lock().unwrap().subnet_cut = true;
            Ok(())
        }
        async fn restore_subnet(&self, subnet: &str) -> Result<(), CloudError> {
            self.call("uncut", subnet.into())?;
            self.instance.lock().unwrap().subnet_cut = false;
            Ok(())
        }
    }

    fn config() -> ContainmentConfig {
        ContainmentConfig::from_env(|k| {
            Some(
                match k {
                    "CIS_LAB" => "lab",
                    "CIS_TOPIC_ARN" => "arn:aws:sns:us-east-1:123456789012:cis-lab-alerts",
                    "CIS_ALLOW_ALL_SG" => "sg-all",
                    "CIS_ISOLATION_SG" => "sg-iso",
                    "CIS_ISOLATION" => "two-step",
                    _ => return None,
                }
                .to_string(),
            )
        })
        .unwrap()
    }

    fn event() -> serde_json::Value {
        serde_json::from_str(EVENT).unwrap()
    }

    fn network_acl_config() -> ContainmentConfig {
        ContainmentConfig { steps: IsolationSteps::NetworkAcl, allow_all_group: None, ..config() }
    }

    #[tokio::test]
    async fn the_network_acl_cut_comes_before_the_isolation_group_and_is_lifted_on_failure_and_release() {
        let mut instance: InstanceView = serde_json::from_str(IN_LAB).unwrap();
        instance.subnet_id = "subnet-0lab".into();
        let text = serde_json::to_string(&instance).unwrap();

        let r = Recorder::new(&text);
        let out = handle(&r, &network_acl_config(), &event()).await;
        assert_eq!(out.outcome, Outcome::Isolated, "{}", out.detail);
        let all = r.all();
        let cut = all.iter().position(|c| c == "cut subnet-0lab").unwrap_or_else(|| panic!("no cut: {all:?}"));
        let first_set = all.iter().position(|c| c.starts_with("set")).unwrap();
        assert!(cut < first_set, "the cut comes first: {all:?}");
        assert_eq!(r.calls("set"), ["set eni-0aa sg-iso", "set eni-0bb sg-iso", "set eni-0cc sg-iso"], "no allow-all group");
        // A duplicate delivery finds it cut and isolated: nothing more.
        let again = handle(&r, &network_acl_config(), &event()).await;
        assert_eq!(again.outcome, Outcome::AlreadyIsolated);
        // Isolated groups without the cut (an interrupted attempt) are not enough.
        r.instance.lock().unwrap().subnet_cut = false;
        assert_eq!(handle(&r, &network_acl_config(), &event()).await.outcome, Outcome::Isolated);
        // release marks the target released, puts the groups back, then lifts the cut.
        let before = r.all().len();
        release(&r, &network_acl_config(), "i-0a1b2c3d4e5f60718").await.unwrap();
        let all = r.all();
        let marked = all.iter().rposition(|c| c == "tag cis:released-at").unwrap();
        let last_set = all.iter().rposition(|c| c.starts_with("set")).unwrap();
        assert!(marked >= before && marked < last_set && all.last().unwrap() == "uncut subnet-0lab", "{all:?}");
        assert!(!r.instance.lock().unwrap().subnet_cut);

        // A group change that fails: the groups come back and the cut is lifted.
        let mut failing = Recorder::new(&text);
        failing.fail_set_call = Some(1);
        let out = handle(&failing, &network_acl_config(), &event()).await;
        assert_eq!(out.outcome, Outcome::Failed, "{}", out.detail);
        assert!(failing.all().contains(&"uncut subnet-0lab".to_string()), "{:?}", failing.all());
        assert!(!failing.instance.lock().unwrap().subnet_cut);
    }

    #[tokio::test]
    async fn forensics_then_the_two_step_swap_in_order_on_every_interface_then_one_message() {
        let r = Recorder::new(IN_LAB);
        let out = handle(&r, &config(), &event()).await;
        assert_eq!(out.outcome, Outcome::Isolated, "{}", out.detail);
        assert_eq!(
            r.calls("set"),
            [
                "set eni-0aa sg-all",
                "set eni-0bb sg-all",
                "set eni-0cc sg-all",
                "set eni-0aa sg-iso",
                "set eni-0bb sg-iso",
                "set eni-0cc sg-iso"
            ]
        );
        // Forensics come before the first group change; the notification last.
        let all = r.all();
        let first_set = all.iter().position(|c| c.starts_with("set")).unwrap();
        for step in ["protect", "keep /dev/xvda", "snapshot vol-0root i-0a1b2c3d4e5f60718", "snapshot vol-0data"] {
            let at = all.iter().position(|c| c.starts_with(step)).unwrap_or_else(|| panic!("no {step} in {all:?}"));
            assert!(at < first_set, "{step} after the swap began: {all:?}");
        }
        assert_eq!(r.calls("keep"), ["keep /dev/xvda"], "only volumes that would be deleted are changed");
        assert!(all.last().unwrap().starts_with("publish cis: i-0a1b2c3d4e5f60718 isolated"));
        assert_eq!(r.calls("publish").len(), 1);

        let inst = r.instance.lock().unwrap().clone();
        assert_eq!(inst.tags[TAG_ORIGINAL_GROUPS], "eni-0aa=sg-target;eni-0bb=sg-target+sg-extra;eni-0cc=sg-extra");
        assert_eq!(inst.tags[TAG_SNAPSHOTS], "snap-1+snap-2");
        assert!(inst.termination_protected);
        assert!(inst.volumes.iter().all(|v| !v.delete_on_termination));

        // The result carries the report's timestamps, and the message the timeline.
        assert_eq!(out.detected_at, Some(Timestamp(1_767_226_032_000)));
        let isolated_at = out.isolated_at.unwrap();
        assert!(out.invoked_at < isolated_at && isolated_at <= out.finished_at);
        assert_eq!(out.snapshots, ["snap-1", "snap-2"]);
        let message: serde_json::Value =
            serde_json::from_str(r.calls("publish")[0].split_once(" {").map(|(_, m)| format!("{{{m}")).unwrap().as_str()).unwrap();
        assert_eq!(message["detected_at"], Timestamp(1_767_226_032_000).to_string());
        assert_eq!(message["isolated_at"], isolated_at.to_string());
        assert_eq!(message["instance"], "i-0a1b2c3d4e5f60718");
        assert!(message["evidence"].as_str().unwrap().contains("bytes_out"));
    }

    #[tokio::test]
    async fn a_duplicate_delivery_is_a_no_op() {
        let r = Recorder::new(IN_LAB);
        assert_eq!(handle(&r, &config(), &event()).await.outcome, Outcome::Isolated);
        let before = r.all().len();
        let again = handle(&r, &config(), &event()).await;
        assert_eq!(again.outcome, Outcome::AlreadyIsolated);
        assert_eq!(r.all()[before..], ["describe i-0a1b2c3d4e5f60718"], "a duplicate only looks");
    }

    #[tokio::test]
    async fn after_release_a_detection_of_the_isolated_period_is_stale_and_a_new_one_isolates() {
        let r = Recorder::new(IN_LAB);
        assert_eq!(handle(&r, &config(), &event()).await.outcome, Outcome::Isolated);
        release(&r, &config(), "i-0a1b2c3d4e5f60718").await.unwrap();
        let released = r.instance.lock().unwrap().tags[TAG_RELEASED_AT].parse::<i64>().unwrap();
        // A window that began before the release: its rejected flows are the isolation's.
        let mut late: DetectionEvent = parse_event(&event()).unwrap();
        late.window_start = Timestamp(released - 1);
        let before = r.all().len();
        let stale = contain(&r, &config(), &late).await;
        assert_eq!(stale.outcome, Outcome::Stale, "{stale:?}");
        assert_eq!(r.all()[before..], ["describe i-0a1b2c3d4e5f60718"], "a stale detection only looks");
        late.window_start = Timestamp(released + 60_000);
        assert_eq!(contain(&r, &config(), &late).await.outcome, Outcome::Isolated);
    }

    #[tokio::test]
    async fn an_instance_outside_the_lab_is_refused_untouched() {
        for instance in [FOREIGN, OTHER_LAB] {
            let r = Recorder::new(instance);
            let out = handle(&r, &config(), &event()).await;
            assert_eq!(out.outcome, Outcome::Refused);
            assert!(out.detail.contains("cis:lab=lab"), "{}", out.detail);
            assert_eq!(r.all(), ["describe i-0a1b2c3d4e5f60718"], "nothing but the look");
        }
    }

    #[tokio::test]
    async fn events_that_are_not_this_labs_detections_are_refused_without_a_call() {
        let mut for_other_lab = event();
        for_other_lab["detail"]["lab"] = "trainee-07".into();
        let mut malformed = event();
        malformed["detail"]["instance_id"] = 7.into();
        for (e, why) in [
            (serde_json::from_str(OTHER_SOURCE).unwrap(), "source is 'aws.ec2'"),
            (for_other_lab, "lab 'trainee-07'"),
            (malformed, "malformed"),
            (serde_json::json!({"hello": "world"}), "source is missing"),
        ] {
            let r = Recorder::new(IN_LAB);
            let out = handle(&r, &config(), &e).await;
            assert_eq!(out.outcome, Outcome::Refused);
            assert!(out.detail.contains(why), "{} lacks {why}", out.detail);
            assert!(r.all().is_empty(), "{:?}", r.all());
        }
    }

    fn alarm_event(name: &str, state: crate::formats::metric::AlarmState, instance: &str) -> serde_json::Value {
        let metric = crate::formats::metric::MetricKey {
            namespace: crate::formats::metric::EGRESS_NAMESPACE.into(),
            metric_name: crate::formats::metric::EGRESS_METRIC.into(),
            dimensions: [(crate::formats::metric::INSTANCE_DIMENSION.to_string(), instance.to_string())].into(),
        };
        let rule = crate::formats::metric::AlarmRule { period_s: 60, evaluation_periods: 16, datapoints_to_alarm: 1, threshold: 100.0 };
        let breaching = vec![(Timestamp(1_767_225_600_000), 5000.0)];
        let evaluation = crate::formats::metric::Evaluation { state, datapoints: breaching.clone(), breaching };
        crate::formats::metric::state_change_event(&crate::formats::metric::StateChange {
            alarm_name: name,
            alarm_arn: "arn:aws:cloudwatch:us-east-1:1:alarm:x",
            account: "1",
            region: "us-east-1",
            metric: &metric,
            rule: &rule,
            previous: crate::formats::metric::AlarmState::Ok,
            evaluation: &evaluation,
            at: Timestamp(1_767_226_020_000),
        })
    }

    #[tokio::test]
    async fn the_labs_egress_alarm_going_into_alarm_isolates_and_anything_else_from_cloudwatch_is_refused() {
        let lab = config().lab;
        let name = format!("cis-{lab}-egress-alarm");
        let d = parse_event(&alarm_event(&name, crate::formats::metric::AlarmState::Alarm, IN_LAB)).unwrap();
        assert_eq!((d.lab.as_str(), d.instance_id.as_str(), d.detector), (lab.as_str(), IN_LAB, Detector::MetricFilter));
        assert_eq!(d.at, Timestamp(1_767_226_020_000));
        assert_eq!((d.window_start, d.window_s), (Timestamp(1_767_225_600_000), 60), "the latest breaching minute");
        assert_eq!(d.window_end(), Timestamp(1_767_225_660_000));
        let r = Recorder::new(IN_LAB);
        assert_eq!(
            handle(&r, &config(), &alarm_event(&name, crate::formats::metric::AlarmState::Alarm, IN_LAB)).await.outcome,
            Outcome::Isolated
        );

        let mut no_dimension = alarm_event(&name, crate::formats::metric::AlarmState::Alarm, IN_LAB);
        no_dimension["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"] = serde_json::json!({});
        for (e, why) in [
            (alarm_event(&name, crate::formats::metric::AlarmState::Ok, IN_LAB), "moved to OK"),
            (alarm_event("someone-elses-alarm", crate::formats::metric::AlarmState::Alarm, IN_LAB), "not a lab's egress alarm"),
            (alarm_event("cis-trainee-07-egress-alarm", crate::formats::metric::AlarmState::Alarm, IN_LAB), "lab 'trainee-07'"),
            (no_dimension, "no InstanceId dimension"),
        ] {
            let r = Recorder::new(IN_LAB);
            let out = handle(&r, &config(), &e).await;
            assert_eq!(out.outcome, Outcome::Refused, "{why}");
            assert!(out.detail.contains(why), "{} lacks {why}", out.detail);
            assert!(r.all().is_empty(), "{:?}", r.all());
        }
    }

    #[tokio::test]
    async fn an_error_midway_puts_the_original_groups_back_and_says_so() {
        let mut r = Recorder::new(IN_LAB);
        r.fail_set_call = Some(4); // the second interface's isolation step
        let out = handle(&r, &config(), &event()).await;
        assert_eq!(out.outcome, Outcome::Failed);
        assert!(out.detail.contains("original groups were restored"), "{}", out.detail);
        let inst = r.instance.lock().unwrap().clone();
        let groups: Vec<Vec<String>> = inst.interfaces.iter().map(|i| i.groups.clone()).collect();
        assert_eq!(groups, [vec!["sg-target"], vec!["sg-target", "sg-extra"], vec!["sg-extra"]]);
        assert_eq!(r.calls("publish").len(), 1);
        assert!(r.calls("publish")[0].contains("FAILED"));
    }

    #[tokio::test]
    async fn a_retry_after_an_interrupted_attempt_keeps_the_first_original_groups() {
        // A first attempt died after moving eni-0aa to allow-all.
        let r = Recorder::new(IN_LAB);
        {
            let mut inst = r.instance.lock().unwrap();
            let original = encode_groups(&inst.interfaces);
            inst.tags.insert(TAG_ORIGINAL_GROUPS.into(), original);
            inst.interfaces[0].groups = vec!["sg-all".into()];
        }
        assert_eq!(handle(&r, &config(), &event()).await.outcome, Outcome::Isolated);
        let tags = r.instance.lock().unwrap().tags.clone();
        assert_eq!(tags[TAG_ORIGINAL_GROUPS], "eni-0aa=sg-target;eni-0bb=sg-target+sg-extra;eni-0cc=sg-extra");
        let restored = release(&r, &config(), "i-0a1b2c3d4e5f60718").await.unwrap();
        assert_eq!(restored.len(), 3);
        assert_eq!(r.instance.lock().unwrap().interfaces[0].groups, ["sg-target"]);
    }

    #[tokio::test]
    async fn a_forensic_step_that_fails_does_not_hold_back_isolation() {
        let mut r = Recorder::new(IN_LAB);
        r.fail_call = Some("snapshot");
        let out = handle(&r, &config(), &event()).await;
        assert_eq!(out.outcome, Outcome::Isolated);
        assert!(out.detail.contains("forensics incomplete: snapshot of vol-0root"), "{}", out.detail);
        assert!(out.snapshots.is_empty());
        assert_eq!(r.calls("set").len(), 6);
    }

    #[tokio::test]
    async fn forensics_off_and_the_one_step_swap_for_training() {
        let r = Recorder::new(IN_LAB);
        let config = ContainmentConfig { forensics: false, steps: IsolationSteps::OneStep, ..config() };
        assert_eq!(handle(&r, &config, &event()).await.outcome, Outcome::Isolated);
        assert_eq!(r.calls("set"), ["set eni-0aa sg-iso", "set eni-0bb sg-iso", "set eni-0cc sg-iso"]);
        assert!(r.calls("protect").is_empty() && r.calls("snapshot").is_empty() && r.calls("keep").is_empty());
    }

    #[test]
    fn configuration_errors_name_the_variable() {
        let e = ContainmentConfig::from_env(|_| None).unwrap_err();
        assert!(e.contains("CIS_LAB"), "{e}");
        let e = ContainmentConfig::from_env(|k| match k {
            "CIS_ISOLATION" => Some("three-step".into()),
            "CIS_FORENSICS" => None,
            _ => Some("x".into()),
        })
        .unwrap_err();
        assert!(e.contains("CIS_ISOLATION=three-step"), "{e}");
    }

    #[test]
    fn the_simulators_event_is_the_fixtures_shape() {
        let detection = parse_event(&event()).unwrap();
        let rebuilt = eventbridge_event(&detection, "123456789012", "us-east-1");
        assert_eq!(parse_event(&rebuilt).unwrap(), detection);
        let fixture = event();
        for key in ["version", "detail-type", "source", "account", "region", "resources"] {
            assert_eq!(rebuilt[key], fixture[key], "{key}");
        }
    }
}
