//! The simulator backend: an in-process AWS for exactly the lab's resources.
//!
//! The account lives in the state directory and is written through on every change, so
//! separate `cis up`, `cis attack` and `cis down` invocations behave as they would against
//! AWS, and a process killed mid-command leaves what AWS would have. Time is virtual: the
//! CLI runs the simulator on a paused current-thread tokio runtime, and a pump task
//! processes the data plane's events as virtual time reaches them. One seed gives one
//! history.

pub mod baseline;
pub mod dataplane;
pub mod latency;
pub mod world;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use self::baseline::LabModels;
use self::dataplane::{AttackState, Context, Invocation};
use self::latency::{Delay, LatencyModel};
use self::world::{Detail, InstanceState, World};
use crate::clock::{Clock, Timestamp};
use crate::cloud::{
    AccountInfo, AttackHandle, Cloud, CloudError, CloudKind, CloudResource, DetectionEvent, LabTarget, Observation, ResourceStatus,
};
use crate::containment::{ContainmentApi, InstanceView, InterfaceView, VolumeView};
use crate::detection::DetectorApi;
use crate::error::{Error, Result};
use crate::lab::{LabName, Refs, ResourceKind, ResourceSpec, Role, Tags};
use crate::ledger::check_header;
use crate::scenario::{BaselineProfile, Scenario};
use crate::state::{json_error_message, lock_exclusive, LockGuard};

/// The seed of a new simulated account when none is given.
pub const DEFAULT_SEED: u64 = 1;

/// Test hook: abort the process right after this many persisted control-plane changes, as
/// SIGKILL would, to prove that a crash at any step leaves nothing `down` cannot remove.
pub const CRASH_AFTER_ENV: &str = "CIS_SIM_CRASH_AFTER";

struct Shared {
    world: Mutex<World>,
    path: PathBuf,
    latency: LatencyModel,
    baselines: Vec<BaselineProfile>,
    clock: Clock,
    wake: Notify,
    mutations: AtomicU64,
    crash_after: Option<u64>,
}

impl Shared {
    /// Locks the world with every event due by now processed; spawns what they invoke.
    fn world_now(self: &Arc<Self>) -> MutexGuard<'_, World> {
        let mut w = self.world.lock().unwrap_or_else(|p| p.into_inner());
        let ctx = Context { latency: &self.latency, baselines: &self.baselines, models: LabModels::shared() };
        let invocations = w.advance(self.clock.now(), &ctx);
        for inv in invocations {
            self.spawn_function(inv);
        }
        w
    }

    /// Runs a Lambda invocation as a task: the functions' own code over the simulator's
    /// side of their traits, fed the payloads AWS would send.
    fn spawn_function(self: &Arc<Self>, inv: Invocation) {
        let shared = Arc::clone(self);
        match inv {
            Invocation::Containment { at, config, event } => {
                tokio::spawn(async move {
                    shared.clock.sleep_until(at).await;
                    let api = SimContainment { shared: Arc::clone(&shared) };
                    let outcome = crate::containment::handle(&api, &config, &event).await;
                    shared.world_now().pipeline.containments.push(outcome);
                    shared.wake.notify_one();
                });
            }
            Invocation::Detector { at, function, config, lines } => {
                tokio::spawn(async move {
                    shared.clock.sleep_until(at).await;
                    let model = match LabModels::shared().get_calibrated(
                        config.window_s,
                        &config.baseline,
                        config.target_fpr,
                        &shared.latency,
                        &shared.baselines,
                    ) {
                        Ok(m) => m,
                        Err(e) => {
                            shared.world_now().pipeline.failures.push(format!("{at}: detector {function} has no model: {e}"));
                            return;
                        }
                    };
                    let event = {
                        let w = shared.world.lock().unwrap_or_else(|p| p.into_inner());
                        subscription_event(&w, &function, lines)
                    };
                    let api = SimDetector { shared: Arc::clone(&shared), model: Arc::clone(&model) };
                    if let Err(e) = crate::detection::handle(&api, &config, &model, event.as_bytes()).await {
                        shared.world_now().pipeline.failures.push(format!("{at}: detector {function} failed: {e}"));
                    }
                    shared.wake.notify_one();
                });
            }
        }
    }

    fn save(&self, world: &mut World) -> Result<()> {
        // The account as of now, without copying it: `now` set for the write, then put back.
        let was = world.now;
        world.now = self.clock.now().max(was);
        let text = serde_json::to_vec(&*world).map_err(|e| Error::Internal(e.to_string()));
        world.now = was;
        crate::state::write_replacing_unsynced(&self.path, &text?)
    }

    /// Persists a control-plane change, then honours the crash hook.
    fn commit(&self, world: &mut World) -> std::result::Result<(), CloudError> {
        self.save(world).map_err(|e| CloudError::Other(format!("simulated account not saved: {e}")))?;
        let n = self.mutations.fetch_add(1, Ordering::SeqCst) + 1;
        if self.crash_after == Some(n) {
            eprintln!("cis: {CRASH_AFTER_ENV}={n}: aborting as if killed");
            std::process::abort();
        }
        self.wake.notify_one();
        Ok(())
    }

    /// One API call's latency, drawn from the model.
    async fn api_latency(self: &Arc<Self>) {
        let d = {
            let mut w = self.world.lock().unwrap_or_else(|p| p.into_inner());
            self.latency.draw(Delay::ApiCall, &mut w.rng)
        };
        tokio::time::sleep(d).await;
    }
}

