//! The orchestration: ordering, retries, waits, the state ledger and measurement, written
//! once and run unchanged on every backend.
//!
//! `up` creates the graph in dependency order, independent branches concurrently, writing
//! the ledger ahead of every create. `down` deletes in reverse dependency order, treats
//! NotFound as done, retries what AWS says will pass (DependencyViolation, throttling),
//! then sweeps anything still tagged with the lab, and removes the ledger last.

// What the orchestration reports as it goes; app shows it.
pub mod progress;
// A lab run's measurement and its record on disk.
pub mod measure;
// A walk over a dependency graph: vertices, blockers and a callback.
mod walk;
// Arming a learning lab: training on its own flow logs, then the graph that needed it.
mod arm;

pub use arm::{ArmReport, DEFAULT_WARMUP};
pub use progress::{Progress, Silent};

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use self::walk::{walk, Visit, WalkError};
use crate::base::clock::Timestamp;
use crate::base::error::{Error, Result};
use crate::base::files::{lock_exclusive, LockGuard};
use crate::cloud::{AccountInfo, Cloud, CloudError, ResourceStatus};
use crate::model::lab::pricing::PriceTable;
use crate::model::lab::{rendered, LabGraph, LabName, LabOptions, Refs, ResourceKind, ResourceSpec, Role};
use crate::store::ledger::{Entry, EntryState, Ledger, LedgerFile};
use crate::store::state::StateDir;

/// How long transient errors are retried before giving up.
const CREATE_RETRY_FOR: Duration = Duration::from_secs(180);
const DELETE_RETRY_FOR: Duration = Duration::from_secs(900);
/// How long after its creation a resource's describe call may still not find it.
const VISIBILITY_GRACE: Duration = Duration::from_secs(60);

/// A lab's time to live counts from `up`, and the lab should be of use for a while after
/// `up` ends: at least this long.
const TTL_AFTER_UP_S: f64 = 15.0 * 60.0;

/// Refuses a `--ttl` that would have the janitor delete the lab before it is of use, or
/// right after: SageMaker's training job and endpoint take 28 minutes at the 99th
/// percentile of the latency table (assets/latency.toml, AWS's figures), and a 15-minute
/// TTL expired during `up` itself. A lab that `learns` its own traffic first (AWS) is of
/// use only once armed: after its warm-up, and then its forest's training and endpoint.
fn ttl_outlasts_up(o: &LabOptions, learns: bool) -> Result<()> {
    use crate::model::lab::DetectorMode;
    use crate::sim::latency::{Delay, LatencyModel};
    let Some(ttl) = o.ttl_s else { return Ok(()) };
    let latency = LatencyModel::embedded();
    let p99 = |d: Delay| latency.get(d).quantile(0.99);
    let model_endpoint = if o.detector == DetectorMode::Endpoint { p99(Delay::TrainingJob) + p99(Delay::EndpointCreation) } else { 0.0 };
    let llm_endpoint = if o.llm { p99(Delay::EndpointCreation) } else { 0.0 };
    // What the lab must outlast, plus a quarter of an hour of use, in whole 5 minutes.
    let needed_for = |busy_s: f64| ((busy_s + TTL_AFTER_UP_S) / 300.0).ceil() * 300.0;
    if learns {
        let warmup = arm::warmup_of(o).as_secs_f64();
        let armed_s = warmup + model_endpoint;
        let needed = needed_for(armed_s.max(llm_endpoint));
        if (ttl as f64) < needed {
            return Err(Error::Usage(format!(
                "--ttl {:.1} h: this lab learns its own traffic for {:.1} h (its warm-up) before `cis arm` may arm it{}, and its time to live counts from `up`: give --ttl {:.0}m or more, or a shorter --warmup",
                ttl as f64 / 3600.0,
                warmup / 3600.0,
                if model_endpoint > 0.0 {
                    format!(", and arming then takes up to {:.0} min (its SageMaker training job and endpoint)", model_endpoint / 60.0)
                } else {
                    String::new()
                },
                needed / 60.0
            )));
        }
        return Ok(());
    }
    let up_s = model_endpoint.max(llm_endpoint);
    let needed = needed_for(up_s);
    if up_s > 0.0 && (ttl as f64) < needed {
        let what = if model_endpoint >= llm_endpoint { "its SageMaker training job and endpoint" } else { "the --llm endpoint" };
        return Err(Error::Usage(format!(
            "--ttl {} min: this lab takes up to {:.0} min to stand up ({what}, at the 99th percentile of assets/latency.toml), and its time to live counts from `up`: give --ttl {:.0}m or more{}",
            ttl / 60,
            up_s / 60.0,
            needed / 60.0,
            if o.detector == DetectorMode::Endpoint { ", or --detector lambda" } else { "" }
        )));
    }
    Ok(())
}

/// How a resource ended the wait for it.
enum Readiness {
    Ready,
    /// The cloud gave up on it (why, in the cloud's words): only a new one can work.
    GaveUp(String),
}

