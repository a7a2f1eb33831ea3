//! The `Cloud` boundary on AWS: each kind of the lab handled by its part ([`super::network`],
//! [`super::iam`], [`super::pipeline`], [`super::compute`], [`super::lambda`]), the lab's
//! resources listed by tag service by service, and containment's calls for `cis release`.
//! Attacks run through SSM Run Command ([`super::attack`]).

use std::path::PathBuf;

use async_trait::async_trait;

use super::{attack, compute, iam, lambda, network, pipeline, sagemaker, scheduler, AwsSession};
use crate::base::clock::{Clock, Timestamp};
use crate::cloud::{AccountInfo, AttackHandle, Cloud, CloudError, CloudKind, CloudResource, LabTarget, Observation, ResourceStatus};
use crate::model::lab::{LabName, Refs, ResourceKind as K, ResourceSpec, Role, Tags, TAG_LAB, TAG_ROLE};
use crate::model::scenario::Scenario;

/// Test hook: abort the process right after this many successful creates, before the
/// orchestration records the id, as SIGKILL would at the worst moment.
pub const CRASH_AFTER_ENV: &str = "CIS_AWS_CRASH_AFTER";

pub struct AwsCloud {
    creates: std::sync::atomic::AtomicU64,
    crash_after: Option<u64>,
    session: AwsSession,
    ec2: aws_sdk_ec2::Client,
    ssm: aws_sdk_ssm::Client,
    iam: aws_sdk_iam::Client,
    lambda: aws_sdk_lambda::Client,
    pipeline: pipeline::Clients,
    sagemaker: sagemaker::Clients,
    scheduler: aws_sdk_scheduler::Client,
    clock: Clock,
    packages: Vec<PathBuf>,
    /// Where attack scripts send their data (`--exfil-host`).
    exfil_host: Option<String>,
    /// The scenario of each attack started, by SSM command id.
    attacks: std::sync::Mutex<std::collections::BTreeMap<String, Scenario>>,
}

impl AwsCloud {
    pub fn new(session: AwsSession, packages: Vec<PathBuf>) -> AwsCloud {
        let sdk = &session.sdk;
        AwsCloud {
            creates: std::sync::atomic::AtomicU64::new(0),
            crash_after: std::env::var(CRASH_AFTER_ENV).ok().and_then(|v| v.parse().ok()),
            ec2: aws_sdk_ec2::Client::new(sdk),
            ssm: aws_sdk_ssm::Client::new(sdk),
            iam: aws_sdk_iam::Client::new(sdk),
            lambda: aws_sdk_lambda::Client::new(sdk),
            pipeline: pipeline::Clients::new(sdk),
            sagemaker: sagemaker::Clients::new(sdk),
            scheduler: aws_sdk_scheduler::Client::new(sdk),
            clock: Clock::system(),
            packages,
            session,
            exfil_host: None,
            attacks: Default::default(),
        }
    }

    /// The sink attack scripts send their data to, checked by [`attack::check_exfil_host`].
    pub fn with_exfil_host(mut self, host: Option<String>) -> Result<Self, CloudError> {
        if let Some(h) = &host {
            attack::check_exfil_host(h).map_err(CloudError::Invalid)?;
        }
        self.exfil_host = host;
        Ok(self)
    }
}

impl AwsCloud {
    /// The detector function's spec with its endpoint's threshold, when it scores with an
    /// endpoint: the rows the forest was trained on (the lab's own windows, which `cis arm`
    /// wrote to the lab's bucket) scored by that endpoint (an RCF's scores are on a scale
    /// of their own).
    async fn calibrated(&self, spec: &ResourceSpec) -> Result<ResourceSpec, CloudError> {
        let mut spec = spec.clone();
        if let crate::model::lab::ResourceConfig::LambdaFunction { environment, .. } = &mut spec.config {
            if let (Some(endpoint), None) = (environment.get("CIS_ENDPOINT").cloned(), environment.get("CIS_ENDPOINT_THRESHOLD")) {
                let bucket = environment
                    .get("CIS_MEMORY_BUCKET")
                    .cloned()
                    .ok_or_else(|| CloudError::Invalid("the detector function names no bucket (CIS_MEMORY_BUCKET)".into()))?;
                let rows = sagemaker::get_object(&self.sagemaker, &bucket, crate::model::lab::TRAINING_KEY).await?;
                let rows = String::from_utf8(rows).map_err(|e| CloudError::Invalid(format!("s3://{bucket}/{}: {e}", crate::model::lab::TRAINING_KEY)))?;
                let threshold = sagemaker::calibrate(&self.sagemaker, &endpoint, &rows).await?;
                environment.insert("CIS_ENDPOINT_THRESHOLD".into(), format!("{threshold:.6}"));
            }
        }
        Ok(spec)
    }
}

