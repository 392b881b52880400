//! `loadgen`: a closed-loop HTTP load generator, small enough to read and cheap enough to run
//! on the same machine as the server it measures.
//!
//! `--concurrency N` tasks each send a request, wait for the whole response, record it and send
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
    about = "Closed-loop HTTP load generator: N connections, each sending its next request when the previous one has answered"
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
    /// The request body, sent with every request
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// A file of request bodies, one per line (empty lines skipped), cycled through in order
    #[arg(long, value_name = "FILE")]
    body_file: Option<PathBuf>,
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
    start_us: u64,
    latency_us: u64,
    /// 0 when no complete response arrived.
    status: u16,
    version: Option<Arc<str>>,
    error: Option<String>,
}

/// What every task shares.
struct Shared {
    client: reqwest::Client,
    method: reqwest::Method,
    url: reqwest::Url,
    headers: reqwest::header::HeaderMap,
    bodies: Vec<Bytes>,
    t0: Instant,
    deadline: Instant,
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
    let summary = summarize(&records, elapsed, start_unix_us, &args, interrupted);
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

fn load_bodies(args: &Args, method: &reqwest::Method) -> Result<Vec<Bytes>, String> {
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
        return Ok(bodies);
    }
    match &args.body {
        Some(body) => Ok(vec![Bytes::from(body.clone())]),
        None if *method == reqwest::Method::GET || *method == reqwest::Method::HEAD => {
            Ok(vec![Bytes::new()])
        }
        None => Err("give --body or --body-file (or --method GET)".into()),
    }
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
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|_| tokio::spawn(worker(shared.clone())))
        .collect();

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

    let mut records = Vec::new();
    for task in tasks {
        match task.await {
            Ok(mut part) => records.append(&mut part),
            Err(err) => eprintln!("loadgen: a worker task failed: {err}"),
        }
    }
    signals.abort();
    if let Some(progress) = progress {
        progress.abort();
    }
    (records, interrupted.load(Ordering::SeqCst))
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
        let body = shared.bodies[(n % shared.bodies.len() as u64) as usize].clone();
        let mut request = shared
            .client
            .request(shared.method.clone(), shared.url.clone())
            .headers(shared.headers.clone());
        if !body.is_empty() {
            request = request.body(body);
        }
        let outcome = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let version = response
                .headers()
                .get("x-model-version")
                .and_then(|v| v.to_str().ok())
                .map(|v| match &last_version {
                    Some(last) if &**last == v => last.clone(),
                    _ => Arc::<str>::from(v),
                });
            response.bytes().await?;
            Ok::<_, reqwest::Error>((status, version))
        }
        .await;
        let latency_us = start.elapsed().as_micros() as u64;
        let start_us = start.duration_since(shared.t0).as_micros() as u64;
        shared.completed.fetch_add(1, Ordering::Relaxed);
        let record = match outcome {
            Ok((status, version)) => {
                if !(200..300).contains(&status) {
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                }
                last_version.clone_from(&version);
                Record {
                    start_us,
                    latency_us,
                    status,
                    version,
                    error: None,
                }
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
                records.push(Record {
                    start_us,
                    latency_us,
                    status: 0,
                    version: None,
                    error: Some(text),
                });
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        records.push(record);
    }
    records
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
    json!({
        "url": args.url,
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
            "max": latencies.last().copied().unwrap_or(0),
            "mean": mean.round() as u64,
        },
        "statuses": statuses,
        "model_versions": versions,
    })
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
        "  latency: p50 {:.2} ms   p90 {:.2} ms   p99 {:.2} ms   max {:.2} ms   mean {:.2} ms",
        ms("p50"),
        ms("p90"),
        ms("p99"),
        ms("max"),
        ms("mean")
    );
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

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("1"), "1");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\", y"), "\"say \"\"x\"\", y\"");
    }
}
