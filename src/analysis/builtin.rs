//! The built-in analyser: a deterministic rules engine, offline. It classifies each alert
//! by what it says (or by what its format says: a GuardDuty finding's type, a Security Hub
//! type namespace, an alarm's state), correlates alerts that tell one story (a source
//! denied on several ports and then let through, failed logins and then a success, many
//! failed logins, a detection and its containment), ranks them by the written order of
//! `Category`, and cites the alerts and lines it used. A finding's "why" quotes the words
//! of the alert that decided it and claims nothing the alert does not say.

use std::collections::{BTreeMap, BTreeSet};

use super::firewall::{Firewall, Matcher};
use super::{Alert, Category, Decision, Direction, Finding, FirewallRule, LogRow, Origin, RcaInput, RcaIssue, RcaReport, TriageReport};

const OUTAGE: &[&str] = &[
    "no space left",
    "disk full",
    "disk is full",
    "filesystem full",
    "file system full",
    "enospc",
    "failed to start",
    "failed to restart",
    "service unavailable",
    "is down",
    "went down",
    "out of memory",
    "oom-kill",
    "oomkill",
    "oom killer",
    "crashloop",
    "cannot allocate memory",
    "health check failed",
    "outage",
    "not responding",
    "unreachable",
    "status check failed",
    "5xx",
];
const ATTACK: &[&str] = &[
    "exfiltrat",
    "reverse shell",
    "malware",
    "ransomware",
    "command and control",
    "c2 beacon",
    "beaconing",
    "privilege escalation",
    "sql injection",
    "suspicious process",
    "cryptominer",
    "port scan succeeded",
    "lateral movement",
    "webshell",
    "web shell",
    "backdoor",
    "trojan",
    "compromised",
    "credential dumping",
    "mimikatz",
    "credential theft",
];
const DOS: &[&str] =
    &["ddos", "denial of service", "dos attack", "syn flood", "udp flood", "http flood", "rate limit", "rate-limit", "too many requests"];
/// Words saying traffic is being held back, for the denial-of-service "why".
const HELD_BACK: &[&str] = &["blocked", "blocking", "dropped", "dropping", "rate limited", "rate-limited", "throttl", "mitigat"];
const BRUTE: &[&str] = &[
    "brute force",
    "brute-force",
    "bruteforce",
    "account locked",
    "locked out",
    "lockout",
    "account lock",
    "too many failed",
    "repeated failed",
    "multiple failed",
    "failed login attempts",
    "failed logon attempts",
    "password spray",
    "credential stuffing",
    "sign-in failures",
    "login failures",
    "logon failures",
    "authentication failures",
];
/// Words of a brute force that worked.
const GOT_IN: &[&str] = &["succeeded", "successful login", "login successful", "logged in", "got in"];
const CHANGE_OBJECTS: &[&str] = &[
    "allowlist",
    "allow-list",
    "allow list",
    "allowed list",
    "whitelist",
    "safelist",
    "trusted list",
    "trusted hosts",
    "firewall rule",
    "inbound rule",
    "ingress rule",
    "security group",
    "sudoers",
    "admin group",
    "administrators group",
    "domain admins",
    "access list",
    "acl",
    "iam policy",
    "rule",
];
const CHANGE_VERBS: &[&str] =
    &["added", "created", "granted", "opened", "whitelisted", "allowlisted", "attached", "elevated", "promoted", "enabled", "modified", "changed", "updated", "inserted"];
const HYGIENE: &[&str] = &[
    "0.0.0.0/0",
    "allow any",
    "any/any",
    "weak cipher",
    "deprecated",
    "expired certificate",
    "certificate expires",
    "mfa disabled",
    "unencrypted",
    "public bucket",
    "password policy",
    "self-signed",
    "vulnerab",
    "cve-",
    "outdated",
    "misconfigur",
    "port scan",
    "phishing",
    "quarantined",
    "new country",
    "unfamiliar location",
];
/// Pairs of words that make a weakness wherever they stand: "certificate for X expires".
const HYGIENE_PAIRS: &[(&str, &str)] = &[("certificate", "expir"), ("password", "policy"), ("mfa", "disabled")];
const ROUTINE: &[&str] =
    &["error", "failed", "failure", "timeout", "timed out", "retry", "denied", "refused", "exception", "warning", "unauthorized", "invalid"];
const DENIED: &[&str] = &["denied", "blocked", "rejected", "drop", "scan"];
const ALLOWED: &[&str] = &["allowed", "accepted", "succeeded", "success", "established", "permitted"];
const FAILED_LOGIN: &[&str] =
    &["failed login", "failed password", "authentication failure", "invalid password", "login failed", "failed logon", "logon failure"];
