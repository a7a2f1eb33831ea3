//! One resource of the lab: the part it plays, the cloud's kind of resource, what it is to
//! be, and how it is named and tagged.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::options::{default_workload, LabName};


/// Tag keys every resource carries.
pub const TAG_LAB: &str = "cis:lab";
pub const TAG_MANAGED: &str = "cis:managed";
pub const TAG_RUN: &str = "cis:run";
pub const TAG_ROLE: &str = "cis:role";
/// Every tag the lab puts on a resource that says whose it is.
pub const LAB_TAG_KEYS: [&str; 4] = [TAG_LAB, TAG_MANAGED, TAG_RUN, TAG_ROLE];

/// The part each resource plays in the lab, from one table: each row is the variant, the
/// name used in resource names, tags, text and JSON, and the cloud's kind of resource.
macro_rules! roles {
    ($($variant:ident = $name:literal => $kind:ident,)*) => {
        /// The part each resource plays in the lab. The declaration order is the creation
        /// order used for display; actual creation follows the dependencies, concurrently.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Role {
            $($variant,)*
        }

        impl Role {
            pub const ALL: [Role; [$($name),*].len()] = [$(Role::$variant),*];

            /// The kebab-case name used in resource names, tags, the ledger and output.
            pub fn name(self) -> &'static str {
                match self {
                    $(Role::$variant => $name,)*
                }
            }

            /// The variant's own name, whose kebab-case ledgers written before the role's
            /// name was used in files hold (`target-instance` for `target`).
            fn variant(self) -> &'static str {
                match self {
                    $(Role::$variant => stringify!($variant),)*
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

/// `TargetInstance` -> `target-instance`.
fn kebab(variant: &str) -> String {
    let mut out = String::with_capacity(variant.len() + 4);
    for (i, c) in variant.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Written by its name, so that text, JSON, tags and resource names agree (JSON once said
/// `target-instance` where text and tags said `target`).
impl Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Read by its name, or by the kebab-case variant older ledgers and run records hold.
impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Role, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        Role::from_name(&text)
            .or_else(|| Role::ALL.into_iter().find(|r| kebab(r.variant()) == text))
            .ok_or_else(|| serde::de::Error::custom(format!("unknown role '{text}'")))
    }
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
        /// The instance type the subnet's Availability Zone must offer: not every zone
        /// offers every type (t3.micro is not in us-east-1e), and a zone left to AWS may
        /// be one that does not. None in ledgers written before the zone was chosen.
        #[serde(default)]
        zone_offers: Option<String>,
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
        /// Its training rows in the lab's bucket, once `cis arm` wrote them from the lab's
        /// own flow logs (the simulator trains on its simulated baseline instead).
        #[serde(default)]
        data_key: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_is_written_by_its_name_and_read_by_either_name() {
        assert_eq!(serde_json::to_string(&Role::TargetInstance).unwrap(), "\"target\"");
        for r in Role::ALL {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.name()));
            assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), r);
            assert_eq!(serde_json::from_str::<Role>(&format!("\"{}\"", kebab(r.variant()))).unwrap(), r, "{r:?}");
        }
        // A ledger's references, as older ledgers wrote them.
        let refs: Refs = serde_json::from_str(r#"{"target-instance":"i-1","log-group":"g","topic":"t"}"#).unwrap();
        assert_eq!((refs[&Role::TargetInstance].as_str(), refs[&Role::LogGroup].as_str(), refs[&Role::Topic].as_str()), ("i-1", "g", "t"));
        assert!(serde_json::from_str::<Role>("\"nonesuch\"").unwrap_err().to_string().contains("unknown role 'nonesuch'"));
    }
}
