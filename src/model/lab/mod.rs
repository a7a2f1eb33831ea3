//! The lab as a typed resource graph: what `cis up` creates, in which order, named and
//! tagged how, and what it costs.
//!
//! Every backend receives the same [`ResourceSpec`]s; a spec names the resources it
//! depends on by [`Role`], and the orchestration resolves those roles to the ids the cloud
//! returned before handing the spec over.

pub mod operator;
pub mod package;
pub mod pricing;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::base::error::Error;
pub use crate::formats::flowlog::LAB_LOG_FORMAT;

/// Tag keys every resource carries.
pub const TAG_LAB: &str = "cis:lab";
pub const TAG_MANAGED: &str = "cis:managed";
pub const TAG_RUN: &str = "cis:run";
pub const TAG_ROLE: &str = "cis:role";
/// Every tag the lab puts on a resource that says whose it is.
pub const LAB_TAG_KEYS: [&str; 4] = [TAG_LAB, TAG_MANAGED, TAG_RUN, TAG_ROLE];

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
    /// The benign workload the target runs (a profile of `assets/baselines.toml`): on the
    /// simulator its traffic, and what the lab's model is trained on.
    #[serde(default = "default_workload")]
    pub baseline: String,
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
}

fn forensics_on() -> bool {
    true
}

pub fn default_workload() -> String {
    crate::model::scenario::DEFAULT_BASELINE.to_string()
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
            baseline: default_workload(),
            target_fpr: None,
            llm: false,
            llm_instance_type: None,
            ttl_s: None,
        }
    }
}

/// The part each resource plays in the lab, from one table: each row is the variant (its
/// serde name is the variant in kebab-case, as the ledger has always written it), the name
/// used in resource names and tags, and the cloud's kind of resource.
macro_rules! roles {
    ($($variant:ident = $name:literal => $kind:ident,)*) => {
        /// The part each resource plays in the lab. The declaration order is the creation
        /// order used for display; actual creation follows the dependencies, concurrently.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum Role {
            $($variant,)*
        }

        impl Role {
            pub const ALL: [Role; [$($name),*].len()] = [$(Role::$variant),*];

            /// The kebab-case name used in resource names, tags and the ledger.
            pub fn name(self) -> &'static str {
                match self {
                    $(Role::$variant => $name,)*
                }
            }

            pub fn kind(self) -> ResourceKind {
                match self {
                    $(Role::$variant => ResourceKind::$kind,)*
                }
            }
        }
    };
}

roles! {
    // The janitor's role and policy come first: the sweep deletes in the reverse of this
    // order, and the janitor, which runs that sweep, needs them until its very end.
    JanitorRole = "janitor-role" => IamRole,
    JanitorPolicy = "janitor-policy" => IamRolePolicy,
    Vpc = "vpc" => Vpc,
    Subnet = "subnet" => Subnet,
    InternetGateway = "internet-gateway" => InternetGateway,
    RouteTable = "route-table" => RouteTable,
    TargetSecurityGroup = "target-sg" => SecurityGroup,
    AllowAllSecurityGroup = "allow-all-sg" => SecurityGroup,
    IsolationSecurityGroup = "isolation-sg" => SecurityGroup,
    InstanceRole = "instance-role" => IamRole,
    InstanceRolePolicy = "instance-role-policy" => IamRolePolicy,
    InstanceProfile = "instance-profile" => InstanceProfile,
    TargetInstance = "target" => Instance,
    LogGroup = "flow-logs" => LogGroup,
    FlowLogRole = "flow-log-role" => IamRole,
    FlowLogPolicy = "flow-log-policy" => IamRolePolicy,
    FlowLog = "flow-log" => FlowLog,
    ModelRole = "model-role" => IamRole,
    ModelData = "model-data" => S3Bucket,
    ModelPolicy = "model-policy" => IamRolePolicy,
    TrainingJob = "training-job" => SageMakerTrainingJob,
    AnomalyModel = "anomaly-model" => SageMakerModel,
    AnomalyEndpointConfig = "anomaly-endpoint-config" => SageMakerEndpointConfig,
    AnomalyEndpoint = "anomaly-endpoint" => SageMakerEndpoint,
    LlmRole = "llm-role" => IamRole,
    LlmPolicy = "llm-policy" => IamRolePolicy,
    LlmModel = "llm-model" => SageMakerModel,
    LlmEndpointConfig = "llm-endpoint-config" => SageMakerEndpointConfig,
    LlmEndpoint = "llm-endpoint" => SageMakerEndpoint,
    Topic = "alerts" => SnsTopic,
    TopicSubscription = "alerts-subscription" => SnsSubscription,
    DetectorRole = "detector-role" => IamRole,
    DetectorPolicy = "detector-policy" => IamRolePolicy,
    DetectorLogs = "detector-logs" => LogGroup,
    DetectorFunction = "detector-function" => LambdaFunction,
    DetectorPermission = "detector-permission" => LambdaPermission,
    SubscriptionFilter = "detector-subscription" => SubscriptionFilter,
    EgressMetricFilter = "egress-metric-filter" => MetricFilter,
    EgressAlarm = "egress-alarm" => MetricAlarm,
    ContainmentRole = "containment-role" => IamRole,
    ContainmentPolicy = "containment-policy" => IamRolePolicy,
    ContainmentLogs = "containment-logs" => LogGroup,
    ContainmentFunction = "containment-function" => LambdaFunction,
    ContainmentPermission = "containment-permission" => LambdaPermission,
    EventRule = "detection-rule" => EventRule,
    EventTarget = "detection-target" => EventTarget,
    JanitorLogs = "janitor-logs" => LogGroup,
    JanitorFunction = "janitor-function" => LambdaFunction,
    SchedulerRole = "scheduler-role" => IamRole,
    SchedulerPolicy = "scheduler-policy" => IamRolePolicy,
    TtlSchedule = "ttl-schedule" => Schedule,
}

