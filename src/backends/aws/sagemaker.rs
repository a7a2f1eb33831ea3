//! The anomaly model on SageMaker: the lab's bucket (S3), the built-in Random Cut Forest's
//! training job on the baseline's window features, the model from its artifacts, the
//! endpoint config and the endpoint; and the endpoint's threshold, calibrated on the same
//! baseline once it serves. Ids are ARNs (the bucket's is its name), as in the simulator.
//! The model role reads and writes the lab's bucket and writes SageMaker's logs, nothing
//! more: SageMaker pulls its built-in algorithms' images with its own credentials (AWS's
//! AlgorithmSpecification reference), so the role needs no ECR access.
//! No retries or waits here: the orchestration retries what has not propagated (a new
//! role, an endpoint config not yet visible) and waits for the job and the endpoint.

use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, Delete, ObjectIdentifier, PublicAccessBlockConfiguration, Tag as S3Tag, Tagging,
};
use aws_sdk_sagemaker::types::{
    AlgorithmSpecification, Channel, ContainerDefinition, DataSource, EndpointStatus, OutputDataConfig, ProductionVariant,
    ProductionVariantInstanceType, ResourceConfig as SmResources, S3DataDistribution, S3DataSource, S3DataType, StoppingCondition, Tag,
    TrainingInputMode, TrainingInstanceType, TrainingJobStatus,
};

use super::error::cloud_error;
use super::referenced;
use crate::cloud::{CloudError, ResourceStatus};
use crate::model::lab::{Refs, ResourceConfig, ResourceKind, ResourceSpec, Tags, TAG_RUN};

/// The clients this part uses.
pub struct Clients {
    pub sagemaker: aws_sdk_sagemaker::Client,
    pub s3: aws_sdk_s3::Client,
    pub runtime: aws_sdk_sagemakerruntime::Client,
}

impl Clients {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        // Path-style addressing: an endpoint such as moto's on loopback has no bucket
        // subdomains (AWS accepts both).
        let s3 = aws_sdk_s3::config::Builder::from(sdk).force_path_style(true).build();
        Clients {
            sagemaker: aws_sdk_sagemaker::Client::new(sdk),
            s3: aws_sdk_s3::Client::from_conf(s3),
            runtime: aws_sdk_sagemakerruntime::Client::new(sdk),
        }
    }
}

/// Where the built-in Random Cut Forest image lives, by region (SageMaker's registries of
/// its first-party algorithms, as the SageMaker Python SDK lists them).
const RCF_REGISTRIES: [(&str, &str); 22] = [
    ("af-south-1", "455444449433"),
    ("ap-east-1", "286214385809"),
    ("ap-northeast-1", "351501993468"),
    ("ap-northeast-2", "835164637446"),
    ("ap-northeast-3", "867004704886"),
    ("ap-south-1", "991648021394"),
    ("ap-southeast-1", "475088953585"),
    ("ap-southeast-2", "712309505854"),
    ("ap-southeast-3", "951798379941"),
    ("ca-central-1", "469771592824"),
    ("eu-central-1", "664544806723"),
    ("eu-north-1", "669576153137"),
    ("eu-south-1", "257386234256"),
    ("eu-west-1", "438346466558"),
    ("eu-west-2", "644912444149"),
    ("eu-west-3", "749696950732"),
    ("me-south-1", "249704162688"),
    ("sa-east-1", "855470959533"),
    ("us-east-1", "382416733822"),
    ("us-east-2", "404615174143"),
    ("us-west-1", "632365934929"),
    ("us-west-2", "174872318107"),
];

/// The image of a built-in algorithm in `region`, or why there is none.
pub fn algorithm_image(algorithm: &str, region: &str) -> Result<String, CloudError> {
    if algorithm != "randomcutforest" {
        return Err(CloudError::Invalid(format!("no image known for the algorithm '{algorithm}'")));
    }
    let (_, account) = RCF_REGISTRIES.iter().find(|(r, _)| *r == region).ok_or_else(|| {
        CloudError::Invalid(format!(
            "SageMaker's Random Cut Forest image is not known for {region}: use another --region, or --detector lambda (no endpoint)"
        ))
    })?;
    Ok(format!("{account}.dkr.ecr.{region}.amazonaws.com/randomcutforest:1"))
}

