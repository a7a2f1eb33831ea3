//! The simulated account's control plane: resources with AWS semantics.
//!
//! Ids come in AWS formats; names are unique where AWS makes them unique; a new security
//! group allows all egress until it is revoked; an IAM role cannot be assumed by Lambda
//! until it has propagated; deleting something in use is a DependencyViolation; children
//! that AWS deletes with their parent (a function's permissions, a log group's
//! subscription filters) go with it. The data plane lives in `dataplane.rs`.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::latency::{Delay, LatencyModel};
use super::traffic::{AttackState, Event, Metrics, Network, PipelineLog};
use crate::base::clock::Timestamp;
use crate::base::rng::Rng;
use crate::cloud::{CloudError, CloudResource, ResourceStatus};
use crate::formats::flowlog::LogFormat;
use crate::model::lab::{FunctionCode, Refs, ResourceConfig, ResourceKind, ResourceSpec, Role, Rule, Tags, TAG_LAB, TAG_ROLE};
use crate::model::scenario::Scenario;

pub const FORMAT: &str = "cis-sim-account";
pub const VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    Pending,
    Running,
    ShuttingDown,
    Terminated,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndpointStatus {
    Creating,
    InService,
    Deleting,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    pub id: String,
    pub private_ip: String,
    pub groups: Vec<String>,
}

/// Per-kind state of a simulated resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Detail {
    Vpc {
        cidr: String,
    },
    Subnet {
        vpc: String,
        cidr: String,
        map_public_ip: bool,
        /// Containment's deny-all entries are in the subnet's network ACL: nothing passes
        /// its boundary, tracked or not.
        #[serde(default)]
        cut: bool,
    },
    InternetGateway {
        vpc: Option<String>,
    },
    RouteTable {
        vpc: String,
        subnets: Vec<String>,
        routes: Vec<(String, String)>,
    },
    SecurityGroup {
        vpc: String,
        description: String,
        ingress: Vec<Rule>,
        egress: Vec<Rule>,
    },
    IamRole {
        trust_policy: String,
        assumable_at: Timestamp,
    },
    RolePolicy {
        role: String,
        document: Option<String>,
        managed_arn: Option<String>,
    },
    InstanceProfile {
        role: Option<String>,
        usable_at: Timestamp,
    },
    Instance {
        state: InstanceState,
        subnet: String,
        vpc: String,
        interfaces: Vec<Interface>,
        public_ip: Option<String>,
        instance_type: String,
        image_id: String,
        profile: String,
        imdsv2_required: bool,
        encrypted_root: bool,
        /// DisableApiTermination: TerminateInstances fails until it is lifted.
        #[serde(default)]
        termination_protected: bool,
        /// The baseline profile whose traffic it generates.
        #[serde(default = "crate::model::lab::default_workload")]
        workload: String,
    },
    /// An EBS volume; `instance` while attached.
    Volume {
        instance: Option<String>,
        device: String,
        delete_on_termination: bool,
        encrypted: bool,
    },
    Snapshot {
        volume: String,
        description: String,
    },
    LogGroup {
        retention_days: u32,
        records: u64,
        first_delivery_at: Option<Timestamp>,
    },
    FlowLog {
        vpc: String,
        log_group: String,
        role: String,
        interval_s: u32,
        log_format: String,
        capturing: bool,
    },
    Bucket,
    TrainingJob {
        role: String,
        bucket: String,
        done_at: Timestamp,
    },
    Model {
        role: String,
    },
    EndpointConfig {
        model: String,
        instance_type: String,
        visible_at: Timestamp,
    },
    Endpoint {
        config: String,
        status: EndpointStatus,
    },
    Topic,
    Subscription {
        topic: String,
        protocol: String,
        endpoint: String,
    },
    Function {
        code: FunctionCode,
        role: String,
        environment: BTreeMap<String, String>,
        #[serde(default)]
        reserved_concurrency: Option<u32>,
        /// The topic Lambda sends an event to once every attempt at it failed.
        #[serde(default)]
        on_failure: Option<String>,
    },
    Permission {
        function: String,
        principal: String,
        source_arn: String,
    },
    SubscriptionFilter {
        log_group: String,
        function: String,
        pattern: String,
    },
    MetricFilter {
        log_group: String,
        pattern: String,
        transformation: crate::formats::metric::MetricTransformation,
    },
    Alarm {
        metric: crate::formats::metric::MetricKey,
        rule: crate::formats::metric::AlarmRule,
        state: crate::formats::metric::AlarmState,
    },
    EventRule {
        pattern: String,
    },
    EventTarget {
        rule: String,
        function: String,
    },
    /// A one-time schedule: at `at` it invokes `function`, then deletes itself.
    Schedule {
        at: Timestamp,
        function: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimResource {
    pub id: String,
    pub kind: ResourceKind,
    pub name: String,
    pub tags: Tags,
    /// The resource this one goes with (a policy's role, a permission's function).
    pub parent: Option<String>,
    pub created_at: Timestamp,
    pub detail: Detail,
}

/// An event due at a virtual instant; equal instants keep the order they were scheduled in.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Scheduled {
    pub at: Timestamp,
    pub seq: u64,
    pub event: Event,
}

