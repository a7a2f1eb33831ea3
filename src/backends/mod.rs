//! The clouds behind the `Cloud` boundary: the embedded simulator and AWS.

// The simulated account behind the `Cloud` boundary.
pub mod sim;
// AWS through the AWS SDK for Rust (the `aws` feature; the functions' SDK side with
// `aws-functions`).
#[cfg(feature = "aws-functions")]
pub mod aws;
