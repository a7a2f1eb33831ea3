//! The target instance and the VPC's flow log. The instance runs Amazon Linux 2023
//! resolved through the public SSM parameter, requires IMDSv2, has an encrypted root
//! volume, and is tagged at launch together with its volume and network interface (the
//! containment policy's tag condition covers all three). No retries or waits here: the
//! orchestration owns them.

use aws_sdk_ec2::types::{
    AttributeBooleanValue, BlockDeviceMapping, EbsBlockDevice, Filter, FlowLogsResourceType, HttpTokensState,
    IamInstanceProfileSpecification, InstanceMetadataOptionsRequest, InstanceStateName, InstanceType, LogDestinationType, ResourceType,
    TrafficType,
};
use aws_sdk_ec2::Client as Ec2;
use aws_sdk_ssm::Client as Ssm;

use super::error::cloud_error;
use super::{ec2_tag_filters, ec2_tag_spec, referenced};
use crate::cloud::{CloudError, ResourceStatus};
use crate::model::lab::{Refs, ResourceConfig, ResourceKind, ResourceSpec, Tags, TAG_ROLE};

/// The image an SSM public parameter names today.
pub async fn resolve_image(ssm: &Ssm, parameter: &str) -> Result<String, CloudError> {
    let out = ssm.get_parameter().name(parameter).send().await.map_err(|e| cloud_error(ResourceKind::Instance, parameter, e))?;
    out.parameter()
        .and_then(|p| p.value())
        .map(String::from)
        .ok_or_else(|| CloudError::Other(format!("the SSM parameter {parameter} has no value")))
}

pub async fn create(ec2: &Ec2, ssm: &Ssm, spec: &ResourceSpec, refs: &Refs) -> Result<String, CloudError> {
    macro_rules! err {
        () => {
            |e| cloud_error(spec.kind, &spec.name, e)
        };
    }
    match &spec.config {
        ResourceConfig::Instance {
            subnet,
            security_group,
            instance_profile,
            instance_type,
            image_parameter,
            imdsv2_required,
            root_volume_encrypted,
            // The simulator's business: a real server runs whatever it runs.
            workload: _,
        } => {
            let image = resolve_image(ssm, image_parameter).await?;
            let out = ec2
                .run_instances()
                .image_id(image)
                .instance_type(InstanceType::from(instance_type.as_str()))
                .min_count(1)
                .max_count(1)
                .subnet_id(referenced(refs, *subnet)?)
                .security_group_ids(referenced(refs, *security_group)?)
                .iam_instance_profile(IamInstanceProfileSpecification::builder().arn(referenced(refs, *instance_profile)?).build())
                .metadata_options(
                    InstanceMetadataOptionsRequest::builder()
                        .http_tokens(if *imdsv2_required { HttpTokensState::Required } else { HttpTokensState::Optional })
                        .build(),
                )
                .block_device_mappings(
                    BlockDeviceMapping::builder()
                        .device_name("/dev/xvda")
                        // The image's 8 GiB, stated: moto (unlike EC2) wants a size here.
                        .ebs(
                            EbsBlockDevice::builder()
                                .encrypted(*root_volume_encrypted)
                                .delete_on_termination(true)
                                .volume_size(8)
                                .volume_type(aws_sdk_ec2::types::VolumeType::Gp3)
                                .build(),
                        )
                        .build(),
                )
                .tag_specifications(ec2_tag_spec(ResourceType::Instance, &spec.tags, &spec.name))
                .tag_specifications(ec2_tag_spec(ResourceType::Volume, &without_role(&spec.tags), &format!("{}-root", spec.name)))
                .tag_specifications(ec2_tag_spec(ResourceType::NetworkInterface, &without_role(&spec.tags), &spec.name))
                .send()
                .await
                .map_err(err!())?;
            Ok(out.instances().first().and_then(|i| i.instance_id()).unwrap_or_default().to_string())
        }
        ResourceConfig::FlowLog { vpc, log_group, role, max_aggregation_interval_s, log_format } => {
            let group = referenced(refs, *log_group)?;
            let group_name = group.split_once(":log-group:").map(|(_, n)| n.trim_end_matches(":*")).unwrap_or(group);
            let out = ec2
                .create_flow_logs()
                .resource_ids(referenced(refs, *vpc)?)
                .resource_type(FlowLogsResourceType::Vpc)
                .traffic_type(TrafficType::All)
                .log_destination_type(LogDestinationType::CloudWatchLogs)
                .log_group_name(group_name)
                .deliver_logs_permission_arn(referenced(refs, *role)?)
                .max_aggregation_interval(*max_aggregation_interval_s as i32)
                .log_format(log_format)
                .tag_specifications(ec2_tag_spec(ResourceType::VpcFlowLog, &spec.tags, &spec.name))
                .send()
                .await
                .map_err(err!())?;
            if let Some(problem) = out.unsuccessful().first() {
                let why = problem
                    .error()
                    .map(|e| format!("{}: {}", e.code().unwrap_or_default(), e.message().unwrap_or_default()))
                    .unwrap_or_default();
                return Err(super::error::classify(spec.kind, &spec.name, why.split(':').next().unwrap_or_default(), why.clone()));
            }
            out.flow_log_ids().first().cloned().ok_or_else(|| CloudError::Other("CreateFlowLogs returned no id".into()))
        }
        other => Err(CloudError::Invalid(format!("not a compute resource: {other:?}"))),
    }
}

