//! What cis keeps on disk between commands: the state directory and the write-ahead
//! ledger of each lab.

// The state directory and where each file lives in it.
pub mod state;
// The write-ahead ledger of one lab.
pub mod ledger;
