//! Alert triage and root-cause analysis: what `cis triage` and `cis rca` read, what they
//! answer, and the analysers that answer.
//!
//! Input is parsed here once, whatever the analyser: alerts from a JSON array or JSON lines
//! (the lab's own detection and containment records too), security logs from a Markdown or
//! CSV table or flow-log lines, firewall rules from a table or the lab's ledger. The
//! built-in engine ([`builtin`]) is deterministic and offline and always runs: its
//! structured evidence is what the language-model analysers ([`llm`]) are given beside
//! the raw input, and what their answers are checked against.

pub mod builtin;
pub mod llm;

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

pub use crate::base::error::AnalysisError;

/// One alert of a batch, with where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: String,
    /// 1-based: the line of a JSON-lines file, the element of a JSON array.
    pub position: usize,
    pub timestamp: Option<String>,
    pub user: Option<String>,
    pub source: Option<String>,
    pub destination: Option<String>,
    pub message: String,
    pub code: Option<String>,
}

/// Why an input could not be read: where, and what was wrong.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{what} {position}: {message}")]
pub struct InputError {
    /// "line" or "element" or "row".
    pub what: &'static str,
    pub position: usize,
    pub message: String,
}

fn first_text(o: &serde_json::Map<String, serde_json::Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match o.get(*k) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// One alert object, under the field names alert sources commonly use; the lab's own
/// detection (`instance_id`, `detector`, `reason`) and containment (`outcome`, `detail`)
/// records become alerts with codes `cis.detection` and `cis.containment.<outcome>`.
fn alert_of(value: &serde_json::Value, what: &'static str, position: usize) -> Result<Alert, InputError> {
    let bad = |message: String| InputError { what, position, message };
    let o = value.as_object().ok_or_else(|| bad(format!("expected an object, found {}", kind_of(value))))?;
    let text = |keys: &[&str]| first_text(o, keys);
    let (message, code) = if let (Some(detector), Some(instance)) = (text(&["detector"]), text(&["instance_id"])) {
        (format!("{detector} detection on {instance}: {}", text(&["reason"]).unwrap_or_default()), Some("cis.detection".to_string()))
    } else if let (Some(outcome), Some(instance)) = (text(&["outcome"]), text(&["instance_id"])) {
        (
            format!("containment of {instance}: {outcome}: {}", text(&["detail"]).unwrap_or_default()),
            Some(format!("cis.containment.{outcome}")),
        )
    } else {
        let message = text(&["message", "msg", "description", "detail", "reason", "summary", "title"])
            .ok_or_else(|| bad("no message: give one of message, msg, description, detail".into()))?;
        (message, text(&["code", "event_code", "error_code", "rule", "signature", "event_type"]))
    };
    let id = text(&["id", "alert_id", "event_id", "uuid"]).unwrap_or_else(|| format!("{what}-{position}"));
    Ok(Alert {
        id,
        position,
        timestamp: text(&["timestamp", "time", "@timestamp", "at", "date"]),
        user: text(&["user", "username", "user_name", "principal", "actor"]),
        source: text(&["source", "src", "src_ip", "srcaddr", "source_ip", "source_address", "client_ip"]),
        destination: text(&["destination", "dst", "dst_ip", "dstaddr", "destination_ip", "destination_address", "host", "instance_id"]),
        message,
        code,
    })
}

fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A batch of alerts: a JSON array, or JSON lines (blank lines skipped). Ids must be
/// unique, since answers cite them.
pub fn parse_alerts(text: &str) -> Result<Vec<Alert>, InputError> {
    let trimmed = text.trim_start();
    let alerts = if trimmed.starts_with('[') {
        let values: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|e| InputError {
            what: "line",
            position: e.line(),
            message: format!("not a JSON array of alerts: {e}"),
        })?;
        values.iter().enumerate().map(|(i, v)| alert_of(v, "element", i + 1)).collect::<Result<Vec<_>, _>>()?
    } else {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            // The lab's function logs carry records after a marker: take what follows it.
            let json = line.find('{').map_or(line, |at| &line[at..]);
            let value: serde_json::Value = serde_json::from_str(json).map_err(|e| InputError {
                what: "line",
                position: i + 1,
                message: format!("not a JSON object: {e}"),
            })?;
            out.push(alert_of(&value, "line", i + 1)?);
        }
        out
    };
    if alerts.is_empty() {
        return Err(InputError { what: "line", position: 1, message: "no alerts in the input".into() });
    }
    let mut seen = BTreeSet::new();
    for a in &alerts {
        if !seen.insert(a.id.as_str()) {
            return Err(InputError { what: "line", position: a.position, message: format!("alert id '{}' appears twice", a.id) });
        }
    }
    Ok(alerts)
}

