//! The latency model: every delay the simulator introduces, drawn from `assets/latency.toml`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::base::rng::Rng;

const MODEL_TOML: &str = include_str!("../../assets/latency.toml");

/// The quantities the simulated AWS delays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Delay {
    FlowLogDelivery,
    FlowLogStartup,
    SubscriptionToLambda,
    EventBridgeToLambda,
    LambdaStart,
    ApiCall,
    IamPropagation,
    InstanceBoot,
    InstanceTermination,
    TrainingJob,
    EndpointCreation,
    EndpointDeletion,
    EndpointConfigPropagation,
    SecurityGroupChange,
    MetricPublication,
}

impl Delay {
    pub const ALL: [Delay; 15] = [
        Delay::FlowLogDelivery,
        Delay::FlowLogStartup,
        Delay::SubscriptionToLambda,
        Delay::EventBridgeToLambda,
        Delay::LambdaStart,
        Delay::ApiCall,
        Delay::IamPropagation,
        Delay::InstanceBoot,
        Delay::InstanceTermination,
        Delay::TrainingJob,
        Delay::EndpointCreation,
        Delay::EndpointDeletion,
        Delay::EndpointConfigPropagation,
        Delay::SecurityGroupChange,
        Delay::MetricPublication,
    ];

    /// The delay whose table key is `key`.
    pub fn from_key(key: &str) -> Option<Delay> {
        Delay::ALL.into_iter().find(|d| d.key() == key)
    }

    /// The table's key in `assets/latency.toml`.
    pub fn key(self) -> &'static str {
        match self {
            Delay::FlowLogDelivery => "flow_log_delivery",
            Delay::FlowLogStartup => "flow_log_startup",
            Delay::SubscriptionToLambda => "subscription_to_lambda",
            Delay::EventBridgeToLambda => "eventbridge_to_lambda",
            Delay::LambdaStart => "lambda_start",
            Delay::ApiCall => "api_call",
            Delay::IamPropagation => "iam_propagation",
            Delay::InstanceBoot => "instance_boot",
            Delay::InstanceTermination => "instance_termination",
            Delay::TrainingJob => "training_job",
            Delay::EndpointCreation => "endpoint_creation",
            Delay::EndpointDeletion => "endpoint_deletion",
            Delay::EndpointConfigPropagation => "endpoint_config_propagation",
            Delay::SecurityGroupChange => "security_group_change",
            Delay::MetricPublication => "metric_publication",
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    what: String,
    source: String,
    quantiles: Vec<(f64, f64)>,
}

impl Entry {
    /// The table as a distribution, or what is wrong with it under `[key]`.
    fn distribution(self, key: &str) -> Result<Distribution, String> {
        Distribution::new(self.what, self.source, self.quantiles).map_err(|e| format!("[{key}]: {e}"))
    }
}

/// One delay's distribution: quantile points interpolated linearly.
#[derive(Clone, Debug)]
pub struct Distribution {
    pub what: String,
    pub source: String,
    points: Vec<(f64, f64)>,
}

impl Distribution {
    fn new(what: String, source: String, points: Vec<(f64, f64)>) -> Result<Self, String> {
        let ok = points.len() >= 2
            && points.first().map(|p| p.0) == Some(0.0)
            && points.last().map(|p| p.0) == Some(1.0)
            && points.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
            && points.iter().all(|p| p.1 >= 0.0);
        if ok {
            Ok(Distribution { what, source, points })
        } else {
            Err("quantiles must run from 0.0 to 1.0, increasing, with non-decreasing non-negative seconds".into())
        }
    }

    /// The value at probability `u` in [0, 1].
    pub fn quantile(&self, u: f64) -> f64 {
        let u = u.clamp(0.0, 1.0);
        let i = self.points.partition_point(|p| p.0 <= u).clamp(1, self.points.len() - 1);
        let (p0, v0) = self.points[i - 1];
        let (p1, v1) = self.points[i];
        v0 + (v1 - v0) * (u - p0) / (p1 - p0)
    }

    pub fn draw(&self, rng: &mut Rng) -> Duration {
        Duration::from_secs_f64(self.quantile(rng.uniform()))
    }
}

/// All of the simulator's delays.
#[derive(Clone, Debug)]
pub struct LatencyModel {
    delays: BTreeMap<Delay, Distribution>,
}

impl LatencyModel {
    /// The model shipped in `assets/latency.toml`.
    pub fn embedded() -> Self {
        Self::parse(MODEL_TOML).expect("assets/latency.toml is checked by the test suite")
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut table: BTreeMap<String, Entry> = toml::from_str(text).map_err(|e| format!("latency model: {e}"))?;
        let mut delays = BTreeMap::new();
        for delay in Delay::ALL {
            let entry = table.remove(delay.key()).ok_or_else(|| format!("latency model: missing [{}]", delay.key()))?;
            delays.insert(delay, entry.distribution(delay.key()).map_err(|e| format!("latency model: {e}"))?);
        }
        if let Some(extra) = table.keys().next() {
            return Err(format!("latency model: unknown quantity [{extra}]"));
        }
        Ok(LatencyModel { delays })
    }

