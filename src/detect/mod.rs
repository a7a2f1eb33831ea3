//! The anomaly detector on its own: window features from flow-log records, the isolation
//! forest, and the trained model that scores windows. It knows flow logs, not the lab.

// Destination groups: AWS service prefixes, and /24s for the rest.
pub mod destinations;
// A window's features, from flow-log records.
pub mod features;
// Memory across windows: the never-seen networks an interface keeps going back to.
pub mod memory;
// The isolation forest.
pub mod forest;
// The trained anomaly model: forest, per-feature tails, thresholds, its file.
pub mod anomaly;