/// The bucket's name: names are global, so the account makes the lab's its own.
pub fn bucket_name(spec_name: &str, account: &str) -> String {
    format!("{spec_name}-{account}")
}

/// The training job's name: AWS keeps a job's name forever, so each `up` run gets its own.
pub fn training_job_name(spec: &ResourceSpec) -> String {
    let run: String = spec.tags.get(TAG_RUN).map(String::as_str).unwrap_or("").chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let name = format!("{}-{}", spec.name, run.trim_start_matches("up"));
    name.chars().take(63).collect::<String>().trim_end_matches('-').to_string()
}

/// The prefix of the training job's output in the lab's bucket.
const OUTPUT_PREFIX: &str = "model";

/// A resource's name from its ARN (`...:endpoint/NAME`).
pub fn name_of(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

fn sm_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

/// SageMaker answers a missing model, config or endpoint with a ValidationException that
/// says "Could not find"; that is NotFound, not the not-yet-visible race on create.
fn sm_error<E, R>(kind: ResourceKind, id: &str) -> impl FnOnce(aws_smithy_runtime_api::client::result::SdkError<E, R>) -> CloudError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let id = id.to_string();
    move |e| {
        use aws_smithy_types::error::metadata::ProvideErrorMetadata;
        if e.message().is_some_and(|m| m.starts_with("Could not find")) || e.code() == Some("ResourceNotFound") {
            return CloudError::NotFound { kind: kind.name(), id };
        }
        cloud_error(kind, &id, e)
    }
}

