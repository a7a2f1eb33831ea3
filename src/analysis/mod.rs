//! Alert triage and root-cause analysis: what `cis triage` and `cis rca` read, what they
//! answer, and the analysers that answer.
//!
//! Input is parsed here once, whatever the analyser: alerts from a JSON array or JSON lines
//! (the lab's own detection and containment records too), security logs from a Markdown or
//! CSV table or flow-log lines, firewall rules from a table or the lab's ledger. The
//! built-in engine ([`builtin`]) is deterministic and offline and always runs: its
//! structured evidence is what the language-model analysers ([`llm`]) are given beside
//! the raw input, and what their answers are checked against.

// Alerts in the shapes tools write them: GuardDuty, Security Hub, CloudWatch alarms, the lab.
mod alerts;
// The column names of pasted logs and rules tables, one vocabulary for both.
mod columns;
// Rules decided as a firewall decides them, and the check that a proposal is no wider.
pub mod firewall;
// The deterministic engine: classification, correlation, root cause, proposals.
pub mod builtin;
// The language-model analysers, checked against the engine's evidence.
pub mod llm;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

pub use crate::base::error::AnalysisError;
use columns::Column;
pub use firewall::{Decision, Direction, Packet};

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
    /// The alert's own code or type (`SEC3007`, `Backdoor:EC2/C&CActivity.B`).
    pub code: Option<String>,
    pub origin: Origin,
    /// The category the alert's own format decides (a GuardDuty finding type, a Security
    /// Hub type namespace, an alarm's state), when it does.
    pub hint: Option<Category>,
}

/// The tool an alert came from, as recognised by its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    Generic,
    GuardDuty,
    SecurityHub,
    CloudWatchAlarm,
    /// The lab's own detection and containment records.
    Lab,
}

impl Origin {
    pub fn name(self) -> &'static str {
        match self {
            Origin::Generic => "alert",
            Origin::GuardDuty => "GuardDuty finding",
            Origin::SecurityHub => "Security Hub finding",
            Origin::CloudWatchAlarm => "CloudWatch alarm",
            Origin::Lab => "lab record",
        }
    }
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

pub use alerts::parse_alerts;

/// What an alert (or a correlated group) is, in the order triage ranks them (README,
/// "How triage ranks"): availability outages and active attacks; then denial of service,
/// loss of security logging and privileged permanent access changes; then brute-force
/// signals and failing security components; then hygiene, routine errors and noise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// Something is down or about to be: users are affected now.
    Outage,
    /// Someone is acting against the system now.
    ActiveAttack,
    /// A flood against a service.
    DenialOfService,
    /// Security logs are not being kept or delivered: an investigation would be blind.
    SecurityLogging,
    /// A privileged user widened access for good.
    PrivilegeChange,
    /// Repeated failed logins or a lockout: someone is guessing, not yet in.
    BruteForce,
    /// A security component (EDR, antivirus, IDS, audit daemon) crashed or stopped.
    SecurityComponent,
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
            Category::SecurityLogging => "loss of security logging",
            Category::PrivilegeChange => "privileged change",
            Category::BruteForce => "brute-force signal",
            Category::SecurityComponent => "security component down",
            Category::Hygiene => "hygiene",
            Category::RoutineError => "routine error",
            Category::Noise => "noise",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            Category::Outage | Category::ActiveAttack => Severity::Critical,
            Category::DenialOfService | Category::SecurityLogging | Category::PrivilegeChange => Severity::High,
            Category::BruteForce | Category::SecurityComponent => Severity::Medium,
            Category::Hygiene | Category::RoutineError => Severity::Low,
            Category::Noise => Severity::Info,
        }
    }
}

/// How urgent a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

impl Severity {
    pub const ALL: [Severity; 5] = [Severity::Critical, Severity::High, Severity::Medium, Severity::Low, Severity::Info];

    pub fn name(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
        }
    }

    pub fn from_word(w: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| s.name().eq_ignore_ascii_case(w.trim()))
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One ranked answer of triage: the alerts it is about, why it matters, what to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub rank: usize,
    pub alert_ids: Vec<String>,
    pub category: Category,
    pub severity: Severity,
    pub critical: bool,
    /// The alerts' own codes, where they have one, in the order of `alert_ids`.
    #[serde(default)]
    pub codes: Vec<Option<String>>,
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
                cell(&f.cited()),
                cell(&f.why),
                cell(&f.action)
            );
        }
        let _ = writeln!(o, "\n## Evidence\n");
        for f in &self.findings {
            let _ = writeln!(o, "{}. {} ({}):", f.rank, f.cited(), f.category.name());
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
            let _ = writeln!(o, "{:>3}. [{}] {} - {}", f.rank, f.severity, f.cited(), f.category.name());
            let _ = writeln!(o, "     why: {}", f.why);
            let _ = writeln!(o, "     do:  {}", f.action);
            for e in &f.evidence {
                let _ = writeln!(o, "     evidence: {e}");
            }
        }
        o
    }
}

