//! The symbol versions an ELF64 little-endian executable needs from its shared
//! libraries, read from its `.gnu.version_r` (SHT_GNU_verneed) section: what decides
//! whether it starts on an older glibc.

use std::fmt;

const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;
const EM_X86_64: u16 = 62;

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

fn u16_at(b: &[u8], at: usize) -> Result<u16, String> {
    b.get(at..at.saturating_add(2)).map(|s| u16::from_le_bytes([s[0], s[1]])).ok_or_else(|| format!("truncated at byte {at}"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at.saturating_add(4))
        .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
        .ok_or_else(|| format!("truncated at byte {at}"))
}

fn u64_at(b: &[u8], at: usize) -> Result<usize, String> {
    b.get(at..at.saturating_add(8))
        .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")) as usize)
        .ok_or_else(|| format!("truncated at byte {at}"))
}

fn c_string(b: &[u8], at: usize) -> Result<String, String> {
    let rest = b.get(at..).ok_or_else(|| format!("string offset {at} out of bounds"))?;
    let end = rest.iter().position(|&c| c == 0).ok_or("unterminated string")?;
    Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// Reads an ELF64 little-endian file's machine and needed versions.
pub fn read(bytes: &[u8]) -> Result<ElfInfo, String> {
    if bytes.get(..4) != Some(b"\x7fELF") {
        return Err("not an ELF file".into());
    }
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let machine = u16_at(bytes, 18)?;
    let shoff = u64_at(bytes, 0x28)?;
    let shentsize = u16_at(bytes, 0x3a)? as usize;
    let shnum = u16_at(bytes, 0x3c)? as usize;
    if shentsize < 64 {
        return Err(format!("section header size {shentsize} is too small"));
    }
    let section = |i: usize| -> Result<(u32, usize, usize, u32, u32), String> {
        let h = shoff.saturating_add(i.saturating_mul(shentsize));
        // sh_type, sh_offset, sh_size, sh_link, sh_info
        Ok((
            u32_at(bytes, h.saturating_add(4))?,
            u64_at(bytes, h.saturating_add(0x18))?,
            u64_at(bytes, h.saturating_add(0x20))?,
            u32_at(bytes, h.saturating_add(0x28))?,
            u32_at(bytes, h.saturating_add(0x2c))?,
        ))
    };
    let mut needed = Vec::new();
    for i in 0..shnum {
        let (kind, offset, _, link, count) = section(i)?;
        if kind != SHT_GNU_VERNEED {
            continue;
        }
        let (_, strings, _, _, _) = section(link as usize)?;
        let mut entry = offset;
        for _ in 0..count {
            let aux_count = u16_at(bytes, entry.saturating_add(2))?;
            let file = c_string(bytes, strings.saturating_add(u32_at(bytes, entry.saturating_add(4))? as usize))?;
            let mut aux = entry.saturating_add(u32_at(bytes, entry.saturating_add(8))? as usize);
            for _ in 0..aux_count {
                needed.push(Needed {
                    file: file.clone(),
                    version: c_string(bytes, strings.saturating_add(u32_at(bytes, aux.saturating_add(8))? as usize))?,
                });
                let next = u32_at(bytes, aux.saturating_add(12))? as usize;
                if next == 0 {
                    break;
                }
                aux = aux.saturating_add(next);
            }
            let next = u32_at(bytes, entry.saturating_add(12))? as usize;
            if next == 0 {
                break;
            }
            entry = entry.saturating_add(next);
        }
    }
    needed.sort();
    needed.dedup();
    Ok(ElfInfo { x86_64: machine == EM_X86_64, needed })
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