/// Words (whole) that name security logging.
const LOGGING: &[&str] = &[
    "log", "logs", "logging", "logger", "audit", "auditd", "syslog", "rsyslog", "siem", "cloudtrail", "journald", "fluentd", "filebeat",
    "winlogbeat", "splunk", "auditing",
];
/// Words of logs being lost.
const LOG_LOSS: &[&str] = &[
    "is full",
    "partition full",
    "disk full",
    "no space",
    "failed to push",
    "failed to send",
    "failed to ship",
    "failed to forward",
    "failed to deliver",
    "failed to write",
    "failed to upload",
    "push failed",
    "send failed",
    "delivery failed",
    "dropped",
    "discarded",
    "stopped",
    "disabled",
    "deleted",
    "lost",
    "not received",
    "cannot write",
    "unable to send",
    "unable to write",
    "buffer overflow",
    "backlog",
    "cleared",
    "stoplogging",
    "deletetrail",
];
/// Words (whole, or phrases) that name a security component.
const SECURITY_COMPONENTS: &[&str] = &[
    "edr",
    "antivirus",
    "anti-virus",
    "endpoint protection",
    "defender",
    "crowdstrike",
    "falcon",
    "sentinelone",
    "osquery",
    "wazuh",
    "ossec",
    "auditd",
    "selinux",
    "apparmor",
    "ids",
    "ips",
    "suricata",
    "snort",
    "waf",
    "security agent",
    "clamav",
    "sysmon",
    "guardduty agent",
];
const CRASHED: &[&str] = &[
    "crash",
    "segfault",
    "segmentation fault",
    "core dumped",
    "terminated",
    "exited",
    "killed",
    "not running",
    "stopped",
    "disabled",
    "failed to start",
    "unresponsive",
    "offline",
];
const PRIVILEGED: &[&str] = &["root", "admin", "administrator", "superuser", "sysadmin", "secadmin"];

fn text_of(a: &Alert) -> String {
    format!("{} {}", a.message, a.code.as_deref().unwrap_or_default()).to_ascii_lowercase()
}

fn hit<'a>(text: &str, words: &[&'a str]) -> Option<&'a str> {
    words.iter().find(|w| text.contains(*w)).copied()
}

/// A word or phrase of `words` that stands whole in `text` (`ids` is not in `pids`).
fn whole<'a>(text: &str, words: &[&'a str]) -> Option<&'a str> {
    let tokens: Vec<&str> = text.split(|c: char| !c.is_ascii_alphanumeric() && c != '-').filter(|t| !t.is_empty()).collect();
    words.iter().copied().find(|w| {
        let parts: Vec<&str> = w.split(' ').collect();
        tokens.windows(parts.len()).any(|win| win == parts.as_slice())
    })
}

fn privileged(a: &Alert) -> Option<String> {
    if let Some(u) = a.user.as_deref() {
        let lower = u.to_ascii_lowercase();
        if PRIVILEGED.iter().any(|p| lower.contains(p)) {
            return Some(u.to_string());
        }
    }
    let t = a.message.to_ascii_lowercase();
    whole(&t, &["security admin", "admin", "administrator", "root", "sysadmin"]).map(|w| w.to_string())
}

/// The evidence line of an alert: where it was, and what it said.
pub fn evidence(a: &Alert) -> String {
    let mut s = format!("#{} {}", a.position, a.id);
    if let Some(t) = &a.timestamp {
        s.push_str(&format!(" {t}"));
    }
    if let Some(u) = &a.user {
        s.push_str(&format!(" user={u}"));
    }
    match (&a.source, &a.destination) {
        (Some(src), Some(dst)) => s.push_str(&format!(" {src} -> {dst}")),
        (Some(src), None) => s.push_str(&format!(" from {src}")),
        (None, Some(dst)) => s.push_str(&format!(" on {dst}")),
        (None, None) => {}
    }
    s.push_str(&format!(": {}", a.message));
    if let Some(c) = &a.code {
        s.push_str(&format!(" [{c}]"));
    }
    s
}

/// One alert on its own: its category and why, in the alert's own words.
fn classify(a: &Alert) -> (Category, String) {
    let t = text_of(a);
    let code = a.code.as_deref().unwrap_or_default();
    if code == "cis.detection" {
        return (Category::ActiveAttack, "the lab's detector flagged the instance's traffic".into());
    }
    if code == "cis.containment.isolated" {
        return (Category::ActiveAttack, "containment isolated the instance after a detection".into());
    }
    if let Some(c) = a.hint {
        let why = match a.origin {
            Origin::GuardDuty | Origin::SecurityHub => {
                let title = a.message.split_once(". ").map_or(a.message.as_str(), |(t, _)| t);
                format!("{} {code}: \"{}\"", a.origin.name(), title.trim_end_matches('.'))
            }
            Origin::CloudWatchAlarm if c == Category::Noise => "the alarm returned to OK".into(),
            Origin::CloudWatchAlarm => "the alarm has no data: its metric stopped arriving".into(),
            _ => format!("{} {code}", a.origin.name()),
        };
        return (c, why);
    }
    // Losing security logs comes before the outage words: "log partition is full".
    if let (Some(l), Some(w)) = (whole(&t, LOGGING), hit(&t, LOG_LOSS)) {
        if hit(&t, FAILED_LOGIN).is_none() {
            return (Category::SecurityLogging, format!("'{l}' and '{w}': security logs are not being kept or delivered"));
        }
    }
    // A security tool that stops comes before the outage words: "EDR agent failed to start".
    if let (Some(c), Some(w)) = (whole(&t, SECURITY_COMPONENTS), hit(&t, CRASHED)) {
        return (Category::SecurityComponent, format!("'{c}' and '{w}': a security component is not running"));
    }
    if let Some(w) = hit(&t, OUTAGE) {
        return (Category::Outage, format!("'{w}': a service is down or about to stop"));
    }
    if let Some(p) = nearly_full(&t) {
        return (Category::Outage, format!("'{p}% full': a volume about to fill, and what writes to it to stop"));
    }
    if let Some(w) = hit(&t, ATTACK) {
        return (Category::ActiveAttack, format!("'{w}': the alert reports an attack"));
    }
    if let Some(w) = hit(&t, BRUTE) {
        if let Some(g) = hit(&t, GOT_IN) {
            return (Category::ActiveAttack, format!("'{w}' and '{g}': a brute force that got in"));
        }
        return (Category::BruteForce, format!("'{w}': repeated failed logins, no success reported"));
    }
    if let Some(w) = hit(&t, DOS) {
        let held = match hit(&t, HELD_BACK) {
            Some(h) => format!("; it says traffic is {h}"),
            None => String::new(),
        };
        return (Category::DenialOfService, format!("'{w}': the alert reports a denial of service{held}"));
    }
    if let (Some(o), Some(v)) = (hit(&t, CHANGE_OBJECTS), whole(&t, CHANGE_VERBS).or_else(|| hit(&t, &["permanently"]))) {
        // "expires in 2 hours" is temporary; "no expiry" is not.
        let expires = t.contains("expir") && !["no expir", "without expir", "never expir", "not expir"].iter().any(|n| t.contains(n));
        let temporary = expires || t.contains("temporar") || t.contains(" until ");
        match privileged(a) {
            Some(who) if !temporary => {
                return (Category::PrivilegeChange, format!("'{o}' {v} by privileged {who}, with no expiry"));
            }
            _ => return (Category::Hygiene, format!("'{o}' {v}: an access change to review")),
        }
    }
    if let Some(w) = hit(&t, HYGIENE) {
        return (Category::Hygiene, format!("'{w}': a weakness; the alert reports no use of it"));
    }
    if let Some((a, b)) = HYGIENE_PAIRS.iter().find(|(a, b)| t.contains(a) && t.contains(b)) {
        return (Category::Hygiene, format!("'{a}' and '{b}': a weakness; the alert reports no use of it"));
    }
    if let Some(w) = hit(&t, ROUTINE) {
        if a.origin == Origin::CloudWatchAlarm {
            return (Category::RoutineError, format!("the alarm fired; '{w}'"));
        }
        return (Category::RoutineError, format!("'{w}': an error the alert ties to no harm"));
    }
    if a.origin == Origin::CloudWatchAlarm {
        return (Category::RoutineError, "the alarm fired; its name, description and reason say no more".into());
    }
    (Category::Noise, "nothing in it points to harm".into())
}

