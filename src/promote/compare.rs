//! How a candidate is judged against the live model, kept free of threads and clocks so it is
//! table-tested: what one shadowed request shows ([`compare_scores`], [`compare_tensors`]),
//! the running figures ([`Figures`]) and the verdict ([`judge`]).
//!
//! The rules of [`judge`], in order:
//! 1. A candidate error refuses at once: a version that fails on live inputs is not promoted.
//! 2. Until both `min_requests` and `min_duration` are reached the evaluation goes on; past
//!    `max_duration` with fewer requests the version is refused (too little traffic to judge;
//!    `POST /admin/promote` decides by hand).
//! 3. Agreement below `min_agreement` refuses, then a latency ratio above
//!    `max_latency_ratio`; otherwise the candidate is promoted.
//!
//! Labels are compared by name, ignoring case (a retrained version may spell `positive` where
//! the live one spells `POSITIVE`); scores are compared label by label, by name when the
//! candidate has the label, else by position.

use std::time::Duration;

use serde::Serialize;

use super::Promotion;
use crate::model::element::Values;
use crate::model::tensor::NamedTensor;
use crate::model::{argmax, Scores};

/// What one shadowed request showed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Predictions compared (texts, or 1 for a tensor request).
    pub predictions: u64,
    /// Of which the candidate agreed with the live model.
    pub agreed: u64,
    /// Sum over predictions of the mean absolute score (or output) difference.
    pub score_difference: f64,
    /// The live model's inference time on these inputs.
    pub live: Duration,
    /// The candidate's inference time on the same inputs, right after.
    pub candidate: Duration,
}

/// The running figures of one candidate, as `/health` shows them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Requests compared.
    pub requests: u64,
    /// Predictions compared (a batch request has several).
    pub predictions: u64,
    /// Predictions on which the candidate agreed.
    pub agreed: u64,
    /// Requests the candidate failed on.
    pub errors: u64,
    /// The first candidate error, in words.
    pub first_error: Option<String>,
    /// Copies not made because the inference pool had no idle worker.
    pub dropped: u64,
    #[serde(skip)]
    score_difference: f64,
    #[serde(skip)]
    live_seconds: f64,
    #[serde(skip)]
    candidate_seconds: f64,
}

impl Figures {
    pub fn record(&mut self, sample: &Sample) {
        self.requests += 1;
        self.predictions += sample.predictions;
        self.agreed += sample.agreed;
        self.score_difference += sample.score_difference;
        self.live_seconds += sample.live.as_secs_f64();
        self.candidate_seconds += sample.candidate.as_secs_f64();
    }

    pub fn record_error(&mut self, error: String) {
        self.requests += 1;
        self.errors += 1;
        self.first_error.get_or_insert(error);
    }

    /// Share of predictions agreed on (`None` before the first).
    pub fn agreement(&self) -> Option<f64> {
        (self.predictions > 0).then(|| self.agreed as f64 / self.predictions as f64)
    }

    /// Mean absolute score difference per prediction.
    pub fn mean_score_difference(&self) -> Option<f64> {
        (self.predictions > 0).then(|| self.score_difference / self.predictions as f64)
    }

    /// Candidate inference time / live inference time on the same inputs.
    pub fn latency_ratio(&self) -> Option<f64> {
        (self.live_seconds > 0.0).then(|| self.candidate_seconds / self.live_seconds)
    }
}

/// What the evaluation should do now.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Keep comparing.
    Continue,
    /// Make the candidate live; the figures, in words.
    Promote(String),
    /// Refuse it; why, in words.
    Refuse(String),
}

/// Judges a candidate watched for `elapsed` (rules in the module doc).
pub fn judge(figures: &Figures, elapsed: Duration, settings: &Promotion) -> Verdict {
    if figures.errors > 0 {
        return Verdict::Refuse(format!(
            "failed on {} of {} requests: {}",
            figures.errors,
            figures.requests,
            figures.first_error.as_deref().unwrap_or("unknown error")
        ));
    }
    let enough = figures.requests >= settings.min_requests && elapsed >= settings.min_duration;
    if !enough {
        if elapsed < settings.max_duration {
            return Verdict::Continue;
        }
        if figures.requests < settings.min_requests {
            return Verdict::Refuse(format!(
                "only {} requests in {} of shadow traffic, needs {}; lower shadow_min_requests or promote by hand",
                figures.requests,
                words(settings.max_duration),
                settings.min_requests
            ));
        }
    }
    let agreement = figures.agreement().unwrap_or(1.0);
    if agreement < settings.min_agreement {
        return Verdict::Refuse(format!(
            "agreed on {} of {} requests, needs {}",
            percent(agreement),
            figures.requests,
            percent(settings.min_agreement)
        ));
    }
    let ratio = figures.latency_ratio().unwrap_or(1.0);
    if ratio > settings.max_latency_ratio {
        return Verdict::Refuse(format!(
            "took {ratio:.2}x the live model's time on {} requests, allowed {:.2}x",
            figures.requests, settings.max_latency_ratio
        ));
    }
    Verdict::Promote(format!(
        "agreed on {} of {} requests (needs {}), {ratio:.2}x the live model's time (allowed {:.2}x), mean score difference {:.4}",
        percent(agreement),
        figures.requests,
        percent(settings.min_agreement),
        settings.max_latency_ratio,
        figures.mean_score_difference().unwrap_or(0.0)
    ))
}

