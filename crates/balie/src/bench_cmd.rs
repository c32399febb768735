//! `balie bench ingest` and `balie bench query`: Balie measured end to end on this machine,
//! next to the physical limit (the fastest batched insert into the same kind of database).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use balie_core::{Author, ChannelKind, ConversationId, ConversationStatus, Priority};
use balie_server::{App, Config, auth};
use balie_store::{
    BulkConversation, BulkLoad, BulkMessage, Channels, Conversations, Search, SqliteStore,
};
use clap::Args;
use serde_json::{Value, json};

use crate::platform_webhooks::{
    ChannelTokens, Delivery, META_WEBHOOK, PAGE_ID, PHONE_NUMBER_ID, WebhookSecrets, X_USER_ID,
    configure_channels,
};

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
    /// Send through the generic API (`POST /api/v1/messages`, bearer token) instead of
    /// signed platform webhooks.
    #[arg(long)]
    api: bool,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
    /// Drive an already-running Balie at this base URL (e.g. `http://127.0.0.1:8080`)
    /// instead of starting one in this process. The bench sets up its channels and an API
    /// token in that server's store, found as every `balie` command finds it (`--data-dir`,
    /// `--config`, `BALIE_DATABASE_URL`), so the load generator runs as its own process.
    #[arg(long)]
    url: Option<String>,
    /// With `--url`: the server's process id, to report its CPU seconds per 1,000 messages.
    #[arg(long, requires = "url")]
    server_pid: Option<u32>,
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

/// One request of the ingest workload.
struct Planned {
    /// Index of the distinct message this request carries (duplicates repeat one).
    message: usize,
    /// Path under the server's base URL.
    path: String,
    /// The platform's signature header; `None` for the generic API (bearer token).
    header: Option<(&'static str, String)>,
    body: Vec<u8>,
    /// The message text (for the raw-insert comparison).
    text: String,
}

/// The ingest workload: the requests in sending order, and each distinct message's external
/// id as it will appear on the live stream.
struct IngestPlan {
    requests: Vec<Planned>,
    external_ids: Vec<String>,
}

impl IngestPlan {
    fn distinct(&self) -> usize {
        self.external_ids.len()
    }
}

/// Repeats about 5% of the messages as retried deliveries of the very same request.
fn with_retries(
    rng: &mut SplitMix,
    n: usize,
    mut fresh: impl FnMut(&mut SplitMix, usize) -> (Planned, String),
) -> IngestPlan {
    let mut requests: Vec<Planned> = Vec::with_capacity(n);
    let mut first_request: Vec<usize> = Vec::with_capacity(n);
    let mut external_ids = Vec::with_capacity(n);
    for _ in 0..n {
        if !first_request.is_empty() && rng.below(100) < 5 {
            let again = &requests[first_request[rng.below(first_request.len())]];
            let repeat = Planned {
                message: again.message,
                path: again.path.clone(),
                header: again.header.clone(),
                body: again.body.clone(),
                text: again.text.clone(),
            };
            requests.push(repeat);
            continue;
        }
        let (planned, external_id) = fresh(rng, external_ids.len());
        first_request.push(requests.len());
        external_ids.push(external_id);
        requests.push(planned);
    }
    IngestPlan {
        requests,
        external_ids,
    }
}

/// N requests to the generic API: customers writing openings and follow-ups (threaded by
/// `in_reply_to`), with about 5% of the requests retrying an earlier message.
fn plan_api(n: usize, rng: &mut SplitMix, id_base: usize) -> IngestPlan {
    let customers = (n / 3).max(1);
    let mut last_of: HashMap<usize, usize> = HashMap::new();
    with_retries(rng, n, |rng, message| {
        let i = id_base + message;
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
        let planned = Planned {
            message,
            path: "/api/v1/messages".to_owned(),
            header: None,
            body,
            text,
        };
        (planned, format!("m{i}"))
    })
}

/// The platform a customer writes on: Messenger 30%, WhatsApp 30%, Facebook comments 10%,
/// X 15%, Telegram 15%.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Platform {
    Messenger,
    Whatsapp,
    FacebookComment,
    X,
    Telegram,
}

