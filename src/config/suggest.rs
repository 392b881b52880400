//! The nearest known name to a mistyped one, for error messages: `poll_intervall` is answered
//! with `did you mean 'poll_interval'?`, not with the list of every key.

/// The known name closest to `word` (case-insensitively), if one is close enough to be what
/// was meant: at most a third of its letters differ (and at least one may).
pub fn nearest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    known
        .into_iter()
        .map(|candidate| {
            let distance = strsim::damerau_levenshtein(&word, &candidate.to_ascii_lowercase());
            (distance, candidate)
        })
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// `; did you mean 'x'?` for the nearest known name, else `; otherwise` followed by `fallback`.
pub fn hint<'a>(word: &str, known: impl IntoIterator<Item = &'a str>, fallback: &str) -> String {
    match nearest(word, known) {
        Some(name) => format!("; did you mean '{name}'?"),
        None => format!("; {fallback}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_name_or_none() {
        let known = [
            "poll_interval",
            "poll_jitter",
            "listen",
            "grpc_listen",
            "cache_dir",
        ];
        let check = |word: &str, expected: Option<&str>| {
            assert_eq!(nearest(word, known), expected, "{word}");
        };
        check("poll_intervall", Some("poll_interval"));
        check("POLL_INTERVAL", Some("poll_interval"));
        check("pol_interval", Some("poll_interval"));
        check("lisen", Some("listen"));
        check("grpc_lsiten", Some("grpc_listen"));
        check("cachedir", Some("cache_dir"));
        check("workers", None);
        check("", None);
    }

    #[test]
    fn hints_read_as_a_sentence() {
        assert_eq!(
            hint("lisen", ["listen"], "see hotserve settings"),
            "; did you mean 'listen'?"
        );
        assert_eq!(
            hint("zzz", ["listen"], "see hotserve settings"),
            "; see hotserve settings"
        );
    }
}
