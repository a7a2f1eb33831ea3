//! SDK errors as the boundary's kinds, by the service's error code: the one place that
//! knows AWS's codes.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::cloud::CloudError;
use crate::model::lab::ResourceKind;

/// An SDK error as one of the boundary's kinds.
pub fn cloud_error<E, R>(kind: ResourceKind, id: &str, e: SdkError<E, R>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let code = e.code().unwrap_or_default().to_string();
    let message = match e.message() {
        Some(m) => format!("{code}: {m}"),
        // No code: an unmodelled answer (an HTTP 500 page, say); name what was asked.
        None if code.is_empty() => format!("{kind} {id}: {}", aws_smithy_types::error::display::DisplayErrorContext(&e)),
        None => format!("{code}: {}", aws_smithy_types::error::display::DisplayErrorContext(&e)),
    };
    match &e {
        // Nothing came back: the endpoint is unreachable or timed out.
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => return CloudError::Unavailable(message),
        _ => {}
    }
    classify(kind, id, &code, message)
}

/// [`cloud_error`] for `map_err`: `.map_err(mapped(kind, id))`.
pub fn mapped<E, R>(kind: ResourceKind, id: &str) -> impl FnOnce(SdkError<E, R>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let id = id.to_string();
    move |e| cloud_error(kind, &id, e)
}

/// The kind for an error code.
pub fn classify(kind: ResourceKind, id: &str, code: &str, message: String) -> CloudError {
    // What AWS says while a just-created role or permission has not propagated: the
    // orchestration retries these.
    const NOT_YET: [&str; 10] = [
        "cannot be assumed by Lambda",
        // Lambda: a function still Pending after CreateFunction, or mid-update, refuses
        // changes with ResourceConflictException; it is not "already exists".
        "currently in the following state: 'Pending'",
        "currently in the following state: Pending",
        // EventBridge Scheduler: a just-created execution role.
        "must allow AWS EventBridge Scheduler to assume the role",
        // Lambda: an on-failure destination the function's just-written policy allows.
        "execution role does not have permissions to call",
        "Could not execute the lambda function",
        "Invalid IAM Instance Profile",
        // SageMaker: a just-created role, or CreateEndpoint racing its config.
        "Could not assume role",
        "Could not find endpoint configuration",
        "Could not find model",
    ];
    if NOT_YET.iter().any(|m| message.contains(m)) {
        return CloudError::NotPropagatedYet(message);
    }
    match code {
        // S3 names a missing bucket NoSuchBucket (a `down` after the janitor had swept the
        // lab's bucket stopped on it).
        c if c.ends_with(".NotFound")
            || c.ends_with("NotFoundException")
            || c == "NotFound"
            || c == "NoSuchEntity"
            || c == "NoSuchBucket" =>
        {
            CloudError::NotFound { kind: kind.name(), id: id.to_string() }
        }
        c if c.ends_with(".Duplicate")
            || c == "NetworkAclEntryAlreadyExists"
            || c == "EntityAlreadyExists"
            || c == "ResourceAlreadyExistsException"
            || c == "ResourceConflictException" =>
        {
            CloudError::AlreadyExists { kind: kind.name(), name: id.to_string() }
        }
        // S3 says SlowDown (found by the strict proxy's lives test: a `down` failed on it).
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" | "TooManyRequestsException" | "ThrottledException" | "SlowDown" => {
            CloudError::Throttled(message)
        }
        "DependencyViolation" | "VolumeInUse" | "ResourceInUseException" | "DeleteConflict" => {
            CloudError::DependencyViolation { what: id.to_string(), detail: message }
        }
        "InternalError" | "InternalFailure" | "ServiceUnavailable" | "Unavailable" | "InternalException" | "ServiceException" => {
            CloudError::Unavailable(message)
        }
        "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "UnrecognizedClientException"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "AuthFailure" => CloudError::Credentials(message),
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" | "AuthorizationError" | "AuthorizationErrorException" => {
            CloudError::AccessDenied(message)
        }
        _ => CloudError::Other(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        let k = ResourceKind::Instance;
        assert!(classify(k, "i-1", "InvalidInstanceID.NotFound", "m".into()).is_not_found());
        assert!(classify(k, "i-1", "NoSuchEntity", "m".into()).is_not_found());
        assert!(classify(k, "b", "NoSuchBucket", "The specified bucket does not exist".into()).is_not_found());
        assert!(matches!(classify(k, "sg", "InvalidGroup.Duplicate", "m".into()), CloudError::AlreadyExists { .. }));
        assert!(matches!(classify(k, "vpc", "DependencyViolation", "m".into()), CloudError::DependencyViolation { .. }));
        assert!(matches!(classify(k, "x", "RequestLimitExceeded", "m".into()), CloudError::Throttled(_)));
        assert!(matches!(classify(k, "x", "SlowDown", "m".into()), CloudError::Throttled(_)));
        assert!(matches!(classify(k, "x", "ExpiredToken", "m".into()), CloudError::Credentials(_)));
        assert!(matches!(classify(k, "x", "UnauthorizedOperation", "m".into()), CloudError::AccessDenied(_)));
        assert!(matches!(classify(k, "x", "AccessDeniedException", "m".into()), CloudError::AccessDenied(_)));
        assert!(matches!(classify(k, "x", "InvalidParameterValue", "m".into()), CloudError::Other(_)));
        assert!(classify(k, "x", "InternalError", "m".into()).is_transient());
        let not_yet = "InvalidParameterValueException: The role defined for the function cannot be assumed by Lambda.";
        assert!(matches!(classify(k, "f", "InvalidParameterValueException", not_yet.into()), CloudError::NotPropagatedYet(_)));
        let destination = "InvalidParameterValueException: The provided execution role does not have permissions to call Publish on SNS";
        assert!(matches!(classify(k, "f", "InvalidParameterValueException", destination.into()), CloudError::NotPropagatedYet(_)));
        // A Pending function's conflict is a wait, a name's conflict is "already exists".
        let pending = "ResourceConflictException: The operation cannot be performed at this time. The function is currently in the following state: Pending";
        assert!(matches!(classify(k, "f", "ResourceConflictException", pending.into()), CloudError::NotPropagatedYet(_)));
        let exists = "ResourceConflictException: Function already exist: cis-x-detector-function";
        assert!(matches!(classify(k, "f", "ResourceConflictException", exists.into()), CloudError::AlreadyExists { .. }));
    }
}
