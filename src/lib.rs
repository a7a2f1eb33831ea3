//! cis, the Cloud Immune System lab: provisions a detect-and-contain lab on AWS or on an
//! embedded simulator, attacks it with scripted exfiltration, measures how fast it detects
//! and isolates, and tears it all down.
//!
//! Dependencies point one way: [`cli`] -> [`commands`] -> [`orchestrator`] -> the
//! [`cloud::Cloud`] boundary <- [`sim`] (and the AWS backend).

pub mod analysis;
#[cfg(feature = "aws-functions")]
pub mod aws;
pub mod cli;
pub mod clock;
pub mod cloud;
pub mod commands;
pub mod containment;
pub mod detection;
pub mod detector;
pub mod error;
pub mod features;
pub mod flowlog;
pub mod forest;
pub mod lab;
pub mod ledger;
pub mod metric;
pub mod orchestrator;
pub mod progress;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod sim;
pub mod state;
pub mod table;
pub mod zip;

pub use error::{Error, Result};