/// Creates one SageMaker or S3 resource. A training job reads the rows `cis arm` wrote to
/// the lab's bucket from the lab's own flow logs.
pub async fn create(c: &Clients, spec: &ResourceSpec, refs: &Refs, account: &str, region: &str) -> Result<String, CloudError> {
    macro_rules! err {
        () => {
            |e| cloud_error(spec.kind, &spec.name, e)
        };
    }
    match &spec.config {
        ResourceConfig::S3Bucket => {
            let name = bucket_name(&spec.name, account);
            let mut create = c.s3.create_bucket().bucket(&name);
            // us-east-1 is the one region that refuses a location constraint.
            if region != "us-east-1" {
                create = create.create_bucket_configuration(
                    CreateBucketConfiguration::builder().location_constraint(BucketLocationConstraint::from(region)).build(),
                );
            }
            create.send().await.map_err(|e| match cloud_error(spec.kind, &name, e) {
                CloudError::Other(m) if m.starts_with("BucketAlreadyOwnedByYou") => CloudError::Invalid(format!(
                    "{m}: a lab named like this one keeps its model bucket in another region of this account; take that lab down first or choose another --lab"
                )),
                other => other,
            })?;
            let tags: Vec<S3Tag> = spec.tags.iter().filter_map(|(k, v)| S3Tag::builder().key(k).value(v).build().ok()).collect();
            let tagging = Tagging::builder().set_tag_set(Some(tags)).build().map_err(|e| CloudError::Invalid(e.to_string()))?;
            c.s3.put_bucket_tagging().bucket(&name).tagging(tagging).send().await.map_err(|e| cloud_error(spec.kind, &name, e))?;
            let private = PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build();
            c.s3.put_public_access_block()
                .bucket(&name)
                .public_access_block_configuration(private)
                .send()
                .await
                .map_err(|e| cloud_error(spec.kind, &name, e))?;
            Ok(name)
        }
        ResourceConfig::SageMakerTrainingJob { role, bucket, algorithm, instance_type, hyperparameters, data_key, .. } => {
            let bucket = referenced(refs, *bucket)?;
            let data_key = data_key.as_deref().ok_or_else(|| {
                CloudError::Invalid(
                    "the lab has learned nothing yet for its Random Cut Forest to train on: `cis arm` trains it on the lab's own flow logs".into(),
                )
            })?;
            let name = training_job_name(spec);
            let source = S3DataSource::builder()
                .s3_data_type(S3DataType::S3Prefix)
                .s3_uri(format!("s3://{bucket}/{data_key}"))
                .s3_data_distribution_type(S3DataDistribution::ShardedByS3Key)
                .build();
            let channel = Channel::builder()
                .channel_name("train")
                .content_type("text/csv;label_size=0")
                .data_source(DataSource::builder().s3_data_source(source).build())
                .build();
            let out = c
                .sagemaker
                .create_training_job()
                .training_job_name(&name)
                .role_arn(referenced(refs, *role)?)
                .algorithm_specification(
                    AlgorithmSpecification::builder()
                        .training_image(algorithm_image(algorithm, region)?)
                        .training_input_mode(TrainingInputMode::File)
                        .build(),
                )
                .set_hyper_parameters(Some(hyperparameters.clone().into_iter().collect()))
                .input_data_config(channel)
                .output_data_config(OutputDataConfig::builder().s3_output_path(format!("s3://{bucket}/{OUTPUT_PREFIX}")).build())
                .resource_config(
                    SmResources::builder()
                        .instance_type(TrainingInstanceType::from(instance_type.as_str()))
                        .instance_count(1)
                        .volume_size_in_gb(1)
                        .build(),
                )
                // A bound on what a job left behind by a crash can cost.
                .stopping_condition(StoppingCondition::builder().max_runtime_in_seconds(3600).build())
                .set_tags(Some(sm_tags(&spec.tags)))
                .send()
                .await
                .map_err(|e| cloud_error(spec.kind, &name, e))?;
            Ok(out.training_job_arn().unwrap_or(&name).to_string())
        }
        ResourceConfig::SageMakerModel { role, algorithm, training, container: own } => {
            let mut container = match own {
                Some(c) => {
                    ContainerDefinition::builder().image(&c.image).set_environment(Some(c.environment.clone().into_iter().collect()))
                }
                None => ContainerDefinition::builder().image(algorithm_image(algorithm, region)?),
            };
            if let Some(training) = training {
                let job = name_of(referenced(refs, *training)?).to_string();
                let out = c.sagemaker.describe_training_job().training_job_name(&job).send().await.map_err(sm_error(spec.kind, &job))?;
                let artifacts = out.model_artifacts().and_then(|a| a.s3_model_artifacts()).ok_or_else(|| {
                    CloudError::Invalid(format!("training job {job} has no model artifacts (status {:?})", out.training_job_status()))
                })?;
                container = container.model_data_url(artifacts);
            }
            let out = c
                .sagemaker
                .create_model()
                .model_name(&spec.name)
                .execution_role_arn(referenced(refs, *role)?)
                .primary_container(container.build())
                .set_tags(Some(sm_tags(&spec.tags)))
                .send()
                .await
                .map_err(err!())?;
            Ok(out.model_arn().unwrap_or(&spec.name).to_string())
        }
        ResourceConfig::SageMakerEndpointConfig { model, instance_type, startup_timeout_s } => {
            let mut variant = ProductionVariant::builder()
                .variant_name("all")
                .model_name(name_of(referenced(refs, *model)?))
                .initial_instance_count(1)
                .instance_type(ProductionVariantInstanceType::from(instance_type.as_str()));
            if let Some(t) = startup_timeout_s {
                // An 8B model downloads and loads for minutes: the container gets as long.
                variant =
                    variant.container_startup_health_check_timeout_in_seconds(*t as i32).model_data_download_timeout_in_seconds(*t as i32);
            }
            let variant = variant.build();
            let out = c
                .sagemaker
                .create_endpoint_config()
                .endpoint_config_name(&spec.name)
                .production_variants(variant)
                .set_tags(Some(sm_tags(&spec.tags)))
                .send()
                .await
                .map_err(err!())?;
            Ok(out.endpoint_config_arn().unwrap_or(&spec.name).to_string())
        }
        ResourceConfig::SageMakerEndpoint { config } => {
            let out = c
                .sagemaker
                .create_endpoint()
                .endpoint_name(&spec.name)
                .endpoint_config_name(name_of(referenced(refs, *config)?))
                .set_tags(Some(sm_tags(&spec.tags)))
                .send()
                .await
                .map_err(err!())?;
            Ok(out.endpoint_arn().unwrap_or(&spec.name).to_string())
        }
        other => Err(CloudError::Invalid(format!("not a SageMaker or S3 resource: {other:?}"))),
    }
}

