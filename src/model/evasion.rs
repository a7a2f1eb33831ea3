//! Evasion families for `cis sim frontier`: five kinds of attack, each with one knob that
//! turns it from plain to faint (bytes a minute, a beacon's interval or jitter, how many
//! destinations), each shaped from a catalogue scenario into an attack that lasts the
//! study's budget.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::base::error::{Error, Result};
use crate::model::scenario::{find, Scenario};

/// A family of attacks with one intensity knob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// One HTTPS upload that lasts the budget; knob: bytes a minute.
    Bulk,
    /// A piece every two minutes to one never-seen host; knob: bytes a minute.
    Drip,
    /// 1.5 KiB check-ins to one never-seen host, jittered by a quarter; knob: the interval.
    Beacon,
    /// 1.5 KiB check-ins every 60 s to one never-seen host; knob: how far each is
    /// jittered, either way.
    Jitter,
    /// 64 KiB pieces, each to another network of the internet; knob: how many.
    Spray,
}

/// What a family's knob is counted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unit {
    #[serde(rename = "B/min")]
    BytesPerMinute,
    #[serde(rename = "s")]
    Seconds,
    /// A count of destinations: whole numbers only.
    #[serde(rename = "hosts")]
    Hosts,
}

impl Unit {
    pub fn symbol(self) -> &'static str {
        match self {
            Unit::BytesPerMinute => "B/min",
            Unit::Seconds => "s",
            Unit::Hosts => "hosts",
        }
    }
}

/// What a family's knob measures and the range a study searches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Knob {
    pub name: Cow<'static, str>,
    pub unit: Unit,
    /// The plainest setting searched: an attack every detector should catch.
    pub strongest: f64,
    /// The faintest setting searched.
    pub faintest: f64,
}

/// The drip's pace: a piece every two minutes, as `exfil-slow-drip`.
const DRIP_INTERVAL_S: f64 = 120.0;
/// The jittered beacon's interval, as `c2-beacon-jitter`'s.
const BEACON_INTERVAL_S: f64 = 60.0;
/// The spray's pace: a piece every three seconds, as `exfil-spray-wide`.
const SPRAY_INTERVAL_S: f64 = 3.0;

impl Family {
    pub const ALL: [Family; 5] = [Family::Bulk, Family::Drip, Family::Beacon, Family::Jitter, Family::Spray];

    pub fn name(self) -> &'static str {
        match self {
            Family::Bulk => "bulk",
            Family::Drip => "drip",
            Family::Beacon => "beacon",
            Family::Jitter => "jitter",
            Family::Spray => "spray",
        }
    }

    /// The catalogue scenario the family is shaped from (its script, remotes and ports).
    pub fn base(self) -> &'static str {
        match self {
            Family::Bulk => "exfil-https-bulk",
            Family::Drip => "exfil-slow-drip",
            Family::Beacon | Family::Jitter => "c2-beacon-jitter",
            Family::Spray => "exfil-spray-wide",
        }
    }

    pub fn knob(self) -> Knob {
        let knob = |name: &'static str, unit, strongest, faintest| Knob { name: Cow::Borrowed(name), unit, strongest, faintest };
        match self {
            Family::Bulk => knob("bytes a minute", Unit::BytesPerMinute, 1024.0 * 1048576.0, 1024.0),
            Family::Drip => knob("bytes a minute", Unit::BytesPerMinute, 64.0 * 1048576.0, 64.0),
            Family::Beacon => knob("check-in interval", Unit::Seconds, 5.0, 3600.0),
            Family::Jitter => knob("jitter either way", Unit::Seconds, 0.5, BEACON_INTERVAL_S),
            Family::Spray => knob("destinations", Unit::Hosts, 200.0, 1.0),
        }
    }

    /// Whether `a` is a plainer attack than `b` (a beacon is plainer the shorter its interval).
    pub fn plainer(self, a: f64, b: f64) -> bool {
        match self {
            Family::Beacon | Family::Jitter => a < b,
            _ => a > b,
        }
    }

    /// The setting halfway between two, on a log scale (the knobs span orders of magnitude);
    /// a whole number for a count, strictly between the two while one fits, else the plainer.
    pub fn between(self, a: f64, b: f64) -> f64 {
        let mid = ((a.ln() + b.ln()) * 0.5).exp();
        if !self.knob().whole() {
            return mid;
        }
        let (lo, hi) = (a.min(b), a.max(b));
        if hi - lo > 1.0 {
            mid.round().clamp(lo + 1.0, hi - 1.0)
        } else if self.plainer(a, b) {
            a
        } else {
            b
        }
    }

    /// Whether the search can still split `a` and `b`: counts one apart cannot; other knobs
    /// stop when the two are within 1% of each other.
    pub fn splittable(self, a: f64, b: f64) -> bool {
        let (lo, hi) = (a.min(b), a.max(b));
        if self.knob().whole() {
            hi - lo > 1.0
        } else {
            hi > lo * 1.01
        }
    }

    /// The family's attack at `setting`, lasting `budget_s` seconds (the beacon and the
    /// drip go on that long; the bulk upload spreads over it; the spray goes at its pace).
    pub fn scenario(self, setting: f64, budget_s: f64) -> Result<Scenario> {
        let knob = self.knob();
        if !(setting.is_finite() && setting > 0.0) {
            return Err(Error::Usage(format!("{}: {setting} is not a setting of its {}", self.name(), knob.name)));
        }
        if !(budget_s.is_finite() && budget_s >= 600.0) {
            return Err(Error::Usage(format!("a budget of {budget_s} s: give at least 10 minutes")));
        }
        let mut scenario = find(self.base())?;
        scenario.id = format!("frontier-{}", self.name());
        scenario.expect.detected = true;
        scenario.expect.isolated = true;
        let stream = scenario.streams.first_mut().ok_or_else(|| Error::Internal(format!("{} has no stream", self.base())))?;
        stream.start_s = 0.0;
        match self {
            Family::Bulk => {
                stream.connections = 1;
                stream.duration_s = budget_s;
                stream.bytes_out = (setting * budget_s / 60.0).round().max(1.0) as u64;
            }
            Family::Drip => {
                stream.interval_s = DRIP_INTERVAL_S;
                stream.connections = (budget_s / DRIP_INTERVAL_S).floor().max(1.0) as u32;
                stream.bytes_out = (setting * DRIP_INTERVAL_S / 60.0).round().max(1.0) as u64;
            }
            Family::Beacon => {
                stream.interval_s = setting;
                stream.jitter_s = setting / 4.0;
                stream.connections = (budget_s / setting).floor().max(1.0) as u32;
            }
            Family::Jitter => {
                stream.interval_s = BEACON_INTERVAL_S;
                stream.jitter_s = setting;
                stream.connections = (budget_s / BEACON_INTERVAL_S).floor().max(1.0) as u32;
            }
            Family::Spray => {
                stream.interval_s = SPRAY_INTERVAL_S;
                stream.connections = setting.round().max(1.0) as u32;
            }
        }
        scenario.title = format!("{} at {} (cis sim frontier)", scenario.title, knob.show(setting));
        Ok(scenario)
    }
}

