//! `loadgen`: an HTTP load generator, closed loop or open loop, small enough to read and cheap
//! enough to run on the same machine as the server it measures.
//!
//! Closed loop (the default): `--concurrency N` tasks each send a request, wait for the whole response, record it and send
//! the next one, until `--duration` has passed, `--max-requests` have been sent, or SIGINT /
//! SIGTERM arrives (in-flight requests then finish, bounded by `--timeout`, and the results are
//! still written). One shared `reqwest` client keeps connections alive; the tokio runtime has
//! `--threads` worker threads (default 1) so the generator leaves the CPU to the server.
//!
//! ```sh
//! cargo build --release --example loadgen
//! target/release/examples/loadgen --url http://127.0.0.1:8080/predict \
//!     --concurrency 16 --duration 10s --body '{"text": "I love this"}' --csv /tmp/run.csv
//! ```
//!
//! `--csv` writes one row per request, sorted by start time:
//! `start_us,latency_us,status,model_version,error` — the start as microseconds since the run
//! began, the latency in microseconds, the HTTP status (0 when no complete response arrived:
//! connection error, timeout, truncated body), the `X-Model-Version` header (empty if absent)
//! and, for status 0, what went wrong. `--summary-json` writes the summary, including
//! `start_unix_us` (the wall-clock time of offset 0) so that rows can be lined up with events
//! recorded by another process. After a request that got no response, its task pauses 10 ms,
//! so that a dead server does not turn into a busy loop. `--fail-on-error` makes the exit status
//! 1 when any request failed. `bench/swap.py` uses it; see also `examples/README.md`.
//!
//! Open loop (`--rate R`): request `i` is due at `i / R` seconds after the start, whether or not
//! earlier ones have answered; a pacing thread releases them on time (the OS timer, not tokio's
//! millisecond wheel), and at most `--concurrency` are in flight: a request that finds them all
//! busy waits, its clock running. Latency is measured from the due time, not from the send, so
//! a server that falls behind shows it (no coordinated omission). The summary adds the target and
//! achieved rates and how many requests were sent more than 1 ms after their due time.
//!
//! `--texts FILE` sends `{"text": ...}` bodies from a TSV of `tokens<TAB>bucket<TAB>text`, one
//! text a line, in file order, cycling; the summary then has latency percentiles per bucket.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use serde_json::json;

/// The longest run allowed: every run is bounded.
const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Connection errors printed while the run goes on (all of them are in the CSV).
const ERRORS_SHOWN: u64 = 5;
/// A task pauses this long after a request got no response, so that a dead server does not
/// turn the run into a busy loop of connection errors (and millions of rows).
const ERROR_PAUSE: Duration = Duration::from_millis(10);

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "HTTP load generator: N connections each sending its next request when the previous one has answered (closed loop), or requests at a fixed rate (--rate, open loop)"
)]
struct Args {
    /// Target URL, e.g. http://127.0.0.1:8080/predict
    #[arg(long)]
    url: String,
    /// Concurrent requests (one keep-alive connection each)
    #[arg(long, short = 'c', default_value_t = 16)]
    concurrency: usize,
    /// How long to send requests: 10s, 500ms, 2m (at most 1h)
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Stop after this many requests (whichever of this and --duration comes first)
    #[arg(long)]
    max_requests: Option<u64>,
    /// Open loop: send this many requests per second at fixed intervals from the start, at most
    /// --concurrency in flight; latency counts from each request's due time
    #[arg(long, value_name = "PER_SECOND")]
    rate: Option<f64>,
    /// The request body, sent with every request
    #[arg(long, conflicts_with_all = ["body_file", "texts"])]
    body: Option<String>,
    /// A file of request bodies, one per line (empty lines skipped), cycled through in order
    #[arg(long, value_name = "FILE", conflicts_with = "texts")]
    body_file: Option<PathBuf>,
    /// A TSV of texts, `tokens<TAB>bucket<TAB>text` a line: sends {"text": ...} of each line in
    /// order, cycling, and reports latency per bucket
    #[arg(long, value_name = "FILE")]
    texts: Option<PathBuf>,
    /// HTTP method (GET sends no body)
    #[arg(long, default_value = "POST")]
    method: String,
    /// Content-Type of the bodies
    #[arg(long, default_value = "application/json")]
    content_type: String,
    /// Extra request header, "Name: value" (repeatable)
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Per-request timeout (connect, send, whole response); a timeout counts as status 0
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Tokio worker threads (1 = a single-threaded runtime)
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Write one CSV row per request here
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Write the summary as JSON here
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
    /// Print requests/s and errors once a second while running (to stderr)
    #[arg(long)]
    progress: bool,
    /// Exit with status 1 if any request failed (non-2xx or no response)
    #[arg(long)]
    fail_on_error: bool,
}

