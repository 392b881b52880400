//! A small HTTP/1.1 proxy in front of the real MLflow server whose behaviour a test switches at
//! run time: pass requests through, or answer some of them with an error status, a `429` with
//! `Retry-After`, a canned body, a delay, a dropped connection, a body cut off half-way, or a
//! body sent slowly.
//! Fault injection goes only through this proxy; the MLflow server itself is never modified.
//!
//! Each connection carries one request (`Connection: close` both ways), which keeps the proxy
//! simple and makes every request visible in [`FaultProxy::seen`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// What to do with a matching request.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer this instead of asking the server.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Wait, then pass the request through.
    Delay(Duration),
    /// Read the request, then close the connection without answering.
    Drop,
    /// Pass through, but send only the first half of the body (with the real `Content-Length`)
    /// and close.
    Truncate,
    /// Pass through, sending the body at this many bytes a second (a long download).
    Throttle(usize),
}

impl Fault {
    /// An MLflow-shaped JSON error: `{"error_code", "message"}`.
    pub fn error(status: u16, error_code: &str, message: &str) -> Fault {
        let body = serde_json::json!({ "error_code": error_code, "message": message });
        Fault::json(status, body)
    }

    /// A JSON answer.
    pub fn json(status: u16, body: serde_json::Value) -> Fault {
        Fault::Respond {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }

    /// `429 Too Many Requests` with `Retry-After: <retry_after>`.
    pub fn too_many_requests(retry_after: &str) -> Fault {
        let Fault::Respond {
            status,
            mut headers,
            body,
        } = Fault::error(429, "REQUEST_LIMIT_EXCEEDED", "slow down")
        else {
            unreachable!()
        };
        headers.push(("Retry-After".into(), retry_after.into()));
        Fault::Respond {
            status,
            headers,
            body,
        }
    }

    /// The HTML 404 an MLflow server sends for an endpoint it does not have (as MLflow 2.x
    /// does for `logged-models`).
    pub fn missing_endpoint() -> Fault {
        Fault::Respond {
            status: 404,
            headers: vec![("Content-Type".into(), "text/html; charset=utf-8".into())],
            body:
                "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>"
                    .into(),
        }
    }
}

/// One request the proxy received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Path and query, as sent.
    pub target: String,
    /// The `Authorization` header, to check that credentials were sent.
    pub authorization: Option<String>,
    /// The W3C `traceparent` header, to check that trace context was sent.
    pub traceparent: Option<String>,
}

struct Rule {
    /// Applies to requests whose target contains this.
    target_contains: String,
    fault: Fault,
    /// How many more requests it applies to; `None` = every one.
    remaining: Option<usize>,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    seen: Vec<Seen>,
}