/// What an alert (or a correlated group) is, in order of impact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// Something is down or about to be: users are affected now.
    Outage,
    /// Someone is acting against the system now.
    ActiveAttack,
    /// Traffic blocked to keep a service up.
    DenialOfService,
    /// A privileged user widened access for good.
    PrivilegeChange,
    /// A weakness nobody is exploiting yet.
    Hygiene,
    RoutineError,
    Noise,
}

impl Category {
    pub fn name(self) -> &'static str {
        match self {
            Category::Outage => "availability outage",
            Category::ActiveAttack => "active attack",
            Category::DenialOfService => "denial of service",
            Category::PrivilegeChange => "privileged change",
            Category::Hygiene => "hygiene",
            Category::RoutineError => "routine error",
            Category::Noise => "noise",
        }
    }

    /// Critical, high, medium, low or info.
    pub fn severity(self) -> &'static str {
        match self {
            Category::Outage | Category::ActiveAttack => "critical",
            Category::DenialOfService | Category::PrivilegeChange => "high",
            Category::Hygiene => "medium",
            Category::RoutineError => "low",
            Category::Noise => "info",
        }
    }
}

/// One ranked answer of triage: the alerts it is about, why it matters, what to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub rank: usize,
    pub alert_ids: Vec<String>,
    pub category: Category,
    pub severity: String,
    pub critical: bool,
    pub why: String,
    pub action: String,
    /// The input lines the finding rests on, as given.
    pub evidence: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TriageReport {
    pub format: String,
    pub version: u32,
    pub analyser: String,
    pub alerts: usize,
    pub findings: Vec<Finding>,
}

impl TriageReport {
    pub fn to_markdown(&self) -> String {
        let mut o = String::new();
        let critical = self.findings.iter().filter(|f| f.critical).count();
        let _ = writeln!(o, "# Triage ({} analyser)\n", self.analyser);
        let _ = writeln!(o, "{} alerts, {} findings, {critical} critical.\n", self.alerts, self.findings.len());
        let _ = writeln!(o, "| rank | severity | category | alerts | why | what to do |");
        let _ = writeln!(o, "|---:|---|---|---|---|---|");
        for f in &self.findings {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} |",
                f.rank,
                f.severity,
                f.category.name(),
                f.alert_ids.join(", "),
                cell(&f.why),
                cell(&f.action)
            );
        }
        let _ = writeln!(o, "\n## Evidence\n");
        for f in &self.findings {
            let _ = writeln!(o, "{}. {} ({}):", f.rank, f.alert_ids.join(", "), f.category.name());
            for e in &f.evidence {
                let _ = writeln!(o, "   - `{}`", e.replace('`', "'"));
            }
        }
        o
    }

    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "triage by the {} analyser: {} alerts, {} findings", self.analyser, self.alerts, self.findings.len());
        for f in &self.findings {
            let _ = writeln!(o, "{:>3}. [{}] {} - {}", f.rank, f.severity, f.alert_ids.join(", "), f.category.name());
            let _ = writeln!(o, "     why: {}", f.why);
            let _ = writeln!(o, "     do:  {}", f.action);
            for e in &f.evidence {
                let _ = writeln!(o, "     evidence: {e}");
            }
        }
        o
    }
}

/// A Markdown table cell: no pipes or line breaks.
pub fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// One row of a security log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogRow {
    pub position: usize,
    pub time: Option<String>,
    pub source: Option<String>,
    pub destination: Option<String>,
    pub port: Option<u16>,
    pub protocol: Option<String>,
    /// `allow` or `deny`, whatever the log called it.
    pub action: Option<String>,
    /// The rule that matched, when the log says.
    pub rule: Option<String>,
    pub message: String,
    /// The row as given, for evidence.
    pub raw: String,
}

/// One firewall rule: a row of a rules table or a security-group rule of the lab.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FirewallRule {
    pub id: String,
    pub priority: Option<i64>,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// `allow` or `deny`.
    pub action: String,
    pub source: String,
    pub destination: String,
    /// `any`, a port, or a range `from-to`.
    pub ports: String,
    pub protocol: String,
    pub raw: String,
}

