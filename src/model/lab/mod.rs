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

pub use self::graph::LabGraph;
pub use self::options::*;
pub use self::render::{render, rendered};
pub use self::resource::*;
pub use crate::formats::flowlog::LAB_LOG_FORMAT;

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