/// The simulated AWS.
pub struct SimCloud {
    shared: Arc<Shared>,
    pump: JoinHandle<()>,
    _lock: LockGuard,
}

impl SimCloud {
    /// Opens (or creates) the simulated account in `dir`. Must run inside the paused
    /// runtime. `seed` reseeds the account's generator; without it a new account uses
    /// [`DEFAULT_SEED`] and an existing one continues its stream.
    pub fn open(dir: &Path, seed: Option<u64>, region: &str) -> Result<SimCloud> {
        let lock = lock_exclusive(&dir.join("lock"), &format!("the simulated account in {}", dir.display()))?;
        let path = dir.join("account.json");
        let mut world = match std::fs::read_to_string(&path) {
            Ok(text) => load_world(&text, &path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => World::new(seed.unwrap_or(DEFAULT_SEED), region),
            Err(e) => return Err(Error::io(&path, e)),
        };
        if let Some(seed) = seed {
            world.seed = seed;
            world.rng = crate::rng::Rng::seeded(seed);
        }
        let crash_after = std::env::var(CRASH_AFTER_ENV).ok().and_then(|v| v.parse().ok());
        let shared = Arc::new(Shared {
            clock: Clock::virtual_from(world.now),
            world: Mutex::new(world),
            path,
            latency: LatencyModel::embedded(),
            baselines: crate::scenario::baselines(),
            wake: Notify::new(),
            mutations: AtomicU64::new(0),
            crash_after,
        });
        {
            let mut w = shared.world.lock().unwrap_or_else(|p| p.into_inner());
            shared.save(&mut w)?;
        }
        let pump = tokio::spawn(pump(Arc::clone(&shared)));
        Ok(SimCloud { shared, pump, _lock: lock })
    }

    /// A read-only look at the account, for tests and status.
    pub fn inspect<T>(&self, f: impl FnOnce(&World) -> T) -> T {
        f(&self.shared.world_now())
    }

    pub fn seed(&self) -> u64 {
        self.shared.world.lock().unwrap_or_else(|p| p.into_inner()).seed
    }
}

impl Drop for SimCloud {
    fn drop(&mut self) {
        self.pump.abort();
        let mut w = self.shared.world.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self.shared.save(&mut w);
    }
}

/// Reads a persisted account, refusing one this version cannot read.
pub fn load_world(text: &str, path: &Path) -> Result<World> {
    let bad = |message: String| Error::BadState { path: path.to_path_buf(), message };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        bad(format!(
            "not a readable simulated account: {}; it was left as it is: move it aside to start a fresh account",
            json_error_message(&e)
        ))
    })?;
    check_header(&value, world::FORMAT, world::VERSION).map_err(bad)?;
    serde_json::from_value(value)
        .map_err(|e| bad(format!("damaged simulated account: {e}; it was left as it is: move it aside to start a fresh account")))
}

/// Where an attack run is kept in the account.
fn attack_key(lab: &LabName, run_id: &str) -> String {
    format!("{lab}/{run_id}")
}

/// Processes data-plane events as virtual time reaches them.
async fn pump(shared: Arc<Shared>) {
    loop {
        let next = shared.world_now().next_event_at();
        match next {
            Some(t) => {
                tokio::select! {
                    biased;
                    _ = shared.wake.notified() => {}
                    _ = shared.clock.sleep_until(t) => {}
                }
            }
            None => shared.wake.notified().await,
        }
    }
}

#[async_trait]
impl Cloud for SimCloud {
    fn kind(&self) -> CloudKind {
        CloudKind::Sim
    }

    fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    async fn account(&self) -> std::result::Result<AccountInfo, CloudError> {
        let w = self.shared.world_now();
        Ok(AccountInfo {
            account_id: w.account_id.clone(),
            region: w.region.clone(),
            description: format!(
                "simulator (account {}, seed {}, virtual time {}, state {})",
                w.account_id,
                w.seed,
                self.shared.clock.now(),
                self.shared.path.display()
            ),
        })
    }

    async fn create(&self, spec: &ResourceSpec, refs: &Refs) -> std::result::Result<String, CloudError> {
        self.shared.api_latency().await;
        let mut w = self.shared.world_now();
        let id = w.create(spec, refs, self.shared.clock.now(), &self.shared.latency)?;
        self.shared.commit(&mut w)?;
        Ok(id)
    }

    async fn find(&self, spec: &ResourceSpec, refs: &Refs) -> std::result::Result<Option<String>, CloudError> {
        self.shared.api_latency().await;
        Ok(self.shared.world_now().find(spec, refs))
    }

    async fn status(&self, kind: ResourceKind, id: &str) -> std::result::Result<ResourceStatus, CloudError> {
        self.shared.api_latency().await;
        self.shared.world_now().status(kind, id)
    }

    async fn delete(&self, kind: ResourceKind, id: &str) -> std::result::Result<(), CloudError> {
        self.shared.api_latency().await;
        let protected = kind == ResourceKind::Instance && {
            let w = self.shared.world_now();
            matches!(w.get(id).map(|r| &r.detail), Some(Detail::Instance { termination_protected: true, .. }))
        };
        if protected {
            // Containment protected it for forensics: lift that first, as the AWS backend does.
            {
                let mut w = self.shared.world_now();
                w.set_termination_protection(id, false)?;
                self.shared.commit(&mut w)?;
            }
            self.shared.api_latency().await;
        }
        let mut w = self.shared.world_now();
        w.delete(kind, id, self.shared.clock.now(), &self.shared.latency)?;
        self.shared.commit(&mut w)
    }

    async fn list_lab(&self, lab: &LabName) -> std::result::Result<Vec<CloudResource>, CloudError> {
        self.shared.api_latency().await;
        Ok(self.shared.world_now().list_lab(lab.as_str()))
    }

    async fn list_labs(&self) -> std::result::Result<Vec<LabName>, CloudError> {
        self.shared.api_latency().await;
        Ok(self.shared.world_now().labs().into_iter().filter_map(|l| l.parse().ok()).collect())
    }

    async fn first_delivery(&self, target: &LabTarget) -> std::result::Result<Option<Timestamp>, CloudError> {
        self.shared.api_latency().await;
        let w = self.shared.world_now();
        let lg = target.id(Role::LogGroup).ok_or_else(|| CloudError::Invalid("the lab has no log group".into()))?;
        match w.get(lg).map(|r| &r.detail) {
            Some(Detail::LogGroup { first_delivery_at, .. }) => Ok(*first_delivery_at),
            _ => Err(CloudError::NotFound { kind: ResourceKind::LogGroup, id: lg.to_string() }),
        }
    }

    async fn alarm_firing(&self, target: &LabTarget) -> std::result::Result<bool, CloudError> {
        let Some(alarm) = target.id(Role::EgressAlarm) else { return Ok(false) };
        self.shared.api_latency().await;
        let w = self.shared.world_now();
        match w.get(alarm).map(|r| &r.detail) {
            Some(Detail::Alarm { state, .. }) => Ok(*state == crate::metric::AlarmState::Alarm),
            _ => Err(CloudError::NotFound { kind: ResourceKind::MetricAlarm, id: alarm.to_string() }),
        }
    }