fn role_of(tags: &Tags) -> Option<Role> {
    tags.get(TAG_ROLE).and_then(|r| Role::from_name(r))
}

/// Which part of the backend handles a kind: the one place that groups the kinds.
enum Part {
    Network,
    Iam,
    Compute,
    Pipeline,
    Lambda,
    /// The anomaly model: its bucket, training job, model, endpoint config and endpoint.
    Model,
    /// What containment kept for forensics: volumes and snapshots.
    Forensics,
    /// The lab's time to live.
    Scheduler,
}

fn part(kind: K) -> Result<Part, CloudError> {
    Ok(match kind {
        K::Vpc | K::Subnet | K::InternetGateway | K::RouteTable | K::SecurityGroup => Part::Network,
        K::IamRole | K::IamRolePolicy | K::InstanceProfile => Part::Iam,
        K::Instance | K::FlowLog => Part::Compute,
        K::LogGroup
        | K::SubscriptionFilter
        | K::MetricFilter
        | K::MetricAlarm
        | K::SnsTopic
        | K::SnsSubscription
        | K::EventRule
        | K::EventTarget => Part::Pipeline,
        K::LambdaFunction | K::LambdaPermission => Part::Lambda,
        K::Volume | K::Snapshot => Part::Forensics,
        K::Schedule => Part::Scheduler,
        K::S3Bucket | K::SageMakerTrainingJob | K::SageMakerModel | K::SageMakerEndpointConfig | K::SageMakerEndpoint => Part::Model,
    })
}

#[async_trait]
impl Cloud for AwsCloud {
    fn kind(&self) -> CloudKind {
        CloudKind::Aws
    }

    fn clock(&self) -> &Clock {
        &self.clock
    }

    async fn account(&self) -> Result<AccountInfo, CloudError> {
        Ok(self.session.account.clone())
    }

    async fn create(&self, spec: &ResourceSpec, refs: &Refs) -> Result<String, CloudError> {
        let id = match part(spec.kind)? {
            Part::Network => network::create(&self.ec2, spec, refs).await,
            Part::Iam => iam::create(&self.iam, spec, refs).await,
            Part::Compute => compute::create(&self.ec2, &self.ssm, spec, refs).await,
            Part::Pipeline => pipeline::create(&self.pipeline, spec, refs).await,
            Part::Lambda => lambda::create(&self.lambda, &self.calibrated(spec).await?, refs, &self.packages).await,
            Part::Model => {
                let account = &self.session.account;
                sagemaker::create(&self.sagemaker, spec, refs, &account.account_id, &account.region).await
            }
            Part::Forensics => Err(CloudError::Invalid(format!("{} is made by containment, not by the lab graph", spec.kind))),
            Part::Scheduler => scheduler::create(&self.scheduler, spec, refs).await,
        }?;
        let n = self.creates.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if self.crash_after == Some(n) {
            eprintln!("cis: {CRASH_AFTER_ENV}={n}: aborting as if killed, after creating {id}");
            std::process::abort();
        }
        Ok(id)
    }

    async fn converge(&self, spec: &ResourceSpec, id: &str, refs: &Refs) -> Result<(), CloudError> {
        match part(spec.kind)? {
            Part::Network => network::converge(&self.ec2, spec, id, refs).await,
            Part::Lambda => lambda::converge(&self.lambda, &self.calibrated(spec).await?, id, refs).await,
            // The other parts' creates carry every setting, or finish their children in
            // the same call on services that find what they just made.
            _ => Ok(()),
        }
    }

