//! HTTPS and API keys, in the test process (`support::inprocess`), against real clients: `curl`
//! and Python's `ssl` module (`support/tls_client.py`, from the project's virtualenv), with
//! certificates `openssl` makes for each test. A handshake and a prediction over HTTPS; a
//! certificate rotated in place (a Kubernetes-style symbolic-link swap) served to new
//! connections while an established one keeps its own; a bad pair at reload keeping the old
//! one with the reason in `/health` and the metrics; a bad pair at startup; API keys accepted
//! and refused (401 with `WWW-Authenticate`), reloaded, and the probes left open.

use std::path::{Path, PathBuf};
use std::process::Command;

use hotserve::reload::Trigger;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::curl::{curl, Curled};
use crate::support::inprocess::{Server, Start};
use crate::support::{eventually, fixture, health, helper, metric, venv};

/// A certificate authority made by openssl: what the clients trust.
struct Ca {
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs (scripts/setup.sh test installs it)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A new certificate authority (P-256) in `dir`, as `<name>.crt` and `<name>.key`.
fn make_ca(dir: &Path, name: &str) -> Ca {
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN=hotserve test CA {name}"),
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    Ca { cert, key }
}

/// A server certificate for `127.0.0.1` and `localhost` signed by `ca`, and its key (P-256),
/// in `dir` as `<name>.crt` and `<name>.key`.
fn make_certificate(dir: &Path, name: &str, ca: &Ca) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let (csr, ext) = (
        dir.join(format!("{name}.csr")),
        dir.join(format!("{name}.ext")),
    );
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        &format!("/CN=hotserve test {name}"),
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        csr.to_str().unwrap(),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        csr.to_str().unwrap(),
        "-days",
        "2",
        "-CA",
        ca.cert.to_str().unwrap(),
        "-CAkey",
        ca.key.to_str().unwrap(),
        "-set_serial",
        &fastrand::u64(1..u64::MAX / 2).to_string(),
        "-extfile",
        ext.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    (cert, key)
}

/// SHA-256 of the first certificate in a PEM file, hex.
fn fingerprint(cert: &Path) -> String {
    let der = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    hex(&Sha256::digest(&der))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A directory laid out like a Kubernetes secret volume (and rotated the way the kubelet
/// does): `tls.crt` and `tls.key` are links to `..data/tls.crt` and `..data/tls.key`, and
/// `..data` is a link to a directory of the current generation, replaced by a rename.
struct SecretVolume {
    dir: PathBuf,
    generation: usize,
}

impl SecretVolume {
    fn new(dir: PathBuf, cert: &Path, key: &Path) -> SecretVolume {
        std::fs::create_dir_all(&dir).unwrap();
        let mut volume = SecretVolume { dir, generation: 0 };
        volume.install(cert, key);
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), volume.dir.join(name)).unwrap();
        }
        volume
    }

    /// Puts a new pair in place in one rename, as the kubelet does.
    fn install(&mut self, cert: &Path, key: &Path) {
        self.generation += 1;
        let generation = format!("..gen_{}", self.generation);
        std::fs::create_dir(self.dir.join(&generation)).unwrap();
        std::fs::copy(cert, self.dir.join(&generation).join("tls.crt")).unwrap();
        std::fs::copy(key, self.dir.join(&generation).join("tls.key")).unwrap();
        let link = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&generation, &link).unwrap();
        std::fs::rename(&link, self.dir.join("..data")).unwrap();
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("tls.key")
    }
}

/// An HTTPS server for the fixture model with `cert` and `key`, ready.
async fn https_server(cert: &Path, key: &Path, settings: &[(&str, &str)]) -> Server {
    let mut start = Start::model(fixture("sentiment"))
        .set("tls_cert_file", cert.to_str().unwrap())
        .set("tls_key_file", key.to_str().unwrap());
    for (key, value) in settings {
        start = start.set(key, value);
    }
    start.ready().await
}