/// A running proxy; it stops with the test's runtime.
#[derive(Clone)]
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` on an ephemeral loopback port.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, upstream, shared.clone()));
            }
        });
        FaultProxy { addr, state }
    }

    /// `http://127.0.0.1:<port>`, to use as `MLFLOW_TRACKING_URI`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Applies `fault` to the next `times` requests whose path or query contains `target`.
    pub fn inject(&self, target: &str, fault: Fault, times: usize) {
        self.push(target, fault, Some(times));
    }

    /// Applies `fault` to every request whose path or query contains `target`.
    pub fn inject_always(&self, target: &str, fault: Fault) {
        self.push(target, fault, None);
    }

    /// Back to passing everything through.
    pub fn clear(&self) {
        self.state.lock().unwrap().rules.clear();
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// How many requests had `target` in their path or query.
    pub fn count(&self, target: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.target.contains(target))
            .count()
    }

    fn push(&self, target: &str, fault: Fault, remaining: Option<usize>) {
        let rule = Rule {
            target_contains: target.to_string(),
            fault,
            remaining,
        };
        self.state.lock().unwrap().rules.push(rule);
    }
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, state: Arc<Mutex<State>>) {
    let Some(request) = read_request(&mut client).await else {
        return;
    };
    let fault = {
        let mut state = state.lock().unwrap();
        let rule = state.rules.iter_mut().find(|rule| {
            request.target.contains(&rule.target_contains) && rule.remaining != Some(0)
        });
        let fault = rule.map(|rule| {
            if let Some(remaining) = rule.remaining.as_mut() {
                *remaining -= 1;
            }
            rule.fault.clone()
        });
        state.seen.push(Seen {
            target: request.target.clone(),
            authorization: request.header("authorization"),
            traceparent: request.header("traceparent"),
        });
        fault
    };
    match fault {
        Some(Fault::Respond {
            status,
            headers,
            body,
        }) => {
            let mut head = format!(
                "HTTP/1.1 {status} Injected\r\nContent-Length: {}\r\n",
                body.len()
            );
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("Connection: close\r\n\r\n");
            let _ = client.write_all(head.as_bytes()).await;
            let _ = client.write_all(body.as_bytes()).await;
        }
        Some(Fault::Drop) => {}
        Some(Fault::Delay(wait)) => {
            tokio::time::sleep(wait).await;
            forward(&mut client, upstream, &request, Relay::Whole).await;
        }
        Some(Fault::Truncate) => forward(&mut client, upstream, &request, Relay::Half).await,
        Some(Fault::Throttle(rate)) => {
            forward(&mut client, upstream, &request, Relay::Throttled(rate)).await
        }
        None => forward(&mut client, upstream, &request, Relay::Whole).await,
    }
    let _ = client.shutdown().await;
}

struct Request {
    method: String,
    target: String,
    /// Header lines without `Connection`, in order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

async fn read_request(client: &mut TcpStream) -> Option<Request> {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            break end;
        }
        let mut chunk = [0u8; 8192];
        let read = client.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let target = request_line.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .filter(|(n, _)| {
            !n.eq_ignore_ascii_case("connection") && !n.eq_ignore_ascii_case("keep-alive")
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 8192];
        let read = client.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

/// How an answer's body is relayed.
#[derive(Clone, Copy)]
enum Relay {
    Whole,
    /// Only its first half.
    Half,
    /// At this many bytes a second.
    Throttled(usize),
}

/// Sends `request` upstream and relays the answer as `relay` says.
async fn forward(client: &mut TcpStream, upstream: SocketAddr, request: &Request, relay: Relay) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        let _ = client
            .write_all(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await;
        return;
    };
    let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.target);
    for (name, value) in &request.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    if server.write_all(head.as_bytes()).await.is_err()
        || server.write_all(&request.body).await.is_err()
    {
        return;
    }
    let mut answer = Vec::new();
    if server.read_to_end(&mut answer).await.is_err() {
        return;
    }
    let Some(head_end) = find(&answer, b"\r\n\r\n") else {
        let _ = client.write_all(&answer).await;
        return;
    };
    let head = String::from_utf8_lossy(&answer[..head_end]).into_owned();
    let raw_body = &answer[head_end + 4..];
    let chunked = head.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    });
    let body = if chunked {
        dechunk(raw_body)
    } else {
        raw_body.to_vec()
    };
    // Re-frame with a Content-Length (de-chunked) and Connection: close.
    let mut out = String::new();
    for line in head.split("\r\n") {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("transfer-encoding:")
            || lower.starts_with("content-length:")
            || lower.starts_with("connection:")
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let _ = client.write_all(out.as_bytes()).await;
    match relay {
        Relay::Whole => {
            let _ = client.write_all(&body).await;
        }
        Relay::Half => {
            let _ = client.write_all(&body[..body.len() / 2]).await;
        }
        Relay::Throttled(rate) => {
            // A tenth of a second's worth at a time.
            let step = (rate / 10).max(1);
            for chunk in body.chunks(step) {
                if client.write_all(chunk).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let _ = client.flush().await;
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Decodes a chunked transfer-encoded body (trailers ignored).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(line_end) = find(raw, b"\r\n") {
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        raw = &raw[line_end + 2..];
        if size == 0 || raw.len() < size {
            break;
        }
        body.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or(&[]);
    }
    body
}
