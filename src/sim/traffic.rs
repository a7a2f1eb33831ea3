//! The simulated data plane's state, persisted with the account: the events due, the
//! open connections, the flow-log windows being aggregated, the metrics the filters made,
//! what the pipeline did and each attack's progress. The world holds it; the data plane
//! changes it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::base::clock::Timestamp;
use crate::model::events::{ContainmentOutcome, DetectionEvent, Transfer};
use crate::model::scenario::Scenario;

/// Whose traffic a stream is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Source {
    /// The target's benign workload. Written `baseline`, as simulated accounts of earlier
    /// versions hold it.
    #[serde(rename = "baseline")]
    Workload { profile: String, stream: usize },
    Attack { run: String, stream: usize },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Event {
    InstanceRunning {
        instance: String,
    },
    InstanceTerminated {
        instance: String,
    },
    EndpointInService {
        endpoint: String,
    },
    EndpointGone {
        endpoint: String,
    },
    CaptureStart {
        flow_log: String,
    },
    WindowClose {
        flow_log: String,
    },
    Deliver {
        log_group: String,
        lines: Vec<String>,
        attack_runs: Vec<String>,
        /// The attack run each line's traffic belongs to, if any (what a labelled
        /// capture keeps); empty in accounts saved before labels.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        labels: Vec<Option<String>>,
    },
    InvokeDetector {
        function: String,
        lines: Vec<String>,
        /// Lambda's asynchronous retries of a failed invocation: 0 first, at most 2.
        #[serde(default)]
        attempt: u32,
    },
    /// What accounts saved before alarm events queued for a rule's target; new ones queue
    /// [`Event::DeliverEvent`]. Kept so such an account still runs.
    DeliverDetection {
        function: String,
        detection: DetectionEvent,
    },
    /// A schedule's time has come.
    ScheduleFires {
        schedule: String,
    },
    /// An EventBridge event delivered to a target function, as Lambda receives it.
    DeliverEvent {
        function: String,
        event: serde_json::Value,
        /// Lambda's asynchronous retries of a failed invocation: 0 first, at most 2.
        #[serde(default)]
        attempt: u32,
        /// EventBridge's retries of a failed delivery (a budget of its own: up to 185).
        #[serde(default)]
        delivery: u32,
    },
    /// A metric alarm's once-a-period evaluation.
    EvaluateAlarm {
        alarm: String,
    },
    OpenConnection {
        instance: String,
        source: Source,
        index: u32,
    },
    Chunk {
        conn: u64,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Conn {
    pub instance: String,
    pub eni: String,
    pub local: IpAddr,
    pub local_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
    pub protocol: u8,
    pub outbound: bool,
    pub established: bool,
    pub tracked: bool,
    pub attack: Option<String>,
    pub chunks_left: u32,
    pub out_per_chunk: u64,
    pub in_per_chunk: u64,
    pub gap_ms: i64,
}

/// One flow-log record being aggregated in the current window.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FlowAgg {
    pub eni: String,
    pub instance: String,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub srcport: u16,
    pub dstport: u16,
    pub protocol: u8,
    pub accept: bool,
    pub egress: bool,
    pub packets: u64,
    pub bytes: u64,
    pub first_s: i64,
    pub last_s: i64,
    pub tcp_flags: u16,
    pub attack: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Window {
    pub start: Option<Timestamp>,
    pub flows: Vec<FlowAgg>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Network {
    pub conns: std::collections::BTreeMap<u64, Conn>,
    pub next_conn: u64,
    /// Current window per flow log id.
    pub windows: std::collections::BTreeMap<String, Window>,
}

/// What metric filters added to one metric: per delivered batch and period, the sum and
/// when CloudWatch makes it visible to alarms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub period: Timestamp,
    pub value: f64,
    pub visible_at: Timestamp,
}

/// The account's custom metrics, keyed by [`metric_id`]; a day of history is kept.
pub type Metrics = std::collections::BTreeMap<String, Vec<Contribution>>;

/// A metric's key as text (JSON map keys are strings).
pub fn metric_id(k: &crate::formats::metric::MetricKey) -> String {
    let dims: Vec<String> = k.dimensions.iter().map(|(n, v)| format!("{n}={v}")).collect();
    format!("{}|{}|{}", k.namespace, k.metric_name, dims.join(","))
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimNotification {
    pub at: Timestamp,
    pub topic: String,
    pub subject: String,
    pub message: String,
}

/// What the pipeline did, for observation and reports.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PipelineLog {
    pub detections: Vec<DetectionEvent>,
    pub containments: Vec<ContainmentOutcome>,
    pub notifications: Vec<SimNotification>,
    /// Deliveries that failed silently, as AWS's do (a target without permission).
    pub failures: Vec<String>,
    /// What each janitor run did: its lab, when, and what it deleted or why it failed.
    #[serde(default)]
    pub janitor_runs: Vec<String>,
    /// The detector functions' memories across windows, by function and log stream (on
    /// AWS, objects in the lab's bucket).
    #[serde(default)]
    pub detector_memory: std::collections::BTreeMap<String, String>,
}

/// Where a detector function's memories start in [`PipelineLog::detector_memory`]: each
/// is `<function>/<log stream>`.
pub fn detector_memory_prefix(function: &str) -> String {
    format!("{function}/")
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttackState {
    pub run_id: String,
    pub lab: String,
    pub instance: String,
    pub scenario: Scenario,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub transfers: Vec<Transfer>,
    pub first_records_delivered_at: Option<Timestamp>,
    /// Streams still opening connections, and connections still open.
    pub streams_left: u32,
    pub open_conns: u32,
}