/// A table: Markdown (`| a | b |` with a `|---|` line) or CSV (a header row, commas; double
/// quotes around a cell that holds commas).
pub fn parse_table(text: &str) -> Result<Vec<(usize, Vec<(String, String)>, String)>, InputError> {
    let lines: Vec<(usize, &str)> = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty()).collect();
    let Some(&(header_at, header)) = lines.first() else {
        return Err(InputError { what: "line", position: 1, message: "empty table".into() });
    };
    let markdown = header.starts_with('|');
    let split = |l: &str| -> Vec<String> {
        if markdown {
            l.trim_matches('|').split('|').map(|c| c.trim().replace("\\|", "|").to_string()).collect()
        } else {
            csv_cells(l)
        }
    };
    let names: Vec<String> = split(header).into_iter().map(|h| h.to_ascii_lowercase().replace([' ', '-'], "_")).collect();
    let mut rows = Vec::new();
    for &(at, line) in &lines[1..] {
        if markdown && line.trim_matches(|c| c == '|' || c == '-' || c == ':' || c == ' ').is_empty() {
            continue;
        }
        if markdown && !line.starts_with('|') {
            return Err(InputError { what: "line", position: at, message: "a Markdown table row starts with |".into() });
        }
        let cells = split(line);
        if cells.len() != names.len() {
            return Err(InputError {
                what: "line",
                position: at,
                message: format!("{} cells, but the header (line {header_at}) names {} columns", cells.len(), names.len()),
            });
        }
        rows.push((at, names.iter().cloned().zip(cells).collect(), line.to_string()));
    }
    if rows.is_empty() {
        return Err(InputError { what: "line", position: header_at, message: "a header but no rows".into() });
    }
    Ok(rows)
}

fn csv_cells(line: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => cells.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(c),
        }
    }
    cells.push(cur.trim().to_string());
    cells
}

fn column(row: &[(String, String)], names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| row.iter().find(|(k, v)| k == n && !v.is_empty() && v != "-").map(|(_, v)| v.clone()))
}

/// Normalises allow/accept/permit/pass and deny/drop/reject/block.
pub fn normal_action(a: &str) -> Option<&'static str> {
    match a.to_ascii_lowercase().as_str() {
        "allow" | "allowed" | "accept" | "accepted" | "permit" | "permitted" | "pass" => Some("allow"),
        "deny" | "denied" | "drop" | "dropped" | "reject" | "rejected" | "block" | "blocked" => Some("deny"),
        _ => None,
    }
}

/// Security logs: a table, or flow-log lines (the default format or the lab's).
pub fn parse_logs(text: &str) -> Result<Vec<LogRow>, InputError> {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default().trim();
    if first.starts_with('|') || first.contains(',') {
        return parse_table(text)?
            .into_iter()
            .map(|(at, row, raw)| {
                let port = column(&row, &["port", "dst_port", "dstport", "destination_port", "dport"]);
                let port = match port {
                    Some(p) => Some(p.parse::<u16>().map_err(|_| InputError {
                        what: "line",
                        position: at,
                        message: format!("port '{p}' is not a port number"),
                    })?),
                    None => None,
                };
                let action = column(&row, &["action", "decision", "verdict", "result"]);
                Ok(LogRow {
                    position: at,
                    time: column(&row, &["time", "timestamp", "date", "start"]),
                    source: column(&row, &["source", "src", "src_ip", "srcaddr", "source_ip"]),
                    destination: column(&row, &["destination", "dst", "dst_ip", "dstaddr", "destination_ip"]),
                    port,
                    protocol: column(&row, &["protocol", "proto"]),
                    action: action.as_deref().and_then(normal_action).map(str::to_string).or(action),
                    rule: column(&row, &["rule", "rule_id", "matched_rule", "policy"]),
                    message: column(&row, &["message", "msg", "event", "description"]).unwrap_or_default(),
                    raw,
                })
            })
            .collect();
    }
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with("version") {
            continue;
        }
        let format = crate::formats::flowlog::LogFormat::guess(line);
        let Some(r) =
            format.read(line).map_err(|e| InputError { what: "line", position: i + 1, message: format!("not a flow-log record: {e}") })?
        else {
            continue;
        };
        rows.push(LogRow {
            position: i + 1,
            time: r.start.map(|s| crate::base::clock::Timestamp::from_unix_seconds(s).to_string()),
            source: r.srcaddr.map(|a| a.to_string()),
            destination: r.dstaddr.map(|a| a.to_string()),
            port: r.dstport,
            protocol: r.protocol.map(|p| crate::base::net::protocol_name(p).map_or_else(|| p.to_string(), str::to_string)),
            action: r.action.map(|a| if a == crate::formats::flowlog::Action::Accept { "allow" } else { "deny" }.to_string()),
            rule: None,
            message: String::new(),
            raw: line.to_string(),
        });
    }
    if rows.is_empty() {
        return Err(InputError { what: "line", position: 1, message: "no log rows".into() });
    }
    Ok(rows)
}

