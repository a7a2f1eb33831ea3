//! The whole lab from its options: every resource, in an order where each comes after what
//! it depends on. Plan, pricing, up and down all derive from this one graph.

use std::collections::BTreeMap;

use super::arming::{Arming, MODEL_KEY_ENV, NEED_A_MODEL};
use super::options::{DetectorMode, IsolationSteps, LabName, LabOptions};
use super::resource::*;
use crate::formats::flowlog::LAB_LOG_FORMAT;

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
        b.target(options);
        b.flow_logs(options);
        b.anomaly_model(options);
        b.llm(options);
        b.detection(options);
        b.containment(options);
        b.janitor(options);
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

    /// The graph as the lab's arming has it. Learning: what needs a model is left out, and
    /// the detector function has none (so it scores nothing). Armed: each is rendered from
    /// what the lab learned of its own traffic. A simulated baseline changes nothing.
    pub fn armed(mut self, arming: &Arming) -> LabGraph {
        match arming {
            Arming::SimulatedBaseline => {}
            Arming::Learning { .. } => {
                self.resources.retain(|r| !NEED_A_MODEL.contains(&r.role));
                for r in &mut self.resources {
                    r.depends_on.retain(|d| !NEED_A_MODEL.contains(d));
                    if let ResourceConfig::LambdaFunction { code: FunctionCode::Detector, environment, .. } = &mut r.config {
                        environment.remove("CIS_ENDPOINT");
                    }
                }
            }
            Arming::Armed(t) => {
                for r in &mut self.resources {
                    match &mut r.config {
                        ResourceConfig::LambdaFunction { code: FunctionCode::Detector, environment, .. } => {
                            if let Some(key) = &t.model_key {
                                environment.insert(MODEL_KEY_ENV.to_string(), key.clone());
                            }
                        }
                        ResourceConfig::SageMakerTrainingJob { data_key, .. } => *data_key = t.training_key.clone(),
                        ResourceConfig::MetricAlarm { rule, calibrate, .. } => {
                            if let Some(threshold) = t.egress_threshold {
                                rule.threshold = threshold;
                                *calibrate = None;
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        self
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

    /// The network the target lives in, its security groups, and the instance itself.
    fn target(&mut self, o: &LabOptions) {
        let b = self;
        use ResourceConfig as C;
        use Role as R;

        b.add(R::Vpc, &[], C::Vpc { cidr: "10.42.0.0/16".into() });
        b.add(
            R::Subnet,
            &[R::Vpc],
            C::Subnet { vpc: R::Vpc, cidr: "10.42.1.0/24".into(), map_public_ip: true, zone_offers: Some(o.instance_type.clone()) },
        );
        b.add(R::InternetGateway, &[R::Vpc], C::InternetGateway { vpc: R::Vpc });
        b.add(
            R::RouteTable,
            &[R::Vpc, R::Subnet, R::InternetGateway],
            C::RouteTable { vpc: R::Vpc, subnet: R::Subnet, gateway: R::InternetGateway },
        );
        let mut inbound: Vec<Rule> =
            o.ssh_from.iter().map(|src| Rule { protocol: "tcp".into(), from_port: 22, to_port: 22, cidr: src.as_str().into() }).collect();
        let served: Vec<u16> =
            crate::model::scenario::workloads().into_iter().find(|p| p.id == o.workload).map(|p| p.serves).unwrap_or_default();
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
                workload: o.workload.clone(),
            },
        );
    }

    /// The VPC's flow logs and the log group they are delivered to.
    fn flow_logs(&mut self, o: &LabOptions) {
        let b = self;
        use ResourceConfig as C;
        use Role as R;

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
    }

    /// The lab's bucket and, for `--detector endpoint`, the Random Cut Forest: training job, model, endpoint.
    fn anomaly_model(&mut self, o: &LabOptions) {
        let b = self;
        use ResourceConfig as C;
        use Role as R;

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
                    workload: o.workload.clone(),
                    data_key: None,
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
    }

    /// Foundation-Sec-8B-Instruct on its own endpoint (`--llm`).
    fn llm(&mut self, o: &LabOptions) {
        let b = self;
        use ResourceConfig as C;
        use Role as R;

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
    }

    /// The alerts topic and what detects: the detector function, or the egress metric filter and its alarm.
    fn detection(&mut self, o: &LabOptions) {
        let b = self;
        let lab = b.lab;
        use ResourceConfig as C;
        use Role as R;

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
            // The endpoint by its name, not its id: the policy is the same while the lab
            // learns (no endpoint yet) and once it is armed, so arming need not change it.
            let mut detector_policy = policy("detector");
            if o.detector == DetectorMode::Endpoint {
                detector_policy = merge_statements(&detector_policy, &policy("detector-endpoint"));
            }
            b.add(
                R::DetectorPolicy,
                &[R::DetectorRole, R::Topic, R::ModelData],
                C::InlinePolicy { role: R::DetectorRole, policy_name: "detector".into(), document: detector_policy },
            );
            let mut detector_env = BTreeMap::from([
                ("CIS_LAB".to_string(), lab.to_string()),
                ("CIS_WINDOW_S".to_string(), o.window_s.to_string()),
                ("CIS_LOG_FORMAT".to_string(), LAB_LOG_FORMAT.to_string()),
                ("CIS_BASELINE".to_string(), o.workload.clone()),
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
            // With an endpoint, the function's threshold is its training rows scored by it.
            let mut function_deps = vec![R::DetectorRole, R::DetectorPolicy, R::DetectorLogs, R::Topic, R::ModelData];
            if o.detector == DetectorMode::Endpoint {
                function_deps.push(R::AnomalyEndpoint);
            }
            b.add(
                R::DetectorFunction,
                &function_deps,
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
                    calibrate: Some(AlarmCalibration { workload: o.workload.clone(), window_s: o.window_s, target_fpr: o.target_fpr }),
                    watches: R::TargetInstance,
                },
            );
        }
    }

    /// The containment function, and the rule that hands it detections.
    fn containment(&mut self, o: &LabOptions) {
        let b = self;
        let lab = b.lab;
        use ResourceConfig as C;
        use Role as R;

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
    }

    /// The lab's time to live (`--ttl`): the janitor function and the schedule that invokes it.
    fn janitor(&mut self, o: &LabOptions) {
        let b = self;
        let lab = b.lab;
        use ResourceConfig as C;
        use Role as R;

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
    }
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
