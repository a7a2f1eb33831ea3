//! The simulator backend: an in-process AWS for exactly the lab's resources.
//!
//! The account lives in the state directory and is written through on every change, so
//! separate `cis up`, `cis attack` and `cis down` invocations behave as they would against
//! AWS, and a process killed mid-command leaves what AWS would have. Time is virtual: the
//! CLI runs the simulator on a paused current-thread tokio runtime, and a pump task
//! processes the data plane's events as virtual time reaches them. One seed gives one
//! history.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::base::clock::{Clock, Timestamp};
use crate::base::error::{Error, Result};
use crate::base::files::{json_error_message, lock_exclusive, LockGuard};
use crate::base::versioned::check_header;
use crate::cloud::{AccountInfo, AttackHandle, Cloud, CloudError, CloudKind, CloudResource, LabTarget, Observation, ResourceStatus};
use crate::functions::containment::{ContainmentApi, InstanceView, InterfaceView, VolumeView};
use crate::functions::detector::DetectorApi;
use crate::model::events::{DetectionEvent, Outcome};
use crate::model::lab::{LabName, Refs, ResourceKind, ResourceSpec, Role, Tags};
use crate::model::scenario::{WorkloadProfile, Scenario};
use crate::sim::dataplane::{Context, Invocation};
use crate::sim::faults::{Call, FaultProfile, Injector};
use crate::sim::latency::{Delay, LatencyModel};
use crate::sim::world::{Detail, InstanceState, World};
use crate::training::LabModels;

/// The seed of a new simulated account when none is given.
pub const DEFAULT_SEED: u64 = 1;

/// Test hook: abort the process right after this many persisted control-plane changes, as
/// SIGKILL would, to prove that a crash at any step leaves nothing `down` cannot remove.
pub const CRASH_AFTER_ENV: &str = "CIS_SIM_CRASH_AFTER";

struct Shared {
    world: Mutex<World>,
    path: PathBuf,
    /// The latency model as the fault profile bends it.
    latency: LatencyModel,
    /// The latency model as given (shipped, or `--latency`): what the baseline capture
    /// behind a model runs with.
    base_latency: LatencyModel,
    workloads: Vec<WorkloadProfile>,
    clock: Clock,
    wake: Notify,
    mutations: AtomicU64,
    crash_after: Option<u64>,
    faults: Mutex<Injector>,
    /// Ids a describe call does not find yet (the consistency profile), until when.
    invisible_until: Mutex<std::collections::BTreeMap<String, Timestamp>>,
    /// Until when a terminated instance's interface still holds its subnet and groups.
    detaching_until: Mutex<Option<Timestamp>>,
    /// One lock per containment function: its reserved concurrency of 1 runs duplicate
    /// deliveries one after the other, so the second sees the first's isolation.
    serial: Mutex<std::collections::BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Shared {
    /// Locks the world with every event due by now processed; spawns what they invoke.
    fn world_now(self: &Arc<Self>) -> MutexGuard<'_, World> {
        let mut w = self.world.lock().unwrap_or_else(|p| p.into_inner());
        let ctx = self.context();
        let invocations = w.advance(self.clock.now(), &ctx);
        for inv in invocations {
            self.spawn_function(inv);
        }
        w
    }

