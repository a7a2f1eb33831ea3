//! The simulator's engine: an in-process AWS account for exactly the lab's resources,
//! with a virtual clock. The backend that puts it behind the `Cloud` boundary is
//! `backends::sim`.

// Latency of every stage, from assets/latency.toml.
pub mod latency;
// Injected faults (--faults).
pub mod faults;
// The data plane's persisted state: events due, connections, windows, the pipeline's log.
pub mod traffic;
// The account: resources, control-plane calls, the event queue.
pub mod world;
// The data plane: traffic, connection tracking, flow logs, delivery, the functions.
pub mod dataplane;
