//! CloudWatch metrics made from log events: metric-filter patterns, the datapoints they
//! produce, and how an alarm judges those datapoints.
//!
//! The lab's second kind of detector is the one most teams start with: a metric filter on
//! the flow-log group counts the bytes the target sends out of the VPC, and an alarm on
//! that metric calls containment through EventBridge. The simulator evaluates the same
//! pattern and the same alarm rule the lab gives AWS, so what the what-if sweep shows of
//! this detector is what AWS would do with it. Flow-log events arrive minutes after the
//! window they describe, into periods the alarm has already judged (CloudWatch user guide,
//! "Configuring how CloudWatch alarms treat missing data"): the alarm looks back over enough periods to see them (M of N) and treats
//! a period with no data as not breaching.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::base::clock::Timestamp;

/// The space-delimited filter-pattern syntax of CloudWatch Logs, for the subset a flow log
/// needs: `[name, name = value, name != value, name > number, ..., name]`, string values
/// with `*` wildcards (quoted or not), numeric comparisons `< <= > >= = !=`, conditions on
/// one field joined by `&&` or `||`, and one `...` standing for any number of fields.
#[derive(Clone, Debug, PartialEq)]
pub struct FilterPattern {
    before: Vec<Field>,
    /// Fields after a `...`, matched from the end of the line.
    after: Option<Vec<Field>>,
}

#[derive(Clone, Debug, PartialEq)]
struct Field {
    name: String,
    condition: Option<Condition>,
}

#[derive(Clone, Debug, PartialEq)]
enum Condition {
    Compare { op: Op, value: String },
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl FilterPattern {
    /// Parses a pattern, saying where it is wrong.
    pub fn parse(text: &str) -> Result<FilterPattern, String> {
        let inner = text
            .trim()
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .ok_or_else(|| format!("filter pattern '{text}': a space-delimited pattern is enclosed in [ ]"))?;
        let mut before = Vec::new();
        let mut after: Option<Vec<Field>> = None;
        for (i, part) in inner.split(',').map(str::trim).enumerate() {
            if part == "..." {
                if after.is_some() {
                    return Err(format!("filter pattern '{text}': only one '...' is allowed"));
                }
                after = Some(Vec::new());
                continue;
            }
            let field = parse_field(part).map_err(|e| format!("filter pattern '{text}', field {}: {e}", i + 1))?;
            match &mut after {
                Some(a) => a.push(field),
                None => before.push(field),
            }
        }
        Ok(FilterPattern { before, after })
    }

    /// The fields of `line` by name, if the line matches.
    pub fn matches<'a>(&self, line: &'a str) -> Option<BTreeMap<&str, &'a str>> {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let mut named = BTreeMap::new();
        let pairs: Vec<(&Field, &str)> = match &self.after {
            None if tokens.len() != self.before.len() => return None,
            None => self.before.iter().zip(tokens.iter().copied()).collect(),
            Some(after) => {
                if tokens.len() < self.before.len() + after.len() {
                    return None;
                }
                let tail = &tokens[tokens.len() - after.len()..];
                self.before.iter().zip(tokens.iter().copied()).chain(after.iter().zip(tail.iter().copied())).collect()
            }
        };
        for (field, token) in pairs {
            if let Some(c) = &field.condition {
                if !c.holds(token) {
                    return None;
                }
            }
            named.insert(field.name.as_str(), token);
        }
        Some(named)
    }
}

fn parse_field(part: &str) -> Result<Field, String> {
    let name_end = part.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(part.len());
    let name = &part[..name_end];
    if name.is_empty() {
        return Err(format!("'{part}' does not start with a field name"));
    }
    let rest = part[name_end..].trim();
    let condition = if rest.is_empty() { None } else { Some(parse_condition(name, rest)?) };
    Ok(Field { name: name.to_string(), condition })
}

/// `op value`, then optionally `&& name op value` or `|| name op value` on the same field.
fn parse_condition(name: &str, text: &str) -> Result<Condition, String> {
    let (first, rest, join) = match (text.find("&&"), text.find("||")) {
        (Some(a), Some(o)) if a < o => (&text[..a], Some(&text[a + 2..]), "&&"),
        (Some(a), None) => (&text[..a], Some(&text[a + 2..]), "&&"),
        (_, Some(o)) => (&text[..o], Some(&text[o + 2..]), "||"),
        (None, None) => (text, None, ""),
    };
    let compare = parse_compare(first.trim())?;
    match rest {
        None => Ok(compare),
        Some(r) => {
            let r = r.trim();
            let tail = r.strip_prefix(name).ok_or_else(|| format!("'{r}': a condition joined by {join} must be on field {name}"))?;
            let next = parse_condition(name, tail.trim())?;
            Ok(if join == "&&" {
                Condition::And(Box::new(compare), Box::new(next))
            } else {
                Condition::Or(Box::new(compare), Box::new(next))
            })
        }
    }
}

