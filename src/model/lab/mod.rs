//! The lab as a typed resource graph: what `cis up` creates, in which order, named and
//! tagged how, and what it costs.
//!
//! Every backend receives the same [`ResourceSpec`]s; a spec names the resources it
//! depends on by [`Role`], and the orchestration resolves those roles to the ids the cloud
//! returned before handing the spec over.


// What the operator chooses: the lab's name and options.
mod options;
// One resource: its role, kind, configuration, name and tags.
mod resource;
// What the lab's detector has learned, and what of the graph waits for it.
mod arming;
// The whole lab as a graph of resources, from its options.
mod graph;
// Policy and environment placeholders, filled once ids are known.
mod render;
// The least-privilege policy the operator needs to run `cis`.
pub mod operator;
// The Lambda functions' deployment packages.
pub mod package;
// What a lab costs per hour, from its graph.
pub mod pricing;

pub use self::arming::{Arming, Trained, MODEL_KEY_ENV, MODEL_PREFIX, NEED_A_MODEL, TRAINING_KEY};
pub use self::graph::LabGraph;
pub use self::options::*;
pub use self::render::{render, rendered};
pub use self::resource::*;
pub use crate::formats::flowlog::LAB_LOG_FORMAT;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_learning_lab_leaves_out_what_needs_a_model_and_an_armed_one_renders_it() {
        use crate::base::clock::Timestamp;
        let env = |g: &LabGraph| match &g.get(Role::DetectorFunction).unwrap().config {
            ResourceConfig::LambdaFunction { environment, .. } => environment.clone(),
            other => panic!("{other:?}"),
        };
        let full = LabGraph::build(&lab(), &LabOptions { detector: DetectorMode::Endpoint, ..Default::default() }, "r");
        let learning = full.clone().armed(&Arming::Learning { since: Timestamp(0) });
        for role in [Role::TrainingJob, Role::AnomalyModel, Role::AnomalyEndpointConfig, Role::AnomalyEndpoint] {
            assert!(full.get(role).is_some() && learning.get(role).is_none(), "{role}");
        }
        assert!(learning.resources.iter().all(|r| r.depends_on.iter().all(|d| learning.get(*d).is_some())), "every dependency is there");
        // Every spec renders from the ids of the learning graph's own roles alone.
        let refs: Refs = learning.roles().map(|r| (r, format!("id-of-{r}"))).collect();
        for spec in &learning.resources {
            rendered(spec, &lab(), "us-east-1", "123456789012", &refs).unwrap_or_else(|e| panic!("{}: {e}", spec.role));
        }
        assert!(!env(&learning).contains_key("CIS_ENDPOINT") && !env(&learning).contains_key(MODEL_KEY_ENV), "{:?}", env(&learning));
        assert!(env(&full).contains_key("CIS_ENDPOINT"));

        let trained = Trained {
            from: Timestamp(0),
            to: Timestamp(7_200_000),
            records: 120,
            windows: 120,
            armed_at: Timestamp(7_300_000),
            model_key: Some("detector-model/a.json".into()),
            training_key: Some(TRAINING_KEY.into()),
            egress_threshold: None,
        };
        let armed = full.clone().armed(&Arming::Armed(trained.clone()));
        assert_eq!(armed.resources.len(), full.resources.len());
        assert_eq!(env(&armed).get(MODEL_KEY_ENV).map(String::as_str), Some("detector-model/a.json"));
        assert!(matches!(
            &armed.get(Role::TrainingJob).unwrap().config,
            ResourceConfig::SageMakerTrainingJob { data_key: Some(k), .. } if k == TRAINING_KEY
        ));

        let metric = LabGraph::build(&lab(), &LabOptions { detector: DetectorMode::MetricFilter, ..Default::default() }, "r");
        assert!(metric.clone().armed(&Arming::Learning { since: Timestamp(0) }).get(Role::EgressAlarm).is_none());
        let armed = metric.clone().armed(&Arming::Armed(Trained { egress_threshold: Some(12_345.0), model_key: None, training_key: None, ..trained }));
        match &armed.get(Role::EgressAlarm).unwrap().config {
            ResourceConfig::MetricAlarm { rule, calibrate, .. } => assert!(rule.threshold == 12_345.0 && calibrate.is_none()),
            other => panic!("{other:?}"),
        }
        // A simulated lab keeps the graph as built: the alarm calibrated on its baseline.
        let simulated = metric.clone().armed(&Arming::SimulatedBaseline);
        assert_eq!(simulated.resources.len(), metric.resources.len());
        assert!(matches!(&simulated.get(Role::EgressAlarm).unwrap().config, ResourceConfig::MetricAlarm { calibrate: Some(_), .. }));
    }

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
        let web = LabOptions { workload: "web-server".into(), ..Default::default() };
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