/// Parses `10s`, `500ms`, `2m`, `1h`, `1.5s`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (examples: 10s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}' (use ms, s, m or h)"
            ))
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("'{text}' is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// One request's outcome.
struct Record {
    /// When the request was due (open loop) or sent (closed loop), since the run began.
    start_us: u64,
    /// From `start_us` to the end of the response.
    latency_us: u64,
    /// 0 when no complete response arrived.
    status: u16,
    version: Option<Arc<str>>,
    error: Option<String>,
    /// Open loop: how long after its due time the request was sent (0 in a closed loop).
    late_us: u64,
    /// Open loop: false when the request never got a free connection before the run ended.
    sent: bool,
    /// With `--texts`: the index of the text's length bucket in `Bodies::buckets`.
    bucket: Option<u16>,
}

/// The bodies to send, cycled through in order, and with `--texts` their length buckets.
struct Bodies {
    /// One request body each.
    bytes: Vec<Bytes>,
    /// With `--texts`: the bucket index of each body (as long as `bytes`); empty otherwise.
    bucket_of: Vec<u16>,
    /// With `--texts`: the buckets, in order of first appearance in the file.
    buckets: Vec<Bucket>,
}

/// A length bucket of `--texts` (column 2 of the TSV).
struct Bucket {
    /// The bucket's name, e.g. `<=16`.
    name: String,
    /// The shortest text in it, in tokens (column 1).
    tokens_min: u64,
    /// The longest text in it, in tokens.
    tokens_max: u64,
}

/// What every task shares.
struct Shared {
    client: reqwest::Client,
    method: reqwest::Method,
    url: reqwest::Url,
    headers: reqwest::header::HeaderMap,
    bodies: Bodies,
    t0: Instant,
    deadline: Instant,
    /// Per-request timeout; in an open loop also how long after the deadline a request may
    /// still wait for a free connection.
    timeout: Duration,
    max_requests: u64,
    issued: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    errors_shown: AtomicU64,
    stop: AtomicBool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("loadgen: {err}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<std::process::ExitCode, String> {
    if args.concurrency == 0 || args.concurrency > 10_000 {
        return Err("--concurrency must be between 1 and 10000".into());
    }
    if args.duration.is_zero() || args.duration > MAX_DURATION {
        return Err("--duration must be more than 0 and at most 1h".into());
    }
    if args.threads == 0 || args.threads > 16 {
        return Err("--threads must be between 1 and 16".into());
    }
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0 && rate <= 1e6) {
            return Err("--rate must be more than 0 and at most 1000000 requests/s".into());
        }
    }
    let url = reqwest::Url::parse(&args.url).map_err(|e| format!("--url '{}': {e}", args.url))?;
    let method = reqwest::Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("--method '{}' is not an HTTP method", args.method))?;
    let bodies = load_bodies(&args, &method)?;
    let headers = parse_headers(&args)?;

    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .map_err(|e| format!("cannot start the tokio runtime: {e}"))?;

    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .pool_max_idle_per_host(args.concurrency)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .http1_only()
        .no_proxy()
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;

    let start_unix_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let t0 = Instant::now();
    let shared = Arc::new(Shared {
        client,
        method,
        url,
        headers,
        bodies,
        t0,
        deadline: t0 + args.duration,
        timeout: args.timeout,
        max_requests: args.max_requests.unwrap_or(u64::MAX),
        issued: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        errors_shown: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });

    let (mut records, interrupted) = runtime.block_on(drive(shared.clone(), &args));
    let elapsed = records
        .iter()
        .map(|r| r.start_us + r.latency_us)
        .max()
        .unwrap_or(0) as f64
        / 1e6;
    drop(runtime);

    records.sort_by_key(|r| r.start_us);
    if let Some(path) = &args.csv {
        write_csv(path, &records).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let summary = summarize(
        &records,
        &shared.bodies.buckets,
        elapsed,
        start_unix_us,
        &args,
        interrupted,
    );
    print_summary(&summary);
    if let Some(path) = &args.summary_json {
        let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if args.fail_on_error && summary["failed"].as_u64() != Some(0) {
        return Ok(std::process::ExitCode::FAILURE);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn load_bodies(args: &Args, method: &reqwest::Method) -> Result<Bodies, String> {
    if let Some(path) = &args.texts {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--texts {}: {e}", path.display()))?;
        return parse_texts(&text).map_err(|e| format!("--texts {}: {e}", path.display()));
    }
    let plain = |bytes| Bodies {
        bytes,
        bucket_of: Vec::new(),
        buckets: Vec::new(),
    };
    if let Some(path) = &args.body_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--body-file {}: {e}", path.display()))?;
        let bodies: Vec<Bytes> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| Bytes::copy_from_slice(l.as_bytes()))
            .collect();
        if bodies.is_empty() {
            return Err(format!("--body-file {} has no bodies", path.display()));
        }
        return Ok(plain(bodies));
    }
    match &args.body {
        Some(body) => Ok(plain(vec![Bytes::from(body.clone())])),
        None if *method == reqwest::Method::GET || *method == reqwest::Method::HEAD => {
            Ok(plain(vec![Bytes::new()]))
        }
        None => Err("give --body, --body-file or --texts (or --method GET)".into()),
    }
}

/// Parses a `--texts` TSV: `tokens<TAB>bucket<TAB>text` a line. Empty lines, `#` comments and a
/// first line whose first column is not a number (a header) are skipped.
fn parse_texts(tsv: &str) -> Result<Bodies, String> {
    let mut bodies = Bodies {
        bytes: Vec::new(),
        bucket_of: Vec::new(),
        buckets: Vec::new(),
    };
    for (index, line) in tsv.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut columns = line.splitn(3, '\t');
        let (Some(tokens), Some(bucket), Some(text)) =
            (columns.next(), columns.next(), columns.next())
        else {
            return Err(format!(
                "line {}: expected tokens<TAB>bucket<TAB>text",
                index + 1
            ));
        };
        let Ok(tokens) = tokens.trim().parse::<u64>() else {
            if index == 0 {
                continue;
            }
            return Err(format!(
                "line {}: '{tokens}' is not a token count",
                index + 1
            ));
        };
        let bucket = bucket.trim();
        let position = match bodies.buckets.iter().position(|b| b.name == bucket) {
            Some(position) => position,
            None => {
                bodies.buckets.push(Bucket {
                    name: bucket.to_string(),
                    tokens_min: tokens,
                    tokens_max: tokens,
                });
                bodies.buckets.len() - 1
            }
        };
        let entry = &mut bodies.buckets[position];
        entry.tokens_min = entry.tokens_min.min(tokens);
        entry.tokens_max = entry.tokens_max.max(tokens);
        let position = u16::try_from(position).map_err(|_| "more than 65536 buckets")?;
        bodies.bucket_of.push(position);
        bodies
            .bytes
            .push(Bytes::from(json!({ "text": text }).to_string()));
    }
    if bodies.bytes.is_empty() {
        return Err("no texts".into());
    }
    Ok(bodies)
}

