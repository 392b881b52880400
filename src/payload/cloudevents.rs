//! The HTTP sink: each record is POSTed as a CloudEvent in binary mode, as KServe's request
//! logger (`pkg/logger/worker.go`) sends them: the record is the body (`application/json`),
//! the event's attributes are `ce-*` headers. `ce-type` is
//! `org.kubeflow.serving.inference.request` or `.response`; `ce-id` is the request id, the
//! same for both records of a pair (as KServe's); `ce-source` names this host and the model;
//! KServe's extensions carry the model (`ce-inferenceservicename`), `ce-component: predictor`,
//! `ce-endpoint: default` and, when `POD_NAMESPACE` is set, `ce-namespace`; two of ours carry
//! the version (`ce-modelversion`) and the trace id (`ce-traceid`).
//!
//! Posts run on the writer's own thread, on a runtime of its own (current-thread), at most
//! [`CONCURRENT_POSTS`] at a time; the serving runtime never waits for them. Any answer but
//! 2xx, or no answer within [`POST_TIMEOUT`], is a failure: the sink is down (`writer.rs`).

use bytes::Bytes;
use futures_util::StreamExt;

use super::record::Event;
use super::writer::{Deliver, Undelivered};

/// Posts in flight at once.
pub const CONCURRENT_POSTS: usize = 8;
/// The longest a post may take, connection included.
pub const POST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where and as whom CloudEvents are posted.
pub struct CloudEventsSink {
    url: reqwest::Url,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    /// This daemon's host name, for `ce-source`.
    host: String,
    /// `POD_NAMESPACE`, for `ce-namespace`.
    namespace: Option<String>,
}

impl CloudEventsSink {
    /// A sink posting to `url`; `host` names this daemon in `ce-source`.
    pub fn new(
        url: reqwest::Url,
        host: String,
        namespace: Option<String>,
    ) -> std::io::Result<CloudEventsSink> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = reqwest::Client::builder()
            .timeout(POST_TIMEOUT)
            .connect_timeout(std::time::Duration::from_secs(2))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(CloudEventsSink {
            url,
            client,
            runtime,
            host,
            namespace,
        })
    }

    async fn post(&self, event: &Event) -> Result<(), String> {
        let mut request = self.client.post(self.url.clone());
        for (name, value) in headers(event, &self.host, self.namespace.as_deref()) {
            request = request.header(name, value);
        }
        let answer = request
            .body(Bytes::clone(&event.body))
            .send()
            .await
            .map_err(|err| without_url(&err))?;
        match answer.status() {
            status if status.is_success() => Ok(()),
            status => Err(format!("the sink answered {status}")),
        }
    }
}

impl Deliver for CloudEventsSink {
    fn describe(&self) -> String {
        let mut url = self.url.clone();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_query(None);
        url.to_string()
    }

    fn outcome(&self) -> &'static str {
        "sent"
    }

    /// Posts up to [`CONCURRENT_POSTS`] at a time; after the first failure, starts no more.
    fn deliver(&mut self, events: Vec<Event>) -> Result<(), Undelivered> {
        let failed = std::sync::atomic::AtomicBool::new(false);
        let sink = &*self;
        let mut outcomes: Vec<(usize, Result<(), String>)> = sink.runtime.block_on(
            futures_util::stream::iter(events.iter().enumerate())
                .map(|(index, event)| {
                    let failed = &failed;
                    async move {
                        if failed.load(std::sync::atomic::Ordering::Relaxed) {
                            return (index, Err(String::new()));
                        }
                        let outcome = sink.post(event).await;
                        if outcome.is_err() {
                            failed.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                        (index, outcome)
                    }
                })
                .buffer_unordered(CONCURRENT_POSTS)
                .collect(),
        );
        outcomes.sort_by_key(|(index, _)| *index);
        let error = outcomes
            .iter()
            .find_map(|(_, outcome)| outcome.as_ref().err().filter(|e| !e.is_empty()).cloned());
        let Some(error) = error else {
            return Ok(());
        };
        let undelivered = events
            .into_iter()
            .zip(outcomes)
            .filter(|(_, (_, outcome))| outcome.is_err())
            .map(|(event, _)| event)
            .collect();
        Err(Undelivered {
            events: undelivered,
            error,
        })
    }
}

/// The headers of `event`'s CloudEvent in binary mode.
pub fn headers(event: &Event, host: &str, namespace: Option<&str>) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("content-type", "application/json".to_string()),
        ("ce-specversion", "1.0".to_string()),
        ("ce-id", event.about.request_id.clone()),
        ("ce-type", event.kind.cloudevents_type().to_string()),
        (
            "ce-source",
            format!("hotserve://{host}/models/{}", event.about.model),
        ),
        ("ce-time", event.time.clone()),
        ("ce-inferenceservicename", event.about.model.clone()),
        ("ce-component", "predictor".to_string()),
        ("ce-endpoint", "default".to_string()),
    ];
    if let Some(namespace) = namespace {
        headers.push(("ce-namespace", namespace.to_string()));
    }
    if let Some(version) = &event.about.version {
        headers.push(("ce-modelversion", version.clone()));
    }
    if let Some(trace_id) = &event.about.trace_id {
        headers.push(("ce-traceid", trace_id.clone()));
    }
    headers
}

/// A reqwest error without its URL (which may hold credentials).
fn without_url(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "cannot post"
    };
    let mut source = std::error::Error::source(err);
    let mut detail = String::new();
    while let Some(cause) = source {
        detail = cause.to_string();
        source = cause.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::record::{About, Kind};
    use std::sync::Arc;

    #[test]
    fn binary_mode_headers_as_kserve_sends_them() {
        let event = Event {
            kind: Kind::Response,
            about: Arc::new(About {
                request_id: "0123456789abcdef".into(),
                trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
                model: "sentiment".into(),
                version: Some("3".into()),
            }),
            time: "2026-01-02T03:04:05.000006Z".into(),
            body: Bytes::from_static(b"{}"),
        };
        assert_eq!(
            headers(&event, "node-1", Some("ml")),
            [
                ("content-type", "application/json"),
                ("ce-specversion", "1.0"),
                ("ce-id", "0123456789abcdef"),
                ("ce-type", "org.kubeflow.serving.inference.response"),
                ("ce-source", "hotserve://node-1/models/sentiment"),
                ("ce-time", "2026-01-02T03:04:05.000006Z"),
                ("ce-inferenceservicename", "sentiment"),
                ("ce-component", "predictor"),
                ("ce-endpoint", "default"),
                ("ce-namespace", "ml"),
                ("ce-modelversion", "3"),
                ("ce-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"),
            ]
            .map(|(name, value)| (name, value.to_string()))
        );
        let request = Event {
            kind: Kind::Request,
            about: Arc::new(About {
                request_id: "r".into(),
                trace_id: None,
                model: "sentiment".into(),
                version: None,
            }),
            ..event
        };
        let names: Vec<&str> = headers(&request, "h", None)
            .iter()
            .map(|(n, _)| *n)
            .collect();
        assert!(!names.contains(&"ce-namespace") && !names.contains(&"ce-traceid"));
        assert!(headers(&request, "h", None)
            .contains(&("ce-type", "org.kubeflow.serving.inference.request".into())));
    }

    #[test]
    fn the_sink_is_described_without_credentials() {
        let sink = CloudEventsSink::new(
            reqwest::Url::parse("https://user:secret@sink.example:8443/events?token=t").unwrap(),
            "h".into(),
            None,
        )
        .unwrap();
        assert_eq!(sink.describe(), "https://sink.example:8443/events");
    }
}
