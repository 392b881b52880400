//! One copy of the weights per model (`src/model/sessions.rs`): sessions built on the shared
//! optimized graph answer exactly as sessions built from the file, whatever the number of
//! sessions and whether ONNX Runtime prepacks; a graph whose optimized copy cannot be written
//! falls back to one session per worker from the file. Memory is measured in
//! `bench/memory_workers.sh`, not here.

use std::path::{Path, PathBuf};

use hotserve::model::providers::ExecutionProviders;
use hotserve::model::sessions::{self, SessionOptions, WeightsLayout};
use hotserve::model::{self, runtime, LoadOptions, Model, Scores};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(sessions: usize, share_weights: bool, prepack_weights: bool, all_cores: usize) -> Model {
    let dir = fixture("sentiment");
    let options = LoadOptions {
        name: "sentiment".into(),
        version: Some("1".into()),
        source: dir.display().to_string(),
        aliases: Vec::new(),
        model_id: None,
        run_id: None,
        digests: None,
        ort_dylib_path: None,
        intra_op_threads: 1,
        sessions,
        max_sequence_length: 0,
        share_weights,
        prepack_weights,
        all_cores_threads: all_cores,
        execution_providers: ExecutionProviders::cpu(),
        keep_optimized: None,
    };
    model::load(&dir, &options).expect("the fixture loads")
}

/// Every session's scores (the workers', then the all-cores one) for a few texts, batched
/// together; the texts differ in length, so the batch runs in more than one padded run.
fn scores_of_every_worker(model: &Model) -> Vec<Vec<Scores>> {
    let encoded: Vec<_> = TEXTS.iter().map(|t| model.encode(t).unwrap()).collect();
    let batch: Vec<_> = encoded.iter().collect();
    model
        .slots()
        .into_iter()
        .map(|slot| model.classify(slot, &batch).expect("inference works"))
        .collect()
}

/// Texts of very different lengths: a batch of them is cut into several padded runs.
const TEXTS: [&str; 5] = [
    "I love this",
    "terrible, a waste of an evening",
    "",
    "it was fine I guess, nothing special but not bad either",
    "a long review that goes on and on about the plot, the actors, the music, the \
     photography, the costumes and the ending, which nobody in the audience expected, \
     and the length of it, which everybody did",
];

/// Equal within float noise (several intra-op threads, or another padding, may sum in another
/// order).
fn close(a: &[Scores], b: &[Scores]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(a, b)| {
            a.0.len() == b.0.len() && a.0.iter().zip(&b.0).all(|(x, y)| (x - y).abs() < 1e-5)
        })
}

#[test]
fn a_batch_of_mixed_lengths_answers_each_text_as_alone_and_in_order() {
    let model = load(1, true, false, 0);
    let alone: Vec<Scores> = TEXTS
        .iter()
        .map(|t| {
            let encoded = model.encode(t).unwrap();
            model.classify(0, &[&encoded]).unwrap().remove(0)
        })
        .collect();
    let batched = scores_of_every_worker(&model).remove(0);
    assert!(close(&batched, &alone), "{batched:?} vs {alone:?}");
}

#[test]
fn shared_sessions_answer_exactly_as_sessions_from_the_file() {
    let reference = load(1, false, false, 0);
    assert_eq!(reference.weights_layout(), WeightsLayout::PerSession);
    let expected = scores_of_every_worker(&reference).remove(0);
    let check = |sessions: usize, share: bool, prepack: bool, all_cores: usize, layout| {
        let model = load(sessions, share, prepack, all_cores);
        let case = format!(
            "{sessions} sessions + all-cores {all_cores}, share {share}, prepack {prepack}"
        );
        assert_eq!(model.session_count(), sessions, "{case}");
        assert_eq!(model.has_all_cores(), all_cores > 0, "{case}");
        assert_eq!(model.weights_layout(), layout, "{case}");
        let every = scores_of_every_worker(&model);
        assert_eq!(every.len(), sessions + usize::from(all_cores > 0), "{case}");
        for (slot, scores) in every.iter().enumerate() {
            let case = format!("{case}, session {slot}: {scores:?} vs {expected:?}");
            assert!(close(scores, &expected), "{case}");
        }
    };
    check(1, true, false, 0, WeightsLayout::SharedPrepacked);
    check(4, true, false, 0, WeightsLayout::SharedPrepacked);
    check(4, true, true, 0, WeightsLayout::SharedPrepacked);
    check(4, false, false, 0, WeightsLayout::PerSession);
    check(2, true, false, 2, WeightsLayout::SharedPrepacked);
    check(2, false, false, 2, WeightsLayout::PerSession);
}

