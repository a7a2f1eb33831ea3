//! Fault profiles: the ways AWS misbehaves, injected into the simulated account on purpose.
//!
//! Each profile turns on one family of faults (all of them for `chaos`) at rates high
//! enough to hit every step of a lab's life many times over a run, and at shapes AWS
//! really shows: throttling and 5xx answers (some of them after the call took effect, the
//! response lost on the way), ids not yet visible right after their creation and roles
//! not yet assumable, security groups and subnets held by a detaching interface, slow and
//! failed EventBridge deliveries (retried with backoff, as EventBridge does), duplicate
//! deliveries and failing function invocations (retried by Lambda's asynchronous queue),
//! and the operator's process killed mid-command; and, apart from the rest, a containment
//! function its account denies. The faults draw from their own seeded
//! generator, so one seed and one profile give one history.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::latency::{Delay, LatencyModel};
use crate::base::rng::Rng;
use crate::cloud::CloudError;

/// A named family of faults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultProfile {
    /// AWS as the latency model has it: no injected faults.
    #[default]
    None,
    /// Control-plane calls throttled (`ThrottlingException`, `RequestLimitExceeded`).
    Throttling,
    /// 5xx answers, one in four of them after the call took effect (the response lost).
    ServerErrors,
    /// A just-created id not yet found by its describe call; roles and endpoint configs
    /// slower to propagate.
    Consistency,
    /// Interfaces slow to detach: deletes of groups and subnets refused with
    /// DependencyViolation for minutes after the instance is gone.
    Detaching,
    /// EventBridge and the subscription filter slow to deliver, and deliveries failing and
    /// retried with backoff.
    Deliveries,
    /// Every event delivered twice or more, and function invocations failing and retried.
    Duplicates,
    /// The operator's process killed mid-command (at a random point of `up` or `down`).
    Crashes,
    /// All of the above at once.
    Chaos,
    /// The containment function's changes to EC2 refused (AccessDenied: a service control
    /// policy, or its role's policy edited): every attempt fails, and Lambda sends the
    /// event to the lab's topic, the function's on-failure destination. Not part of
    /// `chaos`: under it every attack is missed, and what it shows is that people hear so.
    Denied,
}

impl FaultProfile {
    pub const ALL: [FaultProfile; 10] = [
        FaultProfile::None,
        FaultProfile::Throttling,
        FaultProfile::ServerErrors,
        FaultProfile::Consistency,
        FaultProfile::Detaching,
        FaultProfile::Deliveries,
        FaultProfile::Duplicates,
        FaultProfile::Crashes,
        FaultProfile::Chaos,
        FaultProfile::Denied,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultProfile::None => "none",
            FaultProfile::Throttling => "throttling",
            FaultProfile::ServerErrors => "server-errors",
            FaultProfile::Consistency => "consistency",
            FaultProfile::Detaching => "detaching",
            FaultProfile::Deliveries => "deliveries",
            FaultProfile::Duplicates => "duplicates",
            FaultProfile::Crashes => "crashes",
            FaultProfile::Chaos => "chaos",
            FaultProfile::Denied => "denied",
        }
    }

    fn has(self, family: FaultProfile) -> bool {
        self == family || (self == FaultProfile::Chaos && family != FaultProfile::Denied)
    }

    /// Whether an attack under this profile is to be detected and isolated: every profile
    /// but `denied`, whose point is a containment that cannot isolate.
    pub fn isolates(self) -> bool {
        !self.has(FaultProfile::Denied)
    }

    /// The rates this profile injects.
    pub fn rates(self) -> FaultRates {
        let on = |family: FaultProfile, rate: f64| if self.has(family) { rate } else { 0.0 };
        FaultRates {
            throttle: on(FaultProfile::Throttling, 0.15),
            server_error: on(FaultProfile::ServerErrors, 0.08),
            lost_response: on(FaultProfile::ServerErrors, 0.25),
            invisible_for_s: on(FaultProfile::Consistency, 20.0),
            propagation_factor: if self.has(FaultProfile::Consistency) { 2.5 } else { 1.0 },
            detach_linger_s: on(FaultProfile::Detaching, 240.0),
            delivery_factor: if self.has(FaultProfile::Deliveries) { 60.0 } else { 1.0 },
            delivery_failure: on(FaultProfile::Deliveries, 0.3),
            duplicate: on(FaultProfile::Duplicates, 0.5),
            function_error: on(FaultProfile::Duplicates, 0.2),
            crash: self.has(FaultProfile::Crashes),
            deny_containment: self.has(FaultProfile::Denied),
        }
    }
}

impl fmt::Display for FaultProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultProfile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        FaultProfile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown fault profile '{s}': expected one of {}", FaultProfile::ALL.map(|p| p.name()).join(", ")))
    }
}

/// How often, and how badly, each fault strikes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultRates {
    /// Probability that a control-plane call is throttled.
    pub throttle: f64,
    /// Probability that a control-plane call answers 5xx.
    pub server_error: f64,
    /// Of the 5xx answers to a create or delete, the share that came after the change
    /// took effect.
    pub lost_response: f64,
    /// Up to this long after its creation a resource's describe call does not find it.
    pub invisible_for_s: f64,
    /// IAM and endpoint-config propagation stretched by this factor.
    pub propagation_factor: f64,
    /// Up to this long after an instance is gone its interface still holds its subnet and
    /// groups.
    pub detach_linger_s: f64,
    /// EventBridge and subscription deliveries stretched by this factor.
    pub delivery_factor: f64,
    /// Probability that one delivery attempt fails (EventBridge retries it).
    pub delivery_failure: f64,
    /// Probability that an event is delivered once more.
    pub duplicate: f64,
    /// Probability that a function invocation fails before it does anything (Lambda's
    /// asynchronous queue retries it twice).
    pub function_error: f64,
    /// The operator's process may be killed mid-command.
    pub crash: bool,
    /// The containment function's changes to EC2 are refused.
    pub deny_containment: bool,
}

