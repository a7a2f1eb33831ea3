//! The IAM policies the lab creates, as it renders them, checked by parliament (PyPI,
//! installed by `.ci/run` into `.venv/ci`) with its community auditors, and the trust
//! policies by hand (parliament reads identity policies only).

use std::io::Write;
use std::process::{Command, Stdio};

use cis::lab::{rendered, DetectorMode, LabGraph, LabName, LabOptions, Refs, ResourceConfig, ResourceKind};

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";

/// parliament on one policy document: whether it ran cleanly, its findings (one JSON
/// object a line) and what it said on stderr.
fn parliament_on(document: &str) -> (bool, String, String) {
    // parliament reads the policy on standard input when no --file is given.
    let mut child = Command::new(parliament())
        .args(["--json", "--include-community-auditors"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("parliament starts");
    child.stdin.take().unwrap().write_all(document.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn parliament() -> std::path::PathBuf {
    let path = std::env::var_os("CIS_PARLIAMENT")
        .map(Into::into)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/ci/bin/parliament"));
    assert!(path.exists(), "{} is missing: run .ci/run once (it installs parliament into .venv/ci), or set CIS_PARLIAMENT", path.display());
    path
}

/// Every policy document the lab creates with these options: (what, permissions?, text).
fn documents(options: &LabOptions) -> Vec<(String, bool, String)> {
    let lab: LabName = "lab".parse().unwrap();
    let graph = LabGraph::build(&lab, options, "run-1");
    // Ids of the shape AWS gives each kind, so rendered ARNs are real ARNs.
    let refs: Refs = graph
        .resources
        .iter()
        .map(|s| {
            let id = match s.kind {
                ResourceKind::SnsTopic => format!("arn:aws:sns:{REGION}:{ACCOUNT}:{}", s.name),
                ResourceKind::LogGroup => format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{}", s.name),
                ResourceKind::SageMakerEndpoint => format!("arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{}", s.name),
                ResourceKind::LambdaFunction => format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{}", s.name),
                ResourceKind::IamRole => format!("arn:aws:iam::{ACCOUNT}:role/{}", s.name),
                ResourceKind::EventRule => format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/{}", s.name),
                _ => format!("{}-0123456789abcdef0", s.kind.name().rsplit(':').next().unwrap()),
            };
            (s.role, id)
        })
        .collect();
    let mut out = Vec::new();
    for spec in &graph.resources {
        let spec = rendered(spec, &lab, REGION, ACCOUNT, &refs).unwrap();
        match &spec.config {
            ResourceConfig::InlinePolicy { document, .. } => out.push((spec.role.name().to_string(), true, document.clone())),
            ResourceConfig::IamRole { trust_policy, .. } => out.push((spec.role.name().to_string(), false, trust_policy.clone())),
            _ => {}
        }
    }
    out
}

fn option_sets() -> Vec<LabOptions> {
    vec![
        LabOptions { ttl_s: Some(4 * 3600), ..Default::default() },
        LabOptions { detector: DetectorMode::Lambda, ..Default::default() },
        LabOptions { detector: DetectorMode::MetricFilter, llm: true, ..Default::default() },
    ]
}

#[test]
fn parliament_finds_nothing_in_the_labs_permission_policies() {
    let mut checked = 0;
    for options in option_sets() {
        for (what, _, document) in documents(&options).into_iter().filter(|(_, permissions, _)| *permissions) {
            assert!(!document.contains("${"), "{what}: unrendered placeholder in {document}");
            let (ok, findings, stderr) = parliament_on(&document);
            if what == "janitor-policy" {
                // The janitor deletes the lab's roles, which parliament counts as managing
                // permissions: that finding, for deletions of the lab's own (cis-<lab>-*)
                // and nothing else.
                let found: Vec<serde_json::Value> = findings.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
                assert!(found.len() == 1 && found[0]["issue"] == "PERMISSIONS_MANAGEMENT_ACTIONS", "{findings}{stderr}");
                for action in found[0]["location"]["actions"].as_array().unwrap() {
                    let a = action.as_str().unwrap();
                    assert!(["delete", "detach", "remove"].iter().any(|v| a.split(':').nth(1).unwrap().starts_with(v)), "{a}");
                }
                assert!(document.contains("arn:aws:iam::123456789012:role/cis-lab-*"), "{document}");
            } else {
                assert!(
                    ok && findings.trim().is_empty(),
                    "parliament on {what} ({:?} detector): {findings}{stderr}\n{document}",
                    options.detector
                );
            }
            checked += 1;
        }
    }
    // flow-log, detector and containment in both model modes (the endpoint mode's detector
    // policy has the InvokeEndpoint statement too), the endpoint mode's model role, and
    // with a TTL the janitor's and the scheduler's; and the metric-filter lab with the
    // LLM: flow-log, containment and the LLM's role.
    assert_eq!(checked, 12, "every permission policy was checked");
}

#[test]
fn parliament_does_flag_a_broad_policy() {
    // The check above can fail: the same run on an allow-everything policy reports it.
    let (_, findings, _) = parliament_on(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ec2:ModifyInstanceAttribute","sns:Publish"],"Resource":"*"}]}"#,
    );
    assert!(findings.contains("RESOURCE_STAR"), "{findings}");
}

#[test]
fn containment_acts_only_on_its_labs_tagged_resources_and_topic() {
    let docs = documents(&LabOptions::default());
    let (_, _, containment) = docs.iter().find(|(what, p, _)| what == "containment-policy" && *p).expect("the containment policy");
    let policy: serde_json::Value = serde_json::from_str(containment).unwrap();
    for st in policy["Statement"].as_array().unwrap() {
        let actions: Vec<String> = match &st["Action"] {
            serde_json::Value::String(a) => vec![a.clone()],
            a => a.as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect(),
        };
        let resource = st["Resource"].to_string();
        let writes = actions.iter().any(|a| !a.starts_with("ec2:Describe") && a.starts_with("ec2:"));
        if writes && st["Effect"] == "Allow" {
            let condition = st["Condition"].to_string();
            // The network ACL is the VPC's default one, which AWS creates untagged: its
            // entries are changed only in the lab's VPC.
            let in_labs_vpc = condition.contains(&format!("\"ec2:Vpc\":\"arn:aws:ec2:{REGION}:{ACCOUNT}:vpc/vpc-0123456789abcdef0\""));
            assert!(
                condition.contains("\"aws:ResourceTag/cis:lab\":\"lab\"")
                    || condition.contains("\"aws:RequestTag/cis:lab\":\"lab\"")
                    || in_labs_vpc,
                "an EC2 change without the lab's tag condition: {st}"
            );
            if in_labs_vpc {
                assert_eq!(actions, ["ec2:CreateNetworkAclEntry", "ec2:DeleteNetworkAclEntry"], "{st}");
            }
            assert!(!resource.contains("\"*\""), "{st}");
        }
        if actions.iter().any(|a| a == "sns:Publish") {
            assert_eq!(st["Resource"], format!("arn:aws:sns:{REGION}:{ACCOUNT}:cis-lab-alerts"), "{st}");
        }
    }
    let flow_log =
        docs.iter().find(|(what, p, _)| what == "flow-log-policy" && *p).map(|(_, _, d)| d.clone()).expect("the flow-log policy");
    assert!(
        flow_log.contains(&format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:cis-lab-flow-logs"))
            || flow_log.contains("log-group:/cis/lab"),
        "{flow_log}"
    );
    // `*` only where the Service Authorization Reference gives no resource type: listing
    // log groups, which AWS's documented flow-log policy has.
    let flow_log: serde_json::Value = serde_json::from_str(&flow_log).unwrap();
    for st in flow_log["Statement"].as_array().unwrap() {
        if st["Resource"] == "*" || st["Resource"] == serde_json::json!(["*"]) {
            assert_eq!(st["Action"], "logs:DescribeLogGroups", "{st}");
        }
    }
}

#[test]
fn trust_policies_name_one_service_and_only_assume_role() {
    let mut seen = 0;
    for options in option_sets() {
        for (what, _, document) in documents(&options).into_iter().filter(|(_, permissions, _)| !*permissions) {
            let policy: serde_json::Value = serde_json::from_str(&document).unwrap();
            for st in policy["Statement"].as_array().unwrap() {
                assert_eq!(st["Effect"], "Allow", "{what}");
                assert_eq!(st["Action"], "sts:AssumeRole", "{what}");
                let service = st["Principal"]["Service"].as_str().unwrap_or_else(|| panic!("{what}: not a single service principal: {st}"));
                assert!(service.ends_with(".amazonaws.com") && !service.contains('*'), "{what}: {service}");
            }
            seen += 1;
        }
    }
    assert!(seen >= 7, "{seen} trust policies");
}

/// The SDK operations the AWS backend (and the sagemaker analyser) call, as IAM actions:
/// every `<client>.<operation>()` in their source, for the clients they name.
fn sdk_actions() -> std::collections::BTreeSet<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(root.join("src/backends/aws"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.push(root.join("src/analysis/llm.rs"));
    files.sort();
    // The variable each file names its clients by, and the service's IAM prefix.
    let clients = [
        ("ec2", "ec2"),
        ("ssm", "ssm"),
        ("events", "events"),
        ("iam", "iam"),
        ("lambda", "lambda"),
        ("logs", "logs"),
        ("metrics", "cloudwatch"),
        ("s3", "s3"),
        ("sm", "sagemaker"),
        ("sagemaker", "sagemaker"),
        ("runtime", "sagemaker"),
        ("sns", "sns"),
        ("sts", "sts"),
        ("tagging", "tag"),
        ("scheduler", "scheduler"),
    ];
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut actions = std::collections::BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let bytes = text.as_bytes();
        for (var, prefix) in clients {
            let mut from = 0;
            while let Some(at) = text[from..].find(var).map(|i| i + from) {
                from = at + var.len();
                if at > 0 && ident(bytes[at - 1]) || bytes.get(from).is_some_and(|b| ident(*b)) {
                    continue;
                }
                // `<var>` then `.`, then the operation and `()`, whitespace allowed between.
                let rest = text[from..].trim_start();
                let Some(rest) = rest.strip_prefix('.') else { continue };
                let rest = rest.trim_start();
                let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if name.is_empty()
                    || !rest[name.len()..].starts_with("()")
                    || matches!(name.as_str(), "clone" | "into_paginator" | "send" | "iter" | "len" | "is_empty")
                {
                    continue;
                }
                let pascal: String = name
                    .split('_')
                    .map(|w| {
                        let mut c = w.chars();
                        c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
                    })
                    .collect();
                // Where IAM's action is not the operation's name.
                let action = match (prefix, name.as_str()) {
                    ("sts", "get_caller_identity") => continue, // needs no permission
                    ("s3", "delete_objects") => "s3:DeleteObject".to_string(),
                    ("s3", "head_bucket" | "list_objects_v2") => "s3:ListBucket".to_string(),
                    ("s3", "list_buckets") => "s3:ListAllMyBuckets".to_string(),
                    ("s3", "put_public_access_block") => "s3:PutBucketPublicAccessBlock".to_string(),
                    _ => format!("{prefix}:{pascal}"),
                };
                actions.insert(action);
            }
        }
    }
    actions
}

#[test]
fn the_operator_policy_allows_every_call_the_aws_backend_makes_and_what_they_imply() {
    let called = sdk_actions();
    println!("{} IAM actions called by the AWS backend", called.len());
    // The walk finds what it must: a few from each service.
    for a in [
        "ec2:RunInstances",
        "iam:CreateRole",
        "lambda:PutFunctionConcurrency",
        "logs:PutMetricFilter",
        "cloudwatch:PutMetricAlarm",
        "sagemaker:CreateEndpoint",
        "s3:PutObject",
        "tag:GetResources",
        "ssm:SendCommand",
        "sns:Publish",
        "sagemaker:InvokeEndpoint",
    ] {
        assert!(called.contains(a), "the walk over the source missed {a}: {called:?}");
    }
    assert!(called.len() > 120, "{called:?}");
    let missing: Vec<&String> = called.iter().filter(|a| !cis::lab::operator::allows(a)).collect();
    assert!(missing.is_empty(), "`cis policy` does not allow what the AWS backend calls: {missing:?}");
    // Tags go with each create; roles are passed to the functions, the models, the
    // instance and the flow log.
    for implied in [
        "iam:PassRole",
        "iam:TagRole",
        "iam:TagInstanceProfile",
        "lambda:TagResource",
        "logs:TagResource",
        "sns:TagResource",
        "events:TagResource",
        "cloudwatch:TagResource",
        "sagemaker:AddTags",
        "ec2:CreateTags",
        "s3:CreateBucket",
    ] {
        assert!(cis::lab::operator::allows(implied), "{implied}");
    }
    assert!(!cis::lab::operator::allows("iam:CreateUser") && !cis::lab::operator::allows("ec2:DeleteKeyPair"));
}

#[test]
fn parliament_finds_in_the_operator_policy_only_the_role_management_a_lab_needs() {
    let out = crate::Lab::new().ok(&["policy", "--account", ACCOUNT]);
    let policy: serde_json::Value = serde_json::from_str(&out).expect("cis policy prints JSON");
    assert_eq!(policy, cis::lab::operator::policy(Some(ACCOUNT), Some(REGION)));
    let (_, found, _) = parliament_on(&out);
    let findings: Vec<serde_json::Value> = found.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let issues: Vec<&str> = findings.iter().map(|f| f["issue"].as_str().unwrap()).collect();
    // A tool that makes IAM roles for its functions manages permissions by definition, and
    // passing a role to RunInstances is what parliament calls an escalation path: both
    // are bounded to roles named cis-* and the services the lab passes them to.
    assert_eq!(issues, ["PERMISSIONS_MANAGEMENT_ACTIONS", "PRIVILEGE_ESCALATION"], "{findings:#?}");
    let escalation = findings[1].to_string().to_lowercase();
    assert!(escalation.contains("iam:passrole") && escalation.contains("ec2:runinstances"), "{escalation}");
    let statements = policy["Statement"].as_array().unwrap();
    let pass = statements.iter().find(|s| s["Action"].to_string().contains("iam:PassRole")).unwrap();
    assert_eq!(pass["Resource"], serde_json::json!([format!("arn:aws:iam::{ACCOUNT}:role/cis-*")]));
    assert!(pass["Condition"]["StringEquals"]["iam:PassedToService"].is_array(), "{pass}");
    for s in statements.iter().filter(|s| s["Resource"] == serde_json::json!(["*"])) {
        let actions = s["Action"].to_string();
        for a in ["Create", "Delete", "Terminate", "Put", "Modify"] {
            assert!(!actions.contains(&format!(":{a}")), "an unscoped statement changes something: {s}");
        }
    }
}

/// The security review of what the lab creates, over every way of making one: no group
/// admits anything from 0.0.0.0/0 or ::/0 (only `--isolation two-step`, AWS's runbook,
/// needs such a group, and says so), the target requires IMDSv2 and encrypts its root
/// volume, and SSH, when asked for, comes from one /32.
#[test]
fn no_lab_group_admits_the_internet_the_target_requires_imdsv2_and_encrypts_its_volume() {
    let lab: LabName = "lab".parse().unwrap();
    let mut sets = option_sets();
    sets.push(LabOptions { ssh_from: Some("198.51.100.7".parse().unwrap()), ..Default::default() });
    sets.push(LabOptions { isolation: cis::lab::IsolationSteps::OneStep, ..Default::default() });
    for options in &sets {
        let graph = LabGraph::build(&lab, options, "run-1");
        let mut instances = 0;
        for spec in &graph.resources {
            match &spec.config {
                ResourceConfig::SecurityGroup { ingress, .. } => {
                    for rule in ingress {
                        assert!(rule.cidr != "0.0.0.0/0" && rule.cidr != "::/0", "{} admits {} ({options:?})", spec.name, rule.cidr);
                        assert!(rule.cidr.ends_with("/32") && rule.from_port == 22 && rule.to_port == 22, "{}: {rule:?}", spec.name);
                    }
                }
                ResourceConfig::Instance { imdsv2_required, root_volume_encrypted, .. } => {
                    assert!(*imdsv2_required && *root_volume_encrypted, "{}", spec.name);
                    instances += 1;
                }
                _ => {}
            }
        }
        assert_eq!(instances, 1);
    }
    let two_step = LabGraph::build(&lab, &LabOptions { isolation: cis::lab::IsolationSteps::TwoStep, ..Default::default() }, "run-1");
    let open: Vec<&str> = two_step
        .resources
        .iter()
        .filter(|s| matches!(&s.config, ResourceConfig::SecurityGroup { ingress, .. } if ingress.iter().any(|r| r.cidr == "0.0.0.0/0")))
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(open, ["cis-lab-allow-all-sg"], "only two-step's allow-all group, by choice");
}

/// No secret reaches the state directory: the ledger, the runs and the simulated account
/// hold ids and options, never the credentials or API keys in the environment.
#[test]
fn no_secret_from_the_environment_is_written_to_the_state_directory() {
    let lab = crate::Lab::new();
    let secrets =
        [("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"), ("OPENAI_API_KEY", "sk-test-0123456789abcdefSECRET")];
    for args in [&["up", "--notify", "ops@example.com"][..], &["attack", "exfil-https-bulk"], &["release"], &["report"], &["status"]] {
        let mut cmd = lab.cmd(args);
        for (k, v) in secrets {
            cmd.env(k, v).env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEACCESSKEY");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        for (_, v) in secrets {
            assert!(!printed.contains(v), "{args:?} printed a secret");
        }
    }
    let mut files = 0;
    let mut stack = vec![lab.state().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            for (_, v) in secrets.iter().chain([&("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEACCESSKEY")]) {
                assert!(!text.contains(v), "{} holds a secret", path.display());
            }
            files += 1;
        }
    }
    assert!(files >= 3, "the ledger, a run and the account were written: {files}");
    lab.ok(&["down"]);
}
