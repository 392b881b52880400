//! Publishing local models safely, in-process against the real fixture models: a
//! model repository of numbered versions (written under a temporary name, renamed into place),
//! a symbolic link flipped atomically, and an in-place rewrite guarded by `SHA256SUMS`. A slow
//! writer (pauses longer than `watch_debounce`) must never get a mixture of two versions
//! served: every answer is exactly what v1 or v2 answers on its own.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::inprocess::{Server, Start};
use crate::support::{copy_dir, fixture, health, health_until, Wait, LOADING};

/// Longer than the test's `watch_debounce`, so each file a writer adds triggers its own check.
const WRITER_PAUSE: Duration = Duration::from_millis(500);
const DEBOUNCE: &str = "200ms";

/// One answer to "I love this": the version header, the label and its score.
#[derive(Clone, Debug, PartialEq)]
struct Answer {
    version: String,
    label: String,
    score: f64,
}

impl Answer {
    /// Same model content (the version name may differ between layouts).
    fn same_model(&self, other: &Answer) -> bool {
        self.label == other.label && (self.score - other.score).abs() < 1e-6
    }
}

async fn ask(server: &Server) -> Answer {
    let response = reqwest::Client::new()
        .post(server.url("/predict"))
        .json(&json!({"text": "I love this"}))
        .send()
        .await
        .expect("predict");
    assert_eq!(response.status(), 200);
    let version = response.headers()["x-model-version"]
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = response.json().await.unwrap();
    Answer {
        version,
        label: body["label"].as_str().unwrap().to_string(),
        score: body["score"].as_f64().unwrap(),
    }
}

/// A wait for a reload of the model, which may take a model load's time on a busy machine.
fn reloaded(what: &str) -> Wait<'static> {
    Wait::new(what).within(LOADING)
}

fn served_version(health: &Value) -> &str {
    health["model"]["version"].as_str().unwrap_or_default()
}

/// Asks continuously until finished; every answer is kept.
struct Watcher {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Answer>>,
}

impl Watcher {
    fn start(server: &Server) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let url = server.url("/predict");
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let client = reqwest::Client::new();
                let mut answers = Vec::new();
                while !stop.load(Ordering::Relaxed) && answers.len() < 20_000 {
                    let response = client
                        .post(&url)
                        .json(&json!({"text": "I love this"}))
                        .send()
                        .await
                        .expect("predict");
                    assert_eq!(response.status(), 200, "no request fails during a reload");
                    let version = response.headers()["x-model-version"]
                        .to_str()
                        .unwrap()
                        .to_string();
                    let body: Value = response.json().await.unwrap();
                    answers.push(Answer {
                        version,
                        label: body["label"].as_str().unwrap().to_string(),
                        score: body["score"].as_f64().unwrap(),
                    });
                }
                answers
            }
        });
        Watcher { stop, task }
    }

    /// Stops asking; checks that every answer is exactly one of `models`' and returns how many
    /// answers each of them gave.
    async fn finish(self, models: &[&Answer]) -> Vec<usize> {
        self.stop.store(true, Ordering::Relaxed);
        let answers = self.task.await.unwrap();
        let mut counts = vec![0; models.len()];
        for answer in &answers {
            match models.iter().position(|model| model.same_model(answer)) {
                Some(index) => counts[index] += 1,
                None => panic!(
                    "a mixture of two versions was served: {answer:?}; the versions are {models:?}"
                ),
            }
        }
        counts
    }
}

/// The fixture's files with `MLmodel` first: the order that makes a mixture most likely.
fn files_mlmodel_first(model: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(model)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort_by_key(|path| path.file_name().unwrap() != "MLmodel");
    files
}

/// What v2 answers on its own.
async fn answer_of_v2() -> Answer {
    let server = Start::model(fixture("sentiment_v2")).ready().await;
    ask(&server).await
}

#[tokio::test]
async fn a_slow_writer_publishing_into_a_repository_never_serves_a_mixture() {
    let area = tempfile::tempdir().unwrap();
    let repo = area.path().join("sentiment");
    copy_dir(&fixture("sentiment"), &repo.join("1"));
    let server = Start::model(&repo)
        .set("watch_debounce", DEBOUNCE)
        .ready()
        .await;
    let v1 = ask(&server).await;
    assert_eq!(
        v1.version, "1",
        "a repository version is named by its directory"
    );
    let v2 = answer_of_v2().await;
    assert!(!v1.same_model(&v2), "the fixtures tell versions apart");

    let watcher = Watcher::start(&server);
    // A slow writer: version 2 under a temporary name, one file at a time, pausing longer
    // than the debounce (the sleeps are the writer's pace, not synchronisation).
    let staging = repo.join(".tmp-2");
    std::fs::create_dir_all(&staging).unwrap();
    for file in files_mlmodel_first(&fixture("sentiment_v2")) {
        std::fs::copy(&file, staging.join(file.file_name().unwrap())).unwrap();
        tokio::time::sleep(WRITER_PAUSE).await;
    }
    assert_eq!(
        served_version(&health(&server).await),
        "1",
        "a version directory under a temporary name is never considered"
    );
    std::fs::rename(&staging, repo.join("2")).unwrap();
    let health = health_until(&server, reloaded("version 2"), |h| served_version(h) == "2").await;
    assert_eq!(health["last_reload"]["trigger"], "watch");
    let counts = watcher.finish(&[&v1, &v2]).await;
    assert!(
        counts[0] > 0,
        "v1 answered while v2 was written: {counts:?}"
    );
    let after = ask(&server).await;
    assert!(after.same_model(&v2) && after.version == "2", "{after:?}");
}