impl Role {
    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The cloud's kinds of resource, from one table: each row is the variant and its name
/// (`service:type`), which is also its serde name.
macro_rules! resource_kinds {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// The cloud's type of a resource, independent of the part it plays.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum ResourceKind {
            $($(#[$doc])* #[serde(rename = $name)] $variant,)*
        }

        impl ResourceKind {
            pub const ALL: [ResourceKind; [$($name),*].len()] = [$(ResourceKind::$variant),*];

            pub fn name(self) -> &'static str {
                match self {
                    $(ResourceKind::$variant => $name,)*
                }
            }
        }
    };
}

resource_kinds! {
    Vpc = "ec2:vpc",
    Subnet = "ec2:subnet",
    InternetGateway = "ec2:internet-gateway",
    RouteTable = "ec2:route-table",
    SecurityGroup = "ec2:security-group",
    IamRole = "iam:role",
    IamRolePolicy = "iam:role-policy",
    InstanceProfile = "iam:instance-profile",
    Instance = "ec2:instance",
    LogGroup = "logs:log-group",
    FlowLog = "ec2:flow-log",
    /// The lab's own bucket: the baseline features the model trains on, and the model.
    S3Bucket = "s3:bucket",
    /// The Random Cut Forest's training. AWS keeps a finished job's record (it has no
    /// delete); deleting one stops it if it still runs.
    SageMakerTrainingJob = "sagemaker:training-job",
    SageMakerModel = "sagemaker:model",
    SageMakerEndpointConfig = "sagemaker:endpoint-config",
    SageMakerEndpoint = "sagemaker:endpoint",
    SnsTopic = "sns:topic",
    SnsSubscription = "sns:subscription",
    LambdaFunction = "lambda:function",
    LambdaPermission = "lambda:permission",
    SubscriptionFilter = "logs:subscription-filter",
    /// A log group's metric filter: a child of the group, deleted with it.
    MetricFilter = "logs:metric-filter",
    MetricAlarm = "cloudwatch:alarm",
    EventRule = "events:rule",
    EventTarget = "events:target",
    /// EventBridge Scheduler's one-time schedule that ends the lab's life. Schedules carry
    /// no tags: found by name.
    Schedule = "scheduler:schedule",
    /// Not created by the graph: an instance's EBS volume, tagged at launch, kept after
    /// termination once containment has preserved it.
    Volume = "ec2:volume",
    /// Not created by the graph: a forensic snapshot taken by containment.
    Snapshot = "ec2:snapshot",
}

impl ResourceKind {
    /// Whether AWS lets this kind carry tags. Untagged kinds are children that go with
    /// their parent (a function's permissions, a rule's targets), so the sweep that finds
    /// resources by tag reaches them through the parent.
    pub fn taggable(self) -> bool {
        !matches!(
            self,
            ResourceKind::IamRolePolicy
                | ResourceKind::LambdaPermission
                | ResourceKind::SubscriptionFilter
                | ResourceKind::MetricFilter
                | ResourceKind::EventTarget
                | ResourceKind::SnsSubscription
                | ResourceKind::Schedule
        )
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub type Tags = BTreeMap<String, String>;

/// One security-group rule: protocol (`tcp`, `udp`, `icmp` or `-1` for all), port range and
/// the IPv4 or IPv6 block it allows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub protocol: String,
    pub from_port: i32,
    pub to_port: i32,
    pub cidr: String,
}

impl Rule {
    pub fn all_traffic(cidr: &str) -> Rule {
        Rule { protocol: "-1".into(), from_port: -1, to_port: -1, cidr: cidr.into() }
    }
}

/// Which of the lab's functions a Lambda is; the code lives in cis (issue: Lambdas).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FunctionCode {
    Detector,
    Containment,
    /// Deletes its lab by tag when the lab's time to live is up.
    Janitor,
}

/// What a resource is to be, per kind. References to other lab resources are roles; the
/// orchestration resolves them to ids ([`Refs`]) and renders policy placeholders.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ResourceConfig {
    Vpc {
        cidr: String,
    },
    Subnet {
        vpc: Role,
        cidr: String,
        map_public_ip: bool,
    },
    InternetGateway {
        vpc: Role,
    },
    RouteTable {
        vpc: Role,
        subnet: Role,
        gateway: Role,
    },
    SecurityGroup {
        vpc: Role,
        description: String,
        ingress: Vec<Rule>,
        egress: Vec<Rule>,
    },
    IamRole {
        trust_policy: String,
        description: String,
    },
    InlinePolicy {
        role: Role,
        policy_name: String,
        document: String,
    },
    ManagedPolicyAttachment {
        role: Role,
        policy_arn: String,
    },
    InstanceProfile {
        role: Role,
    },
    Instance {
        subnet: Role,
        security_group: Role,
        instance_profile: Role,
        instance_type: String,
        image_parameter: String,
        imdsv2_required: bool,
        root_volume_encrypted: bool,
        /// The benign workload it runs (a baseline profile); the simulator generates it.
        #[serde(default = "default_workload")]
        workload: String,
    },
    LogGroup {
        retention_days: u32,
    },
    FlowLog {
        vpc: Role,
        log_group: Role,
        role: Role,
        max_aggregation_interval_s: u32,
        log_format: String,
    },
    S3Bucket,
    /// A built-in algorithm trained on the lab's baseline window features (CSV, uploaded to
    /// `bucket` by the backend), its model written back to the bucket.
    SageMakerTrainingJob {
        role: Role,
        bucket: Role,
        algorithm: String,
        instance_type: String,
        hyperparameters: BTreeMap<String, String>,
        /// The window length whose features the model learns.
        window_s: u32,
        /// The workload (baseline profile) whose windows it learns.
        #[serde(default = "default_workload")]
        workload: String,
    },
    SageMakerModel {
        role: Role,
        algorithm: String,
        /// The training job whose artifacts the model serves.
        #[serde(default)]
        training: Option<Role>,
        /// An inference container of its own instead of the algorithm's (the LLM's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        container: Option<ModelContainer>,
    },
    SageMakerEndpointConfig {
        model: Role,
        instance_type: String,
        /// How long the container may take to download and load its model, in seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        startup_timeout_s: Option<u32>,
    },
    SageMakerEndpoint {
        config: Role,
    },
    SnsTopic,
    SnsSubscription {
        topic: Role,
        protocol: String,
        endpoint: String,
    },
    LambdaFunction {
        code: FunctionCode,
        role: Role,
        memory_mb: u32,
        timeout_s: u32,
        environment: BTreeMap<String, String>,
        /// Reserved concurrency: containment's 1 makes EventBridge's duplicate deliveries
        /// run one after the other, so the second sees the first's isolation.
        reserved_concurrency: Option<u32>,
        /// Where Lambda sends an asynchronous event once all its attempts failed (the
        /// on-failure destination, here the lab's topic): a containment or a detection
        /// that gave up is announced, not dropped in silence. The function's role must be
        /// allowed to publish there.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        on_failure: Option<Role>,
    },
    LambdaPermission {
        function: Role,
        principal: String,
        source: Role,
        statement_id: String,
    },
    SubscriptionFilter {
        log_group: Role,
        function: Role,
        filter_pattern: String,
    },
    /// PutMetricFilter on a log group.
    MetricFilter {
        log_group: Role,
        filter_pattern: String,
        transformation: crate::formats::metric::MetricTransformation,
    },
    /// PutMetricAlarm on the per-period sum of one metric. Without a threshold the backend
    /// calibrates it on the `workload` baseline as the model is calibrated.
    MetricAlarm {
        metric: crate::formats::metric::MetricKey,
        rule: crate::formats::metric::AlarmRule,
        calibrate: Option<AlarmCalibration>,
        /// On the target the alarm watches; its dimension's `${ref:target}` is rendered.
        watches: Role,
    },
    EventRule {
        event_pattern: String,
    },
    EventTarget {
        rule: Role,
        function: Role,
        target_id: String,
    },
    /// A one-time EventBridge Scheduler schedule invoking `function` as `role` at the
    /// lab's creation plus `ttl_s`, then deleting itself. The orchestration fills `at`
    /// from the ledger, so a resumed `up` keeps the first expiry.
    Schedule {
        function: Role,
        role: Role,
        ttl_s: u64,
        #[serde(default)]
        at: Option<crate::base::clock::Timestamp>,
    },
}

