//! The lab's functions on Lambda: created from the packages `cargo xtask lambdas` builds
//! (`lab::package`; the detector reads its model from the lab's bucket), and their
//! permissions for CloudWatch Logs and EventBridge. No retries or waits here: the
//! orchestration retries CreateFunction while the role is not yet assumable (mapped to
//! NotPropagatedYet), waits for the function to become Active, then converges its
//! settings.

use aws_sdk_lambda::types::{Architecture, DestinationConfig, Environment, FunctionCode as Code, OnFailure, Runtime, State};
use aws_sdk_lambda::Client;

use super::error::cloud_error;
use super::{absent, referenced};
use crate::cloud::{CloudError, ResourceStatus};
use crate::model::lab::package;
use crate::model::lab::{FunctionCode, Refs, ResourceConfig, ResourceKind, ResourceSpec};

/// A function's name from its ARN (or the name itself).
pub fn function_name(id: &str) -> &str {
    id.rsplit(':').next().unwrap_or(id)
}

/// The deployment package for a function: the zip `cargo xtask lambdas` built. The
/// detector's carries no model: it reads the one `cis arm` trained on the lab's own flow
/// logs from the lab's bucket, and until then it is learning.
pub fn deployment_package(code: FunctionCode, dirs: &[std::path::PathBuf]) -> Result<Vec<u8>, CloudError> {
    let found = package::locate(code, dirs).map_err(|e| CloudError::Invalid(e.to_string()))?;
    std::fs::read(&found.path).map_err(|e| CloudError::Invalid(format!("{}: {e}", found.path.display())))
}

pub async fn create(lambda: &Client, spec: &ResourceSpec, refs: &Refs, dirs: &[std::path::PathBuf]) -> Result<String, CloudError> {
    macro_rules! err {
        () => {
            |e| cloud_error(spec.kind, &spec.name, e)
        };
    }
    match &spec.config {
        ResourceConfig::LambdaFunction { code, role, memory_mb, timeout_s, environment, .. } => {
            let zip = deployment_package(*code, dirs)?;
            let out = lambda
                .create_function()
                .function_name(&spec.name)
                .runtime(Runtime::Providedal2023)
                .architectures(Architecture::X8664)
                .handler("bootstrap")
                .role(referenced(refs, *role)?)
                .memory_size(*memory_mb as i32)
                .timeout(*timeout_s as i32)
                .environment(Environment::builder().set_variables(Some(environment.clone().into_iter().collect())).build())
                .code(Code::builder().zip_file(aws_sdk_lambda::primitives::Blob::new(zip)).build())
                .set_tags(Some(spec.tags.clone().into_iter().collect()))
                .send()
                .await
                .map_err(err!())?;
            Ok(out.function_arn().unwrap_or_default().to_string())
        }
        ResourceConfig::LambdaPermission { function, principal, source, statement_id } => {
            let name = function_name(referenced(refs, *function)?).to_string();
            let source = referenced(refs, *source)?;
            // A subscription's source is the log group's ARN with its `:*`.
            let source_arn =
                if source.contains(":log-group:") && !source.ends_with(":*") { format!("{source}:*") } else { source.to_string() };
            lambda
                .add_permission()
                .function_name(&name)
                .statement_id(statement_id)
                .action("lambda:InvokeFunction")
                .principal(principal)
                .source_arn(source_arn)
                .send()
                .await
                .map_err(err!())?;
            Ok(format!("{name}/{statement_id}"))
        }
        other => Err(CloudError::Invalid(format!("not a Lambda resource: {other:?}"))),
    }
}