fn parse_headers(args: &Args) -> Result<reqwest::header::HeaderMap, String> {
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
    let mut map = HeaderMap::new();
    if !args.content_type.is_empty() {
        let value = HeaderValue::from_str(&args.content_type).map_err(|_| {
            format!(
                "--content-type '{}' is not a header value",
                args.content_type
            )
        })?;
        map.insert(CONTENT_TYPE, value);
    }
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("--header '{header}' is not 'Name: value'"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("--header '{header}': bad name"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("--header '{header}': bad value"))?;
        map.insert(name, value);
    }
    Ok(map)
}

/// Runs the tasks until the deadline, the request budget or a signal; returns every record and
/// whether a signal stopped the run.
async fn drive(shared: Arc<Shared>, args: &Args) -> (Vec<Record>, bool) {
    let load = match args.rate {
        Some(rate) => tokio::spawn(open_loop(shared.clone(), rate, args.concurrency)),
        None => tokio::spawn(closed_loop(shared.clone(), args.concurrency)),
    };

    let interrupted = Arc::new(AtomicBool::new(false));
    let signals = {
        let shared = shared.clone();
        let interrupted = interrupted.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            interrupted.store(true, Ordering::SeqCst);
            shared.stop.store(true, Ordering::SeqCst);
        })
    };
    let progress = args.progress.then(|| {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            ticker.tick().await;
            let (mut last_done, mut last_failed) = (0, 0);
            loop {
                ticker.tick().await;
                let done = shared.completed.load(Ordering::Relaxed);
                let failed = shared.failed.load(Ordering::Relaxed);
                eprintln!(
                    "loadgen: {:6.1} s  {:6} req/s  {} failed",
                    shared.t0.elapsed().as_secs_f64(),
                    done - last_done,
                    failed - last_failed
                );
                (last_done, last_failed) = (done, failed);
            }
        })
    });

    let records = load.await.unwrap_or_else(|err| {
        eprintln!("loadgen: the load task failed: {err}");
        Vec::new()
    });
    signals.abort();
    if let Some(progress) = progress {
        progress.abort();
    }
    (records, interrupted.load(Ordering::SeqCst))
}

