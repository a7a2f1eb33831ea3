//! The AWS backend. This module: the connection (the standard credential chain,
//! `--profile`, `--region` and `--endpoint-url` / `AWS_ENDPOINT_URL`, checked before
//! anything is done), the account-wide look at labs by tag, and the helpers the parts
//! share. The parts handle groups of kinds ([`network`], [`iam`], [`pipeline`],
//! [`compute`], [`lambda`], [`sagemaker`], [`scheduler`]); [`attack`] runs scenarios
//! through SSM Run Command and reads the run's timeline back from the pipeline's records;
//! [`cloud`] is the `Cloud` boundary over them; [`functions`] the SDK side of the Lambda
//! handlers' traits.

// The Lambda functions build with feature `aws-functions` alone (the error mapping and
// the SDK side of the handlers' traits); everything else is the backend proper, `aws`.
// How AWS's errors map onto the lab's kinds.
pub mod error;
// The SDK side of the Lambda handlers' traits.
pub mod functions;
// VPC, subnet, gateway, routes, security groups, network ACL, flow log.
#[cfg(feature = "aws")]
pub mod network;
// Roles, their inline policies, the instance profile.
#[cfg(feature = "aws")]
pub mod iam;
// The target instance and what containment leaves of it (volumes, snapshots).
#[cfg(feature = "aws")]
pub mod compute;
// The functions, their permissions and invoke configs.
#[cfg(feature = "aws")]
pub mod lambda;
// Log groups, subscription and metric filters, the alarm, EventBridge, SNS.
#[cfg(feature = "aws")]
pub mod pipeline;
// The anomaly model's bucket, training job, model, endpoint config and endpoint.
#[cfg(feature = "aws")]
pub mod sagemaker;
// The TTL's one-time schedule.
#[cfg(feature = "aws")]
pub mod scheduler;
// Scenarios through SSM Run Command, and the run's timeline from the pipeline's records.
#[cfg(feature = "aws")]
pub mod attack;
// The `Cloud` boundary over the parts.
#[cfg(feature = "aws")]
pub mod cloud;

#[cfg(feature = "aws")]
use std::time::Duration;

#[cfg(feature = "aws")]
use aws_credential_types::provider::ProvideCredentials;

#[cfg(feature = "aws")]
use crate::cloud::{AccountInfo, CloudError};
#[cfg(feature = "aws")]
use crate::model::lab::{LabName, TAG_LAB, TAG_MANAGED};

/// The SDK's configuration loader with the one HTTPS client every client of the lab uses:
/// hyper with rustls on ring, the crypto reqwest already builds (the SDK's default stack
/// would add aws-lc, a large C build, for the same TLS). Credentials, region and endpoint
/// still come from the standard chain and whatever the caller sets.
pub fn sdk_loader() -> aws_config::ConfigLoader {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    let https = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(https)
}

#[cfg(feature = "aws")]
/// The id of a resource this one needs, or why it cannot be created yet.
pub(crate) fn referenced(refs: &crate::model::lab::Refs, role: crate::model::lab::Role) -> Result<&str, CloudError> {
    refs.get(&role).map(String::as_str).ok_or_else(|| CloudError::Invalid(format!("{role} must exist first")))
}

/// An object of a bucket, or None when there is no such key: the one read of the lab's
/// bucket (the detector's memory and model, the forest's training rows).
pub(crate) async fn s3_object(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, crate::cloud::CloudError> {
    match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => {
            let body =
                out.body.collect().await.map_err(|e| crate::cloud::CloudError::Unavailable(format!("reading s3://{bucket}/{key}: {e}")))?;
            Ok(Some(body.into_bytes().to_vec()))
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
        Err(e) => Err(error::cloud_error(crate::model::lab::ResourceKind::S3Bucket, bucket, e)),
    }
}

#[cfg(feature = "aws")]
/// NotFound as None: what a `find` wants.
pub(crate) fn absent<T>(r: Result<T, CloudError>) -> Result<Option<T>, CloudError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(feature = "aws")]
/// EC2 tags at creation: the lab's tags with `name` as the Name. The lab's tags already
/// hold a Name, and EC2 refuses a key named twice ("Duplicate tag key 'Name' specified");
/// one map holds each key once.
pub(crate) fn ec2_tag_spec(
    kind: aws_sdk_ec2::types::ResourceType,
    tags: &crate::model::lab::Tags,
    name: &str,
) -> aws_sdk_ec2::types::TagSpecification {
    use aws_sdk_ec2::types::Tag;
    let mut tags = tags.clone();
    tags.insert("Name".to_string(), name.to_string());
    let tags = tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect();
    aws_sdk_ec2::types::TagSpecification::builder().resource_type(kind).set_tags(Some(tags)).build()
}

#[cfg(feature = "aws")]
/// EC2 filters for the resource's lab and role tags.
pub(crate) fn ec2_tag_filters(spec: &crate::model::lab::ResourceSpec) -> Vec<aws_sdk_ec2::types::Filter> {
    [TAG_LAB, crate::model::lab::TAG_ROLE]
        .iter()
        .filter_map(|k| spec.tags.get(*k).map(|v| aws_sdk_ec2::types::Filter::builder().name(format!("tag:{k}")).values(v).build()))
        .collect()
}

#[cfg(feature = "aws")]
/// How long finding credentials may take. The default chain ends with the EC2 instance
/// metadata service, which off EC2 only times out: without a bound, a machine with no
/// credentials waits on it instead of being told what to do.
const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(3);

#[cfg(feature = "aws")]
/// Attempts per AWS call (see [`connect`]).
pub const SDK_ATTEMPTS: u32 = 6;

