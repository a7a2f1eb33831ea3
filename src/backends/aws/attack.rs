//! Attacks on AWS: the scenario's script runs on the target through SSM Run Command, and
//! what the pipeline did is read back from its own records: the flow-log records of the
//! attack's traffic (their capture and ingestion times), the lines the detector and the
//! containment functions write to their log groups (detection time, invocation,
//! isolation, the notification that ends containment), cross-checked by the instance's
//! security groups as they are now.

use aws_sdk_cloudwatchlogs::types::FilteredLogEvent;
use base64::Engine;

use super::error::cloud_error;
use crate::base::clock::Timestamp;
use crate::cloud::{AttackHandle, CloudError, LabTarget, Observation};
use crate::formats::flowlog::{Action, Direction as FlowDirection, LogFormat};
use crate::model::events::{
    parse_log_line, ContainmentOutcome, DetectionEvent, Notification, Outcome, Transfer, CONTAINMENT_LOG_MARKER, DETECTION_LOG_MARKER,
};
use crate::model::lab::{resource_name, ResourceKind as K, Role, LAB_LOG_FORMAT};
use crate::model::scenario::{Direction, Scenario};

/// What the scripts read the exfiltration sink from: a host the operator controls.
pub const EXFIL_HOST_VARIABLE: &str = "CIS_EXFIL_HOST";

/// The sink, checked before it goes into a shell command line: a host name, IPv4 or IPv6
/// address, with an optional port, and nothing a shell would interpret.
pub fn check_exfil_host(host: &str) -> Result<(), String> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        && !host.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid --exfil-host '{host}': give a host name or address you control (letters, digits, '.', '-', ':' and [] only), such as sink.example.net or 198.51.100.7:8080"
        ))
    }
}

/// The one command SSM runs: the script decoded to a file and run by bash with the sink
/// in its environment. Base64 keeps the script's quoting out of the command line.
pub fn run_command(scenario: &Scenario, run_id: &str, exfil_host: Option<&str>) -> String {
    let script = base64::engine::general_purpose::STANDARD.encode(scenario.script.trim_start());
    let path = format!("/tmp/cis-{run_id}-{}.sh", scenario.id);
    let env = exfil_host.map(|h| format!("{EXFIL_HOST_VARIABLE}={h} ")).unwrap_or_default();
    format!("echo {script} | base64 -d > {path} && {env}CIS_RUN_ID={run_id} bash {path}; status=$?; rm -f {path}; exit $status")
}

/// How long SSM lets the script run: the scenario's span with room to spare.
fn timeout_s(scenario: &Scenario) -> i32 {
    (scenario.span_s() as i32).saturating_add(600).clamp(60, 48 * 3600)
}

pub async fn start(
    ssm: &aws_sdk_ssm::Client,
    target: &LabTarget,
    scenario: &Scenario,
    run_id: &str,
    exfil_host: Option<&str>,
    now: Timestamp,
) -> Result<AttackHandle, CloudError> {
    let instance = target.id(Role::TargetInstance).ok_or_else(|| CloudError::Invalid("the lab has no target instance".into()))?;
    let out = ssm
        .send_command()
        .document_name("AWS-RunShellScript")
        .instance_ids(instance)
        .comment(format!("cis {} {run_id} {}", target.lab, scenario.id).chars().take(100).collect::<String>())
        .timeout_seconds(timeout_s(scenario))
        .parameters("commands", vec![run_command(scenario, run_id, exfil_host)])
        .parameters("executionTimeout", vec![timeout_s(scenario).to_string()])
        .send()
        .await
        .map_err(|e| match cloud_error(K::Instance, instance, e) {
            // SSM knows the instance only once its agent has registered, a minute or
            // two after boot: the orchestration waits and tries again.
            CloudError::Other(m) if m.starts_with("InvalidInstanceId") => CloudError::NotPropagatedYet(format!(
                "{m} (the target's SSM agent has not registered yet; it needs outbound HTTPS and the instance profile)"
            )),
            other => other,
        })?;
    let command =
        out.command().and_then(|c| c.command_id()).ok_or_else(|| CloudError::Other("SendCommand returned no command id".into()))?;
    Ok(AttackHandle { run_id: run_id.to_string(), scenario: scenario.id.clone(), started_at: now, backend_ref: command.to_string() })
}