impl Finding {
    /// The alerts it cites, each with its own code beside its id: `a-7 (SEC3007)`.
    pub fn cited(&self) -> String {
        self.alert_ids
            .iter()
            .enumerate()
            .map(|(i, id)| match self.codes.get(i).cloned().flatten() {
                Some(code) => format!("{id} ({code})"),
                None => id.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
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
    /// Inbound unless the log says otherwise.
    pub direction: Direction,
    /// What the firewall did, whatever word the log used for it.
    pub action: Option<Decision>,
    /// The rule that matched, when the log says (a rule column, or "matched rule 300").
    pub rule: Option<String>,
    pub user: Option<String>,
    /// The row's message or reason.
    pub message: String,
    /// The row as given, for evidence.
    pub raw: String,
}

impl LogRow {
    /// The packet the row is about, as far as the log tells.
    pub fn packet(&self) -> Packet {
        Packet {
            direction: Some(self.direction),
            source: self.source.clone(),
            destination: self.destination.clone(),
            port: self.port,
            protocol: self.protocol.clone(),
        }
    }
}

/// One firewall rule: a row of a rules table or a security-group rule of the lab.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FirewallRule {
    pub id: String,
    pub priority: Option<i64>,
    pub direction: Direction,
    pub action: Decision,
    pub source: String,
    pub destination: String,
    /// `any`, a port, a range `from-to`, or a list of them.
    pub ports: String,
    pub protocol: String,
    pub raw: String,
}

/// A table as read: its headers, and each row's line, cells and text.
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<(usize, Vec<String>, String)>,
}

/// A table: Markdown (`| a | b |` with a `|---|` line) or CSV (a header row, commas;
/// quoted cells may hold commas, quotes and line breaks, as RFC 4180 has them).
pub fn parse_table(text: &str) -> Result<Table, InputError> {
    let bad = |position: usize, message: String| InputError { what: "line", position, message };
    let lines: Vec<(usize, &str)> = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty()).collect();
    let Some(&(header_at, header)) = lines.first() else {
        return Err(bad(1, "empty table".into()));
    };
    let mut table = Table { headers: vec![], rows: vec![] };
    if header.starts_with('|') {
        let split = |l: &str| -> Vec<String> {
            l.trim_matches('|').split('|').map(|c| c.trim().replace("\\|", "|").to_string()).collect()
        };
        table.headers = split(header);
        for &(at, line) in &lines[1..] {
            if line.trim_matches(|c| c == '|' || c == '-' || c == ':' || c == ' ').is_empty() {
                continue;
            }
            if !line.starts_with('|') {
                return Err(bad(at, "a Markdown table row starts with |".into()));
            }
            table.rows.push((at, split(line), line.to_string()));
        }
    } else {
        let mut reader =
            csv::ReaderBuilder::new().has_headers(false).flexible(true).trim(csv::Trim::All).from_reader(text.as_bytes());
        let all_lines: Vec<&str> = text.lines().collect();
        for record in reader.records() {
            let record = record.map_err(|e| bad(e.position().map_or(1, |p| p.line() as usize), format!("cannot be read as CSV: {e}")))?;
            if record.iter().all(str::is_empty) {
                continue;
            }
            let at = record.position().map_or(1, |p| p.line() as usize);
            let cells: Vec<String> = record.iter().map(str::to_string).collect();
            if table.headers.is_empty() {
                table.headers = cells;
            } else {
                table.rows.push((at, cells, all_lines.get(at - 1).map_or_else(String::new, |l| l.trim().to_string())));
            }
        }
    }
    for (at, cells, _) in &table.rows {
        if cells.len() != table.headers.len() {
            return Err(bad(
                *at,
                format!("{} cells, but the header (line {header_at}) names {} columns", cells.len(), table.headers.len()),
            ));
        }
    }
    if table.rows.is_empty() {
        return Err(bad(header_at, "a header but no rows".into()));
    }
    Ok(table)
}