#[test]
fn a_graph_that_cannot_be_saved_gets_one_session_per_worker_from_the_file() {
    let runtime = runtime::init(None).expect("ONNX Runtime loads");
    let onnx = fixture("sentiment").join("model.onnx");
    let options = SessionOptions {
        count: 3,
        intra_op_threads: 1,
        share_weights: true,
        prepack_weights: false,
        all_cores_threads: 0,
        keep_optimized: None,
    };
    let nowhere = Path::new("/nonexistent/hotserve-scratch");
    assert!(sessions::build_shared(&runtime.environment, &onnx, &options, nowhere).is_err());
    let built = sessions::build_in(&runtime.environment, &onnx, &options, nowhere)
        .expect("the fallback builds sessions");
    assert_eq!(built.layout(), WeightsLayout::PerSession);
    assert_eq!(built.len(), 3);

    let scratch = tempfile::tempdir().unwrap();
    let built = sessions::build_in(&runtime.environment, &onnx, &options, scratch.path())
        .expect("shared sessions build");
    assert_eq!(built.layout(), WeightsLayout::SharedPrepacked);
    let left: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "the optimized graph's files were removed: {left:?}"
    );
}

#[test]
fn the_optimized_graph_is_kept_reused_and_made_again_when_broken() {
    let runtime = runtime::init(None).expect("ONNX Runtime loads");
    let dir = tempfile::tempdir().unwrap();
    crate::support::copy_dir(&fixture("sentiment"), dir.path());
    let onnx = dir.path().join("model.onnx");
    let kept = dir.path().join(".hotserve-optimized");
    let options = SessionOptions {
        count: 2,
        intra_op_threads: 1,
        share_weights: true,
        prepack_weights: true,
        all_cores_threads: 0,
        keep_optimized: Some(kept.clone()),
    };
    let scratch = tempfile::tempdir().unwrap();
    let build = || {
        sessions::build_shared(&runtime.environment, &onnx, &options, scratch.path())
            .expect("the sessions build")
    };
    let modified = || {
        std::fs::metadata(kept.join("model.onnx"))
            .and_then(|m| m.modified())
            .expect("the optimized graph is kept")
    };
    // The first build optimizes and keeps the graph, with what it was made from.
    assert_ne!(build().layout(), WeightsLayout::PerSession);
    let made = modified();
    let stamp = std::fs::read_to_string(kept.join("made-from")).unwrap();
    assert!(stamp.starts_with("onnxruntime "), "{stamp}");
    // The next build takes it as it is.
    assert_ne!(build().layout(), WeightsLayout::PerSession);
    assert_eq!(modified(), made, "not optimized again");
    // A broken copy is made again, and the sessions still build.
    std::fs::write(kept.join("model.onnx"), b"not a graph").unwrap();
    assert_ne!(build().layout(), WeightsLayout::PerSession);
    assert!(std::fs::metadata(kept.join("model.onnx")).unwrap().len() > 100);
    // A stamp of another file (or another ONNX Runtime) is not taken either.
    std::fs::write(kept.join("made-from"), "onnxruntime 0.0.0").unwrap();
    assert_ne!(build().layout(), WeightsLayout::PerSession);
    assert_eq!(
        std::fs::read_to_string(kept.join("made-from")).unwrap(),
        stamp
    );
}