/// The whole simulated account, persisted in the state directory between commands.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct World {
    pub format: String,
    pub version: u32,
    pub account_id: String,
    pub region: String,
    pub seed: u64,
    /// Virtual time when the account was last saved.
    pub now: Timestamp,
    pub rng: Rng,
    pub image_id: String,
    pub resources: BTreeMap<String, SimResource>,
    pub queue: VecDeque<Scheduled>,
    pub next_seq: u64,
    pub net: Network,
    pub pipeline: PipelineLog,
    pub attacks: BTreeMap<String, AttackState>,
    /// What the metric filters made of delivered log events, by metric.
    #[serde(default)]
    pub metrics: Metrics,
    /// When set, every flow-log line delivered is kept here too (baseline captures).
    #[serde(skip)]
    pub capture: Option<Vec<(String, Option<String>)>>,
}

fn invalid(msg: impl Into<String>) -> CloudError {
    CloudError::Invalid(msg.into())
}

fn in_use(what: &str, detail: impl Into<String>) -> CloudError {
    CloudError::DependencyViolation { what: what.to_string(), detail: detail.into() }
}

impl World {
    pub fn new(seed: u64, region: &str) -> World {
        let mut rng = Rng::seeded(seed);
        let account_id = format!("{:012}", 100_000_000_000 + rng.below(900_000_000_000));
        let image_id = format!("ami-0{}", rng.hex(16));
        World {
            format: FORMAT.into(),
            version: VERSION,
            account_id,
            region: region.to_string(),
            seed,
            now: Timestamp::SIM_EPOCH,
            rng,
            image_id,
            resources: BTreeMap::new(),
            queue: VecDeque::new(),
            next_seq: 0,
            net: Network::default(),
            pipeline: PipelineLog::default(),
            attacks: BTreeMap::new(),
            metrics: Default::default(),
            capture: None,
        }
    }