/// "95% full" and above: the percentage, when the text says a volume is nearly full.
fn nearly_full(t: &str) -> Option<u32> {
    let at = t.find("% full")?;
    let digits: String = t[..at].chars().rev().take_while(char::is_ascii_digit).collect::<Vec<_>>().into_iter().rev().collect();
    digits.parse::<u32>().ok().filter(|p| *p >= 90)
}

fn action_for(category: Category, alerts: &[&Alert]) -> String {
    let first = alerts[0];
    let host = first.destination.clone().unwrap_or_else(|| "the host".into());
    let t = text_of(first);
    match category {
        Category::Outage if t.contains("space") || t.contains("disk") || t.contains("enospc") || t.contains("full") => {
            format!("free space on {host} now (rotate and compress logs, clear caches, grow the volume), then find what filled it")
        }
        Category::Outage => {
            format!("restore {host}: restart the failing service and read its journal (`journalctl -u <unit>`), then fix why it failed")
        }
        Category::ActiveAttack => {
            let src = alerts.iter().find_map(|a| a.source.clone()).unwrap_or_else(|| "the source".into());
            format!("contain now: isolate {host} (`cis` containment or an isolation security group), block {src}, snapshot for forensics, then review what {src} reached")
        }
        Category::DenialOfService => {
            format!("confirm {host} still serves; keep or add filtering and rate limits upstream (AWS Shield, WAF rate rules), and scale if needed")
        }
        Category::SecurityLogging => format!(
            "restore logging on {host} now (free the log volume, fix the shipper or trail), then find what happened while it was blind"
        ),
        Category::PrivilegeChange => format!(
            "review the change with {}: give the entry an expiry or remove it, and require approval for permanent allow-list entries",
            first.user.as_deref().unwrap_or("its author")
        ),
        Category::BruteForce => {
            let src = alerts.iter().find_map(|a| a.source.clone().or_else(|| a.user.clone())).unwrap_or_else(|| "the source".into());
            format!("block or rate-limit {src}, check that no login from it succeeded, and require MFA on the account")
        }
        Category::SecurityComponent => {
            format!("restart the security component on {host} and find why it stopped; treat the host as unwatched until it runs")
        }
        Category::Hygiene => "schedule a fix: narrow the rule, renew or enable what is missing".into(),
        Category::RoutineError => "nothing now; watch for a rising rate".into(),
        Category::Noise => "nothing; consider suppressing it at the source".into(),
    }
}

/// One story told by alerts of one source or actor: at least `min_tries` that tried (a
/// `tried` word), and after the first of them one that got through (an allowed word, not
/// itself a try). The tries and the ones that got through, in input order.
fn tried_then_through(idx: &[usize], texts: &[String], tried: &[&str], min_tries: usize) -> Option<(Vec<usize>, Vec<usize>)> {
    let tries: Vec<usize> = idx.iter().copied().filter(|&i| hit(&texts[i], tried).is_some()).collect();
    let first = *tries.first()?;
    let through: Vec<usize> =
        idx.iter().copied().filter(|&i| i > first && hit(&texts[i], ALLOWED).is_some() && hit(&texts[i], tried).is_none()).collect();
    (tries.len() >= min_tries && !through.is_empty()).then_some((tries, through))
}

/// Failed logins enough to be a brute force on their own, with no success after them.
const MANY_FAILURES: usize = 5;

