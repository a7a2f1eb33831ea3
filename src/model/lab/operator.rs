//! The IAM policy the operator who runs `cis --cloud aws` needs, and no more: what
//! `cis policy` prints.
//!
//! Every statement names the actions of one service and, where the service lets a policy
//! say so, only the lab's own resources: names under `cis-`, EC2 resources tagged
//! `cis:managed=true` for anything that changes or deletes them, roles passed only to the
//! services that assume them; EC2's creates only in the account and region. Listing and
//! describing calls, and the few actions without resource-level permissions, need `*`. The test suite reads the AWS backend's source
//! for every SDK operation it calls and checks that this policy allows each.

use serde_json::{json, Value};

use super::TAG_MANAGED;

/// One statement: its id, actions, resources (with `{partition}`, `{region}` and
/// `{account}` to fill) and whether it requires the lab's tag on the resource.
pub struct Statement {
    pub sid: &'static str,
    pub actions: &'static [&'static str],
    pub resources: &'static [&'static str],
    pub condition: Condition,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    None,
    /// The resource carries `cis:managed=true`.
    LabTagged,
    /// Roles are passed only to the services that assume the lab's roles.
    PassedToLabServices,
    /// Tags only as part of the calls that create the lab's EC2 resources: tagging
    /// something else `cis:managed` would put it in reach of the statements above.
    WhileCreating,
}

/// The EC2 calls that create the lab's resources with their tags.
pub const CREATING: &[&str] =
    &["RunInstances", "CreateVpc", "CreateSubnet", "CreateInternetGateway", "CreateRouteTable", "CreateSecurityGroup", "CreateFlowLogs"];

