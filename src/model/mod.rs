//! The lab's vocabulary: scenarios and workload profiles, the lab as a typed resource
//! graph (names, options, roles, kinds, tags, prices, policies), and the pipeline's events.

// Attack scenarios and workload profiles.
pub mod scenario;
// Attack families with one intensity knob each, for the evasion frontier.
pub mod evasion;
// What the pipeline's functions report: detections, containment outcomes, notifications.
pub mod events;
// The lab as a resource graph: what up creates, named, tagged and priced.
pub mod lab;