/// Triage of a batch: ranked findings, in the order of `Category`.
pub fn triage(alerts: &[Alert]) -> TriageReport {
    let mut used = vec![false; alerts.len()];
    let mut groups: Vec<(Category, Vec<usize>, String)> = Vec::new();

    let texts: Vec<String> = alerts.iter().map(text_of).collect();
    // Marks the alerts of a correlated story as told; returns them in input order.
    let claim = |used: &mut Vec<bool>, tries: &[usize], through: &[usize]| {
        let mut all: Vec<usize> = tries.iter().chain(through).copied().collect();
        all.sort();
        for &i in &all {
            used[i] = true;
        }
        all
    };

    // Correlation 1: a source denied (or scanning) and then let through.
    let mut by_source: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, a) in alerts.iter().enumerate().filter(|(_, a)| a.hint.is_none()) {
        if let Some(s) = a.source.as_deref() {
            by_source.entry(s).or_default().push(i);
        }
    }
    for (source, idx) in &by_source {
        if let Some((denied, allowed)) = tried_then_through(idx, &texts, DENIED, 2) {
            let why = format!(
                "{source} was denied {} times and then let through ({}): a probe that found a way in",
                denied.len(),
                allowed.iter().map(|&i| alerts[i].id.as_str()).collect::<Vec<_>>().join(", ")
            );
            groups.push((Category::ActiveAttack, claim(&mut used, &denied, &allowed), why));
        }
    }
    // Correlation 2: failed logins, then a success, from one source or for one user; or
    // many failed logins and no success.
    let mut by_actor: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, a) in alerts.iter().enumerate().filter(|(i, a)| !used[*i] && a.hint.is_none()) {
        if let Some(k) = a.source.clone().or_else(|| a.user.clone()) {
            by_actor.entry(k).or_default().push(i);
        }
    }
    for (actor, idx) in &by_actor {
        if let Some((failed, success)) = tried_then_through(idx, &texts, FAILED_LOGIN, 3) {
            let why = format!("{} failed logins from {actor} and then a success: a brute force that worked", failed.len());
            groups.push((Category::ActiveAttack, claim(&mut used, &failed, &success), why));
            continue;
        }
        let failed: Vec<usize> = idx.iter().copied().filter(|&i| hit(&texts[i], FAILED_LOGIN).is_some()).collect();
        if failed.len() >= MANY_FAILURES {
            let why = format!("{} failed logins from {actor}, none reported successful", failed.len());
            groups.push((Category::BruteForce, claim(&mut used, &failed, &[]), why));
        }
    }
    // Correlation 3: a detection and the containment of the same instance.
    for (i, a) in alerts.iter().enumerate() {
        if used[i] || a.code.as_deref() != Some("cis.detection") {
            continue;
        }
        let mut all = vec![i];
        for (j, b) in alerts.iter().enumerate() {
            if !used[j] && j != i && b.code.as_deref().is_some_and(|c| c.starts_with("cis.containment")) && b.destination == a.destination {
                all.push(j);
            }
        }
        let why = format!("the lab's detector flagged {} and containment answered", a.destination.as_deref().unwrap_or("an instance"));
        for &k in &all {
            used[k] = true;
        }
        groups.push((Category::ActiveAttack, all, why));
    }
    // The rest one by one; repeats of the same routine message or noise go together.
    let mut repeats: BTreeMap<(Category, String), Vec<usize>> = BTreeMap::new();
    for (i, a) in alerts.iter().enumerate().filter(|(i, _)| !used[*i]) {
        let (category, why) = classify(a);
        if matches!(category, Category::RoutineError | Category::Noise) {
            repeats.entry((category, format!("{}|{}", a.code.as_deref().unwrap_or_default(), a.message))).or_default().push(i);
        } else {
            groups.push((category, vec![i], why));
        }
    }
    for ((category, _), idx) in repeats {
        let (_, why) = classify(&alerts[idx[0]]);
        let why = if idx.len() > 1 { format!("{why}; {} times", idx.len()) } else { why };
        groups.push((category, idx, why));
    }
    // Impact first; within it, the larger story, then the earlier.
    groups.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.len().cmp(&a.1.len())).then(a.1[0].cmp(&b.1[0])));
    let findings = groups
        .into_iter()
        .enumerate()
        .map(|(n, (category, idx, why))| {
            let members: Vec<&Alert> = idx.iter().map(|&i| &alerts[i]).collect();
            Finding {
                rank: n + 1,
                alert_ids: members.iter().map(|a| a.id.clone()).collect(),
                codes: members.iter().map(|a| a.code.clone()).collect(),
                category,
                severity: category.severity(),
                critical: category.severity() == super::Severity::Critical,
                why: format!("{}: {why}", category.name()),
                action: action_for(category, &members),
                evidence: members.iter().map(|a| evidence(a)).collect(),
            }
        })
        .collect();
    TriageReport { format: "cis-triage".into(), version: 2, analyser: "builtin".into(), alerts: alerts.len(), findings }
}

/// Words of a reason that name a scan or a probe.
const SCAN: &[&str] = &["scan", "probe", "probing", "sweep", "recon", "enumerat"];

fn names_a_scan(row: &LogRow) -> bool {
    hit(&row.message.to_ascii_lowercase(), SCAN).is_some()
}

/// How a rule's reach reads to a person: "any source on all 65,535 ports".
fn reach(r: &FirewallRule, m: &Matcher) -> String {
    let sources = if m.source.is_any() { "any source".to_string() } else { format!("sources {}", r.source) };
    let ports = match (m.ports.is_any(), m.protocols.is_any()) {
        (true, true) => "all 65,535 ports, any protocol".to_string(),
        (true, false) => format!("all 65,535 {} ports", r.protocol),
        (false, _) => format!("port(s) {} {}", r.ports, r.protocol),
    };
    let to = if m.destination.is_any() { "any destination".to_string() } else { r.destination.clone() };
    format!("{sources} on {ports} to {to}")
}

