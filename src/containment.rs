//! The containment handler: isolates an instance the way AWS recommends.
//!
//! A plain async function over a small trait ([`ContainmentApi`]) for the EC2 and SNS
//! calls, so the simulator, unit tests and the Lambda run the same code. The procedure
//! (aws-facts.md, "Isolating an instance"):
//! 1. refuse an instance that does not carry this lab's tag;
//! 2. do nothing if it is already isolated (deliveries are at least once);
//! 3. record the original groups in a tag, so they can be restored;
//! 4. move every ENI to the allow-all group first, so tracked connections become untracked,
//!    then every ENI to the isolation group, which cuts them;
//! 5. on error put the original groups back and report it;
//! 6. publish one message with the timeline.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::cloud::{CloudError, ContainmentOutcome, DetectionEvent};
use crate::lab::{Tags, TAG_LAB};

pub const TAG_ORIGINAL_GROUPS: &str = "cis:original-groups";
pub const TAG_ISOLATED_AT: &str = "cis:isolated-at";

/// An instance as containment sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceView {
    pub id: String,
    pub tags: Tags,
    pub interfaces: Vec<InterfaceView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterfaceView {
    pub id: String,
    pub groups: Vec<String>,
}

/// The calls containment makes.
#[async_trait]
pub trait ContainmentApi: Send + Sync {
    fn now(&self) -> Timestamp;
    async fn describe_instance(&self, instance_id: &str) -> Result<InstanceView, CloudError>;
    /// ModifyNetworkInterfaceAttribute(Groups): covers every ENI, unlike
    /// ModifyInstanceAttribute which changes only the primary one.
    async fn set_interface_groups(&self, interface_id: &str, groups: &[String]) -> Result<(), CloudError>;
    async fn tag_instance(&self, instance_id: &str, tags: &Tags) -> Result<(), CloudError>;
    async fn publish(&self, topic_arn: &str, subject: &str, message: &str) -> Result<(), CloudError>;
}

/// The function's configuration (its environment on Lambda).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainmentConfig {
    pub lab: String,
    pub topic_arn: String,
    pub allow_all_group: String,
    pub isolation_group: String,
}

impl ContainmentConfig {
    /// From the function's environment variables (`CIS_LAB`, `CIS_TOPIC_ARN`,
    /// `CIS_ALLOW_ALL_SG`, `CIS_ISOLATION_SG`).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let need = |k: &str| get(k).filter(|v| !v.is_empty()).ok_or_else(|| format!("environment variable {k} is not set"));
        Ok(ContainmentConfig {
            lab: need("CIS_LAB")?,
            topic_arn: need("CIS_TOPIC_ARN")?,
            allow_all_group: need("CIS_ALLOW_ALL_SG")?,
            isolation_group: need("CIS_ISOLATION_SG")?,
        })
    }
}