    /// This model with the tables of `text` in place of its own: an override file
    /// (`--latency FILE`, as `cis sim calibrate` writes it) names only the delays it
    /// changes, each as `assets/latency.toml` does.
    pub fn with_overrides(&self, text: &str) -> Result<Self, String> {
        let table: BTreeMap<String, Entry> = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut model = self.clone();
        for (key, entry) in table {
            let delay = Delay::from_key(&key).ok_or_else(|| {
                let known: Vec<&str> = Delay::ALL.iter().map(|d| d.key()).collect();
                format!("unknown quantity [{key}] (known: {})", known.join(", "))
            })?;
            model.delays.insert(delay, entry.distribution(&key)?);
        }
        Ok(model)
    }

    /// Replaces `delay`'s table with `points` (probability, seconds), checked as a
    /// shipped table is.
    pub fn replace(&mut self, delay: Delay, points: Vec<(f64, f64)>, source: String) -> Result<(), String> {
        let what = self.get(delay).what.clone();
        self.delays.insert(delay, Distribution::new(what, source, points)?);
        Ok(())
    }

    /// The tables of `delays` as an override file [`LatencyModel::with_overrides`] reads.
    pub fn to_toml(&self, delays: &[Delay]) -> String {
        let table: BTreeMap<&str, Entry> = delays
            .iter()
            .map(|d| {
                let dist = self.get(*d);
                (d.key(), Entry { what: dist.what.clone(), source: dist.source.clone(), quantiles: dist.points.clone() })
            })
            .collect();
        toml::to_string(&table).expect("latency tables serialize")
    }

    pub fn get(&self, delay: Delay) -> &Distribution {
        &self.delays[&delay]
    }

    pub fn draw(&self, delay: Delay, rng: &mut Rng) -> Duration {
        self.get(delay).draw(rng)
    }

    /// Multiplies every point of `delay`'s distribution by `factor` (fault profiles).
    pub fn stretch(&mut self, delay: Delay, factor: f64) {
        if let Some(d) = self.delays.get_mut(&delay) {
            for p in &mut d.points {
                p.1 *= factor.max(0.0);
            }
        }
    }

    /// The longest delay the model can produce for `delay`.
    pub fn max(&self, delay: Delay) -> Duration {
        Duration::from_secs_f64(self.get(delay).quantile(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_model_parses_and_reproduces_published_percentiles() {
        let model = LatencyModel::embedded();
        let eb = model.get(Delay::EventBridgeToLambda);
        assert!((eb.quantile(0.5) - 0.148).abs() < 1e-9);
        assert!((eb.quantile(0.10) - 0.113).abs() < 1e-9);
        assert!((eb.quantile(0.99) - 0.387).abs() < 1e-9);
        let delivery = model.get(Delay::FlowLogDelivery);
        assert_eq!(delivery.quantile(0.5), 300.0);
        for d in Delay::ALL {
            assert!(!model.get(d).source.is_empty(), "{} has no source", d.key());
        }
    }

    #[test]
    fn draws_stay_within_the_table() {
        let model = LatencyModel::embedded();
        let mut rng = Rng::seeded(3);
        let mut below_median = 0;
        for _ in 0..2000 {
            let d = model.draw(Delay::FlowLogDelivery, &mut rng).as_secs_f64();
            assert!((60.0..=900.0).contains(&d));
            below_median += usize::from(d < 300.0);
        }
        assert!((900..1100).contains(&below_median), "{below_median}");
    }

    #[test]
    fn an_override_file_replaces_only_the_delays_it_names_and_round_trips() {
        let base = LatencyModel::embedded();
        let mut fitted = base.clone();
        fitted.replace(Delay::FlowLogDelivery, vec![(0.0, 100.0), (0.5, 400.0), (1.0, 1000.0)], "a test".into()).unwrap();
        let text = fitted.to_toml(&[Delay::FlowLogDelivery]);
        let back = base.with_overrides(&text).unwrap();
        assert_eq!(back.get(Delay::FlowLogDelivery).quantile(0.5), 400.0);
        assert_eq!(back.get(Delay::FlowLogDelivery).source, "a test");
        assert_eq!(back.get(Delay::LambdaStart).quantile(0.5), base.get(Delay::LambdaStart).quantile(0.5));
        let err = base.with_overrides("[flow_log_delivry]\nwhat='x'\nsource='y'\nquantiles=[[0.0, 1.0], [1.0, 2.0]]").unwrap_err();
        assert!(err.contains("flow_log_delivry") && err.contains("flow_log_delivery"), "{err}");
        let err = base.with_overrides("[api_call]\nwhat='x'\nsource='y'\nquantiles=[[0.0, 2.0], [1.0, 1.0]]").unwrap_err();
        assert!(err.contains("api_call"), "{err}");
    }

    #[test]
    fn rejects_malformed_tables() {
        let err = LatencyModel::parse("[flow_log_delivery]\nwhat='x'\nsource='y'\nquantiles=[[0.5, 1.0]]").unwrap_err();
        assert!(err.contains("flow_log_delivery"), "{err}");
    }
}
