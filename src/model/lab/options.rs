//! What the operator chooses for a lab: its name and its options, checked once at the
//! command line's boundary.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A lab's name: lowercase letters, digits and hyphens, starting with a letter, short
/// enough that `cis-<lab>-<role>` fits every AWS name limit (IAM roles: 64 characters).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LabName(String);

impl LabName {
    pub const MAX_LEN: usize = 24;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for LabName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let valid = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && !s.ends_with('-')
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if valid {
            Ok(LabName(s.to_string()))
        } else {
            Err(format!("invalid lab name '{s}': use 1-{} lowercase letters, digits and hyphens, starting with a letter", Self::MAX_LEN))
        }
    }
}

impl TryFrom<String> for LabName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<LabName> for String {
    fn from(l: LabName) -> String {
        l.0
    }
}

impl fmt::Display for LabName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the anomaly model is scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DetectorMode {
    /// A SageMaker endpoint serves the anomaly model; the detector function calls it.
    Endpoint,
    /// The detector function scores in-process: no endpoint, a lab that costs cents.
    Lambda,
    /// No model: a CloudWatch metric filter sums the bytes the target sends out of the
    /// VPC and an alarm on it calls containment. What most teams start with.
    MetricFilter,
}

impl DetectorMode {
    pub fn name(self) -> &'static str {
        match self {
            DetectorMode::Endpoint => "endpoint",
            DetectorMode::Lambda => "lambda",
            DetectorMode::MetricFilter => "metric-filter",
        }
    }

    /// Whether a detector function reads the flow logs (the model's two modes).
    pub fn has_function(self) -> bool {
        self != DetectorMode::MetricFilter
    }
}

/// An IPv4 address block that SSH may come from: one host, never the world.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SshSource(String);

impl SshSource {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SshSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s.split_once('/').unwrap_or((s, "32"));
        let ip: std::net::Ipv4Addr =
            addr.parse().map_err(|_| format!("invalid --ssh-from '{s}': expected an IPv4 address such as 198.51.100.7/32"))?;
        if prefix != "32" {
            return Err(format!("invalid --ssh-from '{s}': SSH is opened to one host only; give your own address as a /32"));
        }
        if ip.is_unspecified() {
            return Err(format!("invalid --ssh-from '{s}': 0.0.0.0 would open SSH to the world"));
        }
        Ok(SshSource(format!("{ip}/32")))
    }
}

impl TryFrom<String> for SshSource {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<SshSource> for String {
    fn from(s: SshSource) -> String {
        s.0
    }
}

/// How interfaces reach the isolation group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum IsolationSteps {
    /// A deny-all entry in both directions of the lab subnet's network ACL, which cuts
    /// tracked connections at once (the lab owns its subnet: the target is all it holds),
    /// then the isolation group; the entries stay until `cis release`. No rule anywhere
    /// admits 0.0.0.0/0.
    #[default]
    NetworkAcl,
    /// Allow-all first, then isolation: AWS's runbook (AWSSupport-ContainEC2Instance);
    /// cuts tracked connections too, but needs a group that admits all traffic from
    /// 0.0.0.0/0, if only for an instant.
    TwoStep,
    /// Straight to the isolation group: tracked connections go on. For training only,
    /// to show why the recommendation exists.
    OneStep,
}

impl IsolationSteps {
    pub const ALL: [IsolationSteps; 3] = [IsolationSteps::NetworkAcl, IsolationSteps::TwoStep, IsolationSteps::OneStep];

    pub fn name(self) -> &'static str {
        match self {
            IsolationSteps::NetworkAcl => "network-acl",
            IsolationSteps::TwoStep => "two-step",
            IsolationSteps::OneStep => "one-step",
        }
    }

    pub fn parse(s: &str) -> Option<IsolationSteps> {
        IsolationSteps::ALL.into_iter().find(|i| i.name() == s)
    }
}

/// What the operator chose for this lab; recorded in the ledger so that a resumed `up`
/// and `down` rebuild exactly the same graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabOptions {
    pub region: String,
    pub detector: DetectorMode,
    pub instance_type: String,
    pub endpoint_instance_type: String,
    /// Flow-log aggregation window in seconds: 60 or 600.
    pub window_s: u32,
    pub ssh_from: Option<SshSource>,
    pub notify_email: Option<String>,
    #[serde(default)]
    pub isolation: IsolationSteps,
    #[serde(default = "forensics_on")]
    pub forensics: bool,
    /// The benign workload the target runs (a profile of `assets/workloads.toml`): on the
    /// simulator its traffic, and what the lab's model is trained on.
    /// Written as `baseline`, its name in ledgers of earlier versions.
    #[serde(rename = "baseline", default = "default_workload")]
    pub workload: String,
    /// The share of benign windows the model's threshold may let alert (its calibration
    /// target); the model's default when unset. A what-if knob (`cis sim sweep`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_fpr: Option<f64>,
    /// Foundation-Sec-8B-Instruct on its own SageMaker endpoint, for `cis triage` and
    /// `cis rca --analyser sagemaker` (`cis up --llm`): a GPU instance, the lab's most
    /// expensive part by far.
    #[serde(default)]
    pub llm: bool,
    /// The LLM endpoint's instance type when not [`LLM_INSTANCE_TYPE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_instance_type: Option<String>,
    /// The lab's time to live, in seconds from its creation (`cis up --ttl`): an
    /// EventBridge Scheduler schedule then invokes the lab's janitor function, which
    /// deletes everything tagged with the lab, even if the operator's machine is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
    /// How much of its own traffic the lab learns before `cis arm` arms it, in seconds
    /// (`cis up --warmup`; a day when unset). AWS labs only: a simulated lab is armed at
    /// `up`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_s: Option<u64>,
}

fn forensics_on() -> bool {
    true
}

pub fn default_workload() -> String {
    crate::model::scenario::DEFAULT_WORKLOAD.to_string()
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            region: "us-east-1".into(),
            detector: DetectorMode::Endpoint,
            instance_type: "t3.micro".into(),
            endpoint_instance_type: "ml.c5.large".into(),
            window_s: 60,
            ssh_from: None,
            notify_email: None,
            isolation: IsolationSteps::NetworkAcl,
            forensics: true,
            workload: default_workload(),
            target_fpr: None,
            llm: false,
            llm_instance_type: None,
            ttl_s: None,
            warmup_s: None,
        }
    }
}