/// `concurrency` closed-loop clients; their records, in no particular order.
async fn closed_loop(shared: Arc<Shared>, concurrency: usize) -> Vec<Record> {
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(worker(shared.clone())))
        .collect();
    let mut records = Vec::new();
    for task in tasks {
        match task.await {
            Ok(mut part) => records.append(&mut part),
            Err(err) => eprintln!("loadgen: a worker task failed: {err}"),
        }
    }
    records
}

/// One closed-loop client: send, wait for the whole answer, record, repeat.
async fn worker(shared: Arc<Shared>) -> Vec<Record> {
    let mut records = Vec::with_capacity(4096);
    // X-Model-Version rarely changes: share one allocation per distinct value.
    let mut last_version: Option<Arc<str>> = None;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let n = shared.issued.fetch_add(1, Ordering::Relaxed);
        if n >= shared.max_requests {
            break;
        }
        let start = Instant::now();
        if start >= shared.deadline {
            break;
        }
        let outcome = exchange(&shared, n, last_version.as_ref()).await;
        let record = finish(&shared, n, start, start, outcome);
        let failed = record.status == 0;
        if !failed {
            last_version.clone_from(&record.version);
        }
        records.push(record);
        if failed {
            tokio::time::sleep(ERROR_PAUSE).await;
        }
    }
    records
}

