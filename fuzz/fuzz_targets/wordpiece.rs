//! The fast BERT tokenizer (`hotserve::model::wordpiece`) against `tokenizers`, on any text:
//! wherever the fast path accepts a text it must give exactly `tokenizers`' ids and type ids
//! (else it must decline), with the fixture's BERT-uncased tokenizer as it is and truncated to
//! 16 tokens (as the gate truncates, LongestFirst, stride 0). A difference is a wrong answer
//! served silently, so it is a crash here. Bytes that are not UTF-8 are read lossily.
#![no_main]

use std::sync::LazyLock;

use hotserve::model::wordpiece::FastBert;
use libfuzzer_sys::fuzz_target;
use tokenizers::{Tokenizer, TruncationParams};

static TOKENIZERS: LazyLock<Vec<(Tokenizer, FastBert)>> = LazyLock::new(|| {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/sentiment/tokenizer.json"
    );
    let plain = Tokenizer::from_file(path).expect("the fixture's tokenizer.json loads");
    let mut truncated = plain.clone();
    truncated
        .with_truncation(Some(TruncationParams {
            max_length: 16,
            ..TruncationParams::default()
        }))
        .expect("truncation to 16 tokens");
    [plain, truncated]
        .into_iter()
        .map(|tokenizer| {
            let fast = FastBert::from_tokenizer(&tokenizer).expect("a BERT-uncased tokenizer");
            (tokenizer, fast)
        })
        .collect()
});

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for (tokenizer, fast) in TOKENIZERS.iter() {
        assert!(
            fast.agrees_with(tokenizer, &text),
            "the fast tokenizer and tokenizers disagree on {text:?}"
        );
    }
});
