//! The built-in analyser: a deterministic rules engine, offline. It classifies each alert
//! by what it says, correlates alerts that tell one story (a source denied on several
//! ports and then let through, failed logins and then a success, a detection and its
//! containment), ranks availability outages and active attacks above everything else,
//! and cites the alerts and lines it used.

use std::collections::BTreeMap;

use super::{Alert, Category, Finding, FirewallRule, LogRow, RcaInput, RcaIssue, RcaReport, TriageReport};

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
];
const ATTACK: &[&str] = &[
    "exfiltrat",
    "brute force",
    "brute-force",
    "reverse shell",
    "malware",
    "ransomware",
    "command and control",
    "c2 beacon",
    "beaconing",
    "privilege escalation",
    "sql injection",
    "credential stuffing",
    "suspicious process",
    "cryptominer",
    "port scan succeeded",
    "lateral movement",
];
const DOS: &[&str] =
    &["ddos", "denial of service", "dos attack", "syn flood", "udp flood", "http flood", "rate limit", "rate-limit", "too many requests"];
const CHANGE: &[&str] =
    &["allowlist", "allow-list", "allow list", "whitelist", "firewall rule added", "ingress rule added", "added to admin", "granted admin"];
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
];
const ROUTINE: &[&str] =
    &["error", "failed", "failure", "timeout", "timed out", "retry", "denied", "refused", "exception", "warning", "unauthorized"];
const DENIED: &[&str] = &["denied", "blocked", "rejected", "drop", "scan"];
const ALLOWED: &[&str] = &["allowed", "accepted", "succeeded", "success", "established", "permitted"];
const FAILED_LOGIN: &[&str] = &["failed login", "failed password", "authentication failure", "invalid password", "login failed"];
const PRIVILEGED: &[&str] = &["root", "admin", "administrator", "superuser"];

fn text_of(a: &Alert) -> String {
    format!("{} {}", a.message, a.code.as_deref().unwrap_or_default()).to_ascii_lowercase()
}

fn hit<'a>(text: &str, words: &[&'a str]) -> Option<&'a str> {
    words.iter().find(|w| text.contains(*w)).copied()
}

fn privileged(a: &Alert) -> bool {
    a.user.as_deref().is_some_and(|u| {
        let u = u.to_ascii_lowercase();
        PRIVILEGED.iter().any(|p| u == *p || u.contains("admin"))
    })
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

/// One alert on its own: its category and the words that decided it.
fn classify(a: &Alert) -> (Category, String) {
    let t = text_of(a);
    let code = a.code.as_deref().unwrap_or_default();
    if code == "cis.detection" {
        return (Category::ActiveAttack, "the lab's detector flagged the instance's traffic".into());
    }
    if code == "cis.containment.isolated" {
        return (Category::ActiveAttack, "containment isolated the instance: an attack was in progress".into());
    }
    if let Some(w) = hit(&t, OUTAGE) {
        return (Category::Outage, format!("'{w}': the service is down or about to be, users are affected now"));
    }
    if let Some(w) = hit(&t, ATTACK) {
        return (Category::ActiveAttack, format!("'{w}': someone is acting against the system now"));
    }
    if let Some(w) = hit(&t, DOS) {
        return (Category::DenialOfService, format!("'{w}': traffic is being blocked to keep a service up"));
    }
    if let Some(w) = hit(&t, CHANGE) {
        let permanent = t.contains("permanent") || !t.contains("expir");
        if privileged(a) && permanent {
            return (
                Category::PrivilegeChange,
                format!("'{w}' by privileged user {}: access widened with no expiry", a.user.as_deref().unwrap_or_default()),
            );
        }
        return (Category::Hygiene, format!("'{w}': an access change to review"));
    }
    if let Some(w) = hit(&t, HYGIENE) {
        return (Category::Hygiene, format!("'{w}': a weakness, not exploited in this batch"));
    }
    if let Some(w) = hit(&t, ROUTINE) {
        return (Category::RoutineError, format!("'{w}': an ordinary error with no sign of harm"));
    }
    (Category::Noise, "nothing in it points to harm".into())
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
            format!("keep the block in place, confirm {host} still serves, and add rate limits or scaling upstream")
        }
        Category::PrivilegeChange => format!(
            "review the change with {}: give the entry an expiry or remove it, and require approval for permanent allow-list entries",
            first.user.as_deref().unwrap_or("its author")
        ),
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

/// Triage of a batch: ranked findings, outages and attacks first.
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
    for (i, a) in alerts.iter().enumerate() {
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
    // Correlation 2: failed logins, then a success, from one source or for one user.
    let mut by_actor: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, a) in alerts.iter().enumerate().filter(|(i, _)| !used[*i]) {
        if let Some(k) = a.source.clone().or_else(|| a.user.clone()) {
            by_actor.entry(k).or_default().push(i);
        }
    }
    for (actor, idx) in &by_actor {
        if let Some((failed, success)) = tried_then_through(idx, &texts, FAILED_LOGIN, 3) {
            let why = format!("{} failed logins from {actor} and then a success: a brute force that worked", failed.len());
            groups.push((Category::ActiveAttack, claim(&mut used, &failed, &success), why));
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
                category,
                severity: category.severity().to_string(),
                critical: category.severity() == "critical",
                why: format!("{}: {why}", category.name()),
                action: action_for(category, &members),
                evidence: members.iter().map(|a| evidence(a)).collect(),
            }
        })
        .collect();
    TriageReport { format: "cis-triage".into(), version: 1, analyser: "builtin".into(), alerts: alerts.len(), findings }
}