/// A model's own container: its image (with `${region}`) and environment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelContainer {
    pub image: String,
    pub environment: BTreeMap<String, String>,
}

/// Foundation-Sec-8B-Instruct as its publishers deploy it (its model card on Hugging
/// Face, fdtn-ai/Foundation-Sec-8B-Instruct, and SageMaker's LMI guide): the DJL LMI
/// container from AWS's deep-learning-containers registry, the model from Hugging Face.
/// `${dlc-registry}` is the registry's account, which differs by region
/// ([`dlc_registry`]).
pub const LLM_IMAGE: &str = "${dlc-registry}.dkr.ecr.${region}.amazonaws.com/djl-inference:0.33.0-lmi15.0.0-cu128";

/// The account of AWS's Deep Learning Containers registry in `region`: 763104351884 in
/// most regions, another account in the opt-in ones (the table in
/// aws/deep-learning-containers, `available_images.md`; the China regions, in another
/// partition, are left out with the rest of the lab). None where it has none.
pub fn dlc_registry(region: &str) -> Option<&'static str> {
    const ELSEWHERE: [(&str, &str); 7] = [
        ("af-south-1", "626614931356"),
        ("ap-east-1", "871362719292"),
        ("ap-northeast-3", "364406365360"),
        ("ap-southeast-3", "907027046896"),
        ("eu-south-1", "692866216735"),
        ("me-central-1", "914824155844"),
        ("me-south-1", "217643126080"),
    ];
    const MAIN: [&str; 16] = [
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
        "ap-south-1",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-southeast-1",
        "ap-southeast-2",
        "ca-central-1",
        "eu-central-1",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "eu-north-1",
        "sa-east-1",
    ];
    ELSEWHERE.iter().find(|(r, _)| *r == region).map(|(_, a)| *a).or_else(|| MAIN.contains(&region).then_some("763104351884"))
}
pub const LLM_MODEL_ID: &str = "fdtn-ai/Foundation-Sec-8B-Instruct";
pub const LLM_INSTANCE_TYPE: &str = "ml.g6e.2xlarge";

/// One resource of the lab, fully described.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceSpec {
    pub role: Role,
    pub kind: ResourceKind,
    pub name: String,
    pub tags: Tags,
    pub depends_on: Vec<Role>,
    pub config: ResourceConfig,
}

/// Ids of already-created resources, by role.
pub type Refs = BTreeMap<Role, String>;

/// The public SSM parameter that names the current Amazon Linux 2023 AMI.
pub const AL2023_PARAMETER: &str = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64";

/// How many times Lambda retries a failed asynchronous invocation of the lab's functions
/// before it sends the event to their on-failure destination: AWS's default, set
/// explicitly so the simulator and the report count the same attempts.
pub const LAMBDA_ASYNC_RETRIES: u32 = 2;

/// The detection events the rule matches: our detector's source and detail type.
pub const DETECTION_SOURCE: &str = "cis.detector";
pub const DETECTION_DETAIL_TYPE: &str = "cis detection";

/// The whole lab: every resource in creation order.
#[derive(Clone, Debug)]
pub struct LabGraph {
    pub lab: LabName,
    pub options: LabOptions,
    pub resources: Vec<ResourceSpec>,
}