    async fn start_attack(&self, target: &LabTarget, scenario: &Scenario, run_id: &str) -> std::result::Result<AttackHandle, CloudError> {
        self.shared.api_latency().await;
        let now = self.shared.clock.now();
        let mut w = self.shared.world_now();
        let instance =
            target.id(Role::TargetInstance).ok_or_else(|| CloudError::Invalid("the lab has no target instance".into()))?.to_string();
        match w.get(&instance).map(|r| &r.detail) {
            Some(Detail::Instance { state: InstanceState::Running, .. }) => {}
            Some(_) => return Err(CloudError::Invalid(format!("target {instance} is not running"))),
            None => return Err(CloudError::NotFound { kind: ResourceKind::Instance, id: instance }),
        }
        // Run ids count per lab; the account holds every lab's runs.
        let key = attack_key(&target.lab, run_id);
        if w.attacks.contains_key(&key) {
            return Err(CloudError::AlreadyExists { kind: ResourceKind::Instance, name: format!("attack run {run_id}") });
        }
        w.attacks.insert(
            key.clone(),
            AttackState {
                run_id: run_id.to_string(),
                lab: target.lab.to_string(),
                instance: instance.clone(),
                scenario: scenario.clone(),
                started_at: now,
                finished_at: None,
                transfers: vec![],
                first_records_delivered_at: None,
                streams_left: scenario.streams.len() as u32,
                open_conns: 0,
            },
        );
        for (i, s) in scenario.streams.iter().enumerate() {
            let source = dataplane::Source::Attack { run: key.clone(), stream: i };
            w.schedule(now.plus_secs_f64(s.start_s), dataplane::Event::OpenConnection { instance: instance.clone(), source, index: 0 });
        }
        self.shared.commit(&mut w)?;
        Ok(AttackHandle {
            run_id: run_id.to_string(),
            scenario: scenario.id.clone(),
            started_at: now,
            backend_ref: format!("sim:{run_id}"),
        })
    }

    async fn observe(&self, target: &LabTarget, attack: &AttackHandle) -> std::result::Result<Observation, CloudError> {
        self.shared.api_latency().await;
        let w = self.shared.world_now();
        let a = w
            .attacks
            .get(&attack_key(&target.lab, &attack.run_id))
            .ok_or_else(|| CloudError::NotFound { kind: ResourceKind::Instance, id: format!("attack run {}", attack.run_id) })?;
        let since = a.started_at;
        let instance = a.instance.clone();
        let isolation = target.id(Role::IsolationSecurityGroup).unwrap_or_default().to_string();
        let instance_isolated = match w.get(&instance).map(|r| &r.detail) {
            Some(Detail::Instance { interfaces, .. }) => {
                !interfaces.is_empty() && interfaces.iter().all(|i| i.groups == [isolation.clone()])
            }
            _ => false,
        };
        let topic = target.id(Role::Topic).unwrap_or_default();
        Ok(Observation {
            attack_finished_at: a.finished_at,
            transfers: a.transfers.clone(),
            first_records_delivered_at: a.first_records_delivered_at,
            detections: w.pipeline.detections.iter().filter(|d| d.at >= since && d.instance_id == instance).cloned().collect(),
            containments: w.pipeline.containments.iter().filter(|c| c.invoked_at >= since && c.instance_id == instance).cloned().collect(),
            notifications: w
                .pipeline
                .notifications
                .iter()
                .filter(|n| n.at >= since && n.topic == topic)
                .map(|n| crate::cloud::Notification { at: n.at, subject: n.subject.clone() })
                .collect(),
            instance_isolated,
        })
    }

    fn containment_api(&self) -> Box<dyn ContainmentApi + '_> {
        Box::new(SimContainment { shared: Arc::clone(&self.shared) })
    }

    async fn checkpoint(&self) -> std::result::Result<(), CloudError> {
        let mut w = self.shared.world_now();
        self.shared.save(&mut w).map_err(|e| CloudError::Other(format!("simulated account not saved: {e}")))
    }
}

/// The Lambda event CloudWatch Logs sends a subscribed function, for these lines.
fn subscription_event(w: &World, function: &str, lines: Vec<String>) -> String {
    use crate::flowlog::envelope::{encode_lambda_event, LogEvent, LogsData};
    let filter = w.live_resources().into_iter().find_map(|r| match &r.detail {
        Detail::SubscriptionFilter { log_group, function: f, .. } if f == function => Some((log_group.clone(), r.name.clone())),
        _ => None,
    });
    let (log_group, filter) = filter.unwrap_or_default();
    let stream =
        lines.first().and_then(|l| l.split(' ').find(|f| f.starts_with("eni-"))).map(|eni| format!("{eni}-all")).unwrap_or_default();
    encode_lambda_event(&LogsData {
        message_type: "DATA_MESSAGE".into(),
        owner: w.account_id.clone(),
        log_group: log_group.rsplit(':').next().unwrap_or_default().to_string(),
        log_stream: stream,
        subscription_filters: vec![filter],
        log_events: lines
            .into_iter()
            .enumerate()
            .map(|(i, message)| LogEvent { id: i.to_string(), timestamp: w.now.millis(), message })
            .collect(),
    })
}

/// The detector function's view of the simulated SageMaker runtime and EventBridge.
struct SimDetector {
    shared: Arc<Shared>,
    model: Arc<crate::detector::Model>,
}

