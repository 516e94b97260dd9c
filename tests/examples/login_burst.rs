//! A sign-up and login burst against the real `app-server` process on SQLite, with the
//! default argon2 costs (19 MiB, 2 passes): `members` riders each sign up and log in, from
//! `concurrency` clients at once, honouring `Retry-After` on a 503. Meanwhile one client
//! probes `/health/live` and a logged-in rider reads `/members/me` every 20 ms. Prints the
//! server's resident memory (from `/proc`) before and after and at its peak, how many
//! requests were refused with 503, and the probes' latencies against the same probes on
//! the idle server (the baseline of this run).
//!
//! ```sh
//! cargo build --release -p app-server --example login_burst -p tests
//! target/release/examples/login_burst [members] [concurrency]   # 1000 64
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";

/// The server process; killed when dropped.
struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start() -> Self {
        let exe = std::env::current_exe().expect("this example's path");
        let bin = exe
            .parent()
            .and_then(|examples| examples.parent())
            .map(|dir| dir.join("app-server"))
            .expect("target directory");
        assert!(
            bin.exists(),
            "{} is missing: cargo build --release -p app-server",
            bin.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("temporary directory");
        let child = Command::new(bin)
            .arg("serve")
            .env(
                "APP__DATABASE__URL",
                format!("sqlite://{}/burst.db", dir.path().display()),
            )
            .env("APP__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("APP__SERVER__ADMIN_LISTEN", "127.0.0.1:0")
            // Every client here is 127.0.0.1, and one that is refused with 503 retries: the
            // per-address limits would stop this one machine long before the hashing does.
            .env("APP__AUTH__SIGN_UP_PER_IP_PER_MINUTE", "1000000")
            .env("APP__AUTH__LOGIN_PER_IP_PER_MINUTE", "1000000")
            .env("APP__AUTH__LOGIN_PER_IP_AND_EMAIL_PER_MINUTE", "1000000")
            .env("APP__AUTH__API_PER_MEMBER_PER_MINUTE", "1000000")
            .env("APP__LOG__LEVEL", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start app-server");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// `(VmRSS, VmHWM)` in MiB.
    fn memory(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("/proc status");
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// POSTs `body`, retrying after `Retry-After` while the server answers 503. Returns the
/// JSON answer and how many 503s it took.
async fn post_until_taken(client: &reqwest::Client, url: &str, body: &Value) -> (Value, u64) {
    let mut refused = 0;
    loop {
        let response = client.post(url).json(body).send().await.expect("the server answers");
        if response.status() == 503 {
            refused += 1;
            let wait = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .expect("a 503 says when to retry");
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        let status = response.status();
        let body: Value = response.json().await.expect("json");
        assert!(status.is_success(), "{url}: {status} {body}");
        return (body, refused);
    }
}

async fn sign_up_and_log_in(client: &reqwest::Client, base: &str, n: usize) -> (String, u64) {
    let email = format!("burst-{n}-{}@example.com", uuid::Uuid::now_v7().simple());
    let sign_up = json!({"email": email, "password": PASSWORD, "name": "Burst", "phone": "01012345678"});
    let (_, a) = post_until_taken(client, &format!("{base}/api/v1/members"), &sign_up).await;
    let login = json!({"email": email, "password": PASSWORD});
    let (tokens, b) = post_until_taken(client, &format!("{base}/api/v1/auth/login"), &login).await;
    (tokens["access_token"].as_str().expect("token").to_owned(), a + b)
}

/// Latency percentiles in milliseconds: (p50, p99, max).
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    (at(0.5), at(0.99), at(1.0))
}

/// GETs `url` every 20 ms until `stop`, returning each request's latency and the failures.
async fn probe(
    client: reqwest::Client,
    url: String,
    token: Option<String>,
    stop: Arc<AtomicBool>,
) -> (Vec<Duration>, u64) {
    let (mut samples, mut failed) = (Vec::new(), 0);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let mut request = client.get(&url).timeout(Duration::from_secs(5));
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Ok(r) if r.status().is_success() => samples.push(started.elapsed()),
            _ => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (samples, failed)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let members: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let server = Server::start();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency + 2)
        .build()
        .expect("client");
    let ready = Instant::now() + Duration::from_secs(30);
    while client
        .get(format!("{}/health/ready", server.base))
        .send()
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        assert!(Instant::now() < ready, "the server did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (watcher, _) = sign_up_and_log_in(&client, &server.base, usize::MAX).await;
    let (rss_idle, _) = server.memory();

    // The baseline: the same probes on the idle server, for 2 s.
    let stop = Arc::new(AtomicBool::new(false));
    let idle_live = tokio::spawn(probe(
        client.clone(),
        format!("{}/health/live", server.base),
        None,
        stop.clone(),
    ));
    let idle_me = tokio::spawn(probe(
        client.clone(),
        format!("{}/api/v1/members/me", server.base),
        Some(watcher.clone()),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let (idle_live, _) = idle_live.await.expect("probe");
    let (idle_me, _) = idle_me.await.expect("probe");

    let stop = Arc::new(AtomicBool::new(false));
    let live = tokio::spawn(probe(
        client.clone(),
        format!("{}/health/live", server.base),
        None,
        stop.clone(),
    ));
    let me = tokio::spawn(probe(
        client.clone(),
        format!("{}/api/v1/members/me", server.base),
        Some(watcher),
        stop.clone(),
    ));
    let refused = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    futures::stream::iter(0..members)
        .map(|n| {
            let (client, base, refused) = (client.clone(), server.base.clone(), refused.clone());
            async move {
                let (_, r) = sign_up_and_log_in(&client, &base, n).await;
                refused.fetch_add(r, Ordering::Relaxed);
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (live, live_failed) = live.await.expect("probe");
    let (me, me_failed) = me.await.expect("probe");
    let (rss_after, rss_peak) = server.memory();

    println!(
        "{members} sign-ups + logins from {concurrency} clients, default argon2 costs (19 MiB, t=2), release app-server on SQLite"
    );
    println!(
        "  took {:.1} s ({:.0} sign-ups+logins/s); refused with 503 and retried: {}",
        elapsed.as_secs_f64(),
        members as f64 / elapsed.as_secs_f64(),
        refused.load(Ordering::Relaxed)
    );
    println!("  server RSS: idle {rss_idle:.0} MiB, after {rss_after:.0} MiB, peak {rss_peak:.0} MiB");
    for (what, idle, busy, failed) in [
        ("/health/live", idle_live, live, live_failed),
        ("/members/me (logged in)", idle_me, me, me_failed),
    ] {
        let ((i50, i99, _), (b50, b99, bmax)) = (percentiles(idle), percentiles(busy));
        println!(
            "  {what:<24} idle p50 {i50:.1} ms p99 {i99:.1} ms | burst p50 {b50:.1} ms p99 {b99:.1} ms max {bmax:.1} ms ({:.1}x idle p99) | failed {failed}",
            b99 / i99.max(0.001)
        );
    }
}
