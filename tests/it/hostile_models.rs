//! Models made to attack the loader: each is the fixture with one part replaced, and the gate
//! (`hotserve validate`, the same checks a reload runs) must refuse it with a message that
//! says which file and why, instead of reading outside the model directory, allocating without
//! bound or crashing. What a model can try, and the case that covers it:
//!
//! - an ONNX initializer whose external data lives outside the directory (relative `../` or
//!   absolute): ONNX Runtime refuses the path, and so the gate does;
//! - `MLmodel` naming files outside the directory (`data`, `metadata.tokenizer`,
//!   `saved_input_example_info`): refused by `files::confine` (unit tests in `model/load.rs`),
//!   and here end to end for the tokenizer;
//! - a YAML alias bomb ("billion laughs") in `MLmodel`: refused by the YAML parser's
//!   repetition limit;
//! - deep nesting in `MLmodel`: the YAML scanner is quadratic in the nesting of `[[[...`
//!   (a megabyte of it would hold the loading thread for most of an hour), so the gate counts
//!   the nesting in one linear pass first and refuses more than 64 levels;
//! - an oversized `MLmodel` or `tokenizer.json`: refused before it is read whole;
//! - a `tokenizer.json` nested deeper than the JSON parser's recursion limit.
//!
//! - a symbolic link in a local model directory that leads out of it (a file or a folder) or
//!   into a loop: refused before a byte is copied, with the link and its target named, while a
//!   Kubernetes ConfigMap volume (links into its own `..data`) is accepted and served
//!   (`reload/local.rs`; `hotserve validate` runs the same check);
//! - a `.zip` bundle with a compression bomb: as an entry the model does not use it is never
//!   read; as a file the model uses it is refused on its header's inflate ratio before any of it
//!   is written (`model/bundle.rs`; links and unsafe names in a zip are refused too).
//!
//! Registry downloads never create links.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use hotserve::model::bundle::{extract, BundleError};
use serde_json::json;

use crate::support::hotserve::run;
use crate::support::inprocess::Start;
use crate::support::{copy_dir, fixture, venv};

/// A copy of the fixture model in a temporary directory, inside a parent folder that also
/// holds a "secret" file the model must not reach.
struct Hostile {
    area: tempfile::TempDir,
}

impl Hostile {
    fn new() -> Hostile {
        let area = tempfile::tempdir().unwrap();
        copy_dir(&fixture("sentiment"), &area.path().join("model"));
        std::fs::write(area.path().join("secret.bin"), [7u8; 64]).unwrap();
        Hostile { area }
    }

    fn model(&self) -> std::path::PathBuf {
        self.area.path().join("model")
    }

    fn write(&self, file: &str, content: impl AsRef<[u8]>) {
        std::fs::write(self.model().join(file), content).unwrap();
    }

    /// Replaces `model.onnx` with a graph whose one initializer is external data at
    /// `location` (written with the `onnx` package of the test virtualenv).
    fn external_data_at(&self, location: &str) {
        const SCRIPT: &str = r#"
import sys, numpy as np, onnx
from onnx import helper, TensorProto, numpy_helper
out, location = sys.argv[1], sys.argv[2]
w = numpy_helper.from_array(np.zeros(16, dtype=np.float32), name="w")
w.ClearField("raw_data")
w.data_location = TensorProto.EXTERNAL
for key, value in [("location", location), ("offset", "0"), ("length", "64")]:
    entry = w.external_data.add(); entry.key = key; entry.value = value
x = helper.make_tensor_value_info("input_ids", TensorProto.FLOAT, [16])
y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [16])
graph = helper.make_graph([helper.make_node("Add", ["input_ids", "w"], ["logits"])], "g", [x], [y], [w])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 9
open(out, "wb").write(model.SerializeToString())
"#;
        let python = venv().join("bin/python");
        let status = Command::new(python)
            .args(["-c", SCRIPT])
            .arg(self.model().join("model.onnx"))
            .arg(location)
            .status()
            .expect("run the test virtualenv's python");
        assert!(status.success(), "writing the hostile graph failed");
    }

    /// Runs the gate; it must refuse the model with a message containing `fragment`.
    fn check_refused(&self, case: &str, fragment: &str) {
        let (code, _, stderr) = run(&["validate", self.model().to_str().unwrap()], &[]);
        assert_eq!(
            code, 1,
            "{case}: the gate must refuse it; stderr:\n{stderr}"
        );
        assert!(
            stderr.contains("would NOT be accepted") && stderr.contains(fragment),
            "{case}: expected {fragment:?} in:\n{stderr}"
        );
    }
}

