//! How a command fails: the exit status and the message on standard error.

use std::process::ExitCode;

/// A failed command. `NotFound` exits 1 (e.g. `jessy get` of a missing key), everything
/// else exits 2.
#[derive(Debug)]
pub enum Failure {
    /// What was asked for does not exist; the message says what.
    #[allow(dead_code)] // used by the data subcommands (get, del, ...)
    NotFound(String),
    /// Any other error, with its chain of causes.
    Error(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Error(e)
    }
}

impl Failure {
    /// Prints the reason to standard error and returns the exit status.
    pub fn report(self) -> ExitCode {
        match self {
            Failure::NotFound(what) => {
                eprintln!("jessy: not found: {what}");
                ExitCode::from(1)
            }
            Failure::Error(e) => {
                // `{:#}` prints the whole chain: "cannot open the store in X: X is locked by process 42; ..."
                eprintln!("jessy: error: {e:#}");
                ExitCode::from(2)
            }
        }
    }
}