/// What `support/tls_client.py` printed: one request with Python's `ssl`, verified against
/// `cafile`; a POST when `body` is given.
async fn python(url: String, cafile: &Path, body: Option<Value>) -> Value {
    let python = venv().join("bin/python");
    let script = helper("tls_client.py");
    let mut command = Command::new(python);
    command.arg(script).arg(&url).arg(cafile);
    if let Some(body) = body {
        command.arg(body.to_string());
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("the virtualenv's python runs (scripts/setup.sh)");
    assert!(
        output.status.success(),
        "tls_client.py {url}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("tls_client.py prints one JSON line")
}

/// `/health`'s `tls` or `api_keys` entry, read over a connection that trusts `cafile` (or
/// plain HTTP when `cafile` is `None`).
async fn health_entry(server: &Server, cafile: Option<&Path>, entry: &str) -> Value {
    let body = match cafile {
        Some(cafile) => {
            let answer = python(server.url("/health"), cafile, None).await;
            serde_json::from_str(answer["body"].as_str().unwrap()).unwrap()
        }
        None => health(server).await,
    };
    body[entry].clone()
}

#[tokio::test]
async fn predicts_over_https_with_curl_and_python() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca(dir.path(), "ca");
    let other = make_ca(dir.path(), "other");
    let (cert, key) = make_certificate(dir.path(), "a", &ca);
    let server = https_server(&cert, &key, &[]).await;

    let cacert = ca.cert.to_str().unwrap();
    let answer = curl(
        &[
            "--cacert",
            cacert,
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"text": "I love this"}"#,
        ],
        server.url("/predict"),
    )
    .await;
    assert_eq!((answer.exit, answer.status), (0, 200), "{}", answer.body);
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["label"], "POSITIVE");

    let answer = python(
        server.url("/predict/batch"),
        &ca.cert,
        Some(json!({"texts": ["I love this", "I hate this"]})),
    )
    .await;
    assert_eq!(answer["status"], 200, "{answer}");
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["predictions"][1]["label"], "NEGATIVE");
    assert_eq!(answer["certificate_sha256"], fingerprint(&cert));
    assert_eq!(answer["tls_version"], "TLSv1.3");
    // A client that offers only HTTP/1.1 in ALPN gets it (h2 is http2.rs).
    assert_eq!(answer["alpn"], "http/1.1");

    let tls = health_entry(&server, Some(&ca.cert), "tls").await;
    assert_eq!(tls["certificate_sha256"], fingerprint(&cert), "{tls}");
    assert_eq!(tls["last_error"], Value::Null, "{tls}");

    // A client that trusts another certificate refuses the connection (curl's 60: peer
    // certificate cannot be authenticated); plain HTTP on the HTTPS port gets a 400 that says
    // so, in plain HTTP, as nginx answers it.
    let refused = curl(
        &["--cacert", other.cert.to_str().unwrap()],
        server.url("/health"),
    )
    .await;
    assert_eq!(refused.exit, 60, "{}", refused.body);
    let plain = curl(&[], format!("http://{}/health", server.addr)).await;
    assert_eq!(
        plain.status, 400,
        "plain HTTP on the HTTPS port: {}",
        plain.body
    );
    assert!(
        plain.body.contains("this port speaks HTTPS (TLS)"),
        "{}",
        plain.body
    );
}

