//! One check of a configured model ([`check`]): the source's own steps ([`super::local`] or
//! [`super::remote`]: what it points at now, and getting its files into the cache), the
//! decision ([`super::decide`]), the gate and the swap (`publish.rs`), then the report
//! ([`super::report`]). Apart from the [`Reloader`] it runs on, which the steps all use.

use std::time::Instant;

use tracing::field::Empty;
use tracing::Instrument;

use super::reloader::{Reloader, Source};
use super::report::{report, Outcome};
use super::{local, remote, Trigger};

/// Runs one check of `reloader` and reports it (metrics, logs, `/health`, systemd).
pub async fn check(reloader: &Reloader, trigger: Trigger) -> Outcome {
    // The check's span (traces on): the registry calls, the download, the gate and the swap
    // are its children.
    let span = tracing::debug_span!(
        "reload check",
        hotserve.model = %reloader.plan.name,
        hotserve.trigger = trigger.as_str(),
        hotserve.result = Empty,
        hotserve.model.version = Empty,
    );
    let outcome = checked(reloader, trigger).instrument(span.clone()).await;
    span.record("hotserve.result", outcome.result().as_str());
    if let Some(version) = outcome.version() {
        span.record("hotserve.model.version", version);
    }
    outcome
}

async fn checked(reloader: &Reloader, trigger: Trigger) -> Outcome {
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
