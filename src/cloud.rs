//! The `Cloud` boundary: what the orchestration asks of a cloud, in the lab's language.
//!
//! A backend creates, finds, probes and deletes the lab's resources from their
//! [`ResourceSpec`]s, lists what carries a lab's tags, runs a scenario on the target and
//! reports what the pipeline did. It neither retries nor waits: ordering, retries, waits,
//! the ledger and measurement belong to the orchestration, which runs unchanged on the
//! simulator and on AWS.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::base::clock::{Clock, Timestamp};
pub use crate::base::error::CloudError;
use crate::model::events::{ContainmentOutcome, DetectionEvent, Notification, Transfer};
use crate::model::lab::{LabName, Refs, ResourceKind, ResourceSpec, Role, Tags};
use crate::model::scenario::Scenario;

/// Which cloud a command acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CloudKind {
    /// The embedded simulator: an in-process AWS with a virtual clock.
    Sim,
    /// Real AWS, through the AWS SDK for Rust.
    Aws,
}

impl CloudKind {
    pub fn name(self) -> &'static str {
        match self {
            CloudKind::Sim => "sim",
            CloudKind::Aws => "aws",
        }
    }
}

/// The account a backend acts in.
#[derive(Clone, Debug, Serialize)]
pub struct AccountInfo {
    pub account_id: String,
    pub region: String,
    /// One line for the user: which cloud, which account, where its state lives.
    pub description: String,
}

/// A resource's life, as probed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "detail", rename_all = "kebab-case")]
pub enum ResourceStatus {
    /// Created, not usable yet (an instance booting, an endpoint `Creating`).
    Pending(String),
    Ready,
    /// Being deleted; gone later.
    Deleting(String),
    /// The cloud gave up on it (an endpoint `Failed`); delete and create again.
    Failed(String),
}

/// A resource found in the cloud by its lab tags.
#[derive(Clone, Debug, Serialize)]
pub struct CloudResource {
    pub kind: ResourceKind,
    pub id: String,
    pub name: String,
    pub role: Option<Role>,
    pub tags: Tags,
    pub status: ResourceStatus,
}

/// One page of a log group's flow-log lines.
#[derive(Clone, Debug, Default)]
pub struct FlowLogPage {
    pub lines: Vec<String>,
    /// The next page's token; None after the last page.
    pub next: Option<String>,
}

/// The lab's resources an attack and its measurement need, resolved from the ledger.
#[derive(Clone, Debug)]
pub struct LabTarget {
    pub lab: LabName,
    pub refs: Refs,
}

impl LabTarget {
    pub fn id(&self, role: Role) -> Option<&str> {
        self.refs.get(&role).map(String::as_str)
    }
}

/// A scenario started on the target.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttackHandle {
    pub run_id: String,
    pub scenario: String,
    pub started_at: Timestamp,
    /// The backend's own reference (an SSM command id on AWS).
    pub backend_ref: String,
}

/// Everything the pipeline did since an attack started, as the cloud reports it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Observation {
    /// The scenario's script finished on the target.
    pub attack_finished_at: Option<Timestamp>,
    /// Attack traffic, accepted and rejected, in time order.
    pub transfers: Vec<Transfer>,
    /// When flow-log records of attack traffic first reached the log group.
    pub first_records_delivered_at: Option<Timestamp>,
    pub detections: Vec<DetectionEvent>,
    pub containments: Vec<ContainmentOutcome>,
    pub notifications: Vec<Notification>,
    /// Probed now: the target's network interfaces are all in the isolation group.
    pub instance_isolated: bool,
}

#[async_trait]
pub trait Cloud: Send + Sync {
    fn kind(&self) -> CloudKind;

    /// The clock this cloud's timestamps are read from.
    fn clock(&self) -> &Clock;

    /// Who and where we are; fails fast with [`CloudError::Credentials`] when nothing can be
    /// done.
    async fn account(&self) -> Result<AccountInfo, CloudError>;