#[tokio::test]
async fn a_certificate_rotated_in_place_serves_new_connections_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca(dir.path(), "ca");
    let (cert_a, key_a) = make_certificate(dir.path(), "a", &ca);
    let (cert_b, key_b) = make_certificate(dir.path(), "b", &ca);
    let mut volume = SecretVolume::new(dir.path().join("secret"), &cert_a, &key_a);
    let server = https_server(
        &volume.cert(),
        &volume.key(),
        // The kept-alive connection below must outlive the rotation.
        &[
            ("credentials_check_interval", "100ms"),
            ("header_read_timeout", "120s"),
        ],
    )
    .await;

    // A client with a connection kept alive across the rotation.
    let kept = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&ca.cert).unwrap()).unwrap(),
        )
        .tls_info(true)
        .build()
        .unwrap();
    let peer_of = |response: &reqwest::Response| {
        let info = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .unwrap();
        hex(&Sha256::digest(info.peer_certificate().unwrap()))
    };
    let before = kept.get(server.url("/health")).send().await.unwrap();
    assert_eq!(peer_of(&before), fingerprint(&cert_a));
    before.bytes().await.unwrap();

    volume.install(&cert_b, &key_b);
    let answer = eventually("new connections get the new certificate", async || {
        let answer = python(server.url("/health"), &ca.cert, None).await;
        (answer["certificate_sha256"] == fingerprint(&cert_b)).then_some(answer)
    })
    .await;
    assert_eq!(answer["status"], 200, "{answer}");
    let predicted = python(
        server.url("/predict"),
        &ca.cert,
        Some(json!({"text": "I love this"})),
    )
    .await;
    assert_eq!(predicted["status"], 200, "{predicted}");

    // The connection made before the rotation still works, with the certificate it was made
    // with.
    let after = kept.get(server.url("/health")).send().await.unwrap();
    assert_eq!(after.status(), 200);
    assert_eq!(
        peer_of(&after),
        fingerprint(&cert_a),
        "the kept-alive connection"
    );

    let metrics = server.url("/metrics");
    assert_eq!(
        metric_over_tls(
            &metrics,
            &ca.cert,
            "hotserve_credential_reloads_total{file=\"tls\",result=\"loaded\"}"
        )
        .await,
        Some(1.0)
    );
}

/// A series of the `/metrics` page, read with Python's `ssl` trusting `cafile`.
async fn metric_over_tls(url: &str, cafile: &Path, series: &str) -> Option<f64> {
    let answer = python(url.to_string(), cafile, None).await;
    answer["body"]
        .as_str()?
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn a_bad_pair_at_reload_keeps_the_old_one_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca(dir.path(), "ca");
    let (cert_a, key_a) = make_certificate(dir.path(), "a", &ca);
    let (cert_b, key_b) = make_certificate(dir.path(), "b", &ca);
    // Files rewritten in place, as certbot's hooks and hand edits do.
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::copy(&cert_a, &cert).unwrap();
    std::fs::copy(&key_a, &key).unwrap();
    // Checked on SIGHUP only (the trigger a signal sends), so each step is one check.
    let server = https_server(&cert, &key, &[("credentials_check_interval", "1h")]).await;
    let metrics = server.url("/metrics");
    let failing = "hotserve_credential_reload_failing{file=\"tls\"}";

    // Each case: what is written, what /health's last_error then starts with.
    let cases: [(&Path, &[u8], String); 3] = [
        // The key of another certificate.
        (
            &key,
            &std::fs::read(&key_b).unwrap(),
            format!("cannot use {} with {}: ", key.display(), cert.display()),
        ),
        // A certificate block that is not base64.
        (
            &cert,
            b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
            format!("{} is not valid PEM: ", cert.display()),
        ),
        // No certificate at all.
        (
            &cert,
            b"hello\n",
            format!("{} holds no PEM certificate", cert.display()),
        ),
    ];
    for (file, content, starts_with) in cases {
        std::fs::write(file, content).unwrap();
        let tls = eventually("the bad pair is reported", async || {
            server.triggers.request(Trigger::Signal);
            let tls = health_entry(&server, Some(&ca.cert), "tls").await;
            tls["last_error"].as_str().map(|_| tls.clone())
        })
        .await;
        let why = tls["last_error"].as_str().unwrap();
        assert!(why.starts_with(&starts_with), "{why}");
        // The old pair is still served, and still works.
        assert_eq!(tls["certificate_sha256"], fingerprint(&cert_a), "{tls}");
        let predicted = python(
            server.url("/predict"),
            &ca.cert,
            Some(json!({"text": "I love this"})),
        )
        .await;
        assert_eq!(predicted["status"], 200, "{predicted}");
        assert_eq!(predicted["certificate_sha256"], fingerprint(&cert_a));
        assert_eq!(
            metric_over_tls(&metrics, &ca.cert, failing).await,
            Some(1.0)
        );
        // Cleared for the next case (the failure is recorded, the next write is new).
        std::fs::copy(&cert_a, &cert).unwrap();
        std::fs::copy(&key_a, &key).unwrap();
        eventually("the good pair is back", async || {
            server.triggers.request(Trigger::Signal);
            let tls = health_entry(&server, Some(&ca.cert), "tls").await;
            tls["last_error"].is_null().then_some(())
        })
        .await;
    }

    // A good new pair loads.
    std::fs::copy(&cert_b, &cert).unwrap();
    std::fs::copy(&key_b, &key).unwrap();
    eventually("the new pair is served", async || {
        server.triggers.request(Trigger::Signal);
        let answer = python(server.url("/health"), &ca.cert, None).await;
        (answer["certificate_sha256"] == fingerprint(&cert_b)).then_some(())
    })
    .await;
    assert_eq!(
        metric_over_tls(&metrics, &ca.cert, failing).await,
        Some(0.0)
    );
    let failed = "hotserve_credential_reloads_total{file=\"tls\",result=\"failed\"}";
    assert!(metric_over_tls(&metrics, &ca.cert, failed).await >= Some(3.0));
}