pub const STATEMENTS: &[Statement] = &[
    Statement { sid: "Identity", actions: &["sts:GetCallerIdentity"], resources: &["*"], condition: Condition::None },
    Statement {
        sid: "FindLabsByTag",
        actions: &[
            "tag:GetResources",
            "ec2:DescribeVpcs",
            "ec2:DescribeSubnets",
            "ec2:DescribeInternetGateways",
            "ec2:DescribeRouteTables",
            "ec2:DescribeSecurityGroups",
            "ec2:DescribeInstances",
            "ec2:DescribeNetworkInterfaces",
            "ec2:DescribeVolumes",
            "ec2:DescribeSnapshots",
            "ec2:DescribeFlowLogs",
            "ec2:DescribeNetworkAcls",
            "ec2:DescribeTags",
            // The subnet's zone: one that offers the target's instance type.
            "ec2:DescribeInstanceTypeOfferings",
            "iam:ListRoles",
            "iam:ListInstanceProfiles",
            "lambda:ListFunctions",
            "logs:DescribeLogGroups",
            "sns:ListTopics",
            "events:ListRules",
            "sagemaker:ListModels",
            "sagemaker:ListEndpoints",
            "sagemaker:ListEndpointConfigs",
            "sagemaker:ListTrainingJobs",
            "s3:ListAllMyBuckets",
            "scheduler:ListSchedules",
            // No resource-level permissions for these.
            "ssm:GetCommandInvocation",
            // An interrupted run's script is cancelled, found by its comment.
            "ssm:ListCommands",
            "ssm:CancelCommand",
            "sns:Unsubscribe",
            "sns:GetSubscriptionAttributes",
        ],
        resources: &["*"],
        condition: Condition::None,
    },
    Statement {
        sid: "CreateTheNetworkAndTarget",
        actions: &[
            "ec2:CreateVpc",
            "ec2:CreateSubnet",
            "ec2:CreateInternetGateway",
            "ec2:CreateRouteTable",
            "ec2:CreateSecurityGroup",
            "ec2:RunInstances",
            "ec2:CreateFlowLogs",
        ],
        resources: &["arn:{partition}:ec2:{region}:{account}:*", "arn:{partition}:ec2:{region}::image/*"],
        condition: Condition::None,
    },
    Statement {
        sid: "TagWhileCreating",
        actions: &["ec2:CreateTags"],
        resources: &["arn:{partition}:ec2:{region}:{account}:*"],
        condition: Condition::WhileCreating,
    },
    Statement {
        sid: "ChangeAndDeleteOnlyTheLabsNetworkAndTarget",
        actions: &[
            "ec2:AttachInternetGateway",
            "ec2:DetachInternetGateway",
            "ec2:CreateRoute",
            "ec2:AssociateRouteTable",
            "ec2:DisassociateRouteTable",
            "ec2:ModifySubnetAttribute",
            "ec2:AuthorizeSecurityGroupIngress",
            "ec2:AuthorizeSecurityGroupEgress",
            "ec2:RevokeSecurityGroupIngress",
            "ec2:RevokeSecurityGroupEgress",
            "ec2:ModifyInstanceAttribute",
            "ec2:ModifyNetworkInterfaceAttribute",
            "ec2:CreateSnapshot",
            "ec2:CreateTags",
            "ec2:TerminateInstances",
            "ec2:DeleteFlowLogs",
            "ec2:DeleteSecurityGroup",
            "ec2:DeleteRouteTable",
            "ec2:DeleteInternetGateway",
            "ec2:DeleteSubnet",
            "ec2:DeleteVpc",
            "ec2:DeleteVolume",
            "ec2:DeleteSnapshot",
            "ec2:DescribeInstanceAttribute",
        ],
        resources: &["arn:{partition}:ec2:{region}:{account}:*", "arn:{partition}:ec2:{region}::snapshot/*"],
        condition: Condition::LabTagged,
    },
    Statement {
        // `cis release` lifts containment's cut from the lab subnet's network ACL: the
        // VPC's default one, which AWS creates without the lab's tag.
        sid: "LiftTheCutFromTheLabsSubnet",
        actions: &["ec2:CreateNetworkAclEntry", "ec2:DeleteNetworkAclEntry"],
        resources: &["arn:{partition}:ec2:{region}:{account}:network-acl/*"],
        condition: Condition::None,
    },
    Statement {
        sid: "TheLatestAmazonLinuxImage",
        actions: &["ssm:GetParameter"],
        // AWS's public parameter: its ARN has no account, which `*` also matches.
        resources: &["arn:{partition}:ssm:{region}:*:parameter/aws/service/ami-amazon-linux-latest/*"],
        condition: Condition::None,
    },
    Statement {
        sid: "RunAttackScriptsOnTheLabsTarget",
        actions: &["ssm:SendCommand"],
        resources: &["arn:{partition}:ssm:{region}:*:document/AWS-RunShellScript", "arn:{partition}:ec2:{region}:{account}:instance/*"],
        condition: Condition::None,
    },
    Statement {
        sid: "TheLabsRolesAndInstanceProfile",
        actions: &[
            "iam:CreateRole",
            "iam:GetRole",
            "iam:DeleteRole",
            "iam:TagRole",
            "iam:ListRoleTags",
            "iam:PutRolePolicy",
            "iam:GetRolePolicy",
            "iam:DeleteRolePolicy",
            "iam:ListRolePolicies",
            "iam:AttachRolePolicy",
            "iam:DetachRolePolicy",
            "iam:ListAttachedRolePolicies",
            "iam:ListInstanceProfilesForRole",
            "iam:CreateInstanceProfile",
            "iam:GetInstanceProfile",
            "iam:DeleteInstanceProfile",
            "iam:TagInstanceProfile",
            "iam:AddRoleToInstanceProfile",
            "iam:RemoveRoleFromInstanceProfile",
        ],
        resources: &["arn:{partition}:iam::{account}:role/cis-*", "arn:{partition}:iam::{account}:instance-profile/cis-*"],
        condition: Condition::None,
    },
    Statement {
        sid: "PassTheLabsRolesToTheirServices",
        actions: &["iam:PassRole"],
        resources: &["arn:{partition}:iam::{account}:role/cis-*"],
        condition: Condition::PassedToLabServices,
    },
    Statement {
        sid: "TheLabsFunctions",
        actions: &[
            "lambda:CreateFunction",
            "lambda:GetFunction",
            "lambda:UpdateFunctionConfiguration",
            "lambda:DeleteFunction",
            "lambda:TagResource",
            "lambda:ListTags",
            "lambda:PutFunctionConcurrency",
            "lambda:GetFunctionConcurrency",
            "lambda:PutFunctionEventInvokeConfig",
            "lambda:GetFunctionEventInvokeConfig",
            "lambda:AddPermission",
            "lambda:RemovePermission",
            "lambda:GetPolicy",
        ],
        resources: &["arn:{partition}:lambda:{region}:{account}:function:cis-*"],
        condition: Condition::None,
    },
    Statement {
        sid: "TheLabsLogGroupsFiltersAndRecords",
        actions: &[
            "logs:CreateLogGroup",
            "logs:DeleteLogGroup",
            "logs:PutRetentionPolicy",
            "logs:TagLogGroup",
            "logs:TagResource",
            "logs:ListTagsForResource",
            "logs:ListTagsLogGroup",
            "logs:DescribeLogStreams",
            "logs:GetLogEvents",
            "logs:FilterLogEvents",
            "logs:PutSubscriptionFilter",
            "logs:DeleteSubscriptionFilter",
            "logs:DescribeSubscriptionFilters",
            "logs:PutMetricFilter",
            "logs:DeleteMetricFilter",
            "logs:DescribeMetricFilters",
        ],
        resources: &[
            "arn:{partition}:logs:{region}:{account}:log-group:cis-*",
            "arn:{partition}:logs:{region}:{account}:log-group:/aws/lambda/cis-*",
            // What SageMaker logs the lab's endpoints to, which `down` removes.
            "arn:{partition}:logs:{region}:{account}:log-group:/aws/sagemaker/Endpoints/cis-*",
        ],
        condition: Condition::None,
    },
    Statement {
        sid: "TheLabsTopic",
        actions: &[
            "sns:CreateTopic",
            "sns:DeleteTopic",
            "sns:TagResource",
            "sns:ListTagsForResource",
            "sns:GetTopicAttributes",
            "sns:Subscribe",
            "sns:ListSubscriptionsByTopic",
            // `cis release` runs containment's own code, which notifies.
            "sns:Publish",
        ],
        resources: &["arn:{partition}:sns:{region}:{account}:cis-*"],
        condition: Condition::None,
    },
    Statement {
        sid: "TheLabsRule",
        actions: &[
            "events:PutRule",
            "events:DescribeRule",
            "events:DeleteRule",
            "events:TagResource",
            "events:ListTagsForResource",
            "events:PutTargets",
            "events:RemoveTargets",
            "events:ListTargetsByRule",
        ],
        resources: &["arn:{partition}:events:{region}:{account}:rule/cis-*"],
        condition: Condition::None,
    },
    Statement {
        sid: "DetectionsOnTheDefaultBus",
        actions: &["events:PutEvents"],
        resources: &["arn:{partition}:events:{region}:{account}:event-bus/default"],
        condition: Condition::None,
    },
    Statement {
        sid: "TheLabsAlarm",
        actions: &[
            "cloudwatch:PutMetricAlarm",
            // Scoped to the lab's alarms: the Service Authorization Reference gives
            // DescribeAlarms the alarm resource type, and AWS's DescribeAlarms reference
            // says a narrower scope than "*" leaves out only composite alarms (the lab
            // makes metric alarms).
            "cloudwatch:DescribeAlarms",
            "cloudwatch:DeleteAlarms",
            "cloudwatch:TagResource",
            "cloudwatch:ListTagsForResource",
        ],
        resources: &["arn:{partition}:cloudwatch:{region}:{account}:alarm:cis-*"],
        condition: Condition::None,
    },
    Statement {
        sid: "TheLabsModelsAndEndpoints",
        actions: &[
            "sagemaker:CreateTrainingJob",
            "sagemaker:DescribeTrainingJob",
            "sagemaker:StopTrainingJob",
            "sagemaker:CreateModel",
            "sagemaker:DescribeModel",
            "sagemaker:DeleteModel",
            "sagemaker:CreateEndpointConfig",
            "sagemaker:DescribeEndpointConfig",
            "sagemaker:DeleteEndpointConfig",
            "sagemaker:CreateEndpoint",
            "sagemaker:DescribeEndpoint",
            "sagemaker:DeleteEndpoint",
            "sagemaker:InvokeEndpoint",
            "sagemaker:AddTags",
            "sagemaker:DeleteTags",
            "sagemaker:ListTags",
        ],
        resources: &[
            "arn:{partition}:sagemaker:{region}:{account}:training-job/cis-*",
            "arn:{partition}:sagemaker:{region}:{account}:model/cis-*",
            "arn:{partition}:sagemaker:{region}:{account}:endpoint-config/cis-*",
            "arn:{partition}:sagemaker:{region}:{account}:endpoint/cis-*",
        ],
        condition: Condition::None,
    },
    Statement {
        sid: "TheLabsTimeToLive",
        actions: &["scheduler:CreateSchedule", "scheduler:GetSchedule", "scheduler:DeleteSchedule"],
        resources: &["arn:{partition}:scheduler:{region}:{account}:schedule/default/cis-*"],
        condition: Condition::None,
    },
    Statement {
        sid: "TheLabsModelBucket",
        actions: &[
            "s3:CreateBucket",
            "s3:DeleteBucket",
            "s3:ListBucket",
            "s3:PutBucketTagging",
            "s3:GetBucketTagging",
            "s3:PutBucketPublicAccessBlock",
            "s3:PutObject",
            "s3:GetObject",
            "s3:DeleteObject",
        ],
        resources: &["arn:{partition}:s3:::cis-*", "arn:{partition}:s3:::cis-*/*"],
        condition: Condition::None,
    },
];