    /// Creates the resource; `refs` holds the ids of everything it depends on. Returns its
    /// id (an ARN where AWS identifies the kind by ARN).
    async fn create(&self, spec: &ResourceSpec, refs: &Refs) -> Result<String, CloudError>;

    /// Brings a resource that exists (just created, resumed after a crash, or adopted) to
    /// the settings its create call cannot carry: attributes, attachments, routes, rules,
    /// concurrency, invoke config. Idempotent. Right after a create AWS may answer
    /// NotFound for the new id (eventual consistency): the orchestration retries that
    /// here for a bounded time, which it could not do inside `create` without creating
    /// twice.
    async fn converge(&self, spec: &ResourceSpec, id: &str, refs: &Refs) -> Result<(), CloudError>;

    /// Finds an existing resource made from this spec (by name, or by its lab and role
    /// tags), so that a create cut short by a crash is adopted rather than repeated.
    async fn find(&self, spec: &ResourceSpec, refs: &Refs) -> Result<Option<String>, CloudError>;

    /// Probes one resource; [`CloudError::NotFound`] once it is gone.
    async fn status(&self, kind: ResourceKind, id: &str) -> Result<ResourceStatus, CloudError>;

    /// Starts deleting one resource, with the children AWS would not let it go without
    /// (a role's inline policies, a rule's targets). Deletion may finish later: probe
    /// [`Cloud::status`] until NotFound.
    async fn delete(&self, kind: ResourceKind, id: &str) -> Result<(), CloudError>;

    /// Every live resource tagged with the lab.
    async fn list_lab(&self, lab: &LabName) -> Result<Vec<CloudResource>, CloudError>;

    /// Every lab that has tagged resources in the account.
    async fn list_labs(&self) -> Result<Vec<LabName>, CloudError>;

    /// When the lab's flow log first delivered records to its log group, if it has.
    async fn first_delivery(&self, target: &LabTarget) -> Result<Option<Timestamp>, CloudError>;

    /// Whether the lab's egress alarm (the metric-filter detector) is in ALARM. An alarm
    /// fires once, on its way into ALARM: while it stays there a new attack raises
    /// nothing, so a run waits for it to return to OK. Labs without one: false.
    async fn alarm_firing(&self, target: &LabTarget) -> Result<bool, CloudError>;

    /// Starts the scenario on the target instance.
    async fn start_attack(&self, target: &LabTarget, scenario: &Scenario, run_id: &str) -> Result<AttackHandle, CloudError>;

    /// Stops a run's script on the target if it still runs (SSM CancelCommand on AWS, by
    /// the handle's reference when there is one, else by the run id in the command's
    /// comment). A run that already ended, or that never started, is no error.
    async fn stop_attack(&self, target: &LabTarget, run_id: &str, backend_ref: Option<&str>) -> Result<(), CloudError>;

    /// What the pipeline has done since the attack started.
    async fn observe(&self, target: &LabTarget, attack: &AttackHandle) -> Result<Observation, CloudError>;

    /// Empties the detector function's memory across windows (on AWS, its objects in the
    /// lab's bucket), so that what follows a release is judged afresh. A lab without a
    /// detector function, or with nothing remembered, is no error.
    async fn forget_detector_memory(&self, target: &LabTarget) -> Result<(), CloudError>;

    /// Makes everything done so far durable (the simulator's account); nothing on AWS.
    async fn checkpoint(&self) -> Result<(), CloudError>;

    /// One page of the flow-log lines in the lab's log group (`group`, its id), and the
    /// token of the next page (None after the last): what `cis arm` learns from, a page
    /// at a time.
    async fn flow_log_page(&self, group: &str, token: Option<&str>) -> Result<FlowLogPage, CloudError>;

    /// Puts an object in the lab's bucket (`bucket`, its id), replacing what was there.
    async fn put_lab_object(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), CloudError>;

    /// EC2 and SNS as the containment function sees them: `cis release` undoes an
    /// isolation with the function's own code.
    fn containment_api(&self) -> Box<dyn crate::functions::containment::ContainmentApi + '_>;
}
