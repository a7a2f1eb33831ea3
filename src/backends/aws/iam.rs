//! The lab's IAM: roles (tagged), their inline policies and managed-policy attachments,
//! and the instance profile. Names are unique per lab (`cis-<lab>-<role>`), so a role is
//! found by its name; ids are ARNs for roles and profiles, `ROLE/POLICY` for policies.
//! No retries or waits here: the orchestration owns them (IAM's propagation delay shows
//! up later, where a role is used).

use aws_sdk_iam::types::Tag;
use aws_sdk_iam::Client;

use super::error::cloud_error;
use super::{absent, referenced};
use crate::cloud::{CloudError, ResourceStatus};
use crate::model::lab::{Refs, ResourceConfig, ResourceKind, ResourceSpec};

/// `arn:aws:iam::123456789012:role/NAME` (or a path) -> `NAME`.
pub fn name_of(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

fn tags(spec: &ResourceSpec) -> Vec<Tag> {
    spec.tags.iter().filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok()).collect()
}

/// `ROLE/POLICY` for inline policies and attachments (the policy part may be an ARN).
fn split_child(id: &str) -> Result<(&str, &str), CloudError> {
    id.split_once('/').ok_or_else(|| CloudError::Invalid(format!("'{id}' is not ROLE/POLICY")))
}

pub async fn create(iam: &Client, spec: &ResourceSpec, refs: &Refs) -> Result<String, CloudError> {
    macro_rules! err {
        () => {
            |e| cloud_error(spec.kind, &spec.name, e)
        };
    }
    match &spec.config {
        ResourceConfig::IamRole { trust_policy, description } => {
            let out = iam
                .create_role()
                .role_name(&spec.name)
                .assume_role_policy_document(trust_policy)
                .description(description)
                .set_tags(Some(tags(spec)))
                .send()
                .await
                .map_err(err!())?;
            Ok(out.role().map(|r| r.arn().to_string()).unwrap_or_default())
        }
        ResourceConfig::InlinePolicy { role, policy_name, document } => {
            let role = name_of(referenced(refs, *role)?);
            iam.put_role_policy().role_name(role).policy_name(policy_name).policy_document(document).send().await.map_err(err!())?;
            Ok(format!("{role}/{policy_name}"))
        }
        ResourceConfig::ManagedPolicyAttachment { role, policy_arn } => {
            let role = name_of(referenced(refs, *role)?);
            iam.attach_role_policy().role_name(role).policy_arn(policy_arn).send().await.map_err(err!())?;
            Ok(format!("{role}/{policy_arn}"))
        }
        ResourceConfig::InstanceProfile { role } => {
            let out =
                iam.create_instance_profile().instance_profile_name(&spec.name).set_tags(Some(tags(spec))).send().await.map_err(err!())?;
            let arn = out.instance_profile().map(|p| p.arn().to_string()).unwrap_or_default();
            converge_profile(iam, &spec.name, name_of(referenced(refs, *role)?)).await?;
            Ok(arn)
        }
        other => Err(CloudError::Invalid(format!("not an IAM resource: {other:?}"))),
    }
}

/// The profile holds exactly its role, whatever a crash between the two calls left.
async fn converge_profile(iam: &Client, profile: &str, role: &str) -> Result<(), CloudError> {
    let out = iam
        .get_instance_profile()
        .instance_profile_name(profile)
        .send()
        .await
        .map_err(|e| cloud_error(ResourceKind::InstanceProfile, profile, e))?;
    let has = out.instance_profile().map(|p| p.roles().iter().any(|r| r.role_name() == role)).unwrap_or(false);
    if !has {
        iam.add_role_to_instance_profile()
            .instance_profile_name(profile)
            .role_name(role)
            .send()
            .await
            .map_err(|e| cloud_error(ResourceKind::InstanceProfile, profile, e))?;
    }
    Ok(())
}

