//! The lab's pipeline between the resources: the flow-log group and its subscription or
//! metric filter (CloudWatch Logs), the egress alarm (CloudWatch), the alerts topic and
//! its subscription (SNS), the detection rule and its target (EventBridge). Ids follow the
//! simulator's: ARNs for the log group (without the trailing `:*`), alarm, topic,
//! subscription and rule; `PARENT/NAME` for the filters and the target. No retries or
//! waits here: the orchestration owns them.

use aws_sdk_cloudwatchlogs::Client as Logs;
use aws_sdk_eventbridge::Client as Events;
use aws_sdk_sns::Client as Sns;

use super::error::cloud_error;
use super::{absent, referenced};
use crate::cloud::{CloudError, ResourceStatus};
use crate::model::lab::{Refs, ResourceConfig, ResourceKind, ResourceSpec};

/// The clients this part uses.
pub struct Clients {
    pub logs: Logs,
    pub metrics: aws_sdk_cloudwatch::Client,
    pub sns: Sns,
    pub events: Events,
}

impl Clients {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Clients { logs: Logs::new(sdk), metrics: aws_sdk_cloudwatch::Client::new(sdk), sns: Sns::new(sdk), events: Events::new(sdk) }
    }
}

/// The last `:`- or `/`-separated part of an ARN: a log group's, topic's or rule's name.
fn last_part(arn: &str, separator: char) -> &str {
    arn.rsplit(separator).next().unwrap_or(arn)
}

fn log_group_name(arn: &str) -> &str {
    arn.split_once(":log-group:").map(|(_, n)| n.trim_end_matches(":*")).unwrap_or(arn)
}

fn split_child(id: &str) -> Result<(&str, &str), CloudError> {
    id.rsplit_once('/').ok_or_else(|| CloudError::Invalid(format!("'{id}' is not PARENT/NAME")))
}

async fn log_group_arn(c: &Clients, name: &str) -> Result<Option<String>, CloudError> {
    let out =
        c.logs.describe_log_groups().log_group_name_prefix(name).send().await.map_err(|e| cloud_error(ResourceKind::LogGroup, name, e))?;
    Ok(out
        .log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(name))
        .and_then(|g| g.arn())
        .map(|a| a.trim_end_matches(":*").to_string()))
}

/// An alarm's name from its ARN (`...:alarm:NAME`).
pub fn alarm_name(arn: &str) -> &str {
    arn.split_once(":alarm:").map(|(_, n)| n).unwrap_or(arn)
}

/// The alarm named `name`: its ARN and state.
pub async fn alarm(c: &Clients, name: &str) -> Result<Option<(String, aws_sdk_cloudwatch::types::StateValue)>, CloudError> {
    let out = c.metrics.describe_alarms().alarm_names(name).send().await.map_err(|e| cloud_error(ResourceKind::MetricAlarm, name, e))?;
    Ok(out.metric_alarms().iter().find(|a| a.alarm_name() == Some(name)).map(|a| {
        (
            a.alarm_arn().unwrap_or_default().to_string(),
            a.state_value().cloned().unwrap_or(aws_sdk_cloudwatch::types::StateValue::InsufficientData),
        )
    }))
}

async fn metric_filter_exists(c: &Clients, group: &str, name: &str) -> Result<bool, CloudError> {
    let out = absent(
        c.logs
            .describe_metric_filters()
            .log_group_name(group)
            .filter_name_prefix(name)
            .send()
            .await
            .map_err(|e| cloud_error(ResourceKind::MetricFilter, name, e)),
    )?;
    Ok(out.is_some_and(|o| o.metric_filters().iter().any(|f| f.filter_name() == Some(name))))
}

async fn topic_arn(c: &Clients, name: &str) -> Result<Option<String>, CloudError> {
    let mut pages = c.sns.list_topics().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| cloud_error(ResourceKind::SnsTopic, name, e))?;
        if let Some(arn) = page.topics().iter().filter_map(|t| t.topic_arn()).find(|a| last_part(a, ':') == name) {
            return Ok(Some(arn.to_string()));
        }
    }
    Ok(None)
}

