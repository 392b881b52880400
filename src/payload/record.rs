//! What one logged prediction holds ([`Logged`]: owned data, handed over by the request) and
//! the two records made of it on the writer's thread ([`events`]): a request record and a
//! response record, as JSON, with what a CloudEvent needs to carry them. Pure: no IO.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::access::{millis, timestamp};
use crate::model::tensor::NamedTensor;
use crate::model::{argmax, Scores};

/// Which protocol carried the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 or HTTP/2: MLflow's routes, `/predict`, the Open Inference Protocol over REST.
    Http,
    /// The Open Inference Protocol over gRPC.
    Grpc,
}

/// How the request was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The HTTP status.
    Http(u16),
    /// The gRPC status code (0 is OK).
    Grpc(i32),
}

/// The inputs of a prediction, as the model took them.
#[derive(Clone, Debug, PartialEq)]
pub enum Inputs {
    /// A text model's texts.
    Texts(Vec<String>),
    /// A tensor model's input tensors.
    Tensors(Vec<NamedTensor>),
}

/// The outputs of a prediction.
#[derive(Clone, Debug, PartialEq)]
pub enum Outputs {
    /// A text model's probabilities, one row per text, and its labels.
    Scores {
        labels: Vec<String>,
        scores: Vec<Scores>,
    },
    /// A tensor model's output tensors (every output of the graph).
    Tensors(Vec<NamedTensor>),
}

/// One sampled prediction, from its arrival to its answer: what the request path hands over.
/// Serialized only on the writer's thread.
#[derive(Debug)]
pub struct Logged {
    /// The `x-request-id` the client got (on gRPC: the request's `id`, else its
    /// `x-request-id` metadata, else one made up).
    pub request_id: String,
    /// The caller's W3C trace id.
    pub trace_id: Option<String>,
    /// The configured model name.
    pub model: String,
    /// The version that answered; `None` when the request failed before one was taken.
    pub version: Option<String>,
    pub protocol: Protocol,
    /// The route as the metrics name it (`/predict`, `/v2/models/{name}/infer`, `ModelInfer`).
    pub route: &'static str,
    pub arrived: SystemTime,
    pub answered: SystemTime,
    pub duration: Duration,
    /// `None` when the request failed before its inputs were read, or inputs are not logged.
    pub inputs: Option<Inputs>,
    /// Inputs are left out by configuration (`payload_log_inputs: false`).
    pub inputs_omitted: bool,
    pub status: Status,
    /// Set when the prediction succeeded.
    pub outputs: Option<Outputs>,
    /// The error message the client got, when it failed.
    pub error: Option<String>,
}

/// Which of the pair a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Request,
    Response,
}

impl Kind {
    /// The CloudEvents type KServe's request logger gives it.
    pub fn cloudevents_type(self) -> &'static str {
        match self {
            Kind::Request => "org.kubeflow.serving.inference.request",
            Kind::Response => "org.kubeflow.serving.inference.response",
        }
    }
}

/// One record ready for a sink: its JSON and the attributes a CloudEvent carries.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: Kind,
    /// What both records of the pair are about.
    pub about: Arc<About>,
    /// RFC 3339: the request's arrival or its answer.
    pub time: String,
    /// The record, one line of JSON (shared, so a retry does not copy it).
    pub body: Bytes,
}

/// The request both records of a pair are about.
#[derive(Debug, PartialEq, Eq)]
pub struct About {
    pub request_id: String,
    pub trace_id: Option<String>,
    pub model: String,
    pub version: Option<String>,
}

/// The request record and the response record of `logged`, in that order; `capacity` is the
/// buffer each starts with ([`approximate_bytes`], already known to the queue): sized for the
/// data, a record's buffer is seldom grown (allocation was the largest cost of the writer).
pub fn events(logged: Logged, capacity: usize) -> [Event; 2] {
    let request_time = timestamp(logged.arrived);
    let response_time = timestamp(logged.answered);
    let (request, response) = {
        let common = Common {
            request_id: &logged.request_id,
            trace_id: logged.trace_id.as_deref(),
            model: &logged.model,
            model_version: logged.version.as_deref(),
            protocol: logged.protocol,
            route: logged.route,
        };
        let request = RequestRecord {
            kind: "request",
            time: &request_time,
            common: &common,
            inputs: logged.inputs.as_ref().map(InputsBody::of),
            inputs_omitted: logged.inputs_omitted,
        };
        let (status, grpc_status) = match logged.status {
            Status::Http(status) => (Some(status), None),
            Status::Grpc(code) => (None, Some(code)),
        };
        let response = ResponseRecord {
            kind: "response",
            time: &response_time,
            common: &common,
            duration_ms: millis(logged.duration),
            status,
            grpc_status,
            outputs: logged.outputs.as_ref().map(OutputsBody::of),
            error: logged.error.as_deref(),
        };
        (json(&request, capacity), json(&response, capacity))
    };
    let about = Arc::new(About {
        request_id: logged.request_id,
        trace_id: logged.trace_id,
        model: logged.model,
        version: logged.version,
    });
    [
        Event {
            kind: Kind::Request,
            about: about.clone(),
            time: request_time,
            body: request,
        },
        Event {
            kind: Kind::Response,
            about,
            time: response_time,
            body: response,
        },
    ]
}

