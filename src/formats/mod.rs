//! The formats AWS speaks that the lab reads and writes: VPC Flow Log records and the
//! CloudWatch Logs envelopes they travel in, and CloudWatch's metric filters and alarms.

// VPC Flow Log records, their formats, and the files and envelopes that carry them.
pub mod flowlog;
// Metric-filter patterns, metric transformations and alarm evaluation.
pub mod metric;
