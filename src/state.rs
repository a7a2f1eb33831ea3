//! The state directory: where ledgers, runs and the simulated account live, and the two
//! primitives every state file goes through (atomic replace, exclusive lock).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cloud::CloudKind;
use crate::error::{Error, Result};
use crate::lab::LabName;

/// `$XDG_STATE_HOME/cis`, or `~/.local/state/cis` when that is unset.
pub fn default_state_dir() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from(".cis-state"));
    base.join("cis")
}

/// Paths inside one state directory. Labs of different clouds never share files.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn labs_dir(&self, cloud: CloudKind) -> PathBuf {
        self.root.join(cloud.name()).join("labs")
    }

    pub fn lab_dir(&self, cloud: CloudKind, lab: &LabName) -> PathBuf {
        self.labs_dir(cloud).join(lab.as_str())
    }

    pub fn ledger(&self, cloud: CloudKind, lab: &LabName) -> PathBuf {
        self.lab_dir(cloud, lab).join("ledger.json")
    }

    pub fn runs_dir(&self, cloud: CloudKind, lab: &LabName) -> PathBuf {
        self.lab_dir(cloud, lab).join("runs")
    }

    /// The simulated account: one per state directory, as an AWS account is one per login.
    pub fn sim_account_dir(&self) -> PathBuf {
        self.root.join("sim").join("account")
    }
}

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
