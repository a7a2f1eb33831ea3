//! The language-model analysers: Foundation-Sec-8B-Instruct on a SageMaker endpoint, or
//! any OpenAI-compatible chat-completions server (vLLM, llama.cpp, Ollama).
//!
//! Both get the same prompts (`assets/prompts/`): the built-in engine's structured
//! evidence beside the raw input. Both answer in one JSON shape, and the answer is checked
//! before anyone sees it: every alert id, log line and rule id it cites must be in the
//! input, every category and severity must be one the report knows. A model that answers
//! late, empty or off-format is an error that says so, never a half-report.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{
    builtin, firewall, Alert, AnalysisError, Category, Decision, Direction, Finding, FirewallRule, RcaInput, RcaIssue, RcaReport,
    Severity, TriageReport,
};

const TRIAGE_SYSTEM: &str = include_str!("../../assets/prompts/triage-system.md");
const TRIAGE_USER: &str = include_str!("../../assets/prompts/triage-user.md");
const RCA_SYSTEM: &str = include_str!("../../assets/prompts/rca-system.md");
const RCA_USER: &str = include_str!("../../assets/prompts/rca-user.md");

/// The raw input sent along is cut here: an 8B model's context is 128k tokens, and most of
/// a large batch is repetition the evidence already summarises.
pub const MAX_INPUT_CHARS: usize = 48_000;

/// One model call: a system prompt and a user prompt in, the model's text out.
#[async_trait]
pub trait Completion: Send + Sync {
    /// `openai`, `sagemaker`.
    fn analyser(&self) -> &'static str;
    /// Where the model is, for messages: a URL or an endpoint name.
    fn target(&self) -> String;
    async fn complete(&self, system: &str, user: &str) -> Result<String, AnalysisError>;
}

/// Triage and root-cause analysis, whoever answers.
#[async_trait]
pub trait Analyser: Send + Sync {
    fn name(&self) -> &'static str;
    async fn triage(&self, alerts: &[Alert], raw: &str) -> Result<TriageReport, AnalysisError>;
    async fn rca(&self, input: &RcaInput, raw_logs: &str) -> Result<RcaReport, AnalysisError>;
}

/// The rules engine, as an analyser.
pub struct Builtin;

#[async_trait]
impl Analyser for Builtin {
    fn name(&self) -> &'static str {
        "builtin"
    }
    async fn triage(&self, alerts: &[Alert], _raw: &str) -> Result<TriageReport, AnalysisError> {
        Ok(builtin::triage(alerts))
    }
    async fn rca(&self, input: &RcaInput, _raw: &str) -> Result<RcaReport, AnalysisError> {
        Ok(builtin::rca(input))
    }
}

/// A language model behind a [`Completion`], bounded by `timeout` per call.
pub struct ModelAnalyser<C> {
    pub client: C,
    pub timeout: Duration,
}

fn clip(text: &str) -> String {
    if text.len() <= MAX_INPUT_CHARS {
        return text.to_string();
    }
    let mut end = MAX_INPUT_CHARS;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[... {} more characters left out]", &text[..end], text.len() - end)
}

/// The JSON object in a model's text: models wrap it in prose or a ``` fence at times.
fn json_object(analyser: &str, text: &str) -> Result<serde_json::Value, AnalysisError> {
    let bad = |detail: String| AnalysisError::BadAnswer { analyser: analyser.to_string(), detail };
    if text.trim().is_empty() {
        return Err(bad("the answer is empty".into()));
    }
    let (Some(start), Some(end)) = (text.find('{'), text.rfind('}')) else {
        return Err(bad(format!("no JSON object in the answer: {}", excerpt(text))));
    };
    if end < start {
        return Err(bad(format!("no JSON object in the answer: {}", excerpt(text))));
    }
    serde_json::from_str(&text[start..=end]).map_err(|e| bad(format!("the JSON in the answer does not parse ({e}): {}", excerpt(text))))
}

/// The start of a text, on one line, for an error message.
pub fn excerpt(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(160) {
        Some((i, _)) => format!("'{}...'", &one_line[..i]),
        None => format!("'{one_line}'"),
    }
}

#[derive(Deserialize)]
struct TriageAnswer {
    findings: Vec<FindingAnswer>,
}

#[derive(Deserialize)]
struct FindingAnswer {
    alert_ids: Vec<String>,
    category: Category,
    severity: String,
    why: String,
    action: String,
}

#[derive(Deserialize)]
struct RcaAnswer {
    issues: Vec<IssueAnswer>,
}

#[derive(Deserialize)]
struct IssueAnswer {
    title: String,
    category: Category,
    issue: String,
    root_cause: String,
    rule: Option<String>,
    #[serde(default)]
    proposed_rules: Vec<RuleAnswer>,
    #[serde(default)]
    evidence_lines: Vec<usize>,
}

