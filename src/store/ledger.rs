//! The write-ahead state ledger of one lab.
//!
//! Before each create the intent is recorded; after it, the id; each write replaces the
//! file atomically. Whatever instant a crash hits, the ledger on disk names everything
//! that may exist, so `cis down` can finish the job and `cis up` can resume it. A ledger
//! this version cannot read (corrupt, or from a newer cis) is refused and left untouched.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::base::clock::Timestamp;
use crate::base::error::{Error, Result};
use crate::base::files::{json_error_message, write_atomic};
use crate::base::versioned::check_header;
use crate::cloud::CloudKind;
use crate::model::lab::{Arming, LabName, LabOptions, ResourceKind, Role};

pub const FORMAT: &str = "cis-ledger";
pub const VERSION: u32 = 1;

/// How far one resource got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryState {
    /// About to be created; may or may not exist.
    Intent,
    /// Created with the recorded id; maybe not ready yet.
    Created,
    Ready,
    /// Deletion started.
    Deleting,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub role: Role,
    pub kind: ResourceKind,
    pub name: String,
    pub id: Option<String>,
    pub state: EntryState,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub format: String,
    pub version: u32,
    pub lab: LabName,
    pub cloud: CloudKind,
    pub account_id: String,
    pub region: String,
    /// The `cis:run` tag of this lab's resources.
    pub run: String,
    pub options: LabOptions,
    pub created_at: Timestamp,
    /// Every resource of the graph reached `ready`.
    pub complete: bool,
    /// What the detector is trained on; a ledger from before labs learned their own
    /// traffic was armed at `up` on the simulated baseline.
    #[serde(default)]
    pub arming: Arming,
    pub entries: Vec<Entry>,
}

impl Ledger {
    /// When a lab with a time to live deletes itself: its `--ttl` counts from its
    /// creation, so a resumed `up` keeps the first expiry.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.options.ttl_s.map(|ttl| self.created_at.plus(std::time::Duration::from_secs(ttl)))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        lab: LabName,
        cloud: CloudKind,
        account_id: String,
        region: String,
        run: String,
        options: LabOptions,
        now: Timestamp,
    ) -> Self {
        Ledger {
            format: FORMAT.into(),
            version: VERSION,
            lab,
            cloud,
            account_id,
            region,
            run,
            options,
            created_at: now,
            complete: false,
            arming: Arming::default(),
            entries: Vec::new(),
        }
    }

    pub fn entry(&self, role: Role) -> Option<&Entry> {
        self.entries.iter().find(|e| e.role == role)
    }

    /// Sets the role's entry (adding it in the order first seen).
    pub fn set(&mut self, entry: Entry) {
        match self.entries.iter_mut().find(|e| e.role == entry.role) {
            Some(e) => *e = entry,
            None => self.entries.push(entry),
        }
    }

    pub fn remove(&mut self, role: Role) {
        self.entries.retain(|e| e.role != role);
    }

    /// Reads a ledger; `None` when there is none. Refuses, without touching it, a file that
    /// is not a ledger this version understands.
    pub fn load(path: &Path) -> Result<Option<Ledger>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        Self::from_text(&text, path).map(Some)
    }

    /// A ledger from the text of `path`, or why it is not one this version reads.
    pub fn from_text(text: &str, path: &Path) -> Result<Ledger> {
        let bad = |message: String| Error::BadState { path: path.to_path_buf(), message };
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            bad(format!("not a readable cis ledger: {}; it was left as it is: restore it or move it aside, then `cis down` sweeps the lab by its tags", json_error_message(&e)))
        })?;
        check_header(&value, FORMAT, VERSION).map_err(bad)?;
        serde_json::from_value(value).map_err(|e| {
            bad(format!(
                "damaged cis ledger: {e}; it was left as it is: restore it or move it aside, then `cis down` sweeps the lab by its tags"
            ))
        })
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Internal(e.to_string()))?;
        write_atomic(path, text.as_bytes())
    }
}

/// A ledger bound to its file: every change is written through at once.
#[derive(Debug)]
pub struct LedgerFile {
    pub path: PathBuf,
    pub ledger: Ledger,
}

impl LedgerFile {
    pub fn update(&mut self, f: impl FnOnce(&mut Ledger)) -> Result<()> {
        f(&mut self.ledger);
        self.ledger.save(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Ledger {
        Ledger::new(
            "lab".parse().unwrap(),
            CloudKind::Sim,
            "1".into(),
            "us-east-1".into(),
            "up-x".into(),
            LabOptions::default(),
            Timestamp(0),
        )
    }

    #[test]
    fn round_trips_and_refuses_what_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        assert!(Ledger::load(&path).unwrap().is_none());
        let mut l = sample();
        l.set(Entry {
            role: Role::Vpc,
            kind: ResourceKind::Vpc,
            name: "cis-lab-vpc".into(),
            id: None,
            state: EntryState::Intent,
            updated_at: Timestamp(1),
        });
        l.save(&path).unwrap();
        assert_eq!(Ledger::load(&path).unwrap().unwrap(), l);

        // What the detector learned goes with the ledger; one written before labs learned
        // their own traffic was armed on the simulated baseline.
        l.arming = Arming::Learning { since: Timestamp(5) };
        l.save(&path).unwrap();
        assert_eq!(Ledger::load(&path).unwrap().unwrap().arming, Arming::Learning { since: Timestamp(5) });
        let mut old: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        old.as_object_mut().unwrap().remove("arming");
        std::fs::write(&path, old.to_string()).unwrap();
        assert_eq!(Ledger::load(&path).unwrap().unwrap().arming, Arming::SimulatedBaseline);

        std::fs::write(&path, "{\"format\": \"cis-ledger\",\n \"version\": 99}").unwrap();
        let err = Ledger::load(&path).unwrap_err().to_string();
        assert!(err.contains("newer cis") && err.contains("ledger.json"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"format\": \"cis-ledger\",\n \"version\": 99}");

        std::fs::write(&path, "{\n\"format\": \"cis-ledger\",\n oops").unwrap();
        let err = Ledger::load(&path).unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
    }
}
