//! The symbol versions an ELF64 executable needs from its shared libraries, read from its
//! `.gnu.version_r` (SHT_GNU_verneed) section by the `object` crate: what decides whether
//! it starts on an older glibc.

use std::fmt;

use object::elf::EM_X86_64;
use object::read::elf::{ElfFile64, FileHeader as _};

/// One needed version: `GLIBC_2.34` from `libc.so.6`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Needed {
    pub file: String,
    pub version: String,
}

impl Needed {
    /// `(2, 34)` for `GLIBC_2.34`; None for other names (`GLIBC_PRIVATE`, `GCC_3.0`).
    pub fn glibc(&self) -> Option<(u32, u32)> {
        let v = self.version.strip_prefix("GLIBC_")?;
        let mut parts = v.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
        Some((major, minor))
    }
}

impl fmt::Display for Needed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.version, self.file)
    }
}

/// What the executable is and needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfInfo {
    pub x86_64: bool,
    pub needed: Vec<Needed>,
}

impl ElfInfo {
    /// The newest glibc version it needs.
    pub fn newest_glibc(&self) -> Option<(u32, u32)> {
        self.needed.iter().filter_map(Needed::glibc).max()
    }

    /// The versions newer than `limit`.
    pub fn glibc_newer_than(&self, limit: (u32, u32)) -> Vec<&Needed> {
        self.needed.iter().filter(|n| n.glibc().is_some_and(|v| v > limit)).collect()
    }
}

/// Reads an ELF64 file's machine and needed versions.
pub fn read(bytes: &[u8]) -> Result<ElfInfo, String> {
    if bytes.get(..4) != Some(b"\x7fELF") {
        return Err("not an ELF file".into());
    }
    let elf = ElfFile64::<object::Endianness>::parse(bytes).map_err(|e| format!("not a 64-bit ELF file this reader takes: {e}"))?;
    let endian = elf.endian();
    let sections = elf.elf_section_table();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut needed = Vec::new();
    if let Some((mut files, link)) = sections.gnu_verneed(endian, bytes).map_err(|e| e.to_string())? {
        let strings = sections.strings(endian, bytes, link).map_err(|e| e.to_string())?;
        while let Some((file, mut versions)) = files.next().map_err(|e| e.to_string())? {
            let file = text(file.file(endian, strings).map_err(|e| e.to_string())?);
            while let Some(version) = versions.next().map_err(|e| e.to_string())? {
                needed.push(Needed { file: file.clone(), version: text(version.name(endian, strings).map_err(|e| e.to_string())?) });
            }
        }
    }
    needed.sort();
    needed.dedup();
    Ok(ElfInfo { x86_64: elf.elf_header().e_machine(endian) == EM_X86_64, needed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_this_test_binary_needs() {
        // The test binary is an ELF linked against the machine's glibc like any other.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let info = read(&me).unwrap();
        assert_eq!(info.x86_64, cfg!(target_arch = "x86_64"));
        assert!(info.needed.iter().any(|n| n.file.starts_with("libc.so") && n.glibc().is_some()), "{:?}", info.needed);
        assert!(info.newest_glibc().unwrap() >= (2, 2));
    }

    #[test]
    fn version_names() {
        let n = |v: &str| Needed { file: "libc.so.6".into(), version: v.into() };
        assert_eq!(n("GLIBC_2.34").glibc(), Some((2, 34)));
        assert_eq!(n("GLIBC_2.2.5").glibc(), Some((2, 2)));
        assert_eq!(n("GLIBC_PRIVATE").glibc(), None);
        let info = ElfInfo { x86_64: true, needed: vec![n("GLIBC_2.17"), n("GLIBC_2.35"), n("GLIBC_2.34")] };
        assert_eq!(info.glibc_newer_than((2, 34)), vec![&n("GLIBC_2.35")]);
    }

    #[test]
    fn damaged_files_are_errors_not_panics() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        for len in [0, 3, 16, 63, 64, 200] {
            let _ = read(&me[..len.min(me.len())]);
        }
        assert!(read(b"#!/bin/sh\n").unwrap_err().contains("not an ELF"));
    }
}
