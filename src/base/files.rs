//! The two primitives every state file goes through: an atomic replace and an exclusive
//! lock.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::error::{Error, Result};

/// Replaces `path` with `bytes` so that a crash at any instant leaves either the old file
/// or the new one, never a mix: write a temporary file beside it, sync, rename, sync the
/// directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_replacing(path, bytes, true)
}

/// [`write_atomic`] without the syncs: a process killed at any moment still leaves the old
/// file or the new one (the rename is atomic), but a machine that loses power may lose the
/// last write. For the simulated account, rewritten on every change: a simulated cloud
/// need survive its process, not the machine, and syncing each change made a 30-lab
/// classroom wait on the disk.
pub fn write_replacing_unsynced(path: &Path, bytes: &[u8]) -> Result<()> {
    write_replacing(path, bytes, false)
}

/// Reads a file cis wrote for itself (a run record, an open run, a frontier study): its
/// `format` and `version` checked, then the body; `what` names it in errors and `advice`
/// says what to do about a bad one.
pub fn read_versioned<T: serde::de::DeserializeOwned>(path: &Path, format: &str, version: u32, what: &str, advice: &str) -> Result<T> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let bad = |message: String| Error::BadState { path: path.to_path_buf(), message };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not a readable {what}: {}; {advice}", json_error_message(&e))))?;
    super::versioned::check_header(&value, format, version).map_err(bad)?;
    serde_json::from_value(value).map_err(|e| bad(format!("damaged {what}: {e}; {advice}")))
}

/// Removes `dir` and everything under it; a directory that is not there is already gone.
/// For scratch accounts (the demo's, a study's), made afresh each time.
pub fn remove_dir_if_present(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

fn write_replacing(path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    let dir = path.parent().ok_or_else(|| Error::Internal(format!("{} has no parent", path.display())))?;
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if sync {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| Error::io(path, e))
}

/// An exclusive lock on a file, held until dropped. Two cis processes never write the same
/// ledger or simulated account at once.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
}

pub fn lock_exclusive(path: &Path, what: &str) -> Result<LockGuard> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(|e| Error::io(path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(LockGuard { _file: file }),
        Err(fs::TryLockError::WouldBlock) => {
            Err(Error::LabState(format!("another cis command is using {what} (lock {}): wait for it to finish", path.display())))
        }
        Err(fs::TryLockError::Error(e)) => Err(Error::io(path, e)),
    }
}

/// A JSON error as a message that names the line and column.
pub fn json_error_message(e: &serde_json::Error) -> String {
    // serde_json's message already ends with "at line L column C".
    e.to_string()
}