fn parse_compare(text: &str) -> Result<Condition, String> {
    let ops = [("!=", Op::Ne), ("<=", Op::Le), (">=", Op::Ge), ("=", Op::Eq), ("<", Op::Lt), (">", Op::Gt)];
    let (sym, op) = ops.iter().find(|(s, _)| text.starts_with(s)).ok_or_else(|| format!("'{text}': expected = != < <= > or >="))?;
    let value = text[sym.len()..].trim();
    let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
    if value.is_empty() {
        return Err(format!("'{text}': no value after {sym}"));
    }
    if matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge) && value.parse::<f64>().is_err() {
        return Err(format!("'{text}': {sym} compares numbers, and '{value}' is not one"));
    }
    Ok(Condition::Compare { op: *op, value: value.to_string() })
}

impl Condition {
    fn holds(&self, token: &str) -> bool {
        match self {
            Condition::And(a, b) => a.holds(token) && b.holds(token),
            Condition::Or(a, b) => a.holds(token) || b.holds(token),
            Condition::Compare { op, value } => {
                let numeric = value.parse::<f64>().ok().zip(token.parse::<f64>().ok());
                match (op, numeric) {
                    (Op::Eq, Some((v, t))) => t == v,
                    (Op::Ne, Some((v, t))) => t != v,
                    (Op::Eq, None) => wildcard_match(value, token),
                    (Op::Ne, None) => !wildcard_match(value, token),
                    (Op::Lt, Some((v, t))) => t < v,
                    (Op::Le, Some((v, t))) => t <= v,
                    (Op::Gt, Some((v, t))) => t > v,
                    (Op::Ge, Some((v, t))) => t >= v,
                    (_, None) => false,
                }
            }
        }
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

/// A metric filter's transformation: which metric a matching event adds to, by how much,
/// and under which dimensions (`$field` takes the value from the event).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricTransformation {
    pub namespace: String,
    pub metric_name: String,
    /// `$field` or a number.
    pub metric_value: String,
    pub dimensions: BTreeMap<String, String>,
}

/// One metric as CloudWatch keys it: namespace, name and dimensions.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MetricKey {
    pub namespace: String,
    pub metric_name: String,
    pub dimensions: BTreeMap<String, String>,
}

impl MetricTransformation {
    /// The metric and value a matched event contributes; None when a `$field` it needs is
    /// missing or not a number (CloudWatch drops such an event from the metric).
    pub fn apply(&self, fields: &BTreeMap<&str, &str>) -> Option<(MetricKey, f64)> {
        let lookup = |v: &str| -> Option<String> {
            match v.strip_prefix('$') {
                Some(name) => fields.get(name).map(|s| s.to_string()),
                None => Some(v.to_string()),
            }
        };
        let value = lookup(&self.metric_value)?.parse::<f64>().ok()?;
        let mut dimensions = BTreeMap::new();
        for (k, v) in &self.dimensions {
            let v = lookup(v)?;
            if v == "-" {
                return None;
            }
            dimensions.insert(k.clone(), v);
        }
        Some((MetricKey { namespace: self.namespace.clone(), metric_name: self.metric_name.clone(), dimensions }, value))
    }
}

/// An alarm's rule on a metric's per-period sums: ALARM when at least
/// `datapoints_to_alarm` of the last `evaluation_periods` periods exceed `threshold`;
/// a period without data does not breach (`treatMissingData=notBreaching`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlarmRule {
    pub period_s: u32,
    pub evaluation_periods: u32,
    pub datapoints_to_alarm: u32,
    pub threshold: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlarmState {
    Ok,
    Alarm,
    InsufficientData,
}

impl AlarmState {
    pub fn name(self) -> &'static str {
        match self {
            AlarmState::Ok => "OK",
            AlarmState::Alarm => "ALARM",
            AlarmState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

/// What one evaluation saw: the state it leads to and the periods it judged.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub state: AlarmState,
    /// (period start, sum) of every period with data in the evaluation range, oldest first.
    pub datapoints: Vec<(Timestamp, f64)>,
    pub breaching: Vec<(Timestamp, f64)>,
}

impl AlarmRule {
    /// Judges the periods that ended by `at` (per-period sums keyed by period start).
    pub fn evaluate(&self, sums: &BTreeMap<Timestamp, f64>, at: Timestamp) -> Evaluation {
        let period_ms = i64::from(self.period_s) * 1000;
        let end = at.0.div_euclid(period_ms) * period_ms;
        let start = end - i64::from(self.evaluation_periods) * period_ms;
        let datapoints: Vec<(Timestamp, f64)> = sums.range(Timestamp(start)..Timestamp(end)).map(|(t, v)| (*t, *v)).collect();
        let breaching: Vec<(Timestamp, f64)> = datapoints.iter().filter(|(_, v)| *v > self.threshold).copied().collect();
        let state = if breaching.len() as u32 >= self.datapoints_to_alarm { AlarmState::Alarm } else { AlarmState::Ok };
        Evaluation { state, datapoints, breaching }
    }