#[derive(Deserialize)]
struct RuleAnswer {
    id: String,
    direction: String,
    action: String,
    source: String,
    destination: String,
    ports: String,
    protocol: String,
}


impl<C: Completion> ModelAnalyser<C> {
    async fn call(&self, system: &str, user: &str) -> Result<String, AnalysisError> {
        match tokio::time::timeout(self.timeout, self.client.complete(system, user)).await {
            Ok(answer) => answer,
            Err(_) => Err(AnalysisError::Timeout {
                analyser: self.client.analyser().to_string(),
                seconds: self.timeout.as_secs().max(1),
                target: self.client.target(),
            }),
        }
    }

    fn bad(&self, detail: String) -> AnalysisError {
        AnalysisError::BadAnswer { analyser: self.client.analyser().to_string(), detail }
    }
}

#[async_trait]
impl<C: Completion> Analyser for ModelAnalyser<C> {
    fn name(&self) -> &'static str {
        self.client.analyser()
    }

    async fn triage(&self, alerts: &[Alert], raw: &str) -> Result<TriageReport, AnalysisError> {
        let evidence = builtin::triage(alerts);
        let user = TRIAGE_USER
            .replace("{{evidence}}", &serde_json::to_string_pretty(&evidence.findings).expect("findings serialize"))
            .replace("{{input}}", &clip(raw));
        let text = self.call(TRIAGE_SYSTEM, &user).await?;
        let answer: TriageAnswer = serde_json::from_value(json_object(self.name(), &text)?)
            .map_err(|e| self.bad(format!("the answer is not the findings object the prompt asks for: {e}")))?;
        if answer.findings.is_empty() {
            return Err(self.bad("the answer has no findings".into()));
        }
        let known: BTreeSet<&str> = alerts.iter().map(|a| a.id.as_str()).collect();
        let mut findings = Vec::new();
        for (n, f) in answer.findings.into_iter().enumerate() {
            if f.alert_ids.is_empty() {
                return Err(self.bad(format!("finding {} cites no alert", n + 1)));
            }
            if let Some(unknown) = f.alert_ids.iter().find(|id| !known.contains(id.as_str())) {
                return Err(self.bad(format!("finding {} names alert id '{unknown}', which is not in the input", n + 1)));
            }
            let severity = Severity::from_word(&f.severity).ok_or_else(|| {
                self.bad(format!(
                    "finding {} has severity '{}': expected one of {}",
                    n + 1,
                    f.severity,
                    Severity::ALL.map(Severity::name).join(", ")
                ))
            })?;
            let evidence = f.alert_ids.iter().filter_map(|id| alerts.iter().find(|a| &a.id == id)).map(builtin::evidence).collect();
            let codes = f.alert_ids.iter().map(|id| alerts.iter().find(|a| &a.id == id).and_then(|a| a.code.clone())).collect();
            findings.push(Finding {
                rank: n + 1,
                critical: severity == Severity::Critical,
                codes,
                severity,
                alert_ids: f.alert_ids,
                category: f.category,
                why: f.why,
                action: f.action,
                evidence,
            });
        }
        Ok(TriageReport { format: "cis-triage".into(), version: 2, analyser: self.name().into(), alerts: alerts.len(), findings })
    }

    async fn rca(&self, input: &RcaInput, raw_logs: &str) -> Result<RcaReport, AnalysisError> {
        let evidence = builtin::rca(input);
        let numbered: String = raw_logs.lines().enumerate().map(|(i, l)| format!("{:>5}: {l}\n", i + 1)).collect();
        let rules: String = input.rules.iter().map(|r| format!("{} | {}\n", r.id, r.raw)).collect();
        let user = RCA_USER
            .replace("{{evidence}}", &serde_json::to_string_pretty(&evidence.issues).expect("issues serialize"))
            .replace("{{rules}}", &rules)
            .replace("{{input}}", &clip(&numbered));
        let text = self.call(RCA_SYSTEM, &user).await?;
        let answer: RcaAnswer = serde_json::from_value(json_object(self.name(), &text)?)
            .map_err(|e| self.bad(format!("the answer is not the issues object the prompt asks for: {e}")))?;
        let rule_ids: BTreeSet<&str> = input.rules.iter().map(|r| r.id.as_str()).collect();
        let lines: BTreeSet<usize> = input.logs.iter().map(|l| l.position).collect();
        let mut issues = Vec::new();
        for (n, i) in answer.issues.into_iter().enumerate() {
            if let Some(rule) = i.rule.as_deref().filter(|r| !r.is_empty() && *r != "null") {
                if !rule_ids.contains(rule) {
                    return Err(self.bad(format!("issue {} blames rule '{rule}', which is not in the rules given", n + 1)));
                }
            }
            if let Some(line) = i.evidence_lines.iter().find(|l| !lines.contains(l)) {
                return Err(self.bad(format!("issue {} cites log line {line}, which is not in the logs", n + 1)));
            }
            let evidence = i
                .evidence_lines
                .iter()
                .filter_map(|l| input.logs.iter().find(|r| r.position == *l))
                .map(|r| format!("line {}: {}", r.position, r.raw))
                .collect();
            let proposed_rules = i
                .proposed_rules
                .into_iter()
                .enumerate()
                .map(|(k, r)| {
                    let bad = |what: &str, value: &str| {
                        self.bad(format!("issue {} proposes rule {} with {what} '{value}'", n + 1, k + 1))
                    };
                    let direction = Direction::from_word(&r.direction).ok_or_else(|| bad("direction", &r.direction))?;
                    let action = Decision::from_word(&r.action).ok_or_else(|| bad("action", &r.action))?;
                    if firewall::Ports::parse(&r.ports).is_none() {
                        return Err(bad("ports", &r.ports));
                    }
                    Ok(FirewallRule {
                        id: r.id,
                        // The answer lists its rules in order: that order is the priority.
                        priority: Some(10 * (k as i64 + 1)),
                        direction,
                        action,
                        source: r.source,
                        destination: r.destination,
                        ports: r.ports,
                        protocol: firewall::protocol_word(&r.protocol),
                        raw: String::new(),
                    })
                })
                .collect::<Result<Vec<_>, AnalysisError>>()?;
            // A tool that promises narrower rules must not pass on a wider set.
            if !proposed_rules.is_empty() {
                let named: Vec<String> = input.logs.iter().flat_map(|l| [l.source.clone(), l.destination.clone()]).flatten().collect();
                if let Some(p) = firewall::wider(&proposed_rules, &input.rules, &named) {
                    return Err(self.bad(format!(
                        "issue {} proposes rules wider than those given: they allow {} {} -> {}:{} {}, which the rules given deny",
                        n + 1,
                        p.direction.map_or("", Direction::name),
                        p.source.unwrap_or_default(),
                        p.destination.unwrap_or_default(),
                        p.port.unwrap_or_default(),
                        p.protocol.unwrap_or_default()
                    )));
                }
            }
            issues.push(RcaIssue {
                title: i.title,
                category: i.category,
                issue: i.issue,
                root_cause: i.root_cause,
                rule: i.rule.filter(|r| !r.is_empty() && r != "null"),
                proposed_rules,
                evidence,
            });
        }
        Ok(RcaReport { format: "cis-rca".into(), version: 1, analyser: self.name().into(), issues })
    }
}