fn is_anywhere(s: &str) -> bool {
    matches!(s.trim().to_ascii_lowercase().as_str(), "any" | "*" | "0.0.0.0/0" | "::/0" | "all" | "internet")
}

fn ports_contain(ports: &str, port: Option<u16>) -> bool {
    if is_anywhere(ports) || ports.trim() == "-1" {
        return true;
    }
    let Some(p) = port else { return false };
    ports.split([',', ' ']).filter(|s| !s.is_empty()).any(|part| match part.split_once('-') {
        Some((a, b)) => a.trim().parse::<u16>().is_ok_and(|a| a <= p) && b.trim().parse::<u16>().is_ok_and(|b| p <= b),
        None => part.trim().parse::<u16>() == Ok(p),
    })
}

fn address_in(spec: &str, addr: Option<&str>) -> bool {
    if is_anywhere(spec) {
        return true;
    }
    let Some(addr) = addr else { return false };
    spec.split([',', ' ']).filter(|s| !s.is_empty()).any(|s| {
        let s = s.trim();
        match addr.parse::<std::net::IpAddr>() {
            Ok(ip) if s.contains('/') => crate::base::net::cidr_contains(s, ip),
            _ => s == addr,
        }
    })
}

fn allow_any(r: &FirewallRule) -> bool {
    r.action == "allow" && is_anywhere(&r.ports) && is_anywhere(&r.protocol) && (is_anywhere(&r.source) || is_anywhere(&r.destination))
}

/// The first rule, by priority (then order), that decides a row.
fn deciding_rule<'a>(rules: &'a [FirewallRule], row: &LogRow) -> Option<&'a FirewallRule> {
    if let Some(named) = row.rule.as_deref() {
        if let Some(r) = rules.iter().find(|r| r.id == named) {
            return Some(r);
        }
    }
    let mut ordered: Vec<(usize, &FirewallRule)> = rules.iter().enumerate().filter(|(_, r)| r.direction == "inbound").collect();
    ordered.sort_by_key(|(i, r)| (r.priority.unwrap_or(i64::MAX), *i));
    ordered.into_iter().map(|(_, r)| r).find(|r| {
        address_in(&r.source, row.source.as_deref())
            && (is_anywhere(&r.destination) || address_in(&r.destination, row.destination.as_deref()) || r.destination == "target")
            && ports_contain(&r.ports, row.port)
            && (is_anywhere(&r.protocol) || row.protocol.as_deref().is_none_or(|p| p.eq_ignore_ascii_case(&r.protocol)))
    })
}