#[tokio::test]
async fn a_pair_that_cannot_be_used_at_startup_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca(dir.path(), "ca");
    let (cert_a, _) = make_certificate(dir.path(), "a", &ca);
    let (_, key_b) = make_certificate(dir.path(), "b", &ca);
    let result = Start::model(fixture("sentiment"))
        .set("tls_cert_file", cert_a.to_str().unwrap())
        .set("tls_key_file", key_b.to_str().unwrap())
        .start()
        .stop()
        .await;
    let err = result.expect_err("a key that is not the certificate's");
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string().starts_with(&format!(
            "cannot use {} with {}",
            key_b.display(),
            cert_a.display()
        )),
        "{err}"
    );

    let missing = Start::model(fixture("sentiment"))
        .set("api_keys_file", dir.path().join("nope").to_str().unwrap())
        .start()
        .stop()
        .await
        .expect_err("a keys file that does not exist");
    assert_eq!(missing.exit_code(), 2);
    assert!(
        missing
            .to_string()
            .starts_with("cannot read api_keys_file "),
        "{missing}"
    );

    let half = Start::model(fixture("sentiment"))
        .set("tls_cert_file", cert_a.to_str().unwrap())
        .config(dir.path())
        .expect_err("a certificate without its key");
    assert_eq!(
        half.problems,
        ["tls_cert_file is set but tls_key_file is not; set both to serve HTTPS, or neither"]
    );
}

/// Answers `GET`/`POST path` with `key` (none: no `Authorization`), over HTTPS with curl.
async fn call(
    server: &Server,
    cafile: &Path,
    method: &str,
    path: &str,
    key: Option<&str>,
) -> Curled {
    let authorization = key.map(|key| format!("Authorization: Bearer {key}"));
    // curl's default over TLS, HTTP/2: a refusal is answered once the (small) body has been
    // read, so curl 7.88 shows the 401 rather than error 92 (an answer before the body ends
    // the stream with RST_STREAM(NO_ERROR), curl/curl#22984).
    let mut args = vec!["--cacert", cafile.to_str().unwrap(), "-X", method];
    if let Some(header) = &authorization {
        args.extend(["-H", header.as_str()]);
    }
    if method == "POST" && path.ends_with("predict") {
        args.extend([
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"text": "I love this"}"#,
        ]);
    }
    curl(&args, server.url(path)).await
}

