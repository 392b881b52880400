//! `tokenizer.json`, as the loader reads it: `Tokenizer::from_bytes`, then the truncation the
//! gate sets and one encoding. Never panics or hangs, whatever the file says (the file comes
//! from whoever logged the model).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenizers::{Tokenizer, TruncationParams};

/// `Tokenizer::from_bytes` with a panic turned into a refusal, as the gate does
/// (`parse_tokenizer` in `src/model/load.rs`: tokenizers 0.22 panics on a malformed `decoder`).
/// libFuzzer's panic hook aborts, so it is set aside for the call.
fn parse(data: &[u8]) -> Option<Tokenizer> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let parsed = std::panic::catch_unwind(|| Tokenizer::from_bytes(data));
    std::panic::set_hook(hook);
    parsed.ok()?.ok()
}

fuzz_target!(|data: &[u8]| {
    let Some(mut tokenizer) = parse(data) else {
        return;
    };
    tokenizer.with_padding(None);
    if tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: 16,
            ..TruncationParams::default()
        }))
        .is_err()
    {
        return;
    }
    let _ = tokenizer.encode("hotserve fuzzes the tokenizer: Ünïcode, [SEP] 123", true);
});