/// How many times `up` deletes and makes again a resource the cloud gave up on (a flow log
/// in "Access error", an endpoint `Failed`) before it stops and says so.
const MAKE_FAILED_AGAIN: u32 = 2;
/// What the janitor's sweep leaves:
/// - its own role and policy: a role cannot delete itself (DeleteRole wants the role's
///   policies gone first, and with them the permission to call it). IAM roles cost
///   nothing; the operator's `cis down` removes it, and `cis status` shows it.
/// - the topic, its subscription and the janitor's logs until the end, so that a failure
///   can still be announced and read.
pub const JANITOR_KEEPS: [Role; 5] = [Role::JanitorRole, Role::JanitorPolicy, Role::Topic, Role::TopicSubscription, Role::JanitorLogs];

const MAX_BACKOFF: Duration = Duration::from_secs(20);

fn ready_timeout(kind: ResourceKind) -> (Duration, Duration) {
    // (give up after, longest poll interval); SDK waiters poll endpoints every 30 s.
    match kind {
        ResourceKind::SageMakerEndpoint => (Duration::from_secs(40 * 60), Duration::from_secs(30)),
        // The job's own stopping condition ends it within an hour.
        ResourceKind::SageMakerTrainingJob => (Duration::from_secs(65 * 60), Duration::from_secs(30)),
        ResourceKind::Instance => (Duration::from_secs(10 * 60), Duration::from_secs(5)),
        _ => (Duration::from_secs(5 * 60), Duration::from_secs(5)),
    }
}

/// What `up` did to one resource.
/// What `up` did with one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Created,
    /// Found by its name or tags after a crash cut its create short.
    Adopted,
    /// Recorded in the ledger, not ready yet: waited for.
    Resumed,
    Unchanged,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Adopted => "adopted",
            Action::Resumed => "resumed",
            Action::Unchanged => "unchanged",
        }
    }
}

/// How `down` found a resource it deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FoundBy {
    /// The ledger named it.
    Ledger,
    /// Only its lab tag did (the sweep).
    Sweep,
}

