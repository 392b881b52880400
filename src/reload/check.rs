//! One check of a configured model ([`check`]): the source's own steps ([`super::local`] or
//! [`super::remote`]: what it points at now, and getting its files into the cache), the
//! decision ([`super::decide`]), the gate and the swap (`publish.rs`), then the report
//! ([`super::report`]). Apart from the [`Reloader`] it runs on, which the steps all use.

use std::time::Instant;

use super::reloader::{Reloader, Source};
use super::report::{report, Outcome};
use super::{local, remote, Trigger};

/// Runs one check of `reloader` and reports it (metrics, logs, `/health`, systemd).
pub async fn check(reloader: &Reloader, trigger: Trigger) -> Outcome {
    let started = Instant::now();
    let was_live = reloader.live.current().is_some();
    let outcome = match &reloader.source {
        Source::Local { dir } => local::check(reloader, dir, local::Form::Directory).await,
        Source::Zip { path } => local::check(reloader, path, local::Form::Zip).await,
        Source::Remote {
            uri,
            client,
            impatient,
        } => {
            let client = if !was_live && reloader.has_last_good().await {
                impatient
            } else {
                client
            };
            remote::check(reloader, uri, client).await
        }
    };
    report(reloader, trigger, was_live, &outcome, started.elapsed());
    outcome
}
