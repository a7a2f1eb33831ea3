//! What the pipeline's functions report, in the lab's language: a detection, a
//! containment's outcome, a notification, a transfer of attack traffic, and the log lines
//! that carry them from the functions' CloudWatch logs back to the orchestration.

use serde::{Deserialize, Serialize};

use crate::base::clock::Timestamp;
use crate::detect::anomaly::{Component, Reason};

/// One transfer of attack traffic as the cloud saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    pub at: Timestamp,
    pub bytes_out: u64,
    pub accepted: bool,
}

/// What decided a detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Detector {
    /// The model's isolation forest (records written before the model had parts say so
    /// in a sentence).
    #[serde(alias = "isolation-forest (per-window flow features, frozen baseline model)")]
    IsolationForest,
    /// The model's per-feature tail model.
    FeatureTails,
    /// The lab's egress alarm: a CloudWatch metric filter over the flow logs.
    MetricFilter,
}

impl Detector {
    pub fn name(self) -> &'static str {
        match self {
            // The model's parts go by the model's own names for them.
            Detector::IsolationForest => Component::IsolationForest.name(),
            Detector::FeatureTails => Component::FeatureTails.name(),
            Detector::MetricFilter => "metric-filter",
        }
    }

    /// Whether the lab's anomaly model decided (not a rule).
    pub fn is_model(self) -> bool {
        !matches!(self, Detector::MetricFilter)
    }
}

impl From<Component> for Detector {
    fn from(c: Component) -> Detector {
        match c {
            Component::IsolationForest => Detector::IsolationForest,
            Component::FeatureTails => Detector::FeatureTails,
        }
    }
}

impl std::fmt::Display for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A detection the pipeline's detector emitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetectionEvent {
    pub at: Timestamp,
    pub lab: String,
    pub instance_id: String,
    pub detector: Detector,
    /// The flow-log window the detection is about: `window_s` seconds from here.
    pub window_start: Timestamp,
    #[serde(default = "default_window_s")]
    pub window_s: u32,
    pub reason: String,
    /// The feature that weighed most, its value against the baseline (none for a rule).
    #[serde(default)]
    pub evidence: Option<Reason>,
}

fn default_window_s() -> u32 {
    60
}

impl DetectionEvent {
    /// When the detection's window ends.
    pub fn window_end(&self) -> Timestamp {
        Timestamp(self.window_start.0.saturating_add(i64::from(self.window_s) * 1000))
    }

    /// Whether the detection's window holds the instant `at`.
    pub fn window_holds(&self, at: Timestamp) -> bool {
        let s = at.unix_seconds();
        let start = self.window_start.unix_seconds();
        s >= start && s < start + i64::from(self.window_s)
    }
}

/// What the containment function reported for one invocation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainmentOutcome {
    pub invoked_at: Timestamp,
    pub finished_at: Timestamp,
    /// The detection's time, as the event carried it.
    #[serde(default)]
    pub detected_at: Option<Timestamp>,
    pub instance_id: String,
    pub outcome: Outcome,
    /// When the instance's last network interface reached the isolation group.
    pub isolated_at: Option<Timestamp>,
    /// Forensic snapshots of the instance's volumes.
    #[serde(default)]
    pub snapshots: Vec<String>,
    pub detail: String,
}

/// How one containment invocation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The instance's interfaces reached the isolation group.
    Isolated,
    /// A duplicate delivery: the instance was isolated already.
    AlreadyIsolated,
    /// The detected window began before the instance's last release: records of its
    /// isolated period, not a new attack.
    Stale,
    /// Not this function's to contain (another lab, a malformed event): never retried.
    Refused,
    /// Containment tried and failed; Lambda retries it.
    Failed,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Isolated => "isolated",
            Outcome::AlreadyIsolated => "already-isolated",
            Outcome::Stale => "stale",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How the functions report what they did, one line each in their CloudWatch logs: the
/// marker, a space, the JSON of a [`DetectionEvent`] or a [`ContainmentOutcome`]. The
/// AWS backend reads the pipeline's own timeline back from these lines.
pub const DETECTION_LOG_MARKER: &str = "CIS_DETECTION";
pub const CONTAINMENT_LOG_MARKER: &str = "CIS_CONTAINMENT";

/// One log line: `MARKER {json}`.
pub fn log_line<T: Serialize>(marker: &str, value: &T) -> String {
    format!("{marker} {}", serde_json::to_string(value).expect("pipeline records serialize"))
}

/// The value on a line [`log_line`] wrote with `marker`, wherever the line's prefix (a
/// runtime's timestamp and request id) puts it; None for any other line.
pub fn parse_log_line<T: serde::de::DeserializeOwned>(marker: &str, line: &str) -> Option<T> {
    let at = line.find(marker)?;
    serde_json::from_str(line[at + marker.len()..].trim()).ok()
}

/// A message published to the lab's topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub at: Timestamp,
    pub subject: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_record_survives_the_log_line_and_its_runtime_prefix() {
        let d = DetectionEvent {
            at: Timestamp(5),
            lab: "l".into(),
            instance_id: "i-1".into(),
            detector: Detector::FeatureTails,
            window_start: Timestamp(1),
            window_s: 60,
            reason: "r".into(),
            evidence: None,
        };
        let line = format!("2026-11-23T15:00:00Z\tREQ\t{}", log_line(DETECTION_LOG_MARKER, &d));
        assert_eq!(parse_log_line::<DetectionEvent>(DETECTION_LOG_MARKER, &line), Some(d));
        assert_eq!(parse_log_line::<DetectionEvent>(CONTAINMENT_LOG_MARKER, &line), None);
        assert_eq!(parse_log_line::<DetectionEvent>(DETECTION_LOG_MARKER, "CIS_DETECTION {broken"), None);
    }
}