/// A function's reserved concurrency and invoke config as the spec wants them, once it is
/// Active: Lambda refuses changes to a Pending function (ResourceConflictException,
/// mapped to NotPropagatedYet), and the orchestration waits for Active first.
pub async fn converge(lambda: &Client, spec: &ResourceSpec, id: &str, refs: &Refs) -> Result<(), CloudError> {
    match &spec.config {
        ResourceConfig::LambdaFunction { reserved_concurrency, on_failure, environment, .. } => {
            let name = function_name(id);
            converge_concurrency(lambda, name, *reserved_concurrency).await?;
            converge_invoke_config(lambda, name, on_failure.map(|r| referenced(refs, r)).transpose()?).await?;
            // Last: while Lambda applies a new configuration, the function cannot be
            // modified ("An update is in progress"; UpdateFunctionConfiguration's reference).
            converge_environment(lambda, name, environment).await
        }
        ResourceConfig::LambdaPermission { .. } => Ok(()),
        other => Err(CloudError::Invalid(format!("not a Lambda resource: {other:?}"))),
    }
}

/// The statement ids in a function's resource policy.
async fn statements(lambda: &Client, function: &str) -> Result<Option<Vec<String>>, CloudError> {
    let out = absent(
        lambda.get_policy().function_name(function).send().await.map_err(|e| cloud_error(ResourceKind::LambdaPermission, function, e)),
    )?;
    let Some(policy) = out.and_then(|o| o.policy().map(String::from)) else { return Ok(None) };
    let doc: serde_json::Value =
        serde_json::from_str(&policy).map_err(|e| CloudError::Other(format!("{function}'s policy is not JSON: {e}")))?;
    Ok(Some(doc["Statement"].as_array().into_iter().flatten().filter_map(|s| s["Sid"].as_str().map(String::from)).collect()))
}

/// The function's environment as the spec wants it: what `cis arm` changes (the model's
/// key, the endpoint and its threshold) reaches a function made while the lab learned.
/// Lambda starts new execution environments for the new configuration.
async fn converge_environment(
    lambda: &Client,
    name: &str,
    wanted: &std::collections::BTreeMap<String, String>,
) -> Result<(), CloudError> {
    let now = lambda.get_function().function_name(name).send().await.map_err(|e| cloud_error(ResourceKind::LambdaFunction, name, e))?;
    let have = now.configuration().and_then(|c| c.environment()).and_then(|e| e.variables()).cloned().unwrap_or_default();
    if have.len() == wanted.len() && wanted.iter().all(|(k, v)| have.get(k) == Some(v)) {
        return Ok(());
    }
    lambda
        .update_function_configuration()
        .function_name(name)
        .environment(Environment::builder().set_variables(Some(wanted.clone().into_iter().collect())).build())
        .send()
        .await
        .map_err(|e| cloud_error(ResourceKind::LambdaFunction, name, e))?;
    Ok(())
}

/// The function's reserved concurrency set as the spec wants it (a crash may have come
/// between CreateFunction and PutFunctionConcurrency: [`converge`] runs on every resume
/// and adoption too).
async fn converge_concurrency(lambda: &Client, name: &str, reserved: Option<u32>) -> Result<(), CloudError> {
    let Some(n) = reserved else { return Ok(()) };
    let now = lambda
        .get_function_concurrency()
        .function_name(name)
        .send()
        .await
        .map_err(|e| cloud_error(ResourceKind::LambdaFunction, name, e))?;
    if now.reserved_concurrent_executions() == Some(n as i32) {
        return Ok(());
    }
    match lambda.put_function_concurrency().function_name(name).reserved_concurrent_executions(n as i32).send().await {
        Ok(_) => Ok(()),
        // A new account's concurrency limit of 10 leaves nothing to reserve: the function
        // still works, and containment's check of the groups and the cut still catches all
        // but a truly simultaneous duplicate.
        Err(e) if format!("{}", aws_sdk_lambda::error::DisplayErrorContext(&e)).contains("UnreservedConcurrentExecution") => Ok(()),
        Err(e) => Err(cloud_error(ResourceKind::LambdaFunction, name, e)),
    }
}