fn platform_of(customer: usize) -> Platform {
    match customer % 20 {
        0..=5 => Platform::Messenger,
        6..=11 => Platform::Whatsapp,
        12 | 13 => Platform::FacebookComment,
        14..=16 => Platform::X,
        _ => Platform::Telegram,
    }
}

/// One customer message as the platform delivers it, threaded on the platform's own reply
/// field (`reply_to`, `context`, `parent_id`, `in_reply_to_status_id_str`,
/// `reply_to_message`) when it follows up on `previous`. Returns the delivery and the
/// external id Balie stores.
fn platform_delivery(
    customer: usize,
    i: usize,
    previous: Option<(usize, &str)>,
    text: &str,
    now_ms: i64,
) -> (Delivery, String) {
    let secs = now_ms / 1000;
    let name = format!("Klant {customer}");
    match platform_of(customer) {
        Platform::Messenger => {
            let mid = format!("m_bench_{i}");
            let mut message = json!({"mid": mid, "text": text});
            if let Some((_, p)) = previous {
                message["reply_to"] = json!({"mid": p});
            }
            let body = json!({"object": "page", "entry": [{"id": PAGE_ID, "time": now_ms, "messaging": [{
                "sender": {"id": format!("70{customer:013}")}, "recipient": {"id": PAGE_ID},
                "timestamp": now_ms, "message": message}]}]});
            (Delivery::Meta(body), mid)
        }
        Platform::Whatsapp => {
            let id = format!("wamid.bench{i}");
            let from = format!("316{customer:08}");
            let mut message = json!({"from": from, "id": id, "timestamp": secs.to_string(),
                "type": "text", "text": {"body": text}});
            if let Some((_, p)) = previous {
                message["context"] = json!({"from": PHONE_NUMBER_ID, "id": p});
            }
            let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340777", "changes": [{
                "field": "messages", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "31850000777", "phone_number_id": PHONE_NUMBER_ID},
                    "contacts": [{"profile": {"name": name}, "wa_id": from}],
                    "messages": [message]}}]}]});
            (Delivery::Meta(body), id)
        }
        Platform::FacebookComment => {
            let post_number = 987_654_000 + customer % 3;
            let post = format!("{PAGE_ID}_{post_number}");
            let comment = format!("{post_number}_{i}");
            let parent = previous.map_or_else(|| post.clone(), |(_, p)| p.to_owned());
            let body = json!({"object": "page", "entry": [{"id": PAGE_ID, "time": secs, "changes": [{
                "field": "feed", "value": {
                    "from": {"id": format!("24{customer:013}"), "name": name},
                    "post": {"id": post, "permalink_url": format!("https://www.facebook.com/{post}")},
                    "message": text, "post_id": post, "comment_id": comment,
                    "created_time": secs, "item": "comment", "parent_id": parent, "verb": "add"}}]}]});
            (Delivery::Meta(body), comment)
        }
        Platform::X => {
            let id = format!("1992{i:015}");
            let user = format!("16{customer:013}");
            let mut tweet = json!({
                "id_str": id,
                "text": format!("@pakketpost_bench {text}"),
                "in_reply_to_user_id_str": X_USER_ID,
                "user": {"id_str": user, "name": name, "screen_name": format!("klant{customer}")},
                "entities": {"user_mentions": [{"screen_name": "pakketpost_bench", "id_str": X_USER_ID, "indices": [0, 17]}]},
                "timestamp_ms": now_ms.to_string()});
            if let Some((_, p)) = previous {
                tweet["in_reply_to_status_id_str"] = json!(p);
                tweet["in_reply_to_user_id_str"] = json!(user);
            }
            let body = json!({"for_user_id": X_USER_ID, "tweet_create_events": [tweet]});
            (Delivery::X(body), id)
        }
        Platform::Telegram => {
            let chat = 5_550_000_000_i64 + i64::try_from(customer).unwrap_or(0);
            let message_id = i64::try_from(i).unwrap_or(0) + 1;
            let mut message = json!({"message_id": message_id,
                "from": {"id": chat, "is_bot": false, "first_name": name, "username": format!("klant{customer}")},
                "chat": {"id": chat, "type": "private", "first_name": name}, "date": secs, "text": text});
            if let Some((p, _)) = previous {
                message["reply_to_message"] = json!({"message_id": i64::try_from(p).unwrap_or(0) + 1, "chat": {"id": chat, "type": "private"}, "date": secs});
            }
            let body = json!({"update_id": 815_000_000 + i, "message": message});
            (
                Delivery::Telegram(body),
                balie_channels::telegram::external_id(chat, message_id),
            )
        }
    }
}