    async fn find(&self, spec: &ResourceSpec, refs: &Refs) -> Result<Option<String>, CloudError> {
        match part(spec.kind)? {
            Part::Network => network::find(&self.ec2, spec, refs).await,
            Part::Iam => iam::find(&self.iam, spec, refs).await,
            Part::Compute => compute::find(&self.ec2, spec).await,
            Part::Pipeline => pipeline::find(&self.pipeline, spec, refs).await,
            Part::Lambda => lambda::find(&self.lambda, spec, refs).await,
            Part::Model => sagemaker::find(&self.sagemaker, spec, &self.session.account.account_id).await,
            Part::Forensics => Ok(None),
            Part::Scheduler => scheduler::find(&self.scheduler, spec).await,
        }
    }

    async fn status(&self, kind: K, id: &str) -> Result<ResourceStatus, CloudError> {
        match part(kind)? {
            Part::Network => network::status(&self.ec2, kind, id).await,
            Part::Iam => iam::status(&self.iam, kind, id).await,
            Part::Compute => compute::status(&self.ec2, kind, id).await,
            Part::Pipeline => pipeline::status(&self.pipeline, kind, id).await,
            Part::Lambda => lambda::status(&self.lambda, kind, id).await,
            Part::Model => sagemaker::status(&self.sagemaker, kind, id).await,
            Part::Scheduler => scheduler::status(&self.scheduler, id).await,
            Part::Forensics if kind == K::Volume => {
                let out = self.ec2.describe_volumes().volume_ids(id).send().await.map_err(|e| super::error::cloud_error(kind, id, e))?;
                out.volumes().first().map(|_| ResourceStatus::Ready).ok_or(CloudError::NotFound { kind: kind.name(), id: id.into() })
            }
            Part::Forensics => {
                let out =
                    self.ec2.describe_snapshots().snapshot_ids(id).send().await.map_err(|e| super::error::cloud_error(kind, id, e))?;
                out.snapshots().first().map(|_| ResourceStatus::Ready).ok_or(CloudError::NotFound { kind: kind.name(), id: id.into() })
            }
        }
    }

    async fn delete(&self, kind: K, id: &str) -> Result<(), CloudError> {
        match part(kind)? {
            Part::Network => network::delete(&self.ec2, kind, id).await,
            Part::Iam => iam::delete(&self.iam, kind, id).await,
            Part::Compute => compute::delete(&self.ec2, kind, id).await,
            Part::Pipeline => pipeline::delete(&self.pipeline, kind, id).await,
            Part::Lambda => lambda::delete(&self.lambda, kind, id).await,
            Part::Model => sagemaker::delete(&self.sagemaker, kind, id).await,
            Part::Scheduler => scheduler::delete(&self.scheduler, id).await,
            Part::Forensics if kind == K::Volume => {
                self.ec2.delete_volume().volume_id(id).send().await.map_err(|e| super::error::cloud_error(kind, id, e))?;
                Ok(())
            }
            Part::Forensics => {
                self.ec2.delete_snapshot().snapshot_id(id).send().await.map_err(|e| super::error::cloud_error(kind, id, e))?;
                Ok(())
            }
        }
    }