    fn context(&self) -> Context<'_> {
        Context { latency: &self.latency, workloads: &self.workloads, faults: &self.faults }
    }

    fn injector(&self) -> MutexGuard<'_, Injector> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The faults a control-plane call meets: none, or one error before the service saw it.
    fn inject(&self, api: &str) -> Result<(), CloudError> {
        match self.injector().before(api) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A call from inside a function, as the AWS SDK makes it: its standard retry mode
    /// retries throttling and 5xx answers, three attempts in all, with jittered backoff.
    async fn inject_with_sdk_retries(&self, api: &str) -> Result<(), CloudError> {
        let mut attempt = 0;
        loop {
            let fault = self.injector().before(api);
            match fault {
                None => return Ok(()),
                Some(e) if attempt == 2 => return Err(e),
                Some(_) => {
                    let jitter = self.injector().uniform();
                    tokio::time::sleep(Duration::from_secs_f64(jitter * f64::from(1u32 << attempt))).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Answers a mutating call whose change was made: or, now and then, loses the answer.
    fn answer<T>(&self, api: &str, value: T, call: Call) -> Result<T, CloudError> {
        if call == Call::Mutate && self.injector().lose_response() {
            return Err(CloudError::Unavailable(format!("{api}: InternalError after the change took effect (injected)")));
        }
        Ok(value)
    }

    /// Runs a Lambda invocation as a task: the functions' own code over the simulator's
    /// side of their traits, fed the payloads AWS would send.
    fn spawn_function(self: &Arc<Self>, inv: Invocation) {
        let shared = Arc::clone(self);
        match inv {
            Invocation::Containment { at, function, config, event, attempt } => {
                tokio::spawn(async move {
                    shared.clock.sleep_until(at).await;
                    let one_at_a_time = matches!(
                        shared.world_now().get(&function).map(|r| &r.detail),
                        Some(Detail::Function { reserved_concurrency: Some(1), .. })
                    );
                    let serial = one_at_a_time.then(|| {
                        let mut locks = shared.serial.lock().unwrap_or_else(|p| p.into_inner());
                        Arc::clone(locks.entry(function.clone()).or_default())
                    });
                    let _turn = match &serial {
                        Some(lock) => Some(lock.lock().await),
                        None => None,
                    };
                    let api = SimContainment { shared: Arc::clone(&shared), as_function: true };
                    let outcome = crate::functions::containment::handle(&api, &config, &event).await;
                    let failed = outcome.outcome == Outcome::Failed;
                    let error = outcome.detail.clone();
                    let now = shared.clock.now();
                    let mut w = shared.world_now();
                    w.pipeline.containments.push(outcome);
                    if failed {
                        // The function answers with an error: Lambda retries the event.
                        w.retry_invocation(
                            now,
                            attempt,
                            &function,
                            crate::sim::traffic::Event::DeliverEvent {
                                function: function.clone(),
                                event,
                                attempt: attempt + 1,
                                delivery: 0,
                            },
                            &error,
                        );
                    }
                    drop(w);
                    shared.wake.notify_one();
                });
            }
            Invocation::Janitor { at, lab } => {
                tokio::spawn(async move {
                    shared.clock.sleep_until(at).await;
                    // The janitor function's code: `down` of its lab with no ledger (a
                    // Lambda's /tmp), so the sweep by tag, against the account it runs in.
                    let cloud = SimCloud { shared: Arc::clone(&shared), pump: None, _lock: None };
                    let scratch = shared.path.with_file_name("janitor");
                    let report = match lab.parse::<LabName>() {
                        Ok(name) => crate::orchestrator::Orchestrator::janitor(&cloud, &name, &scratch).await,
                        Err(e) => Err(Error::Usage(e)),
                    };
                    let line = match report {
                        Ok(r) => format!("{at}: janitor of lab {lab}: deleted {} resource(s)", r.deleted.len()),
                        Err(e) => format!("{at}: janitor of lab {lab} failed: {e}"),
                    };
                    cloud.shared.world_now().pipeline.janitor_runs.push(line);
                    cloud.shared.wake.notify_one();
                });
            }
            Invocation::Detector { at, function, config, lines, attempt } => {
                tokio::spawn(async move {
                    shared.clock.sleep_until(at).await;
                    let model = match LabModels::shared().get_calibrated(
                        config.window_s,
                        &config.baseline,
                        config.target_fpr,
                        &shared.base_latency,
                        &shared.workloads,
                    ) {
                        Ok(m) => m,
                        Err(e) => {
                            shared.world_now().pipeline.failures.push(format!("{at}: detector {function} has no model: {e}"));
                            return;
                        }
                    };
                    let event = {
                        let w = shared.world.lock().unwrap_or_else(|p| p.into_inner());
                        crate::sim::dataplane::subscription_event(&w, &function, &lines)
                    };
                    let api = SimDetector { shared: Arc::clone(&shared), model: Arc::clone(&model), function: function.clone() };
                    match crate::functions::detector::handle(&api, &config, &model, event.as_bytes()).await {
                        // Scored, but without its memory or without saving it: a fault worth
                        // seeing, though the batch did not fail.
                        Ok(report) => {
                            if let Some(trouble) = report.memory_trouble {
                                shared.world_now().pipeline.failures.push(format!("{at}: detector {function}: {trouble}"));
                            }
                        }
                        // As the function does: a payload that is not a subscription event
                        // is reported, not failed, since a retry would fail the same way.
                        Err(e @ crate::functions::detector::DetectorError::Envelope(_)) => {
                            shared.world_now().pipeline.failures.push(format!("{at}: detector {function} refused its event: {e}"));
                        }
                        Err(e) => {
                            let now = shared.clock.now();
                            let mut w = shared.world_now();
                            w.pipeline.failures.push(format!("{at}: detector {function} failed: {e}"));
                            w.retry_invocation(
                                now,
                                attempt,
                                &function,
                                crate::sim::traffic::Event::InvokeDetector { function: function.clone(), lines, attempt: attempt + 1 },
                                &e.to_string(),
                            );
                        }
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
        crate::base::files::write_replacing_unsynced(&self.path, &text?)
    }

    /// Persists a control-plane change, then honours the crash hook.
    fn commit(&self, world: &mut World) -> Result<(), CloudError> {
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
    /// The operator's handle runs the pump and holds the account's lock; a janitor's
    /// handle (the cloud acting on itself) has neither.
    pump: Option<JoinHandle<()>>,
    _lock: Option<LockGuard>,
}

impl SimCloud {
    /// Opens (or creates) the simulated account in `dir`. Must run inside the paused
    /// runtime. `seed` reseeds the account's generator; without it a new account uses
    /// [`DEFAULT_SEED`] and an existing one continues its stream.
    pub fn open(dir: &Path, seed: Option<u64>, region: &str) -> Result<SimCloud> {
        SimCloud::open_with_faults(dir, seed, region, FaultProfile::None)
    }

    /// As [`SimCloud::open`], with the faults of `profile` injected; they draw from their
    /// own generator, seeded by the account's seed.
    pub fn open_with_faults(dir: &Path, seed: Option<u64>, region: &str, profile: FaultProfile) -> Result<SimCloud> {
        SimCloud::open_with(dir, seed, region, profile, LatencyModel::embedded())
    }

    /// As [`SimCloud::open_with_faults`], with the delays of `latency` (`--latency FILE`)
    /// instead of the shipped ones. The account does not keep them: each command gives
    /// its own, as it gives its faults.
    pub fn open_with(dir: &Path, seed: Option<u64>, region: &str, profile: FaultProfile, latency: LatencyModel) -> Result<SimCloud> {
        // A new account draws its region's service endpoints from the prefixes AWS
        // publishes for it: a region without them is refused before anything is written.
        use crate::detect::destinations::{AwsRegion, AwsService};
        if !dir.join("account.json").exists() && [AwsService::S3, AwsService::Amazon].iter().any(|s| AwsRegion::serving(*s, region).is_none()) {
            return Err(Error::Usage(format!(
                "--region {region}: AWS's published address ranges (assets/aws-prefixes.txt) hold no S3 or service endpoints there, so the simulator cannot place them: give a region such as us-east-1 or eu-west-1"
            )));
        }
        let lock = lock_exclusive(&dir.join("lock"), &format!("the simulated account in {}", dir.display()))?;
        let path = dir.join("account.json");
        let world = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut world = load_world(&text, &path)?;
                // Only an existing account is reseeded: a new one was just seeded, and
                // reseeding it would restart the stream after the account's own draws,
                // so `--seed 1` would differ from the default seed 1.
                if let Some(seed) = seed {
                    world.seed = seed;
                    world.rng = crate::base::rng::Rng::seeded(seed);
                }
                world
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => World::new(seed.unwrap_or(DEFAULT_SEED), region),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let crash_after = std::env::var(CRASH_AFTER_ENV).ok().and_then(|v| v.parse().ok());
        let injector = Injector::new(profile, world.seed);
        let base_latency = latency;
        let shared = Arc::new(Shared {
            clock: Clock::virtual_from(world.now),
            world: Mutex::new(world),
            path,
            latency: injector.rates.latency(&base_latency),
            base_latency,
            workloads: crate::model::scenario::workloads(),
            wake: Notify::new(),
            mutations: AtomicU64::new(0),
            crash_after,
            faults: Mutex::new(injector),
            invisible_until: Default::default(),
            detaching_until: Default::default(),
            serial: Default::default(),
        });
        {
            let mut w = shared.world.lock().unwrap_or_else(|p| p.into_inner());
            shared.save(&mut w)?;
        }
        let pump = tokio::spawn(pump(Arc::clone(&shared)));
        Ok(SimCloud { shared, pump: Some(pump), _lock: Some(lock) })
    }

    /// A read-only look at the account, for tests and status.
    pub fn inspect<T>(&self, f: impl FnOnce(&World) -> T) -> T {
        f(&self.shared.world_now())
    }

    pub fn seed(&self) -> u64 {
        self.shared.world.lock().unwrap_or_else(|p| p.into_inner()).seed
    }

    /// The fault profile this account runs with.
    pub fn fault_profile(&self) -> FaultProfile {
        self.shared.injector().profile
    }

    /// How many faults of each kind were injected so far.
    pub fn faults_injected(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.shared.injector().injected.clone()
    }

    /// Under a profile that kills the operator's process: after how much virtual time this
    /// command dies, drawn from the fault generator within `within`. The caller kills it
    /// (the CLI aborts; a test drops the command's future, which is what a kill leaves).
    pub fn kill_after(&self, within: Duration) -> Option<Duration> {
        let mut f = self.shared.injector();
        if !f.rates.crash {
            return None;
        }
        f.count("kill scheduled");
        Some(within.mul_f64(f.uniform()))
    }
}

impl Drop for SimCloud {
    fn drop(&mut self) {
        if let Some(pump) = &self.pump {
            pump.abort();
        }
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
    check_header(&value, crate::sim::world::FORMAT, crate::sim::world::VERSION).map_err(bad)?;
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

    async fn account(&self) -> Result<AccountInfo, CloudError> {
        let w = self.shared.world_now();
        Ok(AccountInfo {
            account_id: w.account_id.clone(),
            region: w.region.clone(),
            description: format!(
                "simulator (account {} in {}, seed {}, virtual time {}, state {})",
                w.account_id,
                w.region,
                w.seed,
                self.shared.clock.now(),
                self.shared.path.display()
            ),
        })
    }

    async fn create(&self, spec: &ResourceSpec, refs: &Refs) -> Result<String, CloudError> {
        self.shared.api_latency().await;
        self.shared.inject(&format!("create {}", spec.kind))?;
        let now = self.shared.clock.now();
        let mut w = self.shared.world_now();
        let id = w.create(spec, refs, now, &self.shared.latency)?;
        self.shared.commit(&mut w)?;
        drop(w);
        let invisible_for = self.shared.injector().rates.invisible_for_s;
        if invisible_for > 0.0 {
            let until = now.plus_secs_f64(invisible_for * self.shared.injector().uniform());
            self.shared.invisible_until.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), until);
        }
        self.shared.answer(&format!("create {}", spec.kind), id, Call::Mutate)
    }

    async fn converge(&self, _spec: &ResourceSpec, _id: &str, _refs: &Refs) -> Result<(), CloudError> {
        // The simulated create applies every setting in the same step, under the world's
        // lock: there is nothing left to converge.
        Ok(())
    }

    async fn find(&self, spec: &ResourceSpec, refs: &Refs) -> Result<Option<String>, CloudError> {
        self.shared.api_latency().await;
        self.shared.inject(&format!("find {}", spec.kind))?;
        Ok(self.shared.world_now().find(spec, refs))
    }

    async fn status(&self, kind: ResourceKind, id: &str) -> Result<ResourceStatus, CloudError> {
        self.shared.api_latency().await;
        self.shared.inject(&format!("describe {kind}"))?;
        let now = self.shared.clock.now();
        let invisible = self.shared.invisible_until.lock().unwrap_or_else(|p| p.into_inner()).get(id).is_some_and(|until| now < *until);
        if invisible {
            self.shared.injector().count("not yet visible");
            return Err(CloudError::NotFound { kind: kind.name(), id: id.to_string() });
        }
        self.shared.world_now().status(kind, id)
    }

    async fn delete(&self, kind: ResourceKind, id: &str) -> Result<(), CloudError> {
        self.shared.api_latency().await;
        self.shared.inject(&format!("delete {kind}"))?;
        let now = self.shared.clock.now();
        if matches!(kind, ResourceKind::SecurityGroup | ResourceKind::Subnet) {
            let detaching = self.shared.detaching_until.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|until| now < until);
            if detaching {
                self.shared.injector().count("interface still detaching");
                return Err(CloudError::DependencyViolation {
                    what: id.to_string(),
                    detail: "DependencyViolation: a network interface of a terminated instance is still detaching (injected)".into(),
                });
            }
        }
        let linger = self.shared.injector().rates.detach_linger_s;
        if kind == ResourceKind::Instance && linger > 0.0 {
            let until =
                now.plus(self.shared.latency.max(Delay::InstanceTermination)).plus_secs_f64(linger * self.shared.injector().uniform());
            *self.shared.detaching_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(until);
        }
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
        self.shared.commit(&mut w)?;
        drop(w);
        self.shared.answer(&format!("delete {kind}"), (), Call::Mutate)
    }

    async fn list_lab(&self, lab: &LabName) -> Result<Vec<CloudResource>, CloudError> {
        self.shared.api_latency().await;
        self.shared.inject("tag:GetResources")?;
        Ok(self.shared.world_now().list_lab(lab.as_str()))
    }

    async fn list_labs(&self) -> Result<Vec<LabName>, CloudError> {
        self.shared.api_latency().await;
        self.shared.inject("tag:GetResources")?;
        Ok(self.shared.world_now().labs().into_iter().filter_map(|l| l.parse().ok()).collect())
    }

    async fn first_delivery(&self, target: &LabTarget) -> Result<Option<Timestamp>, CloudError> {
        self.shared.api_latency().await;
        self.shared.inject("logs:DescribeLogStreams")?;
        let w = self.shared.world_now();
        let lg = target.id(Role::LogGroup).ok_or_else(|| CloudError::Invalid("the lab has no log group".into()))?;
        match w.get(lg).map(|r| &r.detail) {
            Some(Detail::LogGroup { first_delivery_at, .. }) => Ok(*first_delivery_at),
            _ => Err(CloudError::NotFound { kind: ResourceKind::LogGroup.name(), id: lg.to_string() }),
        }
    }

    async fn alarm_firing(&self, target: &LabTarget) -> Result<bool, CloudError> {
        let Some(alarm) = target.id(Role::EgressAlarm) else { return Ok(false) };
        self.shared.api_latency().await;
        self.shared.inject("cloudwatch:DescribeAlarms")?;
        let w = self.shared.world_now();
        match w.get(alarm).map(|r| &r.detail) {
            Some(Detail::Alarm { state, .. }) => Ok(*state == crate::formats::metric::AlarmState::Alarm),
            _ => Err(CloudError::NotFound { kind: ResourceKind::MetricAlarm.name(), id: alarm.to_string() }),
        }
    }

    async fn start_attack(&self, target: &LabTarget, scenario: &Scenario, run_id: &str) -> Result<AttackHandle, CloudError> {
        self.shared.api_latency().await;
        self.shared.inject("ssm:SendCommand")?;
        let now = self.shared.clock.now();
        let mut w = self.shared.world_now();
        let instance =
            target.id(Role::TargetInstance).ok_or_else(|| CloudError::Invalid("the lab has no target instance".into()))?.to_string();
        match w.get(&instance).map(|r| &r.detail) {
            Some(Detail::Instance { state: InstanceState::Running, .. }) => {}
            Some(_) => return Err(CloudError::Invalid(format!("target {instance} is not running"))),
            None => return Err(CloudError::NotFound { kind: ResourceKind::Instance.name(), id: instance }),
        }
        // Run ids count per lab; the account holds every lab's runs.
        let key = attack_key(&target.lab, run_id);
        if w.attacks.contains_key(&key) {
            return Err(CloudError::AlreadyExists { kind: ResourceKind::Instance.name(), name: format!("attack run {run_id}") });
        }
        w.start_attack(&key, run_id, target.lab.as_str(), &instance, scenario, now);
        self.shared.commit(&mut w)?;
        Ok(AttackHandle {
            run_id: run_id.to_string(),
            scenario: scenario.id.clone(),
            started_at: now,
            backend_ref: format!("sim:{run_id}"),
        })
    }

    async fn stop_attack(&self, target: &LabTarget, run_id: &str, _backend_ref: Option<&str>) -> Result<(), CloudError> {
        self.shared.api_latency().await;
        self.shared.inject("ssm:CancelCommand")?;
        let now = self.shared.clock.now();
        let mut w = self.shared.world_now();
        w.stop_attack(&attack_key(&target.lab, run_id), now);
        self.shared.commit(&mut w)?;
        Ok(())
    }

    async fn observe(&self, target: &LabTarget, attack: &AttackHandle) -> Result<Observation, CloudError> {
        self.shared.api_latency().await;
        self.shared.inject("observe")?;
        let w = self.shared.world_now();
        let a = w
            .attacks
            .get(&attack_key(&target.lab, &attack.run_id))
            .ok_or_else(|| CloudError::NotFound { kind: ResourceKind::Instance.name(), id: format!("attack run {}", attack.run_id) })?;
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
                .map(|n| crate::model::events::Notification { at: n.at, subject: n.subject.clone() })
                .collect(),
            instance_isolated,
        })
    }

    fn containment_api(&self) -> Box<dyn ContainmentApi + '_> {
        Box::new(SimContainment { shared: Arc::clone(&self.shared), as_function: false })
    }

    async fn forget_detector_memory(&self, target: &LabTarget) -> Result<(), CloudError> {
        let Some(function) = target.id(Role::DetectorFunction) else { return Ok(()) };
        self.shared.api_latency().await;
        self.shared.inject_with_sdk_retries("s3:DeleteObjects").await?;
        let prefix = crate::sim::traffic::detector_memory_prefix(function);
        let mut w = self.shared.world_now();
        w.pipeline.detector_memory.retain(|key, _| !key.starts_with(&prefix));
        self.shared.commit(&mut w)
    }

    async fn checkpoint(&self) -> Result<(), CloudError> {
        let mut w = self.shared.world_now();
        self.shared.save(&mut w).map_err(|e| CloudError::Other(format!("simulated account not saved: {e}")))
    }

    // A simulated lab is armed at `up` on its workload's simulated baseline: its log group
    // hands each delivery to the detector and keeps only counts, and `cis arm` refuses it
    // before asking for either of these.
    async fn flow_log_page(&self, group: &str, _token: Option<&str>) -> Result<crate::cloud::FlowLogPage, CloudError> {
        Err(CloudError::Invalid(format!("simulated log group {group} keeps no records to learn from: a simulated lab is armed at `up`")))
    }

    async fn put_lab_object(&self, bucket: &str, key: &str, _body: Vec<u8>) -> Result<(), CloudError> {
        Err(CloudError::Invalid(format!("s3://{bucket}/{key}: a simulated lab is armed at `up`, and `cis arm` puts nothing in its bucket")))
    }
}

/// The detector function's view of the simulated SageMaker runtime, EventBridge and the
/// lab's bucket (its memory).
struct SimDetector {
    shared: Arc<Shared>,
    model: Arc<crate::detect::anomaly::Model>,
    function: String,
}

impl SimDetector {
    fn memory_object(&self, key: &str) -> String {
        crate::sim::traffic::detector_memory_prefix(&self.function) + key
    }
}

#[async_trait]
impl DetectorApi for SimDetector {
    fn now(&self) -> Timestamp {
        self.shared.clock.now()
    }

    async fn invoke_endpoint(&self, endpoint: &str, csv: &str) -> Result<Vec<u8>, CloudError> {
        self.shared.api_latency().await;
        self.shared.inject_with_sdk_retries("sagemaker:InvokeEndpoint").await?;
        self.shared.world_now().invoke_endpoint(endpoint, csv, &self.model)
    }

    async fn put_detections(&self, detections: &[DetectionEvent]) -> Result<(), CloudError> {
        self.shared.api_latency().await;
        self.shared.inject_with_sdk_retries("events:PutEvents").await?;
        let now = self.shared.clock.now();
        let mut w = self.shared.world_now();
        let ctx = self.shared.context();
        w.put_detections(now, detections, &ctx);
        drop(w);
        self.shared.wake.notify_one();
        Ok(())
    }
    async fn load_memory(&self, key: &str) -> Result<Option<Vec<u8>>, CloudError> {
        self.shared.api_latency().await;
        self.shared.inject_with_sdk_retries("s3:GetObject").await?;
        Ok(self.shared.world_now().pipeline.detector_memory.get(&self.memory_object(key)).map(|m| m.as_bytes().to_vec()))
    }

    async fn save_memory(&self, key: &str, memory: &[u8]) -> Result<(), CloudError> {
        self.shared.api_latency().await;
        self.shared.inject_with_sdk_retries("s3:PutObject").await?;
        let text = String::from_utf8_lossy(memory).into_owned();
        self.shared.world_now().pipeline.detector_memory.insert(self.memory_object(key), text);
        Ok(())
    }
}

/// The containment function's view of the simulated EC2 and SNS; also the operator's, for
/// `cis release`.
struct SimContainment {
    shared: Arc<Shared>,
    /// The calls are the containment function's, made as its role (the `denied` profile
    /// refuses its changes), not the operator's.
    as_function: bool,
}

impl SimContainment {
    /// A change to EC2 as the SDK makes it: the injected faults with its retries, and,
    /// under the `denied` profile, the function's role refused outright (AccessDenied is
    /// not retried).
    async fn change(&self, api: &str) -> Result<(), CloudError> {
        if self.as_function && self.shared.injector().deny_containment() {
            return Err(CloudError::AccessDenied(format!(
                "{api}: UnauthorizedOperation: You are not authorized to perform this operation (explicit deny in a service control policy; injected)"
            )));
        }
        self.shared.inject_with_sdk_retries(api).await
    }

    /// Containment's network ACL entries on the subnet, added or removed.
    async fn set_cut(&self, subnet_id: &str, on: bool) -> Result<(), CloudError> {
        self.shared.api_latency().await;
        let api = if on { "ec2:CreateNetworkAclEntry" } else { "ec2:DeleteNetworkAclEntry" };
        self.change(api).await?;
        self.shared.world_now().set_subnet_cut(subnet_id, on)?;
        self.shared.wake.notify_one();
        Ok(())
    }
}

#[async_trait]
impl ContainmentApi for SimContainment {
    fn now(&self) -> Timestamp {
        self.shared.clock.now()
    }

    async fn describe_instance(&self, instance_id: &str) -> Result<InstanceView, CloudError> {
        self.shared.api_latency().await;
        self.shared.inject_with_sdk_retries("ec2:DescribeInstances").await?;
        let w = self.shared.world_now();
        match w.get(instance_id) {
            Some(r) => match &r.detail {
                Detail::Instance { interfaces, termination_protected, subnet, .. } => Ok(InstanceView {
                    subnet_id: subnet.clone(),
                    subnet_cut: w.subnet_cut(subnet),
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
                _ => Err(CloudError::NotFound { kind: ResourceKind::Instance.name(), id: instance_id.to_string() }),
            },
            None => Err(CloudError::NotFound { kind: ResourceKind::Instance.name(), id: instance_id.to_string() }),
        }
    }

    async fn set_interface_groups(&self, interface_id: &str, groups: &[String]) -> Result<(), CloudError> {
        self.shared.api_latency().await;
        self.change("ec2:ModifyNetworkInterfaceAttribute").await?;
        let mut w = self.shared.world_now();
        w.set_interface_groups(interface_id, groups)?;
        self.shared.wake.notify_one();
        Ok(())
    }

    async fn tag_instance(&self, instance_id: &str, tags: &Tags) -> Result<(), CloudError> {
        self.shared.api_latency().await;
        self.change("ec2:CreateTags").await?;
        let mut w = self.shared.world_now();
        match w.resources.get_mut(instance_id) {
            Some(r) if r.kind == ResourceKind::Instance => {
                r.tags.extend(tags.clone());
                Ok(())
            }
            _ => Err(CloudError::NotFound { kind: ResourceKind::Instance.name(), id: instance_id.to_string() }),
        }
    }

    async fn protect_from_termination(&self, instance_id: &str) -> Result<(), CloudError> {
        self.shared.api_latency().await;
        self.change("ec2:ModifyInstanceAttribute").await?;
        self.shared.world_now().set_termination_protection(instance_id, true)
    }

    async fn keep_volumes(&self, instance_id: &str, devices: &[String]) -> Result<(), CloudError> {
        self.shared.api_latency().await;
        self.change("ec2:ModifyInstanceAttribute").await?;
        self.shared.world_now().keep_volumes(instance_id, devices)
    }

    async fn snapshot_volume(&self, volume_id: &str, description: &str, tags: &Tags) -> Result<String, CloudError> {
        self.shared.api_latency().await;
        self.change("ec2:CreateSnapshot").await?;
        let now = self.shared.clock.now();
        self.shared.world_now().snapshot_volume(volume_id, description, tags, now)
    }

    async fn cut_subnet(&self, subnet_id: &str) -> Result<(), CloudError> {
        self.set_cut(subnet_id, true).await
    }

    async fn restore_subnet(&self, subnet_id: &str) -> Result<(), CloudError> {
        self.set_cut(subnet_id, false).await
    }

    async fn publish(&self, topic_arn: &str, subject: &str, message: &str) -> Result<(), CloudError> {
        self.shared.api_latency().await;
        self.shared.inject_with_sdk_retries("sns:Publish").await?;
        let now = self.shared.clock.now();
        let mut w = self.shared.world_now();
        if w.get(topic_arn).is_none_or(|r| r.kind != ResourceKind::SnsTopic) {
            return Err(CloudError::NotFound { kind: ResourceKind::SnsTopic.name(), id: topic_arn.to_string() });
        }
        w.pipeline.notifications.push(crate::sim::traffic::SimNotification {
            at: now,
            topic: topic_arn.to_string(),
            subject: subject.to_string(),
            message: message.to_string(),
        });
        Ok(())
    }
}