/// N signed platform webhooks: customers on Messenger, WhatsApp, Facebook comments, X and
/// Telegram writing openings and follow-ups (threaded with the platform's reply field), in
/// Dutch and English, with about 5% of the requests retrying an earlier delivery exactly.
fn plan_webhooks(
    n: usize,
    rng: &mut SplitMix,
    secrets: &WebhookSecrets,
    id_base: usize,
) -> IngestPlan {
    let customers = (n / 3).max(1);
    let now_ms = balie_server::outbox::now_ms();
    let mut last_of: HashMap<usize, (usize, String)> = HashMap::new();
    with_retries(rng, n, |rng, message| {
        let i = id_base + message;
        let customer = rng.below(customers);
        let previous = last_of.get(&customer).cloned();
        let text = customer_text(rng, previous.is_some());
        let (delivery, external_id) = platform_delivery(
            customer,
            i,
            previous.as_ref().map(|(p, id)| (*p, id.as_str())),
            &text,
            now_ms,
        );
        last_of.insert(customer, (i, external_id.clone()));
        let signed = delivery.sign(secrets, META_WEBHOOK, "x", "telegram");
        let planned = Planned {
            message,
            path: signed.path,
            header: Some(signed.header),
            body: signed.body,
            text,
        };
        (planned, external_id)
    })
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
    rss_mb_of("self")
}

/// Resident memory of process `pid` (`self` for this one), in MB; 0 where unreadable.
fn rss_mb_of(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
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

async fn start_server(secrets: &WebhookSecrets) -> anyhow::Result<BenchServer> {
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
        .create_api_token(
            "bench",
            &auth::token_hash(&token),
            bench_brand(app.state().store.as_ref()).await?,
            balie_server::outbox::now_ms(),
        )
        .await?;
    configure_channels(
        app.state().store.as_ref(),
        dir.path(),
        "Balie",
        secrets,
        &bench_tokens(),
        None,
    )
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

/// Reads the live stream and records when each message (by its external id) first appears.
async fn watch_stream(
    mut resp: reqwest::Response,
    index_of: Arc<HashMap<String, usize>>,
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
            let Some(&index) = event
                .pointer("/message/external_id")
                .and_then(Value::as_str)
                .and_then(|id| index_of.get(id))
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
    let dir = tempfile::tempdir().context("creating a temporary dir")?;
    let store = SqliteStore::open(&dir.path().join("raw.db")).await?;
    let brand = store
        .ensure_brand("raw", balie_server::outbox::now_ms())
        .await?;
    let channel = store
        .create_channel(
            brand,
            ChannelKind::Api,
            "raw",
            "{}",
            balie_server::outbox::now_ms(),
        )
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
            balie_server::outbox::now_ms(),
        )
        .await?;
    let conversation = store.any_conversation().await?;
    let start = Instant::now();
    store
        .raw_insert_messages(channel.id, conversation, texts)
        .await?;
    let rate = texts.len() as f64 / start.elapsed().as_secs_f64();
    store.close().await;
    Ok(rate)
}

/// Where the load goes: a server this process started on a fresh data dir, or one already
/// running elsewhere (`--url`).
enum Target {
    InProcess(BenchServer),
    Running {
        base: String,
        token: String,
        pid: Option<u32>,
    },
}

impl Target {
    fn base(&self) -> &str {
        match self {
            Target::InProcess(server) => &server.base,
            Target::Running { base, .. } => base,
        }
    }

    fn token(&self) -> &str {
        match self {
            Target::InProcess(server) => &server.token,
            Target::Running { token, .. } => token,
        }
    }

    /// CPU seconds (user + system) the server has used so far, where it can be read: this
    /// process's own for an in-process server (load generator included), the server
    /// process's for `--url --server-pid`.
    fn cpu_seconds(&self) -> Option<f64> {
        match self {
            Target::InProcess(_) => cpu_seconds("self"),
            Target::Running { pid, .. } => cpu_seconds(&pid.as_ref()?.to_string()),
        }
    }

    async fn stop(self) {
        if let Target::InProcess(server) = self {
            let _ = server.stop.send(());
            let _ = server.handle.await;
        }
    }
}

/// User plus system CPU seconds of `/proc/<pid>/stat` (Linux; `None` elsewhere).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // Linux reports these in USER_HZ, which is 100 on every architecture Balie runs on.
    Some(ticks / 100.0)
}