impl LabGraph {
    /// Builds the graph for `lab`; `run` goes into every resource's `cis:run` tag.
    pub fn build(lab: &LabName, options: &LabOptions, run: &str) -> LabGraph {
        let mut b = Builder { lab, run, resources: Vec::new() };
        let o = options;
        use ResourceConfig as C;
        use Role as R;

        b.add(R::Vpc, &[], C::Vpc { cidr: "10.42.0.0/16".into() });
        b.add(R::Subnet, &[R::Vpc], C::Subnet { vpc: R::Vpc, cidr: "10.42.1.0/24".into(), map_public_ip: true });
        b.add(R::InternetGateway, &[R::Vpc], C::InternetGateway { vpc: R::Vpc });
        b.add(
            R::RouteTable,
            &[R::Vpc, R::Subnet, R::InternetGateway],
            C::RouteTable { vpc: R::Vpc, subnet: R::Subnet, gateway: R::InternetGateway },
        );
        let mut inbound: Vec<Rule> =
            o.ssh_from.iter().map(|src| Rule { protocol: "tcp".into(), from_port: 22, to_port: 22, cidr: src.as_str().into() }).collect();
        let served: Vec<u16> =
            crate::model::scenario::baselines().into_iter().find(|p| p.id == o.baseline).map(|p| p.serves).unwrap_or_default();
        inbound.extend(served.iter().map(|&port| Rule {
            protocol: "tcp".into(),
            from_port: i32::from(port),
            to_port: i32::from(port),
            cidr: "0.0.0.0/0".into(),
        }));
        b.add(
            R::TargetSecurityGroup,
            &[R::Vpc],
            C::SecurityGroup {
                vpc: R::Vpc,
                description: if served.is_empty() {
                    "cis target: no inbound except SSH from the operator when asked".into()
                } else {
                    "cis target: the workload's served ports from anywhere, SSH from the operator when asked".into()
                },
                ingress: inbound,
                egress: vec![Rule::all_traffic("0.0.0.0/0")],
            },
        );
        // Moving an ENI here first makes its tracked connections untracked, so the move to
        // the isolation group then cuts them (AWS Security Incident Response Guide, "Source
        // containment"; the runbook AWSSupport-ContainEC2Instance does the same). Only ever
        // attached for the instant between the two moves of containment, and only made
        // for `--isolation two-step`: its inbound rule admits everything from anywhere.
        if o.isolation == IsolationSteps::TwoStep {
            b.add(
                R::AllowAllSecurityGroup,
                &[R::Vpc],
                C::SecurityGroup {
                    vpc: R::Vpc,
                    description: "cis containment step 1: allow-all so tracked flows become untracked".into(),
                    ingress: vec![Rule::all_traffic("0.0.0.0/0")],
                    egress: vec![Rule::all_traffic("0.0.0.0/0")],
                },
            );
        }
        b.add(
            R::IsolationSecurityGroup,
            &[R::Vpc],
            C::SecurityGroup {
                vpc: R::Vpc,
                description: "cis containment step 2: no rules at all (default egress revoked)".into(),
                ingress: vec![],
                egress: vec![],
            },
        );
        b.add(
            R::InstanceRole,
            &[],
            C::IamRole { trust_policy: policy("ec2-trust"), description: "cis target: reachable by SSM Run Command".into() },
        );
        b.add(
            R::InstanceRolePolicy,
            &[R::InstanceRole],
            C::ManagedPolicyAttachment { role: R::InstanceRole, policy_arn: "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore".into() },
        );
        b.add(R::InstanceProfile, &[R::InstanceRole, R::InstanceRolePolicy], C::InstanceProfile { role: R::InstanceRole });
        b.add(
            R::TargetInstance,
            &[R::Subnet, R::RouteTable, R::TargetSecurityGroup, R::InstanceProfile],
            C::Instance {
                subnet: R::Subnet,
                security_group: R::TargetSecurityGroup,
                instance_profile: R::InstanceProfile,
                instance_type: o.instance_type.clone(),
                image_parameter: AL2023_PARAMETER.into(),
                imdsv2_required: true,
                root_volume_encrypted: true,
                workload: o.baseline.clone(),
            },
        );
        b.add(R::LogGroup, &[], C::LogGroup { retention_days: 7 });
        b.add(
            R::FlowLogRole,
            &[],
            C::IamRole { trust_policy: policy("flow-log-trust"), description: "cis: VPC Flow Logs delivery".into() },
        );
        b.add(
            R::FlowLogPolicy,
            &[R::FlowLogRole, R::LogGroup],
            C::InlinePolicy { role: R::FlowLogRole, policy_name: "flow-log-delivery".into(), document: policy("flow-log") },
        );
        b.add(
            R::FlowLog,
            &[R::Vpc, R::LogGroup, R::FlowLogRole, R::FlowLogPolicy],
            C::FlowLog {
                vpc: R::Vpc,
                log_group: R::LogGroup,
                role: R::FlowLogRole,
                max_aggregation_interval_s: o.window_s,
                log_format: LAB_LOG_FORMAT.into(),
            },
        );
        if o.detector.has_function() {
            // The lab's bucket: the baseline and the model a training job reads and
            // writes, and the detector function's memory across windows.
            b.add(R::ModelData, &[], C::S3Bucket);
        }
        if o.detector == DetectorMode::Endpoint {
            b.add(
                R::ModelRole,
                &[],
                C::IamRole { trust_policy: policy("sagemaker-trust"), description: "cis: anomaly model execution".into() },
            );
            b.add(
                R::ModelPolicy,
                &[R::ModelRole, R::ModelData],
                C::InlinePolicy { role: R::ModelRole, policy_name: "model".into(), document: policy("model") },
            );
            b.add(
                R::TrainingJob,
                &[R::ModelRole, R::ModelPolicy, R::ModelData],
                C::SageMakerTrainingJob {
                    role: R::ModelRole,
                    bucket: R::ModelData,
                    algorithm: "randomcutforest".into(),
                    instance_type: TRAINING_INSTANCE_TYPE.into(),
                    hyperparameters: rcf_hyperparameters(),
                    window_s: o.window_s,
                    workload: o.baseline.clone(),
                },
            );
            b.add(
                R::AnomalyModel,
                &[R::ModelRole, R::TrainingJob],
                C::SageMakerModel {
                    role: R::ModelRole,
                    algorithm: "randomcutforest".into(),
                    training: Some(R::TrainingJob),
                    container: None,
                },
            );
            b.add(
                R::AnomalyEndpointConfig,
                &[R::AnomalyModel],
                C::SageMakerEndpointConfig {
                    model: R::AnomalyModel,
                    instance_type: o.endpoint_instance_type.clone(),
                    startup_timeout_s: None,
                },
            );
            b.add(R::AnomalyEndpoint, &[R::AnomalyEndpointConfig], C::SageMakerEndpoint { config: R::AnomalyEndpointConfig });
        }
        if o.llm {
            b.add(
                R::LlmRole,
                &[],
                C::IamRole { trust_policy: policy("sagemaker-trust"), description: "cis: Foundation-Sec-8B-Instruct endpoint".into() },
            );
            b.add(R::LlmPolicy, &[R::LlmRole], C::InlinePolicy { role: R::LlmRole, policy_name: "llm".into(), document: policy("llm") });
            b.add(
                R::LlmModel,
                &[R::LlmRole, R::LlmPolicy],
                C::SageMakerModel {
                    role: R::LlmRole,
                    algorithm: "djl-lmi".into(),
                    training: None,
                    container: Some(ModelContainer {
                        image: LLM_IMAGE.into(),
                        environment: BTreeMap::from([("HF_MODEL_ID".to_string(), LLM_MODEL_ID.to_string())]),
                    }),
                },
            );
            b.add(
                R::LlmEndpointConfig,
                &[R::LlmModel],
                C::SageMakerEndpointConfig {
                    model: R::LlmModel,
                    instance_type: o.llm_instance_type.clone().unwrap_or_else(|| LLM_INSTANCE_TYPE.into()),
                    startup_timeout_s: Some(900),
                },
            );
            b.add(R::LlmEndpoint, &[R::LlmEndpointConfig], C::SageMakerEndpoint { config: R::LlmEndpointConfig });
        }
        b.add(R::Topic, &[], C::SnsTopic);
        if let Some(email) = &o.notify_email {
            b.add(
                R::TopicSubscription,
                &[R::Topic],
                C::SnsSubscription { topic: R::Topic, protocol: "email".into(), endpoint: email.clone() },
            );
        }
        if o.detector.has_function() {
            b.add(R::DetectorRole, &[], C::IamRole { trust_policy: policy("lambda-trust"), description: "cis: detector function".into() });
            let mut detector_deps = vec![R::DetectorRole, R::Topic, R::ModelData];
            let mut detector_policy = policy("detector");
            if o.detector == DetectorMode::Endpoint {
                detector_policy = merge_statements(&detector_policy, &policy("detector-endpoint"));
                detector_deps.push(R::AnomalyEndpoint);
            }
            b.add(
                R::DetectorPolicy,
                &detector_deps,
                C::InlinePolicy { role: R::DetectorRole, policy_name: "detector".into(), document: detector_policy },
            );
            let mut detector_env = BTreeMap::from([
                ("CIS_LAB".to_string(), lab.to_string()),
                ("CIS_WINDOW_S".to_string(), o.window_s.to_string()),
                ("CIS_LOG_FORMAT".to_string(), LAB_LOG_FORMAT.to_string()),
                ("CIS_BASELINE".to_string(), o.baseline.clone()),
                ("CIS_MEMORY_BUCKET".to_string(), "${ref:model-data}".to_string()),
            ]);
            if let Some(fpr) = o.target_fpr {
                detector_env.insert("CIS_TARGET_FPR".into(), format!("{fpr:e}"));
            }
            if o.detector == DetectorMode::Endpoint {
                detector_env.insert("CIS_ENDPOINT".into(), format!("cis-{lab}-{}", R::AnomalyEndpoint.name()));
            }
            // The functions' own log groups, made by the lab rather than by Lambda on first
            // use: tagged, with a retention, and removed by `down` (the functions may not
            // create them). `cis attack` on AWS reads the pipeline's timeline from them.
            b.add(R::DetectorLogs, &[], C::LogGroup { retention_days: 7 });
            b.add(
                R::DetectorFunction,
                &[R::DetectorRole, R::DetectorPolicy, R::DetectorLogs, R::Topic, R::ModelData],
                C::LambdaFunction {
                    code: FunctionCode::Detector,
                    role: R::DetectorRole,
                    memory_mb: 256,
                    timeout_s: 30,
                    environment: detector_env,
                    reserved_concurrency: None,
                    on_failure: Some(R::Topic),
                },
            );
            b.add(
                R::DetectorPermission,
                &[R::DetectorFunction, R::LogGroup],
                C::LambdaPermission {
                    function: R::DetectorFunction,
                    principal: "logs.amazonaws.com".into(),
                    source: R::LogGroup,
                    statement_id: "cis-flow-log-subscription".into(),
                },
            );
            b.add(
                R::SubscriptionFilter,
                &[R::LogGroup, R::DetectorFunction, R::DetectorPermission],
                C::SubscriptionFilter { log_group: R::LogGroup, function: R::DetectorFunction, filter_pattern: String::new() },
            );
        } else {
            // The metric-filter detector: bytes out of the VPC per minute, per instance.
            b.add(
                R::EgressMetricFilter,
                &[R::LogGroup],
                C::MetricFilter {
                    log_group: R::LogGroup,
                    filter_pattern: crate::formats::metric::egress_pattern(LAB_VPC_PREFIX),
                    transformation: egress_transformation(),
                },
            );
            b.add(
                R::EgressAlarm,
                &[R::EgressMetricFilter, R::TargetInstance],
                C::MetricAlarm {
                    metric: crate::formats::metric::MetricKey {
                        namespace: crate::formats::metric::EGRESS_NAMESPACE.into(),
                        metric_name: crate::formats::metric::EGRESS_METRIC.into(),
                        dimensions: BTreeMap::from([(crate::formats::metric::INSTANCE_DIMENSION.to_string(), "${ref:target}".to_string())]),
                    },
                    rule: egress_alarm_rule(o.window_s),
                    calibrate: Some(AlarmCalibration { workload: o.baseline.clone(), window_s: o.window_s, target_fpr: o.target_fpr }),
                    watches: R::TargetInstance,
                },
            );
        }
        b.add(
            R::ContainmentRole,
            &[],
            C::IamRole { trust_policy: policy("lambda-trust"), description: "cis: containment function".into() },
        );
        b.add(
            R::ContainmentPolicy,
            &[R::ContainmentRole, R::Topic, R::Vpc],
            C::InlinePolicy { role: R::ContainmentRole, policy_name: "containment".into(), document: policy("containment") },
        );
        b.add(R::ContainmentLogs, &[], C::LogGroup { retention_days: 7 });
        let mut containment_env = BTreeMap::from([
            ("CIS_LAB".to_string(), lab.to_string()),
            ("CIS_TOPIC_ARN".to_string(), "${ref:alerts}".to_string()),
            ("CIS_ISOLATION_SG".to_string(), "${ref:isolation-sg}".to_string()),
            ("CIS_ISOLATION".to_string(), o.isolation.name().to_string()),
            ("CIS_FORENSICS".to_string(), if o.forensics { "on" } else { "off" }.to_string()),
        ]);
        let mut containment_deps = vec![R::ContainmentRole, R::ContainmentPolicy, R::ContainmentLogs, R::Topic, R::IsolationSecurityGroup];
        if o.isolation == IsolationSteps::TwoStep {
            containment_env.insert("CIS_ALLOW_ALL_SG".to_string(), "${ref:allow-all-sg}".to_string());
            containment_deps.push(R::AllowAllSecurityGroup);
        }
        b.add(
            R::ContainmentFunction,
            &containment_deps,
            C::LambdaFunction {
                code: FunctionCode::Containment,
                role: R::ContainmentRole,
                memory_mb: 128,
                timeout_s: 60,
                environment: containment_env,
                reserved_concurrency: Some(1),
                on_failure: Some(R::Topic),
            },
        );
        let event_pattern = if o.detector.has_function() {
            format!(r#"{{"source":["{DETECTION_SOURCE}"],"detail-type":["{DETECTION_DETAIL_TYPE}"],"detail":{{"lab":["{lab}"]}}}}"#)
        } else {
            // Only this lab's alarm, and only its move into ALARM (not back to OK).
            format!(
                r#"{{"source":["{}"],"detail-type":["{}"],"detail":{{"alarmName":["{}"],"state":{{"value":["ALARM"]}}}}}}"#,
                crate::formats::metric::ALARM_SOURCE,
                crate::formats::metric::ALARM_DETAIL_TYPE,
                resource_name(lab, R::EgressAlarm)
            )
        };
        b.add(R::EventRule, &[], C::EventRule { event_pattern });
        b.add(
            R::ContainmentPermission,
            &[R::ContainmentFunction, R::EventRule],
            C::LambdaPermission {
                function: R::ContainmentFunction,
                principal: "events.amazonaws.com".into(),
                source: R::EventRule,
                statement_id: "cis-detection-rule".into(),
            },
        );
        b.add(
            R::EventTarget,
            &[R::EventRule, R::ContainmentFunction, R::ContainmentPermission],
            C::EventTarget { rule: R::EventRule, function: R::ContainmentFunction, target_id: "containment".into() },
        );

        // The lab's time to live: a schedule that fires once, at the lab's creation plus
        // the TTL, and invokes the janitor, which runs `down`'s sweep by tag in the cloud.
        if let Some(ttl_s) = o.ttl_s {
            b.add(R::JanitorRole, &[], C::IamRole { trust_policy: policy("lambda-trust"), description: "cis: the lab's janitor".into() });
            b.add(
                R::JanitorPolicy,
                &[R::JanitorRole],
                C::InlinePolicy { role: R::JanitorRole, policy_name: "janitor".into(), document: policy("janitor") },
            );
            b.add(R::JanitorLogs, &[], C::LogGroup { retention_days: 7 });
            b.add(
                R::JanitorFunction,
                &[R::JanitorRole, R::JanitorPolicy, R::JanitorLogs],
                C::LambdaFunction {
                    code: FunctionCode::Janitor,
                    role: R::JanitorRole,
                    memory_mb: 256,
                    // A SageMaker endpoint takes minutes to go: the janitor may take long.
                    timeout_s: 900,
                    environment: BTreeMap::from([("CIS_LAB".to_string(), lab.to_string())]),
                    reserved_concurrency: None,
                    // The janitor deletes the topic on its way: no destination to outlive it.
                    on_failure: None,
                },
            );
            b.add(
                R::SchedulerRole,
                &[],
                C::IamRole { trust_policy: policy("scheduler-trust"), description: "cis: the lab's TTL schedule".into() },
            );
            b.add(
                R::SchedulerPolicy,
                &[R::SchedulerRole, R::JanitorFunction],
                C::InlinePolicy { role: R::SchedulerRole, policy_name: "invoke-janitor".into(), document: policy("scheduler") },
            );
            b.add(
                R::TtlSchedule,
                &[R::JanitorFunction, R::SchedulerRole, R::SchedulerPolicy],
                C::Schedule { function: R::JanitorFunction, role: R::SchedulerRole, ttl_s, at: None },
            );
        }

        LabGraph { lab: lab.clone(), options: options.clone(), resources: b.resources }
    }

    pub fn get(&self, role: Role) -> Option<&ResourceSpec> {
        self.resources.iter().find(|r| r.role == role)
    }

    /// The function packages this lab deploys.
    pub fn function_codes(&self) -> Vec<FunctionCode> {
        self.resources
            .iter()
            .filter_map(|r| match &r.config {
                ResourceConfig::LambdaFunction { code, .. } => Some(*code),
                _ => None,
            })
            .collect()
    }

    pub fn roles(&self) -> impl Iterator<Item = Role> + '_ {
        self.resources.iter().map(|r| r.role)
    }