pub async fn find(c: &Clients, spec: &ResourceSpec, account: &str) -> Result<Option<String>, CloudError> {
    let found = match spec.kind {
        ResourceKind::S3Bucket => {
            let name = bucket_name(&spec.name, account);
            return Ok(super::absent(c.s3.head_bucket().bucket(&name).send().await.map_err(sm_error(spec.kind, &name)))?.map(|_| name));
        }
        ResourceKind::SageMakerTrainingJob => {
            let name = training_job_name(spec);
            super::absent(c.sagemaker.describe_training_job().training_job_name(&name).send().await.map_err(sm_error(spec.kind, &name)))?
                .and_then(|o| o.training_job_arn().map(String::from))
        }
        ResourceKind::SageMakerModel => {
            super::absent(c.sagemaker.describe_model().model_name(&spec.name).send().await.map_err(sm_error(spec.kind, &spec.name)))?
                .and_then(|o| o.model_arn().map(String::from))
        }
        ResourceKind::SageMakerEndpointConfig => super::absent(
            c.sagemaker.describe_endpoint_config().endpoint_config_name(&spec.name).send().await.map_err(sm_error(spec.kind, &spec.name)),
        )?
        .and_then(|o| o.endpoint_config_arn().map(String::from)),
        ResourceKind::SageMakerEndpoint => {
            super::absent(c.sagemaker.describe_endpoint().endpoint_name(&spec.name).send().await.map_err(sm_error(spec.kind, &spec.name)))?
                .and_then(|o| o.endpoint_arn().map(String::from))
        }
        other => return Err(CloudError::Invalid(format!("not a SageMaker or S3 resource: {other}"))),
    };
    Ok(found)
}

pub async fn status(c: &Clients, kind: ResourceKind, id: &str) -> Result<ResourceStatus, CloudError> {
    let name = name_of(id);
    Ok(match kind {
        ResourceKind::S3Bucket => {
            c.s3.head_bucket().bucket(id).send().await.map_err(sm_error(kind, id))?;
            ResourceStatus::Ready
        }
        ResourceKind::SageMakerTrainingJob => {
            let out = c.sagemaker.describe_training_job().training_job_name(name).send().await.map_err(sm_error(kind, id))?;
            // A job the lab let go of (see `delete`) is gone as far as the lab knows.
            if !owned_by_a_lab(c, kind, id).await? {
                return Err(CloudError::NotFound { kind: kind.name(), id: id.to_string() });
            }
            match out.training_job_status() {
                Some(TrainingJobStatus::Completed) => ResourceStatus::Ready,
                Some(TrainingJobStatus::InProgress) => {
                    ResourceStatus::Pending(out.secondary_status().map(|s| s.as_str().to_string()).unwrap_or_else(|| "InProgress".into()))
                }
                Some(TrainingJobStatus::Stopping) => ResourceStatus::Deleting("Stopping".into()),
                other => ResourceStatus::Failed(format!(
                    "{}: {}",
                    other.map(|s| s.as_str()).unwrap_or("unknown"),
                    out.failure_reason().unwrap_or("no reason given")
                )),
            }
        }
        ResourceKind::SageMakerModel => {
            c.sagemaker.describe_model().model_name(name).send().await.map_err(sm_error(kind, id))?;
            ResourceStatus::Ready
        }
        ResourceKind::SageMakerEndpointConfig => {
            c.sagemaker.describe_endpoint_config().endpoint_config_name(name).send().await.map_err(sm_error(kind, id))?;
            ResourceStatus::Ready
        }
        ResourceKind::SageMakerEndpoint => {
            let out = c.sagemaker.describe_endpoint().endpoint_name(name).send().await.map_err(sm_error(kind, id))?;
            match out.endpoint_status() {
                Some(EndpointStatus::InService) => ResourceStatus::Ready,
                Some(EndpointStatus::Deleting) => ResourceStatus::Deleting("Deleting".into()),
                Some(EndpointStatus::Failed) => ResourceStatus::Failed(out.failure_reason().unwrap_or("Failed").to_string()),
                Some(s) => ResourceStatus::Pending(s.as_str().to_string()),
                None => ResourceStatus::Pending("unknown".into()),
            }
        }
        other => return Err(CloudError::Invalid(format!("not a SageMaker or S3 resource: {other}"))),
    })
}

