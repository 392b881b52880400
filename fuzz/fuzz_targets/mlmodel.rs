//! `MLmodel` YAML: parsing never panics, and every path it names either passes `confine` (a
//! plain relative path that stays inside the model directory) or is refused.
#![no_main]

use std::path::{Component, Path};

use hotserve::files::confine;
use hotserve::model::MlModel;
use libfuzzer_sys::fuzz_target;

fn check_path(named: &str) {
    let relative = named.strip_prefix("./").unwrap_or(named);
    if let Ok(path) = confine(relative) {
        assert!(
            path.components().all(|c| matches!(c, Component::Normal(_))),
            "{path:?}"
        );
        assert!(Path::new("/m").join(&path).starts_with("/m"));
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mlmodel) = MlModel::parse(text) else {
        return;
    };
    check_path(&mlmodel.onnx_file);
    for named in [&mlmodel.tokenizer, &mlmodel.serving_input_path]
        .into_iter()
        .flatten()
    {
        check_path(named);
    }
});