    /// Roles that depend directly on `role`.
    pub fn dependents(&self, role: Role) -> Vec<Role> {
        self.resources.iter().filter(|r| r.depends_on.contains(&role)).map(|r| r.role).collect()
    }
}

struct Builder<'a> {
    lab: &'a LabName,
    run: &'a str,
    resources: Vec<ResourceSpec>,
}

impl Builder<'_> {
    fn add(&mut self, role: Role, deps: &[Role], config: ResourceConfig) {
        debug_assert!(deps.iter().all(|d| self.resources.iter().any(|r| r.role == *d)), "{role} before its deps");
        self.resources.push(ResourceSpec {
            role,
            kind: role.kind(),
            name: resource_name(self.lab, role),
            tags: lab_tags(self.lab, role, self.run),
            depends_on: deps.to_vec(),
            config,
        });
    }
}

/// The lab's VPC block, 10.42.0.0/16, as the text prefix a filter pattern matches.
pub const LAB_VPC_PREFIX: &str = "10.42.";

/// The egress metric filter's transformation: the record's bytes, per instance.
pub fn egress_transformation() -> crate::formats::metric::MetricTransformation {
    crate::formats::metric::MetricTransformation {
        namespace: crate::formats::metric::EGRESS_NAMESPACE.into(),
        metric_name: crate::formats::metric::EGRESS_METRIC.into(),
        metric_value: "$bytes".into(),
        dimensions: BTreeMap::from([(crate::formats::metric::INSTANCE_DIMENSION.to_string(), "$instance_id".to_string())]),
    }
}

