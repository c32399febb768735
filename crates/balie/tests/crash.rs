//! The crash-and-retry proof: the real `balie serve` is killed with SIGKILL at random moments
//! and restarted while senders deliver messages with platform-style retries and an agent
//! queues replies to a flaky fake webhook. Afterwards every acknowledged message exists
//! exactly once, nothing unacknowledged is invented, and every queued reply reached the
//! webhook (repeats only under the same idempotency key).
//!
//! Reduced size by default; `BALIE_CRASH_FULL=1` runs the full 10,000 messages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use balie_store::SqliteStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

const PASSWORD: &str = "crash test password";
const EMAIL: &str = "agent@crash.test";

/// A seeded generator, so a failing run can be repeated.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Size {
    messages: usize,
    senders: usize,
    kills: usize,
    replies: usize,
}

fn size() -> Size {
    if std::env::var("BALIE_CRASH_FULL").is_ok_and(|v| v == "1") {
        Size {
            messages: 10_000,
            senders: 16,
            kills: 8,
            replies: 60,
        }
    } else {
        Size {
            messages: 1_000,
            senders: 8,
            kills: 4,
            replies: 20,
        }
    }
}

fn balie(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_balie"));
    cmd.arg("--data-dir")
        .arg(data_dir)
        .env_remove("BALIE_CONFIG")
        .env("BALIE_LOG", "warn")
        .kill_on_drop(true);
    cmd
}

/// What the fake webhook saw: deliveries per idempotency key.
#[derive(Default)]
struct Received {
    by_key: HashMap<String, usize>,
    deliveries: usize,
}

/// A flaky receiver for replies: answers 503 now and then, sometimes takes a reply and
/// drops the connection without answering (the response is lost, as in a timeout), sometimes
/// answers slowly; otherwise records the reply and answers 200. It dedupes on
/// `Idempotency-Key` the way a careful platform does.
async fn fake_webhook(listener: TcpListener, received: Arc<Mutex<Received>>) {
    let rng = Arc::new(Mutex::new(SplitMix(0xFA_CE)));
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        let (received, rng) = (received.clone(), rng.clone());
        tokio::spawn(async move {
            let _ = answer_one(socket, &received, &rng).await;
        });
    }
}

async fn answer_one(
    mut socket: TcpStream,
    received: &Mutex<Received>,
    rng: &Mutex<SplitMix>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let key = header("idempotency-key").unwrap_or_default();
    let roll = rng.lock().unwrap().below(100);
    if roll < 15 {
        return socket
            .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
    }
    {
        let mut r = received.lock().unwrap();
        *r.by_key.entry(key).or_default() += 1;
        r.deliveries += 1;
    }
    if roll < 25 {
        // Taken, but the answer never comes: Balie must retry with the same key.
        return Ok(());
    }
    if roll < 30 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    socket
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
        .await
}

