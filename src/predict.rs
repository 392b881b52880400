//! The one prediction path every transport shares: `/predict`, `/predict/batch`,
//! `/invocations`, the Open Inference Protocol over REST and gRPC. Texts are checked against
//! the request limits, tokenized (inline when short, else on the blocking pool) and queued on
//! the inference pool; tensors are queued as they are; both within the request's deadline,
//! with rejections counted in `hotserve_rejected_requests_total`. When a candidate is in shadow
//! (`promote::shadow`), a sampled copy of a request that succeeded is offered to it after the
//! live answer is ready. A request the transport sampled for the payload log hands its inputs
//! and outputs to its [`Exchange`] here (copies, only then). Transports turn the errors into
//! their own answers.

use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::model::tensor::NamedTensor;
use crate::model::{Encoded, InferError, Model, Scores};
use crate::payload::Exchange;
use crate::promote::shadow;
use crate::queue::PoolError;
use crate::state::{App, Served};
use crate::telemetry;

/// Refuses an empty list, more than `max_batch_texts` texts, or a text over `max_text_bytes`.
pub fn check_texts(config: &Config, texts: &[String]) -> Result<(), InferError> {
    if texts.is_empty() {
        return Err(InferError::BadInput(
            "no texts to classify; send at least one".into(),
        ));
    }
    if texts.len() > config.max_batch_texts {
        return Err(InferError::BadInput(format!(
            "{} texts in one request; the limit is {} (max_batch_texts)",
            texts.len(),
            config.max_batch_texts
        )));
    }
    texts
        .iter()
        .enumerate()
        .try_for_each(|(index, text)| check_text(config, index, text))
}

/// Refuses text number `index` when it is over `max_text_bytes`.
pub fn check_text(config: &Config, index: usize, text: &str) -> Result<(), InferError> {
    if text.len() > config.max_text_bytes {
        return Err(InferError::BadInput(format!(
            "text {index} is {} bytes; the limit is {} (max_text_bytes)",
            text.len(),
            config.max_text_bytes
        )));
    }
    Ok(())
}

/// Tokenizes (see [`tokenize`]), then waits for the inference queue, within the deadline:
/// one [`Scores`] per text, in order. `model` must be a text model (`Model::encode` refuses
/// tensor models as bad input). A request sampled for the payload log (`exchange`) is given
/// the texts and the scores.
pub async fn classify(
    app: &App,
    served: &Served,
    model: &Arc<Model>,
    texts: Vec<String>,
    deadline: Instant,
    exchange: Option<&Exchange>,
) -> Result<Vec<Scores>, PoolError> {
    if let Some(exchange) = exchange {
        exchange.texts(&model.info.version, &texts);
    }
    // A copy for the candidate in shadow, if any, handed over once the live answer is ready.
    let copy = served
        .shadow
        .sample()
        .map(|candidate| (candidate, texts.clone()));
    let _in_progress = app.pool.begin();
    let work = async {
        let tokenize_started = Instant::now();
        let count = texts.len();
        let encoded = tokenize(model, texts).await?;
        served
            .metrics
            .tokenize_seconds
            .observe_duration(tokenize_started.elapsed());
        telemetry::record_tokenize(tokenize_started, count);
        app.pool
            .classify(served.for_queue(model), encoded, deadline)
            .await
    };
    let result = within(app, deadline, work).await;
    if let (Ok(scores), Some(exchange)) = (&result, exchange) {
        let labels = model.text().map_or(&[][..], |task| &task.labels);
        exchange.scores(labels, scores);
    }
    if let (Ok(_), Some((candidate, texts))) = (&result, copy) {
        shadow::offer_texts(&app.pool, model.clone(), candidate, texts);
    }
    result
}