/// The open loop: request `n` is due `n / rate` seconds after the start. A pacing thread
/// releases each on its due time (`std::thread::sleep` is precise to tens of microseconds,
/// tokio's timer to a millisecond); each then waits for one of `concurrency` permits, its
/// clock running from the due time.
async fn open_loop(shared: Arc<Shared>, rate: f64, concurrency: usize) -> Vec<Record> {
    let (due_tx, mut due_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let pacer = {
        let shared = shared.clone();
        std::thread::spawn(move || {
            for n in 0..shared.max_requests {
                let due = shared.t0 + Duration::from_secs_f64(n as f64 / rate);
                if due >= shared.deadline || shared.stop.load(Ordering::Relaxed) {
                    break;
                }
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                shared.issued.fetch_add(1, Ordering::Relaxed);
                if due_tx.send((n, due)).is_err() {
                    break;
                }
            }
        })
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut running = tokio::task::JoinSet::new();
    let mut records = Vec::new();
    loop {
        tokio::select! {
            next = due_rx.recv() => match next {
                Some((n, due)) => {
                    running.spawn(open_request(shared.clone(), permits.clone(), n, due));
                }
                None => break,
            },
            Some(done) = running.join_next(), if !running.is_empty() => {
                match done {
                    Ok(record) => records.push(record),
                    Err(err) => eprintln!("loadgen: a request task failed: {err}"),
                }
            }
        }
    }
    while let Some(done) = running.join_next().await {
        match done {
            Ok(record) => records.push(record),
            Err(err) => eprintln!("loadgen: a request task failed: {err}"),
        }
    }
    let _ = pacer.join();
    records
}

/// One open-loop request: wait for a free connection (until the deadline plus the timeout at
/// most), send, record with the latency counted from `due`.
async fn open_request(
    shared: Arc<Shared>,
    permits: Arc<tokio::sync::Semaphore>,
    n: u64,
    due: Instant,
) -> Record {
    let give_up = tokio::time::Instant::from_std(shared.deadline + shared.timeout);
    let permit = tokio::time::timeout_at(give_up, permits.acquire_owned()).await;
    let Ok(Ok(_permit)) = permit else {
        shared.completed.fetch_add(1, Ordering::Relaxed);
        shared.failed.fetch_add(1, Ordering::Relaxed);
        return Record {
            start_us: due.duration_since(shared.t0).as_micros() as u64,
            latency_us: due.elapsed().as_micros() as u64,
            status: 0,
            version: None,
            error: Some(
                "not sent: every --concurrency request was still busy at the end of the run".into(),
            ),
            late_us: due.elapsed().as_micros() as u64,
            sent: false,
            bucket: shared.bucket_of(n),
        };
    };
    let sent = Instant::now();
    let outcome = exchange(&shared, n, None).await;
    finish(&shared, n, due, sent, outcome)
}

impl Shared {
    /// The bucket of request `n`'s body, with `--texts`.
    fn bucket_of(&self, n: u64) -> Option<u16> {
        let buckets = &self.bodies.bucket_of;
        (!buckets.is_empty()).then(|| buckets[(n % buckets.len() as u64) as usize])
    }
}

/// Sends request `n` (body `n` modulo the bodies) and reads the whole answer: its status and
/// `X-Model-Version` (sharing `last_version`'s allocation when it is the same).
async fn exchange(
    shared: &Shared,
    n: u64,
    last_version: Option<&Arc<str>>,
) -> Result<(u16, Option<Arc<str>>), reqwest::Error> {
    let bodies = &shared.bodies.bytes;
    let body = bodies[(n % bodies.len() as u64) as usize].clone();
    let mut request = shared
        .client
        .request(shared.method.clone(), shared.url.clone())
        .headers(shared.headers.clone());
    if !body.is_empty() {
        request = request.body(body);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let version = response
        .headers()
        .get("x-model-version")
        .and_then(|v| v.to_str().ok())
        .map(|v| match last_version {
            Some(last) if &**last == v => last.clone(),
            _ => Arc::<str>::from(v),
        });
    response.bytes().await?;
    Ok((status, version))
}

/// The record of request `n`, due (or started) at `start` and sent at `sent`; counts it.
fn finish(
    shared: &Shared,
    n: u64,
    start: Instant,
    sent: Instant,
    outcome: Result<(u16, Option<Arc<str>>), reqwest::Error>,
) -> Record {
    let latency_us = start.elapsed().as_micros() as u64;
    let start_us = start.duration_since(shared.t0).as_micros() as u64;
    let late_us = sent.duration_since(start).as_micros() as u64;
    shared.completed.fetch_add(1, Ordering::Relaxed);
    let (status, version, error) = match outcome {
        Ok((status, version)) => {
            if !(200..300).contains(&status) {
                shared.failed.fetch_add(1, Ordering::Relaxed);
            }
            (status, version, None)
        }
        Err(err) => {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            let text = describe_error(err);
            if shared.errors_shown.fetch_add(1, Ordering::Relaxed) < ERRORS_SHOWN {
                eprintln!(
                    "loadgen: request at {:.3} s failed: {text}",
                    start_us as f64 / 1e6
                );
            }
            (0, None, Some(text))
        }
    };
    Record {
        start_us,
        latency_us,
        status,
        version,
        error,
        late_us,
        sent: true,
        bucket: shared.bucket_of(n),
    }
}

/// "timeout: ...", "connect: ...", "body: ..." with the whole cause chain on one line (the URL
/// is left out: it is the same for every request).
fn describe_error(err: reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connect"
    } else if err.is_body() || err.is_decode() {
        "body"
    } else {
        "request"
    };
    let err = err.without_url();
    let mut text = format!("{kind}: {err}");
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.replace(['\n', '\r'], " ")
}

fn write_csv(path: &PathBuf, records: &[Record]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "start_us,latency_us,status,model_version,error")?;
    for r in records {
        let version = r.version.as_deref().unwrap_or("");
        let error = r.error.as_deref().unwrap_or("");
        writeln!(
            out,
            "{},{},{},{},{}",
            r.start_us,
            r.latency_us,
            r.status,
            csv_field(version),
            csv_field(error)
        )?;
    }
    out.flush()
}

fn csv_field(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\"")).into()
    } else {
        text.into()
    }
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summarize(
    records: &[Record],
    buckets: &[Bucket],
    elapsed: f64,
    start_unix_us: u64,
    args: &Args,
    interrupted: bool,
) -> serde_json::Value {
    let mut latencies: Vec<u64> = records.iter().map(|r| r.latency_us).collect();
    latencies.sort_unstable();
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    for r in records {
        *statuses.entry(r.status.to_string()).or_default() += 1;
        if let Some(v) = &r.version {
            *versions.entry(v.to_string()).or_default() += 1;
        }
    }
    let ok = records
        .iter()
        .filter(|r| (200..300).contains(&r.status))
        .count();
    let connection_errors = records.iter().filter(|r| r.status == 0).count();
    let n = records.len();
    let mean = if n > 0 {
        latencies.iter().sum::<u64>() as f64 / n as f64
    } else {
        0.0
    };
    let mut summary = json!({
        "url": args.url,
        "mode": if args.rate.is_some() { "open" } else { "closed" },
        "concurrency": args.concurrency,
        "threads": args.threads,
        "start_unix_us": start_unix_us,
        "elapsed_s": elapsed,
        "interrupted": interrupted,
        "requests": n,
        "ok": ok,
        "non_2xx": n - ok - connection_errors,
        "connection_errors": connection_errors,
        "failed": n - ok,
        "requests_per_s": if elapsed > 0.0 { n as f64 / elapsed } else { 0.0 },
        "latency_us": {
            "p50": percentile(&latencies, 50.0),
            "p90": percentile(&latencies, 90.0),
            "p99": percentile(&latencies, 99.0),
            "p999": percentile(&latencies, 99.9),
            "max": latencies.last().copied().unwrap_or(0),
            "mean": mean.round() as u64,
        },
        "statuses": statuses,
        "model_versions": versions,
    });
    if let Some(rate) = args.rate {
        summary["rate"] = rate_summary(records, rate);
    }
    if !buckets.is_empty() {
        summary["buckets"] = bucket_summary(records, buckets, elapsed);
    }
    summary
}