pub async fn find(iam: &Client, spec: &ResourceSpec, refs: &Refs) -> Result<Option<String>, CloudError> {
    macro_rules! err {
        () => {
            |e| cloud_error(spec.kind, &spec.name, e)
        };
    }
    match &spec.config {
        ResourceConfig::IamRole { .. } => {
            let out = absent(iam.get_role().role_name(&spec.name).send().await.map_err(err!()))?;
            Ok(out.and_then(|o| o.role().map(|r| r.arn().to_string())))
        }
        ResourceConfig::InlinePolicy { role, policy_name, .. } => {
            let Some(role) = refs.get(role).map(|a| name_of(a)) else { return Ok(None) };
            let out = absent(iam.get_role_policy().role_name(role).policy_name(policy_name).send().await.map_err(err!()))?;
            Ok(out.map(|_| format!("{role}/{policy_name}")))
        }
        ResourceConfig::ManagedPolicyAttachment { role, policy_arn } => {
            let Some(role) = refs.get(role).map(|a| name_of(a)) else { return Ok(None) };
            let out = absent(iam.list_attached_role_policies().role_name(role).send().await.map_err(err!()))?;
            let attached = out.is_some_and(|o| o.attached_policies().iter().any(|p| p.policy_arn() == Some(policy_arn.as_str())));
            Ok(attached.then(|| format!("{role}/{policy_arn}")))
        }
        ResourceConfig::InstanceProfile { role } => {
            let out = absent(iam.get_instance_profile().instance_profile_name(&spec.name).send().await.map_err(err!()))?;
            let Some(arn) = out.and_then(|o| o.instance_profile().map(|p| p.arn().to_string())) else { return Ok(None) };
            if let Some(role) = refs.get(role).map(|a| name_of(a)) {
                converge_profile(iam, &spec.name, role).await?;
            }
            Ok(Some(arn))
        }
        other => Err(CloudError::Invalid(format!("not an IAM resource: {other:?}"))),
    }
}

pub async fn status(iam: &Client, kind: ResourceKind, id: &str) -> Result<ResourceStatus, CloudError> {
    macro_rules! err {
        () => {
            |e| cloud_error(kind, id, e)
        };
    }
    match kind {
        ResourceKind::IamRole => {
            iam.get_role().role_name(name_of(id)).send().await.map_err(err!())?;
        }
        ResourceKind::IamRolePolicy => {
            let (role, policy) = split_child(id)?;
            if policy.starts_with("arn:") {
                let out = iam.list_attached_role_policies().role_name(role).send().await.map_err(err!())?;
                if !out.attached_policies().iter().any(|p| p.policy_arn() == Some(policy)) {
                    return Err(CloudError::NotFound { kind: kind.name(), id: id.into() });
                }
            } else {
                iam.get_role_policy().role_name(role).policy_name(policy).send().await.map_err(err!())?;
            }
        }
        ResourceKind::InstanceProfile => {
            iam.get_instance_profile().instance_profile_name(name_of(id)).send().await.map_err(err!())?;
        }
        other => return Err(CloudError::Invalid(format!("not an IAM resource: {other}"))),
    }
    Ok(ResourceStatus::Ready)
}

/// Deletes one IAM resource; a role goes with its policies and attachments and leaves any
/// instance profile it is in (IAM refuses to delete it otherwise).
pub async fn delete(iam: &Client, kind: ResourceKind, id: &str) -> Result<(), CloudError> {
    macro_rules! err {
        () => {
            |e| cloud_error(kind, id, e)
        };
    }
    match kind {
        ResourceKind::IamRole => {
            let role = name_of(id);
            let inline = iam.list_role_policies().role_name(role).send().await.map_err(err!())?;
            for p in inline.policy_names() {
                iam.delete_role_policy().role_name(role).policy_name(p).send().await.map_err(err!())?;
            }
            let attached = iam.list_attached_role_policies().role_name(role).send().await.map_err(err!())?;
            for p in attached.attached_policies().iter().filter_map(|p| p.policy_arn()) {
                iam.detach_role_policy().role_name(role).policy_arn(p).send().await.map_err(err!())?;
            }
            let profiles = iam.list_instance_profiles_for_role().role_name(role).send().await.map_err(err!())?;
            for p in profiles.instance_profiles() {
                iam.remove_role_from_instance_profile()
                    .instance_profile_name(p.instance_profile_name())
                    .role_name(role)
                    .send()
                    .await
                    .map_err(err!())?;
            }
            iam.delete_role().role_name(role).send().await.map_err(err!())?;
        }
        ResourceKind::IamRolePolicy => {
            let (role, policy) = split_child(id)?;
            if policy.starts_with("arn:") {
                iam.detach_role_policy().role_name(role).policy_arn(policy).send().await.map_err(err!())?;
            } else {
                iam.delete_role_policy().role_name(role).policy_name(policy).send().await.map_err(err!())?;
            }
        }
        ResourceKind::InstanceProfile => {
            let profile = name_of(id);
            let out = iam.get_instance_profile().instance_profile_name(profile).send().await.map_err(err!())?;
            for r in out.instance_profile().map(|p| p.roles()).unwrap_or_default() {
                iam.remove_role_from_instance_profile()
                    .instance_profile_name(profile)
                    .role_name(r.role_name())
                    .send()
                    .await
                    .map_err(err!())?;
            }
            iam.delete_instance_profile().instance_profile_name(profile).send().await.map_err(err!())?;
        }
        other => return Err(CloudError::Invalid(format!("not an IAM resource: {other}"))),
    }
    Ok(())
}
