//! cis, the Cloud Immune System lab: provisions a detect-and-contain lab on AWS or on an
//! embedded simulator, attacks it with scripted exfiltration, measures how fast it detects
//! and isolates, and tears it all down.
//!
//! The crate is layered. Each module below may import only modules declared before it
//! (here, and among siblings in each module's own `mod` lines); the test
//! `layers::every_import_points_down` reads `src/` and fails on any import that points up.
//! A backend stands above the orchestration and below the CLI: the orchestration knows
//! only the [`cloud::Cloud`] boundary.

// Time, seeded randomness, units, versioned files, tables, zips, error kinds.
mod base;
// The formats AWS speaks: flow-log records and envelopes, metric filters and alarms.
mod formats;
// The anomaly detector: window features, the isolation forest, the trained model.
mod detect;
// The lab's vocabulary: scenarios, workloads, the resource graph, the pipeline's events.
mod model;
// The Lambda handlers (detector, containment) as plain async functions over small traits.
mod functions;
// The `Cloud` boundary: what the orchestration asks of a cloud, in the lab's language.
pub mod cloud;
// The state directory and the write-ahead ledger.
mod store;
// The simulator's engine: an in-process AWS account on a virtual clock.
pub mod sim;
// Baseline capture on the simulator, the model trained on it, the alarm calibrated on it.
pub mod training;
// Ordering, retries, waits, the ledger and measurement, once for every backend.
pub mod orchestrator;
// Fitting the simulator's delays to runs measured on AWS (`cis sim calibrate`).
mod calibration;
// The clouds behind the boundary: the simulator and AWS.
pub mod backends;
// Triage and root-cause analysis: the built-in analyser and the language models.
pub mod analysis;
// Reports over lab runs: text, JSON, Markdown, HTML.
pub mod report;
// The command line: flags as types, one file per verb family, the renderers.
mod app;

// The layers of several parts are private; these parts are what the Lambda functions
// (the `lambda` crate), the test suite and the benchmarks use.
pub use app::{cli, main};
pub use base::error::{Error, Result};
pub use base::{clock, error, rng, table, zip};
pub use detect::{anomaly, features, forest};
pub use formats::{flowlog, metric};
pub use functions::{containment, detector};
pub use model::{events, lab, scenario};
pub use store::{ledger, state};
