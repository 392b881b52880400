//! Waiting for a condition instead of sleeping for a guessed time: [`eventually`] looks at the
//! condition until it holds and fails after a patience generous enough for a busy two-core
//! machine. Its failure says what it waited for, the last thing it saw instead and, when a
//! server is involved, that server's logs ([`Wait`]).
//!
//! There are two patiences, one per kind of wait: [`PATIENCE`] for what a running server does,
//! [`LOADING`] for a step that loads something cold. A test with a slower kind of its own
//! derives its patience from the settings that make it slow (`mlflow/promote.rs`).

use std::fmt::Display;
use std::time::{Duration, Instant};

/// How long anything a running server does may take to be seen: far beyond what any condition
/// takes on an idle machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How long a step that loads something cold may take: a Python server importing its packages
/// (MLflow's tracking server, `mlflow models serve`, moto, azurite: 5-30 s on a busy machine),
/// or hotserve starting and downloading, checking and loading a model, while other tests do
/// the same on the same two cores.
pub const LOADING: Duration = Duration::from_secs(180);

/// How often a condition is looked at; a wait ends on the condition, not on this.
const POLL: Duration = Duration::from_millis(50);

/// What a wait is for: what its failure message names, how long it may take, and whose logs
/// that message shows.
pub struct Wait<'a> {
    /// What is waited for, as the failure message says it ("version 2 live").
    what: String,
    /// How long to look before failing: [`PATIENCE`] unless [`Wait::within`] says otherwise.
    patience: Duration,
    /// The logs of the server involved, read only when the wait fails.
    logs: Option<Box<dyn Fn() -> String + 'a>>,
}

impl<'a> Wait<'a> {
    /// A wait for `what`, with [`PATIENCE`] and no logs.
    pub fn new(what: impl Into<String>) -> Wait<'a> {
        Wait {
            what: what.into(),
            patience: PATIENCE,
            logs: None,
        }
    }

    /// Looks for `patience` instead of [`PATIENCE`] (for a slow step: [`LOADING`]).
    pub fn within(mut self, patience: Duration) -> Wait<'a> {
        self.patience = patience;
        self
    }

    /// Shows `logs()` when the wait fails.
    pub fn logs(mut self, logs: impl Fn() -> String + 'a) -> Wait<'a> {
        self.logs = Some(Box::new(logs));
        self
    }

    /// The failure message: what was waited for and for how long, what was seen last, logs.
    fn failure(&self, last_seen: Option<String>) -> String {
        let mut message = format!("{}: not seen within {:?}", self.what, self.patience);
        if let Some(last_seen) = last_seen {
            message.push_str(&format!("; last seen: {last_seen}"));
        }
        if let Some(logs) = &self.logs {
            message.push_str(&format!("\nlogs:\n{}", logs()));
        }
        message
    }
}

impl From<&str> for Wait<'_> {
    fn from(what: &str) -> Self {
        Wait::new(what)
    }
}

impl From<String> for Wait<'_> {
    fn from(what: String) -> Self {
        Wait::new(what)
    }
}

/// What one look at a condition found: the value waited for, or (for the failure message)
/// what was seen instead. `Option` says nothing about what it saw; `Result` says it in its
/// error.
pub trait Look {
    /// The value the wait returns.
    type Value;
    /// The value, or what was seen instead of it, if anything is worth showing.
    fn look(self) -> Result<Self::Value, Option<String>>;
}

impl<T> Look for Option<T> {
    type Value = T;
    fn look(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Display> Look for Result<T, E> {
    type Value = T;
    fn look(self) -> Result<T, Option<String>> {
        self.map_err(|seen| Some(seen.to_string()))
    }
}

/// Looks at a condition with `attempt` until it finds the value waited for, and returns it;
/// fails after the wait's patience with the wait's description, the last thing `attempt` saw
/// and the logs, if the wait has any. `wait` is a [`Wait`] or just its description.
pub async fn eventually<'a, L: Look>(
    wait: impl Into<Wait<'a>>,
    mut attempt: impl AsyncFnMut() -> L,
) -> L::Value {
    let wait = wait.into();
    let started = Instant::now();
    loop {
        let last_seen = match attempt().await.look() {
            Ok(value) => return value,
            Err(last_seen) => last_seen,
        };
        if started.elapsed() >= wait.patience {
            panic!("{}", wait.failure(last_seen));
        }
        tokio::time::sleep(POLL).await;
    }
}