/// Handles one detection event.
pub async fn contain(api: &dyn ContainmentApi, config: &ContainmentConfig, event: &DetectionEvent) -> ContainmentOutcome {
    let invoked_at = api.now();
    let outcome = |name: &str, isolated_at: Option<Timestamp>, detail: String| ContainmentOutcome {
        invoked_at,
        finished_at: api.now(),
        instance_id: event.instance_id.clone(),
        outcome: name.to_string(),
        isolated_at,
        detail,
    };

    let instance = match api.describe_instance(&event.instance_id).await {
        Ok(i) => i,
        Err(e) => return outcome("failed", None, format!("could not describe {}: {e}", event.instance_id)),
    };
    if instance.tags.get(TAG_LAB) != Some(&config.lab) || event.lab != config.lab {
        return outcome(
            "refused",
            None,
            format!("{} does not carry {TAG_LAB}={}: containment acts only inside its own lab", instance.id, config.lab),
        );
    }
    let isolated = |i: &InterfaceView| i.groups == [config.isolation_group.clone()];
    if !instance.interfaces.is_empty() && instance.interfaces.iter().all(isolated) {
        return outcome("already-isolated", None, "duplicate delivery: the instance is already isolated".into());
    }

    // Keep the groups from before any earlier, interrupted attempt.
    let original = instance.tags.get(TAG_ORIGINAL_GROUPS).cloned().unwrap_or_else(|| encode_groups(&instance.interfaces));
    let originals = decode_groups(&original);
    if let Err(e) = api.tag_instance(&instance.id, &Tags::from([(TAG_ORIGINAL_GROUPS.to_string(), original.clone())])).await {
        return outcome("failed", None, format!("could not record the original groups: {e}"));
    }

    let swap = async {
        for step in [&config.allow_all_group, &config.isolation_group] {
            for i in &instance.interfaces {
                api.set_interface_groups(&i.id, std::slice::from_ref(step)).await?;
            }
        }
        Ok::<_, CloudError>(api.now())
    };
    let isolated_at = match swap.await {
        Ok(t) => t,
        Err(e) => {
            let mut restore_errors = Vec::new();
            for (eni, groups) in &originals {
                if let Err(re) = api.set_interface_groups(eni, groups).await {
                    restore_errors.push(format!("{eni}: {re}"));
                }
            }
            let detail = if restore_errors.is_empty() {
                format!("isolation failed ({e}); the original groups were restored")
            } else {
                format!("isolation failed ({e}); restoring failed too: {}", restore_errors.join(", "))
            };
            let _ = api.publish(&config.topic_arn, &format!("cis: containment of {} FAILED", instance.id), &detail).await;
            return outcome("failed", None, detail);
        }
    };
    let _ = api.tag_instance(&instance.id, &Tags::from([(TAG_ISOLATED_AT.to_string(), isolated_at.to_string())])).await;

    let message = serde_json::json!({
        "lab": config.lab,
        "instance": instance.id,
        "detected_at": event.at.to_string(),
        "containment_invoked_at": invoked_at.to_string(),
        "isolated_at": isolated_at.to_string(),
        "detector": event.detector,
        "evidence": event.reason,
        "original_groups": original,
    });
    let subject = format!("cis: {} isolated in lab {}", instance.id, config.lab);
    let detail = match api.publish(&config.topic_arn, &subject, &message.to_string()).await {
        Ok(()) => format!("isolated {} interface(s); notified", instance.interfaces.len()),
        Err(e) => format!("isolated {} interface(s); notification failed: {e}", instance.interfaces.len()),
    };
    outcome("isolated", Some(isolated_at), detail)
}

/// `eni-a=sg-1+sg-2;eni-b=sg-3`: fits an EC2 tag value (256 characters) for a few ENIs.
pub fn encode_groups(interfaces: &[InterfaceView]) -> String {
    interfaces.iter().map(|i| format!("{}={}", i.id, i.groups.join("+"))).collect::<Vec<_>>().join(";")
}