/// Root-cause analysis of logs against rules (and a lab run's detections).
pub fn rca(input: &RcaInput) -> RcaReport {
    let mut issues = Vec::new();
    let mut blamed: Vec<String> = Vec::new();

    // A source denied on several ports, then let through: which rule let it?
    let mut by_source: BTreeMap<&str, Vec<&LogRow>> = BTreeMap::new();
    for row in &input.logs {
        if let Some(s) = row.source.as_deref() {
            by_source.entry(s).or_default().push(row);
        }
    }
    for (source, rows) in &by_source {
        let denied: Vec<&LogRow> = rows.iter().copied().filter(|r| r.action.as_deref() == Some("deny")).collect();
        let ports: std::collections::BTreeSet<u16> = denied.iter().filter_map(|r| r.port).collect();
        let Some(first_denied) = denied.first().map(|r| r.position) else { continue };
        let allowed: Vec<&LogRow> =
            rows.iter().copied().filter(|r| r.position > first_denied && r.action.as_deref() == Some("allow")).collect();
        if ports.len() < 3 || allowed.is_empty() {
            continue;
        }
        let rule = allowed.iter().find_map(|r| deciding_rule(&input.rules, r));
        let scanned = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
        let through = allowed.iter().filter_map(|r| r.port).map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
        let (root_cause, rule_id) = match rule {
            Some(r) if allow_any(r) => (
                format!(
                    "rule {} allows {} from {} to {} on any port: the deny rules named some ports, and the scan found one they did not",
                    r.id, r.protocol, r.source, r.destination
                ),
                Some(r.id.clone()),
            ),
            Some(r) => (
                format!("rule {} allowed {source} on port(s) {through}: it admits more sources than the service needs", r.id),
                Some(r.id.clone()),
            ),
            None => ("no rule given explains the allowed connection: give the firewall rules with --rules".into(), None),
        };
        if let Some(id) = &rule_id {
            blamed.push(id.clone());
        }
        let mut evidence: Vec<String> = denied.iter().chain(&allowed).map(|r| format!("line {}: {}", r.position, r.raw)).collect();
        if let Some(r) = rule {
            evidence.push(format!("rule: {}", r.raw));
        }
        issues.push(RcaIssue {
            title: format!("{source} scanned ports {scanned}, was denied, then got through on {through}"),
            category: Category::ActiveAttack,
            issue: format!(
                "{source} was denied on {} port(s) ({scanned}) and then allowed on {through}: a port scan that found an opening",
                ports.len()
            ),
            root_cause,
            rule: rule_id.clone(),
            proposed_rules: narrower_rules(input, rule, source),
            evidence,
        });
    }

    // A detection whose traffic an allow-any outbound rule let out.
    let egress_any: Vec<&FirewallRule> = input
        .rules
        .iter()
        .filter(|r| r.direction == "outbound" && r.action == "allow" && is_anywhere(&r.destination) && is_anywhere(&r.ports))
        .collect();
    if let (Some(rule), false) = (egress_any.first(), input.detections.is_empty()) {
        blamed.push(rule.id.clone());
        // What left, by port: a port-only rule would not stop what used 443.
        let out: std::collections::BTreeSet<(u16, String)> = input
            .logs
            .iter()
            .filter(|r| r.action.as_deref() == Some("allow"))
            .filter_map(|r| r.port.map(|p| (p, r.destination.clone().unwrap_or_default())))
            .collect();
        let ports: std::collections::BTreeSet<u16> = out.iter().map(|(p, _)| *p).collect();
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
                    direction: "outbound".into(),
                    action: "allow".into(),
                    source: "target".into(),
                    destination: "the package mirrors and APIs the server needs (prefix lists or VPC endpoints)".into(),
                    ports: "443".into(),
                    protocol: "tcp".into(),
                    raw: String::new(),
                },
                FirewallRule {
                    id: "egress-default".into(),
                    priority: Some(1000),
                    direction: "outbound".into(),
                    action: "deny".into(),
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
                .chain(input.logs.iter().filter(|r| r.action.as_deref() == Some("allow")).map(|r| format!("line {}: {}", r.position, r.raw)))
                .chain(std::iter::once(format!("rule: {}", rule.raw)))
                .collect(),
        });
    }
    // Allow-any rules nothing in this input exploited: hygiene.
    for r in input.rules.iter().filter(|r| allow_any(r) && !blamed.contains(&r.id)) {
        issues.push(RcaIssue {
            title: format!("rule {} allows {} traffic from {} to {} on every port", r.id, r.direction, r.source, r.destination),
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

/// In place of an allow-any rule: the other rules as they are, one allow per port that
/// legitimate sources (all but the scanner) used, the scanner denied, and a default deny.
fn narrower_rules(input: &RcaInput, culprit: Option<&FirewallRule>, scanner: &str) -> Vec<FirewallRule> {
    let mut out: Vec<FirewallRule> = input.rules.iter().filter(|r| Some(*r) != culprit && r.direction == "inbound").cloned().collect();
    let mut used: BTreeMap<(u16, String), std::collections::BTreeSet<String>> = BTreeMap::new();
    for row in &input.logs {
        if row.action.as_deref() == Some("allow") && row.source.as_deref() != Some(scanner) {
            if let (Some(port), Some(src)) = (row.port, row.source.clone()) {
                used.entry((port, row.protocol.clone().unwrap_or_else(|| "tcp".into()).to_ascii_lowercase())).or_default().insert(src);
            }
        }
    }
    let destination = culprit.map_or("any".to_string(), |c| c.destination.clone());
    let mut priority = out.iter().filter_map(|r| r.priority).max().unwrap_or(0);
    let mut next = || {
        priority += 10;
        Some(priority)
    };
    out.push(FirewallRule {
        id: format!("deny-{scanner}"),
        priority: next(),
        direction: "inbound".into(),
        action: "deny".into(),
        source: scanner.to_string(),
        destination: destination.clone(),
        ports: "any".into(),
        protocol: "any".into(),
        raw: String::new(),
    });
    for ((port, protocol), sources) in used {
        // Public web ports serve everyone; anything else only those who used it.
        let source = if matches!(port, 80 | 443) && sources.len() > 3 {
            "0.0.0.0/0".to_string()
        } else {
            sources.into_iter().collect::<Vec<_>>().join(", ")
        };
        out.push(FirewallRule {
            id: format!("allow-{protocol}-{port}"),
            priority: next(),
            direction: "inbound".into(),
            action: "allow".into(),
            source,
            destination: destination.clone(),
            ports: port.to_string(),
            protocol,
            raw: String::new(),
        });
    }
    out.push(FirewallRule {
        id: "default-deny".into(),
        priority: next(),
        direction: "inbound".into(),
        action: "deny".into(),
        source: "0.0.0.0/0".into(),
        destination,
        ports: "any".into(),
        protocol: "any".into(),
        raw: String::new(),
    });
    out
}