/// Which column of a table holds what; unknown headers are listed. A column named twice
/// (`Source` and `Src IP`) is an error: which one to read would be a guess.
fn columns_of(table: &Table, rules: bool) -> Result<(BTreeMap<Column, usize>, Vec<String>), InputError> {
    let mut at = BTreeMap::new();
    let mut unknown = Vec::new();
    for (i, h) in table.headers.iter().enumerate() {
        match columns::column(h, rules) {
            Some(Column::Ignored) => {}
            Some(c) => {
                if let Some(first) = at.insert(c, i) {
                    return Err(InputError {
                        what: "line",
                        position: 1,
                        message: format!("columns '{}' and '{h}' both name the {c:?} column: keep one", table.headers[first]),
                    });
                }
            }
            None => unknown.push(h.clone()),
        }
    }
    Ok((at, unknown))
}

fn cell_of(cells: &[String], at: &BTreeMap<Column, usize>, c: Column) -> Option<String> {
    at.get(&c).map(|&i| cells[i].trim()).filter(|v| !v.is_empty() && *v != "-" && !v.eq_ignore_ascii_case("n/a")).map(str::to_string)
}

/// The rule a free-text reason names: "Matched rule 300", "rule=allow-web".
fn rule_in_text(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let at = lower.find("rule")?;
    let rest = text[at + 4..].trim_start_matches(|c: char| c == ' ' || c == ':' || c == '=' || c == '#');
    let id: String = rest.chars().take_while(|c| !c.is_whitespace() && !matches!(c, ',' | ';' | ')' | '.')).collect();
    (!id.is_empty()).then_some(id)
}

/// An action cell: one of the decision words, or an error naming the line.
fn decision_of(word: &str, position: usize) -> Result<Decision, InputError> {
    Decision::from_word(word).ok_or_else(|| InputError {
        what: "line",
        position,
        message: format!(
            "action '{word}' is not one cis knows: expected allow or deny (Allow, Allowed, Permit, Accept; Deny, Denied, Block, Drop, Reject)"
        ),
    })
}