/// A rules table: columns id (or name, rule), action, source, destination, port(s),
/// protocol, and optionally priority and direction (inbound when absent).
pub fn parse_rules(text: &str) -> Result<Vec<FirewallRule>, InputError> {
    parse_table(text)?
        .into_iter()
        .map(|(at, row, raw)| {
            let bad = |message: String| InputError { what: "line", position: at, message };
            let action = column(&row, &["action", "decision", "verdict"]).ok_or_else(|| bad("no action column value".into()))?;
            let action = normal_action(&action).ok_or_else(|| bad(format!("action '{action}': expected allow or deny")))?;
            let priority = match column(&row, &["priority", "order", "rule_number", "number"]) {
                Some(p) => Some(p.parse::<i64>().map_err(|_| bad(format!("priority '{p}' is not a number")))?),
                None => None,
            };
            Ok(FirewallRule {
                id: column(&row, &["id", "name", "rule", "rule_id"]).unwrap_or_else(|| format!("line-{at}")),
                priority,
                direction: column(&row, &["direction", "type"]).unwrap_or_else(|| "inbound".into()).to_ascii_lowercase(),
                action: action.to_string(),
                source: column(&row, &["source", "src", "source_cidr", "from"]).unwrap_or_else(|| "any".into()),
                destination: column(&row, &["destination", "dst", "destination_cidr", "to"]).unwrap_or_else(|| "any".into()),
                ports: column(&row, &["ports", "port", "port_range", "dst_port"]).unwrap_or_else(|| "any".into()),
                protocol: column(&row, &["protocol", "proto"]).unwrap_or_else(|| "any".into()).to_ascii_lowercase(),
                raw,
            })
        })
        .collect()
}

/// The lab's own firewall: its security groups' rules, from the ledger's specs.
pub fn rules_of_lab(graph: &crate::model::lab::LabGraph) -> Vec<FirewallRule> {
    let mut out = Vec::new();
    for spec in &graph.resources {
        let crate::model::lab::ResourceConfig::SecurityGroup { ingress, egress, .. } = &spec.config else { continue };
        for (direction, rules) in [("inbound", ingress), ("outbound", egress)] {
            for (i, r) in rules.iter().enumerate() {
                let ports = if r.protocol == "-1" || r.from_port < 0 {
                    "any".to_string()
                } else if r.from_port == r.to_port {
                    r.from_port.to_string()
                } else {
                    format!("{}-{}", r.from_port, r.to_port)
                };
                let (source, destination) =
                    if direction == "inbound" { (r.cidr.clone(), "target".to_string()) } else { ("target".to_string(), r.cidr.clone()) };
                let protocol = if r.protocol == "-1" { "any".to_string() } else { r.protocol.clone() };
                out.push(FirewallRule {
                    id: format!("{}/{direction}-{}", spec.name, i + 1),
                    priority: None,
                    direction: direction.into(),
                    action: "allow".into(),
                    raw: format!("{}: {direction} {protocol} {ports} {}", spec.name, r.cidr),
                    source,
                    destination,
                    ports,
                    protocol,
                });
            }
        }
    }
    out
}

/// Root-cause analysis: what happened, why, and how the rules should change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RcaReport {
    pub format: String,
    pub version: u32,
    pub analyser: String,
    pub issues: Vec<RcaIssue>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RcaIssue {
    pub title: String,
    pub category: Category,
    pub issue: String,
    pub root_cause: String,
    /// The rule the cause lies in, when one does.
    pub rule: Option<String>,
    /// The rules to put in place of the faulty ones, in order.
    pub proposed_rules: Vec<FirewallRule>,
    pub evidence: Vec<String>,
}

