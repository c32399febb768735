//! `balie bench ingest` and `balie bench query`: Balie measured end to end on this machine,
//! next to the physical limit (the fastest batched insert into the same kind of database).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use balie_core::{Author, ChannelKind, ConversationId, ConversationStatus, Priority};
use balie_server::{App, Config, auth};
use balie_store::{BulkConversation, BulkMessage, SqliteStore, Store};
use clap::Args;
use serde_json::{Value, json};

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// Inbound messages to send (about 5% of them are retried duplicates).
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Send at this many messages per second instead of as fast as possible (latency under
    /// a steady background load).
    #[arg(long)]
    rate: Option<f64>,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// Messages to store before measuring.
    #[arg(long, default_value_t = 1_000_000)]
    stored: usize,
    /// Repetitions of each query.
    #[arg(long, default_value_t = 200)]
    rounds: usize,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
}

/// A small, seeded generator: benchmark runs are repeatable without a dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n.max(1) as u64)).unwrap_or(0)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const OPENINGS_NL: &[&str] = &[
    "Hoi, ik wacht al een week op mijn bestelling",
    "Waarom is mijn pakket nog steeds niet bezorgd?",
    "Ik heb twee keer betaald voor dezelfde order",
    "De bezorger heeft het pakket bij de buren gelaten maar die zijn niet thuis",
    "Kunnen jullie mijn adres nog wijzigen?",
    "Mijn abonnement is opgezegd maar ik word nog steeds afgeschreven",
    "Het product is kapot aangekomen, wat nu?",
    "Top service, bedankt voor het snelle antwoord!",
];
const OPENINGS_EN: &[&str] = &[
    "Hi, my order still hasn't arrived after ten days",
    "Why was I charged twice for the same order?",
    "The app keeps crashing when I try to pay",
    "Can I change the delivery address of my parcel?",
    "I cancelled my subscription but you still bill me",
    "The item arrived broken, what should I do?",
    "Thanks for the quick help yesterday!",
    "Is the store open on Sunday?",
];
const DETAILS: &[&str] = &[
    "Ordernummer",
    "Order number",
    "Bestelling",
    "Tracking code",
    "Factuur",
    "Invoice",
];
const FOLLOW_UPS: &[&str] = &[
    "Nog steeds niets gehoord, graag een reactie.",
    "Any update on this?",
    "Dit is echt belachelijk!",
    "Please call me back, this is urgent.",
    "Laat maar, het pakket is net gekomen.",
    "Ok, thanks.",
];

/// A realistic customer message: Dutch or English, an opening or a follow-up, an order number.
fn customer_text(rng: &mut SplitMix, follow_up: bool) -> String {
    let line = if follow_up {
        rng.pick(FOLLOW_UPS)
    } else if rng.below(2) == 0 {
        rng.pick(OPENINGS_NL)
    } else {
        rng.pick(OPENINGS_EN)
    };
    let detail = rng.pick(DETAILS);
    format!("{line} {detail} {}.", 100_000 + rng.below(900_000))
}

/// One inbound message of the ingest workload.
struct Planned {
    /// Index of the distinct message this request carries (duplicates repeat one).
    message: usize,
    body: Vec<u8>,
}

/// N requests: customers writing openings and follow-ups (threaded by `in_reply_to`), with
/// about 5% of the requests retrying an earlier message.
fn plan_ingest(n: usize, rng: &mut SplitMix) -> (Vec<Planned>, usize) {
    let customers = (n / 3).max(1);
    let mut last_of: HashMap<usize, usize> = HashMap::new();
    let mut bodies: Vec<Vec<u8>> = Vec::with_capacity(n);
    let mut plan = Vec::with_capacity(n);
    for _ in 0..n {
        if !bodies.is_empty() && rng.below(100) < 5 {
            let again = rng.below(bodies.len());
            plan.push(Planned {
                message: again,
                body: bodies[again].clone(),
            });
            continue;
        }
        let i = bodies.len();
        let customer = rng.below(customers);
        let previous = last_of.insert(customer, i);
        let text = customer_text(rng, previous.is_some());
        let body = json!({
            "channel": "bench",
            "external_id": format!("m{i}"),
            "author": { "id": format!("klant-{customer}"), "name": format!("Klant {customer}") },
            "text": text,
            "in_reply_to": previous.map(|p| format!("m{p}")),
        })
        .to_string()
        .into_bytes();
        bodies.push(body.clone());
        plan.push(Planned { message: i, body });
    }
    let distinct = bodies.len();
    (plan, distinct)
}