pub async fn create(c: &Clients, spec: &ResourceSpec, refs: &Refs) -> Result<String, CloudError> {
    macro_rules! err {
        () => {
            |e| cloud_error(spec.kind, &spec.name, e)
        };
    }
    match &spec.config {
        ResourceConfig::LogGroup { retention_days } => {
            c.logs
                .create_log_group()
                .log_group_name(&spec.name)
                .set_tags(Some(spec.tags.clone().into_iter().collect()))
                .send()
                .await
                .map_err(err!())?;
            c.logs
                .put_retention_policy()
                .log_group_name(&spec.name)
                .retention_in_days(*retention_days as i32)
                .send()
                .await
                .map_err(err!())?;
            log_group_arn(c, &spec.name)
                .await?
                .ok_or_else(|| CloudError::NotPropagatedYet(format!("log group {} not listed yet", spec.name)))
        }
        ResourceConfig::SubscriptionFilter { log_group, function, filter_pattern } => {
            let group = log_group_name(referenced(refs, *log_group)?).to_string();
            c.logs
                .put_subscription_filter()
                .log_group_name(&group)
                .filter_name(&spec.name)
                .filter_pattern(filter_pattern)
                .destination_arn(referenced(refs, *function)?)
                .send()
                .await
                .map_err(err!())?;
            Ok(format!("{group}/{}", spec.name))
        }
        ResourceConfig::MetricFilter { log_group, filter_pattern, transformation } => {
            let group = log_group_name(referenced(refs, *log_group)?).to_string();
            let value = aws_sdk_cloudwatchlogs::types::MetricTransformation::builder()
                .metric_namespace(&transformation.namespace)
                .metric_name(&transformation.metric_name)
                .metric_value(&transformation.metric_value)
                .set_dimensions(Some(transformation.dimensions.clone().into_iter().collect()))
                .build()
                .map_err(|e| CloudError::Invalid(e.to_string()))?;
            c.logs
                .put_metric_filter()
                .log_group_name(&group)
                .filter_name(&spec.name)
                .filter_pattern(filter_pattern)
                .metric_transformations(value)
                .send()
                .await
                .map_err(err!())?;
            Ok(format!("{group}/{}", spec.name))
        }
        ResourceConfig::MetricAlarm { metric, rule, calibrate, .. } => {
            if calibrate.is_some() {
                return Err(CloudError::Invalid("the alarm's threshold was not calibrated before PutMetricAlarm".into()));
            }
            use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Statistic, Tag};
            let dimensions: Vec<Dimension> = metric.dimensions.iter().map(|(k, v)| Dimension::builder().name(k).value(v).build()).collect();
            let tags: Vec<Tag> = spec.tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect();
            c.metrics
                .put_metric_alarm()
                .alarm_name(&spec.name)
                .alarm_description(
                    "cis: bytes the lab's target sends out of the VPC per minute; ALARM calls containment through EventBridge",
                )
                .namespace(&metric.namespace)
                .metric_name(&metric.metric_name)
                .set_dimensions(Some(dimensions))
                .statistic(Statistic::Sum)
                .period(rule.period_s as i32)
                .evaluation_periods(rule.evaluation_periods as i32)
                .datapoints_to_alarm(rule.datapoints_to_alarm as i32)
                .threshold(rule.threshold)
                .comparison_operator(ComparisonOperator::GreaterThanThreshold)
                .treat_missing_data("notBreaching")
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(err!())?;
            Ok(alarm(c, &spec.name).await?.ok_or_else(|| CloudError::NotPropagatedYet(format!("alarm {} not listed yet", spec.name)))?.0)
        }
        ResourceConfig::SnsTopic => {
            let tags = spec.tags.iter().filter_map(|(k, v)| aws_sdk_sns::types::Tag::builder().key(k).value(v).build().ok()).collect();
            let out = c.sns.create_topic().name(&spec.name).set_tags(Some(tags)).send().await.map_err(err!())?;
            Ok(out.topic_arn().unwrap_or_default().to_string())
        }
        ResourceConfig::SnsSubscription { topic, protocol, endpoint } => {
            let out = c
                .sns
                .subscribe()
                .topic_arn(referenced(refs, *topic)?)
                .protocol(protocol)
                .endpoint(endpoint)
                .return_subscription_arn(true)
                .send()
                .await
                .map_err(err!())?;
            Ok(out.subscription_arn().unwrap_or_default().to_string())
        }
        ResourceConfig::EventRule { event_pattern } => {
            let tags =
                spec.tags.iter().filter_map(|(k, v)| aws_sdk_eventbridge::types::Tag::builder().key(k).value(v).build().ok()).collect();
            let out =
                c.events.put_rule().name(&spec.name).event_pattern(event_pattern).set_tags(Some(tags)).send().await.map_err(err!())?;
            Ok(out.rule_arn().unwrap_or_default().to_string())
        }
        ResourceConfig::EventTarget { rule, function, target_id } => {
            let rule = last_part(referenced(refs, *rule)?, '/').to_string();
            let target = aws_sdk_eventbridge::types::Target::builder()
                .id(target_id)
                .arn(referenced(refs, *function)?)
                .build()
                .map_err(|e| CloudError::Invalid(e.to_string()))?;
            let out = c.events.put_targets().rule(&rule).targets(target).send().await.map_err(err!())?;
            if out.failed_entry_count() > 0 {
                let why: Vec<String> = out
                    .failed_entries()
                    .iter()
                    .map(|f| format!("{}: {}", f.error_code().unwrap_or_default(), f.error_message().unwrap_or_default()))
                    .collect();
                return Err(CloudError::Other(format!("PutTargets on {rule}: {}", why.join("; "))));
            }
            Ok(format!("{rule}/{target_id}"))
        }
        other => Err(CloudError::Invalid(format!("not a pipeline resource: {other:?}"))),
    }
}

