//! The lab's time to live on EventBridge Scheduler: one one-time schedule, `at(...)` in
//! UTC, that invokes the lab's janitor function with the scheduler role and then deletes
//! itself. Schedules carry no tags: they are found by name in the default group.

use aws_sdk_scheduler::types::{ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, Target};
use aws_sdk_scheduler::Client;

use super::error::cloud_error;
use super::referenced;
use crate::cloud::{CloudError, CloudResource, ResourceStatus};
use crate::model::lab::{LabName, Refs, ResourceConfig, ResourceKind, ResourceSpec, Role};

/// A schedule's id: its ARN; the API wants its name, the last part.
fn name_of(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// `at(2026-11-23T22:37:14)`: seconds, no zone (the zone is its own field).
pub fn at_expression(at: crate::base::clock::Timestamp) -> String {
    let text = at.to_string();
    format!("at({})", text.get(..19).unwrap_or(&text))
}

pub async fn create(scheduler: &Client, spec: &ResourceSpec, refs: &Refs) -> Result<String, CloudError> {
    let ResourceConfig::Schedule { function, role, at, .. } = &spec.config else {
        return Err(CloudError::Invalid(format!("not a schedule: {:?}", spec.config)));
    };
    let at = at.ok_or_else(|| CloudError::Invalid("the schedule's time was not set before CreateSchedule".into()))?;
    let target = Target::builder()
        .arn(referenced(refs, *function)?)
        .role_arn(referenced(refs, *role)?)
        .input("{}")
        .build()
        .map_err(|e| CloudError::Invalid(e.to_string()))?;
    let out = scheduler
        .create_schedule()
        .name(&spec.name)
        .schedule_expression(at_expression(at))
        .schedule_expression_timezone("UTC")
        .flexible_time_window(
            FlexibleTimeWindow::builder().mode(FlexibleTimeWindowMode::Off).build().map_err(|e| CloudError::Invalid(e.to_string()))?,
        )
        .target(target)
        .action_after_completion(ActionAfterCompletion::Delete)
        .description(format!(
            "cis: the end of lab {}'s time to live",
            spec.tags.get(crate::model::lab::TAG_LAB).cloned().unwrap_or_default()
        ))
        .send()
        .await
        .map_err(|e| cloud_error(spec.kind, &spec.name, e))?;
    Ok(out.schedule_arn().to_string())
}

pub async fn find(scheduler: &Client, spec: &ResourceSpec) -> Result<Option<String>, CloudError> {
    match scheduler.get_schedule().name(&spec.name).send().await.map_err(|e| cloud_error(spec.kind, &spec.name, e)) {
        Ok(out) => Ok(out.arn().map(String::from)),
        Err(CloudError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

pub async fn status(scheduler: &Client, id: &str) -> Result<ResourceStatus, CloudError> {
    scheduler.get_schedule().name(name_of(id)).send().await.map_err(|e| cloud_error(ResourceKind::Schedule, id, e))?;
    Ok(ResourceStatus::Ready)
}

pub async fn delete(scheduler: &Client, id: &str) -> Result<(), CloudError> {
    scheduler.delete_schedule().name(name_of(id)).send().await.map_err(|e| cloud_error(ResourceKind::Schedule, id, e))?;
    Ok(())
}

/// The lab's schedules, by their names' prefix (no tags to find them by).
pub async fn list_lab(scheduler: &Client, lab: &LabName) -> Result<Vec<CloudResource>, CloudError> {
    let prefix = format!("cis-{lab}-");
    let out = scheduler.list_schedules().name_prefix(&prefix).send().await.map_err(|e| cloud_error(ResourceKind::Schedule, &prefix, e))?;
    Ok(out
        .schedules()
        .iter()
        .filter_map(|s| {
            let (name, arn) = (s.name()?, s.arn()?);
            let role = name.strip_prefix(&prefix).and_then(Role::from_name);
            Some(CloudResource {
                kind: ResourceKind::Schedule,
                id: arn.to_string(),
                name: name.to_string(),
                role,
                tags: Default::default(),
                status: ResourceStatus::Ready,
            })
        })
        .collect())
}
