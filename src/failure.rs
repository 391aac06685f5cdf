//! How a command fails: the exit status and the message on standard error.

use std::process::ExitCode;

/// A failed command. `NotFound` exits 1 (e.g. `jessy get` of a missing key), everything
/// else exits 2.
#[derive(Debug)]
pub enum Failure {
    /// What was asked for does not exist; the message says what.
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
                eprintln!("jessy: error: {}", chain(&e));
                ExitCode::from(2)
            }
        }
    }
}

/// The whole chain of causes, "context: cause: cause", skipping a cause whose text the
/// message already ends with (engine errors print their OS error and also expose it as the
/// source).
fn chain(e: &anyhow::Error) -> String {
    let mut message = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_skip_repeated_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = anyhow::Error::new(io).context("open x: gone").context("restoring");
        assert_eq!(chain(&e), "restoring: open x: gone");
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(chain(&e), "outer: inner");
    }
}
