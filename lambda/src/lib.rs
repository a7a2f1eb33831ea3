//! The lab's Lambda functions around the cis library's handlers.
//!
//! The handlers themselves ([`cis::containment`], [`cis::detector`]) are plain async
//! functions over small traits, run unchanged by the simulator; their AWS side (the SDK
//! clients behind the traits) is `cis::backends::aws::functions`. This crate reads the functions'
//! configuration from their environment and hands them to `lambda_runtime`. `cargo xtask lambdas`
//! builds both binaries as `bootstrap` zips for `provided.al2023` on x86_64.

/// The SDK side of the handlers' traits lives in cis, which `cis release` shares.
pub use cis::backends::aws::functions as aws;

use std::path::PathBuf;

/// JSON lines to CloudWatch Logs, filtered by `RUST_LOG` (info by default).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().json().with_env_filter(filter).with_target(false).without_time().init();
}

/// Where the detector function finds its model: `CIS_MODEL_PATH`, else `model.json`
/// beside the bootstrap in the deployment package (`LAMBDA_TASK_ROOT`).
pub fn model_path(get: impl Fn(&str) -> Option<String>) -> PathBuf {
    match get("CIS_MODEL_PATH").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(get("LAMBDA_TASK_ROOT").unwrap_or_else(|| ".".into())).join("model.json"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_model_sits_beside_the_bootstrap_unless_told_otherwise() {
        let env =
            |pairs: &'static [(&'static str, &'static str)]| move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        assert_eq!(super::model_path(env(&[("LAMBDA_TASK_ROOT", "/var/task")])), std::path::Path::new("/var/task/model.json"));
        assert_eq!(
            super::model_path(env(&[("LAMBDA_TASK_ROOT", "/var/task"), ("CIS_MODEL_PATH", "/opt/m.json")])),
            std::path::Path::new("/opt/m.json")
        );
    }
}
