//! Alerts as people paste them: a JSON array, JSON lines, or one JSON document, in the
//! shapes their tools write. Each element is recognised by its shape:
//! - a GuardDuty finding (`aws guardduty get-findings`: `{"Findings": [...]}`, PascalCase;
//!   or the EventBridge event `GuardDuty Finding`, camelCase);
//! - a Security Hub finding in ASFF (`aws securityhub get-findings`, or the EventBridge
//!   event `Security Hub Findings - Imported` holding `detail.findings`);
//! - a CloudWatch alarm's EventBridge event `CloudWatch Alarm State Change`;
//! - the lab's own detection and containment records;
//! - any other object, under the field names alert sources commonly use.
//!
//! Field names are compared without case, so PascalCase and camelCase read alike.

use serde_json::{Map, Value};

use super::{Alert, Category, InputError, Origin};

/// The id fields alert sources use, in the order they are tried.
const ID_FIELDS: &[&str] = &["id", "uuid", "alert_id", "alert_uuid", "alertid", "event_id", "finding_id", "arn"];

fn get<'a>(o: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    o.get(key).or_else(|| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

fn text(o: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match get(o, k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// The value at a path of keys (array steps take the first element).
fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for k in path {
        cur = match cur {
            Value::Array(a) => get(a.first()?.as_object()?, k)?,
            Value::Object(o) => get(o, k)?,
            _ => return None,
        };
    }
    match cur {
        Value::Array(a) => a.first(),
        v => Some(v),
    }
}

fn text_at(v: &Value, path: &[&str]) -> Option<String> {
    match at(v, path)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(super) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What one element of the input holds: usually one alert, several for a document or an
/// event that carries a list of findings.
fn alerts_of(value: &Value, what: &'static str, position: usize, out: &mut Vec<Alert>) -> Result<(), InputError> {
    let bad = |message: String| InputError { what, position, message };
    let o = value.as_object().ok_or_else(|| bad(format!("expected an object, found {}", kind_of(value))))?;
    // A document of findings: `{"Findings": [...]}` from the CLI.
    if let Some(Value::Array(findings)) = get(o, "findings") {
        for f in findings {
            alerts_of(f, what, position, out)?;
        }
        return Ok(());
    }
    // An EventBridge event.
    if let (Some(detail_type), Some(detail)) = (text(o, &["detail-type"]), get(o, "detail")) {
        let id = text(o, &["id"]);
        match detail_type.as_str() {
            "GuardDuty Finding" => out.push(guardduty(detail, position)),
            "CloudWatch Alarm State Change" => out.push(alarm(value, detail, id, position)),
            _ if detail.get("findings").is_some_and(Value::is_array) => {
                for f in detail["findings"].as_array().into_iter().flatten() {
                    out.push(asff(f, position));
                }
            }
            _ => {
                let d = detail.as_object().cloned().unwrap_or_default();
                let mut a = generic(&d, what, position).unwrap_or_else(|_| Alert {
                    id: String::new(),
                    position,
                    timestamp: None,
                    user: None,
                    source: None,
                    destination: None,
                    message: detail_type.clone(),
                    code: None,
                    origin: Origin::Generic,
                    hint: None,
                });
                if a.id.is_empty() || a.id.starts_with(what) {
                    a.id = id.unwrap_or_else(|| format!("{what}-{position}"));
                }
                a.timestamp = a.timestamp.or_else(|| text(o, &["time"]));
                a.code = a.code.or(Some(detail_type));
                out.push(a);
            }
        }
        return Ok(());
    }
    if get(o, "schemaversion").is_some() && get(o, "productarn").is_some() {
        out.push(asff(value, position));
        return Ok(());
    }
    let is_guardduty = text(o, &["type"]).is_some_and(|t| t.contains(':') && t.contains('/'))
        && get(o, "severity").is_some_and(Value::is_number)
        && get(o, "resource").is_some();
    if is_guardduty {
        out.push(guardduty(value, position));
        return Ok(());
    }
    out.push(generic(o, what, position)?);
    Ok(())
}

/// The lab's records and any other object.
fn generic(o: &Map<String, Value>, what: &'static str, position: usize) -> Result<Alert, InputError> {
    let bad = |message: String| InputError { what, position, message };
    let t = |keys: &[&str]| text(o, keys);
    let (message, code, origin) = if let (Some(detector), Some(instance)) = (t(&["detector"]), t(&["instance_id"])) {
        (format!("{detector} detection on {instance}: {}", t(&["reason"]).unwrap_or_default()), Some("cis.detection".to_string()), Origin::Lab)
    } else if let (Some(outcome), Some(instance)) = (t(&["outcome"]), t(&["instance_id"])) {
        (
            format!("containment of {instance}: {outcome}: {}", t(&["detail"]).unwrap_or_default()),
            Some(format!("cis.containment.{outcome}")),
            Origin::Lab,
        )
    } else {
        let message = t(&["message", "msg", "description", "detail", "reason", "summary", "title", "alert", "name"])
            .ok_or_else(|| bad("no message: give one of message, msg, description, detail, summary, title".into()))?;
        (message, t(&["code", "event_code", "error_code", "alert_code", "rule", "signature", "event_type", "type"]), Origin::Generic)
    };
    let id = t(ID_FIELDS);
    Ok(Alert {
        id: id.unwrap_or_else(|| format!("{what}-{position}")),
        position,
        timestamp: t(&["timestamp", "time", "@timestamp", "at", "date", "created_at", "event_time"]),
        user: t(&["user", "username", "user_name", "principal", "actor"]),
        source: t(&["source", "src", "src_ip", "srcaddr", "source_ip", "source_address", "client_ip", "remote_ip"]),
        destination: t(&["destination", "dst", "dst_ip", "dstaddr", "destination_ip", "destination_address", "host", "hostname", "instance_id"]),
        message,
        code,
        origin,
        hint: None,
    })
}

/// Parts joined as sentences: "Title. Description. (severity 8)".
fn sentences(parts: &[&str]) -> String {
    let mut out = String::new();
    for p in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            if !out.ends_with('.') && !p.starts_with('(') {
                out.push('.');
            }
            out.push(' ');
        }
        out.push_str(p);
    }
    out
}