/// Roughly how many bytes `logged` holds, for the queue's bound in bytes.
pub fn approximate_bytes(logged: &Logged) -> usize {
    let tensors = |tensors: &[NamedTensor]| -> usize {
        tensors
            .iter()
            .map(|t| {
                let element = t.data.element_type().size().unwrap_or(16);
                t.name.len() + t.data.len() * element
            })
            .sum()
    };
    let inputs = match &logged.inputs {
        None => 0,
        Some(Inputs::Texts(texts)) => texts.iter().map(String::len).sum(),
        Some(Inputs::Tensors(inputs)) => tensors(inputs),
    };
    let outputs = match &logged.outputs {
        None => 0,
        Some(Outputs::Scores { labels, scores }) => {
            labels.iter().map(String::len).sum::<usize>()
                + scores.iter().map(|s| s.0.len() * 4).sum::<usize>()
        }
        Some(Outputs::Tensors(outputs)) => tensors(outputs),
    };
    let error = logged.error.as_ref().map_or(0, String::len);
    512 + logged.request_id.len() + logged.model.len() + inputs + outputs + error
}

/// The fields both records share.
#[derive(Serialize)]
struct Common<'a> {
    request_id: &'a str,
    trace_id: Option<&'a str>,
    model: &'a str,
    model_version: Option<&'a str>,
    protocol: Protocol,
    route: &'a str,
}

#[derive(Serialize)]
struct RequestRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    time: &'a str,
    #[serde(flatten)]
    common: &'a Common<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inputs: Option<InputsBody<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    inputs_omitted: bool,
}

#[derive(Serialize)]
struct ResponseRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    time: &'a str,
    #[serde(flatten)]
    common: &'a Common<'a>,
    duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc_status: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outputs: Option<OutputsBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// `{"texts": [...]}` or `{"tensors": [...]}`.
#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum InputsBody<'a> {
    Texts(&'a [String]),
    Tensors(Vec<TensorBody<'a>>),
}

impl<'a> InputsBody<'a> {
    fn of(inputs: &'a Inputs) -> InputsBody<'a> {
        match inputs {
            Inputs::Texts(texts) => InputsBody::Texts(texts),
            Inputs::Tensors(tensors) => {
                InputsBody::Tensors(tensors.iter().map(TensorBody::of).collect())
            }
        }
    }
}

/// `{"predictions": [{"label", "score", "scores"}, ...]}` (as `/predict/batch` answers) or
/// `{"tensors": [...]}`.
#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum OutputsBody<'a> {
    Predictions(Vec<Prediction<'a>>),
    Tensors(Vec<TensorBody<'a>>),
}

impl<'a> OutputsBody<'a> {
    fn of(outputs: &'a Outputs) -> OutputsBody<'a> {
        match outputs {
            Outputs::Scores { labels, scores } => OutputsBody::Predictions(
                scores
                    .iter()
                    .map(|row| {
                        let (best, p) = argmax(&row.0);
                        Prediction {
                            label: labels.get(best).map_or("", String::as_str),
                            score: f64::from(p),
                            scores: ByLabel {
                                labels,
                                row: &row.0,
                            },
                        }
                    })
                    .collect(),
            ),
            Outputs::Tensors(tensors) => {
                OutputsBody::Tensors(tensors.iter().map(TensorBody::of).collect())
            }
        }
    }
}

/// One text's prediction: the best label, its probability and every label's.
#[derive(Serialize)]
struct Prediction<'a> {
    label: &'a str,
    score: f64,
    scores: ByLabel<'a>,
}

/// Every label's probability, `{label: p}`, in the model's order of labels (written as it
/// goes: a map built for it was a noticeable share of the writer's allocations).
struct ByLabel<'a> {
    labels: &'a [String],
    row: &'a [f32],
}

impl Serialize for ByLabel<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.labels.len().min(self.row.len())))?;
        for (label, &p) in self.labels.iter().zip(self.row) {
            map.serialize_entry(label, &f64::from(p))?;
        }
        map.end()
    }
}

/// A tensor as the Open Inference Protocol writes one in JSON.
#[derive(Serialize)]
struct TensorBody<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    data: Vec<Value>,
}