#[tokio::test]
async fn api_keys_guard_the_model_routes_and_leave_probes_open() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca(dir.path(), "ca");
    let (cert, key) = make_certificate(dir.path(), "a", &ca);
    let keys = dir.path().join("api-keys");
    std::fs::write(&keys, "# team a\nkey-one\n\n  key-two  \n").unwrap();
    let server = https_server(
        &cert,
        &key,
        &[
            ("api_keys_file", keys.to_str().unwrap()),
            ("admin_token", "admin-secret"),
            ("credentials_check_interval", "100ms"),
        ],
    )
    .await;

    // (method, path, key, status); 401s carry the challenge and an MLflow-style error.
    #[rustfmt::skip]
    let cases: &[(&str, &str, Option<&str>, u16)] = &[
        ("POST", "/predict", None, 401),
        ("POST", "/predict", Some("key-three"), 401),
        ("POST", "/predict", Some("key-one"), 200),
        ("POST", "/predict", Some("key-two"), 200),
        ("POST", "/models/sentiment/predict", None, 401),
        ("POST", "/models/sentiment/predict", Some("key-two"), 200),
        ("POST", "/models/nope/predict", None, 401),
        ("GET", "/v1/model", None, 401),
        ("GET", "/v1/model", Some("key-one"), 200),
        ("GET", "/nope", None, 401),
        ("GET", "/nope", Some("key-one"), 404),
        ("GET", "/health", None, 200),
        ("GET", "/health/live", None, 200),
        ("GET", "/health/ready", None, 200),
        ("GET", "/ping", None, 200),
        ("GET", "/models/sentiment/ready", None, 200),
        ("GET", "/version", None, 200),
        ("GET", "/metrics", None, 200),
        // The admin route keeps its own token, with or without an API key.
        ("POST", "/admin/reload", Some("admin-secret"), 202),
        ("POST", "/admin/reload", Some("key-one"), 403),
    ];
    for (method, path, key, status) in cases {
        let answer = call(&server, &ca.cert, method, path, *key).await;
        assert_eq!(
            answer.status, *status,
            "{method} {path} with {key:?}: {}",
            answer.body
        );
        if *status == 401 {
            let challenge = match key {
                None => "www-authenticate: bearer realm=\"hotserve\"\n",
                Some(_) => "www-authenticate: bearer realm=\"hotserve\", error=\"invalid_token\"\n",
            };
            assert!(
                answer.headers.contains(challenge),
                "{method} {path}: {}",
                answer.headers
            );
            let body: Value = serde_json::from_str(&answer.body).unwrap();
            assert_eq!(body["error_code"], "UNAUTHENTICATED", "{method} {path}");
        }
    }
    let health = health_entry(&server, Some(&ca.cert), "api_keys").await;
    assert_eq!(health["keys"], 2, "{health}");
    assert_eq!(health["last_error"], Value::Null, "{health}");
    let body = health.to_string();
    assert!(!body.contains("key-one"), "no key in /health: {body}");
}

