//! `cis triage` and `cis rca` with the built-in analyser, on the fixtures in
//! `tests/fixtures/analysis/`.

use std::path::PathBuf;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/analysis").join(name).display().to_string()
}

#[test]
fn triage_ranks_the_outage_and_the_attack_above_routine_errors_and_noise_and_cites_the_alerts() {
    let lab = crate::Lab::new();
    let out = lab.ok(&["triage", &fixture("alerts-mixed.jsonl"), "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let findings = report["findings"].as_array().unwrap();
    let ids =
        |f: &serde_json::Value| f["alert_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect::<Vec<_>>();
    // First the full disk (availability), then the scan that got through (active attack).
    assert_eq!(findings[0]["category"], "outage");
    assert_eq!(ids(&findings[0]), ["a-03"]);
    assert_eq!(findings[1]["category"], "active-attack");
    assert_eq!(ids(&findings[1]), ["a-04", "a-05", "a-06", "a-07"]);
    assert!(findings[1]["why"].as_str().unwrap().contains("denied 3 times and then let through (a-07)"), "{}", findings[1]["why"]);
    assert!(findings[..2].iter().all(|f| f["critical"] == true));
    // Every evidence line names its alert; the answer cites nothing the input lacks.
    for f in findings {
        for (id, e) in ids(f).iter().zip(f["evidence"].as_array().unwrap()) {
            assert!(e.as_str().unwrap().contains(id.as_str()), "{e} cites {id}");
        }
    }
    let rank_of = |id: &str| findings.iter().position(|f| ids(f).iter().any(|x| x == id)).unwrap();
    assert!(rank_of("a-09") < rank_of("a-11"), "a privileged permanent allow-list change above hygiene");
    assert!(rank_of("a-11") < rank_of("a-02") && rank_of("a-02") < rank_of("a-01"), "hygiene, then routine errors, then noise");
    // The repeated timeout and the repeated health check are one finding each.
    assert_eq!(ids(&findings[rank_of("a-02")]), ["a-02", "a-10"]);
    assert_eq!(ids(&findings[rank_of("a-01")]), ["a-01", "a-08"]);
    assert!(findings.iter().skip(2).all(|f| f["critical"] == false));

    // Markdown (the default) says the same, with its evidence.
    let md = lab.ok(&["triage", &fixture("alerts-mixed.jsonl")]);
    assert!(md.contains("| 1 | critical | availability outage | a-03 (kernel.fs) |"), "{md}");
    assert!(md.contains("`#3 a-03 2026-11-20T08:01:10Z on db-1: write failed: No space left on device"), "{md}");
}

#[test]
fn triage_reads_the_labs_own_records_and_names_the_line_of_bad_input() {
    let lab = crate::Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records.log");
    std::fs::write(
        &records,
        concat!(
            "2026-01-01T00:05:00Z\treq-1\tCIS_DETECTION {\"at\":1767225900000,\"lab\":\"demo\",\"instance_id\":\"i-0abc\",\"detector\":\"isolation-forest\",\"window_start\":1767225840000,\"reason\":\"bytes out 40x the baseline\"}\n",
            "2026-01-01T00:05:01Z\treq-2\tCIS_CONTAINMENT {\"invoked_at\":1767225901000,\"finished_at\":1767225901500,\"instance_id\":\"i-0abc\",\"outcome\":\"isolated\",\"isolated_at\":1767225901400,\"detail\":\"two-step\"}\n",
        ),
    )
    .unwrap();
    let out = lab.ok(&["triage", records.to_str().unwrap(), "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["findings"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["findings"][0]["category"], "active-attack");
    assert_eq!(report["findings"][0]["alert_ids"].as_array().unwrap().len(), 2);

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"id\":\"x\",\"message\":\"ok\"}\n\n{\"id\": \"y\", \"message\": \n").unwrap();
    let out = lab.run(&["triage", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:3:", bad.display())), "{err}");
    std::fs::write(&bad, "{\"id\":\"x\",\"message\":\"a\"}\n{\"id\":\"x\",\"message\":\"b\"}\n").unwrap();
    let err = String::from_utf8_lossy(&lab.run(&["triage", bad.to_str().unwrap()]).stderr).to_string();
    assert!(err.contains("alert id 'x' appears twice"), "{err}");
}

#[test]
fn rca_names_the_allow_any_rule_a_denied_scan_got_through_and_proposes_a_narrower_rule_set() {
    let lab = crate::Lab::new();
    let args = ["rca", "--logs", &fixture("scan-then-allow.md"), "--rules", &fixture("rules.csv")];
    let out = lab.ok(&[&args[..], &["--format", "json"]].concat());
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let issue = &report["issues"][0];
    assert_eq!(issue["category"], "active-attack");
    assert_eq!(issue["rule"], "allow-all");
    assert!(
        issue["root_cause"]
            .as_str()
            .unwrap()
            .starts_with("rule allow-all is wide open: it admits any source on all 65,535 ports, any protocol to 10.1.1.10"),
        "{issue}"
    );
    let proposed: Vec<(String, String, String, String)> = issue["proposed_rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_string();
            (s("id"), s("action"), s("source"), s("ports"))
        })
        .collect();
    assert!(!proposed.iter().any(|p| p.0 == "allow-all"), "the allow-any rule is gone: {proposed:?}");
    assert!(proposed.contains(&("deny-203.0.113.66".into(), "deny".into(), "203.0.113.66".into(), "any".into())));
    assert!(proposed.contains(&("allow-tcp-443".into(), "allow".into(), "10.1.0.20, 10.1.0.21".into(), "443".into())));
    assert_eq!(proposed.last().unwrap().0, "default-deny");
    assert!(!proposed.iter().any(|p| p.3 == "8081" && p.1 == "allow"), "nothing opens the port only the scanner used");

    let md = lab.ok(&args);
    assert!(md.contains("| root cause | rule allow-all is wide open"), "{md}");
    assert!(md.contains("| id | direction | action | source | destination | ports | protocol |"), "{md}");

    // A table with a row that does not fit its header names the file and line.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("rules.csv");
    std::fs::write(&bad, "id,action,source\nr1,allow,any\nr2,maybe,any\n").unwrap();
    let out = lab.run(&["rca", "--logs", &fixture("scan-then-allow.md"), "--rules", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:3:", bad.display())) && err.contains("expected allow or deny"), "{err}");
}

#[test]
fn rca_without_rules_reads_the_labs_security_groups_from_its_ledger() {
    let lab = crate::Lab::new();
    lab.ok(&["up", "--detector", "lambda"]);
    let out = lab.ok(&["rca", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let titles: Vec<&str> = report["issues"].as_array().unwrap().iter().map(|i| i["title"].as_str().unwrap()).collect();
    // The target's egress is open (the exfiltration path the lab exists to show); nothing
    // admits traffic from anywhere: containment cuts with the subnet's network ACL.
    assert!(titles.iter().any(|t| t.contains("cis-default-target-sg/outbound-1")), "{titles:?}");
    assert!(!titles.iter().any(|t| t.contains("inbound")), "{titles:?}");
    lab.ok(&["down"]);
    // With --isolation two-step, AWS's runbook, rca does flag the allow-all group it needs.
    lab.ok(&["up", "--detector", "lambda", "--isolation", "two-step"]);
    let out = lab.ok(&["rca", "--format", "json"]);
    assert!(out.contains("cis-default-allow-all-sg/inbound-1"), "{out}");
    lab.ok(&["down"]);
}

/// A local HTTP server the test scripts: it records each request and answers with the
/// next scripted reply, after an optional delay. Never the internet.
struct FakeServer {
    url: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
}

#[derive(Clone, Debug)]
struct Recorded {
    request_line: String,
    headers: Vec<(String, String)>,
    body: serde_json::Value,
}

struct Reply {
    status: u16,
    body: String,
    delay: std::time::Duration,
}

impl FakeServer {
    fn start(replies: Vec<Reply>) -> FakeServer {
        use std::io::{BufRead as _, Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&requests);
        std::thread::spawn(move || {
            for reply in replies {
                let Ok((stream, _)) = listener.accept() else { return };
                let mut reader = std::io::BufReader::new(stream);
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                let mut headers = Vec::new();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let line = line.trim_end().to_string();
                    if line.is_empty() {
                        break;
                    }
                    let (k, v) = line.split_once(':').unwrap();
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
                let length: usize = headers.iter().find(|(k, _)| k == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                seen.lock().unwrap().push(Recorded {
                    request_line: request_line.trim_end().to_string(),
                    headers,
                    body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                });
                std::thread::sleep(reply.delay);
                let mut stream = reader.into_inner();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
                    reply.status,
                    reply.body.len(),
                    reply.body
                );
            }
        });
        FakeServer { url, requests }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

fn now() -> std::time::Duration {
    std::time::Duration::ZERO
}

/// A chat-completions reply whose message is `content`.
fn chat(content: &str) -> Reply {
    Reply {
        status: 200,
        body: serde_json::json!({"choices": [{"message": {"role": "assistant", "content": content}}]}).to_string(),
        delay: now(),
    }
}

const GOOD_TRIAGE: &str = r#"Here is the triage:
```json
{"findings": [
  {"alert_ids": ["a-04", "a-05", "a-06", "a-07"], "category": "active-attack", "severity": "critical", "why": "a scan that got through on 8080", "action": "block 198.51.100.23"},
  {"alert_ids": ["a-03"], "category": "outage", "severity": "critical", "why": "the database disk is full", "action": "free space on db-1"},
  {"alert_ids": ["a-01", "a-08"], "category": "noise", "severity": "info", "why": "health checks", "action": "none"}
]}
```"#;

#[test]
fn the_openai_analyser_sends_the_prompts_with_the_builtin_evidence_and_checks_the_answer() {
    let lab = crate::Lab::new();
    let server = FakeServer::start(vec![chat(GOOD_TRIAGE)]);
    let out = lab.ok(&[
        "triage",
        &fixture("alerts-mixed.jsonl"),
        "--analyser",
        "openai",
        "--url",
        &server.url,
        "--model",
        "fdtn-ai/Foundation-Sec-8B-Instruct",
        "--format",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["analyser"], "openai");
    assert_eq!(report["findings"][0]["alert_ids"][3], "a-07");
    assert_eq!(report["findings"][1]["category"], "outage");
    assert_eq!(report["findings"][1]["evidence"][0].as_str().unwrap().split(':').next(), Some("#3 a-03 2026-11-20T08"));

    // The exact request: one POST to the completions path, JSON, the model, the system
    // prompt from assets/, the builtin engine's findings and the raw alerts, temperature 0.
    let [request] = &server.requests()[..] else { panic!("one request: {:?}", server.requests()) };
    assert_eq!(request.request_line, "POST /v1/chat/completions HTTP/1.1");
    assert!(request.headers.contains(&("content-type".into(), "application/json".into())), "{:?}", request.headers);
    let body = &request.body;
    assert_eq!(body["model"], "fdtn-ai/Foundation-Sec-8B-Instruct");
    assert_eq!(body["temperature"], 0.0);
    assert_eq!(body["max_tokens"], 1024);
    assert_eq!(body["messages"][0]["role"], "system");
    let system = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/prompts/triage-system.md")).unwrap();
    assert_eq!(body["messages"][0]["content"], system.as_str());
    let user = body["messages"][1]["content"].as_str().unwrap();
    assert!(user.contains("\"category\": \"outage\"") && user.contains("\"a-03\""), "the builtin evidence: {user}");
    assert!(user.contains("write failed: No space left on device"), "the raw input: {user}");
}

#[test]
fn malformed_empty_unknown_and_late_answers_are_clear_errors_with_status_2() {
    let lab = crate::Lab::new();
    let cases: Vec<(Reply, &str)> = vec![
        (chat("I think a-03 matters most."), "no JSON object in the answer"),
        (chat(""), "the answer is empty"),
        (
            chat(r#"{"findings": [{"alert_ids": ["zz-99"], "category": "outage", "severity": "critical", "why": "-", "action": "-"}]}"#),
            "names alert id 'zz-99', which is not in the input",
        ),
        (
            chat(
                r#"{"findings": [{"alert_ids": ["a-03"], "category": "catastrophe", "severity": "critical", "why": "-", "action": "-"}]}"#,
            ),
            "not the findings object",
        ),
        (chat(r#"{"findings": []}"#), "has no findings"),
        (Reply { status: 200, body: "<html>oops</html>".into(), delay: now() }, "the server's reply is not JSON"),
        (Reply { status: 500, body: "model not loaded".into(), delay: now() }, "HTTP 500: 'model not loaded'"),
        (Reply { status: 200, body: "{}".into(), delay: std::time::Duration::from_secs(4) }, "did not answer within 1 s: raise --timeout"),
    ];
    for (reply, expected) in cases {
        let server = FakeServer::start(vec![reply]);
        let out = lab.run(&[
            "triage",
            &fixture("alerts-mixed.jsonl"),
            "--analyser",
            "openai",
            "--url",
            &server.url,
            "--model",
            "m",
            "--timeout",
            "1",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{expected}: {err}");
        assert!(err.contains(expected), "expected '{expected}' in: {err}");
        assert!(out.stdout.is_empty(), "no half-report on stdout");
    }
    // Flags checked before anything is sent.
    for url in ["ftp://api.example.com", "api.example.com:8000", "https://"] {
        let out = lab.run(&["triage", &fixture("alerts-mixed.jsonl"), "--analyser", "openai", "--url", url, "--model", "m"]);
        assert_eq!(out.status.code(), Some(2), "{url}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("give the server as http://HOST[:PORT] or https://HOST[:PORT]"), "{url}");
    }
    let out = lab.run(&["triage", &fixture("alerts-mixed.jsonl"), "--analyser", "openai", "--url", "http://127.0.0.1:9"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --model"));
    // Nothing listening: unreachable, said so.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out =
        lab.run(&["triage", &fixture("alerts-mixed.jsonl"), "--analyser", "openai", "--url", &format!("http://{closed}"), "--model", "m"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("could not be reached"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_sagemaker_analyser_invokes_the_endpoint_as_the_lmi_container_expects() {
    let lab = crate::Lab::new();
    let rca_answer = serde_json::json!({"issues": [{
        "title": "scan through allow-all", "category": "active-attack", "issue": "203.0.113.66 got in on 8081",
        "root_cause": "allow-all admits any port", "rule": "allow-all",
        "proposed_rules": [{"id": "deny-scanner", "direction": "inbound", "action": "deny", "source": "203.0.113.66", "destination": "10.1.1.10", "ports": "any", "protocol": "any"}],
        "evidence_lines": [6, 10]
    }]});
    let generated = serde_json::json!([{"generated_text": rca_answer.to_string()}]).to_string();
    let server = FakeServer::start(vec![Reply { status: 200, body: generated, delay: now() }]);
    let out = lab
        .cmd(&[
            "--endpoint-url",
            &server.url,
            "rca",
            "--logs",
            &fixture("scan-then-allow.md"),
            "--rules",
            &fixture("rules.csv"),
            "--analyser",
            "sagemaker",
            "--endpoint",
            "cis-test-llm-endpoint",
            "--format",
            "json",
        ])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["analyser"], "sagemaker");
    assert_eq!(report["issues"][0]["rule"], "allow-all");
    assert_eq!(
        report["issues"][0]["evidence"][1].as_str().unwrap(),
        "line 10: | 2026-11-20T09:01:09Z | 203.0.113.66 | 10.1.1.10 | 8081 | tcp | ALLOW | |"
    );
    let [request] = &server.requests()[..] else { panic!("one request") };
    assert_eq!(request.request_line, "POST /endpoints/cis-test-llm-endpoint/invocations HTTP/1.1");
    let body = &request.body;
    assert_eq!(
        body["parameters"],
        serde_json::json!({"max_new_tokens": 1024, "temperature": 0.0, "do_sample": false, "repetition_penalty": 1.2})
    );
    let inputs = body["inputs"].as_str().unwrap();
    assert!(inputs.starts_with("You are a network security engineer"), "{inputs}");
    assert!(inputs.contains("allow-all |") && inputs.contains("   10: | 2026-11-20T09:01:09Z | 203.0.113.66"), "{inputs}");

    // An answer blaming a rule that is not there is refused.
    let wrong = serde_json::json!([{"generated_text": rca_answer.to_string().replace("\"rule\":\"allow-all\"", "\"rule\":\"rule-42\"")}])
        .to_string();
    let server = FakeServer::start(vec![Reply { status: 200, body: wrong, delay: now() }]);
    let out = lab
        .cmd(&[
            "--endpoint-url",
            &server.url,
            "rca",
            "--logs",
            &fixture("scan-then-allow.md"),
            "--rules",
            &fixture("rules.csv"),
            "--analyser",
            "sagemaker",
            "--endpoint",
            "e",
        ])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("blames rule 'rule-42', which is not in the rules given"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn up_with_llm_prices_deploys_and_removes_the_foundation_sec_endpoint_on_the_simulator() {
    let lab = crate::Lab::new();
    let plan = lab.ok(&["plan", "--llm", "--detector", "lambda"]);
    assert!(plan.contains("llm-endpoint") && plan.contains("sagemaker:ml.g6e.2xlarge $2.8026/h"), "{plan}");
    let plain = lab.ok(&["plan", "--detector", "lambda"]);
    assert!(!plain.contains("llm-endpoint"), "{plain}");
    let up = lab.ok(&["up", "--llm", "--detector", "lambda", "--output", "json"]);
    let report: serde_json::Value = serde_json::from_str(&up).unwrap();
    let roles: Vec<&str> = report["resources"].as_array().unwrap().iter().map(|r| r["role"].as_str().unwrap()).collect();
    for role in ["llm-role", "llm-policy", "llm-model", "llm-endpoint-config", "llm-endpoint"] {
        assert!(roles.contains(&role), "{role} in {roles:?}");
    }
    let down = lab.ok(&["down"]);
    assert!(down.contains("llm-endpoint"), "{down}");
    let status = lab.run(&["status", "--all"]);
    assert!(!String::from_utf8_lossy(&status.stdout).contains("llm"), "{}", String::from_utf8_lossy(&status.stdout));
}

#[test]
fn a_lab_runs_root_cause_is_in_its_report_and_rca_run_explains_it() {
    let lab = crate::Lab::new();
    lab.ok(&["up", "--detector", "lambda"]);
    lab.ok(&["attack", "exfil-unusual-port"]);
    let report: serde_json::Value = serde_json::from_str(&lab.ok(&["report", "--format", "json"])).unwrap();
    let rc = &report["root_causes"][0];
    assert_eq!((rc["run_id"].as_str(), rc["scenario"].as_str()), (Some("run-0001"), Some("exfil-unusual-port")));
    let issue = &rc["issues"][0];
    assert_eq!(issue["rule"], "cis-default-target-sg/outbound-1");
    assert!(issue["issue"].as_str().unwrap().contains(":4444"), "{issue}");
    assert!(issue["root_cause"].as_str().unwrap().contains("on every port, so the exfiltration needed no opening"), "{issue}");
    assert!(rc["issues"].as_array().unwrap().iter().all(|i| i["category"] != "hygiene"), "only what explains the run");
    let md = lab.ok(&["report", "--format", "markdown"]);
    assert!(md.contains("## Root causes") && md.contains("| run-0001 | exfil-unusual-port |"), "{md}");
    let html = lab.ok(&["report", "--format", "html"]);
    assert!(html.contains("<h2>Root causes</h2>") && html.contains("<td>cis-default-target-sg/outbound-1</td>"), "the page has them too");

    let rca = lab.ok(&["rca", "--run", "run-0001"]);
    assert!(rca.contains("| rule | cis-default-target-sg/outbound-1 |"), "{rca}");
    assert!(rca.contains("| egress-default | outbound | deny | target | 0.0.0.0/0 | any | any |"), "{rca}");
    let out = lab.run(&["rca", "--run", "run-0099"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--run run-0099: no such run"), "{}", String::from_utf8_lossy(&out.stderr));
    lab.ok(&["down"]);
}

/// A chat-completions server over real TLS: Python's `ssl` with a certificate openssl
/// makes for 127.0.0.1, trusted through `SSL_CERT_FILE` as a private CA would be.
#[test]
fn the_openai_analyser_speaks_https_and_refuses_a_certificate_it_does_not_trust() {
    use std::io::BufRead as _;
    let lab = crate::Lab::new();
    let dir = lab.state().join("tls");
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key, empty) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("no-certificates"));
    std::fs::create_dir_all(&empty).unwrap();
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let answer = serde_json::json!({"choices": [{"message": {"role": "assistant", "content": GOOD_TRIAGE}}]}).to_string();
    let server = |requests: usize| {
        let script = format!(
            r#"
import http.server, ssl, sys
answer = sys.argv[3].encode()
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
for _ in range({requests}):
    srv.handle_request()
"#
        );
        let mut child = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&cert)
            .arg(&key)
            .arg(&answer)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs");
        let mut port = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut port).unwrap();
        (child, format!("https://127.0.0.1:{}", port.trim()))
    };
    let triage = |url: &str, trusted: bool| {
        let mut c =
            lab.cmd(&["triage", &fixture("alerts-mixed.jsonl"), "--analyser", "openai", "--url", url, "--model", "m", "--format", "json"]);
        c.env("SSL_CERT_DIR", &empty);
        if trusted {
            c.env("SSL_CERT_FILE", &cert);
        } else {
            c.env("SSL_CERT_FILE", dir.join("no-such-bundle.pem"));
        }
        c.output().unwrap()
    };

    let (mut child, url) = server(1);
    let out = triage(&url, true);
    let _ = child.kill();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((report["analyser"].as_str(), report["findings"][1]["category"].as_str()), (Some("openai"), Some("outage")));

    // The same server, its certificate not trusted: refused, said so, nothing on stdout.
    let (mut child, url) = server(1);
    let out = triage(&url, false);
    let _ = child.kill();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("could not be reached") && err.to_lowercase().contains("certificate"), "{err}");
    assert!(out.stdout.is_empty());
}

/// Every verb honours `--output json`: its standard output parses as JSON. The verbs are
/// read from `cis --help`, so a new verb without a case here fails this test.
#[test]
fn every_verb_prints_json_that_parses_under_output_json() {
    let lab = crate::Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).display().to_string();
    let help = lab.ok(&["--help"]);
    let verbs: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    assert!(verbs.len() > 12 && verbs.contains(&"triage".to_string()), "{verbs:?}");
    // The shell-completion script is a script for the shell, not a result; help is clap's.
    // `arm` refuses every simulated lab (exit 2): its JSON is parsed against moto, in
    // aws::a_metric_filter_lab_puts_its_filter_and_calibrated_alarm_contains_on_the_alarms_event_and_goes_away.
    let exempt = ["completions", "help", "arm"];
    let (alerts, logs, rules) = (fixture("alerts-mixed.jsonl"), fixture("scan-then-allow.md"), fixture("rules.csv"));
    let (flows, model) = (format!("{}/flows.log", d("export")), d("model.json"));
    let cases: Vec<Vec<String>> = [
        vec!["plan"],
        vec!["up"],
        vec!["status"],
        vec!["scenarios", "list"],
        vec!["scenarios", "show", "exfil-https-bulk"],
        vec!["attack", "exfil-https-bulk"],
        vec!["report"],
        vec!["release"],
        vec!["rca"],
        vec!["down"],
        vec!["sim", "export", "--days", "1", "--scenario", "exfil-https-bulk", "--out", &d("export")],
        vec!["sim", "sweep", "exfil-https-bulk", "--runs", "1"],
        vec!["flows", &flows],
        vec!["train", "--baseline", &flows, "--out", &model],
        vec!["detect", &flows, "--model", &model],
        vec!["triage", &alerts],
        vec!["rca", "--logs", &logs, "--rules", &rules],
        vec!["policy"],
        vec!["demo"],
    ]
    .into_iter()
    .map(|c| c.into_iter().map(String::from).collect())
    .collect();
    for verb in verbs.iter().filter(|v| !exempt.contains(&v.as_str())) {
        assert!(cases.iter().any(|c| &c[0] == verb), "verb '{verb}' has no --output json case here: add one");
    }
    for case in &cases {
        let args: Vec<&str> = ["--output", "json"].into_iter().chain(case.iter().map(String::as_str)).collect();
        let out = lab.ok(&args);
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&out) {
            panic!("cis {args:?} printed what is not JSON ({e}):\n{out}");
        }
    }
}

#[test]
fn triage_reads_guardduty_security_hub_and_alarm_shapes_and_ranks_by_the_written_order() {
    let lab = crate::Lab::new();
    let findings = |file: &str| -> Vec<(Vec<String>, String, String, Vec<String>)> {
        let out = lab.ok(&["--output", "json", "triage", &fixture(file)]);
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let strs = |k: &str| f[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap_or("-").to_string()).collect::<Vec<_>>();
                (strs("alert_ids"), f["category"].as_str().unwrap().to_string(), f["severity"].as_str().unwrap().to_string(), strs("codes"))
            })
            .collect()
    };
    // `aws guardduty get-findings` (PascalCase): the C&C backdoor first, the trail turned
    // off next (logging lost), the SSH brute force of severity 2 after them.
    let gd = findings("guardduty-get-findings.json");
    let order: Vec<(&str, &str)> = gd.iter().map(|f| (f.0[0].as_str(), f.1.as_str())).collect();
    assert_eq!(
        order,
        [
            ("1ab2c3d4e5f6a7b8c9d0e1f2EXAMPLE1", "active-attack"),
            ("1ab2c3d4e5f6a7b8c9d0e1f2EXAMPLE3", "security-logging"),
            ("1ab2c3d4e5f6a7b8c9d0e1f2EXAMPLE2", "brute-force")
        ]
    );
    assert_eq!(gd[0].3, ["Backdoor:EC2/C&CActivity.B!DNS"], "the finding's type is its code");
    // The EventBridge event that carries a finding (camelCase).
    let ev = findings("guardduty-event.json");
    assert_eq!((ev[0].0[0].as_str(), ev[0].1.as_str()), ("16afba5c5c43e07c9e3e5e2e544e95df", "hygiene"));
    // Security Hub (ASFF): a GuardDuty type carried in Types decides; a failed control is
    // hygiene; a passed one is noise.
    let sh = findings("securityhub-findings.json");
    assert_eq!(sh.iter().map(|f| f.1.as_str()).collect::<Vec<_>>(), ["active-attack", "hygiene", "noise"]);
    assert_eq!(sh[0].3, ["Trojan:EC2/DNSDataExfiltration"]);
    assert_eq!(sh[1].3, ["EC2.19"]);
    // A CloudWatch alarm's state change in ALARM.
    let cw = findings("cloudwatch-alarm-event.json");
    assert_eq!((cw[0].0[0].as_str(), cw[0].1.as_str()), ("c4c1c1c9-6542-e61b-6ef0-8c4d36933a92", "routine-error"));

    // The cases the README's order decides, with the alerts' own ids (alert_uuid) and codes.
    let r = findings("alerts-rankings.jsonl");
    let of = |uuid: &str| r.iter().position(|f| f.0.iter().any(|i| i.ends_with(uuid))).unwrap();
    let category = |uuid: &str| r[of(uuid)].1.clone();
    assert_eq!(category("0009"), "outage");
    assert_eq!(category("0006"), "denial-of-service");
    assert_eq!(category("0003"), "security-logging", "a full log partition blinds an investigation");
    assert_eq!(category("0004"), "security-logging", "a failed log push too");
    assert_eq!(category("0001"), "privilege-change", "a security admin's permanent ssh allow-list entry");
    assert_eq!(category("0002"), "privilege-change", "an admin's permanent 0.0.0.0/0 rule on port 22");
    assert_eq!(category("0005"), "brute-force", "a lockout after failed logins");
    assert_eq!(category("0007"), "security-component");
    assert_eq!(category("0008"), "hygiene");
    assert!(of("0009") < of("0006") && of("0006") < of("0005") && of("0005") < of("0008"));
    assert_eq!(r[of("0001")].3, ["SEC3007"]);
    assert_eq!(r[of("0001")].2, "high");
    let md = lab.ok(&["triage", &fixture("alerts-rankings.jsonl")]);
    assert!(md.contains("7f9c1a52-0001 (SEC3007)"), "the code beside the id: {md}");
    // The denial-of-service alert does not say traffic is blocked, so neither does the why.
    let json: serde_json::Value = serde_json::from_str(&lab.ok(&["--output", "json", "triage", &fixture("alerts-rankings.jsonl")])).unwrap();
    let dos = json["findings"].as_array().unwrap().iter().find(|f| f["category"] == "denial-of-service").unwrap();
    assert!(!dos["why"].as_str().unwrap().contains("block"), "{dos}");

    // No id field at all: the alerts are cited by place, and a warning says so.
    let dir = tempfile::tempdir().unwrap();
    let anon = dir.path().join("anon.jsonl");
    std::fs::write(&anon, "{\"message\": \"disk full on db-1\"}\n{\"message\": \"GET / 200\"}\n").unwrap();
    let out = lab.run(&["triage", anon.to_str().unwrap()]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 of 2 alerts have no id field") && err.contains("alert_uuid"), "{err}");
}

#[test]
fn rca_reads_a_portless_firewall_log_and_a_rules_table_in_the_words_people_use() {
    let lab = crate::Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("firewall.md");
    std::fs::write(
        &logs,
        "| Timestamp | Source IP | Destination IP | Protocol | Action | Reason | User |\n\
         |---|---|---|---|---|---|---|\n\
         | 2026-11-02 10:00:01 | 10.0.2.15 | 10.0.1.10 | TCP | Allowed | Established Connection | alice |\n\
         | 2026-11-02 10:01:10 | 203.0.113.45 | 10.0.1.10 | TCP | Denied | Suspicious Port Scan | N/A |\n\
         | 2026-11-02 10:01:12 | 203.0.113.45 | 10.0.1.10 | TCP | Denied | Port scan detected | N/A |\n\
         | 2026-11-02 10:01:30 | 203.0.113.45 | 10.0.1.10 | TCP | Allowed | Matched rule 300 | N/A |\n\
         | 2026-11-02 10:01:35 | 203.0.113.45 | 10.0.1.10 | TCP | Allowed | Data Transfer | N/A |\n",
    )
    .unwrap();
    let rules = dir.path().join("rules.md");
    std::fs::write(
        &rules,
        "| Rule ID | Source IP | Destination IP | Protocol | Port Range | Action |\n\
         |---|---|---|---|---|---|\n\
         | 100 | 10.0.2.0/24 | 10.0.1.10 | TCP | 443 | Allow |\n\
         | 200 | Any | 10.0.1.10 | TCP | 22 | Deny |\n\
         | 300 | Any | Any | Any | 1-65535 | Allow |\n",
    )
    .unwrap();
    let out = lab.ok(&["--output", "json", "rca", "--logs", logs.to_str().unwrap(), "--rules", rules.to_str().unwrap()]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let issue = &report["issues"][0];
    assert_eq!(issue["rule"], "300", "{report}");
    assert_eq!(issue["category"], "active-attack");
    assert!(issue["root_cause"].as_str().unwrap().contains("admits any source on all 65,535 ports"), "{issue}");
    let proposed = issue["proposed_rules"].as_array().unwrap();
    assert_eq!((proposed[0]["action"].as_str(), proposed[0]["source"].as_str()), (Some("deny"), Some("203.0.113.45")));
    assert!(proposed.iter().all(|r| r["id"] != "300"), "the wide-open rule is gone: {proposed:?}");
    assert!(proposed.iter().any(|r| r["id"] == "100" && r["source"] == "10.0.2.0/24"), "the narrow rule stays as it was");
    assert_eq!(proposed.last().unwrap()["id"], "default-deny");

    // An unknown column in a rules table is named, never read as `any`.
    let odd = dir.path().join("odd.csv");
    std::fs::write(&odd, "id,Origin Net,action,ports\nr1,10.0.2.0/24,allow,443\n").unwrap();
    let out = lab.run(&["rca", "--logs", logs.to_str().unwrap(), "--rules", odd.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("column 'Origin Net'") && err.contains(&format!("{}:1:", odd.display())), "{err}");
    // An action outside the known words names its line.
    let bad = dir.path().join("bad-action.md");
    std::fs::write(&bad, "| Source IP | Action |\n|---|---|\n| 10.0.0.1 | Allowed |\n| 10.0.0.2 | Quarantined |\n").unwrap();
    let out = lab.run(&["rca", "--logs", bad.to_str().unwrap(), "--rules", rules.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:4:", bad.display())) && err.contains("'Quarantined'"), "{err}");
    // An unknown log column is a warning, and the rest is read.
    let extra = dir.path().join("extra.csv");
    std::fs::write(&extra, "Src IP,Dst Port,Result,Colour\n203.0.113.7,22,DENY,red\n203.0.113.7,23,DENY,red\n203.0.113.7,3389,Drop,red\n203.0.113.7,8081,ACCEPT,red\n").unwrap();
    let out = lab.run(&["--output", "json", "rca", "--logs", extra.to_str().unwrap(), "--rules", rules.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("column 'Colour'"));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["issues"][0]["rule"], "300");
}