impl<'a> TensorBody<'a> {
    fn of(tensor: &'a NamedTensor) -> TensorBody<'a> {
        TensorBody {
            name: &tensor.name,
            datatype: tensor.data.element_type().oip_name(),
            shape: &tensor.shape,
            data: tensor.data.to_json(),
        }
    }
}

/// A record as one line of JSON, in a buffer of `capacity` bytes to start with (serializing
/// these types cannot fail: string keys only).
fn json<T: Serialize>(record: &T, capacity: usize) -> Bytes {
    let mut out = Vec::with_capacity(capacity);
    if let Err(err) = serde_json::to_writer(&mut out, record) {
        tracing::error!(%err, "cannot serialize a payload record; this is a bug");
        out = b"{}".to_vec();
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::element::Values;
    use serde_json::json;

    fn logged(inputs: Option<Inputs>, outputs: Option<Outputs>, status: Status) -> Logged {
        Logged {
            request_id: "0123456789abcdef".into(),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            model: "sentiment".into(),
            version: Some("3".into()),
            protocol: Protocol::Http,
            route: "/predict",
            arrived: SystemTime::UNIX_EPOCH,
            answered: SystemTime::UNIX_EPOCH + Duration::from_millis(2),
            duration: Duration::from_micros(1500),
            inputs,
            inputs_omitted: false,
            status,
            outputs,
            error: None,
        }
    }

    fn records(logged: Logged) -> [Value; 2] {
        events(logged, 64).map(|event| serde_json::from_slice(&event.body).unwrap())
    }

    #[test]
    fn a_text_prediction_gives_its_texts_and_scores() {
        let logged = logged(
            Some(Inputs::Texts(vec!["great".into()])),
            Some(Outputs::Scores {
                labels: vec!["NEGATIVE".into(), "POSITIVE".into()],
                scores: vec![Scores(vec![0.25, 0.75])],
            }),
            Status::Http(200),
        );
        let [first, second] = events(logged, 64);
        assert_eq!((first.kind, second.kind), (Kind::Request, Kind::Response));
        assert_eq!(second.time, "1970-01-01T00:00:00.002000Z");
        assert!(Arc::ptr_eq(&first.about, &second.about));
        assert_eq!(first.about.request_id, "0123456789abcdef");
        let [request, response] =
            [first, second].map(|event| serde_json::from_slice::<Value>(&event.body).unwrap());
        let common = json!({
            "request_id": "0123456789abcdef",
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "model": "sentiment", "model_version": "3",
            "protocol": "http", "route": "/predict",
        });
        let mut want = common.clone();
        want["type"] = json!("request");
        want["time"] = json!("1970-01-01T00:00:00.000000Z");
        want["inputs"] = json!({"texts": ["great"]});
        assert_eq!(request, want);
        let mut want = common;
        want["type"] = json!("response");
        want["time"] = json!("1970-01-01T00:00:00.002000Z");
        want["duration_ms"] = json!(1.5);
        want["status"] = json!(200);
        want["outputs"] = json!({"predictions": [
            {"label": "POSITIVE", "score": 0.75, "scores": {"NEGATIVE": 0.25, "POSITIVE": 0.75}}
        ]});
        assert_eq!(response, want);
    }

    #[test]
    fn a_tensor_prediction_gives_its_tensors() {
        let tensor = |name: &str, data| NamedTensor {
            name: name.into(),
            shape: vec![1, 2],
            data,
        };
        let mut logged = logged(
            Some(Inputs::Tensors(vec![tensor(
                "x",
                Values::Fp32(vec![1.0, 2.5]),
            )])),
            Some(Outputs::Tensors(vec![tensor(
                "y",
                Values::Int64(vec![7, 8]),
            )])),
            Status::Grpc(0),
        );
        logged.protocol = Protocol::Grpc;
        let [request, response] = records(logged);
        assert_eq!(
            request["inputs"],
            json!({"tensors": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.5]}]})
        );
        assert_eq!(
            response["outputs"],
            json!({"tensors": [{"name": "y", "datatype": "INT64", "shape": [1, 2], "data": [7, 8]}]})
        );
        assert_eq!(response["grpc_status"], 0);
        assert_eq!(response["status"], Value::Null);
        assert_eq!(response["protocol"], "grpc");
    }

    #[test]
    fn a_failure_gives_its_status_and_message_and_omitted_inputs_say_so() {
        let mut failed = logged(None, None, Status::Http(429));
        failed.error = Some("the queue is full".into());
        failed.version = None;
        failed.inputs_omitted = true;
        let [request, response] = records(failed);
        assert_eq!(request["inputs"], Value::Null);
        assert_eq!(request["inputs_omitted"], true);
        assert_eq!(request["model_version"], Value::Null);
        assert_eq!(response["status"], 429);
        assert_eq!(response["error"], "the queue is full");
        assert_eq!(response["outputs"], Value::Null);
    }

    #[test]
    fn sizes_grow_with_the_data() {
        let small = logged(
            Some(Inputs::Texts(vec!["a".into()])),
            None,
            Status::Http(200),
        );
        let large = logged(
            Some(Inputs::Texts(vec!["a".repeat(10_000)])),
            None,
            Status::Http(200),
        );
        assert!(approximate_bytes(&large) >= approximate_bytes(&small) + 9_999);
    }
}