/// The services the lab passes its roles to.
pub const PASSED_TO: &[&str] =
    &["lambda.amazonaws.com", "sagemaker.amazonaws.com", "ec2.amazonaws.com", "vpc-flow-logs.amazonaws.com", "scheduler.amazonaws.com"];

/// The policy document, for one account and region or (`None`) any.
pub fn policy(account: Option<&str>, region: Option<&str>) -> Value {
    let fill =
        |r: &str| r.replace("{partition}", "aws").replace("{region}", region.unwrap_or("*")).replace("{account}", account.unwrap_or("*"));
    let statements: Vec<Value> = STATEMENTS
        .iter()
        .map(|s| {
            let mut v = json!({
                "Sid": s.sid,
                "Effect": "Allow",
                "Action": s.actions,
                "Resource": s.resources.iter().map(|r| fill(r)).collect::<Vec<_>>(),
            });
            match s.condition {
                Condition::None => {}
                Condition::LabTagged => v["Condition"] = json!({"StringEquals": {format!("aws:ResourceTag/{TAG_MANAGED}"): "true"}}),
                Condition::PassedToLabServices => v["Condition"] = json!({"StringEquals": {"iam:PassedToService": PASSED_TO}}),
                Condition::WhileCreating => v["Condition"] = json!({"StringEquals": {"ec2:CreateAction": CREATING}}),
            }
            v
        })
        .collect();
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// Whether the policy allows `action` (exact names: the policy has no wildcards in them).
pub fn allows(action: &str) -> bool {
    STATEMENTS.iter().any(|s| s.actions.iter().any(|a| a.eq_ignore_ascii_case(action)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_action_is_listed_twice_and_the_arns_are_filled() {
        let mut seen = std::collections::BTreeSet::new();
        for s in STATEMENTS {
            for a in s.actions {
                // CreateTags: once while creating, once on the lab's own resources.
                assert!(seen.insert(*a) || *a == "ec2:CreateTags", "{a} is in two statements");
                assert!(!a.contains('*'), "{a}: no wildcard actions");
            }
        }
        let text = policy(Some("123456789012"), Some("eu-west-1")).to_string();
        assert!(!text.contains("{account}") && !text.contains("{region}") && !text.contains("{partition}"), "{text}");
        assert!(text.contains("arn:aws:iam::123456789012:role/cis-*") && text.contains("arn:aws:sns:eu-west-1:123456789012:cis-*"));
        assert!(allows("ec2:RunInstances") && !allows("ec2:DeleteKeyPair") && !allows("iam:CreateUser"));
    }
}