/// Open loop: the target and achieved rates, and how many requests were sent late.
fn rate_summary(records: &[Record], rate: f64) -> serde_json::Value {
    let sent: Vec<&Record> = records.iter().filter(|r| r.sent).collect();
    // The sending window: from the start to the last send, plus one interval.
    let last_send_us = sent
        .iter()
        .map(|r| r.start_us + r.late_us)
        .max()
        .unwrap_or(0);
    let window = last_send_us as f64 / 1e6 + 1.0 / rate;
    json!({
        "target_per_s": rate,
        "achieved_per_s": if sent.is_empty() { 0.0 } else { sent.len() as f64 / window },
        "sent": sent.len(),
        "not_sent": records.len() - sent.len(),
        "late_over_1ms": sent.iter().filter(|r| r.late_us > 1000).count(),
        "late_max_us": sent.iter().map(|r| r.late_us).max().unwrap_or(0),
    })
}

/// With `--texts`: count, texts/s and latency percentiles per length bucket, by bucket name.
fn bucket_summary(records: &[Record], buckets: &[Bucket], elapsed: f64) -> serde_json::Value {
    let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); buckets.len()];
    let mut failed = vec![0u64; buckets.len()];
    for r in records {
        if let Some(bucket) = r.bucket {
            latencies[bucket as usize].push(r.latency_us);
            if !(200..300).contains(&r.status) {
                failed[bucket as usize] += 1;
            }
        }
    }
    let ms = |us: u64| us as f64 / 1e3;
    let mut out = serde_json::Map::new();
    for ((bucket, mut values), failed) in buckets.iter().zip(latencies).zip(failed) {
        values.sort_unstable();
        out.insert(
            bucket.name.clone(),
            json!({
                "count": values.len(),
                "failed": failed,
                "texts_per_s": if elapsed > 0.0 { values.len() as f64 / elapsed } else { 0.0 },
                "tokens_min": bucket.tokens_min,
                "tokens_max": bucket.tokens_max,
                "p50_ms": ms(percentile(&values, 50.0)),
                "p90_ms": ms(percentile(&values, 90.0)),
                "p99_ms": ms(percentile(&values, 99.0)),
                "max_ms": ms(values.last().copied().unwrap_or(0)),
            }),
        );
    }
    serde_json::Value::Object(out)
}

