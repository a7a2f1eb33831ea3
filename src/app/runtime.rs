//! The one runtime builder: every command runs on one thread, on the clock its cloud keeps.

use crate::base::error::Error;

/// Which clock a command's runtime keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Time {
    /// The simulator's: paused, so that time jumps to the next due event.
    Virtual,
    /// The wall clock, with network I/O: AWS and the language-model servers.
    Real,
}

/// The one runtime builder: every command runs on one thread.
pub(crate) fn runtime(time: Time) -> Result<tokio::runtime::Runtime, Error> {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    match time {
        // Signals (Ctrl-C during an attack) need the I/O driver; time stays virtual.
        Time::Virtual => builder.enable_time().enable_io().start_paused(true),
        Time::Real => builder.enable_all(),
    };
    builder.build().map_err(|e| Error::Internal(format!("starting the runtime: {e}")))
}