    async fn list_lab(&self, lab: &LabName) -> Result<Vec<CloudResource>, CloudError> {
        let mut out = Vec::new();
        // EC2: every resource with the lab's tag; terminated instances are gone for the lab.
        let tagged = self
            .ec2
            .describe_tags()
            .filters(aws_sdk_ec2::types::Filter::builder().name("key").values(TAG_LAB).build())
            .filters(aws_sdk_ec2::types::Filter::builder().name("value").values(lab.as_str()).build())
            .send()
            .await
            .map_err(|e| super::error::cloud_error(K::Vpc, "tags", e))?;
        for t in tagged.tags() {
            let (Some(id), Some(kind)) = (t.resource_id(), t.resource_type()) else { continue };
            let kind = match kind.as_str() {
                "vpc" => K::Vpc,
                "subnet" => K::Subnet,
                "internet-gateway" => K::InternetGateway,
                "route-table" => K::RouteTable,
                "security-group" => K::SecurityGroup,
                "instance" => K::Instance,
                "volume" => K::Volume,
                "snapshot" => K::Snapshot,
                "vpc-flow-log" => K::FlowLog,
                _ => continue,
            };
            let status = match self.status(kind, id).await {
                Ok(s) => s,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            let all = self
                .ec2
                .describe_tags()
                .filters(aws_sdk_ec2::types::Filter::builder().name("resource-id").values(id).build())
                .send()
                .await
                .map_err(|e| super::error::cloud_error(kind, id, e))?;
            let tags: Tags = all.tags().iter().filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string()))).collect();
            let name = tags.get("Name").cloned().unwrap_or_default();
            out.push(CloudResource { kind, id: id.to_string(), name, role: role_of(&tags), tags, status });
        }
        // Flow logs by their own describe call as well: DescribeTags does not list them
        // everywhere (moto's does not), and a flow log left behind goes on costing.
        let flow_logs = self
            .ec2
            .describe_flow_logs()
            .filter(aws_sdk_ec2::types::Filter::builder().name(format!("tag:{TAG_LAB}")).values(lab.as_str()).build())
            .send()
            .await
            .map_err(|e| super::error::cloud_error(K::FlowLog, "flow logs", e))?;
        for f in flow_logs.flow_logs() {
            let Some(id) = f.flow_log_id() else { continue };
            if out.iter().any(|r| r.id == id) {
                continue;
            }
            let tags: Tags = f.tags().iter().filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string()))).collect();
            let name = tags.get("Name").cloned().unwrap_or_default();
            out.push(CloudResource {
                kind: K::FlowLog,
                id: id.to_string(),
                name,
                role: role_of(&tags),
                tags,
                status: ResourceStatus::Ready,
            });
        }
        let prefix = format!("cis-{lab}-");
        // The other services: candidates by the lab's name prefix, kept when tagged with it.
        let mut keep = |kind: K, id: String, name: &str, tags: Tags| {
            if tags.get(TAG_LAB).map(String::as_str) == Some(lab.as_str()) {
                out.push(CloudResource { kind, id, name: name.to_string(), role: role_of(&tags), tags, status: ResourceStatus::Ready });
            }
        };
        use super::error::mapped as err;

        let roles: Vec<aws_sdk_iam::types::Role> =
            self.iam.list_roles().into_paginator().items().send().collect::<Result<_, _>>().await.map_err(err(K::IamRole, "roles"))?;
        for r in roles.iter().filter(|r| r.role_name().starts_with(&prefix)) {
            let t = self.iam.list_role_tags().role_name(r.role_name()).send().await.map_err(err(K::IamRole, r.role_name()))?;
            keep(
                K::IamRole,
                r.arn().to_string(),
                r.role_name(),
                t.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect(),
            );
        }
        let profiles: Vec<aws_sdk_iam::types::InstanceProfile> = self
            .iam
            .list_instance_profiles()
            .into_paginator()
            .items()
            .send()
            .collect::<Result<_, _>>()
            .await
            .map_err(err(K::InstanceProfile, "profiles"))?;
        for p in profiles.iter().filter(|p| p.instance_profile_name().starts_with(&prefix)) {
            // GetInstanceProfile carries the tags (and moto lacks ListInstanceProfileTags).
            let name = p.instance_profile_name();
            let t = self.iam.get_instance_profile().instance_profile_name(name).send().await.map_err(err(K::InstanceProfile, name))?;
            let tags =
                t.instance_profile().map(|p| p.tags()).unwrap_or_default().iter().map(|t| (t.key().to_string(), t.value().to_string()));
            keep(K::InstanceProfile, p.arn().to_string(), name, tags.collect());
        }
        let mut model = Vec::new();
        self.list_model(lab, &prefix, &mut model).await?;
        // The flow-log group, and the functions' groups under Lambda's prefix.
        let mut groups: Vec<aws_sdk_cloudwatchlogs::types::LogGroup> = Vec::new();
        for p in [prefix.clone(), format!("/aws/lambda/{prefix}")] {
            let page: Vec<aws_sdk_cloudwatchlogs::types::LogGroup> = self
                .pipeline
                .logs
                .describe_log_groups()
                .log_group_name_prefix(p)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<_, _>>()
                .await
                .map_err(err(K::LogGroup, "groups"))?;
            groups.extend(page);
        }
        for g in &groups {
            let (Some(name), Some(arn)) = (g.log_group_name(), g.arn()) else { continue };
            let arn = arn.trim_end_matches(":*").to_string();
            let t = self.pipeline.logs.list_tags_for_resource().resource_arn(&arn).send().await.map_err(err(K::LogGroup, name))?;
            keep(K::LogGroup, arn, name, t.tags().map(|m| m.clone().into_iter().collect()).unwrap_or_default());
        }
        // The groups SageMaker makes itself for the lab's endpoints, untagged and with no
        // retention: by their exact names (a prefix would take lab `a-b`'s for lab `a`'s).
        let mut endpoint_logs = Vec::new();
        for role in [Role::AnomalyEndpoint, Role::LlmEndpoint] {
            let name = format!("/aws/sagemaker/Endpoints/{}", crate::model::lab::resource_name(lab, role));
            let found = self
                .pipeline
                .logs
                .describe_log_groups()
                .log_group_name_prefix(&name)
                .send()
                .await
                .map_err(err(K::LogGroup, "groups"))?;
            for g in found.log_groups().iter().filter(|g| g.log_group_name() == Some(name.as_str())) {
                let Some(arn) = g.arn() else { continue };
                let id = arn.trim_end_matches(":*").to_string();
                endpoint_logs.push(CloudResource {
                    kind: K::LogGroup,
                    id,
                    name: name.clone(),
                    role: None,
                    tags: Tags::new(),
                    status: ResourceStatus::Ready,
                });
            }
        }
        let topics: Vec<aws_sdk_sns::types::Topic> = self
            .pipeline
            .sns
            .list_topics()
            .into_paginator()
            .items()
            .send()
            .collect::<Result<_, _>>()
            .await
            .map_err(err(K::SnsTopic, "topics"))?;
        for arn in topics.iter().filter_map(|t| t.topic_arn()) {
            let name = arn.rsplit(':').next().unwrap_or_default();
            if !name.starts_with(&prefix) {
                continue;
            }
            let t = self.pipeline.sns.list_tags_for_resource().resource_arn(arn).send().await.map_err(err(K::SnsTopic, arn))?;
            keep(K::SnsTopic, arn.to_string(), name, t.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect());
        }
        let alarms: Vec<aws_sdk_cloudwatch::types::MetricAlarm> = self
            .pipeline
            .metrics
            .describe_alarms()
            .alarm_name_prefix(&prefix)
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(err(K::MetricAlarm, "alarms"))?
            .into_iter()
            .flat_map(|page| page.metric_alarms.unwrap_or_default())
            .collect();
        for a in &alarms {
            let (Some(name), Some(arn)) = (a.alarm_name(), a.alarm_arn()) else { continue };
            let t = self.pipeline.metrics.list_tags_for_resource().resource_arn(arn).send().await.map_err(err(K::MetricAlarm, name))?;
            keep(
                K::MetricAlarm,
                arn.to_string(),
                name,
                t.tags().iter().map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string())).collect(),
            );
        }
        // ListRules has no paginator in the SDK: its NextToken by hand, every page.
        let mut rules = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .pipeline
                .events
                .list_rules()
                .name_prefix(&prefix)
                .set_next_token(token)
                .send()
                .await
                .map_err(err(K::EventRule, "rules"))?;
            rules.extend(page.rules().iter().cloned());
            token = page.next_token().map(String::from);
            if token.is_none() {
                break;
            }
        }
        for r in &rules {
            let (Some(name), Some(arn)) = (r.name(), r.arn()) else { continue };
            let t = self.pipeline.events.list_tags_for_resource().resource_arn(arn).send().await.map_err(err(K::EventRule, name))?;
            keep(K::EventRule, arn.to_string(), name, t.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect());
        }
        let functions: Vec<aws_sdk_lambda::types::FunctionConfiguration> = self
            .lambda
            .list_functions()
            .into_paginator()
            .items()
            .send()
            .collect::<Result<_, _>>()
            .await
            .map_err(err(K::LambdaFunction, "functions"))?;
        for f in &functions {
            let (Some(name), Some(arn)) = (f.function_name(), f.function_arn()) else { continue };
            if !name.starts_with(&prefix) {
                continue;
            }
            let t = self.lambda.list_tags().resource(arn).send().await.map_err(err(K::LambdaFunction, name))?;
            keep(K::LambdaFunction, arn.to_string(), name, t.tags().map(|m| m.clone().into_iter().collect()).unwrap_or_default());
        }
        out.extend(model);
        out.extend(endpoint_logs);
        out.extend(scheduler::list_lab(&self.scheduler, lab).await?);
        Ok(out)
    }

    async fn list_labs(&self) -> Result<Vec<LabName>, CloudError> {
        super::list_labs(&self.session).await
    }

    async fn alarm_firing(&self, target: &LabTarget) -> Result<bool, CloudError> {
        let Some(arn) = target.id(Role::EgressAlarm) else { return Ok(false) };
        match pipeline::alarm(&self.pipeline, pipeline::alarm_name(arn)).await? {
            Some((_, state)) => Ok(state == aws_sdk_cloudwatch::types::StateValue::Alarm),
            None => Err(CloudError::NotFound { kind: K::MetricAlarm.name(), id: arn.to_string() }),
        }
    }

    async fn first_delivery(&self, target: &LabTarget) -> Result<Option<Timestamp>, CloudError> {
        let group = target.id(Role::LogGroup).ok_or_else(|| CloudError::Invalid("the lab has no log group".into()))?;
        let name = group.split_once(":log-group:").map(|(_, n)| n).unwrap_or(group);
        let out = self
            .pipeline
            .logs
            .describe_log_streams()
            .log_group_name(name)
            .send()
            .await
            .map_err(|e| super::error::cloud_error(K::LogGroup, name, e))?;
        Ok(out.log_streams().iter().filter_map(|s| s.first_event_timestamp()).min().map(Timestamp))
    }

    async fn start_attack(&self, target: &LabTarget, scenario: &Scenario, run_id: &str) -> Result<AttackHandle, CloudError> {
        if scenario.script.contains(attack::EXFIL_HOST_VARIABLE) && self.exfil_host.is_none() {
            return Err(CloudError::Invalid(format!(
                "scenario {} sends its data to ${}: pass --exfil-host HOST, a host you control that accepts it (never someone else's)",
                scenario.id,
                attack::EXFIL_HOST_VARIABLE
            )));
        }
        let handle = attack::start(&self.ssm, target, scenario, run_id, self.exfil_host.as_deref(), self.clock.now()).await?;
        self.attacks.lock().unwrap_or_else(|p| p.into_inner()).insert(handle.backend_ref.clone(), scenario.clone());
        Ok(handle)
    }

    async fn stop_attack(&self, target: &LabTarget, run_id: &str, backend_ref: Option<&str>) -> Result<(), CloudError> {
        attack::stop(&self.ssm, target, run_id, backend_ref).await
    }

    async fn observe(&self, target: &LabTarget, handle: &AttackHandle) -> Result<Observation, CloudError> {
        let scenario = self.attacks.lock().unwrap_or_else(|p| p.into_inner()).get(&handle.backend_ref).cloned();
        let scenario =
            scenario.ok_or_else(|| CloudError::Invalid(format!("attack {} was not started by this process", handle.backend_ref)))?;
        attack::observe(&self.ssm, &self.ec2, &self.pipeline.logs, target, &scenario, handle).await
    }

    async fn forget_detector_memory(&self, target: &LabTarget) -> Result<(), CloudError> {
        match (target.id(Role::DetectorFunction), target.id(Role::ModelData)) {
            (Some(_), Some(bucket)) => sagemaker::delete_objects(&self.sagemaker, bucket, crate::functions::detector::MEMORY_PREFIX).await,
            _ => Ok(()),
        }
    }

    async fn checkpoint(&self) -> Result<(), CloudError> {
        Ok(())
    }

    async fn flow_log_page(&self, group: &str, token: Option<&str>) -> Result<crate::cloud::FlowLogPage, CloudError> {
        let name = group.split_once(":log-group:").map(|(_, n)| n.trim_end_matches(":*")).unwrap_or(group);
        let out = self
            .pipeline
            .logs
            .filter_log_events()
            .log_group_name(name)
            .set_next_token(token.map(String::from))
            .send()
            .await
            .map_err(|e| super::error::cloud_error(K::LogGroup, name, e))?;
        let lines = out.events().iter().filter_map(|e| e.message().map(String::from)).collect();
        Ok(crate::cloud::FlowLogPage { lines, next: out.next_token().map(String::from) })
    }

    async fn put_lab_object(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), CloudError> {
        sagemaker::put_object(&self.sagemaker, bucket, key, body).await
    }

    fn containment_api(&self) -> Box<dyn crate::functions::containment::ContainmentApi + '_> {
        Box::new(super::functions::AwsContainment::new(&self.session.sdk))
    }
}