#[tokio::test]
async fn a_broken_newest_version_leaves_the_previous_one_serving_and_removing_a_version_rolls_back()
{
    let area = tempfile::tempdir().unwrap();
    let repo = area.path().join("sentiment");
    copy_dir(&fixture("sentiment"), &repo.join("1"));
    copy_dir(&fixture("sentiment_v2"), &repo.join("2"));
    std::fs::write(repo.join("2/model.onnx"), b"not an onnx graph").unwrap();

    // At startup: the newest is broken, so version 1 serves, and /health says why.
    let server = Start::model(&repo)
        .set("watch_debounce", DEBOUNCE)
        .ready()
        .await;
    let health = health(&server).await;
    assert_eq!(served_version(&health), "1", "{health:#}");
    assert_eq!(health["last_check"]["version"], "2", "{health:#}");
    let error = health["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("model.onnx"), "{error}");
    let v1 = ask(&server).await;

    // A good version 3 is published (renamed into place): it goes live.
    let v2 = answer_of_v2().await;
    copy_dir(&fixture("sentiment_v2"), &area.path().join("staging-3"));
    std::fs::rename(area.path().join("staging-3"), repo.join("3")).unwrap();
    health_until(&server, reloaded("version 3"), |h| served_version(h) == "3").await;
    assert!(ask(&server).await.same_model(&v2));

    // Rolling back: remove the newest version; the broken one is still skipped.
    let watcher = Watcher::start(&server);
    std::fs::remove_dir_all(repo.join("3")).unwrap();
    // A check may catch version 3 half deleted ("still changing", retried); the one after
    // it skips the broken version 2 and keeps version 1.
    let health = health_until(
        &server,
        reloaded("version 1 again, version 2 skipped"),
        |h| served_version(h) == "1" && h["last_check"]["result"] == "skipped_bad",
    )
    .await;
    assert_eq!(health["last_check"]["version"], "2", "{health:#}");
    let counts = watcher.finish(&[&v1, &v2]).await;
    assert!(counts.iter().sum::<usize>() > 0);
    assert!(ask(&server).await.same_model(&v1));
}

#[tokio::test]
async fn flipping_a_symbolic_link_switches_versions_and_flipping_it_back_rolls_back() {
    let area = tempfile::tempdir().unwrap();
    let root = area.path().join("sentiment");
    copy_dir(&fixture("sentiment"), &root.join("v1"));
    copy_dir(&fixture("sentiment_v2"), &root.join("v2"));
    std::os::unix::fs::symlink("v1", root.join("current")).unwrap();
    let flip = |target: &str| {
        let temporary = root.join("current.tmp");
        std::os::unix::fs::symlink(target, &temporary).unwrap();
        std::fs::rename(&temporary, root.join("current")).unwrap();
    };

    let server = Start::model(root.join("current"))
        .set("watch_debounce", DEBOUNCE)
        .ready()
        .await;
    let v1 = ask(&server).await;
    let v2 = answer_of_v2().await;
    let watcher = Watcher::start(&server);

    flip("v2");
    health_until(&server, reloaded("the link's new target"), |h| {
        served_version(h) != v1.version && !served_version(h).is_empty()
    })
    .await;
    assert!(ask(&server).await.same_model(&v2));

    flip("v1");
    health_until(&server, reloaded("the link's old target"), |h| {
        served_version(h) == v1.version
    })
    .await;
    assert!(ask(&server).await.same_model(&v1));
    let counts = watcher.finish(&[&v1, &v2]).await;
    assert!(counts[1] > 0, "v2 answered between the flips: {counts:?}");
}

#[tokio::test]
async fn an_in_place_rewrite_with_sha256sums_is_refused_until_complete() {
    let area = tempfile::tempdir().unwrap();
    let model = area.path().join("sentiment");
    copy_dir(&fixture("sentiment"), &model);
    std::fs::write(model.join("SHA256SUMS"), sums(&model)).unwrap();
    let server = Start::model(&model)
        .set("watch_debounce", DEBOUNCE)
        .ready()
        .await;
    let v1 = ask(&server).await;
    let v2 = answer_of_v2().await;

    // The careless writer of the issue: rewrites the served directory file by file, MLmodel
    // first, pausing longer than the debounce; only its last step writes the new SHA256SUMS.
    let watcher = Watcher::start(&server);
    let new_version = area.path().join("v2-with-sums");
    copy_dir(&fixture("sentiment_v2"), &new_version);
    let new_sums = sums(&new_version);
    for file in files_mlmodel_first(&fixture("sentiment_v2")) {
        std::fs::copy(&file, model.join(file.file_name().unwrap())).unwrap();
        tokio::time::sleep(WRITER_PAUSE).await;
    }
    let mid_write = health(&server).await;
    assert_eq!(served_version(&mid_write), v1.version, "{mid_write:#}");
    assert!(
        mid_write["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("SHA256SUMS"),
        "the refusal says why: {mid_write:#}"
    );
    std::fs::write(model.join("SHA256SUMS"), new_sums).unwrap();
    health_until(&server, reloaded("the rewritten model"), |h| {
        served_version(h) != v1.version && !served_version(h).is_empty()
    })
    .await;
    let counts = watcher.finish(&[&v1, &v2]).await;
    assert!(counts[0] > 0, "{counts:?}");
    assert!(ask(&server).await.same_model(&v2));
}

/// `sha256sum *` of a directory, computed with the system's `sha256sum`.
fn sums(dir: &Path) -> String {
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg("sha256sum -- *")
        .current_dir(dir)
        .output()
        .expect("sha256sum");
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}