#[async_trait]
impl DetectorApi for SimDetector {
    fn now(&self) -> Timestamp {
        self.shared.clock.now()
    }

    async fn invoke_endpoint(&self, endpoint: &str, csv: &str) -> std::result::Result<Vec<u8>, CloudError> {
        self.shared.api_latency().await;
        self.shared.world_now().invoke_endpoint(endpoint, csv, &self.model)
    }

    async fn put_detections(&self, detections: &[DetectionEvent]) -> std::result::Result<(), CloudError> {
        self.shared.api_latency().await;
        let now = self.shared.clock.now();
        let mut w = self.shared.world_now();
        let ctx = Context { latency: &self.shared.latency, baselines: &self.shared.baselines, models: LabModels::shared() };
        w.put_detections(now, detections, &ctx);
        drop(w);
        self.shared.wake.notify_one();
        Ok(())
    }
}

/// The containment function's view of the simulated EC2 and SNS.
struct SimContainment {
    shared: Arc<Shared>,
}

#[async_trait]
impl ContainmentApi for SimContainment {
    fn now(&self) -> Timestamp {
        self.shared.clock.now()
    }

    async fn describe_instance(&self, instance_id: &str) -> std::result::Result<InstanceView, CloudError> {
        self.shared.api_latency().await;
        let w = self.shared.world_now();
        match w.get(instance_id) {
            Some(r) => match &r.detail {
                Detail::Instance { interfaces, termination_protected, .. } => Ok(InstanceView {
                    id: r.id.clone(),
                    tags: r.tags.clone(),
                    interfaces: interfaces.iter().map(|i| InterfaceView { id: i.id.clone(), groups: i.groups.clone() }).collect(),
                    volumes: w
                        .volumes_of(instance_id)
                        .into_iter()
                        .map(|(id, device, delete_on_termination)| VolumeView { id, device, delete_on_termination })
                        .collect(),
                    termination_protected: *termination_protected,
                }),
                _ => Err(CloudError::NotFound { kind: ResourceKind::Instance, id: instance_id.to_string() }),
            },
            None => Err(CloudError::NotFound { kind: ResourceKind::Instance, id: instance_id.to_string() }),
        }
    }

    async fn set_interface_groups(&self, interface_id: &str, groups: &[String]) -> std::result::Result<(), CloudError> {
        self.shared.api_latency().await;
        let mut w = self.shared.world_now();
        w.set_interface_groups(interface_id, groups)?;
        self.shared.wake.notify_one();
        Ok(())
    }

    async fn tag_instance(&self, instance_id: &str, tags: &Tags) -> std::result::Result<(), CloudError> {
        self.shared.api_latency().await;
        let mut w = self.shared.world_now();
        match w.resources.get_mut(instance_id) {
            Some(r) if r.kind == ResourceKind::Instance => {
                r.tags.extend(tags.clone());
                Ok(())
            }
            _ => Err(CloudError::NotFound { kind: ResourceKind::Instance, id: instance_id.to_string() }),
        }
    }

    async fn protect_from_termination(&self, instance_id: &str) -> std::result::Result<(), CloudError> {
        self.shared.api_latency().await;
        self.shared.world_now().set_termination_protection(instance_id, true)
    }

    async fn keep_volumes(&self, instance_id: &str, devices: &[String]) -> std::result::Result<(), CloudError> {
        self.shared.api_latency().await;
        self.shared.world_now().keep_volumes(instance_id, devices)
    }

    async fn snapshot_volume(&self, volume_id: &str, description: &str, tags: &Tags) -> std::result::Result<String, CloudError> {
        self.shared.api_latency().await;
        let now = self.shared.clock.now();
        self.shared.world_now().snapshot_volume(volume_id, description, tags, now)
    }

    async fn publish(&self, topic_arn: &str, subject: &str, message: &str) -> std::result::Result<(), CloudError> {
        self.shared.api_latency().await;
        let now = self.shared.clock.now();
        let mut w = self.shared.world_now();
        if w.get(topic_arn).is_none_or(|r| r.kind != ResourceKind::SnsTopic) {
            return Err(CloudError::NotFound { kind: ResourceKind::SnsTopic, id: topic_arn.to_string() });
        }
        w.pipeline.notifications.push(dataplane::SimNotification {
            at: now,
            topic: topic_arn.to_string(),
            subject: subject.to_string(),
            message: message.to_string(),
        });
        Ok(())
    }
}
