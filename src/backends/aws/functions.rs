//! The AWS side of the functions' traits: EC2 and SNS for containment (the Lambda's, and
//! `cis release`'s), the SageMaker runtime and EventBridge for the detector.

use super::error::cloud_error;
use crate::base::clock::{Clock, Timestamp};
use crate::cloud::CloudError;
use crate::functions::containment::{ContainmentApi, InstanceView, InterfaceView, VolumeView};
use crate::functions::detector::DetectorApi;
use crate::model::events::DetectionEvent;
use crate::model::lab::{ResourceKind, Tags, DETECTION_DETAIL_TYPE, DETECTION_SOURCE};
use async_trait::async_trait;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, EbsInstanceBlockDeviceSpecification, InstanceAttributeName, InstanceBlockDeviceMappingSpecification,
    ResourceType, Tag, TagSpecification,
};

/// EC2 and SNS for the containment function.
pub struct AwsContainment {
    ec2: aws_sdk_ec2::Client,
    sns: aws_sdk_sns::Client,
    clock: Clock,
}

impl AwsContainment {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        AwsContainment { ec2: aws_sdk_ec2::Client::new(config), sns: aws_sdk_sns::Client::new(config), clock: Clock::system() }
    }
}

fn ec2_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

impl AwsContainment {
    /// The network ACL of a subnet, and whether containment's deny-all entries are in it.
    async fn subnet_acl(&self, subnet_id: &str) -> Result<(String, bool), CloudError> {
        let out = self
            .ec2
            .describe_network_acls()
            .filters(aws_sdk_ec2::types::Filter::builder().name("association.subnet-id").values(subnet_id).build())
            .send()
            .await
            .map_err(|e| cloud_error(ResourceKind::Subnet, subnet_id, e))?;
        let acl = out
            .network_acls()
            .first()
            .ok_or_else(|| CloudError::NotFound { kind: ResourceKind::Subnet.name(), id: format!("the network ACL of {subnet_id}") })?;
        let denies = acl
            .entries()
            .iter()
            .filter(|e| {
                e.rule_number() == Some(crate::functions::containment::CUT_RULE_NUMBER)
                    && e.rule_action() == Some(&aws_sdk_ec2::types::RuleAction::Deny)
                    && e.cidr_block() == Some("0.0.0.0/0")
            })
            .count();
        Ok((acl.network_acl_id().unwrap_or_default().to_string(), denies == 2))
    }
}

