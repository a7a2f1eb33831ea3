//! What `cargo xtask` needs and the tests check: reading the glibc versions an ELF
//! binary requires, and writing the zip archives Lambda deploys.

pub mod elf;
/// Shared with cis, which adds the lab's model to the detector's package.
#[path = "../../src/base/zip.rs"]
pub mod zip;

/// The newest glibc on Amazon Linux 2023, the `provided.al2023` runtime's OS.
pub const AL2023_GLIBC: (u32, u32) = (2, 34);