/// The brand the bench's channels and token belong to (the default brand's name).
async fn bench_brand(store: &dyn balie_store::Store) -> anyhow::Result<balie_core::BrandId> {
    let name = Config::default().default_brand;
    Ok(store
        .ensure_brand(&name, balie_server::outbox::now_ms())
        .await?)
}

/// The bench's channels and a fresh API token in the store of the server at `url`.
async fn prepare_running_server(
    url: &str,
    pid: Option<u32>,
    config: &Config,
    secrets: &WebhookSecrets,
) -> anyhow::Result<Target> {
    let store = balie_server::open_store(config).await?;
    let existed = store.channel_by_name(META_WEBHOOK).await?.is_some();
    let token = auth::new_token("balie")?;
    store
        .create_api_token(
            &format!("bench-{}", auth::random_hex(4)?),
            &auth::token_hash(&token),
            bench_brand(store.as_ref()).await?,
            balie_server::outbox::now_ms(),
        )
        .await?;
    configure_channels(
        store.as_ref(),
        &config.data_dir,
        &config.default_brand,
        secrets,
        &bench_tokens(),
        None,
    )
    .await?;
    if existed {
        // The server keeps opened channel credentials for up to 10 seconds; the bench just
        // gave its channels new secrets.
        eprintln!("bench channels existed: waiting 11 s for the server's channel cache");
        tokio::time::sleep(Duration::from_secs(11)).await;
    }
    Ok(Target::Running {
        base: url.trim_end_matches('/').to_owned(),
        token,
        pid,
    })
}

fn bench_tokens() -> ChannelTokens {
    ChannelTokens {
        verify_token: "bench-verify".to_owned(),
        meta_access_token: "EAAbench".to_owned(),
        x_access_token: "bench-x-token".to_owned(),
        bot_token: "7000000001:bench".to_owned(),
    }
}

