//! The pipeline's Lambda handlers as plain async functions over small traits: the same
//! code runs in the simulator and, with the SDK side in `backends::aws`, on AWS.

// The detector function: flow-log records in, detections out.
pub mod detector;
// The containment function: a detection in, the instance isolated.
pub mod containment;