/// Sampling the analysers use: deterministic where the server allows.
#[derive(Clone, Debug)]
pub struct Sampling {
    pub max_new_tokens: u32,
    pub temperature: f64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { max_new_tokens: 1024, temperature: 0.0 }
    }
}

/// An OpenAI-compatible chat-completions server, over HTTP or HTTPS (a local vLLM,
/// llama.cpp or Ollama, or a hosted one). HTTPS trusts the system's roots
/// (`SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured).
pub struct OpenAi {
    /// `http[s]://host[:port]`, with or without `/v1`.
    pub url: String,
    pub model: String,
    /// Sent as a bearer token when set (`OPENAI_API_KEY`).
    pub api_key: Option<String>,
    pub sampling: Sampling,
}

impl OpenAi {
    /// Where completions are posted.
    pub fn completions_url(&self) -> String {
        let base = self.url.trim_end_matches('/');
        if base.ends_with("/chat/completions") {
            base.to_string()
        } else if base.ends_with("/v1") {
            format!("{base}/chat/completions")
        } else {
            format!("{base}/v1/chat/completions")
        }
    }
}

#[async_trait]
impl Completion for OpenAi {
    fn analyser(&self) -> &'static str {
        "openai"
    }
    fn target(&self) -> String {
        self.completions_url()
    }
    async fn complete(&self, system: &str, user: &str) -> Result<String, AnalysisError> {
        let body = serde_json::json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "temperature": self.sampling.temperature,
            "max_tokens": self.sampling.max_new_tokens,
        });
        let url = self.completions_url();
        let unreachable = |detail: String| AnalysisError::Unreachable { analyser: "openai".into(), target: url.clone(), detail };
        let client = reqwest::Client::builder().build().map_err(|e| unreachable(error_chain(&e)))?;
        let mut request = client.post(&url).header("Content-Type", "application/json").body(body.to_string());
        if let Some(k) = &self.api_key {
            request = request.bearer_auth(k);
        }
        let reply = request.send().await.map_err(|e| unreachable(error_chain(&e)))?;
        let status = reply.status();
        let text = reply.text().await.map_err(|e| unreachable(format!("reading the reply: {}", error_chain(&e))))?;
        let bad = |detail: String| AnalysisError::BadAnswer { analyser: "openai".into(), detail };
        if !status.is_success() {
            return Err(unreachable(format!("HTTP {}: {}", status.as_u16(), excerpt(&text))));
        }
        let answer: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("the server's reply is not JSON ({e}): {}", excerpt(&text))))?;
        answer["choices"][0]["message"]["content"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| bad(format!("the reply has no choices[0].message.content: {}", excerpt(&text))))
    }
}

