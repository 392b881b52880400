//! The queue's decisions, kept free of locks and threads so that each is a pure function with
//! table tests beside it: how big a batch may grow ([`Fill`]), which job starts the next batch
//! ([`first_job`]), who is admitted when the queue is full ([`admits`]), whether a batch runs
//! on every core ([`runs_on_all_cores`]), whether a new job wakes an idle worker
//! ([`wakes_for`]) and whether background work may enter ([`may_run_background`]).

use std::time::Duration;

use super::ModelKey;

/// A batch expected to take less than this is short: a job queued meanwhile waits for the
/// worker running it rather than waking an idle one ([`wakes_for`]). Waking a sleeping
/// thread and putting it back to sleep costs about this much, in CPU and in latency; with a
/// small model most of a request's time went into these wake-ups (`bench/README.md`, "Where a
/// request's time goes").
pub(super) const SHORT_BATCH: Duration = Duration::from_micros(200);

/// The rules for how big a batch may grow, kept free of locks and threads so they are
/// unit-tested: at most `max_batch_size` texts, at most `max_batch_tokens` padded tokens
/// (longest text x texts), and — while other workers are idle — only a fair share of what is
/// queued, so the work is spread over all cores instead of one worker running one big (slow)
/// batch while the others sleep. Under full load nobody is idle and batches grow to the limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Fill {
    pub(super) texts: usize,
    longest: usize,
    limit: usize,
    token_budget: usize,
}

impl Fill {
    /// A batch that starts with a job of `texts` texts (longest `longest` tokens), with
    /// `queued` more texts waiting and `idle` workers that could take some of them.
    pub(super) fn start(
        texts: usize,
        longest: usize,
        queued: usize,
        idle: usize,
        max_batch_size: usize,
        token_budget: usize,
    ) -> Fill {
        let share = (texts + queued).div_ceil(idle + 1);
        Fill {
            texts,
            longest,
            // Never smaller than the first job: it is taken whole.
            limit: max_batch_size.min(share).max(texts),
            token_budget,
        }
    }

    /// Adds a job if it fits the size limit and the token budget.
    pub(super) fn try_add(&mut self, texts: usize, longest: usize) -> bool {
        let total = self.texts + texts;
        let longest = self.longest.max(longest);
        if total > self.limit || longest * total > self.token_budget {
            return false;
        }
        self.texts = total;
        self.longest = longest;
        true
    }

    pub(super) fn is_full(&self) -> bool {
        self.texts >= self.limit
    }
}

/// Whether a batch just taken runs on its model's all-cores session (`adaptive_pool`): when it
/// is alone, with `in_progress` predictions in the process (at most its own), `queued` jobs
/// left (none), and no other worker `computing` a batch, so their cores are free; and the model
/// has such a session. Under load every worker runs its own session; at a trickle, each request
/// gets all the cores. A job arriving meanwhile waits for that batch (one short run).
pub(super) fn runs_on_all_cores(
    in_progress: usize,
    queued: usize,
    computing: usize,
    has_all_cores: bool,
) -> bool {
    has_all_cores && in_progress <= 1 && queued == 0 && computing == 0
}

/// Whether a job just queued should wake an idle worker: false (no wake-up) when `short_running` workers
/// run a short batch and this model's `last_batch` was short; true otherwise.
pub(super) fn wakes_for(short_running: usize, last_batch: Option<Duration>) -> bool {
    !(short_running > 0 && last_batch.is_some_and(|took| took < SHORT_BATCH))
}

/// Whether background work may enter the low-priority lane, with `live` jobs waiting, `idle`
/// workers waiting for work and `background` pieces already in the lane: only when no live
/// job waits and an idle worker is left for it. So background work only ever uses capacity
/// nobody asked for at that moment; under load it is refused, never queued.
pub(super) fn may_run_background(live: usize, idle: usize, background: usize) -> bool {
    live == 0 && background < idle
}

/// Whether `texts` more texts of one model may enter a queue that holds `queued` texts, `own`
/// of them this model's, from `models` models with queued work (this one included), when it
/// has room for `capacity`. Within capacity, yes; and a request larger than the whole queue is
/// still admitted into an empty queue, so a big (but allowed) batch is never refused forever.
/// Beyond capacity, a model still below its fair share (`capacity / models`) gets in: one
/// model flooding the queue cannot shut the others out. So the queue may hold up to twice
/// `capacity` texts when several models are busy; with one model it never exceeds it.
pub(super) fn admits(
    queued: usize,
    own: usize,
    models: usize,
    capacity: usize,
    texts: usize,
) -> bool {
    queued == 0 || queued + texts <= capacity || own + texts <= capacity / models.max(1)
}