impl Knob {
    /// Whether only whole settings make sense (a count of destinations).
    pub fn whole(&self) -> bool {
        self.unit == Unit::Hosts
    }

    /// A setting for people, with its unit: bytes in KiB, MiB; else three significant digits.
    pub fn show(&self, v: f64) -> String {
        if self.unit == Unit::BytesPerMinute {
            return format!("{}/min", crate::base::units::human_bytes(v.round() as u64));
        }
        let number = if self.whole() || v >= 100.0 {
            format!("{v:.0}")
        } else if v >= 10.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.2}")
        };
        format!("{number} {}", self.unit.symbol())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_family_shapes_its_base_scenario_to_the_setting_and_the_budget() {
        let hour = 3600.0;
        let bulk = Family::Bulk.scenario(60_000.0, hour).unwrap();
        assert_eq!(bulk.streams[0].bytes_out, 3_600_000, "a minute's bytes times sixty minutes");
        assert_eq!(bulk.streams[0].duration_s, hour);
        let drip = Family::Drip.scenario(600.0, hour).unwrap();
        assert_eq!((drip.streams[0].connections, drip.streams[0].bytes_out), (30, 1200));
        let beacon = Family::Beacon.scenario(300.0, hour).unwrap();
        assert_eq!((beacon.streams[0].connections, beacon.streams[0].jitter_s), (12, 75.0));
        let jitter = Family::Jitter.scenario(20.0, hour).unwrap();
        assert_eq!((jitter.streams[0].connections, jitter.streams[0].interval_s, jitter.streams[0].jitter_s), (60, 60.0, 20.0));
        let spray = Family::Spray.scenario(7.0, hour).unwrap();
        assert_eq!(spray.streams[0].connections, 7);
        for f in Family::ALL {
            let s = f.scenario(f.knob().faintest, hour).unwrap();
            assert!(s.expect.detected && s.span_s() <= hour + 0.25 * 3600.0 + 1.0, "{}: spans {}", f.name(), s.span_s());
            assert!(f.scenario(f64::INFINITY, hour).is_err() && f.scenario(0.0, hour).is_err());
        }
    }

    #[test]
    fn the_search_halves_on_a_log_scale_and_stops_at_whole_counts() {
        assert!((Family::Bulk.between(100.0, 10_000.0) - 1000.0).abs() < 1e-6);
        assert_eq!(Family::Spray.between(1.0, 3.0), 2.0);
        assert_eq!(Family::Spray.between(1.0, 2.0), 2.0, "nothing fits between: the plainer end");
        assert!(!Family::Spray.splittable(1.0, 2.0) && Family::Spray.splittable(1.0, 3.0));
        assert!(Family::Beacon.plainer(10.0, 60.0) && Family::Bulk.plainer(60.0, 10.0));
    }
}