/// Deletes every object of the bucket under `prefix` (all of them with ""), every page.
pub async fn delete_objects(c: &Clients, bucket: &str, prefix: &str) -> Result<(), CloudError> {
    let kind = ResourceKind::S3Bucket;
    let mut pages = c.s3.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(sm_error(kind, bucket))?;
        let keys: Vec<ObjectIdentifier> =
            page.contents().iter().filter_map(|o| ObjectIdentifier::builder().set_key(o.key().map(String::from)).build().ok()).collect();
        if keys.is_empty() {
            continue;
        }
        let delete = Delete::builder().set_objects(Some(keys)).quiet(true).build().map_err(|e| CloudError::Invalid(e.to_string()))?;
        c.s3.delete_objects().bucket(bucket).delete(delete).send().await.map_err(|e| cloud_error(kind, bucket, e))?;
    }
    Ok(())
}

pub async fn delete(c: &Clients, kind: ResourceKind, id: &str) -> Result<(), CloudError> {
    let name = name_of(id);
    match kind {
        ResourceKind::S3Bucket => {
            // A bucket must be empty to go: the baseline, the model and the detector's
            // memory first, every page.
            delete_objects(c, id, "").await?;
            c.s3.delete_bucket().bucket(id).send().await.map_err(sm_error(kind, id))?;
        }
        ResourceKind::SageMakerTrainingJob => {
            // AWS has no delete for a training job: a running one is stopped (it bills by
            // the second), and the record that stays (free) is let go of: untagged, so
            // nothing tagged with the lab outlives `down`.
            let out = c.sagemaker.describe_training_job().training_job_name(name).send().await.map_err(sm_error(kind, id))?;
            if out.training_job_status() == Some(&TrainingJobStatus::InProgress) {
                c.sagemaker.stop_training_job().training_job_name(name).send().await.map_err(sm_error(kind, id))?;
            }
            c.sagemaker
                .delete_tags()
                .resource_arn(id)
                .set_tag_keys(Some(crate::model::lab::LAB_TAG_KEYS.iter().map(|k| k.to_string()).collect()))
                .send()
                .await
                .map_err(sm_error(kind, id))?;
        }
        ResourceKind::SageMakerModel => {
            c.sagemaker.delete_model().model_name(name).send().await.map_err(sm_error(kind, id))?;
        }
        ResourceKind::SageMakerEndpointConfig => {
            c.sagemaker.delete_endpoint_config().endpoint_config_name(name).send().await.map_err(sm_error(kind, id))?;
        }
        ResourceKind::SageMakerEndpoint => {
            c.sagemaker.delete_endpoint().endpoint_name(name).send().await.map_err(sm_error(kind, id))?;
        }
        other => return Err(CloudError::Invalid(format!("not a SageMaker or S3 resource: {other}"))),
    }
    Ok(())
}

