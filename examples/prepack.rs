//! `prepack`: what ONNX Runtime's weight prepacking buys on one model, measured in one process
//! so that a busy machine affects both sides alike. Loads the model twice with one shared-weights
//! session each, once with prepacking and once without, then times `--rounds` rounds that
//! alternate between them (each round: `--batches` batches of `--batch` texts), and prints the
//! median milliseconds per batch of each and their ratio. `bench/memory_workers.sh` runs it.
//!
//! ```sh
//! cargo run --release --example prepack -- MODEL_DIR [--rounds 10] [--batches 5] [--batch 32]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use hotserve::model::providers::ExecutionProviders;
use hotserve::model::{self, LoadOptions, Model};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir =
        PathBuf::from(args.next().ok_or(
            "usage: prepack MODEL_DIR [--rounds N] [--batches N] [--batch N] [--threads N]",
        )?);
    let (mut rounds, mut batches, mut batch, mut threads) = (10usize, 5usize, 32usize, 1usize);
    while let Some(flag) = args.next() {
        let value: usize = args.next().ok_or("a flag needs a value")?.parse()?;
        match flag.as_str() {
            "--rounds" => rounds = value,
            "--batches" => batches = value,
            "--batch" => batch = value,
            "--threads" => threads = value,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let load = |prepack: bool| {
        let options = LoadOptions {
            name: "model".into(),
            version: Some("1".into()),
            source: dir.display().to_string(),
            aliases: Vec::new(),
            model_id: None,
            run_id: None,
            digests: Some(Vec::new()),
            ort_dylib_path: std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
            intra_op_threads: threads,
            sessions: 1,
            max_sequence_length: 0,
            share_weights: true,
            prepack_weights: prepack,
            all_cores_threads: 0,
            execution_providers: ExecutionProviders::cpu(),
            keep_optimized: None,
        };
        model::load(&dir, &options)
    };
    let packed = load(true)?;
    let unpacked = load(false)?;
    let text = "The plot was thin but the acting carried it, and the last act made me laugh \
                more than I expected; I would watch it again with friends.";
    let encoded = packed.encode(text)?;
    let texts: Vec<_> = (0..batch).map(|_| &encoded).collect();
    let time = |model: &Model| -> Result<f64, model::ModelError> {
        let start = Instant::now();
        for _ in 0..batches {
            model
                .classify(0, &texts)
                .map_err(|e| model::ModelError::Warmup(e.to_string()))?;
        }
        Ok(start.elapsed().as_secs_f64() * 1000.0 / batches as f64)
    };
    time(&packed)?;
    time(&unpacked)?;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which goes first, so neither always follows the other.
        if round % 2 == 0 {
            with.push(time(&packed)?);
            without.push(time(&unpacked)?);
        } else {
            without.push(time(&unpacked)?);
            with.push(time(&packed)?);
        }
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let (with, without) = (median(&mut with), median(&mut without));
    println!(
        "prepacked {with:.1} ms per batch of {batch}, not prepacked {without:.1} ms; \
         not prepacked / prepacked = {:.3} ({rounds} rounds of {batches} batches, {threads} \
         intra-op thread(s), {} tokens per text)",
        without / with,
        encoded.ids.len()
    );
    Ok(())
}
