//! `tokenizer.json`, as the loader reads it: `Tokenizer::from_bytes`, then the truncation the
//! gate sets and one encoding. Never panics or hangs, whatever the file says (the file comes
//! from whoever logged the model).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenizers::{Tokenizer, TruncationParams};

fuzz_target!(|data: &[u8]| {
    let Ok(mut tokenizer) = Tokenizer::from_bytes(data) else {
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