/// Requests whose texts add up to at most this many bytes are tokenized right where they are,
/// on the async runtime, when the model's fast tokenizer takes them all (`model::wordpiece`:
/// about 2 µs for a short sentence, so at most tens of microseconds): less than parsing their
/// JSON, which happens there too, while the hop to the blocking pool and back costs two thread
/// wake-ups, which was the largest single cost of a small request (`bench/README.md`, "Where a
/// request's time goes"). Anything longer goes to the blocking pool.
pub const INLINE_TOKENIZE_BYTES: usize = 2048;

/// The same, for texts the `tokenizers` library tokenizes (tens of microseconds a sentence):
/// about one sentence.
pub const INLINE_TOKENIZE_BYTES_SLOW: usize = 128;

/// Tokenizes `texts` with `model`: inline when they are short ([`INLINE_TOKENIZE_BYTES`],
/// [`INLINE_TOKENIZE_BYTES_SLOW`]), else on the blocking pool.
async fn tokenize(model: &Arc<Model>, texts: Vec<String>) -> Result<Vec<Encoded>, PoolError> {
    let encode_all = |model: &Model, texts: &[String]| {
        texts
            .iter()
            .map(|t| model.encode(t))
            .collect::<Result<Vec<_>, _>>()
    };
    // The length first: a request too long to tokenize inline is not scanned here either.
    let bytes: usize = texts.iter().map(String::len).sum();
    let inline = bytes <= INLINE_TOKENIZE_BYTES_SLOW
        || (bytes <= INLINE_TOKENIZE_BYTES && texts.iter().all(|text| model.tokenizes_fast(text)));
    if inline {
        // A panic inside the tokenizer fails this request, as on the blocking pool, instead of
        // unwinding through the connection's task.
        let encoded =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| encode_all(model, &texts)));
        return match encoded {
            Ok(encoded) => Ok(encoded?),
            Err(_) => Err(PoolError::Panicked("tokenization panicked".into())),
        };
    }
    let model = model.clone();
    tokio::task::spawn_blocking(move || encode_all(&model, &texts))
        .await
        .map_err(|err| PoolError::Panicked(format!("tokenization failed: {err}")))?
        .map_err(PoolError::from)
}

/// Queues one tensor-model call and waits for it, within the deadline. A request sampled for
/// the payload log (`exchange`) is given the input and output tensors.
pub async fn run_tensors(
    app: &App,
    served: &Served,
    model: &Arc<Model>,
    inputs: Vec<NamedTensor>,
    deadline: Instant,
    exchange: Option<&Exchange>,
) -> Result<Vec<NamedTensor>, PoolError> {
    if let Some(exchange) = exchange {
        exchange.tensors(&model.info.version, &inputs);
    }
    let copy = served
        .shadow
        .sample()
        .map(|candidate| (candidate, inputs.clone()));
    let _in_progress = app.pool.begin();
    let work = app
        .pool
        .run_tensors(served.for_queue(model), inputs, deadline);
    let result = within(app, deadline, work).await;
    if let (Ok(outputs), Some(exchange)) = (&result, exchange) {
        exchange.outputs(outputs);
    }
    if let (Ok(_), Some((candidate, inputs))) = (&result, copy) {
        shadow::offer_tensors(&app.pool, model.clone(), candidate, inputs);
    }
    result
}

/// Runs `work` until `deadline`, counting a full queue and a passed deadline as rejections.
async fn within<T>(
    app: &App,
    deadline: Instant,
    work: impl std::future::Future<Output = Result<T, PoolError>>,
) -> Result<T, PoolError> {
    let result = match tokio::time::timeout_at(deadline.into(), work).await {
        Ok(result) => result,
        Err(_) => Err(PoolError::DeadlineExceeded),
    };
    match &result {
        Err(PoolError::QueueFull { .. }) => app.metrics.rejected.inc(&[("reason", "queue_full")]),
        Err(PoolError::DeadlineExceeded) => app.metrics.rejected.inc(&[("reason", "deadline")]),
        _ => {}
    }
    result
}
