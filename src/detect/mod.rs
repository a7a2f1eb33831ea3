//! The anomaly detector on its own: window features from flow-log records, the isolation
//! forest, and the trained model that scores windows. It knows flow logs, not the lab.

// A window's features, from flow-log records.
pub mod features;
// The isolation forest.
pub mod forest;
// The trained anomaly model: forest, learned limits, threshold, its file.
pub mod anomaly;