fn print_summary(s: &serde_json::Value) {
    let ms = |key: &str| s["latency_us"][key].as_u64().unwrap_or(0) as f64 / 1e3;
    println!(
        "loadgen: {} requests in {:.2} s = {:.1} req/s (concurrency {}, {} thread(s)){}",
        s["requests"],
        s["elapsed_s"].as_f64().unwrap_or(0.0),
        s["requests_per_s"].as_f64().unwrap_or(0.0),
        s["concurrency"],
        s["threads"],
        if s["interrupted"] == true {
            ", stopped by a signal"
        } else {
            ""
        }
    );
    println!(
        "  ok (2xx) {}   non-2xx {}   connection errors/timeouts {}",
        s["ok"], s["non_2xx"], s["connection_errors"]
    );
    let join = |map: &serde_json::Value| {
        map.as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k} x {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    println!("  status: {}", join(&s["statuses"]));
    println!(
        "  latency: p50 {:.2} ms   p90 {:.2} ms   p99 {:.2} ms   p99.9 {:.2} ms   max {:.2} ms   mean {:.2} ms",
        ms("p50"),
        ms("p90"),
        ms("p99"),
        ms("p999"),
        ms("max"),
        ms("mean")
    );
    if let Some(rate) = s.get("rate") {
        println!(
            "  open loop: target {:.1} req/s, achieved {:.1} req/s, {} sent more than 1 ms late (at most {:.2} ms), {} never sent",
            rate["target_per_s"].as_f64().unwrap_or(0.0),
            rate["achieved_per_s"].as_f64().unwrap_or(0.0),
            rate["late_over_1ms"],
            rate["late_max_us"].as_u64().unwrap_or(0) as f64 / 1e3,
            rate["not_sent"]
        );
    }
    if let Some(buckets) = s.get("buckets").and_then(|b| b.as_object()) {
        for (name, b) in buckets {
            println!(
                "  bucket {name} ({}-{} tokens): {} texts, {:.1}/s, p50 {:.2} ms, p99 {:.2} ms, {} failed",
                b["tokens_min"],
                b["tokens_max"],
                b["count"],
                b["texts_per_s"].as_f64().unwrap_or(0.0),
                b["p50_ms"].as_f64().unwrap_or(0.0),
                b["p99_ms"].as_f64().unwrap_or(0.0),
                b["failed"]
            );
        }
    }
    if s["model_versions"]
        .as_object()
        .is_some_and(|m| !m.is_empty())
    {
        println!("  X-Model-Version: {}", join(&s["model_versions"]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5parsecs").is_err());
    }

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    /// Parses `tsv` and compares the bodies, each body's bucket index and the buckets
    /// (name, shortest, longest).
    fn check_texts(tsv: &str, bodies: &[&str], bucket_of: &[u16], buckets: &[(&str, u64, u64)]) {
        let got = parse_texts(tsv).unwrap_or_else(|err| panic!("{tsv:?}: {err}"));
        let got_bodies: Vec<String> = got
            .bytes
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        let got_buckets: Vec<(&str, u64, u64)> = got
            .buckets
            .iter()
            .map(|b| (b.name.as_str(), b.tokens_min, b.tokens_max))
            .collect();
        assert_eq!(got_bodies, bodies, "{tsv:?}");
        assert_eq!(got.bucket_of, bucket_of, "{tsv:?}");
        assert_eq!(got_buckets, buckets, "{tsv:?}");
    }

    fn check_texts_error(tsv: &str, expected: &str) {
        match parse_texts(tsv) {
            Ok(_) => panic!("{tsv:?}: parsed, expected an error"),
            Err(err) => assert!(err.contains(expected), "{tsv:?}: {err}"),
        }
    }

    #[test]
    fn texts() {
        check_texts(
            "tokens\tbucket\ttext\n6\t<=16\tgood\n40\t<=64\ta \"long\" one\tstill text\n9\t<=16\tbad\n",
            &[
                r#"{"text":"good"}"#,
                r#"{"text":"a \"long\" one\tstill text"}"#,
                r#"{"text":"bad"}"#,
            ],
            &[0, 1, 0],
            &[("<=16", 6, 9), ("<=64", 40, 40)],
        );
        check_texts(
            "\n# comment\n3\tx\thi\r\n",
            &[r#"{"text":"hi"}"#],
            &[0],
            &[("x", 3, 3)],
        );
        check_texts_error(
            "3\tx\thi\nthree\tx\tho\n",
            "line 2: 'three' is not a token count",
        );
        check_texts_error("3\tx\n", "line 1: expected tokens<TAB>bucket<TAB>text");
        check_texts_error("tokens\tbucket\ttext\n", "no texts");
    }

    /// A record due at `start_us`, sent `late_us` after, answered 200 after `latency_us`.
    fn record(start_us: u64, late_us: u64, latency_us: u64, bucket: Option<u16>) -> Record {
        Record {
            start_us,
            latency_us,
            status: 200,
            version: None,
            error: None,
            late_us,
            sent: true,
            bucket,
        }
    }

    #[test]
    fn open_loop_summary() {
        // 100 req/s for 1 s: due every 10 ms; two were sent late, one by more than 1 ms.
        let mut records: Vec<Record> = (0..100).map(|i| record(i * 10_000, 0, 500, None)).collect();
        records[10].late_us = 800;
        records[20].late_us = 2_500;
        records.push(Record {
            sent: false,
            status: 0,
            ..record(999_000, 5_000, 5_000, None)
        });
        let rate = rate_summary(&records, 100.0);
        assert_eq!(rate["sent"], 100);
        assert_eq!(rate["not_sent"], 1);
        assert_eq!(rate["late_over_1ms"], 1);
        assert_eq!(rate["late_max_us"], 2_500);
        // The last send at 0.99 s plus one interval: exactly the target.
        assert!((rate["achieved_per_s"].as_f64().unwrap() - 100.0).abs() < 1e-9);
    }

    #[test]
    fn buckets_summary() {
        let buckets = [
            Bucket {
                name: "<=16".into(),
                tokens_min: 4,
                tokens_max: 16,
            },
            Bucket {
                name: ">64".into(),
                tokens_min: 70,
                tokens_max: 120,
            },
        ];
        let mut records: Vec<Record> = (1..=100).map(|i| record(0, 0, i * 1000, Some(0))).collect();
        records.push(Record {
            status: 503,
            ..record(0, 0, 7_000, Some(1))
        });
        let s = bucket_summary(&records, &buckets, 2.0);
        assert_eq!(s["<=16"]["count"], 100);
        assert_eq!(s["<=16"]["p50_ms"], 50.0);
        assert_eq!(s["<=16"]["p99_ms"], 99.0);
        assert_eq!(s["<=16"]["texts_per_s"], 50.0);
        assert_eq!(s[">64"]["count"], 1);
        assert_eq!(s[">64"]["failed"], 1);
        assert_eq!(s[">64"]["tokens_max"], 120);
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("1"), "1");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\", y"), "\"say \"\"x\"\", y\"");
    }
}