/// Whether request number `n` (from 0) of a stream is copied when a `fraction` of them is:
/// exactly `floor(n * fraction)` of the first `n` are, evenly spread.
pub fn sampled(n: u64, fraction: f64) -> bool {
    if fraction >= 1.0 {
        return true;
    }
    ((n + 1) as f64 * fraction).floor() > (n as f64 * fraction).floor()
}

/// Compares the live model's scores with the candidate's on the same texts: (predictions
/// agreed on, sum of mean absolute score differences).
pub fn compare_scores(
    live_labels: &[String],
    live: &[Scores],
    candidate_labels: &[String],
    candidate: &[Scores],
) -> (u64, f64) {
    let position: Vec<usize> = live_labels
        .iter()
        .enumerate()
        .map(|(index, label)| {
            candidate_labels
                .iter()
                .position(|other| other.eq_ignore_ascii_case(label))
                .unwrap_or(index)
        })
        .collect();
    let mut agreed = 0;
    let mut difference = 0.0;
    for (live, candidate) in live.iter().zip(candidate) {
        let (live_best, _) = argmax(&live.0);
        let (candidate_best, _) = argmax(&candidate.0);
        let same = match (
            live_labels.get(live_best),
            candidate_labels.get(candidate_best),
        ) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => live_best == candidate_best,
        };
        agreed += u64::from(same);
        let diffs: Vec<f64> = live
            .0
            .iter()
            .enumerate()
            .map(|(index, &p)| {
                let q = position
                    .get(index)
                    .and_then(|&at| candidate.0.get(at))
                    .copied()
                    .unwrap_or(0.0);
                f64::from((p - q).abs())
            })
            .collect();
        if !diffs.is_empty() {
            difference += diffs.iter().sum::<f64>() / diffs.len() as f64;
        }
    }
    (agreed, difference)
}

/// Compares two tensor models' outputs on the same inputs: whether every output value is
/// within `tolerance` (absolute, or relative beyond 1), and the mean absolute difference.
/// Outputs are matched by name; a missing output or another shape disagrees.
pub fn compare_tensors(
    live: &[NamedTensor],
    candidate: &[NamedTensor],
    tolerance: f64,
) -> (bool, f64) {
    let mut agree = true;
    let mut total = 0.0;
    let mut count = 0usize;
    for output in live {
        let Some(other) = candidate.iter().find(|c| c.name == output.name) else {
            agree = false;
            continue;
        };
        let (a, b) = (values(&output.data), values(&other.data));
        if output.shape != other.shape || a.len() != b.len() {
            agree = false;
            continue;
        }
        for (x, y) in a.iter().zip(&b) {
            let difference = (x - y).abs();
            if difference.is_nan() || difference > tolerance * x.abs().max(1.0) {
                agree = false;
            }
            total += difference;
            count += 1;
        }
    }
    let mean = if count == 0 {
        0.0
    } else {
        total / count as f64
    };
    (agree, mean)
}

/// Every value as `f64`; text (never a graph's output) as nothing.
fn values(data: &Values) -> Vec<f64> {
    data.to_f64s().unwrap_or_default()
}

/// `71%`, `99.5%` (one decimal only when it matters).
fn percent(share: f64) -> String {
    let value = share * 100.0;
    if (value - value.round()).abs() < 0.05 {
        format!("{}%", value.round())
    } else {
        format!("{value:.1}%")
    }
}