/// GuardDuty's finding types name a threat purpose first (`Backdoor:EC2/C&CActivity.B`):
/// what the purpose means decides the category, with the finding's severity (1-10) where
/// the purpose alone does not.
pub fn guardduty_category(kind: &str, severity: f64) -> Category {
    let purpose = kind.split(':').next().unwrap_or_default().to_ascii_lowercase();
    let lower = kind.to_ascii_lowercase();
    match purpose.as_str() {
        _ if lower.contains("logging") || lower.contains("cloudtrail") => {
            if purpose == "stealth" || purpose == "defenseevasion" {
                Category::SecurityLogging
            } else {
                Category::Hygiene
            }
        }
        "unauthorizedaccess" if lower.contains("bruteforce") => {
            if severity >= 7.0 {
                Category::ActiveAttack
            } else {
                Category::BruteForce
            }
        }
        "backdoor" | "trojan" | "cryptocurrency" | "exfiltration" | "impact" | "execution" | "privilegeescalation" | "persistence"
        | "credentialaccess" | "unauthorizedaccess" | "initialaccess" | "pentest" | "attacksequence" => Category::ActiveAttack,
        // The instance itself acting oddly is a sign it is compromised from Medium (4) up;
        // someone else probing it is, from High (7) up.
        "behavior" | "defenseevasion" if severity >= 4.0 => Category::ActiveAttack,
        "discovery" | "recon" if severity >= 7.0 => Category::ActiveAttack,
        "behavior" | "defenseevasion" | "discovery" | "recon" | "stealth" | "policy" => Category::Hygiene,
        _ => Category::Hygiene,
    }
}

fn guardduty(f: &Value, position: usize) -> Alert {
    let kind = text_at(f, &["type"]).unwrap_or_default();
    let severity = at(f, &["severity"]).and_then(Value::as_f64).unwrap_or(0.0);
    let title = text_at(f, &["title"]).unwrap_or_else(|| kind.clone());
    let description = text_at(f, &["description"]).unwrap_or_default();
    let action = |path: &[&str]| {
        [&["service", "action", "networkConnectionAction"][..], &["service", "action", "portProbeAction", "portProbeDetails"], &[
            "service",
            "action",
            "awsApiCallAction",
        ]]
        .iter()
        .find_map(|base| text_at(f, &[*base, path].concat()))
    };
    Alert {
        id: text_at(f, &["id"]).or_else(|| text_at(f, &["arn"])).unwrap_or_else(|| format!("finding-{position}")),
        position,
        timestamp: text_at(f, &["updatedAt"]).or_else(|| text_at(f, &["createdAt"])),
        user: text_at(f, &["resource", "accessKeyDetails", "userName"]),
        source: action(&["remoteIpDetails", "ipAddressV4"]),
        destination: text_at(f, &["resource", "instanceDetails", "instanceId"])
            .or_else(|| text_at(f, &["resource", "s3BucketDetails", "name"]))
            .or_else(|| text_at(f, &["resource", "accessKeyDetails", "userName"])),
        message: sentences(&[&title, &description, &format!("(GuardDuty severity {severity})")]),
        code: Some(kind.clone()),
        origin: Origin::GuardDuty,
        hint: Some(guardduty_category(&kind, severity)),
    }
}

