//! How one batch of texts of different lengths is cut into padded session runs.
//!
//! A session run takes a rectangle: every text of the run is padded to the run's longest. A
//! batch of a 6-token and a 120-token review padded together costs 240 tokens of work for 126
//! real ones; run apart, 126 tokens and one more run. [`plan`] sorts nothing and knows no
//! model: given the lengths in ascending order and what one more run costs (in padded tokens),
//! it cuts them into consecutive groups at the least total cost, `runs x overhead + sum of
//! (rows x longest)`, by dynamic programming over the cut points (quadratic in the batch size,
//! which `max_batch_size` bounds). The queue still takes jobs in arrival order, so no length
//! waits longer than another; only the padding inside a batch changes.

/// What one more session run costs, in padded tokens. Estimated from MiniLM's batch timings
/// (int8, one thread; `bench/README.md`, "Pool sizing" and the ceiling): a batch of 1 short
/// text (~13 tokens) takes about 4.8 ms and one of 16 about 57 ms, i.e. ~0.27 ms a token and
/// ~1 ms, four tokens' worth, a run. Larger than that on purpose: a split only pays when it
/// saves clearly more than it costs.
pub const RUN_OVERHEAD_TOKENS: usize = 16;

/// Where to cut `lengths` (ascending) into runs: the end index of each run, the last one being
/// `lengths.len()`. Empty input, no runs.
pub fn plan(lengths: &[usize], overhead: usize) -> Vec<usize> {
    debug_assert!(
        lengths.windows(2).all(|w| w[0] <= w[1]),
        "lengths must be sorted"
    );
    let n = lengths.len();
    // best[i]: the least cost of the first i texts; cut[i]: where the last run of it starts.
    let mut best = vec![0usize; n + 1];
    let mut cut = vec![0usize; n + 1];
    for end in 1..=n {
        let longest = lengths[end - 1].max(1);
        let (cost, start) = (0..end)
            .map(|start| (best[start] + overhead + (end - start) * longest, start))
            .min()
            .expect("end >= 1");
        best[end] = cost;
        cut[end] = start;
    }
    let mut ends = Vec::new();
    let mut end = n;
    while end > 0 {
        ends.push(end);
        end = cut[end];
    }
    ends.reverse();
    ends
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_where_padding_costs_more_than_a_run() {
        let check = |lengths: &[usize], overhead: usize, expected: &[usize]| {
            assert_eq!(
                plan(lengths, overhead),
                expected,
                "{lengths:?} overhead {overhead}"
            )
        };
        check(&[], 16, &[]);
        check(&[7], 16, &[1]);
        // Equal lengths: one run, whatever the overhead.
        check(&[10, 10, 10, 10], 0, &[4]);
        // A short and a long text: apart when the padding saved beats one run.
        check(&[6, 120], 16, &[1, 2]);
        check(&[6, 120], 200, &[2]);
        // Close lengths stay together.
        check(&[10, 11, 12, 13], 16, &[4]);
        // Three clusters.
        check(&[5, 5, 6, 40, 41, 42, 128, 128], 16, &[3, 6, 8]);
        // Ties in cost keep the fewest runs (`min` takes the earliest start).
        check(&[8, 16], 8, &[2]);
    }

    #[test]
    fn a_plan_covers_every_text_once_and_never_costs_more_than_one_run() {
        let cost = |lengths: &[usize], ends: &[usize], overhead: usize| {
            let mut start = 0;
            let mut total = 0;
            for &end in ends {
                total += overhead + (end - start) * lengths[end - 1].max(1);
                start = end;
            }
            total
        };
        let mut lengths: Vec<usize> = (0..64).map(|i| (i * 37 % 128) + 1).collect();
        lengths.sort_unstable();
        for overhead in [0, 1, 16, 100, 10_000] {
            let ends = plan(&lengths, overhead);
            assert_eq!(ends.last(), Some(&lengths.len()));
            assert!(ends.windows(2).all(|w| w[0] < w[1]), "{ends:?}");
            let single = cost(&lengths, &[lengths.len()], overhead);
            assert!(
                cost(&lengths, &ends, overhead) <= single,
                "overhead {overhead}"
            );
        }
    }
}