#[async_trait]
impl ContainmentApi for AwsContainment {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    async fn describe_instance(&self, instance_id: &str) -> Result<InstanceView, CloudError> {
        let err = |e| cloud_error(ResourceKind::Instance, instance_id, e);
        let out = self.ec2.describe_instances().instance_ids(instance_id).send().await.map_err(err)?;
        let instance = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(instance_id))
            .ok_or_else(|| CloudError::NotFound { kind: ResourceKind::Instance.name(), id: instance_id.to_string() })?;
        let protection = self
            .ec2
            .describe_instance_attribute()
            .instance_id(instance_id)
            .attribute(InstanceAttributeName::DisableApiTermination)
            .send()
            .await
            .map_err(|e| cloud_error(ResourceKind::Instance, instance_id, e))?;
        // The interfaces' groups as the interfaces themselves report them: the record a
        // group change writes (moto, unlike AWS, leaves DescribeInstances' copy stale).
        let enis = self
            .ec2
            .describe_network_interfaces()
            .filters(aws_sdk_ec2::types::Filter::builder().name("attachment.instance-id").values(instance_id).build())
            .send()
            .await
            .map_err(|e| cloud_error(ResourceKind::Instance, instance_id, e))?;
        let mut interfaces: Vec<InterfaceView> = enis
            .network_interfaces()
            .iter()
            .filter_map(|n| {
                Some(InterfaceView {
                    id: n.network_interface_id()?.to_string(),
                    groups: n.groups().iter().filter_map(|g| g.group_id().map(String::from)).collect(),
                })
            })
            .collect();
        interfaces.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(InstanceView {
            id: instance_id.to_string(),
            tags: instance.tags().iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect(),
            interfaces,
            volumes: instance
                .block_device_mappings()
                .iter()
                .filter_map(|m| {
                    let ebs = m.ebs()?;
                    Some(VolumeView {
                        id: ebs.volume_id()?.to_string(),
                        device: m.device_name()?.to_string(),
                        delete_on_termination: ebs.delete_on_termination().unwrap_or(true),
                    })
                })
                .collect(),
            termination_protected: protection.disable_api_termination().and_then(|v| v.value()).unwrap_or(false),
            subnet_cut: match instance.subnet_id() {
                Some(subnet) => self.subnet_acl(subnet).await?.1,
                None => false,
            },
            subnet_id: instance.subnet_id().unwrap_or_default().to_string(),
        })
    }

    async fn cut_subnet(&self, subnet_id: &str) -> Result<(), CloudError> {
        let (acl, cut) = self.subnet_acl(subnet_id).await?;
        if cut {
            return Ok(());
        }
        for egress in [false, true] {
            let created = self
                .ec2
                .create_network_acl_entry()
                .network_acl_id(&acl)
                .rule_number(crate::functions::containment::CUT_RULE_NUMBER)
                .protocol("-1")
                .rule_action(aws_sdk_ec2::types::RuleAction::Deny)
                .egress(egress)
                .cidr_block("0.0.0.0/0")
                .send()
                .await
                .map_err(|e| cloud_error(ResourceKind::Subnet, &acl, e));
            match created {
                Ok(_) | Err(CloudError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn restore_subnet(&self, subnet_id: &str) -> Result<(), CloudError> {
        let (acl, _) = self.subnet_acl(subnet_id).await?;
        for egress in [false, true] {
            let deleted = self
                .ec2
                .delete_network_acl_entry()
                .network_acl_id(&acl)
                .rule_number(crate::functions::containment::CUT_RULE_NUMBER)
                .egress(egress)
                .send()
                .await
                .map_err(|e| cloud_error(ResourceKind::Subnet, &acl, e));
            match deleted {
                Ok(_) | Err(CloudError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn set_interface_groups(&self, interface_id: &str, groups: &[String]) -> Result<(), CloudError> {
        self.ec2
            .modify_network_interface_attribute()
            .network_interface_id(interface_id)
            .set_groups(Some(groups.to_vec()))
            .send()
            .await
            .map_err(|e| cloud_error(ResourceKind::Instance, interface_id, e))?;
        Ok(())
    }

    async fn tag_instance(&self, instance_id: &str, tags: &Tags) -> Result<(), CloudError> {
        self.ec2
            .create_tags()
            .resources(instance_id)
            .set_tags(Some(ec2_tags(tags)))
            .send()
            .await
            .map_err(|e| cloud_error(ResourceKind::Instance, instance_id, e))?;
        Ok(())
    }

    async fn protect_from_termination(&self, instance_id: &str) -> Result<(), CloudError> {
        self.ec2
            .modify_instance_attribute()
            .instance_id(instance_id)
            .disable_api_termination(AttributeBooleanValue::builder().value(true).build())
            .send()
            .await
            .map_err(|e| cloud_error(ResourceKind::Instance, instance_id, e))?;
        Ok(())
    }

    async fn keep_volumes(&self, instance_id: &str, devices: &[String]) -> Result<(), CloudError> {
        let mappings = devices
            .iter()
            .map(|d| {
                InstanceBlockDeviceMappingSpecification::builder()
                    .device_name(d)
                    .ebs(EbsInstanceBlockDeviceSpecification::builder().delete_on_termination(false).build())
                    .build()
            })
            .collect();
        self.ec2
            .modify_instance_attribute()
            .instance_id(instance_id)
            .set_block_device_mappings(Some(mappings))
            .send()
            .await
            .map_err(|e| cloud_error(ResourceKind::Instance, instance_id, e))?;
        Ok(())
    }

    async fn snapshot_volume(&self, volume_id: &str, description: &str, tags: &Tags) -> Result<String, CloudError> {
        let out = self
            .ec2
            .create_snapshot()
            .volume_id(volume_id)
            .description(description)
            .tag_specifications(TagSpecification::builder().resource_type(ResourceType::Snapshot).set_tags(Some(ec2_tags(tags))).build())
            .send()
            .await
            .map_err(|e| cloud_error(ResourceKind::Volume, volume_id, e))?;
        out.snapshot_id().map(String::from).ok_or_else(|| CloudError::Other(format!("CreateSnapshot of {volume_id} returned no id")))
    }

    async fn publish(&self, topic_arn: &str, subject: &str, message: &str) -> Result<(), CloudError> {
        // SNS subjects are at most 100 printable ASCII characters.
        let subject: String = subject.chars().filter(|c| c.is_ascii() && !c.is_ascii_control()).take(100).collect();
        self.sns
            .publish()
            .topic_arn(topic_arn)
            .subject(subject)
            .message(message)
            .send()
            .await
            .map_err(|e| cloud_error(ResourceKind::SnsTopic, topic_arn, e))?;
        Ok(())
    }
}

/// The SageMaker runtime, EventBridge and the lab's bucket for the detector function.
pub struct AwsDetector {
    sagemaker: aws_sdk_sagemakerruntime::Client,
    events: aws_sdk_eventbridge::Client,
    s3: aws_sdk_s3::Client,
    /// Where the memory across windows is kept (`CIS_MEMORY_BUCKET`).
    memory_bucket: Option<String>,
    clock: Clock,
}

impl AwsDetector {
    pub fn new(config: &aws_config::SdkConfig, memory_bucket: Option<String>) -> Self {
        AwsDetector {
            sagemaker: aws_sdk_sagemakerruntime::Client::new(config),
            events: aws_sdk_eventbridge::Client::new(config),
            s3: aws_sdk_s3::Client::new(config),
            memory_bucket,
            clock: Clock::system(),
        }
    }

    fn memory_place(&self, key: &str) -> Result<(&str, String), CloudError> {
        let bucket = self
            .memory_bucket
            .as_deref()
            .ok_or_else(|| CloudError::Invalid("CIS_MEMORY_BUCKET is not set: the function has nowhere to keep its memory".into()))?;
        Ok((bucket, format!("{}{key}.json", crate::functions::detector::MEMORY_PREFIX)))
    }

    /// The model `cis arm` put at `key` in the lab's bucket (the function's cold start
    /// reads it: arming changes the function's configuration, so Lambda starts afresh).
    pub async fn load_model(&self, key: &str) -> Result<crate::detect::anomaly::Model, CloudError> {
        let bucket = self
            .memory_bucket
            .as_deref()
            .ok_or_else(|| CloudError::Invalid("CIS_MEMORY_BUCKET is not set: the function cannot find its model".into()))?;
        let body = super::s3_object(&self.s3, bucket, key)
            .await?
            .ok_or_else(|| CloudError::NotFound { kind: "s3 object", id: format!("s3://{bucket}/{key}") })?;
        let text = String::from_utf8_lossy(&body).into_owned();
        crate::detect::anomaly::Model::from_json(&text).map_err(|e| CloudError::Invalid(format!("s3://{bucket}/{key}: {e}")))
    }
}

/// PutEvents takes at most 10 entries a call.
const PUT_EVENTS_BATCH: usize = 10;

#[async_trait]
impl DetectorApi for AwsDetector {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    async fn invoke_endpoint(&self, endpoint: &str, csv: &str) -> Result<Vec<u8>, CloudError> {
        let out = self
            .sagemaker
            .invoke_endpoint()
            .endpoint_name(endpoint)
            .content_type("text/csv")
            .accept("application/json")
            .body(aws_sdk_sagemakerruntime::primitives::Blob::new(csv.as_bytes()))
            .send()
            .await
            .map_err(|e| cloud_error(ResourceKind::SageMakerEndpoint, endpoint, e))?;
        Ok(out.body().map(|b| b.as_ref().to_vec()).unwrap_or_default())
    }

    async fn put_detections(&self, detections: &[DetectionEvent]) -> Result<(), CloudError> {
        for batch in detections.chunks(PUT_EVENTS_BATCH) {
            let entries = batch
                .iter()
                .map(|d| {
                    aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                        .source(DETECTION_SOURCE)
                        .detail_type(DETECTION_DETAIL_TYPE)
                        .detail(serde_json::to_string(d).expect("detections serialize"))
                        .build()
                })
                .collect();
            let out = self
                .events
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| cloud_error(ResourceKind::EventRule, "default event bus", e))?;
            if out.failed_entry_count() > 0 {
                let why: Vec<String> = out
                    .entries()
                    .iter()
                    .filter_map(|e| e.error_code().map(|c| format!("{c}: {}", e.error_message().unwrap_or_default())))
                    .collect();
                return Err(CloudError::Unavailable(format!("{} detection(s) not put: {}", out.failed_entry_count(), why.join("; "))));
            }
        }
        Ok(())
    }

    async fn load_memory(&self, key: &str) -> Result<Option<Vec<u8>>, CloudError> {
        let (bucket, object) = self.memory_place(key)?;
        super::s3_object(&self.s3, bucket, &object).await
    }

    async fn save_memory(&self, key: &str, memory: &[u8]) -> Result<(), CloudError> {
        let (bucket, object) = self.memory_place(key)?;
        self.s3
            .put_object()
            .bucket(bucket)
            .key(&object)
            .content_type("application/json")
            .body(aws_sdk_s3::primitives::ByteStream::from(memory.to_vec()))
            .send()
            .await
            .map_err(|e| cloud_error(ResourceKind::S3Bucket, bucket, e))?;
        Ok(())
    }
}
