//! The prediction routes: `POST /predict` `{"text"}`, `POST /predict/batch` `{"texts"}` (one
//! model version for the whole batch) and `POST /invocations` (MLflow's scoring protocol, JSON
//! or CSV; text models answer labels and scores, tensor models as `mlflow models serve` does).
//! Each reads its body within limits, takes the live model once and predicts through
//! `crate::predict`, the one prediction path of every route and protocol.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Serialize;
use serde_json::Value;

use super::{live_model, media_type, with_version};
use crate::http::error::ApiError;
use crate::http::{json, read_body, HttpResponse, Served};
use crate::model::{argmax, tensor, Model, Scores};
use crate::payload::Exchange;
use crate::predict;
use crate::protocol::{self, ContentType};
use crate::state::App;

/// One text's prediction: the best label, its probability and every label's.
#[derive(Debug, Serialize)]
pub struct Prediction<'a> {
    pub label: &'a str,
    pub score: f64,
    /// Every label's probability, by label.
    pub scores: BTreeMap<&'a str, f64>,
}

/// `POST /predict`'s answer.
#[derive(Debug, Serialize)]
pub struct PredictResponse<'a> {
    #[serde(flatten)]
    pub prediction: Prediction<'a>,
    pub model_version: &'a str,
}

/// `POST /predict/batch`'s answer: one prediction per text, all by one version.
#[derive(Debug, Serialize)]
pub struct BatchResponse<'a> {
    pub predictions: Vec<Prediction<'a>>,
    pub model_version: &'a str,
}

/// `POST /invocations`' answer, as MLflow's scoring server shapes it.
#[derive(Debug, Serialize)]
pub struct InvocationsResponse<'a> {
    pub predictions: Invocations<'a>,
}

/// The predictions of `/invocations`: a label and score per text for text models; what
/// `mlflow models serve` answers for an ONNX model for tensor models.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Invocations<'a> {
    Text(Vec<Labeled<'a>>),
    Tensor(Value),
}

/// One text's row of `/invocations`.
#[derive(Debug, Serialize)]
pub struct Labeled<'a> {
    pub label: &'a str,
    pub score: f64,
}

/// `POST /predict` `{"text": "..."}`.
pub async fn predict(
    app: &App,
    served: &Served,
    request: Request<Incoming>,
    exchange: Option<&Exchange>,
) -> Result<HttpResponse, ApiError> {
    let deadline = Instant::now() + app.config.request_timeout;
    require_json(&request)?;
    let body = read_body(request, app.config.max_body_bytes, deadline).await?;
    let text = protocol::parse_predict(&body)?;
    predict::check_text(&app.config, 0, &text)?;
    let model = live_model(served, deadline).await?;
    let scores = classify(app, served, &model, vec![text], deadline, exchange).await?;
    let labels = labels(&model);
    let answer = PredictResponse {
        prediction: prediction(labels, &scores[0]),
        model_version: &model.info.version,
    };
    Ok(with_version(
        json(StatusCode::OK, &answer),
        &model.info.version,
    ))
}

/// `POST /predict/batch` `{"texts": [...]}`: one model version for the whole batch.
pub async fn predict_batch(
    app: &App,
    served: &Served,
    request: Request<Incoming>,
    exchange: Option<&Exchange>,
) -> Result<HttpResponse, ApiError> {
    let deadline = Instant::now() + app.config.request_timeout;
    require_json(&request)?;
    let body = read_body(request, app.config.max_body_bytes, deadline).await?;
    let texts = protocol::parse_batch(&body)?;
    predict::check_texts(&app.config, &texts)?;
    let model = live_model(served, deadline).await?;
    let scores = classify(app, served, &model, texts, deadline, exchange).await?;
    let labels = labels(&model);
    let answer = BatchResponse {
        predictions: scores.iter().map(|s| prediction(labels, s)).collect(),
        model_version: &model.info.version,
    };
    Ok(with_version(
        json(StatusCode::OK, &answer),
        &model.info.version,
    ))
}