/// An error with its causes, which say what went wrong (refused, a certificate not trusted).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The request Foundation-Sec-8B-Instruct's DJL LMI container takes (SageMaker's LMI
/// guide, "Endpoint request and response schema").
pub fn sagemaker_request(system: &str, user: &str, sampling: &Sampling) -> serde_json::Value {
    serde_json::json!({
        "inputs": format!("{system}\n\n{user}"),
        "parameters": {
            "max_new_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "do_sample": sampling.temperature > 0.0,
            "repetition_penalty": 1.2,
        },
    })
}

/// The generated text in the container's answer: a list of objects or one object with
/// `generated_text`.
pub fn sagemaker_answer(body: &[u8]) -> Result<String, AnalysisError> {
    let bad = |detail: String| AnalysisError::BadAnswer { analyser: "sagemaker".into(), detail };
    let text = String::from_utf8_lossy(body);
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("the endpoint's reply is not JSON ({e}): {}", excerpt(&text))))?;
    let first = if value.is_array() { &value[0] } else { &value };
    first["generated_text"].as_str().map(str::to_string).ok_or_else(|| bad(format!("the reply has no generated_text: {}", excerpt(&text))))
}

/// Foundation-Sec-8B-Instruct on a SageMaker endpoint, through the SDK's runtime client.
#[cfg(feature = "aws-functions")]
pub struct SageMaker {
    pub runtime: aws_sdk_sagemakerruntime::Client,
    pub endpoint: String,
    pub sampling: Sampling,
}

#[cfg(feature = "aws-functions")]
#[async_trait]
impl Completion for SageMaker {
    fn analyser(&self) -> &'static str {
        "sagemaker"
    }
    fn target(&self) -> String {
        format!("SageMaker endpoint {}", self.endpoint)
    }
    async fn complete(&self, system: &str, user: &str) -> Result<String, AnalysisError> {
        let body = sagemaker_request(system, user, &self.sampling).to_string();
        let out = self
            .runtime
            .invoke_endpoint()
            .endpoint_name(&self.endpoint)
            .content_type("application/json")
            .accept("application/json")
            .body(aws_smithy_types::Blob::new(body))
            .send()
            .await
            .map_err(|e| AnalysisError::Unreachable {
                analyser: "sagemaker".into(),
                target: self.target(),
                detail: aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
            })?;
        sagemaker_answer(out.body().map(|b| b.as_ref()).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_object_is_found_in_prose_or_a_fence_and_nothing_else_passes() {
        let v = json_object("x", "Sure:\n```json\n{\"findings\": []}\n```").unwrap();
        assert_eq!(v["findings"], serde_json::json!([]));
        for bad in ["", "   ", "no json here", "} {", "{\"a\": }"] {
            assert!(matches!(json_object("x", bad), Err(AnalysisError::BadAnswer { .. })), "{bad}");
        }
    }

    #[test]
    fn the_sagemaker_request_and_answer_follow_the_lmi_container() {
        let r = sagemaker_request("sys", "usr", &Sampling::default());
        assert_eq!(r["inputs"], "sys\n\nusr");
        assert_eq!(r["parameters"]["repetition_penalty"], 1.2);
        assert_eq!(r["parameters"]["do_sample"], false);
        assert_eq!(sagemaker_answer(br#"[{"generated_text": "a"}]"#).unwrap(), "a");
        assert_eq!(sagemaker_answer(br#"{"generated_text": "b"}"#).unwrap(), "b");
        assert!(sagemaker_answer(b"[]").is_err() && sagemaker_answer(b"<html>").is_err());
    }

    #[test]
    fn the_completions_url_accepts_a_base_a_v1_or_the_full_path() {
        let c = |url: &str| OpenAi { url: url.into(), model: "m".into(), api_key: None, sampling: Sampling::default() }.completions_url();
        assert_eq!(c("http://h:8000"), "http://h:8000/v1/chat/completions");
        assert_eq!(c("http://h:8000/v1/"), "http://h:8000/v1/chat/completions");
        assert_eq!(c("http://h:8000/v1/chat/completions"), "http://h:8000/v1/chat/completions");
    }
}