pub async fn ingest(args: IngestArgs, config: Config) -> anyhow::Result<()> {
    if args.messages == 0 || args.concurrency == 0 {
        bail!("--messages and --concurrency must be at least 1");
    }
    let mut rng = SplitMix(0x0BA1_1E00);
    let secrets = WebhookSecrets {
        app_secret: auth::random_hex(24)?,
        consumer_secret: auth::random_hex(24)?,
        telegram_secret: auth::random_hex(24)?,
    };
    // A server that ran the bench before has its messages: ids of this run start past them
    // (the same workload otherwise, with the same seed). A fresh in-process server starts at 0.
    let id_base = if args.url.is_some() {
        usize::try_from(balie_server::outbox::now_ms() % 1_000_000_000)? * 1_000
    } else {
        0
    };
    let ingest_plan = if args.api {
        plan_api(args.messages, &mut rng, id_base)
    } else {
        plan_webhooks(args.messages, &mut rng, &secrets, id_base)
    };
    let distinct = ingest_plan.distinct();
    let index_of: HashMap<String, usize> = ingest_plan
        .external_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), i))
        .collect();
    let texts: Vec<String> = ingest_plan
        .requests
        .iter()
        .map(|p| p.text.clone())
        .collect();
    let plan = ingest_plan.requests;

    let server = match &args.url {
        Some(url) => prepare_running_server(url, args.server_pid, &config, &secrets).await?,
        None => Target::InProcess(start_server(&secrets).await?),
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .context("building HTTP client")?;
    let stream = http
        .get(format!("{}/events", server.base()))
        .bearer_auth(server.token())
        .send()
        .await?
        .error_for_status()
        .context("subscribing to the live stream")?;
    let seen = Arc::new(Mutex::new(vec![None; distinct]));
    let remaining = Arc::new(AtomicUsize::new(distinct));
    let all_seen = Arc::new(tokio::sync::Notify::new());
    let watcher = tokio::spawn(watch_stream(
        stream,
        Arc::new(index_of),
        seen.clone(),
        remaining.clone(),
        all_seen.clone(),
    ));

    let plan = Arc::new(plan);
    let sent_at = Arc::new(Mutex::new(vec![None::<Instant>; distinct]));
    let next = Arc::new(AtomicUsize::new(0));
    let base = server.base().to_owned();
    let cpu_before = server.cpu_seconds();
    let start = Instant::now();
    let interval = args
        .rate
        .filter(|r| r.is_finite() && *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let mut senders = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let (plan, next, sent_at, http, base, token) = (
            plan.clone(),
            next.clone(),
            sent_at.clone(),
            http.clone(),
            base.clone(),
            server.token().to_owned(),
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
                let request = http
                    .post(format!("{base}{}", p.path))
                    .header("content-type", "application/json")
                    .body(p.body.clone());
                let request = match &p.header {
                    Some((name, value)) => request.header(*name, value),
                    None => request.bearer_auth(&token),
                };
                let resp = request.send().await?;
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
    let cpu_used = server
        .cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let (mode_target, server_rss_mb) = match &server {
        Target::InProcess(_) => ("in_process", rss_mb()),
        // The server's own memory where its pid is known; the load generator's otherwise.
        Target::Running { pid, .. } => (
            "running_server",
            pid.map_or_else(rss_mb, |pid| rss_mb_of(&pid.to_string())),
        ),
    };
    watcher.abort();
    server.stop().await;

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
        "mode": if args.api { "api" } else { "webhooks" },
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
        "rss_mb": server_rss_mb,
        "server": mode_target,
        // In-process: this process's CPU (server and load generator together); with
        // `--url --server-pid`: the server process's own.
        "cpu_s_per_1000_messages": cpu_used.map(|cpu| round2(cpu * 1000.0 / args.messages as f64)),
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "Ingest: {} messages ({} distinct) over HTTP ({}) from {} clients in {:.2} s: {:.0} messages/s \
             ({:.0}/s acknowledged).\n  acknowledged  p50 {:.1} ms  p99 {:.1} ms\n  \
             visible       p50 {:.1} ms  p99 {:.1} ms (request sent -> on the live stream)\n  \
             raw insert    {:.0} rows/s (batched INSERTs, same database kind): ratio {:.3}",
            args.messages,
            distinct,
            if args.api {
                "generic API"
            } else {
                "signed platform webhooks"
            },
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
    let brand = store
        .ensure_brand("Balie", balie_server::outbox::now_ms())
        .await?;
    let channel = store
        .create_channel(
            brand,
            ChannelKind::Api,
            "bench",
            "{}",
            balie_server::outbox::now_ms(),
        )
        .await?;
    let mut rng = SplitMix(0x0BA1_1E01);
    let (mut next_message, mut next_customer) = (0usize, 0usize);
    let load_start = Instant::now();
    while next_message < args.stored {
        let chunk = (args.stored - next_message).min(50_000);
        let conversations = plan_history(&mut rng, &mut next_message, &mut next_customer, chunk);
        store
            .bulk_load(channel.id, &conversations, balie_server::outbox::now_ms())
            .await?;
    }
    let load_seconds = load_start.elapsed().as_secs_f64();
    store.analyze_statistics().await?;

    let rounds = args.rounds;
    let s = &store;
    let mut inbox = time_rounds(rounds, |_| async move {
        let rows = s.inbox(brand, ConversationStatus::Open, 50).await?;
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
                .conversation(brand, ConversationId(id))
                .await?
                .with_context(|| format!("conversation {id}"))?;
            Ok(())
        }
    })
    .await?;
    let mut search = time_rounds(rounds, |r| {
        let store = &store;
        async move {
            store
                .search(brand, SEARCHES[r % SEARCHES.len()], 50)
                .await?;
            Ok(())
        }
    })
    .await?;
    let rss = rss_mb();
    // The same inbox query without migration 0003's index: what the index is worth.
    store.drop_inbox_order_index().await?;
    let mut inbox_unindexed = time_rounds(rounds.min(20), |_| async move {
        s.inbox(brand, ConversationStatus::Open, 50).await?;
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
    fn the_api_plan_threads_customers_and_repeats_a_few_messages() {
        let plan = plan_api(2000, &mut SplitMix(1), 0);
        assert_eq!(plan.requests.len(), 2000);
        let dups = 2000 - plan.distinct();
        assert!(
            (40..=160).contains(&dups),
            "about 5% duplicates, got {dups}"
        );
        let threaded = plan
            .requests
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

    fn secrets() -> WebhookSecrets {
        WebhookSecrets {
            app_secret: "app".into(),
            consumer_secret: "consumer".into(),
            telegram_secret: "telegram".into(),
        }
    }

    #[test]
    fn the_webhook_plan_parses_on_every_platform_with_threads_and_retries() {
        // 0 for a fresh server; the other as `--url` picks for a server that has run it before.
        for id_base in [0, 999_999_999 * 1_000] {
            check_webhook_plan(id_base);
        }
    }

    #[test]
    fn runs_against_a_running_server_never_repeat_an_earlier_runs_ids() {
        let secrets = secrets();
        let first = plan_webhooks(3000, &mut SplitMix(2), &secrets, 5_000_000);
        let second = plan_webhooks(3000, &mut SplitMix(2), &secrets, 5_003_000);
        let earlier: std::collections::HashSet<_> = first.external_ids.iter().collect();
        assert!(second.external_ids.iter().all(|id| !earlier.contains(id)));
        let api = plan_api(100, &mut SplitMix(1), 7_000);
        assert_eq!(api.external_ids[0], "m7000");
    }

    fn check_webhook_plan(id_base: usize) {
        let secrets = secrets();
        let plan = plan_webhooks(3000, &mut SplitMix(2), &secrets, id_base);
        let dups = 3000 - plan.distinct();
        assert!((60..=240).contains(&dups), "about 5% retries, got {dups}");
        let mut per_path: HashMap<String, usize> = HashMap::new();
        let mut threaded = 0;
        let mut seen = std::collections::HashSet::new();
        for p in &plan.requests {
            *per_path.entry(p.path.clone()).or_default() += 1;
            let (name, value) = p.header.clone().expect("signed");
            let inbound: Vec<balie_core::Inbound> = if p.path.starts_with("/webhooks/meta/") {
                assert_eq!(name, "x-hub-signature-256");
                assert!(balie_channels::meta::verify_signature(
                    &secrets.app_secret,
                    &p.body,
                    Some(&value)
                ));
                let batch = balie_channels::meta::parse(&p.body).expect("Meta body");
                assert!(batch.unread.is_empty() && batch.dropped.is_empty());
                batch.events.into_iter().map(|e| e.inbound).collect()
            } else if p.path.starts_with("/webhooks/x/") {
                assert!(balie_channels::x::verify_signature(
                    &secrets.consumer_secret,
                    &p.body,
                    Some(&value)
                ));
                let batch = balie_channels::x::parse(&p.body).expect("X body");
                assert!(batch.unread.is_empty() && batch.dropped.is_empty());
                batch.events
            } else {
                assert_eq!(value, secrets.telegram_secret);
                balie_channels::telegram::parse(&p.body)
                    .expect("Telegram body")
                    .event
                    .into_iter()
                    .collect()
            };
            assert_eq!(inbound.len(), 1, "{}", p.path);
            assert_eq!(inbound[0].external_id, plan.external_ids[p.message]);
            if let Some(target) = &inbound[0].in_reply_to
                && seen.insert(p.message)
            {
                assert!(plan.external_ids.contains(target), "{target}");
                threaded += 1;
            }
        }
        assert_eq!(per_path.len(), 3, "{per_path:?}");
        assert!(
            threaded > 700,
            "follow-ups answer earlier messages: {threaded}"
        );
        let platforms: std::collections::HashSet<_> = (0..20).map(platform_of).collect();
        assert_eq!(platforms.len(), 5);
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