/// Milliseconds at percentile `p` (0-100) of `samples`, sorted in place.
fn percentile_ms(samples: &mut [Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let rank = (p / 100.0 * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)].as_secs_f64() * 1000.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Resident memory of this process, from /proc (0 where there is no /proc).
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| round2(kb / 1024.0))
}

/// A running server on a fresh temporary data dir, with an API token.
struct BenchServer {
    base: String,
    token: String,
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start_server() -> anyhow::Result<BenchServer> {
    let dir = tempfile::tempdir().context("creating a temporary data dir")?;
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        ..Config::default()
    };
    let app = App::build(config).await?;
    let addr = app.local_addr()?;
    let token = auth::new_token("balie")?;
    app.state()
        .store
        .create_api_token("bench", &auth::token_hash(&token))
        .await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));
    Ok(BenchServer {
        base: format!("http://{addr}"),
        token,
        stop,
        handle,
        _dir: dir,
    })
}

/// Reads the live stream and records when each message (`m<index>`) first appears.
async fn watch_stream(
    mut resp: reqwest::Response,
    seen: Arc<Mutex<Vec<Option<Instant>>>>,
    remaining: Arc<AtomicUsize>,
    done: Arc<tokio::sync::Notify>,
) -> anyhow::Result<()> {
    let mut pending = Vec::<u8>::new();
    while let Some(chunk) = resp.chunk().await? {
        let now = Instant::now();
        pending.extend_from_slice(&chunk);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            let Some(data) = line.strip_prefix(b"data:") else {
                continue;
            };
            let Ok(event) = serde_json::from_slice::<Value>(data) else {
                continue;
            };
            let Some(index) = event
                .pointer("/message/external_id")
                .and_then(Value::as_str)
                .and_then(|id| id.strip_prefix('m'))
                .and_then(|i| i.parse::<usize>().ok())
            else {
                continue;
            };
            let mut seen = seen
                .lock()
                .map_err(|_| anyhow::anyhow!("stream state poisoned"))?;
            if let Some(slot @ None) = seen.get_mut(index) {
                *slot = Some(now);
                if remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
                    done.notify_one();
                }
            }
        }
    }
    Ok(())
}

/// The physical limit: `rows` message rows (the workload's texts) written into a fresh
/// database of the same kind with multi-row INSERTs of prepared statements in big
/// transactions. Returns rows per second.
async fn raw_insert_rate(texts: &[String]) -> anyhow::Result<f64> {
    const ROWS_PER_INSERT: usize = 500;
    const ROWS_PER_TX: usize = 50_000;
    let dir = tempfile::tempdir().context("creating a temporary dir")?;
    let store = SqliteStore::open(&dir.path().join("raw.db")).await?;
    let brand = store.ensure_brand("raw").await?;
    let channel = store
        .create_channel(brand, ChannelKind::Api, "raw", "{}")
        .await?;
    // One customer and conversation for the rows to belong to (foreign keys are on).
    store
        .bulk_load(
            channel.id,
            &[BulkConversation {
                author: Author {
                    platform_id: "raw".into(),
                    handle: None,
                    name: None,
                },
                status: ConversationStatus::Open,
                priority: Priority::Normal,
                waiting_since: None,
                reply_due: None,
                messages: vec![BulkMessage {
                    external_id: "raw-0".into(),
                    text: "raw".into(),
                    created_at: 0,
                }],
            }],
        )
        .await?;
    let conv: i64 = sqlx::query_scalar("SELECT id FROM conversations LIMIT 1")
        .fetch_one(store.writer_pool())
        .await?;
    let pool = store.writer_pool();
    let start = Instant::now();
    for (t, tx_rows) in texts.chunks(ROWS_PER_TX).enumerate() {
        let mut tx = pool.begin().await?;
        for (c, rows) in tx_rows.chunks(ROWS_PER_INSERT).enumerate() {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO messages (conversation_id, channel_id, direction, external_id, \
                 text, created_at, received_at, delivery) ",
            );
            let base = t * ROWS_PER_TX + c * ROWS_PER_INSERT;
            q.push_values(rows.iter().enumerate(), |mut b, (i, text)| {
                b.push_bind(conv)
                    .push_bind(channel.id.0)
                    .push_bind("in")
                    .push_bind(format!("r{}", base + i))
                    .push_bind(text.as_str())
                    .push_bind(1_700_000_000_000i64)
                    .push_bind(1_700_000_000_000i64)
                    .push_bind("received");
            });
            q.build().persistent(true).execute(&mut *tx).await?;
        }
        tx.commit().await?;
    }
    let rate = texts.len() as f64 / start.elapsed().as_secs_f64();
    store.close().await;
    Ok(rate)
}

