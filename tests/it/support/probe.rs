//! Looking at a running hotserve the way an operator's tools do: `/health` ([`health`],
//! [`health_until`]), readiness ([`ready`]), one series of `/metrics` ([`metric`],
//! [`metric_reaches`], [`closed_for`]) and any JSON route ([`get_json`]). The same for a
//! server in the test process and for the real binary ([`Served`]); every wait goes through
//! [`eventually`] and shows the server's logs when it fails.

use serde_json::Value;

use super::wait::{eventually, Wait, LOADING};

/// A hotserve the tests talk to: in the test process (`inprocess::Server`) or the real binary
/// (`hotserve::Hotserve`).
pub trait Served {
    /// The URL of `path` on the server (`https://` when it serves TLS).
    fn url(&self, path: &str) -> String;
    /// Its log lines so far, shown when a wait on it fails.
    fn logs(&self) -> String;
    /// Why it has stopped, if it has: a wait for it to become ready fails at once then.
    fn stopped(&self) -> Option<String>;
    /// Whether it serves HTTPS; probes then accept its test certificate unverified (the tests
    /// that are about certificates check them with real clients).
    fn tls(&self) -> bool;
}

/// A client for probing `server`.
fn client(server: &impl Served) -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(server.tls())
        .build()
        .expect("an HTTP client")
}

/// `/health`, or what went wrong asking for it.
async fn try_health(client: &reqwest::Client, server: &impl Served) -> Result<Value, String> {
    let response = client
        .get(server.url("/health"))
        .send()
        .await
        .map_err(|err| format!("no answer from /health: {err}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|err| err.to_string())?;
    serde_json::from_str(&text).map_err(|err| format!("/health answered {status} {text:?}: {err}"))
}

/// `/health`, as JSON; fails the test when the server does not answer with it.
pub async fn health(server: &impl Served) -> Value {
    try_health(&client(server), server)
        .await
        .unwrap_or_else(|err| panic!("{err}\nlogs:\n{}", server.logs()))
}

/// Polls `/health` until `done` holds and returns that answer. `wait` is what is waited for
/// (a description, or a [`Wait`] with a longer patience); its failure shows the last answer
/// and the server's logs.
pub async fn health_until<'a>(
    server: &'a impl Served,
    wait: impl Into<Wait<'a>>,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let client = client(server);
    let wait = wait.into().logs(|| server.logs());
    eventually(wait, async || {
        let health = try_health(&client, server).await?;
        if done(&health) {
            Ok(health)
        } else {
            Err(health.to_string())
        }
    })
    .await
}

/// Waits until `/health/ready` answers 200 (a model loaded, within [`LOADING`]); fails at once
/// if the server stops first.
pub async fn ready(server: &impl Served) {
    let client = client(server);
    let url = server.url("/health/ready");
    let wait = Wait::new(format!("{url} to answer 200"))
        .within(LOADING)
        .logs(|| server.logs());
    eventually(wait, async || {
        if let Some(why) = server.stopped() {
            panic!(
                "the server stopped before it was ready ({why}); logs:\n{}",
                server.logs()
            );
        }
        match client.get(&url).send().await {
            Ok(response) if response.status() == 200 => Ok(()),
            Ok(response) => Err(format!(
                "{} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            )),
            Err(err) => Err(err.to_string()),
        }
    })
    .await
}

/// `GET path`: the status and the body as JSON (`Null` when it is not JSON).
pub async fn get_json(server: &impl Served, path: &str) -> (u16, Value) {
    let response = client(server)
        .get(server.url(path))
        .send()
        .await
        .expect("the request is answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The value of `series` (a metric name with its labels, exactly as exposed) on the
/// `/metrics` page at `url`; `None` when the page does not show it.
pub async fn metric(url: &str, series: &str) -> Option<f64> {
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

/// Waits until `series` on the `/metrics` page at `url` reaches `at_least`; returns its value.
pub async fn metric_reaches(url: &str, series: &str, at_least: f64) -> f64 {
    eventually(format!("{series} >= {at_least}"), async || {
        match metric(url, series).await {
            Some(value) if value >= at_least => Ok(value),
            Some(value) => Err(value.to_string()),
            None => Err(format!("no {series} on {url}")),
        }
    })
    .await
}

/// Waits until the server counts `at_least` connections closed for `reason`
/// (`hotserve_connections_closed_total`).
pub async fn closed_for(server: &impl Served, reason: &str, at_least: f64) {
    let series = format!("hotserve_connections_closed_total{{reason=\"{reason}\"}}");
    metric_reaches(&server.url("/metrics"), &series, at_least).await;
}