impl AwsCloud {
    /// The lab's bucket and SageMaker resources. A training job that `down` let go of (AWS
    /// keeps every job's record) no longer carries the lab's tag, so it is not listed.
    async fn list_model(&self, lab: &LabName, prefix: &str, out: &mut Vec<CloudResource>) -> Result<(), CloudError> {
        use super::error::mapped as err;
        let sm = &self.sagemaker.sagemaker;
        let mut keep = |kind: K, id: String, name: &str, tags: Tags| {
            if tags.get(TAG_LAB).map(String::as_str) == Some(lab.as_str()) {
                out.push(CloudResource { kind, id, name: name.to_string(), role: role_of(&tags), tags, status: ResourceStatus::Ready });
            }
        };
        let buckets = self.sagemaker.s3.list_buckets().prefix(prefix).send().await.map_err(err(K::S3Bucket, "buckets"))?;
        for b in buckets.buckets() {
            let Some(name) = b.name().filter(|n| n.starts_with(prefix)) else { continue };
            let tags = match self.sagemaker.s3.get_bucket_tagging().bucket(name).send().await {
                Ok(t) => t.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect(),
                // A bucket created by a run killed before it was tagged: its name is the lab's.
                Err(e)
                    if e.as_service_error().map(|s| aws_smithy_types::error::metadata::ProvideErrorMetadata::code(s))
                        == Some(Some("NoSuchTagSet")) =>
                {
                    let role = Role::ModelData.name().to_string();
                    Tags::from([(TAG_LAB.to_string(), lab.to_string()), (TAG_ROLE.to_string(), role)])
                }
                Err(e) => return Err(super::error::cloud_error(K::S3Bucket, name, e)),
            };
            keep(K::S3Bucket, name.to_string(), name, tags);
        }
        // Each list call has its own types; what is kept from them is (kind, name, ARN).
        let mut found: Vec<(K, String, String)> = Vec::new();
        let jobs: Vec<_> = sm
            .list_training_jobs()
            .name_contains(prefix)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<_, _>>()
            .await
            .map_err(err(K::SageMakerTrainingJob, "training jobs"))?;
        found.extend(
            jobs.iter().filter_map(|j| Some((K::SageMakerTrainingJob, j.training_job_name()?.into(), j.training_job_arn()?.into()))),
        );
        let models: Vec<_> = sm
            .list_models()
            .name_contains(prefix)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<_, _>>()
            .await
            .map_err(err(K::SageMakerModel, "models"))?;
        found.extend(models.iter().filter_map(|m| Some((K::SageMakerModel, m.model_name()?.into(), m.model_arn()?.into()))));
        let configs: Vec<_> = sm
            .list_endpoint_configs()
            .name_contains(prefix)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<_, _>>()
            .await
            .map_err(err(K::SageMakerEndpointConfig, "endpoint configs"))?;
        found.extend(
            configs
                .iter()
                .filter_map(|c| Some((K::SageMakerEndpointConfig, c.endpoint_config_name()?.into(), c.endpoint_config_arn()?.into()))),
        );
        let endpoints: Vec<_> = sm
            .list_endpoints()
            .name_contains(prefix)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<_, _>>()
            .await
            .map_err(err(K::SageMakerEndpoint, "endpoints"))?;
        found.extend(endpoints.iter().filter_map(|e| Some((K::SageMakerEndpoint, e.endpoint_name()?.into(), e.endpoint_arn()?.into()))));
        // NameContains matches anywhere in the name: only the lab's prefix is the lab's.
        for (kind, name, arn) in found.into_iter().filter(|(_, name, _)| name.starts_with(prefix)) {
            let t = sm.list_tags().resource_arn(&arn).send().await.map_err(err(kind, &arn))?;
            let tags = t.tags().iter().filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string()))).collect();
            keep(kind, arn, &name, tags);
        }
        Ok(())
    }
}