/// Cancels the run's command on the target (SSM CancelCommand: "there is no guarantee
/// that the command will be terminated"; the run's drain covers what goes on). Without the
/// command id, the run is found by its id in the command comment `start` wrote
/// (ListCommands). A command that has ended answers InvalidCommandId: nothing to stop.
pub async fn stop(ssm: &aws_sdk_ssm::Client, target: &LabTarget, run_id: &str, command_id: Option<&str>) -> Result<(), CloudError> {
    let instance = target.id(Role::TargetInstance).ok_or_else(|| CloudError::Invalid("the lab has no target instance".into()))?;
    let commands: Vec<String> = match command_id {
        Some(c) => vec![c.to_string()],
        None => {
            let marker = format!("cis {} {run_id} ", target.lab);
            let listed = ssm.list_commands().instance_id(instance).send().await.map_err(|e| cloud_error(K::Instance, instance, e))?;
            listed
                .commands()
                .iter()
                .filter(|c| c.comment().is_some_and(|m| m.starts_with(&marker)))
                .filter_map(|c| c.command_id().map(str::to_string))
                .collect()
        }
    };
    for command in commands {
        match ssm.cancel_command().command_id(&command).instance_ids(instance).send().await {
            Ok(_) => {}
            Err(e) => match cloud_error(K::Instance, instance, e) {
                CloudError::Other(m) if m.starts_with("InvalidCommandId") => {}
                other => return Err(other),
            },
        }
    }
    Ok(())
}

/// An SSM time (`2026-11-23T15:04:05.123Z`, or without a zone as some emulators write it).
fn parse_time(s: &str) -> Option<Timestamp> {
    use aws_smithy_types::date_time::{DateTime, Format};
    let parsed = DateTime::from_str(s, Format::DateTime).or_else(|_| DateTime::from_str(&format!("{s}Z"), Format::DateTime)).ok()?;
    parsed.to_millis().ok().map(Timestamp)
}

async fn events(
    logs: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    since: Timestamp,
    marker: Option<&str>,
) -> Result<Vec<FilteredLogEvent>, CloudError> {
    let mut request = logs.filter_log_events().log_group_name(group).start_time(since.millis());
    if let Some(m) = marker {
        request = request.filter_pattern(format!("\"{m}\""));
    }
    let mut pages = request.into_paginator().send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        match page {
            Ok(p) => out.extend(p.events().iter().cloned()),
            // A function that never ran has written nothing yet: its group may be empty.
            Err(e) => match cloud_error(K::LogGroup, group, e) {
                e if e.is_not_found() => return Ok(out),
                e => return Err(e),
            },
        }
    }
    Ok(out)
}

/// How far before the attack's start flow-log records are read: the longest window.
const LOOKBACK_S: i64 = 600;