/// How a metric alarm's threshold is found when the graph does not fix it: on the lab's
/// baseline, the way the model's is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlarmCalibration {
    pub workload: String,
    pub window_s: u32,
    pub target_fpr: Option<f64>,
}

/// The egress alarm's M of N: one breaching minute is enough (the threshold is set above
/// anything the baseline did), and the alarm looks back far enough that records arriving
/// a window plus a worst-case delivery (15 min, latency.toml) late still count.
pub fn egress_alarm_rule(window_s: u32) -> crate::formats::metric::AlarmRule {
    crate::formats::metric::AlarmRule {
        period_s: 60,
        evaluation_periods: window_s.div_ceil(60) + 15,
        datapoints_to_alarm: 1,
        threshold: 0.0,
    }
}

/// Where the Random Cut Forest trains: AWS recommends the m4, c4 and c5 families; an
/// m5.large is the smallest current one, billed only for the minutes the job runs.
pub const TRAINING_INSTANCE_TYPE: &str = "ml.m5.large";

/// The Random Cut Forest's settings: as many trees and samples per tree as the lab's own
/// forest ([`crate::detect::anomaly`]); `feature_dim` is the window features' width.
pub fn rcf_hyperparameters() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("feature_dim".to_string(), crate::detect::features::N_FEATURES.to_string()),
        ("num_trees".to_string(), "100".to_string()),
        ("num_samples_per_tree".to_string(), "256".to_string()),
    ])
}

