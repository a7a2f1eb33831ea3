//! The state directory: where ledgers, runs and the simulated account live.

use std::path::{Path, PathBuf};

use crate::cloud::CloudKind;
use crate::model::lab::LabName;

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

    /// Where `cis sim frontier` keeps its studies, for `cis report --format html`.
    pub fn frontiers_dir(&self) -> PathBuf {
        self.root.join("frontiers")
    }
}
