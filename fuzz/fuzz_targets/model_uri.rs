//! `MODEL_URI` parsing: never panics, and a registry URI shows as text that parses back to the
//! same URI.
#![no_main]

use hotserve::registry::{ModelUri, RemoteUri};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ModelUri::Remote(remote)) = ModelUri::parse(text) {
        let shown = remote.to_string();
        match ModelUri::parse(&shown) {
            Ok(ModelUri::Remote(again)) => assert_eq!(again, remote, "{text:?} shows as {shown:?}"),
            other => panic!("{text:?} shows as {shown:?}, which parses as {other:?}"),
        }
        let _ = remote.registered_name();
    }
    let _ = RemoteUri::parse(text);
});