pub async fn observe(
    ssm: &aws_sdk_ssm::Client,
    ec2: &aws_sdk_ec2::Client,
    logs: &aws_sdk_cloudwatchlogs::Client,
    target: &LabTarget,
    scenario: &Scenario,
    attack: &AttackHandle,
) -> Result<Observation, CloudError> {
    let instance = target.id(Role::TargetInstance).ok_or_else(|| CloudError::Invalid("the lab has no target instance".into()))?;
    let mut obs = Observation::default();

    let invocation = ssm.get_command_invocation().command_id(&attack.backend_ref).instance_id(instance).send().await;
    match invocation {
        Ok(i) => {
            use aws_sdk_ssm::types::CommandInvocationStatus as S;
            let finished = matches!(i.status(), Some(S::Success | S::Failed | S::TimedOut | S::Cancelled));
            if finished {
                obs.attack_finished_at = i.execution_end_date_time().and_then(parse_time).or(Some(attack.started_at));
            }
        }
        // Right after SendCommand the invocation may not exist yet: still running.
        Err(e) => match cloud_error(K::Instance, &attack.backend_ref, e) {
            CloudError::Other(m) if m.starts_with("InvocationDoesNotExist") => {}
            e => return Err(e),
        },
    }

    // The attack's traffic as flow logs recorded it: egress from the target to the
    // scenario's ports, from the window the attack started in.
    let ports: Vec<u16> = scenario.streams.iter().filter(|s| s.direction == Direction::Outbound).flat_map(|s| s.ports.clone()).collect();
    let flow_group = target.id(Role::LogGroup).ok_or_else(|| CloudError::Invalid("the lab has no flow-log group".into()))?;
    let flow_group = flow_group.split_once(":log-group:").map(|(_, n)| n).unwrap_or(flow_group);
    let format = LogFormat::parse(LAB_LOG_FORMAT).expect("the lab's format parses");
    let since = Timestamp(attack.started_at.millis() - LOOKBACK_S * 1000);
    let started_s = attack.started_at.unix_seconds();
    for e in events(logs, flow_group, since, None).await? {
        let Some(Ok(Some(r))) = e.message().map(|m| format.read(m)) else { continue };
        let outbound = r.flow_direction.is_none_or(|d| d == FlowDirection::Egress);
        let ours = r.instance_id.as_deref() == Some(instance) && outbound && r.dstport.is_some_and(|p| ports.contains(&p));
        if !ours || r.end.is_some_and(|end| end < started_s) {
            continue;
        }
        let at = Timestamp::from_unix_seconds(r.start.unwrap_or(started_s).max(started_s));
        obs.transfers.push(Transfer { at, bytes_out: r.bytes.unwrap_or(0), accepted: r.action == Some(Action::Accept) });
        if let Some(ingested) = e.ingestion_time() {
            let ingested = Timestamp(ingested);
            obs.first_records_delivered_at = Some(obs.first_records_delivered_at.map_or(ingested, |t: Timestamp| t.min(ingested)));
        }
    }
    obs.transfers.sort_by_key(|t| t.at);

    let lab = &target.lab;
    for e in events(logs, &resource_name(lab, Role::DetectorLogs), attack.started_at, Some(DETECTION_LOG_MARKER)).await? {
        if let Some(d) = e.message().and_then(|m| parse_log_line::<DetectionEvent>(DETECTION_LOG_MARKER, m)) {
            if d.instance_id == instance && d.at >= since {
                obs.detections.push(d);
            }
        }
    }
    obs.detections.sort_by_key(|d| d.at);
    for e in events(logs, &resource_name(lab, Role::ContainmentLogs), attack.started_at, Some(CONTAINMENT_LOG_MARKER)).await? {
        if let Some(c) = e.message().and_then(|m| parse_log_line::<ContainmentOutcome>(CONTAINMENT_LOG_MARKER, m)) {
            if c.instance_id == instance && c.invoked_at >= attack.started_at {
                obs.containments.push(c);
            }
        }
    }
    obs.containments.sort_by_key(|c| c.invoked_at);
    // Containment's last step is the one message to the topic.
    obs.notifications = obs
        .containments
        .iter()
        .filter(|c| c.outcome == Outcome::Isolated || c.outcome == Outcome::Failed)
        .map(|c| Notification { at: c.finished_at, subject: format!("cis {lab}: {} {}", c.instance_id, c.outcome) })
        .collect();

    // The cross-check: every network interface of the instance is in the isolation group
    // now (containment leaves it alone there; moto also lists the launch group beside it).
    let isolation = target.id(Role::IsolationSecurityGroup).unwrap_or_default();
    let attached = aws_sdk_ec2::types::Filter::builder().name("attachment.instance-id").values(instance).build();
    let enis = ec2.describe_network_interfaces().filters(attached).send().await.map_err(|e| cloud_error(K::Instance, instance, e))?;
    let enis = enis.network_interfaces();
    obs.instance_isolated = !enis.is_empty() && enis.iter().all(|n| n.groups().iter().any(|g| g.group_id() == Some(isolation)));
    Ok(obs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sink_is_checked_and_the_script_travels_encoded() {
        assert!(check_exfil_host("sink.example.net").is_ok());
        assert!(check_exfil_host("198.51.100.7:8080").is_ok());
        assert!(check_exfil_host("[2001:db8::1]:443").is_ok());
        for bad in ["", "a b", "x;rm -rf /", "$(id)", "-oProxyCommand", "host`id`"] {
            assert!(check_exfil_host(bad).unwrap_err().contains("--exfil-host"), "{bad}");
        }
        let s = crate::model::scenario::find("exfil-http-beacon").unwrap();
        let cmd = run_command(&s, "run-0001", Some("sink.example.net"));
        let encoded = cmd.split_whitespace().nth(1).unwrap();
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), s.script.trim_start());
        assert!(cmd.contains("CIS_EXFIL_HOST=sink.example.net CIS_RUN_ID=run-0001 bash /tmp/cis-run-0001-exfil-http-beacon.sh"), "{cmd}");
        assert_eq!(parse_time("2026-11-23T15:04:05.123Z"), Some(Timestamp(1_795_446_245_123)));
        assert_eq!(parse_time("2026-11-23T15:04:05.123000"), Some(Timestamp(1_795_446_245_123)));
    }
}
