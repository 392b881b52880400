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
//! Symbolic links inside a local model directory are followed on purpose (Kubernetes ConfigMap
//! volumes are made of them): a local directory is the operator's own input. Registry
//! downloads never create links, and `.zip` bundles with links are refused (`model/bundle.rs`).

use std::path::Path;
use std::process::Command;

use crate::support::hotserve::run;
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
