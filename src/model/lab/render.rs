//! Placeholders in policy documents and environments, filled in once the cloud has given
//! the ids they refer to.

use super::options::LabName;
use super::resource::{dlc_registry, Refs, ResourceConfig, ResourceSpec, Role};
use crate::base::error::Error;

/// Fills `${lab}`, `${region}`, `${account}`, `${dlc-registry}` and `${ref:<role>}` placeholders in a policy
/// document or an environment value. A reference to a role not yet created is an error
/// in the graph, reported as such.
pub fn render(template: &str, lab: &LabName, region: &str, account: &str, refs: &Refs) -> Result<String, Error> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| Error::Internal(format!("unclosed placeholder in {template}")))?;
        let key = &after[..end];
        let value = match key {
            "lab" => lab.to_string(),
            "region" => region.to_string(),
            "account" => account.to_string(),
            "dlc-registry" => dlc_registry(region)
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "AWS's Deep Learning Containers (the --llm endpoint's image) have no registry known for {region}: use another --region, or leave out --llm"
                    ))
                })?
                .to_string(),
            _ => match key.strip_prefix("ref:") {
                Some(name) => {
                    let role =
                        Role::from_name(name).ok_or_else(|| Error::Internal(format!("placeholder ${{{key}}} names no role of the lab")))?;
                    refs.get(&role).cloned().ok_or_else(|| Error::Internal(format!("placeholder ${{{key}}} used before {role} exists")))?
                }
                // Not ours (a flow-log format's `${srcaddr}`): left as it is.
                None => format!("${{{key}}}"),
            },
        };
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The spec with every placeholder in its policies and environment filled in.
pub fn rendered(spec: &ResourceSpec, lab: &LabName, region: &str, account: &str, refs: &Refs) -> Result<ResourceSpec, Error> {
    let mut spec = spec.clone();
    let r = |s: &str| render(s, lab, region, account, refs);
    match &mut spec.config {
        ResourceConfig::IamRole { trust_policy, .. } => *trust_policy = r(trust_policy)?,
        ResourceConfig::InlinePolicy { document, .. } => *document = r(document)?,
        ResourceConfig::LambdaFunction { environment, .. } => {
            for v in environment.values_mut() {
                *v = r(v)?;
            }
        }
        ResourceConfig::MetricAlarm { metric, .. } => {
            for v in metric.dimensions.values_mut() {
                *v = r(v)?;
            }
        }
        ResourceConfig::SageMakerModel { container: Some(c), .. } => {
            c.image = r(&c.image)?;
        }
        _ => {}
    }
    Ok(spec)
}