    /// The reason CloudWatch gives for a transition.
    pub fn reason(&self, e: &Evaluation) -> String {
        format!(
            "Threshold Crossed: {} out of the last {} datapoints [{}] was greater than the threshold ({}) (minimum {} datapoint{} for OK -> ALARM transition).",
            e.breaching.len(),
            self.evaluation_periods,
            e.breaching.iter().map(|(t, v)| format!("{v} ({t})")).collect::<Vec<_>>().join(", "),
            self.threshold,
            self.datapoints_to_alarm,
            if self.datapoints_to_alarm == 1 { "" } else { "s" },
        )
    }
}

/// Everything a "CloudWatch Alarm State Change" event needs to say.
pub struct StateChange<'a> {
    pub alarm_name: &'a str,
    pub alarm_arn: &'a str,
    pub account: &'a str,
    pub region: &'a str,
    pub metric: &'a MetricKey,
    pub rule: &'a AlarmRule,
    pub previous: AlarmState,
    pub evaluation: &'a Evaluation,
    pub at: Timestamp,
}

/// The EventBridge event CloudWatch sends on an alarm's state change, as AWS documents it
/// (AmazonCloudWatch/latest/monitoring/cloudwatch-and-eventbridge.html).
pub fn state_change_event(c: &StateChange) -> serde_json::Value {
    let stamp = |t: Timestamp| t.to_string().replace('Z', "+0000");
    let reason_data = serde_json::json!({
        "version": "1.0",
        "queryDate": stamp(c.at),
        "startDate": c.evaluation.datapoints.first().map(|(t, _)| stamp(*t)),
        "statistic": "Sum",
        "period": c.rule.period_s,
        "recentDatapoints": c.evaluation.datapoints.iter().map(|(_, v)| v).collect::<Vec<_>>(),
        "threshold": c.rule.threshold,
        "evaluatedDatapoints": c.evaluation.breaching.iter().map(|(t, v)| serde_json::json!({"timestamp": stamp(*t), "sampleCount": 1.0, "value": v})).collect::<Vec<_>>(),
    });
    serde_json::json!({
        "version": "0",
        "id": format!("{}-{}", c.alarm_name, c.at.millis()),
        "detail-type": ALARM_DETAIL_TYPE,
        "source": ALARM_SOURCE,
        "account": c.account,
        "time": c.at.to_string(),
        "region": c.region,
        "resources": [c.alarm_arn],
        "detail": {
            "alarmName": c.alarm_name,
            "state": {
                "value": c.evaluation.state.name(),
                "reason": c.rule.reason(c.evaluation),
                "reasonData": reason_data.to_string(),
                "timestamp": stamp(c.at),
            },
            "previousState": {"value": c.previous.name()},
            "configuration": {
                "metrics": [{
                    "id": "m1",
                    "metricStat": {
                        "metric": {
                            "namespace": c.metric.namespace,
                            "name": c.metric.metric_name,
                            "dimensions": c.metric.dimensions,
                        },
                        "period": c.rule.period_s,
                        "stat": "Sum",
                    },
                    "returnData": true,
                }],
            },
        },
    })
}

pub const ALARM_SOURCE: &str = "aws.cloudwatch";
pub const ALARM_DETAIL_TYPE: &str = "CloudWatch Alarm State Change";

/// The namespace and name of the lab's egress metric, and its one dimension.
pub const EGRESS_NAMESPACE: &str = "cis/lab";
pub const EGRESS_METRIC: &str = "EgressBytes";
pub const INSTANCE_DIMENSION: &str = "InstanceId";

/// The pattern of the lab's egress metric over [`crate::formats::flowlog::LAB_LOG_FORMAT`]: accepted
/// records of traffic leaving the target (source in the VPC, destination outside it).
pub fn egress_pattern(vpc_prefix: &str) -> String {
    format!(
        "[version, account_id, interface_id, srcaddr = \"{vpc_prefix}*\", dstaddr != \"{vpc_prefix}*\", srcport, dstport, protocol, packets, bytes, start, end, action = \"ACCEPT\", log_status, vpc_id, subnet_id, instance_id, tcp_flags, type, pkt_srcaddr, pkt_dstaddr, flow_direction = \"egress\", traffic_path]"
    )
}