/// Which queued job (by position) starts the next batch, given the configured model of each
/// queued job in queue order and the model the last batch was started for: the oldest job of
/// another model when one is waiting, else the oldest job. Several models share one queue;
/// without this a burst on one model would make every other model wait behind all of it,
/// with it another model waits for at most one batch per worker. With one model it is FIFO.
pub(super) fn first_job(
    models: impl Iterator<Item = ModelKey>,
    last_served: Option<ModelKey>,
) -> Option<usize> {
    let mut oldest = None;
    for (index, model) in models.enumerate() {
        if Some(model) != last_served {
            return Some(index);
        }
        oldest.get_or_insert(index);
    }
    oldest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[rustfmt::skip]
    fn background_work_only_on_idle_capacity() {
        // (live jobs waiting, idle workers, background waiting) -> accepted
        let check = |live, idle, background, expected| {
            assert_eq!(may_run_background(live, idle, background), expected, "{live} {idle} {background}");
        };
        check(0, 1, 0, true);
        check(0, 2, 1, true);
        check(0, 2, 2, false);  // every idle worker already has a piece
        check(0, 0, 0, false);  // every worker busy
        check(1, 2, 0, false);  // a live job waits
    }

    #[test]
    #[rustfmt::skip]
    fn a_job_wakes_an_idle_worker_unless_a_short_batch_is_about_to_end() {
        // (workers running a short batch, this model's last batch) -> wake an idle worker
        let check = |short_running, last_micros: Option<u64>, expected| {
            let last = last_micros.map(Duration::from_micros);
            assert_eq!(wakes_for(short_running, last), expected, "{short_running} {last:?}");
        };
        check(0, None, true);         // nothing known, nobody running: wake
        check(0, Some(20), true);     // a small model, but every worker sleeps
        check(1, Some(20), false);    // a small model, a worker about to come back for more
        check(1, None, true);         // this model's first batch: cost unknown
        check(1, Some(5_000), true);  // a large model: spread over every worker at once
        check(2, Some(199), false);
        check(2, Some(200), true);
    }

    #[test]
    #[rustfmt::skip]
    fn a_lone_batch_runs_on_all_cores() {
        // (predictions in progress, jobs left in the queue, other workers computing,
        //  model has an all-cores session) -> all cores
        let check = |in_progress, queued, computing, has, expected| {
            let all = runs_on_all_cores(in_progress, queued, computing, has);
            assert_eq!(all, expected, "{in_progress} {queued} {computing} {has}");
        };
        check(1, 0, 0, true, true);    // alone: no other worker computing
        check(0, 0, 0, true, true);    // the client left while its job waited
        check(2, 0, 0, true, false);   // another request is on its way (tokenizing, answering)
        check(64, 0, 0, true, false);  // a busy server whose queue is empty for a moment
        check(1, 1, 0, true, false);   // another job waits: each worker its own session
        check(1, 0, 1, true, false);   // another worker computes: its core is taken
        check(1, 0, 0, false, false);  // adaptive_pool off (or a model without the session)
    }

    #[test]
    #[rustfmt::skip]
    fn admission() {
        // (queued, own, models, capacity, texts) -> admitted
        let check = |queued, own, models, capacity, texts, expected| {
            assert_eq!(admits(queued, own, models, capacity, texts), expected, "{queued} {own} {models} {capacity} {texts}");
        };
        check(0, 0, 1, 8, 100, true);   // an empty queue takes any request
        check(4, 4, 1, 8, 4, true);     // within capacity
        check(5, 5, 1, 8, 4, false);    // one model: never beyond capacity
        check(8, 8, 2, 8, 1, false);    // the flood itself: full
        check(8, 0, 2, 8, 1, true);     // another model below its share gets in
        check(11, 3, 2, 8, 1, true);
        check(12, 4, 2, 8, 1, false);   // at its share: full for it too
        check(9, 1, 3, 8, 2, false);    // over its share of 8 / 3
    }

    #[test]
    #[rustfmt::skip]
    fn the_first_job_alternates_between_models() {
        let check = |queued: &[u64], last: Option<u64>, expected: Option<usize>| {
            let got = first_job(queued.iter().copied().map(ModelKey), last.map(ModelKey));
            assert_eq!(got, expected, "{queued:?} after {last:?}");
        };
        check(&[], None, None);
        check(&[], Some(1), None);
        check(&[1, 1, 2], None, Some(0));
        check(&[1, 1, 1], Some(1), Some(0));
        check(&[1, 1, 2, 1], Some(1), Some(2));
        check(&[2, 1, 1], Some(1), Some(0));
        check(&[1, 3, 2], Some(1), Some(1));
        check(&[1, 1, 2], Some(3), Some(0));
    }

    /// (first job texts, its longest, queued texts, idle workers, jobs offered as (texts,
    /// longest)) -> which offers were taken and the batch's final size.
    fn check(
        first: (usize, usize),
        queued: usize,
        idle: usize,
        offers: &[(usize, usize)],
        taken: &[bool],
        size: usize,
    ) {
        let mut fill = Fill::start(first.0, first.1, queued, idle, 8, 100);
        let got: Vec<bool> = offers
            .iter()
            .map(|&(texts, longest)| !fill.is_full() && fill.try_add(texts, longest))
            .collect();
        assert_eq!(
            got, taken,
            "first {first:?}, queued {queued}, idle {idle}, offers {offers:?}"
        );
        assert_eq!(fill.texts, size);
    }

    #[test]
    fn batching_rules() {
        // Nobody idle: grow to max_batch_size (8).
        check(
            (1, 5),
            9,
            0,
            &[(1, 5); 9],
            &[true, true, true, true, true, true, true, false, false],
            8,
        );
        // One idle worker and 8 texts in all: take half, leave half.
        check(
            (1, 5),
            7,
            1,
            &[(1, 5); 7],
            &[true, true, true, false, false, false, false],
            4,
        );
        // The first job is taken whole even when larger than the fair share.
        check((6, 5), 0, 1, &[], &[], 6);
        // Token budget (100 padded tokens): 5 texts of up to 20 tokens fit; a sixth text makes
        // 6 x 20 = 120 whatever its own length, and a 60-token text 6 x 60.
        check(
            (1, 10),
            5,
            0,
            &[(4, 20), (1, 60), (1, 5)],
            &[true, false, false],
            5,
        );
        // A long text is skipped, shorter ones behind it still join.
        check((1, 10), 3, 0, &[(1, 60), (2, 10)], &[false, true], 3);
        // A job that would overflow the size limit is skipped, a smaller one still fits.
        check((5, 5), 10, 0, &[(4, 5), (3, 5)], &[false, true], 8);
    }
}