pub fn decode_groups(s: &str) -> Vec<(String, Vec<String>)> {
    s.split(';')
        .filter_map(|part| part.split_once('='))
        .map(|(eni, groups)| (eni.to_string(), groups.split('+').filter(|g| !g.is_empty()).map(String::from).collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records calls; fails the n-th interface change when asked.
    struct Recorder {
        instance: Mutex<InstanceView>,
        calls: Mutex<Vec<String>>,
        fail_set_call: Option<usize>,
    }

    #[async_trait]
    impl ContainmentApi for Recorder {
        fn now(&self) -> Timestamp {
            Timestamp(self.calls.lock().unwrap().len() as i64)
        }
        async fn describe_instance(&self, _: &str) -> Result<InstanceView, CloudError> {
            Ok(self.instance.lock().unwrap().clone())
        }
        async fn set_interface_groups(&self, eni: &str, groups: &[String]) -> Result<(), CloudError> {
            let mut calls = self.calls.lock().unwrap();
            let n = calls.iter().filter(|c| c.starts_with("set")).count();
            calls.push(format!("set {eni} {}", groups.join(",")));
            if self.fail_set_call == Some(n) {
                return Err(CloudError::Unavailable("injected".into()));
            }
            let mut inst = self.instance.lock().unwrap();
            inst.interfaces.iter_mut().find(|i| i.id == eni).unwrap().groups = groups.to_vec();
            Ok(())
        }
        async fn tag_instance(&self, _: &str, tags: &Tags) -> Result<(), CloudError> {
            self.calls.lock().unwrap().push(format!("tag {}", tags.keys().cloned().collect::<Vec<_>>().join(",")));
            self.instance.lock().unwrap().tags.extend(tags.clone());
            Ok(())
        }
        async fn publish(&self, _: &str, subject: &str, _: &str) -> Result<(), CloudError> {
            self.calls.lock().unwrap().push(format!("publish {subject}"));
            Ok(())
        }
    }

    fn setup(lab: &str, fail: Option<usize>) -> Recorder {
        Recorder {
            instance: Mutex::new(InstanceView {
                id: "i-1".into(),
                tags: Tags::from([(TAG_LAB.to_string(), lab.to_string())]),
                interfaces: vec![
                    InterfaceView { id: "eni-a".into(), groups: vec!["sg-target".into()] },
                    InterfaceView { id: "eni-b".into(), groups: vec!["sg-target".into(), "sg-extra".into()] },
                ],
            }),
            calls: Mutex::new(vec![]),
            fail_set_call: fail,
        }
    }

    fn config() -> ContainmentConfig {
        ContainmentConfig {
            lab: "lab".into(),
            topic_arn: "arn:topic".into(),
            allow_all_group: "sg-all".into(),
            isolation_group: "sg-iso".into(),
        }
    }

    fn event() -> DetectionEvent {
        DetectionEvent {
            at: Timestamp(0),
            lab: "lab".into(),
            instance_id: "i-1".into(),
            detector: "d".into(),
            window_start: Timestamp(0),
            reason: "r".into(),
        }
    }

    fn sets(r: &Recorder) -> Vec<String> {
        r.calls.lock().unwrap().iter().filter(|c| c.starts_with("set")).cloned().collect()
    }

    #[tokio::test]
    async fn swaps_every_interface_to_allow_all_then_isolation() {
        let r = setup("lab", None);
        let out = contain(&r, &config(), &event()).await;
        assert_eq!(out.outcome, "isolated");
        assert!(out.isolated_at.is_some());
        assert_eq!(sets(&r), ["set eni-a sg-all", "set eni-b sg-all", "set eni-a sg-iso", "set eni-b sg-iso"]);
        let tags = r.instance.lock().unwrap().tags.clone();
        assert_eq!(tags[TAG_ORIGINAL_GROUPS], "eni-a=sg-target;eni-b=sg-target+sg-extra");
        assert!(r.calls.lock().unwrap().last().unwrap().starts_with("publish cis: i-1 isolated"));

        let again = contain(&r, &config(), &event()).await;
        assert_eq!(again.outcome, "already-isolated");
        assert_eq!(sets(&r).len(), 4, "a duplicate delivery changes nothing");
    }

    #[tokio::test]
    async fn refuses_instances_outside_its_lab() {
        let r = setup("other-lab", None);
        let out = contain(&r, &config(), &event()).await;
        assert_eq!(out.outcome, "refused");
        assert!(sets(&r).is_empty());
    }

    #[tokio::test]
    async fn restores_original_groups_when_a_step_fails() {
        let r = setup("lab", Some(2));
        let out = contain(&r, &config(), &event()).await;
        assert_eq!(out.outcome, "failed");
        let inst = r.instance.lock().unwrap().clone();
        assert_eq!(inst.interfaces[0].groups, ["sg-target"]);
        assert_eq!(inst.interfaces[1].groups, ["sg-target", "sg-extra"]);
    }
}