pub async fn find(c: &Clients, spec: &ResourceSpec, refs: &Refs) -> Result<Option<String>, CloudError> {
    macro_rules! err {
        () => {
            |e| cloud_error(spec.kind, &spec.name, e)
        };
    }
    match &spec.config {
        ResourceConfig::LogGroup { retention_days } => {
            let arn = log_group_arn(c, &spec.name).await?;
            if arn.is_some() {
                // A crash between the group and its retention: put it now.
                c.logs
                    .put_retention_policy()
                    .log_group_name(&spec.name)
                    .retention_in_days(*retention_days as i32)
                    .send()
                    .await
                    .map_err(err!())?;
            }
            Ok(arn)
        }
        ResourceConfig::SubscriptionFilter { log_group, .. } => {
            let Some(group) = refs.get(log_group).map(|a| log_group_name(a).to_string()) else { return Ok(None) };
            let out = absent(
                c.logs.describe_subscription_filters().log_group_name(&group).filter_name_prefix(&spec.name).send().await.map_err(err!()),
            )?;
            let found = out.is_some_and(|o| o.subscription_filters().iter().any(|f| f.filter_name() == Some(spec.name.as_str())));
            Ok(found.then(|| format!("{group}/{}", spec.name)))
        }
        ResourceConfig::MetricFilter { log_group, .. } => {
            let Some(group) = refs.get(log_group).map(|a| log_group_name(a).to_string()) else { return Ok(None) };
            Ok(metric_filter_exists(c, &group, &spec.name).await?.then(|| format!("{group}/{}", spec.name)))
        }
        ResourceConfig::MetricAlarm { .. } => Ok(alarm(c, &spec.name).await?.map(|(arn, _)| arn)),
        ResourceConfig::SnsTopic => topic_arn(c, &spec.name).await,
        ResourceConfig::SnsSubscription { topic, protocol, endpoint } => {
            let Some(topic) = refs.get(topic) else { return Ok(None) };
            // An e-mail subscription nobody has confirmed yet is listed with the
            // SubscriptionArn "PendingConfirmation", not its ARN: not found here, so `up`
            // subscribes again, and SNS answers the existing subscription's ARN (it makes no
            // second one for the same endpoint).
            let out = absent(c.sns.list_subscriptions_by_topic().topic_arn(topic).send().await.map_err(err!()))?;
            Ok(out.and_then(|o| {
                o.subscriptions()
                    .iter()
                    .find(|s| s.protocol() == Some(protocol.as_str()) && s.endpoint() == Some(endpoint.as_str()))
                    .and_then(|s| s.subscription_arn())
                    .filter(|arn| arn.starts_with("arn:"))
                    .map(String::from)
            }))
        }
        ResourceConfig::EventRule { .. } => {
            let out = absent(c.events.describe_rule().name(&spec.name).send().await.map_err(err!()))?;
            Ok(out.and_then(|o| o.arn().map(String::from)))
        }
        ResourceConfig::EventTarget { rule, target_id, .. } => {
            let Some(rule) = refs.get(rule).map(|a| last_part(a, '/').to_string()) else { return Ok(None) };
            let out = absent(c.events.list_targets_by_rule().rule(&rule).send().await.map_err(err!()))?;
            let found = out.is_some_and(|o| o.targets().iter().any(|t| t.id() == target_id));
            Ok(found.then(|| format!("{rule}/{target_id}")))
        }
        other => Err(CloudError::Invalid(format!("not a pipeline resource: {other:?}"))),
    }
}