/// The SageMaker endpoint serving Foundation-Sec-8B-Instruct for a lab (`cis up --llm`).
pub fn llm_endpoint_name(lab: &LabName) -> String {
    format!("cis-{lab}-llm-endpoint")
}

/// `cis-<lab>-<role>`, or Lambda's own name for a function's log group.
pub fn resource_name(lab: &LabName, role: Role) -> String {
    match role {
        // Where Lambda writes a function's logs: the name is Lambda's choice, not ours.
        Role::DetectorLogs => format!("/aws/lambda/{}", resource_name(lab, Role::DetectorFunction)),
        Role::ContainmentLogs => format!("/aws/lambda/{}", resource_name(lab, Role::ContainmentFunction)),
        _ => format!("cis-{lab}-{}", role.name()),
    }
}

pub fn lab_tags(lab: &LabName, role: Role, run: &str) -> Tags {
    Tags::from([
        (TAG_LAB.to_string(), lab.to_string()),
        (TAG_MANAGED.to_string(), "true".to_string()),
        (TAG_RUN.to_string(), run.to_string()),
        (TAG_ROLE.to_string(), role.name().to_string()),
        ("Name".to_string(), resource_name(lab, role)),
    ])
}

fn policy(name: &str) -> String {
    let text = match name {
        "ec2-trust" => include_str!("../../../assets/policies/ec2-trust.json"),
        "lambda-trust" => include_str!("../../../assets/policies/lambda-trust.json"),
        "flow-log-trust" => include_str!("../../../assets/policies/flow-log-trust.json"),
        "sagemaker-trust" => include_str!("../../../assets/policies/sagemaker-trust.json"),
        "flow-log" => include_str!("../../../assets/policies/flow-log.json"),
        "containment" => include_str!("../../../assets/policies/containment.json"),
        "detector" => include_str!("../../../assets/policies/detector.json"),
        "detector-endpoint" => include_str!("../../../assets/policies/detector-endpoint.json"),
        "model" => include_str!("../../../assets/policies/model.json"),
        "llm" => include_str!("../../../assets/policies/llm.json"),
        "janitor" => include_str!("../../../assets/policies/janitor.json"),
        "scheduler" => include_str!("../../../assets/policies/scheduler.json"),
        "scheduler-trust" => include_str!("../../../assets/policies/scheduler-trust.json"),
        other => unreachable!("no policy asset {other}"),
    };
    text.to_string()
}

fn merge_statements(base: &str, extra: &str) -> String {
    let mut base: serde_json::Value = serde_json::from_str(base).expect("policy assets are valid JSON");
    let extra: serde_json::Value = serde_json::from_str(extra).expect("policy assets are valid JSON");
    if let (Some(list), Some(more)) = (base["Statement"].as_array_mut(), extra["Statement"].as_array()) {
        list.extend(more.iter().cloned());
    }
    serde_json::to_string_pretty(&base).expect("JSON values serialize")
}