impl FaultRates {
    pub fn none() -> FaultRates {
        FaultProfile::None.rates()
    }

    /// The latency model with this profile's slower propagation and deliveries.
    pub fn latency(&self, model: &LatencyModel) -> LatencyModel {
        let mut m = model.clone();
        for d in [Delay::IamPropagation, Delay::EndpointConfigPropagation] {
            m.stretch(d, self.propagation_factor);
        }
        for d in [Delay::EventBridgeToLambda, Delay::SubscriptionToLambda] {
            m.stretch(d, self.delivery_factor);
        }
        m
    }
}

/// What a control-plane call is, for the faults that apply to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// Creates or deletes: a 5xx answer may come after the change took effect.
    Mutate,
    /// Reads and the data plane's calls.
    Read,
}

/// The fault generator of one simulated account.
pub struct Injector {
    pub profile: FaultProfile,
    pub rates: FaultRates,
    rng: Rng,
    /// How many faults of each kind were injected, by name (for the test's figures).
    pub injected: std::collections::BTreeMap<&'static str, u64>,
}

impl Injector {
    pub fn new(profile: FaultProfile, seed: u64) -> Injector {
        // Apart from the account's own stream, so that a profile does not reshuffle the
        // traffic a seed makes.
        let rng = Rng::seeded(seed ^ 0xfa17_5eed_0000_0000 ^ (profile as u64));
        Injector { profile, rates: profile.rates(), rng, injected: Default::default() }
    }

    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.uniform() < p
    }

    pub fn uniform(&mut self) -> f64 {
        self.rng.uniform()
    }

    pub fn count(&mut self, what: &'static str) {
        *self.injected.entry(what).or_default() += 1;
    }

    /// The error a call meets before it reaches the service, if any.
    pub fn before(&mut self, api: &str) -> Option<CloudError> {
        if self.chance(self.rates.throttle) {
            self.count("throttled");
            return Some(CloudError::Throttled(format!("{api}: Rate exceeded (injected)")));
        }
        if self.chance(self.rates.server_error * (1.0 - self.rates.lost_response)) {
            self.count("5xx");
            return Some(CloudError::Unavailable(format!("{api}: InternalError (injected)")));
        }
        None
    }

    /// Whether one more copy of an event is delivered.
    pub fn duplicate(&mut self) -> bool {
        let d = self.chance(self.rates.duplicate);
        if d {
            self.count("duplicate delivery");
        }
        d
    }

    /// Whether one delivery attempt fails.
    pub fn delivery_failure(&mut self) -> bool {
        let d = self.chance(self.rates.delivery_failure);
        if d {
            self.count("failed delivery");
        }
        d
    }

    /// Whether a function invocation fails before it does anything.
    pub fn function_error(&mut self) -> bool {
        let d = self.chance(self.rates.function_error);
        if d {
            self.count("failed invocation");
        }
        d
    }

    /// Whether the containment function's change is refused (counted when it is).
    pub fn deny_containment(&mut self) -> bool {
        if self.rates.deny_containment {
            self.count("denied containment call");
        }
        self.rates.deny_containment
    }

    /// Whether a mutating call that took effect loses its response.
    pub fn lose_response(&mut self) -> bool {
        let lost = self.chance(self.rates.server_error * self.rates.lost_response);
        if lost {
            self.count("5xx after the change");
        }
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse_by_name_and_unknown_ones_list_the_choices() {
        for p in FaultProfile::ALL {
            assert_eq!(p.name().parse::<FaultProfile>().unwrap(), p);
        }
        let err = "flaky".parse::<FaultProfile>().unwrap_err();
        assert!(err.contains("flaky") && err.contains("server-errors") && err.contains("chaos"), "{err}");
    }

    #[test]
    fn each_profile_turns_on_only_its_family_and_chaos_turns_on_all() {
        assert_eq!(FaultProfile::None.rates(), FaultRates::none());
        let chaos = FaultProfile::Chaos.rates();
        for p in FaultProfile::ALL.into_iter().filter(|p| ![FaultProfile::None, FaultProfile::Chaos].contains(p)) {
            let r = p.rates();
            assert_ne!(r, FaultRates::none(), "{p} injects nothing");
            assert!(r.throttle == 0.0 || p == FaultProfile::Throttling, "{p}");
            assert!(r.delivery_failure == 0.0 || p == FaultProfile::Deliveries, "{p}");
            assert!(!r.deny_containment || p == FaultProfile::Denied, "{p}");
        }
        assert!(chaos.throttle > 0.0 && chaos.server_error > 0.0 && chaos.duplicate > 0.0 && chaos.crash);
        assert!(chaos.invisible_for_s > 0.0 && chaos.detach_linger_s > 0.0 && chaos.delivery_failure > 0.0);
        // Chaos still isolates every attack: the one profile that cannot is not in it.
        assert!(!chaos.deny_containment && FaultProfile::Chaos.isolates() && !FaultProfile::Denied.isolates());
    }

    #[test]
    fn the_same_seed_injects_the_same_faults() {
        let draw = |seed| {
            let mut i = Injector::new(FaultProfile::Chaos, seed);
            (0..200).map(|n| i.before(&format!("call {n}")).map(|e| e.to_string())).collect::<Vec<_>>()
        };
        assert_eq!(draw(4), draw(4));
        assert_ne!(draw(4), draw(5));
        assert!(draw(4).iter().any(Option::is_some));
    }
}