pub async fn status(c: &Clients, kind: ResourceKind, id: &str) -> Result<ResourceStatus, CloudError> {
    macro_rules! err {
        () => {
            |e| cloud_error(kind, id, e)
        };
    }
    let gone = || CloudError::NotFound { kind: kind.name(), id: id.to_string() };
    match kind {
        ResourceKind::LogGroup => {
            log_group_arn(c, log_group_name(id)).await?.ok_or_else(gone)?;
        }
        ResourceKind::SubscriptionFilter => {
            let (group, name) = split_child(id)?;
            let out = c.logs.describe_subscription_filters().log_group_name(group).filter_name_prefix(name).send().await.map_err(err!())?;
            if !out.subscription_filters().iter().any(|f| f.filter_name() == Some(name)) {
                return Err(gone());
            }
        }
        ResourceKind::MetricFilter => {
            let (group, name) = split_child(id)?;
            if !metric_filter_exists(c, group, name).await? {
                return Err(gone());
            }
        }
        ResourceKind::MetricAlarm => {
            alarm(c, alarm_name(id)).await?.ok_or_else(gone)?;
        }
        ResourceKind::SnsTopic => {
            c.sns.get_topic_attributes().topic_arn(id).send().await.map_err(err!())?;
        }
        ResourceKind::SnsSubscription => {
            if !id.starts_with("arn:") {
                // "PendingConfirmation" as a ledger of an earlier version may hold it: no
                // id to ask about. Not found, so `up` subscribes again and records the ARN
                // SNS answers (the existing subscription's); waiting would wait for a person.
                return Err(CloudError::NotFound { kind: ResourceKind::SnsSubscription.name(), id: id.to_string() });
            }
            c.sns.get_subscription_attributes().subscription_arn(id).send().await.map_err(err!())?;
        }
        ResourceKind::EventRule => {
            c.events.describe_rule().name(last_part(id, '/')).send().await.map_err(err!())?;
        }
        ResourceKind::EventTarget => {
            let (rule, target) = split_child(id)?;
            let out = c.events.list_targets_by_rule().rule(rule).send().await.map_err(err!())?;
            if !out.targets().iter().any(|t| t.id() == target) {
                return Err(gone());
            }
        }
        other => return Err(CloudError::Invalid(format!("not a pipeline resource: {other}"))),
    }
    Ok(ResourceStatus::Ready)
}

/// Deletes one pipeline resource; a rule goes with its targets (EventBridge refuses
/// otherwise), a log group with its filters (CloudWatch Logs removes them).
pub async fn delete(c: &Clients, kind: ResourceKind, id: &str) -> Result<(), CloudError> {
    macro_rules! err {
        () => {
            |e| cloud_error(kind, id, e)
        };
    }
    match kind {
        ResourceKind::LogGroup => {
            c.logs.delete_log_group().log_group_name(log_group_name(id)).send().await.map_err(err!())?;
        }
        ResourceKind::SubscriptionFilter => {
            let (group, name) = split_child(id)?;
            c.logs.delete_subscription_filter().log_group_name(group).filter_name(name).send().await.map_err(err!())?;
        }
        ResourceKind::MetricFilter => {
            let (group, name) = split_child(id)?;
            c.logs.delete_metric_filter().log_group_name(group).filter_name(name).send().await.map_err(err!())?;
        }
        ResourceKind::MetricAlarm => {
            // DeleteAlarms succeeds for a name that is gone: probe first, as for the others.
            alarm(c, alarm_name(id)).await?.ok_or_else(|| CloudError::NotFound { kind: kind.name(), id: id.to_string() })?;
            c.metrics.delete_alarms().alarm_names(alarm_name(id)).send().await.map_err(err!())?;
        }
        ResourceKind::SnsTopic => {
            c.sns.delete_topic().topic_arn(id).send().await.map_err(err!())?;
        }
        ResourceKind::SnsSubscription => {
            if id.starts_with("arn:") {
                c.sns.unsubscribe().subscription_arn(id).send().await.map_err(err!())?;
            }
        }
        ResourceKind::EventRule => {
            let rule = last_part(id, '/');
            let targets = c.events.list_targets_by_rule().rule(rule).send().await.map_err(err!())?;
            let ids: Vec<String> = targets.targets().iter().map(|t| t.id().to_string()).collect();
            if !ids.is_empty() {
                c.events.remove_targets().rule(rule).set_ids(Some(ids)).send().await.map_err(err!())?;
            }
            c.events.delete_rule().name(rule).send().await.map_err(err!())?;
        }
        ResourceKind::EventTarget => {
            let (rule, target) = split_child(id)?;
            c.events.remove_targets().rule(rule).ids(target).send().await.map_err(err!())?;
        }
        other => return Err(CloudError::Invalid(format!("not a pipeline resource: {other}"))),
    }
    Ok(())
}
