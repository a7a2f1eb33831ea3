//! The library's error kinds, from every layer: a cloud's ([`CloudError`]) and an
//! analyser's ([`AnalysisError`]) are named by kind here so that the umbrella [`Error`]
//! stands below everything that returns it. The CLI adds context with `anyhow` and maps bad input to
//! exit status 2; every message says what to do next.

use std::path::PathBuf;

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
    Analysis(#[from] AnalysisError),

    /// The user stopped the command (Ctrl-C) and it wound down cleanly; the message says
    /// what was done and what to run next. The CLI exits with status 130.
    #[error("{0}")]
    Interrupted(String),

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
            || matches!(self, Error::Io { source, .. } if Self::unwritable(source))
    }

    /// A place cis may not write to or that is not a directory: the user's to change.
    fn unwritable(e: &std::io::Error) -> bool {
        use std::io::ErrorKind as K;
        matches!(e.kind(), K::PermissionDenied | K::NotADirectory | K::ReadOnlyFilesystem)
    }

    /// What to do next where the message alone does not say it.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Error::Cloud(CloudError::AccessDenied(_)) => {
                Some("the identity cis runs as may not make this call: `cis policy` prints the IAM policy that allows every call cis makes")
            }
            Error::Io { source, .. } if Self::unwritable(source) => {
                Some("give a directory cis may write to with --state-dir (or CIS_STATE_DIR)")
            }
            _ => None,
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong at the cloud, in kinds the orchestration acts on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} {name} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("{what} is still in use: {detail}")]
    DependencyViolation { what: String, detail: String },
    #[error("throttled: {0}")]
    Throttled(String),
    #[error("not propagated yet: {0}")]
    NotPropagatedYet(String),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("no usable credentials: {0}")]
    Credentials(String),
    /// The credentials work, but their policy (or an SCP) does not allow the call.
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("{0}")]
    Other(String),
}

impl CloudError {
    /// Errors that go away by themselves: the orchestration retries these with backoff.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CloudError::DependencyViolation { .. }
                | CloudError::Throttled(_)
                | CloudError::NotPropagatedYet(_)
                | CloudError::Unavailable(_)
        )
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, CloudError::NotFound { .. })
    }
}

/// Why an analyser gave no answer: the message says what to check.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("the {analyser} analyser did not answer within {seconds} s: raise --timeout or check the server at {target}")]
    Timeout { analyser: String, seconds: u64, target: String },
    #[error("the {analyser} analyser could not be reached at {target}: {detail}")]
    Unreachable { analyser: String, target: String, detail: String },
    #[error("the {analyser} analyser's answer is unusable: {detail}")]
    BadAnswer { analyser: String, detail: String },
}