/// `30m`, `90s`, `1h` for durations in messages.
fn words(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s if s > 0 => format!("{s}s"),
        _ => format!("{}ms", duration.as_millis()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::promotion::Mode;

    fn settings() -> Promotion {
        Promotion {
            mode: Mode::Shadow,
            fraction: 1.0,
            min_requests: 100,
            min_duration: Duration::from_secs(60),
            max_duration: Duration::from_secs(1800),
            min_agreement: 0.95,
            max_latency_ratio: 1.5,
            tolerance: 0.001,
            guard: crate::promote::Guard {
                window: Duration::ZERO,
                max_error_rate: 0.01,
                max_latency_ratio: 2.0,
            },
        }
    }

    /// Figures of `requests` one-text requests, `agreed` of them agreed, the candidate taking
    /// `ratio` times the live time, `errors` failures.
    fn figures(requests: u64, agreed: u64, ratio: f64, errors: u64) -> Figures {
        let mut figures = Figures::default();
        for n in 0..requests {
            figures.record(&Sample {
                predictions: 1,
                agreed: u64::from(n < agreed),
                score_difference: 0.01,
                live: Duration::from_millis(10),
                candidate: Duration::from_secs_f64(0.010 * ratio),
            });
        }
        for _ in 0..errors {
            figures.record_error("the graph failed".into());
        }
        figures
    }

    #[test]
    #[rustfmt::skip]
    fn verdicts() {
        let check = |figures: Figures, elapsed_s: u64, expected: &str| {
            let verdict = judge(&figures, Duration::from_secs(elapsed_s), &settings());
            let got = match &verdict {
                Verdict::Continue => "continue".to_string(),
                Verdict::Promote(why) => format!("promote: {why}"),
                Verdict::Refuse(why) => format!("refuse: {why}"),
            };
            assert!(got.starts_with(expected), "{figures:?} after {elapsed_s}s: {got}");
        };
        check(figures(10, 10, 1.0, 0), 5, "continue");
        check(figures(412, 412, 1.0, 0), 5, "continue");                 // too early
        check(figures(10, 10, 1.0, 0), 600, "continue");                 // too few
        check(figures(10, 10, 1.0, 1), 1, "refuse: failed on 1 of 11 requests: the graph failed");
        check(figures(10, 10, 1.0, 0), 1800, "refuse: only 10 requests in 30m of shadow traffic, needs 100");
        check(figures(400, 284, 1.0, 0), 60, "refuse: agreed on 71% of 400 requests, needs 95%");
        check(figures(412, 412, 3.0, 0), 60, "refuse: took 3.00x the live model's time on 412 requests, allowed 1.50x");
        check(figures(412, 410, 1.0, 0), 60, "promote: agreed on 99.5% of 412 requests (needs 95%), 1.00x the live model's time (allowed 1.50x), mean score difference 0.0100");
        check(figures(412, 412, 1.2, 0), 1800, "promote: agreed on 100% of 412 requests");
    }

    #[test]
    fn sampling_spreads_the_fraction_evenly() {
        let check = |fraction: f64, first: u64, expected: u64| {
            let got = (0..first).filter(|&n| sampled(n, fraction)).count() as u64;
            assert_eq!(got, expected, "{fraction} of {first}");
        };
        check(1.0, 10, 10);
        check(0.0, 10, 0);
        check(0.5, 10, 5);
        check(0.25, 100, 25);
        check(0.1, 1000, 100);
    }

    fn scores(values: &[&[f32]]) -> Vec<Scores> {
        values.iter().map(|v| Scores(v.to_vec())).collect()
    }

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn scores_compare_by_label_name() {
        let check = |live_labels: &[&str],
                     live: &[&[f32]],
                     candidate_labels: &[&str],
                     candidate: &[&[f32]],
                     agreed: u64,
                     difference: f64| {
            let (got_agreed, got_difference) = compare_scores(
                &labels(live_labels),
                &scores(live),
                &labels(candidate_labels),
                &scores(candidate),
            );
            assert_eq!(got_agreed, agreed, "{live:?} vs {candidate:?}");
            assert!(
                (got_difference - difference).abs() < 1e-6,
                "{got_difference} != {difference}"
            );
        };
        let upper = &["NEGATIVE", "POSITIVE"][..];
        let lower = &["negative", "positive"][..];
        let swapped = &["positive", "negative"][..];
        check(upper, &[&[0.2, 0.8]], lower, &[&[0.2, 0.8]], 1, 0.0);
        check(
            upper,
            &[&[0.2, 0.8], &[0.9, 0.1]],
            lower,
            &[&[0.6, 0.4], &[0.8, 0.2]],
            1,
            0.4 + 0.1,
        );
        // The same probabilities under swapped label names: the candidate says the opposite.
        check(upper, &[&[0.2, 0.8]], swapped, &[&[0.2, 0.8]], 0, 0.6);
        // Labels it does not know: compared by position.
        check(upper, &[&[0.2, 0.8]], &["a", "b"], &[&[0.2, 0.8]], 0, 0.0);
    }

    #[test]
    fn tensors_compare_within_tolerance() {
        let tensor = |name: &str, shape: &[usize], values: &[f32]| NamedTensor {
            name: name.into(),
            shape: shape.to_vec(),
            data: Values::Fp32(values.to_vec()),
        };
        let check = |live: Vec<NamedTensor>, candidate: Vec<NamedTensor>, agree: bool| {
            let (got, _) = compare_tensors(&live, &candidate, 0.01);
            assert_eq!(got, agree, "{live:?} vs {candidate:?}");
        };
        check(
            vec![tensor("y", &[1, 2], &[1.0, 2.0])],
            vec![tensor("y", &[1, 2], &[1.005, 2.0])],
            true,
        );
        check(
            vec![tensor("y", &[1, 2], &[1.0, 200.0])],
            vec![tensor("y", &[1, 2], &[1.0, 201.0])],
            true,
        );
        check(
            vec![tensor("y", &[1, 2], &[1.0, 2.0])],
            vec![tensor("y", &[1, 2], &[1.1, 2.0])],
            false,
        );
        check(
            vec![tensor("y", &[1, 2], &[1.0, 2.0])],
            vec![tensor("y", &[2, 1], &[1.0, 2.0])],
            false,
        );
        check(
            vec![tensor("y", &[1, 2], &[1.0, 2.0])],
            vec![tensor("z", &[1, 2], &[1.0, 2.0])],
            false,
        );
    }
}