/// The server process and how to restart it on the same port and data dir.
struct Server {
    data_dir: PathBuf,
    port: u16,
    outbound: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Server {
    async fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = balie(&self.data_dir)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .env("BALIE_OUTBOUND_URL", &self.outbound)
            .env("BALIE_OUTBOUND_SECRET", "crash-test-outbound-secret")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
        let http = reqwest::Client::new();
        for _ in 0..200 {
            let up = http
                .get(format!("http://127.0.0.1:{}/healthz", self.port))
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not come up; see {}", self.log.display());
    }

    /// SIGKILL: no graceful shutdown, no flushing, nothing finishes.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }
}

/// Posts message `i` until it gets a 2xx, the way Meta and X retry a webhook whose answer
/// did not arrive.
async fn deliver(http: &reqwest::Client, base: &str, token: &str, i: usize) {
    let body = serde_json::json!({
        "channel": "crash",
        "external_id": format!("c{i}"),
        "author": { "id": format!("k{}", i % 97), "name": format!("Klant {}", i % 97) },
        "text": format!("Bericht {i}: waar blijft mijn bestelling?"),
        "in_reply_to": (i >= 97).then(|| format!("c{}", i - 97)),
    })
    .to_string();
    loop {
        let sent = http
            .post(format!("{base}/api/v1/messages"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.clone())
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if let Ok(resp) = sent
            && resp.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// Logs the agent in (retrying while the server is down); returns the session cookie.
async fn login(http: &reqwest::Client, base: &str) -> String {
    loop {
        let resp = http
            .post(format!("{base}/login"))
            .form(&[("email", EMAIL), ("password", PASSWORD)])
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if let Ok(resp) = resp
            && resp.status().is_redirection()
            && let Some(cookie) = resp.headers().get("set-cookie")
        {
            let cookie = cookie.to_str().unwrap();
            return cookie.split(';').next().unwrap().to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Queues `count` replies, each under its own key, to open conversations; a reply whose
/// answer did not arrive is sent again with the same key. Returns the keys queued.
async fn queue_replies(base: String, token: String, count: usize) -> BTreeSet<String> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = login(&http, &base).await;
    let mut keys = BTreeSet::new();
    let mut n = 0;
    while keys.len() < count {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let listed = http
            .get(format!("{base}/api/v1/conversations?status=open&limit=5"))
            .bearer_auth(&token)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        let Ok(listed) = listed else { continue };
        let Ok(conversations) = listed.json::<serde_json::Value>().await else {
            continue;
        };
        let Some(id) = conversations
            .as_array()
            .and_then(|a| a.get(n % a.len().max(1)))
            .and_then(|c| c["id"].as_i64())
        else {
            continue;
        };
        n += 1;
        let key = format!("crash-reply-{n}");
        loop {
            let resp = http
                .post(format!("{base}/conversations/{id}/reply"))
                .header("cookie", &cookie)
                // As the agent's browser says it: a form on Balie's own page.
                .header("sec-fetch-site", "same-origin")
                .form(&[
                    ("text", format!("Antwoord {n}: we kijken ernaar.")),
                    ("key", key.clone()),
                ])
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            if resp.is_ok_and(|r| r.status().is_redirection()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        keys.insert(key);
    }
    keys
}

async fn wait_for_backlogs_to_drain(base: &str) {
    let http = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(resp) = http.get(format!("{base}/metrics")).send().await
            && let Ok(text) = resp.text().await
            && text.lines().any(|l| l == "balie_journal_backlog 0")
            && text.lines().any(|l| l == "balie_outbox_backlog 0")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the journal or outbox never drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_acknowledged_is_lost_or_doubled_and_every_reply_arrives_through_crashes() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let size = size();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");

    let out = balie(&data_dir)
        .args(["token", "create", "--name", "crash"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .to_string();
    let mut add = balie(&data_dir)
        .args([
            "user",
            "add",
            "--email",
            EMAIL,
            "--role",
            "agent",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = add.stdin.take().unwrap();
    stdin
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    assert!(add.wait().await.unwrap().success());

    let webhook = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let outbound = format!("http://{}/replies", webhook.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Received::default()));
    tokio::spawn(fake_webhook(webhook, received.clone()));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Server {
        data_dir: data_dir.clone(),
        port,
        outbound,
        log: dir.path().join("server.log"),
        child: None,
    };
    server.start().await;
    let base = format!("http://127.0.0.1:{port}");

    // Senders share the messages; each retries its current one until it is acknowledged.
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let http = reqwest::Client::new();
    let mut senders = Vec::new();
    for _ in 0..size.senders {
        let (next, acked, http, base, token) = (
            next.clone(),
            acked.clone(),
            http.clone(),
            base.clone(),
            token.clone(),
        );
        let total = size.messages;
        senders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return;
                }
                deliver(&http, &base, &token, i).await;
                acked.lock().unwrap().insert(format!("c{i}"));
            }
        }));
    }
    let replies = tokio::spawn(queue_replies(base.clone(), token.clone(), size.replies));

    // Kill and restart at seeded random points while messages are still arriving: each
    // kill waits for a random share of the messages to be acknowledged, then a random
    // moment more, so the kills land mid-stream however fast the machine is.
    let mut rng = SplitMix(0x000C_4A54);
    let total = u64::try_from(size.messages).unwrap();
    let mut points: Vec<u64> = (0..size.kills)
        .map(|_| total / 20 + rng.below(total * 17 / 20))
        .collect();
    points.sort_unstable();
    let mut kills = 0;
    let mut mid_stream = 0;
    for point in points {
        while (acked.lock().unwrap().len() as u64) < point {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(30))).await;
        if (acked.lock().unwrap().len() as u64) < total {
            mid_stream += 1;
        }
        server.kill().await;
        kills += 1;
        tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
        server.start().await;
    }
    assert!(mid_stream >= 1, "at least one kill interrupted the senders");
    for s in senders {
        s.await.unwrap();
    }
    let queued = replies.await.unwrap();
    wait_for_backlogs_to_drain(&base).await;
    server.kill().await;

    // Every acknowledged message exists exactly once; nothing else was invented.
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), size.messages, "every message was acknowledged");
    let store = SqliteStore::open(&data_dir.join("balie.db")).await.unwrap();
    let stored: Vec<(String, i64)> = sqlx::query_as(
        "SELECT external_id, COUNT(*) FROM messages WHERE direction = 'in' GROUP BY external_id",
    )
    .fetch_all(store.writer_pool())
    .await
    .unwrap();
    let doubled: Vec<_> = stored.iter().filter(|(_, n)| *n != 1).collect();
    assert!(doubled.is_empty(), "stored more than once: {doubled:?}");
    let stored: BTreeSet<String> = stored.into_iter().map(|(id, _)| id).collect();
    let invented: Vec<_> = stored.difference(&acked).collect();
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(invented.is_empty(), "stored but never sent: {invented:?}");
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    let journal: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM journal")
        .fetch_one(store.writer_pool())
        .await
        .unwrap();
    assert_eq!(
        journal,
        i64::try_from(size.messages).unwrap(),
        "one journal entry per message"
    );
    store.close().await;

    // Every queued reply reached the webhook; repeats came only under the same key.
    let received = received.lock().unwrap();
    let got: BTreeSet<String> = received
        .by_key
        .keys()
        .map(|k| k.rsplit(':').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        received.by_key.len(),
        queued.len(),
        "one idempotency key per queued reply: {:?}",
        received.by_key.keys().collect::<Vec<_>>()
    );
    assert_eq!(got, queued, "the keys that arrived are the replies queued");
    eprintln!(
        "crash test: {} messages, {kills} kills ({mid_stream} mid-stream), {} replies in {} deliveries",
        size.messages,
        queued.len(),
        received.deliveries
    );
}