/// Root-cause analysis of logs against rules (and a lab run's detections).
pub fn rca(input: &RcaInput) -> RcaReport {
    let fw = Firewall::new(&input.rules);
    let mut issues = Vec::new();
    let mut blamed: Vec<String> = Vec::new();

    // A source denied (or flagged as scanning) and then let in: which rule let it?
    let mut by_source: BTreeMap<&str, Vec<&LogRow>> = BTreeMap::new();
    for row in input.logs.iter().filter(|r| r.direction == Direction::Inbound) {
        if let Some(s) = row.source.as_deref() {
            by_source.entry(s).or_default().push(row);
        }
    }
    for (source, rows) in &by_source {
        let flagged: Vec<&LogRow> = rows.iter().copied().filter(|r| r.action == Some(Decision::Deny) || names_a_scan(r)).collect();
        let Some(first) = flagged.first().map(|r| r.position) else { continue };
        let allowed: Vec<&LogRow> = rows.iter().copied().filter(|r| r.position > first && r.action == Some(Decision::Allow)).collect();
        if allowed.is_empty() {
            continue;
        }
        let denied_ports: BTreeSet<u16> = flagged.iter().filter(|r| r.action == Some(Decision::Deny)).filter_map(|r| r.port).collect();
        let scan = flagged.iter().any(|r| names_a_scan(r)) || denied_ports.len() >= 3;
        let culprit = allowed.iter().find_map(|row| {
            row.rule
                .as_deref()
                .and_then(|named| {
                    input.rules.iter().position(|r| r.id == named && r.action == Decision::Allow && Matcher::of(r).is_some())
                })
                .or_else(|| fw.deciding(&row.packet(), Some(Decision::Allow)))
        });
        let through: Vec<String> = allowed.iter().filter_map(|r| r.port).collect::<BTreeSet<_>>().iter().map(u16::to_string).collect();
        let through = if through.is_empty() { String::new() } else { format!(" on port(s) {}", through.join(", ")) };
        let denied = flagged.iter().filter(|r| r.action == Some(Decision::Deny)).count();
        let mut how_flagged = match (denied, denied_ports.is_empty()) {
            (0, _) => format!("was flagged {} time(s)", flagged.len()),
            (n, true) => format!("was denied {n} time(s)"),
            (_, false) => format!("was denied on port(s) {}", denied_ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")),
        };
        let mut reasons: Vec<&str> = Vec::new();
        for m in flagged.iter().map(|r| r.message.as_str()).filter(|m| !m.is_empty()) {
            if !reasons.contains(&m) {
                reasons.push(m);
            }
        }
        if !reasons.is_empty() {
            how_flagged.push_str(&format!(" ({})", reasons.iter().map(|m| format!("\"{m}\"")).collect::<Vec<_>>().join(", ")));
        }
        let (root_cause, rule_id) = match culprit {
            Some(i) => {
                let r = &input.rules[i];
                // Every rule that can decide has readable ports (`Firewall` skips the rest).
                let m = Matcher::of(r).expect("a deciding rule's ports were read");
                let what = if m.wide_open() {
                    format!("rule {} is wide open: it admits {}", r.id, reach(r, &m))
                } else {
                    format!("rule {} admits {}, which includes {source}", r.id, reach(r, &m))
                };
                let denies: Vec<&str> = fw
                    .order()
                    .take_while(|&j| j != i)
                    .filter(|&j| input.rules[j].action == Decision::Deny && input.rules[j].direction == Direction::Inbound)
                    .flat_map(|j| input.rules[j].ports.split(',').map(str::trim))
                    .collect();
                let missed = if denies.is_empty() {
                    String::new()
                } else {
                    format!("; the deny rules before it cover only port(s) {}, and the traffic went where they do not", denies.join(", "))
                };
                (format!("{what}{missed}"), Some(r.id.clone()))
            }
            None if input.rules.is_empty() => ("no rules were given: give the firewall rules with --rules to find the one that let it in".into(), None),
            None => (
                format!("no rule given admits {source}'s allowed traffic: the rules given may not be the ones in force"),
                None,
            ),
        };
        if let Some(id) = &rule_id {
            blamed.push(id.clone());
        }
        let mut evidence: Vec<String> = flagged.iter().chain(&allowed).map(|r| format!("line {}: {}", r.position, r.raw)).collect();
        evidence.sort_by_key(|e| e.split(':').next().and_then(|l| l.trim_start_matches("line ").parse::<usize>().ok()));
        evidence.dedup();
        if let Some(i) = culprit {
            evidence.push(format!("rule: {}", input.rules[i].raw));
        }
        let (title, category, issue) = if scan {
            (
                format!("{source} scanned, was denied, then got in{through}"),
                Category::ActiveAttack,
                format!("{source} {how_flagged} and was then allowed{through}: a scan that found an opening"),
            )
        } else {
            (
                format!("{source} was denied, then allowed{through}"),
                Category::Hygiene,
                format!("{source} {how_flagged} and was then allowed{through}: check that the access it got is meant"),
            )
        };
        issues.push(RcaIssue {
            title,
            category,
            issue,
            root_cause,
            rule: rule_id,
            proposed_rules: culprit.map(|i| narrower_rules(input, &fw, i, source)).unwrap_or_default(),
            evidence,
        });
    }

    // A detection whose traffic an allow-any outbound rule let out.
    let egress_any: Vec<&FirewallRule> = input
        .rules
        .iter()
        .filter(|r| {
            Matcher::of(r).is_some_and(|m| {
                r.direction == Direction::Outbound && r.action == Decision::Allow && m.destination.is_any() && m.ports.is_any()
            })
        })
        .collect();
    if let (Some(rule), false) = (egress_any.first(), input.detections.is_empty()) {
        blamed.push(rule.id.clone());
        // What left, by port: a port-only rule would not stop what used 443.
        let out: BTreeSet<(u16, String)> = input
            .logs
            .iter()
            .filter(|r| r.action == Some(Decision::Allow))
            .filter_map(|r| r.port.map(|p| (p, r.destination.clone().unwrap_or_default())))
            .collect();
        let ports: BTreeSet<u16> = out.iter().map(|(p, _)| *p).collect();
        let used = if out.is_empty() {
            String::new()
        } else {
            format!(" (to {})", out.iter().map(|(p, d)| format!("{d}:{p}")).collect::<Vec<_>>().join(", "))
        };
        let web_only = !ports.is_empty() && ports.iter().all(|p| *p == 443);
        issues.push(RcaIssue {
            title: format!("{} detection(s) of traffic that rule {} let leave", input.detections.len(), rule.id),
            category: Category::ActiveAttack,
            issue: format!(
                "the detector flagged {} sending data out{used}; nothing stopped it before containment",
                input.detections.iter().filter_map(|d| d.destination.clone()).next().unwrap_or_else(|| "the target".into())
            ),
            root_cause: if web_only {
                format!(
                    "rule {} allows all outbound traffic to 0.0.0.0/0; the data left over HTTPS, which a port rule would still allow: restrict destinations (prefix lists, VPC endpoints, an egress proxy)",
                    rule.id
                )
            } else {
                format!("rule {} allows all outbound traffic to 0.0.0.0/0 on every port, so the exfiltration needed no opening", rule.id)
            },
            rule: Some(rule.id.clone()),
            proposed_rules: vec![
                FirewallRule {
                    id: "egress-https".into(),
                    priority: Some(100),
                    direction: Direction::Outbound,
                    action: Decision::Allow,
                    source: "target".into(),
                    destination: "the package mirrors and APIs the server needs (prefix lists or VPC endpoints)".into(),
                    ports: "443".into(),
                    protocol: "tcp".into(),
                    raw: String::new(),
                },
                FirewallRule {
                    id: "egress-default".into(),
                    priority: Some(1000),
                    direction: Direction::Outbound,
                    action: Decision::Deny,
                    source: "target".into(),
                    destination: "0.0.0.0/0".into(),
                    ports: "any".into(),
                    protocol: "any".into(),
                    raw: String::new(),
                },
            ],
            evidence: input
                .detections
                .iter()
                .map(evidence)
                .chain(input.logs.iter().filter(|r| r.action == Some(Decision::Allow)).map(|r| format!("line {}: {}", r.position, r.raw)))
                .chain(std::iter::once(format!("rule: {}", rule.raw)))
                .collect(),
        });
    }
    // Allow-any rules nothing in this input exploited: hygiene.
    for r in input.rules.iter().filter(|r| allow_any(r) && !blamed.contains(&r.id)) {
        issues.push(RcaIssue {
            title: format!("rule {} allows {} traffic from {} to {} on every port", r.id, r.direction.name(), r.source, r.destination),
            category: Category::Hygiene,
            issue: "nothing in these logs used it, but it makes every other rule moot".into(),
            root_cause: format!("rule {} is allow-any", r.id),
            rule: Some(r.id.clone()),
            proposed_rules: vec![],
            evidence: vec![format!("rule: {}", r.raw)],
        });
    }
    RcaReport { format: "cis-rca".into(), version: 1, analyser: "builtin".into(), issues }
}

fn allow_any(r: &FirewallRule) -> bool {
    Matcher::of(r).is_some_and(|m| {
        r.action == Decision::Allow && m.ports.is_any() && m.protocols.is_any() && (m.source.is_any() || m.destination.is_any())
    })
}

/// The rule set to put in place of the rules of the culprit's direction, in the order a
/// firewall reads it: the offender denied first; the other rules as they are; in the
/// culprit's place, one allow per port and protocol the other sources it admitted used
/// (the sources by name, except on a public web port that more than three used, where a
/// rule open to all stays open to all), each within the culprit's own reach; and a default
/// deny last. A deny never widens, removing an allow never widens, and each new allow sits
/// where the culprit sat and admits a part of what it admitted: so the proposal is never
/// wider than the rules it replaces (`firewall::wider` checks it in the tests).
fn narrower_rules(input: &RcaInput, fw: &Firewall, culprit: usize, offender: &str) -> Vec<FirewallRule> {
    let c = &input.rules[culprit];
    let Some(cm) = Matcher::of(c) else { return Vec::new() };
    let mut used: BTreeMap<(Option<u16>, Option<String>), BTreeSet<String>> = BTreeMap::new();
    for row in input.logs.iter().filter(|r| r.direction == c.direction && r.action == Some(Decision::Allow)) {
        let Some(src) = row.source.clone().filter(|s| s != offender) else { continue };
        let by = row
            .rule
            .as_deref()
            .and_then(|named| input.rules.iter().position(|r| r.id == named))
            .or_else(|| fw.deciding(&row.packet(), Some(Decision::Allow)));
        if by == Some(culprit) {
            used.entry((row.port, row.protocol.clone())).or_default().insert(src);
        }
    }
    let rule = |id: String, action, source: String, destination: String, ports: String, protocol: String| FirewallRule {
        id,
        priority: None,
        direction: c.direction,
        action,
        source,
        destination,
        ports,
        protocol,
        raw: String::new(),
    };
    let mut out = vec![rule(format!("deny-{offender}"), Decision::Deny, offender.to_string(), c.destination.clone(), "any".into(), "any".into())];
    for i in fw.order().filter(|&i| input.rules[i].direction == c.direction) {
        if i != culprit {
            out.push(input.rules[i].clone());
            continue;
        }
        for ((port, protocol), sources) in &used {
            let protocol = match protocol {
                Some(p) if cm.protocols.is_any() || cm.protocols.contains(p) => p.clone(),
                _ => c.protocol.clone(),
            };
            let public_web = port.is_some_and(|p| matches!(p, 80 | 443)) && sources.len() > 3 && cm.source.is_any();
            let source = if public_web { c.source.clone() } else { sources.iter().cloned().collect::<Vec<_>>().join(", ") };
            let ports = port.map_or_else(|| c.ports.clone(), |p| p.to_string());
            let id = match port {
                Some(p) => format!("allow-{protocol}-{p}"),
                None => format!("{}-narrowed", c.id),
            };
            out.push(rule(id, Decision::Allow, source, c.destination.clone(), ports, protocol));
        }
    }
    let ends_in_deny = out.last().and_then(Matcher::of).is_some_and(|m| {
        m.decision == Decision::Deny && m.source.is_any() && m.destination.is_any() && m.ports.is_any() && m.protocols.is_any()
    });
    if !ends_in_deny {
        out.push(rule("default-deny".into(), Decision::Deny, "0.0.0.0/0".into(), "any".into(), "any".into(), "any".into()));
    }
    for (k, r) in out.iter_mut().enumerate() {
        r.priority = Some(10 * (k as i64 + 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::firewall::{wider, Packet};
    use super::*;
    use crate::base::rng::Rng;

    fn rule(id: &str, priority: Option<i64>, action: Decision, source: &str, destination: &str, ports: &str, protocol: &str) -> FirewallRule {
        FirewallRule {
            id: id.into(),
            priority,
            direction: Direction::Inbound,
            action,
            source: source.into(),
            destination: destination.into(),
            ports: ports.into(),
            protocol: protocol.into(),
            raw: id.into(),
        }
    }

    fn row(position: usize, source: &str, port: Option<u16>, action: Decision, message: &str) -> LogRow {
        LogRow {
            position,
            time: None,
            source: Some(source.into()),
            destination: Some("10.0.1.10".into()),
            port,
            protocol: Some("tcp".into()),
            direction: Direction::Inbound,
            action: Some(action),
            rule: None,
            user: None,
            message: message.into(),
            raw: format!("{source} {port:?} {action}"),
        }
    }

    #[test]
    fn the_firewall_decides_by_order_first_match_any_blocks_ranges_lists_and_protocols() {
        let rules = vec![
            rule("late", None, Decision::Allow, "any", "any", "any", "any"),
            rule("ssh-in", Some(10), Decision::Allow, "10.0.2.0/24", "10.0.1.10", "22", "6"),
            rule("no-ssh", Some(20), Decision::Deny, "Any", "10.0.1.10", "22,3389", "TCP"),
            rule("high", Some(30), Decision::Deny, "198.51.100.1-198.51.100.9", "any", "1000-2000", "udp"),
        ];
        let fw = Firewall::new(&rules);
        let p = |src: &str, port: u16, proto: &str| Packet {
            direction: Some(Direction::Inbound),
            source: Some(src.into()),
            destination: Some("10.0.1.10".into()),
            port: Some(port),
            protocol: Some(proto.into()),
        };
        assert_eq!(fw.deciding(&p("10.0.2.7", 22, "tcp"), None), Some(1), "priority before the order given");
        assert_eq!(fw.deciding(&p("10.0.3.7", 22, "tcp"), None), Some(2));
        assert_eq!(fw.deciding(&p("10.0.3.7", 3389, "tcp"), None), Some(2), "a list of ports");
        assert_eq!(fw.deciding(&p("198.51.100.5", 1500, "udp"), None), Some(3), "an address range and a port range");
        assert_eq!(fw.deciding(&p("198.51.100.5", 1500, "tcp"), None), Some(0), "the protocol differs");
        assert_eq!(fw.deciding(&p("10.0.2.7", 22, "17"), None), Some(0), "17 is udp, which neither ssh rule covers");
        // A log without a port: only a rule that did what the log saw can have decided.
        let portless = Packet { port: None, ..p("10.0.3.7", 0, "tcp") };
        assert_eq!(fw.deciding(&portless, Some(Decision::Allow)), Some(0));
        assert_eq!(fw.deciding(&portless, Some(Decision::Deny)), Some(2));
        assert_eq!(fw.decide(&p("203.0.113.1", 80, "tcp")), Decision::Allow);
        assert_eq!(Firewall::new(&rules[1..]).decide(&p("203.0.113.1", 80, "tcp")), Decision::Deny, "no match is a deny");
    }

    #[test]
    fn a_portless_log_of_a_scan_then_an_allow_blames_the_wide_open_rule_and_proposes_no_wider() {
        let rules = vec![
            rule("100", None, Decision::Allow, "10.0.2.0/24", "10.0.1.10", "443", "tcp"),
            rule("200", None, Decision::Deny, "Any", "10.0.1.10", "22", "tcp"),
            rule("300", None, Decision::Allow, "Any", "Any", "1-65535", "Any"),
        ];
        let logs = vec![
            row(1, "10.0.2.15", None, Decision::Allow, "Established Connection"),
            row(2, "203.0.113.45", None, Decision::Deny, "Suspicious Port Scan"),
            row(3, "203.0.113.45", None, Decision::Allow, "Data Transfer"),
            row(4, "198.51.100.3", None, Decision::Allow, "Established Connection"),
        ];
        let input = RcaInput { logs, rules: rules.clone(), detections: vec![] };
        let report = rca(&input);
        let issue = &report.issues[0];
        assert_eq!(issue.rule.as_deref(), Some("300"));
        assert_eq!(issue.category, Category::ActiveAttack);
        assert!(issue.root_cause.contains("admits any source on all 65,535 ports"), "{}", issue.root_cause);
        let p = &issue.proposed_rules;
        assert_eq!((p[0].action, p[0].source.as_str()), (Decision::Deny, "203.0.113.45"), "{p:?}");
        assert_eq!(p.last().unwrap().id, "default-deny");
        // The other source the wide rule admitted keeps its access, by name, on the same
        // ports; nothing else does.
        assert!(p.iter().any(|r| r.action == Decision::Allow && r.source == "198.51.100.3" && r.ports == "1-65535"), "{p:?}");
        assert!(!p.iter().any(|r| r.id == "300"));
        assert_eq!(wider(p, &rules, &["203.0.113.45".into(), "198.51.100.3".into()]), None);
        // A rule that does not surely match, but denied what the log saw allowed, did not
        // decide: without rule 300 nothing explains the allow, and nothing is blamed.
        let report = rca(&RcaInput { rules: rules[..2].to_vec(), ..input });
        assert_eq!(report.issues[0].rule, None);
        assert!(report.issues[0].proposed_rules.is_empty());
    }

    fn pick<'a>(rng: &mut Rng, xs: &[&'a str]) -> &'a str {
        xs[rng.below(xs.len() as u64) as usize]
    }

    /// Property: over generated rule sets and logs that follow them, no proposal allows a
    /// packet the rules it replaces deny.
    #[test]
    fn no_proposal_is_ever_wider_than_the_rules_it_replaces() {
        let sources = ["any", "Any", "10.0.0.0/24", "10.0.0.5", "203.0.113.0/28", "198.51.100.7", "0.0.0.0/0", "10.0.0.1-10.0.0.9"];
        let destinations = ["any", "10.1.1.10", "10.1.1.0/24", "Any"];
        let ports = ["any", "22", "80", "443", "1-65535", "1000-2000", "22,80", "8000-8100", "0-65535", "443, 8443"];
        let protocols = ["any", "tcp", "udp", "6", "TCP"];
        let clients = ["203.0.113.5", "10.0.0.5", "10.0.0.7", "198.51.100.7", "192.0.2.9", "10.0.0.200", "203.0.113.20"];
        let mut proposals = 0;
        let mut wide_open_blamed = 0;
        // 100 rule sets in CI; `.ci/soak` tries 400.
        let seeds: u64 = std::env::var("CIS_BUILTIN_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
        for seed in 0..seeds {
            let mut rng = Rng::seeded(seed);
            let n = 1 + rng.below(6) as usize;
            let rules: Vec<FirewallRule> = (0..n)
                .map(|i| {
                    let action = if rng.below(2) == 0 { Decision::Allow } else { Decision::Deny };
                    let priority = (rng.below(3) > 0).then(|| rng.below(50) as i64);
                    rule(
                        &format!("r{i}"),
                        priority,
                        action,
                        pick(&mut rng, &sources),
                        pick(&mut rng, &destinations),
                        pick(&mut rng, &ports),
                        pick(&mut rng, &protocols),
                    )
                })
                .collect();
            let fw = Firewall::new(&rules);
            let mut logs = Vec::new();
            for k in 0..(4 + rng.below(20)) {
                let src = pick(&mut rng, &clients);
                let port = [22u16, 80, 443, 1500, 8080, 3389, 8443][rng.below(7) as usize];
                let protocol = if rng.below(5) == 0 { "udp" } else { "tcp" };
                let packet = Packet {
                    direction: Some(Direction::Inbound),
                    source: Some(src.into()),
                    destination: Some("10.1.1.10".into()),
                    port: Some(port),
                    protocol: Some(protocol.into()),
                };
                let mut r = row(k as usize + 1, src, Some(port), fw.decide(&packet), "");
                r.destination = Some("10.1.1.10".into());
                r.protocol = Some(protocol.into());
                // Some logs have no port column, some flag a scan in the reason.
                if seed % 3 == 0 {
                    r.port = None;
                }
                if rng.below(6) == 0 {
                    r.message = "Port scan detected".into();
                }
                logs.push(r);
            }
            let named: Vec<String> = clients.iter().map(|c| c.to_string()).chain(["10.1.1.10".to_string()]).collect();
            let report = rca(&RcaInput { logs, rules: rules.clone(), detections: vec![] });
            for issue in report.issues.iter().filter(|i| !i.proposed_rules.is_empty()) {
                proposals += 1;
                wide_open_blamed += usize::from(issue.root_cause.contains("wide open"));
                let wider = wider(&issue.proposed_rules, &rules, &named);
                assert_eq!(wider, None, "seed {seed}: rules {rules:#?}\nproposal {:#?}", issue.proposed_rules);
            }
        }
        // The property was tried, not passed by having nothing to check.
        // (At 100 rule sets: 74 proposals, 4 blaming a wide-open rule; at 400, over 100 and 10.)
        let tried = seeds as usize;
        assert!(
            proposals * 4 > tried && wide_open_blamed * 40 > tried,
            "{proposals} proposals, {wide_open_blamed} wide open over {tried} rule sets"
        );
    }
}
