//! What every layer stands on and that knows nothing of the lab: time, seeded randomness,
//! units, versioned files and their atomic writes, tables, zips, and the error kinds.

// Timestamps and the one clock (virtual on the simulator).
pub mod clock;
// The seeded random number generator.
pub mod rng;
// Quantities as people read them.
pub mod units;
// The error kinds, a cloud's and an analyser's among them.
pub mod error;
// CIDR blocks and protocol names.
pub mod net;
// The format and version every file cis writes carries.
pub mod versioned;
// Atomic replace and exclusive lock, for every state file.
pub mod files;
// Markdown and CSV tables.
pub mod table;
// Deployment packages as zip archives.
pub mod zip;
