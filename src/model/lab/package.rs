//! The Lambda deployment packages `cis up --cloud aws` uploads: `containment.zip` and
//! `detector.zip`, each with a `bootstrap` for `provided.al2023`, built by
//! `cargo xtask lambdas`. The simulator runs the same handlers in-process and needs none.

use std::path::{Path, PathBuf};

use super::FunctionCode;
use crate::base::error::Error;

/// Where packages are looked for, in order: `CIS_LAMBDA_DIR`, `../lambda` beside the
/// running executable (`target/lambda` for `target/release/cis`), `./target/lambda`.
pub fn search_dirs(env_dir: Option<PathBuf>, exe: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    dirs.extend(env_dir);
    if let Some(dir) = exe.and_then(Path::parent).and_then(Path::parent) {
        dirs.push(dir.join("lambda"));
    }
    dirs.push(PathBuf::from("target/lambda"));
    dirs.dedup();
    dirs
}

/// The process's search directories.
pub fn default_search_dirs() -> Vec<PathBuf> {
    search_dirs(std::env::var_os("CIS_LAMBDA_DIR").map(PathBuf::from), std::env::current_exe().ok().as_deref())
}

pub fn file_name(code: FunctionCode) -> &'static str {
    match code {
        FunctionCode::Containment => "containment.zip",
        FunctionCode::Detector => "detector.zip",
        FunctionCode::Janitor => "janitor.zip",
    }
}

/// A package found and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Package {
    pub path: PathBuf,
    pub bytes: u64,
}

/// Finds a function's package, or says exactly how to build it.
pub fn locate(code: FunctionCode, dirs: &[PathBuf]) -> Result<Package, Error> {
    let name = file_name(code);
    for dir in dirs {
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => {
                check(&bytes).map_err(|why| Error::BadState {
                    path: path.clone(),
                    message: format!("{why}: rebuild it with `cargo xtask lambdas`"),
                })?;
                return Ok(Package { path, bytes: bytes.len() as u64 });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    let looked: Vec<String> = dirs.iter().map(|d| d.join(name).display().to_string()).collect();
    Err(Error::LabState(format!(
        "the {} function's package is missing (looked for {}): build them with `cargo xtask lambdas` in the cis source tree, or point CIS_LAMBDA_DIR at a directory holding containment.zip, detector.zip and janitor.zip",
        match code {
            FunctionCode::Containment => "containment",
            FunctionCode::Detector => "detector",
            FunctionCode::Janitor => "janitor",
        },
        looked.join(", ")
    )))
}

/// A zip archive whose central directory names `bootstrap`.
fn check(bytes: &[u8]) -> Result<(), String> {
    if !bytes.starts_with(b"PK\x03\x04") {
        return Err("not a zip archive".into());
    }
    // End of central directory: the last 22 bytes (the packages carry no comment).
    let eocd = bytes.len().checked_sub(22).filter(|&i| bytes[i..].starts_with(b"PK\x05\x06")).ok_or("no end of central directory")?;
    let u32_at = |i: usize| bytes.get(i..i + 4).map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")) as usize);
    let u16_at = |i: usize| bytes.get(i..i + 2).map(|s| u16::from_le_bytes([s[0], s[1]]) as usize);
    let mut at = u32_at(eocd + 16).ok_or("truncated")?;
    let entries = u16_at(eocd + 10).ok_or("truncated")?;
    for _ in 0..entries {
        if bytes.get(at..at + 4) != Some(b"PK\x01\x02") {
            return Err("damaged central directory".into());
        }
        let name_len = u16_at(at + 28).ok_or("truncated")?;
        let extra = u16_at(at + 30).ok_or("truncated")?;
        let comment = u16_at(at + 32).ok_or("truncated")?;
        if bytes.get(at + 46..at + 46 + name_len) == Some(b"bootstrap") {
            return Ok(());
        }
        at += 46 + name_len + extra + comment;
    }
    Err("no bootstrap in the archive: Lambda's provided.al2023 runtime starts ./bootstrap".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored (uncompressed) zip with the given names, as `zip -0` writes them.
    fn zip(names: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for n in names {
            let offset = out.len() as u32;
            out.extend_from_slice(b"PK\x03\x04");
            out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            out.extend_from_slice(&(n.len() as u16).to_le_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(n.as_bytes());
            central.extend_from_slice(b"PK\x01\x02");
            central.extend_from_slice(&[0u8; 24]);
            central.extend_from_slice(&(n.len() as u16).to_le_bytes());
            central.extend_from_slice(&[0u8; 12]);
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(n.as_bytes());
        }
        let (cd, cd_len) = (out.len() as u32, central.len() as u32);
        out.extend_from_slice(&central);
        out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
        out.extend_from_slice(&(names.len() as u16).to_le_bytes());
        out.extend_from_slice(&(names.len() as u16).to_le_bytes());
        out.extend_from_slice(&cd_len.to_le_bytes());
        out.extend_from_slice(&cd.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out
    }

    #[test]
    fn finds_the_first_package_and_checks_it_holds_a_bootstrap() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(b.path().join("containment.zip"), zip(&["model.json", "bootstrap"])).unwrap();
        let dirs = [a.path().to_path_buf(), b.path().to_path_buf()];
        assert_eq!(locate(FunctionCode::Containment, &dirs).unwrap().path, b.path().join("containment.zip"));

        let missing = locate(FunctionCode::Detector, &dirs).unwrap_err().to_string();
        assert!(missing.contains("cargo xtask lambdas") && missing.contains("detector.zip"), "{missing}");

        std::fs::write(a.path().join("detector.zip"), zip(&["main"])).unwrap();
        let wrong = locate(FunctionCode::Detector, &dirs).unwrap_err().to_string();
        assert!(wrong.contains("no bootstrap") && wrong.contains("detector.zip"), "{wrong}");
        std::fs::write(a.path().join("detector.zip"), b"#!/bin/sh").unwrap();
        assert!(locate(FunctionCode::Detector, &dirs).unwrap_err().to_string().contains("not a zip"));
    }

    #[test]
    fn search_order() {
        let dirs = search_dirs(Some("/opt/cis".into()), Some(Path::new("/src/cis/target/release/cis")));
        assert_eq!(dirs, [PathBuf::from("/opt/cis"), PathBuf::from("/src/cis/target/lambda"), PathBuf::from("target/lambda")]);
    }
}