/// Security logs: a table, or flow-log lines (the default format or the lab's), and the
/// warnings for columns nobody reads.
pub fn parse_logs(text: &str) -> Result<(Vec<LogRow>, Vec<String>), InputError> {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default().trim();
    if first.starts_with('|') || first.contains(',') {
        let table = parse_table(text)?;
        let (at, unknown) = columns_of(&table, false)?;
        let warnings = unknown
            .iter()
            .map(|h| format!("column '{h}' is not one cis reads in a log; it is left out (known: {})", columns::known(false)))
            .collect();
        let rows = table
            .rows
            .iter()
            .map(|(line, cells, raw)| {
                let get = |c| cell_of(cells, &at, c);
                let port = match get(Column::Port) {
                    Some(p) => Some(p.parse::<u16>().map_err(|_| InputError {
                        what: "line",
                        position: *line,
                        message: format!("port '{p}' is not a port number"),
                    })?),
                    None => None,
                };
                let action = get(Column::Action).map(|a| decision_of(&a, *line)).transpose()?;
                let message = get(Column::Message).unwrap_or_default();
                Ok(LogRow {
                    position: *line,
                    time: get(Column::Time),
                    source: get(Column::Source),
                    destination: get(Column::Destination),
                    port,
                    protocol: get(Column::Protocol).map(|p| firewall::protocol_word(&p)),
                    direction: match get(Column::Direction) {
                        Some(d) => Direction::from_word(&d).ok_or_else(|| InputError {
                            what: "line",
                            position: *line,
                            message: format!("direction '{d}': expected inbound or outbound"),
                        })?,
                        None => Direction::Inbound,
                    },
                    action,
                    rule: get(Column::Rule).or_else(|| rule_in_text(&message)),
                    user: get(Column::User),
                    message,
                    raw: raw.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok((rows, warnings));
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
            direction: match r.flow_direction {
                Some(crate::formats::flowlog::Direction::Egress) => Direction::Outbound,
                _ => Direction::Inbound,
            },
            action: r.action.map(|a| if a == crate::formats::flowlog::Action::Accept { Decision::Allow } else { Decision::Deny }),
            rule: None,
            user: None,
            message: String::new(),
            raw: line.to_string(),
        });
    }
    if rows.is_empty() {
        return Err(InputError { what: "line", position: 1, message: "no log rows".into() });
    }
    Ok((rows, Vec::new()))
}

/// A rules table: columns id, action, source, destination, port(s), protocol, and
/// optionally priority and direction (inbound when absent). Every column must be one cis
/// knows: a source column it did not recognise would otherwise be read as `any`, and a
/// proposal built on that would be wider than the rule it replaces.
pub fn parse_rules(text: &str) -> Result<Vec<FirewallRule>, InputError> {
    let table = parse_table(text)?;
    let (at, unknown) = columns_of(&table, true)?;
    if let Some(h) = unknown.first() {
        return Err(InputError {
            what: "line",
            position: 1,
            message: format!("column '{h}' is not one cis knows in a rules table: rename it to one of {}", columns::known(true)),
        });
    }
    if !at.contains_key(&Column::Action) {
        return Err(InputError { what: "line", position: 1, message: "a rules table needs an action column (Allow or Deny)".into() });
    }
    table
        .rows
        .iter()
        .map(|(line, cells, raw)| {
            let bad = |message: String| InputError { what: "line", position: *line, message };
            let get = |c| cell_of(cells, &at, c);
            let action = get(Column::Action).ok_or_else(|| bad("no action: write Allow or Deny".into()))?;
            let action = decision_of(&action, *line)?;
            let priority = match get(Column::Priority) {
                Some(p) => Some(p.parse::<i64>().map_err(|_| bad(format!("priority '{p}' is not a number")))?),
                None => None,
            };
            let direction = match get(Column::Direction) {
                Some(d) => Direction::from_word(&d).ok_or_else(|| bad(format!("direction '{d}': expected inbound or outbound")))?,
                None => Direction::Inbound,
            };
            let ports = get(Column::Ports).unwrap_or_else(|| "any".into());
            if firewall::Ports::parse(&ports).is_none() {
                return Err(bad(format!("ports '{ports}': expected any, a port, a range such as 1-65535, or a list such as 80,443")));
            }
            let id = get(Column::Id).or_else(|| get(Column::Priority)).unwrap_or_else(|| format!("line-{line}"));
            Ok(FirewallRule {
                id,
                priority,
                direction,
                action,
                source: get(Column::Source).unwrap_or_else(|| "any".into()),
                destination: get(Column::Destination).unwrap_or_else(|| "any".into()),
                ports,
                protocol: get(Column::Protocol).map_or_else(|| "any".into(), |p| firewall::protocol_word(&p)),
                raw: raw.clone(),
            })
        })
        .collect()
}

/// The lab's own firewall: its security groups' rules, from the ledger's specs.
pub fn rules_of_lab(graph: &crate::model::lab::LabGraph) -> Vec<FirewallRule> {
    let mut out = Vec::new();
    for spec in &graph.resources {
        let crate::model::lab::ResourceConfig::SecurityGroup { ingress, egress, .. } = &spec.config else { continue };
        for (direction, rules) in [(Direction::Inbound, ingress), (Direction::Outbound, egress)] {
            for (i, r) in rules.iter().enumerate() {
                // ICMP rules put the type and code where ports go: they are not ports.
                let ports = if r.protocol == "-1" || r.from_port < 0 || r.protocol == "icmp" || r.protocol == "1" || r.from_port > r.to_port {
                    "any".to_string()
                } else if r.from_port == r.to_port {
                    r.from_port.to_string()
                } else {
                    format!("{}-{}", r.from_port, r.to_port)
                };
                let (source, destination) =
                    if direction == Direction::Inbound { (r.cidr.clone(), "target".to_string()) } else { ("target".to_string(), r.cidr.clone()) };
                let protocol = if r.protocol == "-1" { "any".to_string() } else { r.protocol.clone() };
                out.push(FirewallRule {
                    id: format!("{}/{}-{}", spec.name, direction.name(), i + 1),
                    priority: None,
                    direction,
                    action: Decision::Allow,
                    raw: format!("{}: {} {protocol} {ports} {}", spec.name, direction.name(), r.cidr),
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
            origin: Origin::Lab,
            hint: None,
        });
    }
    let Ok(scenario) = crate::model::scenario::find(&record.scenario) else { return input };
    let action = if record.metrics.bytes_exfiltrated > 0 { Decision::Allow } else { Decision::Deny };
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
                    direction: Direction::Outbound,
                    action: Some(action),
                    rule: None,
                    user: None,
                    message: format!("{}: {} outbound", record.run_id, scenario.id),
                    raw: format!(
                        "{} {}: target -> {remote}:{port}/{} {}",
                        record.run_id,
                        scenario.id,
                        stream.protocol.name(),
                        action.name()
                    ),
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