#[cfg(feature = "aws")]
/// Where and as whom to connect.
#[derive(Clone, Debug, Default)]
pub struct AwsOptions {
    pub profile: Option<String>,
    pub region: Option<String>,
    /// An AWS-compatible endpoint (moto, LocalStack); `AWS_ENDPOINT_URL` works too.
    pub endpoint_url: Option<String>,
}

#[cfg(feature = "aws")]
/// A checked connection to one account and region.
pub struct AwsSession {
    pub sdk: aws_config::SdkConfig,
    pub account: AccountInfo,
}

#[cfg(feature = "aws")]
/// Loads the configuration, finds credentials (bounded in time) and asks STS who we are.
pub async fn connect(options: &AwsOptions) -> Result<AwsSession, CloudError> {
    // AWS throttles in bursts. The SDK's standard mode (backoff with jitter, a retry
    // quota) gets more attempts than its default 3, so that one burst is absorbed by the
    // call it hit: a composite step such as listing a lab's resources (dozens of calls)
    // is otherwise failed by one call and retried whole by the orchestration.
    let mut loader = sdk_loader()
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(SDK_ATTEMPTS));
    if let Some(p) = &options.profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = &options.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    if let Some(e) = &options.endpoint_url {
        loader = loader.endpoint_url(e);
    }
    let sdk = loader.load().await;
    let region = sdk.region().map(|r| r.to_string()).ok_or_else(|| {
        CloudError::Credentials("no AWS region: pass --region, set AWS_REGION, or give the profile a region (`aws configure`)".into())
    })?;
    let profile = options.profile.clone().or_else(|| std::env::var("AWS_PROFILE").ok()).unwrap_or_else(|| "default".into());
    let how = format!(
        "configure them with `aws configure` (profile '{profile}'), `aws sso login`, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; choose a profile with --profile; nothing was created"
    );
    let provider = sdk.credentials_provider().ok_or_else(|| CloudError::Credentials(format!("no credential provider: {how}")))?;
    match tokio::time::timeout(CREDENTIALS_TIMEOUT, provider.provide_credentials()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(CloudError::Credentials(format!("no AWS credentials found ({e}): {how}"))),
        Err(_) => {
            return Err(CloudError::Credentials(format!(
                "no AWS credentials found within {} s (the last place looked, the EC2 instance metadata service, did not answer): {how}",
                CREDENTIALS_TIMEOUT.as_secs()
            )))
        }
    }
    let sts = aws_sdk_sts::Client::new(&sdk);
    let me = sts.get_caller_identity().send().await.map_err(|e| {
        match error::cloud_error(crate::model::lab::ResourceKind::IamRole, "caller", e) {
            CloudError::Other(m) | CloudError::Invalid(m) => CloudError::Credentials(format!("the credentials were refused ({m}): {how}")),
            other => other,
        }
    })?;
    let account_id = me.account().unwrap_or_default().to_string();
    let endpoint = options.endpoint_url.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
    let description = format!(
        "AWS account {account_id} in {region} as {}{}",
        me.arn().unwrap_or("an unknown principal"),
        endpoint.map(|e| format!(" (endpoint {e})")).unwrap_or_default()
    );
    Ok(AwsSession { sdk, account: AccountInfo { account_id, region, description } })
}

#[cfg(feature = "aws")]
/// Every lab with resources tagged `cis:managed=true` in the region, by the Resource
/// Groups Tagging API (IAM roles, which it does not list, always come with tagged
/// resources of their lab).
pub async fn list_labs(session: &AwsSession) -> Result<Vec<LabName>, CloudError> {
    let tagging = aws_sdk_resourcegroupstagging::Client::new(&session.sdk);
    let mut pages = tagging
        .get_resources()
        .tag_filters(aws_sdk_resourcegroupstagging::types::TagFilter::builder().key(TAG_MANAGED).values("true").build())
        .into_paginator()
        .send();
    let mut labs = std::collections::BTreeSet::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| error::cloud_error(crate::model::lab::ResourceKind::Vpc, "tagged resources", e))?;
        for mapping in page.resource_tag_mapping_list() {
            for tag in mapping.tags() {
                if tag.key() == TAG_LAB {
                    if let Ok(lab) = tag.value().parse::<LabName>() {
                        labs.insert(lab);
                    }
                }
            }
        }
    }
    Ok(labs.into_iter().collect())
}

#[cfg(all(test, feature = "aws"))]
mod tests {
    use super::*;
    use crate::model::lab::{LabGraph, LabName, LabOptions};

    #[test]
    fn no_ec2_tag_spec_names_a_key_twice() {
        let lab: LabName = "tags".parse().unwrap();
        let graph = LabGraph::build(&lab, &LabOptions::default(), "run-1");
        for role in graph.roles() {
            let spec = graph.get(role).unwrap();
            // The root volume's Name differs from the lab's: the case that once sent two.
            for name in [spec.name.clone(), format!("{}-root", spec.name)] {
                let tag_spec = ec2_tag_spec(aws_sdk_ec2::types::ResourceType::Vpc, &spec.tags, &name);
                let keys: Vec<&str> = tag_spec.tags().iter().filter_map(|t| t.key()).collect();
                let unique: std::collections::BTreeSet<&str> = keys.iter().copied().collect();
                assert_eq!(keys.len(), unique.len(), "{role}: {keys:?}");
                assert!(tag_spec.tags().iter().any(|t| t.key() == Some("Name") && t.value() == Some(name.as_str())), "{role}");
            }
        }
    }
}