/// Per-period sums of the metric `transformation` makes of the lines that match `pattern`,
/// each record counted in the period its `start` falls in.
pub fn period_sums<'a>(
    pattern: &FilterPattern,
    transformation: &MetricTransformation,
    lines: impl IntoIterator<Item = &'a str>,
    period_s: u32,
) -> BTreeMap<MetricKey, BTreeMap<Timestamp, f64>> {
    let mut out: BTreeMap<MetricKey, BTreeMap<Timestamp, f64>> = BTreeMap::new();
    for line in lines {
        let Some(fields) = pattern.matches(line) else { continue };
        let Some((key, value)) = transformation.apply(&fields) else { continue };
        let Some(start) = fields.get("start").and_then(|s| s.parse::<i64>().ok()) else { continue };
        *out.entry(key).or_default().entry(period_start(Timestamp::from_unix_seconds(start), period_s)).or_default() += value;
    }
    out
}

/// The start of the period `t` falls in.
pub fn period_start(t: Timestamp, period_s: u32) -> Timestamp {
    let p = i64::from(period_s) * 1000;
    Timestamp(t.0.div_euclid(p) * p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "5 123456789012 eni-1 10.42.1.10 203.0.113.9 40000 443 6 20 90000 1767225600 1767225660 ACCEPT OK vpc-1 subnet-1 i-1 2 IPv4 10.42.1.10 203.0.113.9 egress 8";

    #[test]
    fn the_egress_pattern_takes_outbound_accepted_records_and_their_bytes() {
        let p = FilterPattern::parse(&egress_pattern("10.42.")).unwrap();
        let t = MetricTransformation {
            namespace: EGRESS_NAMESPACE.into(),
            metric_name: EGRESS_METRIC.into(),
            metric_value: "$bytes".into(),
            dimensions: BTreeMap::from([(INSTANCE_DIMENSION.to_string(), "$instance_id".to_string())]),
        };
        let (key, value) = t.apply(&p.matches(LINE).unwrap()).unwrap();
        assert_eq!(value, 90000.0);
        assert_eq!(key.dimensions[INSTANCE_DIMENSION], "i-1");
        // Inbound, rejected, inside the VPC, NODATA: not counted.
        for other in [
            LINE.replace("10.42.1.10 203.0.113.9 40000", "203.0.113.9 10.42.1.10 40000").replace("egress", "ingress"),
            LINE.replace("ACCEPT", "REJECT"),
            LINE.replace("203.0.113.9 40000", "10.42.1.20 40000"),
            "5 123456789012 eni-1 - - - - - - - 1767225600 1767225660 - NODATA vpc-1 subnet-1 i-1 - - - - - -".to_string(),
            "too few fields".to_string(),
        ] {
            assert!(p.matches(&other).is_none(), "{other}");
        }
    }

    #[test]
    fn patterns_compare_numbers_join_conditions_and_skip_fields_with_an_ellipsis() {
        let p = FilterPattern::parse("[a, b > 100 && b <= 200, ..., last = x*z]").unwrap();
        assert!(p.matches("1 150 q r s xyz").is_some());
        assert!(p.matches("1 150 xz").is_some());
        assert!(p.matches("1 250 q xyz").is_none());
        assert!(p.matches("1 abc q xyz").is_none());
        assert!(p.matches("1 150 q xy").is_none());
        let p = FilterPattern::parse("[code = 4* || code = 5*]").unwrap();
        assert!(p.matches("404").is_some() && p.matches("503").is_some() && p.matches("200").is_none());
        for bad in ["a, b", "[a, b >]", "[a, b > x]", "[a, ..., ...]", "[a, = 3]", "[a, b = 1 && c = 2]"] {
            assert!(FilterPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_alarm_sees_late_datapoints_within_its_periods_and_missing_data_does_not_breach() {
        let rule = AlarmRule { period_s: 60, evaluation_periods: 10, datapoints_to_alarm: 1, threshold: 1000.0 };
        let t0 = Timestamp::SIM_EPOCH;
        let mut sums = BTreeMap::new();
        assert_eq!(rule.evaluate(&sums, t0.plus_secs_f64(600.0)).state, AlarmState::Ok);
        // A breaching minute that arrives 7 minutes late is still inside the 10 periods.
        sums.insert(t0, 5000.0);
        let e = rule.evaluate(&sums, t0.plus_secs_f64(7.0 * 60.0 + 30.0));
        assert_eq!(e.state, AlarmState::Alarm);
        assert_eq!(e.breaching, vec![(t0, 5000.0)]);
        // Eleven minutes on it has left the range.
        assert_eq!(rule.evaluate(&sums, t0.plus_secs_f64(11.0 * 60.0)).state, AlarmState::Ok);
        let two = AlarmRule { datapoints_to_alarm: 2, ..rule.clone() };
        assert_eq!(two.evaluate(&sums, t0.plus_secs_f64(120.0)).state, AlarmState::Ok);
    }
}