/// An ASFF finding's category: from a GuardDuty type carried in its `Types` (Security Hub
/// writes `TTPs/Command and Control/Backdoor:EC2-C&CActivity.B!DNS`), else from the type
/// namespace, with the severity label where the namespace alone does not decide.
fn asff_category(f: &Value) -> Category {
    let label = text_at(f, &["severity", "label"]).unwrap_or_default().to_ascii_uppercase();
    let high = matches!(label.as_str(), "HIGH" | "CRITICAL");
    let medium_or_more = high || label == "MEDIUM";
    if text_at(f, &["compliance", "status"]).is_some_and(|s| s.eq_ignore_ascii_case("PASSED"))
        || text_at(f, &["workflow", "status"]).is_some_and(|s| s.eq_ignore_ascii_case("SUPPRESSED") || s.eq_ignore_ascii_case("RESOLVED"))
        || text_at(f, &["recordState"]).is_some_and(|s| s.eq_ignore_ascii_case("ARCHIVED"))
    {
        return Category::Noise;
    }
    let types: Vec<String> = f
        .as_object()
        .and_then(|o| get(o, "types"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect();
    if let Some(kind) = asff_guardduty_type(f) {
        let severity = at(f, &["severity", "normalized"]).and_then(Value::as_f64).map_or(if high { 7.0 } else { 4.0 }, |n| n / 10.0);
        return guardduty_category(&kind, severity);
    }
    let lower: Vec<String> = types.iter().map(|t| t.to_ascii_lowercase()).collect();
    // A failed check that security logging is on (CloudTrail, flow logs, access logging).
    let title = text_at(f, &["title"]).unwrap_or_default().to_ascii_lowercase();
    let failed = text_at(f, &["compliance", "status"]).is_some_and(|s| s.eq_ignore_ascii_case("FAILED"));
    if failed && ["cloudtrail", "logging", "flow log", "audit log"].iter().any(|w| title.contains(w)) {
        return Category::SecurityLogging;
    }
    let has = |w: &str| lower.iter().any(|t| t.contains(w));
    if has("logging") || (has("defense evasion") && text_at(f, &["title"]).is_some_and(|t| t.to_ascii_lowercase().contains("log"))) {
        Category::SecurityLogging
    } else if has("effects/denial of service") {
        Category::DenialOfService
    } else if has("effects/data exfiltration") || has("effects/data destruction") || (has("ttps/") && medium_or_more) {
        Category::ActiveAttack
    } else if has("unusual behaviors") && high {
        Category::ActiveAttack
    } else {
        Category::Hygiene
    }
}

/// The GuardDuty type an ASFF finding carries in its `Types`, if it does.
fn asff_guardduty_type(f: &Value) -> Option<String> {
    let types = f.as_object().and_then(|o| get(o, "types")).and_then(Value::as_array)?;
    types.iter().filter_map(Value::as_str).find_map(|t| {
        let last = t.rsplit('/').next()?;
        let (purpose, rest) = last.split_once(':')?;
        Some(format!("{purpose}:{}", rest.replacen('-', "/", 1)))
    })
}

fn asff(f: &Value, position: usize) -> Alert {
    let title = text_at(f, &["title"]).unwrap_or_default();
    let description = text_at(f, &["description"]).unwrap_or_default();
    let label = text_at(f, &["severity", "label"]).unwrap_or_default();
    Alert {
        id: text_at(f, &["id"]).unwrap_or_else(|| format!("finding-{position}")),
        position,
        timestamp: text_at(f, &["updatedAt"]).or_else(|| text_at(f, &["createdAt"])),
        user: None,
        source: text_at(f, &["network", "sourceIpV4"]).or_else(|| text_at(f, &["action", "networkConnectionAction", "remoteIpDetails", "ipAddressV4"])),
        destination: text_at(f, &["resources", "id"]),
        message: sentences(&[&title, &description, &format!("(Security Hub severity {label})")]),
        code: asff_guardduty_type(f)
            .or_else(|| text_at(f, &["productFields", "ControlId"]))
            .or_else(|| text_at(f, &["compliance", "securityControlId"]))
            .or_else(|| text_at(f, &["generatorId"])),
        origin: Origin::SecurityHub,
        hint: Some(asff_category(f)),
    }
}

/// A CloudWatch alarm's state change: ALARM is classified by what the alarm's name,
/// description and reason say; OK is noise; INSUFFICIENT_DATA means the metric stopped.
fn alarm(event: &Value, detail: &Value, id: Option<String>, position: usize) -> Alert {
    let name = text_at(detail, &["alarmName"]).unwrap_or_default();
    let state = text_at(detail, &["state", "value"]).unwrap_or_default();
    let reason = text_at(detail, &["state", "reason"]).unwrap_or_default();
    let description = text_at(detail, &["configuration", "description"]).unwrap_or_default();
    let hint = match state.as_str() {
        "OK" => Some(Category::Noise),
        "INSUFFICIENT_DATA" => Some(Category::RoutineError),
        _ => None,
    };
    Alert {
        id: id.unwrap_or_else(|| format!("alarm-{position}")),
        position,
        timestamp: text_at(detail, &["state", "timestamp"]).or_else(|| text_at(event, &["time"])),
        user: None,
        source: None,
        destination: text_at(detail, &["configuration", "metrics", "metricStat", "metric", "dimensions", "InstanceId"]),
        message: format!("alarm {name} is {state}: {description} {reason}").split_whitespace().collect::<Vec<_>>().join(" "),
        code: Some(format!("cloudwatch.alarm.{}", state.to_ascii_lowercase())),
        origin: Origin::CloudWatchAlarm,
        hint,
    }
}

/// A batch of alerts: a JSON array, one JSON document, or JSON lines (blank lines
/// skipped). Ids must be unique, since answers cite them; the warnings say what the batch
/// lacked (no id field at all).
pub fn parse_alerts(text: &str) -> Result<(Vec<Alert>, Vec<String>), InputError> {
    let trimmed = text.trim_start();
    let mut alerts = Vec::new();
    let whole: Option<Value> = if trimmed.starts_with('[') || trimmed.starts_with('{') { serde_json::from_str(text).ok() } else { None };
    match whole {
        Some(Value::Array(values)) => {
            for (i, v) in values.iter().enumerate() {
                alerts_of(v, "element", i + 1, &mut alerts)?;
            }
        }
        Some(v @ Value::Object(_)) => alerts_of(&v, "element", 1, &mut alerts)?,
        _ if trimmed.starts_with('[') => {
            let e = serde_json::from_str::<Value>(text).expect_err("not parsed above");
            return Err(InputError { what: "line", position: e.line(), message: format!("not a JSON array of alerts: {e}") });
        }
        _ => {
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                // The lab's function logs carry records after a marker: take what follows it.
                let json = line.find('{').map_or(line, |at| &line[at..]);
                let value: Value = serde_json::from_str(json).map_err(|e| InputError {
                    what: "line",
                    position: i + 1,
                    message: format!("not a JSON object: {e}"),
                })?;
                alerts_of(&value, "line", i + 1, &mut alerts)?;
            }
        }
    }
    if alerts.is_empty() {
        return Err(InputError { what: "line", position: 1, message: "no alerts in the input".into() });
    }
    let mut seen = std::collections::BTreeSet::new();
    for a in &alerts {
        if !seen.insert(a.id.as_str()) {
            return Err(InputError { what: "line", position: a.position, message: format!("alert id '{}' appears twice", a.id) });
        }
    }
    let mut warnings = Vec::new();
    let unnamed = alerts.iter().filter(|a| a.id == format!("line-{}", a.position) || a.id == format!("element-{}", a.position)).count();
    if unnamed > 0 {
        warnings.push(format!(
            "{unnamed} of {} alerts have no id field (tried {}); they are cited by their place, such as '{}'",
            alerts.len(),
            ID_FIELDS.join(", "),
            alerts.iter().find(|a| a.id.starts_with("line-") || a.id.starts_with("element-")).map_or("", |a| a.id.as_str())
        ));
    }
    Ok((alerts, warnings))
}