fn secret_path(model: &Path) -> String {
    model
        .parent()
        .unwrap()
        .join("secret.bin")
        .display()
        .to_string()
}

#[test]
fn external_data_outside_the_model_directory_is_refused() {
    let relative = Hostile::new();
    relative.external_data_at("../secret.bin");
    relative.check_refused("relative external data", "escapes model directory");

    let absolute = Hostile::new();
    absolute.external_data_at(&secret_path(&absolute.model()));
    absolute.check_refused("absolute external data", "Absolute path not allowed");
}

/// What a case does to the fixture copy.
type Attack = Box<dyn Fn(&Hostile)>;

#[test]
fn mlmodel_and_tokenizer_attacks_are_refused() {
    let cases: Vec<(&str, Attack, &str)> = vec![
        (
            "tokenizer named outside the directory",
            Box::new(|model: &Hostile| {
                let text = std::fs::read_to_string(model.model().join("MLmodel")).unwrap();
                model.write(
                    "MLmodel",
                    text.replace("tokenizer: tokenizer.json", "tokenizer: ../secret.bin"),
                );
            }),
            "'..' segments are not allowed",
        ),
        (
            "YAML alias bomb",
            Box::new(|model: &Hostile| {
                // Nine levels of nine references: 9^9 strings once expanded, as the value of
                // `metadata`, which the gate reads as a whole.
                let mut bomb = String::from("bomb_a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
                let mut previous = "a".to_string();
                for name in ["b", "c", "d", "e", "f", "g", "h", "i"] {
                    let refs = vec![format!("*{previous}"); 9].join(",");
                    bomb.push_str(&format!("bomb_{name}: &{name} [{refs}]\n"));
                    previous = name.to_string();
                }
                let text = std::fs::read_to_string(model.model().join("MLmodel")).unwrap();
                let text = text.replace("\nmetadata:\n", "\nreplaced_metadata:\n");
                model.write("MLmodel", format!("{bomb}{text}metadata: *i\n"));
            }),
            "repetition limit exceeded",
        ),
        (
            "deeply nested MLmodel",
            Box::new(|model: &Hostile| {
                let text = std::fs::read_to_string(model.model().join("MLmodel")).unwrap();
                let text = text.replace("\nmetadata:\n", "\nreplaced_metadata:\n");
                model.write(
                    "MLmodel",
                    format!("{text}metadata: {}\n", "[".repeat(100_000)),
                );
            }),
            "levels deep (at most 64)",
        ),
        (
            "oversized MLmodel",
            Box::new(|model: &Hostile| {
                let text = std::fs::read_to_string(model.model().join("MLmodel")).unwrap();
                model.write("MLmodel", format!("{text}\n# {}\n", "x".repeat(2 << 20)));
            }),
            "the most hotserve reads for this file",
        ),
        (
            "deeply nested tokenizer.json",
            Box::new(|model: &Hostile| {
                // Normalizers nest (a `Sequence` of `Sequence`s ...): a hundred thousand deep.
                let nested = r#"{"type":"Sequence","normalizers":["#.repeat(100_000);
                model.write(
                    "tokenizer.json",
                    format!(r#"{{"version":"1.0","normalizer":{nested}"#),
                )
            }),
            "recursion limit exceeded",
        ),
    ];
    for (case, attack, fragment) in cases {
        let model = Hostile::new();
        attack(&model);
        let started = std::time::Instant::now();
        model.check_refused(case, fragment);
        eprintln!("{case}: refused in {:?}", started.elapsed());
    }
}

/// A copy of the fixture laid out as Kubernetes mounts a ConfigMap or Secret volume: the files
/// in a timestamped directory, `..data` a link to it, and every top-level name a link into
/// `..data`.
fn configmap_layout(at: &Path) {
    let revision = "..2026_12_07_10_00_00.123456789";
    copy_dir(&fixture("sentiment"), &at.join(revision));
    symlink(revision, at.join("..data")).unwrap();
    for entry in std::fs::read_dir(at.join(revision)).unwrap() {
        let name = entry.unwrap().file_name();
        symlink(Path::new("..data").join(&name), at.join(&name)).unwrap();
    }
}

#[tokio::test]
async fn links_are_followed_only_inside_a_local_model_directory() {
    // A tokenizer.json that is a link to a valid tokenizer elsewhere on the host.
    let model = Hostile::new();
    let elsewhere = model.area.path().join("tokenizer.json");
    std::fs::rename(model.model().join("tokenizer.json"), &elsewhere).unwrap();
    symlink(&elsewhere, model.model().join("tokenizer.json")).unwrap();
    let started = Instant::now();
    model.check_refused(
        "tokenizer.json linked outside",
        &format!(
            "tokenizer.json is a symbolic link to {}, outside the model directory",
            elsewhere.canonicalize().unwrap().display()
        ),
    );
    eprintln!(
        "tokenizer.json linked outside: refused in {:?}",
        started.elapsed()
    );

    // A directory link out of it, and a link loop.
    let model = Hostile::new();
    symlink(model.area.path(), model.model().join("parent")).unwrap();
    model.check_refused("a directory linked outside", "parent is a symbolic link to");
    let model = Hostile::new();
    symlink(".", model.model().join("again")).unwrap();
    model.check_refused("a link loop", "a directory it is inside");

    // A ConfigMap volume keeps working: the gate accepts it and the daemon serves it.
    let area = tempfile::tempdir().unwrap();
    let volume = area.path().join("model");
    configmap_layout(&volume);
    let (code, stdout, stderr) = run(&["validate", volume.to_str().unwrap()], &[]);
    assert_eq!(
        code, 0,
        "a ConfigMap volume is a valid model:\n{stdout}\n{stderr}"
    );
    let server = Start::model(&volume).ready().await;
    let response = reqwest::Client::new()
        .post(server.url("/predict"))
        .json(&json!({"text": "I love this"}))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    assert_eq!(
        (status, body["label"].as_str()),
        (200, Some("POSITIVE")),
        "{body}"
    );
    server.stop().await.expect("a clean shutdown");
}

/// Bytes in the files under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(next).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                total += std::fs::metadata(&path).unwrap().len();
            }
        }
    }
    total
}