pub async fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    if args.messages == 0 || args.concurrency == 0 {
        bail!("--messages and --concurrency must be at least 1");
    }
    let mut rng = SplitMix(0x0BA1_1E00);
    let (plan, distinct) = plan_ingest(args.messages, &mut rng);
    let texts: Vec<String> = plan
        .iter()
        .filter_map(|p| {
            serde_json::from_slice::<Value>(&p.body)
                .ok()
                .and_then(|v| v.get("text").and_then(Value::as_str).map(str::to_string))
        })
        .collect();

    let server = start_server().await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .context("building HTTP client")?;
    let stream = http
        .get(format!("{}/events", server.base))
        .bearer_auth(&server.token)
        .send()
        .await?
        .error_for_status()
        .context("subscribing to the live stream")?;
    let seen = Arc::new(Mutex::new(vec![None; distinct]));
    let remaining = Arc::new(AtomicUsize::new(distinct));
    let all_seen = Arc::new(tokio::sync::Notify::new());
    let watcher = tokio::spawn(watch_stream(
        stream,
        seen.clone(),
        remaining.clone(),
        all_seen.clone(),
    ));

    let plan = Arc::new(plan);
    let sent_at = Arc::new(Mutex::new(vec![None::<Instant>; distinct]));
    let next = Arc::new(AtomicUsize::new(0));
    let url = format!("{}/api/v1/messages", server.base);
    let start = Instant::now();
    let interval = args
        .rate
        .filter(|r| r.is_finite() && *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let mut senders = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let (plan, next, sent_at, http, url, token) = (
            plan.clone(),
            next.clone(),
            sent_at.clone(),
            http.clone(),
            url.clone(),
            server.token.clone(),
        );
        senders.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = plan.get(i) else {
                    return Ok::<_, anyhow::Error>(acks);
                };
                if let Some(interval) = interval {
                    let due = start + interval.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
                    tokio::time::sleep_until(due.into()).await;
                }
                let t0 = Instant::now();
                if let Ok(mut s) = sent_at.lock()
                    && s[p.message].is_none()
                {
                    s[p.message] = Some(t0);
                }
                let resp = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(p.body.clone())
                    .send()
                    .await?;
                let status = resp.status();
                let _ = resp.bytes().await?;
                if !status.is_success() {
                    bail!("message {i} got {status}");
                }
                acks.push(t0.elapsed());
            }
        }));
    }
    let mut acks = Vec::with_capacity(args.messages);
    for s in senders {
        acks.extend(s.await??);
    }
    let acked_in = start.elapsed();
    if tokio::time::timeout(Duration::from_secs(300), all_seen.notified())
        .await
        .is_err()
        && remaining.load(Ordering::SeqCst) > 0
    {
        bail!(
            "{} messages never appeared on the live stream",
            remaining.load(Ordering::SeqCst)
        );
    }
    let seconds = start.elapsed().as_secs_f64();
    watcher.abort();
    let _ = server.stop.send(());
    let _ = server.handle.await;

    let mut visible: Vec<Duration> = {
        let seen = seen
            .lock()
            .map_err(|_| anyhow::anyhow!("stream state poisoned"))?;
        let sent = sent_at
            .lock()
            .map_err(|_| anyhow::anyhow!("sender state poisoned"))?;
        seen.iter()
            .zip(sent.iter())
            .filter_map(|(seen, sent)| {
                Some(seen.as_ref()?.saturating_duration_since(*sent.as_ref()?))
            })
            .collect()
    };
    let raw = raw_insert_rate(&texts).await?;
    let rate = args.messages as f64 / seconds;
    let report = json!({
        "messages": args.messages,
        "distinct_messages": distinct,
        "concurrency": args.concurrency,
        "rate_limit_per_s": args.rate,
        "seconds": round2(seconds),
        "messages_per_s": rate.round(),
        "ack_messages_per_s": (args.messages as f64 / acked_in.as_secs_f64()).round(),
        "ack_p50_ms": round2(percentile_ms(&mut acks, 50.0)),
        "ack_p99_ms": round2(percentile_ms(&mut acks, 99.0)),
        "visible_p50_ms": round2(percentile_ms(&mut visible, 50.0)),
        "visible_p99_ms": round2(percentile_ms(&mut visible, 99.0)),
        "raw_insert_messages_per_s": raw.round(),
        "ratio_to_raw": (rate / raw * 1000.0).round() / 1000.0,
        "rss_mb": rss_mb(),
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "Ingest: {} messages ({} distinct) over HTTP from {} clients in {:.2} s: {:.0} messages/s \
             ({:.0}/s acknowledged).\n  acknowledged  p50 {:.1} ms  p99 {:.1} ms\n  \
             visible       p50 {:.1} ms  p99 {:.1} ms (request sent -> on the live stream)\n  \
             raw insert    {:.0} rows/s (batched INSERTs, same database kind): ratio {:.3}",
            args.messages,
            distinct,
            args.concurrency,
            seconds,
            rate,
            report["ack_messages_per_s"].as_f64().unwrap_or(0.0),
            report["ack_p50_ms"].as_f64().unwrap_or(0.0),
            report["ack_p99_ms"].as_f64().unwrap_or(0.0),
            report["visible_p50_ms"].as_f64().unwrap_or(0.0),
            report["visible_p99_ms"].as_f64().unwrap_or(0.0),
            raw,
            report["ratio_to_raw"].as_f64().unwrap_or(0.0),
        );
    }
    Ok(())
}

