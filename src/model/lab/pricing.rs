//! The cost estimate: hourly prices from `assets/prices.toml`, applied to a lab graph.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{LabGraph, ResourceConfig, Role};

const PRICES_TOML: &str = include_str!("../../../assets/prices.toml");

#[derive(Clone, Debug, Deserialize)]
pub struct PriceTable {
    pub region: String,
    pub read_on: String,
    pub source: String,
    hourly: BTreeMap<String, f64>,
    pub usage: BTreeMap<String, String>,
}

impl PriceTable {
    pub fn embedded() -> Self {
        toml::from_str(PRICES_TOML).expect("assets/prices.toml is checked by the test suite")
    }

    /// The hourly price of one item (`ec2:t3.micro`, `sagemaker:ml.c5.large`).
    pub fn price(&self, item: &str) -> Option<f64> {
        self.hourly(item)
    }

    fn hourly(&self, item: &str) -> Option<f64> {
        self.hourly.get(item).copied()
    }

    /// Fixed hourly costs by role, and what each is made of. The endpoint is priced from
    /// its config's instance type. A price missing from the table is reported as unknown
    /// rather than guessed.
    pub fn lab_costs(&self, graph: &LabGraph) -> Vec<(Role, Cost)> {
        // An endpoint is billed for its config's instance type.
        let endpoint_type = |config: &Role| match graph.get(*config).map(|s| &s.config) {
            Some(ResourceConfig::SageMakerEndpointConfig { instance_type, .. }) => Some(instance_type.as_str()),
            _ => None,
        };
        graph
            .resources
            .iter()
            .map(|spec| {
                let cost = match &spec.config {
                    ResourceConfig::Instance { instance_type, .. } => {
                        let mut cost = Cost::item(self, &format!("ec2:{instance_type}"));
                        // The subnet maps a public IPv4 address to the instance.
                        cost.add(Cost::item(self, "ec2:public-ipv4"));
                        cost
                    }
                    ResourceConfig::SageMakerEndpoint { config } => match endpoint_type(config) {
                        Some(t) => Cost::item(self, &format!("sagemaker:{t}")),
                        None => Cost::zero(),
                    },
                    ResourceConfig::MetricAlarm { .. } => Cost::item(self, "cloudwatch:standard-alarm"),
                    _ => Cost::zero(),
                };
                (spec.role, cost)
            })
            .collect()
    }
}

/// An hourly cost in US dollars, with the price items it is made of.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Cost {
    pub usd_per_hour: f64,
    pub items: Vec<String>,
    /// Items whose price the table does not have.
    pub unknown: Vec<String>,
}

impl Cost {
    pub fn zero() -> Self {
        Cost::default()
    }

    fn item(table: &PriceTable, name: &str) -> Self {
        match table.hourly(name) {
            Some(p) => Cost { usd_per_hour: p, items: vec![format!("{name} ${p}/h")], unknown: vec![] },
            None => Cost { usd_per_hour: 0.0, items: vec![], unknown: vec![name.to_string()] },
        }
    }

    pub fn add(&mut self, other: Cost) {
        self.usd_per_hour += other.usd_per_hour;
        self.items.extend(other.items);
        self.unknown.extend(other.unknown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::lab::{DetectorMode, LabOptions};

    #[test]
    fn endpoint_lab_costs_instance_ip_and_endpoint() {
        let table = PriceTable::embedded();
        let lab = "t".parse().unwrap();
        let g = LabGraph::build(&lab, &LabOptions::default(), "r");
        let total: f64 = table.lab_costs(&g).iter().map(|(_, c)| c.usd_per_hour).sum();
        assert!((total - (0.0104 + 0.005 + 0.102)).abs() < 1e-9, "{total}");
        let g = LabGraph::build(&lab, &LabOptions { detector: DetectorMode::Lambda, ..Default::default() }, "r");
        let total: f64 = table.lab_costs(&g).iter().map(|(_, c)| c.usd_per_hour).sum();
        assert!((total - 0.0154).abs() < 1e-9, "{total}");
    }

    #[test]
    fn unknown_instance_types_are_reported_not_guessed() {
        let table = PriceTable::embedded();
        let lab = "t".parse().unwrap();
        let g = LabGraph::build(&lab, &LabOptions { instance_type: "m7i.48xlarge".into(), ..Default::default() }, "r");
        let costs = table.lab_costs(&g);
        let (_, instance) = costs.iter().find(|(r, _)| *r == Role::TargetInstance).unwrap();
        assert_eq!(instance.unknown, vec!["ec2:m7i.48xlarge".to_string()]);
    }
}
