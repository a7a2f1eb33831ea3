//! The lab's Lambda functions around the cis library's handlers.
//!
//! The handlers themselves ([`cis::containment`], [`cis::detector`]) are plain async
//! functions over small traits, run unchanged by the simulator; their AWS side (the SDK
//! clients behind the traits) is `cis::backends::aws::functions`. This crate reads the functions'
//! configuration from their environment and hands them to `lambda_runtime`. `cargo xtask lambdas`
//! builds both binaries as `bootstrap` zips for `provided.al2023` on x86_64.

/// The SDK side of the handlers' traits lives in cis, which `cis release` shares.
pub use cis::backends::aws::functions as aws;

/// JSON lines to CloudWatch Logs, filtered by `RUST_LOG` (info by default).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().json().with_env_filter(filter).with_target(false).without_time().init();
}