/// Conversations of one to six messages; a fifth are open (most waiting), the rest closed.
fn plan_history(
    rng: &mut SplitMix,
    next_message: &mut usize,
    next_customer: &mut usize,
    messages: usize,
) -> Vec<BulkConversation> {
    const T0: i64 = 1_700_000_000_000;
    let mut out = Vec::new();
    let mut left = messages;
    while left > 0 {
        let len = (1 + rng.below(6)).min(left);
        left -= len;
        let customer = *next_customer;
        *next_customer += 1;
        let start = T0 + i64::try_from(*next_message).unwrap_or(0) * 1000;
        let msgs: Vec<BulkMessage> = (0..len)
            .map(|k| {
                let i = *next_message;
                *next_message += 1;
                BulkMessage {
                    external_id: format!("h{i}"),
                    text: customer_text(rng, k > 0),
                    created_at: start + i64::try_from(k).unwrap_or(0) * 60_000,
                }
            })
            .collect();
        let open = rng.below(5) == 0;
        let waiting = open && rng.below(4) != 0;
        let priority = match rng.below(10) {
            0 => Priority::Urgent,
            1 | 2 => Priority::High,
            3..=7 => Priority::Normal,
            _ => Priority::Low,
        };
        let last = msgs.last().map_or(start, |m| m.created_at);
        out.push(BulkConversation {
            author: Author {
                platform_id: format!("klant-{customer}"),
                handle: None,
                name: Some(format!("Klant {customer}")),
            },
            status: if open {
                ConversationStatus::Open
            } else {
                ConversationStatus::Closed
            },
            priority,
            waiting_since: waiting.then_some(last),
            reply_due: waiting.then_some(last + 3_600_000),
            messages: msgs,
        });
    }
    out
}

/// Times `rounds` calls of `f`, one sample each.
async fn time_rounds<F, Fut>(rounds: usize, mut f: F) -> anyhow::Result<Vec<Duration>>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut samples = Vec::with_capacity(rounds);
    for r in 0..rounds {
        let t = Instant::now();
        f(r).await?;
        samples.push(t.elapsed());
    }
    Ok(samples)
}

const SEARCHES: &[&str] = &[
    "pakket",
    "bezorgd",
    "betaald order",
    "subscription",
    "kapot",
    "crashing app",
    "factuur",
    "adres wijzigen",
    "refund",
    "belachelijk",
];