#[test]
fn zip_bombs_are_refused_before_they_are_written() {
    // Written by Python's zipfile (zlib): the fixture model plus 256 MiB of zeros, deflated to
    // about 256 KB, once as an entry the model does not use and once as its graph.
    const SCRIPT: &str = r#"
import os, sys, zipfile
model, out, zeros = sys.argv[1], sys.argv[2], bytes(256 << 20)
for name, bomb in [("unused.zip", "padding.bin"), ("graph.zip", "model.onnx")]:
    with zipfile.ZipFile(os.path.join(out, name), "w", zipfile.ZIP_DEFLATED) as z:
        for file in sorted(os.listdir(model)):
            if file != bomb:
                z.write(os.path.join(model, file), file)
        z.writestr(bomb, zeros)
"#;
    let area = tempfile::tempdir().unwrap();
    let status = Command::new(venv().join("bin/python"))
        .args(["-c", SCRIPT])
        .arg(fixture("sentiment"))
        .arg(area.path())
        .status()
        .expect("run the test virtualenv's python");
    assert!(status.success(), "writing the bombs failed");
    let model_bytes = bytes_under(&fixture("sentiment"));
    let default_cap = 4u64 << 30;

    // Unused: never read, the model extracts and passes the gate.
    let unused = area.path().join("unused.zip");
    let dest = area.path().join("unused");
    let started = Instant::now();
    let root = extract(&unused, &dest, default_cap).expect("the model in it extracts");
    let written = bytes_under(&dest);
    eprintln!(
        "unused 256 MiB bomb ({} bytes zipped): extracted in {:?}, {written} bytes written (the model is {model_bytes})",
        std::fs::metadata(&unused).unwrap().len(),
        started.elapsed()
    );
    assert!(!root.join("padding.bin").exists());
    assert!(written <= model_bytes, "{written} bytes written");
    let (code, stdout, stderr) = run(&["validate", unused.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");

    // As the graph: refused on its header, before a byte of it is written.
    let graph = area.path().join("graph.zip");
    let dest = area.path().join("graph");
    let started = Instant::now();
    let err = extract(&graph, &dest, default_cap).unwrap_err();
    let written = bytes_under(&dest);
    eprintln!(
        "256 MiB bomb as the graph: refused in {:?}, {written} bytes written: {err}",
        started.elapsed()
    );
    assert!(
        matches!(&err, BundleError::InflateRatio { entry, .. } if entry == "model.onnx"),
        "{err}"
    );
    assert!(
        written < 64 << 10,
        "{written} bytes written before the refusal"
    );
    let (code, _, stderr) = run(&["validate", graph.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("entry 'model.onnx' would inflate")
            && stderr.contains("more than 100 times"),
        "{stderr}"
    );
}