/// Fills `${lab}`, `${region}`, `${account}`, `${dlc-registry}` and `${ref:<role>}` placeholders in a policy
/// document or an environment value. A reference to a role not yet created is an error
/// in the graph, reported as such.
pub fn render(template: &str, lab: &LabName, region: &str, account: &str, refs: &Refs) -> Result<String, Error> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| Error::Internal(format!("unclosed placeholder in {template}")))?;
        let key = &after[..end];
        let value = match key {
            "lab" => lab.to_string(),
            "region" => region.to_string(),
            "account" => account.to_string(),
            "dlc-registry" => dlc_registry(region)
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "AWS's Deep Learning Containers (the --llm endpoint's image) have no registry known for {region}: use another --region, or leave out --llm"
                    ))
                })?
                .to_string(),
            _ => match key.strip_prefix("ref:") {
                Some(name) => {
                    let role =
                        Role::from_name(name).ok_or_else(|| Error::Internal(format!("placeholder ${{{key}}} names no role of the lab")))?;
                    refs.get(&role).cloned().ok_or_else(|| Error::Internal(format!("placeholder ${{{key}}} used before {role} exists")))?
                }
                // Not ours (a flow-log format's `${srcaddr}`): left as it is.
                None => format!("${{{key}}}"),
            },
        };
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The spec with every placeholder in its policies and environment filled in.
pub fn rendered(spec: &ResourceSpec, lab: &LabName, region: &str, account: &str, refs: &Refs) -> Result<ResourceSpec, Error> {
    let mut spec = spec.clone();
    let r = |s: &str| render(s, lab, region, account, refs);
    match &mut spec.config {
        ResourceConfig::IamRole { trust_policy, .. } => *trust_policy = r(trust_policy)?,
        ResourceConfig::InlinePolicy { document, .. } => *document = r(document)?,
        ResourceConfig::LambdaFunction { environment, .. } => {
            for v in environment.values_mut() {
                *v = r(v)?;
            }
        }
        ResourceConfig::MetricAlarm { metric, .. } => {
            for v in metric.dimensions.values_mut() {
                *v = r(v)?;
            }
        }
        ResourceConfig::SageMakerModel { container: Some(c), .. } => {
            c.image = r(&c.image)?;
        }
        _ => {}
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> LabName {
        "demo".parse().unwrap()
    }

    #[test]
    fn a_placeholder_naming_no_role_is_an_error_not_left_in_a_policy() {
        let refs = Refs::from([(Role::Topic, "arn:aws:sns:us-east-1:1:t".to_string())]);
        assert_eq!(render("${ref:alerts} ${srcaddr}", &lab(), "r", "a", &refs).unwrap(), "arn:aws:sns:us-east-1:1:t ${srcaddr}");
        let e = render("${ref:topic}", &lab(), "r", "a", &refs).unwrap_err().to_string();
        assert!(e.contains("${ref:topic} names no role"), "{e}");
        // Every template the graph uses renders once its references exist.
        for detector in [DetectorMode::Endpoint, DetectorMode::Lambda, DetectorMode::MetricFilter] {
            let g = LabGraph::build(&lab(), &LabOptions { detector, ..Default::default() }, "up-1");
            let refs: Refs = g.resources.iter().map(|r| (r.role, format!("id-of-{}", r.role.name()))).collect();
            for spec in &g.resources {
                let text = format!("{:?}", rendered(spec, &lab(), "us-east-1", "123456789012", &refs).unwrap().config);
                assert!(!text.contains("${ref:") && !text.contains("${lab}"), "{}: {text}", spec.role.name());
            }
        }
    }

    #[test]
    fn graph_is_topologically_ordered_and_names_follow_the_convention() {
        for detector in [DetectorMode::Endpoint, DetectorMode::Lambda, DetectorMode::MetricFilter] {
            let options = LabOptions { detector, notify_email: Some("ops@example.com".into()), ..Default::default() };
            let g = LabGraph::build(&lab(), &options, "up-1");
            for (i, r) in g.resources.iter().enumerate() {
                // Lambda names a function's log group; the function's name is ours.
                assert!(r.name.starts_with("cis-demo-") || r.name.starts_with("/aws/lambda/cis-demo-"), "{}", r.name);
                assert_eq!(r.tags[TAG_LAB], "demo");
                assert_eq!(r.tags[TAG_MANAGED], "true");
                assert_eq!(r.tags[TAG_RUN], "up-1");
                for d in &r.depends_on {
                    let j = g.resources.iter().position(|x| x.role == *d).unwrap();
                    assert!(j < i, "{} depends on later {}", r.role, d);
                }
            }
            assert_eq!(g.get(Role::AnomalyEndpoint).is_some(), detector == DetectorMode::Endpoint);
        }
    }

    #[test]
    fn lab_names_and_ssh_sources_are_validated() {
        assert!("a".parse::<LabName>().is_ok());
        assert!("Lab".parse::<LabName>().is_err());
        assert!("1lab".parse::<LabName>().is_err());
        assert!("x".repeat(25).parse::<LabName>().is_err());
        assert_eq!("198.51.100.7".parse::<SshSource>().unwrap().as_str(), "198.51.100.7/32");
        assert!("0.0.0.0/0".parse::<SshSource>().is_err());
        assert!("198.51.100.0/24".parse::<SshSource>().is_err());
        assert!("0.0.0.0".parse::<SshSource>().is_err());
    }

    #[test]
    fn target_group_has_no_inbound_rule_without_ssh_from() {
        let g = LabGraph::build(&lab(), &LabOptions::default(), "r");
        let ResourceConfig::SecurityGroup { ingress, .. } = &g.get(Role::TargetSecurityGroup).unwrap().config else { panic!() };
        assert!(ingress.is_empty());
        // A web server's clients reach its port, and only that one.
        let web = LabOptions { baseline: "web-server".into(), ..Default::default() };
        let g = LabGraph::build(&lab(), &web, "r");
        let ResourceConfig::SecurityGroup { ingress, .. } = &g.get(Role::TargetSecurityGroup).unwrap().config else { panic!() };
        assert_eq!(ingress, &[Rule { protocol: "tcp".into(), from_port: 443, to_port: 443, cidr: "0.0.0.0/0".into() }]);
    }

    #[test]
    fn placeholders_render_and_missing_refs_are_errors() {
        let refs = Refs::from([(Role::Topic, "arn:aws:sns:us-east-1:1:cis-demo-alerts".to_string())]);
        let s = render("${lab} ${region} ${account} ${ref:alerts}", &lab(), "eu-west-1", "42", &refs).unwrap();
        // The DLC registry's account follows the region.
        assert_eq!(render("${dlc-registry}", &lab(), "us-east-1", "42", &refs).unwrap(), "763104351884");
        assert_eq!(render("${dlc-registry}", &lab(), "me-south-1", "42", &refs).unwrap(), "217643126080");
        assert!(render("${dlc-registry}", &lab(), "mars-1", "42", &refs).unwrap_err().to_string().contains("--llm"));
        assert_eq!(s, "demo eu-west-1 42 arn:aws:sns:us-east-1:1:cis-demo-alerts");
        assert!(render("${ref:vpc}", &lab(), "r", "a", &refs).is_err());
        for spec in LabGraph::build(&lab(), &LabOptions::default(), "r").resources {
            if let ResourceConfig::InlinePolicy { document, .. } | ResourceConfig::IamRole { trust_policy: document, .. } = &spec.config {
                serde_json::from_str::<serde_json::Value>(document).expect("policy is JSON");
            }
        }
    }
}