    pub fn schedule(&mut self, at: Timestamp, event: Event) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let pos = self.queue.partition_point(|s| (s.at, s.seq) <= (at, seq));
        self.queue.insert(pos, Scheduled { at, seq, event });
    }

    /// Starts a scenario's traffic on a running instance, as SSM Run Command would run its
    /// script: each stream's first connection at its start. `key` names the run in
    /// [`World::attacks`] and labels its flows.
    pub fn start_attack(&mut self, key: &str, run_id: &str, lab: &str, instance: &str, scenario: &Scenario, now: Timestamp) {
        self.attacks.insert(
            key.to_string(),
            AttackState {
                run_id: run_id.to_string(),
                lab: lab.to_string(),
                instance: instance.to_string(),
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
            let source = super::traffic::Source::Attack { run: key.to_string(), stream: i };
            self.schedule(now.plus_secs_f64(s.start_s), Event::OpenConnection { instance: instance.to_string(), source, index: 0 });
        }
    }

    /// Stops a run's script, as SSM CancelCommand would: no stream opens another
    /// connection and every connection it has open ends now. A run that has ended, or that
    /// the account does not hold, is left as it is.
    pub fn stop_attack(&mut self, key: &str, now: Timestamp) {
        let Some(a) = self.attacks.get_mut(key) else { return };
        if a.finished_at.is_some() {
            return;
        }
        a.finished_at = Some(now);
        a.streams_left = 0;
        a.open_conns = 0;
        self.queue.retain(
            |s| !matches!(&s.event, Event::OpenConnection { source: super::traffic::Source::Attack { run, .. }, .. } if run == key),
        );
        self.net.conns.retain(|_, c| c.attack.as_deref() != Some(key));
    }

    pub fn next_event_at(&self) -> Option<Timestamp> {
        self.queue.front().map(|s| s.at)
    }

    fn new_id(&mut self, prefix: &str) -> String {
        format!("{prefix}-0{}", self.rng.hex(16))
    }

    fn arn(&self, service: &str, resource: &str) -> String {
        let region = if service == "iam" { "" } else { &self.region };
        format!("arn:aws:{service}:{region}:{}:{resource}", self.account_id)
    }

    pub fn get(&self, id: &str) -> Option<&SimResource> {
        self.resources.get(id).filter(|r| !is_gone(r))
    }

    fn get_kind(&self, id: &str, kind: ResourceKind) -> Result<&SimResource, CloudError> {
        self.get(id).filter(|r| r.kind == kind).ok_or_else(|| CloudError::NotFound { kind: kind.name(), id: id.to_string() })
    }

    fn resolve<'a>(&'a self, refs: &Refs, role: Role) -> Result<&'a SimResource, CloudError> {
        let id = refs.get(&role).ok_or_else(|| invalid(format!("no id given for {role}")))?;
        self.get_kind(id, role.kind())
    }

    fn live(&self) -> impl Iterator<Item = &SimResource> {
        self.resources.values().filter(|r| !is_gone(r))
    }

    fn name_taken(&self, kind: ResourceKind, name: &str) -> Result<(), CloudError> {
        match self.live().find(|r| r.kind == kind && r.name == name) {
            Some(_) => Err(CloudError::AlreadyExists { kind: kind.name(), name: name.to_string() }),
            None => Ok(()),
        }
    }

    fn insert(&mut self, id: String, spec: &ResourceSpec, parent: Option<String>, now: Timestamp, detail: Detail) -> String {
        let tags = if spec.kind.taggable() { spec.tags.clone() } else { Tags::new() };
        self.resources.insert(
            id.clone(),
            SimResource { id: id.clone(), kind: spec.kind, name: spec.name.clone(), tags, parent, created_at: now, detail },
        );
        id
    }

    /// Creates one resource as the AWS API calls behind it would.
    pub fn create(&mut self, spec: &ResourceSpec, refs: &Refs, now: Timestamp, lat: &LatencyModel) -> Result<String, CloudError> {
        use ResourceConfig as C;
        match &spec.config {
            C::Vpc { cidr } => {
                let id = self.new_id("vpc");
                Ok(self.insert(id, spec, None, now, Detail::Vpc { cidr: cidr.clone() }))
            }
            C::Subnet { vpc, cidr, map_public_ip, .. } => {
                let vpc = self.resolve(refs, *vpc)?.id.clone();
                let id = self.new_id("subnet");
                Ok(self.insert(id, spec, None, now, Detail::Subnet { vpc, cidr: cidr.clone(), map_public_ip: *map_public_ip, cut: false }))
            }
            C::InternetGateway { vpc } => {
                let vpc = self.resolve(refs, *vpc)?.id.clone();
                let id = self.new_id("igw");
                Ok(self.insert(id, spec, None, now, Detail::InternetGateway { vpc: Some(vpc) }))
            }
            C::RouteTable { vpc, subnet, gateway } => {
                let vpc = self.resolve(refs, *vpc)?.id.clone();
                let subnet = self.resolve(refs, *subnet)?.id.clone();
                let igw = self.resolve(refs, *gateway)?;
                if !matches!(&igw.detail, Detail::InternetGateway { vpc: Some(v) } if *v == vpc) {
                    return Err(invalid(format!("route table: gateway {} is not attached to {vpc}", igw.id)));
                }
                let routes = vec![("0.0.0.0/0".to_string(), igw.id.clone())];
                let id = self.new_id("rtb");
                Ok(self.insert(id, spec, None, now, Detail::RouteTable { vpc, subnets: vec![subnet], routes }))
            }
            C::SecurityGroup { vpc, description, ingress, egress } => {
                let vpc = self.resolve(refs, *vpc)?.id.clone();
                let dup = self.live().any(|r| {
                    r.kind == ResourceKind::SecurityGroup
                        && r.name == spec.name
                        && matches!(&r.detail, Detail::SecurityGroup { vpc: v, .. } if *v == vpc)
                });
                if dup {
                    return Err(CloudError::AlreadyExists { kind: spec.kind.name(), name: spec.name.clone() });
                }
                // CreateSecurityGroup adds the default allow-all egress rule; the spec's egress
                // is what remains after revoking it and authorizing the rest.
                let id = self.new_id("sg");
                let detail =
                    Detail::SecurityGroup { vpc, description: description.clone(), ingress: ingress.clone(), egress: egress.clone() };
                Ok(self.insert(id, spec, None, now, detail))
            }
            C::IamRole { trust_policy, .. } => {
                self.name_taken(spec.kind, &spec.name)?;
                serde_json::from_str::<serde_json::Value>(trust_policy).map_err(|e| invalid(format!("MalformedPolicyDocument: {e}")))?;
                let assumable_at = now.plus(lat.draw(Delay::IamPropagation, &mut self.rng));
                let id = self.arn("iam", &format!("role/{}", spec.name));
                Ok(self.insert(id, spec, None, now, Detail::IamRole { trust_policy: trust_policy.clone(), assumable_at }))
            }
            C::InlinePolicy { role, policy_name, document } => {
                let role = self.resolve(refs, *role)?;
                serde_json::from_str::<serde_json::Value>(document).map_err(|e| invalid(format!("MalformedPolicyDocument: {e}")))?;
                let (role_id, role_name) = (role.id.clone(), role.name.clone());
                let id = format!("{role_name}/{policy_name}");
                // PutRolePolicy replaces a policy of the same name.
                let detail = Detail::RolePolicy { role: role_id.clone(), document: Some(document.clone()), managed_arn: None };
                Ok(self.insert(id, spec, Some(role_id), now, detail))
            }
            C::ManagedPolicyAttachment { role, policy_arn } => {
                let role = self.resolve(refs, *role)?;
                let (role_id, role_name) = (role.id.clone(), role.name.clone());
                let id = format!("{role_name}/{policy_arn}");
                let detail = Detail::RolePolicy { role: role_id.clone(), document: None, managed_arn: Some(policy_arn.clone()) };
                Ok(self.insert(id, spec, Some(role_id), now, detail))
            }
            C::InstanceProfile { role } => {
                self.name_taken(spec.kind, &spec.name)?;
                let role = self.resolve(refs, *role)?.id.clone();
                let usable_at = now.plus(lat.draw(Delay::IamPropagation, &mut self.rng));
                let id = self.arn("iam", &format!("instance-profile/{}", spec.name));
                Ok(self.insert(id, spec, None, now, Detail::InstanceProfile { role: Some(role), usable_at }))
            }
            C::Instance {
                subnet,
                security_group,
                instance_profile,
                instance_type,
                image_parameter,
                imdsv2_required,
                root_volume_encrypted,
                workload,
            } => {
                if image_parameter.is_empty() {
                    return Err(invalid("no image"));
                }
                let (subnet_id, vpc, public) = match &self.resolve(refs, *subnet)?.detail {
                    Detail::Subnet { vpc, map_public_ip, .. } => (refs[subnet].clone(), vpc.clone(), *map_public_ip),
                    _ => unreachable!("resolve checks the kind"),
                };
                let sg = self.resolve(refs, *security_group)?.id.clone();
                let profile = self.resolve(refs, *instance_profile)?;
                if let Detail::InstanceProfile { usable_at, .. } = profile.detail {
                    if now < usable_at {
                        return Err(CloudError::NotPropagatedYet(format!(
                            "Value ({}) for parameter iamInstanceProfile.arn is invalid. Invalid IAM Instance Profile ARN",
                            profile.id
                        )));
                    }
                }
                let profile = profile.id.clone();
                let n = self.live().filter(|r| r.kind == ResourceKind::Instance).count() as u64;
                let private_ip = format!("10.42.1.{}", 10 + n % 240);
                let public_ip =
                    public.then(|| format!("3.{}.{}.{}", 80 + self.rng.below(20), self.rng.below(256), 1 + self.rng.below(254)));
                let eni = self.new_id("eni");
                let id = self.new_id("i");
                let running_at = now.plus(lat.draw(Delay::InstanceBoot, &mut self.rng));
                let detail = Detail::Instance {
                    state: InstanceState::Pending,
                    subnet: subnet_id,
                    vpc,
                    interfaces: vec![Interface { id: eni, private_ip, groups: vec![sg] }],
                    public_ip,
                    instance_type: instance_type.clone(),
                    image_id: self.image_id.clone(),
                    profile,
                    imdsv2_required: *imdsv2_required,
                    encrypted_root: *root_volume_encrypted,
                    termination_protected: false,
                    workload: workload.clone(),
                };
                let id = self.insert(id, spec, None, now, detail);
                // The root volume, tagged at launch like the instance (but playing no role
                // of its own). Its id follows the instance's, so it draws nothing from the
                // account's generator.
                let volume = format!("vol-{}", &id[2..]);
                let mut tags = spec.tags.clone();
                tags.remove(TAG_ROLE);
                self.resources.insert(
                    volume.clone(),
                    SimResource {
                        id: volume,
                        kind: ResourceKind::Volume,
                        name: format!("{}-root", spec.name),
                        tags,
                        parent: None,
                        created_at: now,
                        detail: Detail::Volume {
                            instance: Some(id.clone()),
                            device: "/dev/xvda".into(),
                            delete_on_termination: true,
                            encrypted: *root_volume_encrypted,
                        },
                    },
                );
                self.schedule(running_at, Event::InstanceRunning { instance: id.clone() });
                Ok(id)
            }
            C::LogGroup { retention_days } => {
                self.name_taken(spec.kind, &spec.name)?;
                let id = self.arn("logs", &format!("log-group:{}", spec.name));
                Ok(self.insert(
                    id,
                    spec,
                    None,
                    now,
                    Detail::LogGroup { retention_days: *retention_days, records: 0, first_delivery_at: None },
                ))
            }
            C::FlowLog { vpc, log_group, role, max_aggregation_interval_s, log_format } => {
                if ![60, 600].contains(max_aggregation_interval_s) {
                    return Err(invalid("MaxAggregationInterval must be 60 or 600"));
                }
                LogFormat::parse(log_format).map_err(|e| invalid(format!("LogFormat: {e}")))?;
                let vpc = self.resolve(refs, *vpc)?.id.clone();
                let log_group = self.resolve(refs, *log_group)?.id.clone();
                let role = self.resolve(refs, *role)?;
                let assumable_at = match role.detail {
                    Detail::IamRole { assumable_at, .. } => assumable_at,
                    _ => now,
                };
                let role = role.id.clone();
                let id = self.new_id("fl");
                // Capture starts minutes after creation, and not before the delivery role works.
                let start = now.plus(lat.draw(Delay::FlowLogStartup, &mut self.rng)).max(assumable_at);
                let detail = Detail::FlowLog {
                    vpc,
                    log_group,
                    role,
                    interval_s: *max_aggregation_interval_s,
                    log_format: log_format.clone(),
                    capturing: false,
                };
                let id = self.insert(id, spec, None, now, detail);
                self.schedule(start, Event::CaptureStart { flow_log: id.clone() });
                Ok(id)
            }
            C::S3Bucket => {
                // Bucket names are global: the account makes the lab's its own.
                let id = format!("{}-{}", spec.name, self.account_id);
                if self.get(&id).is_some() {
                    return Err(CloudError::AlreadyExists { kind: spec.kind.name(), name: id });
                }
                Ok(self.insert(id, spec, None, now, Detail::Bucket))
            }
            C::SageMakerTrainingJob { role, bucket, .. } => {
                self.name_taken(spec.kind, &spec.name)?;
                let role = self.resolve(refs, *role)?;
                if let Detail::IamRole { assumable_at, .. } = role.detail {
                    if now < assumable_at {
                        return Err(CloudError::NotPropagatedYet(
                            "ValidationException: Could not assume role: the role is not yet assumable by SageMaker".into(),
                        ));
                    }
                }
                let role = role.id.clone();
                let bucket = self.resolve(refs, *bucket)?.id.clone();
                let done_at = now.plus(lat.draw(Delay::TrainingJob, &mut self.rng));
                let id = self.arn("sagemaker", &format!("training-job/{}", spec.name));
                Ok(self.insert(id, spec, None, now, Detail::TrainingJob { role, bucket, done_at }))
            }
            C::SageMakerModel { role, training, .. } => {
                self.name_taken(spec.kind, &spec.name)?;
                if let Some(training) = training {
                    let job = self.resolve(refs, *training)?;
                    if let Detail::TrainingJob { done_at, .. } = job.detail {
                        if now < done_at {
                            return Err(CloudError::Invalid(format!("ValidationException: training job {} has not completed", job.name)));
                        }
                    }
                }
                let role = self.resolve(refs, *role)?.id.clone();
                let id = self.arn("sagemaker", &format!("model/{}", spec.name));
                Ok(self.insert(id, spec, None, now, Detail::Model { role }))
            }
            C::SageMakerEndpointConfig { model, instance_type, .. } => {
                self.name_taken(spec.kind, &spec.name)?;
                let model = self.resolve(refs, *model)?.id.clone();
                let visible_at = now.plus(lat.draw(Delay::EndpointConfigPropagation, &mut self.rng));
                let id = self.arn("sagemaker", &format!("endpoint-config/{}", spec.name));
                Ok(self.insert(id, spec, None, now, Detail::EndpointConfig { model, instance_type: instance_type.clone(), visible_at }))
            }
            C::SageMakerEndpoint { config } => {
                self.name_taken(spec.kind, &spec.name)?;
                let cfg = self.resolve(refs, *config)?;
                if let Detail::EndpointConfig { visible_at, .. } = cfg.detail {
                    if now < visible_at {
                        return Err(CloudError::NotPropagatedYet(format!("Could not find endpoint configuration \"{}\"", cfg.name)));
                    }
                }
                let config = cfg.id.clone();
                let ready_at = now.plus(lat.draw(Delay::EndpointCreation, &mut self.rng));
                let id = self.arn("sagemaker", &format!("endpoint/{}", spec.name));
                let id = self.insert(id, spec, None, now, Detail::Endpoint { config, status: EndpointStatus::Creating });
                self.schedule(ready_at, Event::EndpointInService { endpoint: id.clone() });
                Ok(id)
            }
            C::SnsTopic => {
                // CreateTopic is idempotent: the same name gives the same ARN.
                let id = self.arn("sns", &spec.name);
                if self.get(&id).is_some() {
                    return Ok(id);
                }
                Ok(self.insert(id, spec, None, now, Detail::Topic))
            }
            C::SnsSubscription { topic, protocol, endpoint } => {
                let topic = self.resolve(refs, *topic)?.id.clone();
                let id = format!("{topic}:{}-{}-{}", self.rng.hex(8), self.rng.hex(4), self.rng.hex(12));
                let detail = Detail::Subscription { topic: topic.clone(), protocol: protocol.clone(), endpoint: endpoint.clone() };
                Ok(self.insert(id, spec, Some(topic), now, detail))
            }
            C::LambdaFunction { code, role, environment, reserved_concurrency, on_failure, .. } => {
                self.name_taken(spec.kind, &spec.name)?;
                let on_failure = match on_failure {
                    Some(topic) => Some(self.resolve(refs, *topic)?.id.clone()),
                    None => None,
                };
                let role = self.resolve(refs, *role)?;
                if let Detail::IamRole { assumable_at, .. } = role.detail {
                    if now < assumable_at {
                        return Err(CloudError::NotPropagatedYet("The role defined for the function cannot be assumed by Lambda.".into()));
                    }
                }
                let role = role.id.clone();
                let id = self.arn("lambda", &format!("function:{}", spec.name));
                let detail = Detail::Function {
                    code: *code,
                    role,
                    environment: environment.clone(),
                    reserved_concurrency: *reserved_concurrency,
                    on_failure,
                };
                Ok(self.insert(id, spec, None, now, detail))
            }
            C::LambdaPermission { function, principal, source, statement_id } => {
                let f = self.resolve(refs, *function)?;
                let (fid, fname) = (f.id.clone(), f.name.clone());
                let source_arn = self.resolve(refs, *source)?.id.clone();
                let id = format!("{fname}/{statement_id}");
                if self.get(&id).is_some() {
                    return Err(CloudError::AlreadyExists { kind: spec.kind.name(), name: id });
                }
                let detail = Detail::Permission { function: fid.clone(), principal: principal.clone(), source_arn };
                Ok(self.insert(id, spec, Some(fid), now, detail))
            }
            C::SubscriptionFilter { log_group, function, filter_pattern } => {
                let lg = self.resolve(refs, *log_group)?;
                let (lg_id, lg_name) = (lg.id.clone(), lg.name.clone());
                let fid = self.resolve(refs, *function)?.id.clone();
                let permitted = self.live().any(|r| {
                    matches!(&r.detail, Detail::Permission { function, principal, .. } if *function == fid && principal == "logs.amazonaws.com")
                });
                if !permitted {
                    return Err(invalid(
                        "Could not execute the lambda function. Make sure you have given CloudWatch Logs permission to execute your function.",
                    ));
                }
                let existing =
                    self.live().filter(|r| r.kind == ResourceKind::SubscriptionFilter && r.parent.as_deref() == Some(&lg_id)).count();
                let id = format!("{lg_name}/{}", spec.name);
                if existing >= 2 && self.get(&id).is_none() {
                    return Err(invalid("LimitExceededException: at most 2 subscription filters per log group"));
                }
                let detail = Detail::SubscriptionFilter { log_group: lg_id.clone(), function: fid, pattern: filter_pattern.clone() };
                Ok(self.insert(id, spec, Some(lg_id), now, detail))
            }
            C::MetricFilter { log_group, filter_pattern, transformation } => {
                crate::formats::metric::FilterPattern::parse(filter_pattern)
                    .map_err(|e| invalid(format!("InvalidParameterException: {e}")))?;
                let lg = self.resolve(refs, *log_group)?;
                let (lg_id, lg_name) = (lg.id.clone(), lg.name.clone());
                // PutMetricFilter creates or replaces by name within the group.
                let id = format!("{lg_name}/{}", spec.name);
                let detail = Detail::MetricFilter {
                    log_group: lg_id.clone(),
                    pattern: filter_pattern.clone(),
                    transformation: transformation.clone(),
                };
                Ok(self.insert(id, spec, Some(lg_id), now, detail))
            }
            C::MetricAlarm { metric, rule, calibrate, watches } => {
                if calibrate.is_some() {
                    return Err(invalid("the alarm's threshold was not calibrated before PutMetricAlarm"));
                }
                self.resolve(refs, *watches)?;
                if metric.dimensions.values().any(|v| v.contains("${")) {
                    return Err(invalid(format!("InvalidParameterValue: dimension value {:?} was not rendered", metric.dimensions)));
                }
                // PutMetricAlarm creates or updates by name; a new alarm starts without data.
                let id = self.arn("cloudwatch", &format!("alarm:{}", spec.name));
                let detail = Detail::Alarm {
                    metric: metric.clone(),
                    rule: rule.clone(),
                    state: crate::formats::metric::AlarmState::InsufficientData,
                };
                let id = self.insert(id, spec, None, now, detail);
                let first =
                    crate::formats::metric::period_start(now, rule.period_s).plus(std::time::Duration::from_secs(u64::from(rule.period_s)));
                self.schedule(first, Event::EvaluateAlarm { alarm: id.clone() });
                Ok(id)
            }
            C::EventRule { event_pattern } => {
                serde_json::from_str::<serde_json::Value>(event_pattern)
                    .map_err(|e| invalid(format!("InvalidEventPatternException: {e}")))?;
                // PutRule creates or updates by name.
                let id = self.arn("events", &format!("rule/{}", spec.name));
                Ok(self.insert(id, spec, None, now, Detail::EventRule { pattern: event_pattern.clone() }))
            }
            C::EventTarget { rule, function, target_id } => {
                let r = self.resolve(refs, *rule)?;
                let (rid, rname) = (r.id.clone(), r.name.clone());
                let fid = self.resolve(refs, *function)?.id.clone();
                let id = format!("{rname}/{target_id}");
                Ok(self.insert(id, spec, Some(rid.clone()), now, Detail::EventTarget { rule: rid, function: fid }))
            }
            C::Schedule { function, role, at, .. } => {
                self.name_taken(spec.kind, &spec.name)?;
                let at = at.ok_or_else(|| invalid("the schedule's time was not set before CreateSchedule"))?;
                if at <= now {
                    return Err(invalid(format!("ValidationException: the schedule's time {at} is in the past")));
                }
                let function = self.resolve(refs, *function)?.id.clone();
                self.resolve(refs, *role)?;
                let id = self.arn("scheduler", &format!("schedule/default/{}", spec.name));
                self.schedule(at, Event::ScheduleFires { schedule: id.clone() });
                Ok(self.insert(id, spec, None, now, Detail::Schedule { at, function }))
            }
        }
    }

    /// Looks for a resource made from `spec` (after a crash between create and ledger).
    pub fn find(&self, spec: &ResourceSpec, refs: &Refs) -> Option<String> {
        if spec.kind.taggable() {
            let lab = spec.tags.get(TAG_LAB)?;
            let role = spec.role.name();
            return self
                .live()
                .find(|r| r.kind == spec.kind && r.tags.get(TAG_LAB) == Some(lab) && r.tags.get(TAG_ROLE).map(String::as_str) == Some(role))
                .map(|r| r.id.clone());
        }
        // Children are found by the id their parent and name make.
        let parent_name = |role: &Role| refs.get(role).and_then(|id| self.get(id)).map(|r| r.name.clone());
        let id = match &spec.config {
            ResourceConfig::InlinePolicy { role, policy_name, .. } => format!("{}/{policy_name}", parent_name(role)?),
            ResourceConfig::ManagedPolicyAttachment { role, policy_arn } => format!("{}/{policy_arn}", parent_name(role)?),
            ResourceConfig::LambdaPermission { function, statement_id, .. } => format!("{}/{statement_id}", parent_name(function)?),
            ResourceConfig::SubscriptionFilter { log_group, .. } | ResourceConfig::MetricFilter { log_group, .. } => {
                format!("{}/{}", parent_name(log_group)?, spec.name)
            }
            ResourceConfig::EventTarget { rule, target_id, .. } => format!("{}/{target_id}", parent_name(rule)?),
            ResourceConfig::Schedule { .. } => self.arn("scheduler", &format!("schedule/default/{}", spec.name)),
            ResourceConfig::SnsSubscription { topic, .. } => {
                let topic = refs.get(topic)?;
                return self
                    .live()
                    .find(|r| r.kind == ResourceKind::SnsSubscription && r.parent.as_ref() == Some(topic))
                    .map(|r| r.id.clone());
            }
            _ => return None,
        };
        self.get(&id).map(|r| r.id.clone())
    }

    pub fn status(&self, kind: ResourceKind, id: &str) -> Result<ResourceStatus, CloudError> {
        let r = self.get_kind(id, kind)?;
        Ok(match &r.detail {
            Detail::Instance { state: InstanceState::Pending, .. } => ResourceStatus::Pending("pending".into()),
            Detail::Instance { state: InstanceState::ShuttingDown, .. } => ResourceStatus::Deleting("shutting-down".into()),
            Detail::Endpoint { status: EndpointStatus::Creating, .. } => ResourceStatus::Pending("Creating".into()),
            Detail::TrainingJob { done_at, .. } if self.now < *done_at => ResourceStatus::Pending("InProgress".into()),
            Detail::Endpoint { status: EndpointStatus::Deleting, .. } => ResourceStatus::Deleting("Deleting".into()),
            _ => ResourceStatus::Ready,
        })
    }

    /// Starts deleting one resource, as the AWS calls for its kind would.
    pub fn delete(&mut self, kind: ResourceKind, id: &str, now: Timestamp, lat: &LatencyModel) -> Result<(), CloudError> {
        let r = self.get_kind(id, kind)?.clone();
        let users =
            |pred: &dyn Fn(&SimResource) -> bool| -> Vec<String> { self.live().filter(|x| pred(x)).map(|x| x.id.clone()).collect() };
        match &r.detail {
            Detail::Vpc { .. } => {
                let deps = users(&|x| match &x.detail {
                    Detail::Subnet { vpc, .. } | Detail::SecurityGroup { vpc, .. } | Detail::RouteTable { vpc, .. } => vpc == id,
                    Detail::InternetGateway { vpc } => vpc.as_deref() == Some(id),
                    _ => false,
                });
                if !deps.is_empty() {
                    return Err(in_use(id, format!("The vpc '{id}' has dependencies and cannot be deleted ({})", deps.join(", "))));
                }
            }
            Detail::Subnet { .. } => {
                let deps = users(
                    &|x| matches!(&x.detail, Detail::Instance { subnet, state, .. } if subnet == id && *state != InstanceState::Terminated),
                );
                if !deps.is_empty() {
                    return Err(in_use(id, format!("The subnet '{id}' has dependencies and cannot be deleted ({})", deps.join(", "))));
                }
            }
            Detail::InternetGateway { vpc: Some(vpc) } => {
                let mapped = users(
                    &|x| matches!(&x.detail, Detail::Instance { vpc: v, public_ip: Some(_), state, .. } if v == vpc && *state != InstanceState::Terminated),
                );
                if !mapped.is_empty() {
                    return Err(in_use(id, format!("Network {vpc} has some mapped public address(es). Please unmap those public address(es) before detaching the gateway.")));
                }
            }
            Detail::SecurityGroup { .. } => {
                let deps = users(&|x| match &x.detail {
                    Detail::Instance { interfaces, state, .. } => {
                        *state != InstanceState::Terminated && interfaces.iter().any(|i| i.groups.iter().any(|g| g == id))
                    }
                    _ => false,
                });
                if !deps.is_empty() {
                    return Err(in_use(id, format!("resource {id} has a dependent object ({})", deps.join(", "))));
                }
            }
            Detail::IamRole { .. } => {
                let deps = users(&|x| matches!(&x.detail, Detail::InstanceProfile { role: Some(role), .. } if role == id));
                if !deps.is_empty() {
                    return Err(in_use(id, "DeleteConflict: Cannot delete entity, must remove roles from instance profile first."));
                }
            }
            Detail::Instance { termination_protected: true, .. } => {
                return Err(invalid(format!(
                    "OperationNotPermitted: The instance '{id}' may not be terminated. Modify its 'disableApiTermination' instance attribute and try again."
                )));
            }
            Detail::Volume { instance: Some(instance), .. } if self.get(instance).is_some() => {
                return Err(in_use(id, format!("VolumeInUse: {id} is attached to {instance}")));
            }
            Detail::Instance { state, .. } => {
                match state {
                    InstanceState::Pending | InstanceState::Running => {
                        let done = now.plus(lat.draw(Delay::InstanceTermination, &mut self.rng));
                        self.set_instance_state(id, InstanceState::ShuttingDown);
                        self.schedule(done, Event::InstanceTerminated { instance: id.to_string() });
                    }
                    InstanceState::ShuttingDown | InstanceState::Terminated => {}
                }
                return Ok(());
            }
            Detail::Endpoint { status, .. } => {
                if *status != EndpointStatus::Deleting {
                    let gone = now.plus(lat.draw(Delay::EndpointDeletion, &mut self.rng));
                    if let Some(Detail::Endpoint { status, .. }) = self.resources.get_mut(id).map(|r| &mut r.detail) {
                        *status = EndpointStatus::Deleting;
                    }
                    self.schedule(gone, Event::EndpointGone { endpoint: id.to_string() });
                }
                return Ok(());
            }
            _ => {}
        }
        // A detector function's memory goes with it (on AWS, with the lab's bucket).
        let prefix = super::traffic::detector_memory_prefix(id);
        self.pipeline.detector_memory.retain(|key, _| !key.starts_with(&prefix));
        self.remove_with_children(id);
        Ok(())
    }

    /// Removes a resource and, recursively, the children AWS removes with it (or that a
    /// careful delete removes first: a role's policies, a rule's targets).
    pub fn remove_with_children(&mut self, id: &str) {
        let children: Vec<String> = self.resources.values().filter(|r| r.parent.as_deref() == Some(id)).map(|r| r.id.clone()).collect();
        for c in children {
            self.remove_with_children(&c);
        }
        self.resources.remove(id);
    }

    pub fn set_instance_state(&mut self, id: &str, new: InstanceState) {
        if let Some(Detail::Instance { state, .. }) = self.resources.get_mut(id).map(|r| &mut r.detail) {
            *state = new;
        }
        if new == InstanceState::Terminated {
            // Volumes go with the instance unless kept; kept ones are detached.
            let volumes: Vec<(String, bool)> = self
                .resources
                .values()
                .filter_map(|r| match &r.detail {
                    Detail::Volume { instance: Some(i), delete_on_termination, .. } if i == id => {
                        Some((r.id.clone(), *delete_on_termination))
                    }
                    _ => None,
                })
                .collect();
            for (volume, delete) in volumes {
                if delete {
                    self.resources.remove(&volume);
                } else if let Some(Detail::Volume { instance, .. }) = self.resources.get_mut(&volume).map(|r| &mut r.detail) {
                    *instance = None;
                }
            }
        }
    }

    /// The instance's attached volumes: (id, device, delete on termination).
    pub fn volumes_of(&self, instance: &str) -> Vec<(String, String, bool)> {
        self.live()
            .filter_map(|r| match &r.detail {
                Detail::Volume { instance: Some(i), device, delete_on_termination, .. } if i == instance => {
                    Some((r.id.clone(), device.clone(), *delete_on_termination))
                }
                _ => None,
            })
            .collect()
    }

    /// ModifyInstanceAttribute(DisableApiTermination).
    /// Containment's network ACL entries on a subnet: added (`cut`) or removed.
    pub fn set_subnet_cut(&mut self, subnet: &str, on: bool) -> Result<(), CloudError> {
        match self.resources.get_mut(subnet).map(|r| &mut r.detail) {
            Some(Detail::Subnet { cut, .. }) => {
                *cut = on;
                Ok(())
            }
            _ => Err(CloudError::NotFound { kind: ResourceKind::Subnet.name(), id: subnet.to_string() }),
        }
    }

    /// Whether the subnet's network ACL denies everything.
    pub fn subnet_cut(&self, subnet: &str) -> bool {
        matches!(self.get(subnet).map(|r| &r.detail), Some(Detail::Subnet { cut: true, .. }))
    }

    pub fn set_termination_protection(&mut self, instance: &str, on: bool) -> Result<(), CloudError> {
        match self.resources.get_mut(instance).map(|r| &mut r.detail) {
            Some(Detail::Instance { termination_protected, state, .. }) if *state != InstanceState::Terminated => {
                *termination_protected = on;
                Ok(())
            }
            _ => Err(CloudError::NotFound { kind: ResourceKind::Instance.name(), id: instance.to_string() }),
        }
    }

    /// ModifyInstanceAttribute(BlockDeviceMappings: DeleteOnTermination=false).
    pub fn keep_volumes(&mut self, instance: &str, devices: &[String]) -> Result<(), CloudError> {
        if self.get(instance).is_none_or(|r| r.kind != ResourceKind::Instance) {
            return Err(CloudError::NotFound { kind: ResourceKind::Instance.name(), id: instance.to_string() });
        }
        for d in devices {
            let volume = self.volumes_of(instance).into_iter().find(|(_, dev, _)| dev == d).map(|(v, _, _)| v);
            let Some(volume) = volume else {
                return Err(invalid(format!("The device '{d}' is not attached to {instance}")));
            };
            if let Some(Detail::Volume { delete_on_termination, .. }) = self.resources.get_mut(&volume).map(|r| &mut r.detail) {
                *delete_on_termination = false;
            }
        }
        Ok(())
    }

    /// CreateSnapshot with TagSpecifications.
    pub fn snapshot_volume(&mut self, volume: &str, description: &str, tags: &Tags, now: Timestamp) -> Result<String, CloudError> {
        if self.get(volume).is_none_or(|r| r.kind != ResourceKind::Volume) {
            return Err(CloudError::NotFound { kind: ResourceKind::Volume.name(), id: volume.to_string() });
        }
        let id = self.new_id("snap");
        self.resources.insert(
            id.clone(),
            SimResource {
                id: id.clone(),
                kind: ResourceKind::Snapshot,
                name: description.to_string(),
                tags: tags.clone(),
                parent: None,
                created_at: now,
                detail: Detail::Snapshot { volume: volume.to_string(), description: description.to_string() },
            },
        );
        Ok(id)
    }

    pub fn list_lab(&self, lab: &str) -> Vec<CloudResource> {
        self.live()
            .filter(|r| r.tags.get(TAG_LAB).map(String::as_str) == Some(lab))
            .map(|r| CloudResource {
                kind: r.kind,
                id: r.id.clone(),
                name: r.name.clone(),
                role: r.tags.get(TAG_ROLE).and_then(|n| Role::from_name(n)),
                tags: r.tags.clone(),
                status: self.status(r.kind, &r.id).unwrap_or(ResourceStatus::Ready),
            })
            .collect()
    }

    pub fn labs(&self) -> Vec<String> {
        let mut labs: Vec<String> = self.live().filter_map(|r| r.tags.get(TAG_LAB).cloned()).collect();
        labs.sort();
        labs.dedup();
        labs
    }

    /// Every live resource, for tests and `status` of the whole account.
    pub fn live_resources(&self) -> Vec<&SimResource> {
        self.live().collect()
    }
}

/// Terminated instances stay listed in AWS for a while; for the lab they are gone.
fn is_gone(r: &SimResource) -> bool {
    matches!(r.detail, Detail::Instance { state: InstanceState::Terminated, .. })
}