/// The instance's volume and interface play no role of their own.
fn without_role(tags: &Tags) -> Tags {
    let mut t = tags.clone();
    t.remove(TAG_ROLE);
    t
}

pub async fn find(ec2: &Ec2, spec: &ResourceSpec) -> Result<Option<String>, CloudError> {
    macro_rules! err {
        () => {
            |e| cloud_error(spec.kind, &spec.name, e)
        };
    }
    match &spec.config {
        ResourceConfig::Instance { .. } => {
            let live = Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .values("stopping")
                .values("stopped")
                .build();
            let mut filters = ec2_tag_filters(spec);
            filters.push(live);
            let out = ec2.describe_instances().set_filters(Some(filters)).send().await.map_err(err!())?;
            Ok(out.reservations().iter().flat_map(|r| r.instances()).find_map(|i| i.instance_id()).map(String::from))
        }
        ResourceConfig::FlowLog { .. } => {
            let out = ec2.describe_flow_logs().set_filter(Some(ec2_tag_filters(spec))).send().await.map_err(err!())?;
            Ok(out.flow_logs().first().and_then(|f| f.flow_log_id()).map(String::from))
        }
        other => Err(CloudError::Invalid(format!("not a compute resource: {other:?}"))),
    }
}

pub async fn status(ec2: &Ec2, kind: ResourceKind, id: &str) -> Result<ResourceStatus, CloudError> {
    macro_rules! err {
        () => {
            |e| cloud_error(kind, id, e)
        };
    }
    let gone = || CloudError::NotFound { kind: kind.name(), id: id.to_string() };
    match kind {
        ResourceKind::Instance => {
            let out = ec2.describe_instances().instance_ids(id).send().await.map_err(err!())?;
            let state = out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find_map(|i| i.state().and_then(|s| s.name()).cloned())
                .ok_or_else(gone)?;
            Ok(match state {
                InstanceStateName::Running => ResourceStatus::Ready,
                InstanceStateName::Pending => ResourceStatus::Pending("pending".into()),
                InstanceStateName::Terminated => return Err(gone()),
                other => ResourceStatus::Deleting(other.as_str().to_string()),
            })
        }
        ResourceKind::FlowLog => {
            let out = ec2.describe_flow_logs().flow_log_ids(id).send().await.map_err(err!())?;
            let flow_log = out.flow_logs().first().ok_or_else(gone)?;
            // A flow log created before its role could be assumed stays in "Access error",
            // delivering nothing, until it is made again (AWS's DescribeFlowLogs:
            // DeliverLogsStatus SUCCESS or FAILED, DeliverLogsErrorMessage "Rate limited",
            // "Access error" or "Unknown error").
            // Rate limiting passes by itself; making the flow log again would not help it.
            Ok(match (flow_log.deliver_logs_status(), flow_log.deliver_logs_error_message()) {
                (Some("FAILED"), Some("Rate limited")) => ResourceStatus::Ready,
                (Some("FAILED"), why) => {
                    ResourceStatus::Failed(format!("delivery to CloudWatch Logs failed: {}", why.unwrap_or("no reason given")))
                }
                _ => ResourceStatus::Ready,
            })
        }
        other => Err(CloudError::Invalid(format!("not a compute resource: {other}"))),
    }
}

/// Terminates the instance, lifting the termination protection containment set for
/// forensics first; deletes the flow log.
pub async fn delete(ec2: &Ec2, kind: ResourceKind, id: &str) -> Result<(), CloudError> {
    macro_rules! err {
        () => {
            |e| cloud_error(kind, id, e)
        };
    }
    match kind {
        ResourceKind::Instance => {
            let lifted = ec2
                .modify_instance_attribute()
                .instance_id(id)
                .disable_api_termination(AttributeBooleanValue::builder().value(false).build())
                .send()
                .await;
            match lifted {
                Ok(_) => {}
                // Already shutting down or terminated (a `down` cut short after its
                // TerminateInstances, run again): such an instance cannot be modified, and
                // no protection holds it; terminating it again is accepted.
                Err(e) if aws_smithy_types::error::metadata::ProvideErrorMetadata::code(&e) == Some("IncorrectInstanceState") => {}
                Err(e) => return Err(cloud_error(kind, id, e)),
            }
            ec2.terminate_instances().instance_ids(id).send().await.map_err(err!())?;
        }
        ResourceKind::FlowLog => {
            let out = ec2.delete_flow_logs().flow_log_ids(id).send().await.map_err(err!())?;
            if let Some(problem) = out.unsuccessful().first() {
                let code = problem.error().and_then(|e| e.code()).unwrap_or_default().to_string();
                let message = problem.error().and_then(|e| e.message()).unwrap_or_default().to_string();
                return Err(super::error::classify(kind, id, &code, format!("{code}: {message}")));
            }
        }
        other => return Err(CloudError::Invalid(format!("not a compute resource: {other}"))),
    }
    Ok(())
}