pub async fn query(args: QueryArgs) -> anyhow::Result<()> {
    if args.stored == 0 || args.rounds == 0 {
        bail!("--stored and --rounds must be at least 1");
    }
    let dir = tempfile::tempdir().context("creating a temporary data dir")?;
    let store = SqliteStore::open(&dir.path().join("balie.db")).await?;
    let brand = store.ensure_brand("Balie").await?;
    let channel = store
        .create_channel(brand, ChannelKind::Api, "bench", "{}")
        .await?;
    let mut rng = SplitMix(0x0BA1_1E01);
    let (mut next_message, mut next_customer) = (0usize, 0usize);
    let load_start = Instant::now();
    while next_message < args.stored {
        let chunk = (args.stored - next_message).min(50_000);
        let conversations = plan_history(&mut rng, &mut next_message, &mut next_customer, chunk);
        store.bulk_load(channel.id, &conversations).await?;
    }
    let load_seconds = load_start.elapsed().as_secs_f64();
    sqlx::query("ANALYZE").execute(store.writer_pool()).await?;

    let rounds = args.rounds;
    let s = &store;
    let mut inbox = time_rounds(rounds, |_| async move {
        let rows = s.inbox(ConversationStatus::Open, 50).await?;
        anyhow::ensure!(!rows.is_empty(), "the inbox is empty");
        Ok(())
    })
    .await?;
    let conversations = i64::try_from(next_customer).unwrap_or(i64::MAX).max(1);
    let mut pick = SplitMix(7);
    let ids: Vec<i64> = (0..rounds)
        .map(|_| 1 + i64::try_from(pick.next() % conversations as u64).unwrap_or(0))
        .collect();
    let mut view = time_rounds(rounds, |r| {
        let store = &store;
        let id = ids[r];
        async move {
            store
                .conversation(ConversationId(id))
                .await?
                .with_context(|| format!("conversation {id}"))?;
            Ok(())
        }
    })
    .await?;
    let mut search = time_rounds(rounds, |r| {
        let store = &store;
        async move {
            store.search(SEARCHES[r % SEARCHES.len()], 50).await?;
            Ok(())
        }
    })
    .await?;
    let rss = rss_mb();
    // The same inbox query without migration 0003's index: what the index is worth.
    sqlx::query("DROP INDEX IF EXISTS conversations_inbox_order")
        .execute(store.writer_pool())
        .await?;
    let mut inbox_unindexed = time_rounds(rounds.min(20), |_| async move {
        s.inbox(ConversationStatus::Open, 50).await?;
        Ok(())
    })
    .await?;
    store.close().await;

    let report = json!({
        "stored": args.stored,
        "conversations": next_customer,
        "load_seconds": round2(load_seconds),
        "load_messages_per_s": (args.stored as f64 / load_seconds).round(),
        "inbox_p50_ms": round2(percentile_ms(&mut inbox, 50.0)),
        "inbox_p99_ms": round2(percentile_ms(&mut inbox, 99.0)),
        "inbox_without_order_index_p50_ms": round2(percentile_ms(&mut inbox_unindexed, 50.0)),
        "inbox_without_order_index_p99_ms": round2(percentile_ms(&mut inbox_unindexed, 99.0)),
        "conversation_p50_ms": round2(percentile_ms(&mut view, 50.0)),
        "conversation_p99_ms": round2(percentile_ms(&mut view, 99.0)),
        "search_p50_ms": round2(percentile_ms(&mut search, 50.0)),
        "search_p99_ms": round2(percentile_ms(&mut search, 99.0)),
        "rss_mb": rss,
    });
    if args.json {
        println!("{report}");
    } else {
        let f = |k: &str| report[k].as_f64().unwrap_or(0.0);
        println!(
            "Query: {} messages in {} conversations, loaded in {:.1} s ({:.0}/s).\n  \
             inbox (50 open)    p50 {:.2} ms  p99 {:.2} ms   (without the order index: p50 {:.2} ms  p99 {:.2} ms)\n  \
             conversation view  p50 {:.2} ms  p99 {:.2} ms\n  \
             full-text search   p50 {:.2} ms  p99 {:.2} ms\n  \
             resident memory    {:.1} MB",
            args.stored,
            next_customer,
            load_seconds,
            f("load_messages_per_s"),
            f("inbox_p50_ms"),
            f("inbox_p99_ms"),
            f("inbox_without_order_index_p50_ms"),
            f("inbox_without_order_index_p99_ms"),
            f("conversation_p50_ms"),
            f("conversation_p99_ms"),
            f("search_p50_ms"),
            f("search_p99_ms"),
            rss,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ingest_plan_threads_customers_and_repeats_a_few_messages() {
        let (plan, distinct) = plan_ingest(2000, &mut SplitMix(1));
        assert_eq!(plan.len(), 2000);
        let dups = 2000 - distinct;
        assert!(
            (40..=160).contains(&dups),
            "about 5% duplicates, got {dups}"
        );
        let threaded = plan
            .iter()
            .filter(|p| {
                serde_json::from_slice::<Value>(&p.body)
                    .ok()
                    .is_some_and(|v| v["in_reply_to"].is_string())
            })
            .count();
        assert!(
            threaded > 500,
            "follow-ups answer earlier messages: {threaded}"
        );
    }

    #[test]
    fn percentiles_pick_the_ranked_sample() {
        let mut s: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&mut s, 50.0), 51.0);
        assert_eq!(percentile_ms(&mut s, 99.0), 99.0);
        assert_eq!(percentile_ms(&mut [], 99.0), 0.0);
    }

    #[test]
    fn history_has_the_asked_number_of_messages() {
        let (mut m, mut c) = (0, 0);
        let convs = plan_history(&mut SplitMix(3), &mut m, &mut c, 1000);
        assert_eq!(convs.iter().map(|c| c.messages.len()).sum::<usize>(), 1000);
        assert_eq!(convs.len(), c);
        assert!(convs.iter().any(|c| c.status == ConversationStatus::Open));
    }
}
