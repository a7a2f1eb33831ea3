//! The library's error kinds. The CLI adds context with `anyhow` and maps bad input to
//! exit status 2; every message says what to do next.

use std::path::PathBuf;

use crate::cloud::CloudError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Cloud(#[from] CloudError),

    /// A state file (ledger, simulated account, run record) that cannot be used as it is.
    #[error("{path}: {message}")]
    BadState { path: PathBuf, message: String },

    /// A file the user gave or wrote, at a line.
    #[error("{path}:{line}: {message}")]
    BadFile { path: PathBuf, line: usize, message: String },

    #[error("unknown scenario '{0}': run `cis scenarios` to list them")]
    UnknownScenario(String),

    /// Input that makes no sense as given; the message names the flag or value.
    #[error("{0}")]
    Usage(String),

    /// The lab is not in a state that allows the command; the message says which command
    /// gets it there.
    #[error("{0}")]
    LabState(String),

    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    /// An analyser that gave no usable answer (late, unreachable, off-format).
    #[error(transparent)]
    Analysis(#[from] crate::analysis::AnalysisError),

    #[error("internal error (please report it): {0}")]
    Internal(String),
}

impl Error {
    /// Errors the user can fix by changing what they typed or the files they gave:
    /// the CLI exits with status 2 for these.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::BadState { .. }
                | Error::BadFile { .. }
                | Error::UnknownScenario(_)
                | Error::Usage(_)
                | Error::LabState(_)
                | Error::Analysis(_)
        ) || matches!(self, Error::Cloud(CloudError::Credentials(_) | CloudError::AccessDenied(_)))
    }

    /// What to do next where the message alone does not say it.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Error::Cloud(CloudError::AccessDenied(_)) => {
                Some("the identity cis runs as may not make this call: `cis policy` prints the IAM policy that allows every call cis makes")
            }
            _ => None,
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