#[derive(Clone, Debug, Serialize)]
pub struct Applied {
    pub role: Role,
    pub kind: ResourceKind,
    pub id: String,
    pub action: Action,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct UpReport {
    pub lab: String,
    pub cloud: String,
    pub run: String,
    pub resources: Vec<Applied>,
    pub seconds: f64,
    pub usd_per_hour: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Deleted {
    pub role: Option<Role>,
    pub kind: ResourceKind,
    pub id: String,
    pub via: FoundBy,
}

/// What `release` did.
#[derive(Clone, Debug, Serialize)]
pub struct ReleaseReport {
    pub lab: String,
    pub cloud: String,
    pub instance: String,
    /// Empty when the instance was never isolated.
    pub restored: Vec<RestoredInterface>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RestoredInterface {
    pub interface: String,
    pub groups: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DownReport {
    pub lab: String,
    pub cloud: String,
    pub deleted: Vec<Deleted>,
    pub had_ledger: bool,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct StatusEntry {
    pub role: Option<Role>,
    pub kind: ResourceKind,
    pub name: String,
    pub id: Option<String>,
    /// Live state: `ready`, `pending: ...`, `deleting: ...`, `missing` (in the ledger, not
    /// in the cloud: drift), `untracked` (tagged in the cloud, not in the ledger: drift),
    /// `intent` (a create that may not have happened).
    pub state: String,
    pub drift: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    pub lab: String,
    pub cloud: String,
    pub up: bool,
    pub complete: bool,
    pub created_at: Option<Timestamp>,
    pub now: Timestamp,
    pub resources: Vec<StatusEntry>,
    pub usd_per_hour: f64,
    pub usd_so_far: f64,
    /// What the detector is trained on: learning, or armed on what.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arming: Option<crate::model::lab::Arming>,
    /// How much of its own traffic the lab learns before it may be armed.
    #[serde(skip)]
    pub warmup: Duration,
    /// When the lab deletes itself (`cis up --ttl`), and how long until then (negative
    /// once past).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds_left: Option<f64>,
}

pub struct Orchestrator<'a> {
    pub cloud: &'a dyn Cloud,
    pub progress: &'a dyn Progress,
    pub state: &'a StateDir,
}

/// Which options differ, as `name: was A, now B`, by name.
fn options_differ(was: &LabOptions, now: &LabOptions) -> String {
    let (was, now) = (serde_json::to_value(was).unwrap_or_default(), serde_json::to_value(now).unwrap_or_default());
    let empty = serde_json::Map::new();
    let (was, now) = (was.as_object().unwrap_or(&empty), now.as_object().unwrap_or(&empty));
    let keys: BTreeSet<&String> = was.keys().chain(now.keys()).collect();
    let show = |v: Option<&serde_json::Value>| match v {
        None | Some(serde_json::Value::Null) => "none".to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let differ: Vec<String> = keys
        .into_iter()
        .filter(|k| was.get(*k) != now.get(*k))
        .map(|k| format!("{k}: was {}, now {}", show(was.get(k)), show(now.get(k))))
        .collect();
    if differ.is_empty() {
        "the same options, written differently".into()
    } else {
        differ.join("; ")
    }
}

impl<'a> Orchestrator<'a> {
    pub fn new(cloud: &'a dyn Cloud, progress: &'a dyn Progress, state: &'a StateDir) -> Self {
        Orchestrator { cloud, progress, state }
    }

    fn lock_lab(&self, lab: &LabName) -> Result<LockGuard> {
        lock_exclusive(&self.state.lab_dir(self.cloud.kind(), lab).join("lock"), &format!("lab '{lab}'"))
    }

    pub fn load_ledger(&self, lab: &LabName) -> Result<Option<Ledger>> {
        Ledger::load(&self.state.ledger(self.cloud.kind(), lab))
    }

    /// The lab's ledger, refused when it was written in another account or region: there
    /// every id it holds reads as gone, and `down` would drop the ledger and leave the lab
    /// running where it is. (A ledger from before the two were recorded has them empty.)
    fn ledger_here(&self, lab: &LabName, account: &AccountInfo) -> Result<Option<Ledger>> {
        let ledger = self.load_ledger(lab)?;
        if let Some(l) = &ledger {
            let differs = |recorded: &str, now: &str| !recorded.is_empty() && recorded != now;
            if differs(&l.account_id, &account.account_id) || differs(&l.region, &account.region) {
                return Err(Error::Usage(format!(
                    "lab '{lab}' was created in account {} region {}, but this command reaches account {} region {}: run it with --region {} and credentials of account {}; nothing was changed",
                    l.account_id, l.region, account.account_id, account.region, l.region, l.account_id
                )));
            }
        }
        Ok(ledger)
    }

    /// Retries transient errors with exponential backoff (no jitter: runs stay repeatable).
    async fn retrying<T, F, Fut>(&self, label: &str, give_up_after: Duration, mut op: F) -> Result<T, CloudError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CloudError>>,
    {
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(500);
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() && started.elapsed() + delay <= give_up_after => {
                    self.progress.update(label, &format!("retrying in {:.1} s: {e}", delay.as_secs_f64()));
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_BACKOFF);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// [`Orchestrator::retrying`], with NotFound retried too for [`VISIBILITY_GRACE`]: AWS's
    /// describe and modify calls are eventually consistent, and an id just created may
    /// not be found for a while. The one place that waits for an id to become visible.
    async fn until_visible<T, F, Fut>(&self, label: &str, mut op: F) -> Result<T, CloudError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CloudError>>,
    {
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_secs(1);
        loop {
            match self.retrying(label, CREATE_RETRY_FOR, &mut op).await {
                Err(CloudError::NotFound { .. }) if started.elapsed() < VISIBILITY_GRACE => {
                    self.progress.update(label, "waiting: not visible yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_BACKOFF);
                }
                r => return r,
            }
        }
    }

    /// What a new lab's detector starts from. On AWS it learns the lab's own traffic
    /// until `cis arm`; the simulator's labs are armed at once on their workload's
    /// simulated baseline (its log groups keep no records to learn from).
    fn first_arming(&self, now: Timestamp) -> crate::model::lab::Arming {
        use crate::model::lab::Arming;
        if self.learns_own_traffic() {
            Arming::Learning { since: now }
        } else {
            Arming::SimulatedBaseline
        }
    }

    /// Whether this cloud's labs learn their own traffic before they are armed (AWS).
    fn learns_own_traffic(&self) -> bool {
        self.cloud.kind() == crate::cloud::CloudKind::Aws
    }

    /// Polls until the resource is ready, or the cloud gives up on it.
    async fn wait_ready(&self, label: &str, kind: ResourceKind, id: &str) -> Result<Readiness, CloudError> {
        let (timeout, cap) = ready_timeout(kind);
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_secs(1);
        loop {
            let status = self.until_visible(label, || self.cloud.status(kind, id)).await?;
            match status {
                ResourceStatus::Ready => return Ok(Readiness::Ready),
                ResourceStatus::Failed(why) => return Ok(Readiness::GaveUp(why)),
                ResourceStatus::Pending(s) | ResourceStatus::Deleting(s) => {
                    if started.elapsed() >= timeout {
                        return Err(CloudError::Other(format!("{kind} {id} still '{s}' after {} min", timeout.as_secs() / 60)));
                    }
                    self.progress.update(label, &format!("waiting: {s}"));
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(cap);
                }
            }
        }
    }

    /// Creates the lab, or resumes it, or confirms it is complete.
    pub async fn up(&self, lab: &LabName, options: &LabOptions) -> Result<UpReport> {
        // Before anything of a new lab exists, its lock file included; a lab that exists
        // was checked when it was new.
        if self.load_ledger(lab)?.is_none() {
            ttl_outlasts_up(options, self.learns_own_traffic())?;
        }
        let account = self.cloud.account().await?;
        let _lock = self.lock_lab(lab)?;
        let path = self.state.ledger(self.cloud.kind(), lab);
        let clock = self.cloud.clock();
        let started = clock.now();
        let ledger = match self.ledger_here(lab, &account)? {
            Some(l) if l.options != *options => {
                return Err(Error::Usage(format!(
                    "lab '{lab}' exists with other options ({}); run `cis down --lab {lab}` first, or `cis up` with the options it was created with",
                    options_differ(&l.options, options)
                )))
            }
            Some(l) => l,
            None => {
                let mut l = Ledger::new(
                    lab.clone(),
                    self.cloud.kind(),
                    account.account_id.clone(),
                    account.region.clone(),
                    format!("up-{}", started.compact()),
                    options.clone(),
                    started,
                );
                l.arming = self.first_arming(started);
                l
            }
        };
        let graph = LabGraph::build(lab, options, &ledger.run).armed(&ledger.arming);
        let file = Mutex::new(LedgerFile { path, ledger });
        file.lock().expect("not poisoned").update(|l| l.complete = false)?;
        let applied = Mutex::new(Vec::new());

        let result = walk(
            graph.roles().collect(),
            |role| graph.get(role).map(|s| s.depends_on.clone()).unwrap_or_default(),
            |role, refs| -> Visit<'_, String, Error> {
                let spec = graph.get(role).expect("role from the graph").clone();
                let refs = refs.clone();
                let (file, applied, account) = (&file, &applied, &account);
                Box::pin(async move {
                    let a = self.ensure(&spec, &refs, file, &account.account_id, &account.region).await?;
                    let id = a.id.clone();
                    applied.lock().expect("not poisoned").push(a);
                    Ok(Some(id))
                })
            },
        )
        .await;
        result.map_err(|e| match e {
            WalkError::Failed(role, Error::Cloud(ce)) => Error::LabState(format!(
                "creating {role} failed: {ce}; what was created is in the ledger: run `cis up --lab {lab}` again to resume, or `cis down --lab {lab}` to remove it"
            )),
            WalkError::Failed(_, other) => other,
            WalkError::Cycle(roles) => Error::Internal(format!("dependency cycle in the lab graph among {roles:?}")),
        })?;
        let mut file = file.into_inner().expect("not poisoned");
        file.update(|l| l.complete = true)?;
        self.cloud.checkpoint().await?;

        let mut resources = applied.into_inner().expect("not poisoned");
        let order: Vec<Role> = graph.roles().collect();
        resources.sort_by_key(|a| order.iter().position(|r| *r == a.role));
        let usd_per_hour = PriceTable::embedded().lab_costs(&graph).iter().map(|(_, c)| c.usd_per_hour).sum();
        Ok(UpReport {
            lab: lab.to_string(),
            cloud: self.cloud.kind().name().into(),
            run: file.ledger.run.clone(),
            resources,
            seconds: clock.now().seconds_since(started),
            usd_per_hour,
        })
    }

    /// Makes one resource exist and be ready, recording each step in the ledger first.
    async fn ensure(&self, spec: &ResourceSpec, refs: &Refs, file: &Mutex<LedgerFile>, account: &str, region: &str) -> Result<Applied> {
        let label = spec.role.name();
        let clock = self.cloud.clock();
        let t0 = clock.now();
        let lab: LabName = spec.tags[crate::model::lab::TAG_LAB].parse().map_err(Error::Internal)?;
        let spec = rendered(spec, &lab, region, account, refs)?;
        // A threshold the graph leaves to its baseline (the egress alarm's) is set here, once
        // for both backends.
        let mut spec = crate::training::calibrated(spec)?;
        // The TTL counts from the lab's creation, as the ledger has it: a resumed `up`
        // keeps the first expiry.
        if let crate::model::lab::ResourceConfig::Schedule { at, .. } = &mut spec.config {
            *at = file.lock().expect("not poisoned").ledger.expires_at();
        }
        let entry = file.lock().expect("not poisoned").ledger.entry(spec.role).cloned();
        let set = |id: Option<String>, state: EntryState| -> Result<()> {
            let entry = Entry { role: spec.role, kind: spec.kind, name: spec.name.clone(), id, state, updated_at: clock.now() };
            file.lock().expect("not poisoned").update(|l| l.set(entry))
        };

        // Already recorded: keep it if the cloud still has it.
        let mut existing = None;
        if let Some(Entry { id: Some(id), .. }) = &entry {
            match self.retrying(label, CREATE_RETRY_FOR, || self.cloud.status(spec.kind, id)).await {
                Ok(ResourceStatus::Ready) if entry.as_ref().map(|e| e.state) == Some(EntryState::Ready) => {
                    self.progress.finish(label, &format!("{} {id} (unchanged)", spec.kind));
                    return Ok(Applied { role: spec.role, kind: spec.kind, id: id.clone(), action: Action::Unchanged, seconds: 0.0 });
                }
                Ok(ResourceStatus::Ready | ResourceStatus::Pending(_)) => existing = Some(id.clone()),
                Ok(ResourceStatus::Failed(_) | ResourceStatus::Deleting(_)) | Err(CloudError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.progress.begin(label, &spec.name, if existing.is_some() { "resuming" } else { "creating" });

        let mut action = Action::Adopted;
        let id = match existing {
            Some(id) => {
                action = Action::Resumed;
                id
            }
            None => {
                // A create may have happened before a crash: look before creating again.
                let found = match entry.as_ref().map(|e| e.state) {
                    Some(EntryState::Intent | EntryState::Created | EntryState::Deleting) => {
                        self.retrying(label, CREATE_RETRY_FOR, || self.cloud.find(&spec, refs)).await?
                    }
                    _ => None,
                };
                match found {
                    Some(id) => id,
                    None => {
                        set(None, EntryState::Intent)?;
                        action = Action::Created;
                        match self.retrying(label, CREATE_RETRY_FOR, || self.cloud.create(&spec, refs)).await {
                            Ok(id) => id,
                            Err(CloudError::AlreadyExists { .. }) => {
                                action = Action::Adopted;
                                self.retrying(label, CREATE_RETRY_FOR, || self.cloud.find(&spec, refs)).await?.ok_or_else(|| {
                                    Error::LabState(format!(
                                        "{} '{}' already exists but is not this lab's (no matching cis:lab tag): rename the lab with --lab or remove it",
                                        spec.kind, spec.name
                                    ))
                                })?
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
            }
        };
        set(Some(id.clone()), EntryState::Created)?;
        let mut id = id;
        let mut made_again = 0;
        while let Readiness::GaveUp(why) = self.wait_ready(label, spec.kind, &id).await? {
            if made_again == MAKE_FAILED_AGAIN {
                return Err(CloudError::Other(format!(
                    "{} {id} failed: {why} (made again {made_again} times after it first failed); `cis up` tries again, `cis down` removes the lab",
                    spec.kind
                ))
                .into());
            }
            // The cloud gave up on it (a flow log whose role was not yet assumable): only a
            // new one can work. The ledger holds the old id until it is gone.
            self.progress.update(label, &format!("failed ({why}): deleting it and making it again"));
            self.delete_and_wait(label, spec.kind, &id).await?;
            set(None, EntryState::Intent)?;
            id = self.retrying(label, CREATE_RETRY_FOR, || self.cloud.create(&spec, refs)).await?;
            set(Some(id.clone()), EntryState::Created)?;
            action = Action::Created;
            made_again += 1;
        }
        // Created, resumed or adopted alike: settings a crash may have left undone.
        self.until_visible(label, || self.cloud.converge(&spec, &id, refs)).await?;
        set(Some(id.clone()), EntryState::Ready)?;
        let seconds = clock.now().seconds_since(t0);
        self.progress.finish(label, &format!("{} {id} ({} in {seconds:.1} s)", spec.kind, action.name()));
        Ok(Applied { role: spec.role, kind: spec.kind, id, action, seconds })
    }

    /// Deletes one resource and waits until it is gone.
    async fn delete_and_wait(&self, label: &str, kind: ResourceKind, id: &str) -> Result<bool, CloudError> {
        self.progress.begin(label, id, "deleting");
        match self.retrying(label, DELETE_RETRY_FOR, || self.cloud.delete(kind, id)).await {
            Ok(()) => {}
            Err(CloudError::NotFound { .. }) => {
                self.progress.finish(label, &format!("{kind} {id} (already gone)"));
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        let started = tokio::time::Instant::now();
        let (timeout, cap) = ready_timeout(kind);
        let mut delay = Duration::from_secs(1);
        loop {
            match self.retrying(label, DELETE_RETRY_FOR, || self.cloud.status(kind, id)).await {
                Err(CloudError::NotFound { .. }) => break,
                Err(e) => return Err(e),
                Ok(s) => {
                    if started.elapsed() >= timeout {
                        return Err(CloudError::Other(format!("{kind} {id} not gone after {} min ({s:?})", timeout.as_secs() / 60)));
                    }
                    if let ResourceStatus::Deleting(d) | ResourceStatus::Pending(d) = &s {
                        self.progress.update(label, &format!("waiting: {d}"));
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(cap);
                }
            }
        }
        self.progress.finish(label, &format!("{kind} {id} deleted"));
        Ok(true)
    }

    /// Deletes everything of the lab: first what the ledger names, then whatever still
    /// carries the lab's tag; removes the ledger last.
    pub async fn down(&self, lab: &LabName) -> Result<DownReport> {
        self.down_keeping(lab, &[]).await
    }

    /// [`Orchestrator::down`], with the sweep leaving the resources of `keep`'s roles
    /// where they are. Only the sweep keeps anything: its one caller that keeps, the
    /// janitor, has no ledger.
    async fn down_keeping(&self, lab: &LabName, keep: &[Role]) -> Result<DownReport> {
        let account = self.cloud.account().await?;
        let _lock = self.lock_lab(lab)?;
        let clock = self.cloud.clock();
        let started = clock.now();
        let path = self.state.ledger(self.cloud.kind(), lab);
        let ledger = self.ledger_here(lab, &account)?;
        let had_ledger = ledger.is_some();
        let deleted = Mutex::new(Vec::new());

        if let Some(ledger) = ledger {
            let graph = LabGraph::build(lab, &ledger.options, &ledger.run);
            let refs: Refs = ledger.entries.iter().filter_map(|e| e.id.clone().map(|id| (e.role, id))).collect();
            // Tagged with a role but not the ledger's: a create whose answer was lost and
            // that was made again. It goes in its role's turn, or it holds up what it
            // depends on (an instance keeps its gateway's public address mapped).
            let known: BTreeSet<&String> = refs.values().collect();
            let mut duplicates: BTreeMap<Role, Vec<crate::cloud::CloudResource>> = BTreeMap::new();
            for r in self.retrying("down", DELETE_RETRY_FOR, || self.cloud.list_lab(lab)).await? {
                if let Some(role) = r.role.filter(|_| !known.contains(&r.id)) {
                    duplicates.entry(role).or_default().push(r);
                }
            }
            let file = Mutex::new(LedgerFile { path: path.clone(), ledger });
            let mut roles: Vec<Role> = file.lock().expect("not poisoned").ledger.entries.iter().map(|e| e.role).collect();
            roles.extend(duplicates.keys().filter(|r| !roles.contains(r)).copied().collect::<Vec<_>>());
            let result = walk(
                roles,
                |role| graph.dependents(role),
                |role, _| -> Visit<'_, String, Error> {
                    let (file, deleted, graph, refs, duplicates) = (&file, &deleted, &graph, &refs, &duplicates);
                    Box::pin(async move {
                        for extra in duplicates.get(&role).into_iter().flatten() {
                            if self.delete_and_wait(role.name(), extra.kind, &extra.id).await? {
                                deleted.lock().expect("not poisoned").push(Deleted {
                                    role: Some(role),
                                    kind: extra.kind,
                                    id: extra.id.clone(),
                                    via: FoundBy::Sweep,
                                });
                            }
                        }
                        let Some(entry) = file.lock().expect("not poisoned").ledger.entry(role).cloned() else {
                            return Ok(None);
                        };
                        let id = match (&entry.id, graph.get(role)) {
                            (Some(id), _) => Some(id.clone()),
                            // Only an intent: the create may or may not have happened.
                            (None, Some(spec)) => self.retrying(role.name(), DELETE_RETRY_FOR, || self.cloud.find(spec, refs)).await?,
                            (None, None) => None,
                        };
                        if let Some(id) = id {
                            file.lock().expect("not poisoned").update(|l| {
                                l.set(Entry { id: Some(id.clone()), state: EntryState::Deleting, updated_at: clock.now(), ..entry.clone() })
                            })?;
                            if self.delete_and_wait(role.name(), entry.kind, &id).await? {
                                deleted.lock().expect("not poisoned").push(Deleted {
                                    role: Some(role),
                                    kind: entry.kind,
                                    id,
                                    via: FoundBy::Ledger,
                                });
                            }
                        }
                        file.lock().expect("not poisoned").update(|l| l.remove(role))?;
                        Ok(None)
                    })
                },
            )
            .await;
            result.map_err(|e| match e {
                WalkError::Failed(role, e) => Error::LabState(format!(
                    "deleting {role} failed: {e}; the ledger still names what is left: run `cis down --lab {lab}` again"
                )),
                WalkError::Cycle(roles) => Error::Internal(format!("dependency cycle in the lab graph among {roles:?}")),
            })?;
        }

        // The sweep: whatever still carries the lab's tag, deepest dependents first.
        // Volumes and snapshots play no role: they go right after the instance they belong
        // to (a volume is in use until its instance has terminated).
        let order = |r: &crate::cloud::CloudResource| {
            let position = |role: Role| Role::ALL.iter().position(|x| *x == role);
            std::cmp::Reverse(match (r.role, r.kind) {
                (Some(role), _) => (position(role).unwrap_or(usize::MAX), 1),
                (None, ResourceKind::Volume | ResourceKind::Snapshot) => (position(Role::TargetInstance).unwrap_or(0), 0),
                (None, _) => (usize::MAX, 1),
            })
        };
        for pass in 0..2 {
            let mut leftovers = self.retrying("sweep", DELETE_RETRY_FOR, || self.cloud.list_lab(lab)).await?;
            leftovers.retain(|r| !r.role.is_some_and(|role| keep.contains(&role)));
            leftovers.sort_by_key(order);
            if leftovers.is_empty() {
                break;
            }
            if pass == 1 {
                let names: Vec<String> = leftovers.iter().map(|r| format!("{} {}", r.kind, r.id)).collect();
                return Err(Error::LabState(format!(
                    "{} resource(s) of lab '{lab}' are still there after the sweep ({}): run `cis down --lab {lab}` again",
                    names.len(),
                    names.join(", ")
                )));
            }
            for r in leftovers {
                let label = r.role.map(Role::name).unwrap_or("untracked");
                match self.delete_and_wait(label, r.kind, &r.id).await {
                    Ok(true) => {
                        deleted.lock().expect("not poisoned").push(Deleted { role: r.role, kind: r.kind, id: r.id, via: FoundBy::Sweep })
                    }
                    Ok(false) => {}
                    Err(e) => {
                        return Err(Error::LabState(format!(
                            "sweeping {} {} of lab '{lab}' failed: {e}; run `cis down --lab {lab}` again",
                            r.kind, r.id
                        )))
                    }
                }
            }
        }

        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
        self.cloud.checkpoint().await?;
        Ok(DownReport {
            lab: lab.to_string(),
            cloud: self.cloud.kind().name().into(),
            deleted: deleted.into_inner().expect("not poisoned"),
            had_ledger,
            seconds: clock.now().seconds_since(started),
        })
    }

    /// What the lab's janitor function runs when the lab's time to live is up, on either
    /// backend: `down` with no ledger (the function's scratch directory), so the sweep of
    /// everything tagged with the lab, in the reverse of the roles' order, but for
    /// [`JANITOR_KEEPS`]. Then, on success, the topic and the janitor's logs go; on
    /// failure the topic's subscribers are told what is left and what to run, so a
    /// janitor that could not finish is heard.
    pub async fn janitor(cloud: &dyn Cloud, lab: &LabName, scratch: &std::path::Path) -> Result<DownReport> {
        let state = StateDir::new(scratch);
        let orch = Orchestrator::new(cloud, &crate::orchestrator::Silent, &state);
        let tagged = orch.retrying("janitor", DELETE_RETRY_FOR, || cloud.list_lab(lab)).await?;
        let topic = tagged.iter().find(|r| r.role == Some(Role::Topic)).map(|r| r.id.clone());
        let swept = async {
            let mut report = orch.down_keeping(lab, &JANITOR_KEEPS).await?;
            // The kept parts that may go now, dependents first.
            const LAST: [Role; 3] = [Role::TopicSubscription, Role::Topic, Role::JanitorLogs];
            let mut last: Vec<crate::cloud::CloudResource> = orch
                .retrying("janitor", DELETE_RETRY_FOR, || cloud.list_lab(lab))
                .await?
                .into_iter()
                .filter(|r| r.role.is_some_and(|role| LAST.contains(&role)))
                .collect();
            last.sort_by_key(|r| LAST.iter().position(|l| Some(*l) == r.role));
            for r in last {
                let label = r.role.map(Role::name).unwrap_or("untracked");
                if orch.delete_and_wait(label, r.kind, &r.id).await? {
                    report.deleted.push(Deleted { role: r.role, kind: r.kind, id: r.id, via: FoundBy::Sweep });
                }
            }
            Ok::<DownReport, Error>(report)
        };
        match swept.await {
            Ok(report) => Ok(report),
            Err(e) => {
                let Some(topic) = topic else { return Err(e) };
                let message = format!(
                    "The time-to-live janitor of lab '{lab}' could not finish: {e}. What is left may still bill: run `cis down --lab {lab}`."
                );
                match cloud.containment_api().publish(&topic, &format!("cis: lab {lab} was not removed"), &message).await {
                    Ok(()) => Err(e),
                    Err(p) => Err(Error::LabState(format!("{e}; telling the topic {topic} failed too: {p}"))),
                }
            }
        }
    }

    /// Undoes containment's isolation of the target: every interface back to the groups
    /// recorded before it, with the containment function's own code. Forensic snapshots
    /// stay until `down`.
    pub async fn release(&self, lab: &LabName) -> Result<ReleaseReport> {
        self.cloud.account().await?;
        let _lock = self.lock_lab(lab)?;
        let ledger = self
            .load_ledger(lab)?
            .ok_or_else(|| Error::LabState(format!("lab '{lab}' has no ledger on {}: nothing to release", self.cloud.kind().name())))?;
        let id = |role: Role| {
            ledger
                .entry(role)
                .and_then(|e| e.id.clone())
                .ok_or_else(|| Error::LabState(format!("lab '{lab}' has no {role} yet: run `cis up --lab {lab}` first")))
        };
        let instance = id(Role::TargetInstance)?;
        let config = crate::functions::containment::ContainmentConfig {
            lab: lab.to_string(),
            topic_arn: id(Role::Topic)?,
            allow_all_group: ledger.entry(Role::AllowAllSecurityGroup).and_then(|e| e.id.clone()),
            isolation_group: id(Role::IsolationSecurityGroup)?,
            forensics: ledger.options.forensics,
            steps: ledger.options.isolation,
        };
        let api = self.cloud.containment_api();
        let restored =
            self.retrying("release", DELETE_RETRY_FOR, || crate::functions::containment::release(api.as_ref(), &config, &instance)).await?;
        // What led to the isolation is dealt with: the networks the target kept going back
        // to are forgotten, so the next run (or the target's own traffic) is judged afresh
        // and no run is caught on what an earlier one sent.
        let target = measure::target_of(&ledger);
        self.retrying("forgetting the detector's memory", DELETE_RETRY_FOR, || self.cloud.forget_detector_memory(&target)).await?;
        self.cloud.checkpoint().await?;
        Ok(ReleaseReport {
            lab: lab.to_string(),
            cloud: self.cloud.kind().name().into(),
            instance,
            restored: restored.into_iter().map(|(interface, groups)| RestoredInterface { interface, groups }).collect(),
        })
    }

    /// Every resource of the lab with its live state, drift from the ledger, and cost.
    pub async fn status(&self, lab: &LabName) -> Result<StatusReport> {
        let account = self.cloud.account().await?;
        let now = self.cloud.clock().now();
        let ledger = self.ledger_here(lab, &account)?;
        let tagged = self.retrying("status", CREATE_RETRY_FOR, || self.cloud.list_lab(lab)).await?;
        let mut resources = Vec::new();
        let mut live_roles = Vec::new();
        if let Some(l) = &ledger {
            for e in &l.entries {
                let state = match &e.id {
                    None => "intent".to_string(),
                    Some(id) => match self.retrying("status", CREATE_RETRY_FOR, || self.cloud.status(e.kind, id)).await {
                        Ok(ResourceStatus::Ready) => {
                            live_roles.push(e.role);
                            "ready".into()
                        }
                        Ok(ResourceStatus::Pending(s)) => {
                            live_roles.push(e.role);
                            format!("pending: {s}")
                        }
                        Ok(ResourceStatus::Deleting(s)) => format!("deleting: {s}"),
                        Ok(ResourceStatus::Failed(s)) => format!("failed: {s}"),
                        Err(CloudError::NotFound { .. }) => "missing".into(),
                        Err(e) => return Err(e.into()),
                    },
                };
                let drift = state == "missing";
                resources.push(StatusEntry { role: Some(e.role), kind: e.kind, name: e.name.clone(), id: e.id.clone(), state, drift });
            }
        }
        let known: BTreeSet<&str> = ledger.iter().flat_map(|l| l.entries.iter().filter_map(|e| e.id.as_deref())).collect();
        for r in tagged.iter().filter(|r| !known.contains(r.id.as_str())) {
            // The instance's volumes and containment's snapshots are expected, not drift.
            let (state, drift) = match r.kind {
                ResourceKind::Volume => ("volume of the target (kept if containment preserved it)", false),
                ResourceKind::Snapshot => ("forensic snapshot (deleted by down)", false),
                _ => ("untracked", true),
            };
            resources.push(StatusEntry {
                role: r.role,
                kind: r.kind,
                name: r.name.clone(),
                id: Some(r.id.clone()),
                state: state.into(),
                drift,
            });
        }
        let (usd_per_hour, created_at) = match &ledger {
            Some(l) => {
                let graph = LabGraph::build(lab, &l.options, &l.run).armed(&l.arming);
                let costs: BTreeMap<Role, f64> =
                    PriceTable::embedded().lab_costs(&graph).into_iter().map(|(r, c)| (r, c.usd_per_hour)).collect();
                (live_roles.iter().map(|r| costs.get(r).copied().unwrap_or(0.0)).sum::<f64>(), Some(l.created_at))
            }
            None => (0.0, None),
        };
        let hours = created_at.map(|c| now.seconds_since(c) / 3600.0).unwrap_or(0.0);
        let expires_at = ledger.as_ref().and_then(|l| l.expires_at());
        Ok(StatusReport {
            expires_at,
            seconds_left: expires_at.map(|e| e.seconds_since(now)),
            lab: lab.to_string(),
            cloud: self.cloud.kind().name().into(),
            up: ledger.is_some(),
            complete: ledger.as_ref().is_some_and(|l| l.complete),
            created_at,
            now,
            resources,
            usd_per_hour,
            usd_so_far: usd_per_hour * hours,
            arming: ledger.as_ref().map(|l| l.arming.clone()),
            warmup: ledger.as_ref().map_or(arm::DEFAULT_WARMUP, |l| arm::warmup_of(&l.options)),
        })
    }
}
