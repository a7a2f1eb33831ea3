//! What a lab's detector has learned, and what of the graph waits for it.
//!
//! A lab on AWS starts out learning: its flow log fills the lab's own group while the
//! detector has no model, so nothing alerts and nothing is isolated. `cis arm` trains on
//! that group and arms it. What depends on the model (the detector function's model, the
//! Random Cut Forest's training job, model and endpoint, the egress alarm and its
//! threshold) is left out of the graph until then, and rendered from what the lab
//! learned after. A simulated lab is armed at `up` with a model of its workload's
//! simulated baseline.

use serde::{Deserialize, Serialize};

use crate::base::clock::Timestamp;

/// What the lab's detector is trained on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "kebab-case")]
pub enum Arming {
    /// Armed at `up` with a model of the workload's simulated baseline capture: the
    /// simulator's labs, and AWS labs made before labs learned their own traffic.
    #[default]
    SimulatedBaseline,
    /// The lab's flow-log group fills; nothing is scored, alarmed or isolated.
    Learning { since: Timestamp },
    /// Trained on the lab's own flow logs.
    Armed(Trained),
}

/// What `cis arm` trained on and what it made of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trained {
    /// The first and last instant of the records trained on (their own start and end).
    pub from: Timestamp,
    pub to: Timestamp,
    /// Flow-log records read from the group, and the windows with traffic they made.
    pub records: u64,
    pub windows: usize,
    pub armed_at: Timestamp,
    /// The detector function's model in the lab's bucket (labs with a function).
    pub model_key: Option<String>,
    /// The Random Cut Forest's training rows in the lab's bucket (`--detector endpoint`).
    pub training_key: Option<String>,
    /// The egress alarm's threshold, bytes per minute (`--detector metric-filter`).
    pub egress_threshold: Option<f64>,
}

impl Arming {
    pub fn is_learning(&self) -> bool {
        matches!(self, Arming::Learning { .. })
    }

    /// One line for people: `cis status`, the report.
    pub fn describe(&self) -> String {
        match self {
            Arming::SimulatedBaseline => "armed (on the workload's simulated baseline)".into(),
            Arming::Learning { since } => format!("learning since {} (nothing is isolated until `cis arm`)", since),
            Arming::Armed(t) => format!(
                "armed at {} (trained on {} windows of its own flow logs, {} to {})",
                t.armed_at,
                t.windows,
                t.from,
                t.to
            ),
        }
    }
}

/// The roles that need a trained model, left out of a learning lab's graph.
pub const NEED_A_MODEL: [super::Role; 5] = [
    super::Role::TrainingJob,
    super::Role::AnomalyModel,
    super::Role::AnomalyEndpointConfig,
    super::Role::AnomalyEndpoint,
    super::Role::EgressAlarm,
];

/// The detector function's environment variable naming its model's key in the lab's
/// bucket; without it the function is learning.
pub const MODEL_KEY_ENV: &str = "CIS_MODEL_KEY";

/// Where `cis arm` puts the detector function's model in the lab's bucket (the training
/// job's output has `model/`).
pub const MODEL_PREFIX: &str = "detector-model/";

/// Where `cis arm` puts the Random Cut Forest's training rows in the lab's bucket: the
/// windows of the lab's own flow logs, one CSV row each.
pub const TRAINING_KEY: &str = "training/rows.csv";