/// The function's asynchronous invocation settings as the spec wants them: Lambda's two
/// retries, then the event to the on-failure destination. Converged like the reserved
/// concurrency.
async fn converge_invoke_config(lambda: &Client, name: &str, on_failure: Option<&str>) -> Result<(), CloudError> {
    let Some(destination) = on_failure else { return Ok(()) };
    let retries = crate::model::lab::LAMBDA_ASYNC_RETRIES as i32;
    let now = absent(
        lambda
            .get_function_event_invoke_config()
            .function_name(name)
            .send()
            .await
            .map_err(|e| cloud_error(ResourceKind::LambdaFunction, name, e)),
    )?;
    let current = now.as_ref().and_then(|c| c.destination_config()).and_then(|d| d.on_failure()).and_then(|f| f.destination());
    if current == Some(destination) && now.as_ref().and_then(|c| c.maximum_retry_attempts()) == Some(retries) {
        return Ok(());
    }
    // Lambda checks here that the function's role may publish to the topic: right after
    // the role's policy was put, it may say not yet (mapped to NotPropagatedYet).
    lambda
        .put_function_event_invoke_config()
        .function_name(name)
        .maximum_retry_attempts(retries)
        .destination_config(DestinationConfig::builder().on_failure(OnFailure::builder().destination(destination).build()).build())
        .send()
        .await
        .map_err(|e| cloud_error(ResourceKind::LambdaFunction, name, e))?;
    Ok(())
}

pub async fn find(lambda: &Client, spec: &ResourceSpec, refs: &Refs) -> Result<Option<String>, CloudError> {
    match &spec.config {
        ResourceConfig::LambdaFunction { .. } => {
            let out =
                absent(lambda.get_function().function_name(&spec.name).send().await.map_err(|e| cloud_error(spec.kind, &spec.name, e)))?;
            Ok(out.and_then(|o| o.configuration().and_then(|c| c.function_arn()).map(String::from)))
        }
        ResourceConfig::LambdaPermission { function, statement_id, .. } => {
            let Some(name) = refs.get(function).map(|f| function_name(f).to_string()) else { return Ok(None) };
            let sids = statements(lambda, &name).await?.unwrap_or_default();
            Ok(sids.contains(statement_id).then(|| format!("{name}/{statement_id}")))
        }
        other => Err(CloudError::Invalid(format!("not a Lambda resource: {other:?}"))),
    }
}

pub async fn status(lambda: &Client, kind: ResourceKind, id: &str) -> Result<ResourceStatus, CloudError> {
    match kind {
        ResourceKind::LambdaFunction => {
            let out = lambda.get_function().function_name(function_name(id)).send().await.map_err(|e| cloud_error(kind, id, e))?;
            let config = out.configuration();
            Ok(match config.and_then(|c| c.state()) {
                Some(State::Pending) => ResourceStatus::Pending("Pending".into()),
                Some(State::Failed) => ResourceStatus::Failed(config.and_then(|c| c.state_reason()).unwrap_or("Failed").to_string()),
                _ => ResourceStatus::Ready,
            })
        }
        ResourceKind::LambdaPermission => {
            let (function, sid) = id.split_once('/').ok_or_else(|| CloudError::Invalid(format!("'{id}' is not FUNCTION/STATEMENT")))?;
            let sids = statements(lambda, function).await?.unwrap_or_default();
            if sids.iter().any(|s| s == sid) {
                Ok(ResourceStatus::Ready)
            } else {
                Err(CloudError::NotFound { kind: kind.name(), id: id.to_string() })
            }
        }
        other => Err(CloudError::Invalid(format!("not a Lambda resource: {other}"))),
    }
}

pub async fn delete(lambda: &Client, kind: ResourceKind, id: &str) -> Result<(), CloudError> {
    match kind {
        ResourceKind::LambdaFunction => {
            lambda.delete_function().function_name(function_name(id)).send().await.map_err(|e| cloud_error(kind, id, e))?;
        }
        ResourceKind::LambdaPermission => {
            let (function, sid) = id.split_once('/').ok_or_else(|| CloudError::Invalid(format!("'{id}' is not FUNCTION/STATEMENT")))?;
            lambda.remove_permission().function_name(function).statement_id(sid).send().await.map_err(|e| cloud_error(kind, id, e))?;
        }
        other => return Err(CloudError::Invalid(format!("not a Lambda resource: {other}"))),
    }
    Ok(())
}