/// Whether a SageMaker resource still carries a lab's tag.
async fn owned_by_a_lab(c: &Clients, kind: ResourceKind, arn: &str) -> Result<bool, CloudError> {
    let tags = c.sagemaker.list_tags().resource_arn(arn).send().await.map_err(sm_error(kind, arn))?;
    Ok(tags.tags().iter().any(|t| t.key() == Some(crate::model::lab::TAG_LAB)))
}

/// An object of the lab's bucket.
pub async fn get_object(c: &Clients, bucket: &str, key: &str) -> Result<Vec<u8>, CloudError> {
    super::s3_object(&c.s3, bucket, key).await?.ok_or_else(|| CloudError::NotFound { kind: "s3 object", id: format!("s3://{bucket}/{key}") })
}

/// Puts an object in the lab's bucket, replacing what was there.
pub async fn put_object(c: &Clients, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), CloudError> {
    let content_type = if key.ends_with(".csv") { "text/csv" } else { "application/json" };
    c.s3.put_object()
        .bucket(bucket)
        .key(key)
        .content_type(content_type)
        .body(body.into())
        .send()
        .await
        .map_err(|e| cloud_error(ResourceKind::S3Bucket, bucket, e))?;
    Ok(())
}

/// The endpoint's threshold: the baseline scored by the endpoint itself, mean plus three
/// standard deviations (the Random Cut Forest's own convention for an anomalous score;
/// its scores are not on the lab forest's scale, so the model's threshold cannot serve).
pub async fn calibrate(c: &Clients, endpoint: &str, baseline_csv: &str) -> Result<f64, CloudError> {
    let rows = baseline_csv.lines().count();
    let out = c
        .runtime
        .invoke_endpoint()
        .endpoint_name(endpoint)
        .content_type("text/csv")
        .accept("application/json")
        .body(baseline_csv.as_bytes().to_vec().into())
        .send()
        .await
        .map_err(|e| cloud_error(ResourceKind::SageMakerEndpoint, endpoint, e))?;
    let body = out.body().map(|b| b.as_ref().to_vec()).unwrap_or_default();
    let scores = crate::detect::anomaly::rcf_scores(&body, rows)
        .map_err(|e| CloudError::Invalid(format!("calibrating endpoint {endpoint} on the baseline: {e}")))?;
    threshold_of(&scores).ok_or_else(|| CloudError::Invalid(format!("calibrating endpoint {endpoint}: the baseline has no windows")))
}

/// Mean plus three standard deviations of the baseline's scores.
pub fn threshold_of(scores: &[f64]) -> Option<f64> {
    if scores.is_empty() {
        return None;
    }
    let n = scores.len() as f64;
    let mean = scores.iter().sum::<f64>() / n;
    let var = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n;
    Some(mean + 3.0 * var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_images_and_thresholds() {
        assert_eq!(
            algorithm_image("randomcutforest", "us-east-1").unwrap(),
            "382416733822.dkr.ecr.us-east-1.amazonaws.com/randomcutforest:1"
        );
        assert!(algorithm_image("randomcutforest", "mars-north-1").unwrap_err().to_string().contains("--detector lambda"));
        let graph = crate::model::lab::LabGraph::build(
            &"a-lab-name-of-twenty-four".chars().take(24).collect::<String>().parse().unwrap(),
            &crate::model::lab::LabOptions { detector: crate::model::lab::DetectorMode::Endpoint, ..Default::default() },
            "up-20261123T150405Z",
        );
        let job = graph.get(crate::model::lab::Role::TrainingJob).unwrap();
        let name = training_job_name(job);
        assert!(name.len() <= 63 && name.ends_with("-20261123T150405Z"), "{name}");
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'), "{name}");
        assert!(bucket_name(&graph.get(crate::model::lab::Role::ModelData).unwrap().name, "123456789012").len() <= 63);
        assert_eq!(threshold_of(&[1.0, 1.0, 1.0, 1.0]), Some(1.0));
        assert_eq!(threshold_of(&[0.0, 2.0]), Some(4.0));
        assert_eq!(threshold_of(&[]), None);
    }
}