#[tokio::test]
async fn the_keys_file_is_reloaded_and_a_bad_one_keeps_the_keys_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("api-keys");
    std::fs::write(&keys, "key-one\n").unwrap();
    let server = Start::model(fixture("sentiment"))
        .set("api_keys_file", keys.to_str().unwrap())
        .set("credentials_check_interval", "100ms")
        .ready()
        .await;
    let status = async |key: &str| {
        reqwest::Client::new()
            .get(server.url("/v1/model"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(status("key-one").await, 200);
    assert_eq!(status("key-new").await, 401);

    // Replaced by a rename, as editors and configuration tools do.
    let next = dir.path().join("api-keys.new");
    std::fs::write(&next, "# rotated\nkey-new\n").unwrap();
    std::fs::rename(&next, &keys).unwrap();
    eventually("the new key is accepted", async || {
        (status("key-new").await == 200).then_some(())
    })
    .await;
    assert_eq!(status("key-one").await, 401, "the removed key");

    // A file that does not parse, then no file at all: the keys in use stay, /health says why.
    for (content, starts_with) in [
        (
            Some("key one\n"),
            format!("line 1 of {} has a space", keys.display()),
        ),
        (
            Some("# nobody\n"),
            format!("{} holds no API key", keys.display()),
        ),
        (
            None,
            format!("cannot read api_keys_file {}: ", keys.display()),
        ),
    ] {
        match content {
            Some(content) => std::fs::write(&keys, content).unwrap(),
            None => std::fs::remove_file(&keys).unwrap(),
        }
        let entry = eventually("the bad keys file is reported", async || {
            let entry = health_entry(&server, None, "api_keys").await;
            let why = entry["last_error"].as_str()?;
            why.starts_with(&starts_with).then(|| entry.clone())
        })
        .await;
        assert_eq!(entry["keys"], 1, "{entry}");
        assert_eq!(status("key-new").await, 200, "the key in use still works");
    }
    let failing = metric(
        &server.url("/metrics"),
        "hotserve_credential_reload_failing{file=\"api_keys\"}",
    )
    .await;
    assert_eq!(failing, Some(1.0));
}

#[tokio::test]
async fn auth_health_and_auth_metrics_close_the_probes_too() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("api-keys");
    std::fs::write(&keys, "key-one\n").unwrap();
    let server = Start::model(fixture("sentiment"))
        .set("api_keys_file", keys.to_str().unwrap())
        .set("auth_health", "true")
        .start();
    let get = async |path: &str, key: Option<&str>| {
        let mut request = reqwest::Client::new().get(server.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send().await.unwrap().status().as_u16()
    };
    eventually("ready, with the key", async || {
        (get("/health/ready", Some("key-one")).await == 200).then_some(())
    })
    .await;
    for (path, key, expected) in [
        ("/health/ready", None, 401),
        ("/health", None, 401),
        ("/ping", None, 401),
        ("/health", Some("key-one"), 200),
        // auth_metrics is still false.
        ("/metrics", None, 200),
    ] {
        assert_eq!(get(path, key).await, expected, "{path} with {key:?}");
    }
}

/// The gRPC listener serves TLS with the same certificate (ALPN `h2`): `tritonclient.grpc`
/// with `ssl=True`, verifying against the test CA, gets a prediction; a plaintext client does
/// not.
#[tokio::test]
async fn the_grpc_listener_serves_the_same_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca(dir.path(), "ca");
    let (cert, key) = make_certificate(dir.path(), "a", &ca);
    let server = Start::model(fixture("sentiment"))
        .set("tls_cert_file", cert.to_str().unwrap())
        .set("tls_key_file", key.to_str().unwrap())
        .grpc()
        .ready()
        .await;
    let addr = server.grpc_url().trim_start_matches("http://").to_string();
    let script = r#"
import sys
import numpy as np
import tritonclient.grpc as grpcclient
addr, cafile, model, secure = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "tls"
client = grpcclient.InferenceServerClient(addr, ssl=secure, root_certificates=cafile if secure else None)
x = grpcclient.InferInput("text", [1], "BYTES")
x.set_data_from_numpy(np.array([b"I love this"], dtype=object))
try:
    print(client.infer(model, [x], client_timeout=10).as_numpy("label")[0].decode())
except Exception as err:
    print("failed:", type(err).__name__)
"#;
    // A local model is named after its directory.
    let model = "sentiment".to_string();
    let run = |secure: &'static str| {
        let mut command = Command::new(venv().join("bin/python"));
        command
            .arg("-c")
            .arg(script)
            .arg(&addr)
            .arg(&ca.cert)
            .arg(&model)
            .arg(secure);
        async move {
            let output = tokio::task::spawn_blocking(move || command.output())
                .await
                .unwrap()
                .expect("the virtualenv's python runs (scripts/setup.sh)");
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout).trim().to_string()
        }
    };
    assert_eq!(run("tls").await, "POSITIVE");
    assert!(run("plain").await.starts_with("failed:"));
}