/// `POST /invocations`: MLflow's scoring protocol.
pub async fn invocations(
    app: &App,
    served: &Served,
    request: Request<Incoming>,
    exchange: Option<&Exchange>,
) -> Result<HttpResponse, ApiError> {
    let deadline = Instant::now() + app.config.request_timeout;
    let content_type = match media_type(&request).as_deref() {
        None | Some("application/json") => ContentType::Json,
        Some("text/csv") => ContentType::Csv,
        Some(other) => {
            return Err(ApiError::unsupported_media_type(
                other,
                "application/json or text/csv",
            ))
        }
    };
    let body = read_body(request, app.config.max_body_bytes, deadline).await?;
    let invocation = protocol::parse_invocation(&body, content_type)?;
    let model = live_model(served, deadline).await?;
    let predictions = match model.text() {
        Some(task) => {
            let texts = invocation.texts()?;
            predict::check_texts(&app.config, &texts)?;
            let scores = classify(app, served, &model, texts, deadline, exchange).await?;
            let rows = scores
                .iter()
                .map(|s| {
                    let (best, p) = argmax(&s.0);
                    Labeled {
                        label: &task.labels[best],
                        score: f64::from(p),
                    }
                })
                .collect();
            Invocations::Text(rows)
        }
        None => {
            let reply = tensor::reply_for(&model, &invocation.data);
            let inputs = tensor::from_request(&model, invocation)?;
            let outputs =
                predict::run_tensors(app, served, &model, inputs, deadline, exchange).await?;
            Invocations::Tensor(tensor::to_predictions(&outputs, reply)?)
        }
    };
    let answer = InvocationsResponse { predictions };
    Ok(with_version(
        json(StatusCode::OK, &answer),
        &model.info.version,
    ))
}

/// Classifies texts with a text model through the shared prediction path.
async fn classify(
    app: &App,
    served: &Served,
    model: &Arc<Model>,
    texts: Vec<String>,
    deadline: Instant,
    exchange: Option<&Exchange>,
) -> Result<Vec<Scores>, ApiError> {
    if model.text().is_none() {
        return Err(ApiError::invalid(
            "the live model is a tensor model; send tensors to /invocations",
        ));
    }
    Ok(predict::classify(app, served, model, texts, deadline, exchange).await?)
}

/// The labels of a text model (empty for a tensor model, which `classify` refuses first).
fn labels(model: &Model) -> &[String] {
    model.text().map_or(&[], |task| &task.labels)
}

/// The best label, its score and every label's.
fn prediction<'a>(labels: &'a [String], scores: &Scores) -> Prediction<'a> {
    let (best, p) = argmax(&scores.0);
    Prediction {
        label: &labels[best],
        score: f64::from(p),
        scores: labels
            .iter()
            .map(String::as_str)
            .zip(scores.0.iter().map(|&p| f64::from(p)))
            .collect(),
    }
}

fn require_json(request: &Request<Incoming>) -> Result<(), ApiError> {
    match media_type(request).as_deref() {
        // `curl -d '{"text": ...}'` sends the form type; the body is still JSON.
        None | Some("application/json") | Some("application/x-www-form-urlencoded") => Ok(()),
        Some(other) => Err(ApiError::unsupported_media_type(other, "application/json")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_read_as_the_contract_says() {
        let labels = ["NEGATIVE".to_string(), "POSITIVE".to_string()];
        let answer = PredictResponse {
            prediction: prediction(&labels, &Scores(vec![0.25, 0.75])),
            model_version: "3",
        };
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            serde_json::json!({
                "label": "POSITIVE", "score": 0.75,
                "scores": {"NEGATIVE": 0.25, "POSITIVE": 0.75},
                "model_version": "3",
            })
        );
        let rows = InvocationsResponse {
            predictions: Invocations::Text(vec![Labeled {
                label: "POSITIVE",
                score: 0.75,
            }]),
        };
        assert_eq!(
            serde_json::to_value(&rows).unwrap(),
            serde_json::json!({"predictions": [{"label": "POSITIVE", "score": 0.75}]})
        );
    }
}