impl RcaReport {
    pub fn to_markdown(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "# Root-cause analysis ({} analyser)\n", self.analyser);
        if self.issues.is_empty() {
            let _ = writeln!(o, "No issue found in the logs and rules given.");
        }
        for (n, i) in self.issues.iter().enumerate() {
            let _ = writeln!(o, "## {}. {}\n", n + 1, i.title);
            let _ = writeln!(o, "| | |\n|---|---|");
            let _ = writeln!(o, "| issue | {} |", cell(&i.issue));
            let _ = writeln!(o, "| root cause | {} |", cell(&i.root_cause));
            let _ = writeln!(o, "| rule | {} |", i.rule.as_deref().map_or("-".to_string(), cell));
            let _ = writeln!(o, "| impact | {} ({}) |\n", i.category.name(), i.category.severity());
            if !i.proposed_rules.is_empty() {
                let _ = writeln!(o, "Proposed rule set, in order:\n");
                let _ = writeln!(o, "| id | direction | action | source | destination | ports | protocol |");
                let _ = writeln!(o, "|---|---|---|---|---|---|---|");
                for r in &i.proposed_rules {
                    let _ = writeln!(
                        o,
                        "| {} | {} | {} | {} | {} | {} | {} |",
                        cell(&r.id),
                        r.direction,
                        r.action,
                        cell(&r.source),
                        cell(&r.destination),
                        cell(&r.ports),
                        r.protocol
                    );
                }
                let _ = writeln!(o);
            }
            let _ = writeln!(o, "Evidence:\n");
            for e in &i.evidence {
                let _ = writeln!(o, "- `{}`", e.replace('`', "'"));
            }
            let _ = writeln!(o);
        }
        o
    }

    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "root-cause analysis by the {} analyser: {} issue(s)", self.analyser, self.issues.len());
        for (n, i) in self.issues.iter().enumerate() {
            let _ = writeln!(o, "{}. {} [{}]", n + 1, i.title, i.category.severity());
            let _ = writeln!(o, "   issue:      {}", i.issue);
            let _ = writeln!(o, "   root cause: {}", i.root_cause);
            for r in &i.proposed_rules {
                let _ = writeln!(
                    o,
                    "   propose:    {} {} {} {} -> {} ports {} {}",
                    r.id, r.direction, r.action, r.source, r.destination, r.ports, r.protocol
                );
            }
            for e in &i.evidence {
                let _ = writeln!(o, "   evidence:   {e}");
            }
        }
        o
    }
}

/// What a root-cause analysis reads.
#[derive(Clone, Debug, Default)]
pub struct RcaInput {
    pub logs: Vec<LogRow>,
    pub rules: Vec<FirewallRule>,
    /// The lab's detections for a run, as alerts.
    pub detections: Vec<Alert>,
}

/// What a lab run gives a root-cause analysis: its detection as an alert, the attack's
/// traffic (the scenario's streams, allowed when the run lost bytes) as log rows, and the
/// lab's rules.
pub fn run_input(record: &crate::orchestrator::measure::RunRecord, rules: Vec<FirewallRule>) -> RcaInput {
    let mut input = RcaInput { rules, ..Default::default() };
    if record.metrics.detected {
        input.detections.push(Alert {
            id: record.run_id.clone(),
            position: 1,
            timestamp: record.timeline.detected.map(|t| t.to_string()),
            user: None,
            source: None,
            destination: Some("target".into()),
            message: record.detection_reason.clone().unwrap_or_else(|| format!("{} detected", record.scenario)),
            code: Some("cis.detection".into()),
        });
    }
    let Ok(scenario) = crate::model::scenario::find(&record.scenario) else { return input };
    let action = if record.metrics.bytes_exfiltrated > 0 { "allow" } else { "deny" };
    for stream in scenario.streams.iter().filter(|s| s.direction == crate::model::scenario::Direction::Outbound) {
        for remote in &stream.remotes {
            for port in &stream.ports {
                let position = input.logs.len() + 1;
                input.logs.push(LogRow {
                    position,
                    time: record.timeline.first_exfil_flow.map(|t| t.to_string()),
                    source: Some("target".into()),
                    destination: Some(remote.clone()),
                    port: Some(*port),
                    protocol: Some(stream.protocol.name().to_string()),
                    action: Some(action.into()),
                    rule: None,
                    message: format!("{}: {} outbound", record.run_id, scenario.id),
                    raw: format!("{} {}: target -> {remote}:{port}/{} {action}", record.run_id, scenario.id, stream.protocol.name()),
                });
            }
        }
    }
    input
}

/// The root causes of one lab run, for `cis report`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRootCause {
    pub run_id: String,
    pub scenario: String,
    pub issues: Vec<RcaIssue>,
}
