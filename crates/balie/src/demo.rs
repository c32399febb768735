//! `balie demo`: the real server on a temporary data dir, a simulator that plays varied
//! Dutch and English customer traffic for a fictional parcel company through the real API,
//! and a local stand-in for the company's outbound webhook so replies visibly arrive.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use balie_core::Role;
use balie_server::{App, Config, Secret, auth};
use balie_store::Store;
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Address to serve on.
    #[arg(long, env = "BALIE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Simulated customer messages per minute.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Stop sending after this many messages (0 = keep going).
    #[arg(long, default_value_t = 0)]
    messages: u64,
    /// Seed for the simulator (same seed, same traffic).
    #[arg(long)]
    seed: Option<u64>,
}

/// A small deterministic generator (xorshift64*), enough for varied traffic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() % 10_000) as f64 / 10_000.0 < p
    }
}

/// A simulated customer: invented names, no real accounts.
struct Persona {
    id: String,
    name: String,
    handle: String,
    dutch: bool,
}

const NL_FIRST: &[&str] = &[
    "Sanne", "Joost", "Fatima", "Pieter", "Linda", "Kees", "Noor", "Mila", "Daan", "Eva", "Bram",
    "Yara", "Ruben", "Lotte", "Sem", "Anouk", "Mehmet", "Ilse",
];
const NL_LAST: &[&str] = &[
    "Verhoef",
    "van Dam",
    "El Amrani",
    "Bos",
    "Kramer",
    "de Wit",
    "Hendriks",
    "Jansen",
    "Visser",
    "Smit",
    "Mulder",
    "de Groot",
    "Yilmaz",
    "Dekker",
];
const EN_FIRST: &[&str] = &[
    "Emma", "Daniel", "Priya", "Tom", "Olivia", "James", "Grace", "Liam", "Chloe", "Ethan",
];
const EN_LAST: &[&str] = &[
    "Clarke", "Murphy", "Shah", "Becker", "Walsh", "Turner", "Reid", "Foster",
];

/// Customer number `n` of the simulation; two in three write Dutch.
fn persona(n: usize) -> Persona {
    let dutch = n % 3 != 2;
    let (first, last) = if dutch {
        (NL_FIRST, NL_LAST)
    } else {
        (EN_FIRST, EN_LAST)
    };
    let f = first[n % first.len()];
    let l = last[(n / first.len() + n) % last.len()];
    Persona {
        id: format!("sim-{n}"),
        name: format!("{f} {l}"),
        handle: format!(
            "{}{}_{n}",
            f.to_lowercase(),
            l.replace(' ', "").to_lowercase()
        ),
        dutch,
    }
}

/// How many different simulated customers there are.
const CUSTOMERS: usize = 400;

const NL_OPENERS: &[&str] = &[
    "Mijn pakket {code} zou {day} bezorgd worden, maar er is nog steeds niets. Wat is er aan de hand?",
    "Volgens de track & trace is {code} bezorgd, maar ik heb niks ontvangen. Niet bij de buren, niet in de brievenbus.",
    "Kan ik het afleveradres van {code} nog wijzigen? Ik ben {day} niet thuis.",
    "Hoe laat komt de bezorger ongeveer in {place}? Ik wil {code} niet mislopen.",
    "Pakket {code} kwam beschadigd aan, de doos was helemaal ingedeukt. Hoe dien ik een claim in?",
    "De bezorger van vandaag was super vriendelijk en heeft {code} netjes bij de buren afgegeven. Top!",
    "Al drie keer gebeld over {code} en nog steeds geen antwoord. Dit is echt belachelijk.",
    "Waarom krijg ik een bericht 'niet thuis' terwijl ik de hele dag thuis was?? {code}",
    "Ik wacht al een week op {code}. Vorige week gemaild en nog niks gehoord. Als dit zo doorgaat stap ik over naar een andere vervoerder.",
    "Is het afhaalpunt in {place} {day} open? Ik moet {code} nog ophalen.",
    "Bedankt voor het snelle antwoord gisteren, het pakket is binnen!",
    "Kunnen jullie {code} ook bij een afhaalpunt afleveren in plaats van thuis?",
];

const NL_FOLLOWUPS: &[&str] = &[
    "Nog steeds niets gehoord. Kan iemand mij helpen?",
    "Ik heb het nummer nog eens gecontroleerd, het klopt echt: {code}.",
    "Dank je, dat is duidelijk!",
    "Hallo?? Het is nu al {hours} uur later en nog steeds geen reactie.",
    "Oké, ik wacht het af. Laat je het weten als er nieuws is?",
    "Voor de derde keer: waar is mijn pakket? Ik ga dit delen op Facebook als er niks gebeurt. #polderpostfail",
];

const EN_OPENERS: &[&str] = &[
    "Hi, my parcel {code} was supposed to arrive {day_en} but it's still not here. Any update?",
    "Tracking says {code} was delivered but there's nothing at my door. Can you check?",
    "Can I change the delivery address for {code}? I won't be home {day_en}.",
    "Your driver left {code} out in the rain, the box is soaked. How do I file a claim?",
    "Big thanks to the driver in {place} today, super friendly and careful with my parcel!",
    "This is the third time I'm asking about {code}. Still no answer. Unacceptable.",
    "Do you deliver on Sundays? Waiting for {code} and I'm away next week.",
    "Is the pickup point in {place} open {day_en}?",
];

const EN_FOLLOWUPS: &[&str] = &[
    "Any news? Still nothing here.",
    "Thanks, that worked!",
    "It's been {hours} hours. If I don't hear back today I'm cancelling my subscription.",
    "Just checked again, the code really is {code}.",
];

const PLACES: &[&str] = &[
    "Utrecht",
    "Zwolle",
    "Haarlem",
    "Eindhoven",
    "Groningen",
    "Leiden",
    "Breda",
];
const DAYS: &[(&str, &str)] = &[
    ("gisteren", "yesterday"),
    ("vandaag", "today"),
    ("morgen", "tomorrow"),
    ("vrijdag", "on Friday"),
    ("zaterdag", "on Saturday"),
];

fn fill(template: &str, rng: &mut Rng) -> String {
    let code = format!("PP{:04}{:04}NL", rng.below(10_000), rng.below(10_000));
    let (day, day_en) = *rng.pick(DAYS);
    template
        .replace("{code}", &code)
        .replace("{day_en}", day_en)
        .replace("{day}", day)
        .replace("{place}", rng.pick::<&str>(PLACES))
        .replace("{hours}", &(2 + rng.below(30)).to_string())
}

/// The simulator: posts one message per tick through the public API.
async fn simulate(base: String, token: String, rate: f64, limit: u64, seed: u64) {
    let client = reqwest::Client::new();
    let mut rng = Rng::new(seed);
    let interval = Duration::from_secs_f64((60.0 / rate.max(0.1)).max(0.05));
    let mut sent: Vec<(usize, String, serde_json::Value)> = Vec::new();
    let mut n: u64 = 0;
    loop {
        if limit > 0 && n >= limit {
            tracing::info!(messages = n, "simulator finished");
            return;
        }
        n += 1;
        let body = if !sent.is_empty() && rng.chance(0.05) {
            // A platform retry: the very same delivery again. Balie must store it once.
            sent[rng.below(sent.len())].2.clone()
        } else if !sent.is_empty() && rng.chance(0.3) {
            let (who, last_id, _) = sent[rng.below(sent.len())].clone();
            let p = persona(who);
            let text = fill(
                rng.pick::<&str>(if p.dutch { NL_FOLLOWUPS } else { EN_FOLLOWUPS }),
                &mut rng,
            );
            let id = format!("demo-{seed:x}-{n}");
            let body = json!({"channel": "web", "external_id": id, "author": {"id": p.id, "handle": p.handle, "name": p.name}, "text": text, "in_reply_to": last_id});
            sent.push((who, id, body.clone()));
            body
        } else {
            let who = rng.below(CUSTOMERS);
            let p = persona(who);
            let text = fill(
                rng.pick::<&str>(if p.dutch { NL_OPENERS } else { EN_OPENERS }),
                &mut rng,
            );
            let id = format!("demo-{seed:x}-{n}");
            let body = json!({"channel": "web", "external_id": id, "author": {"id": p.id, "handle": p.handle, "name": p.name}, "text": text});
            sent.push((who, id, body.clone()));
            body
        };
        let result = client
            .post(format!("{base}/api/v1/messages"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "simulator could not post");
        }
        tokio::time::sleep(interval).await;
    }
}

/// Stands in for the company's own system that receives replies on the generic channel.
async fn reply_receiver(secret: Secret) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/replies",
        post(move |headers: HeaderMap, body: Bytes| {
            let secret = secret.clone();
            async move {
                let sig = headers.get("x-balie-signature").and_then(|v| v.to_str().ok()).unwrap_or("");
                if !balie_channels::signature::verify_sha256_header(secret.expose().as_bytes(), &body, sig) {
                    tracing::warn!("demo receiver: reply with a bad signature refused");
                    return StatusCode::UNAUTHORIZED;
                }
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                tracing::info!(conversation = %v["conversation_id"], recipient = %v["recipient"]["id"], "demo receiver: reply delivered to the customer");
                StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

pub async fn run(args: DemoArgs, mut config: Config, keep_data_dir: bool) -> anyhow::Result<()> {
    let temp = tempfile::Builder::new()
        .prefix("balie-demo-")
        .tempdir()
        .context("creating a temporary data dir")?;
    if !keep_data_dir {
        config.data_dir = temp.path().to_path_buf();
    }
    config.listen = args.listen;
    let secret = Secret::new(auth::random_hex(32)?);
    let receiver = reply_receiver(secret.clone()).await?;
    config.outbound.url = format!("http://{receiver}/replies");
    config.outbound.secret = secret;
    let app = App::build(config.clone()).await?;
    let addr = app.local_addr()?;
    let store: Arc<dyn Store> = app.state().store.clone();
    let password = auth::generate_password()?;
    let email = "demo@balie.example";
    let now = balie_server::outbox::now_ms();
    let brand = store.ensure_brand(&config.default_brand, now).await?;
    match store
        .create_user(
            email,
            "Demo Agent",
            true,
            &auth::hash_password(&password)?,
            now,
        )
        .await
    {
        Ok(user) => {
            store
                .set_membership(user.id, brand, Role::Admin, now)
                .await?
        }
        Err(balie_store::StoreError::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let token = auth::new_token("balie")?;
    store
        .create_api_token("demo simulator", &auth::token_hash(&token), brand, now)
        .await?;
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7)
    });
    tokio::spawn(simulate(
        format!("http://{addr}"),
        token,
        args.rate,
        args.messages,
        seed,
    ));
    let platforms =
        crate::demo_platforms::setup(store.as_ref(), &config.data_dir, &config.default_brand)
            .await
            .context("setting up the demo's platform channels")?;
    tokio::spawn(crate::demo_platforms::simulate(
        format!("http://{addr}"),
        platforms,
        args.rate,
        args.messages,
        seed,
    ));
    println!();
    println!("  Balie demo is running: http://{addr}/");
    println!("  Log in as {email} with password {password}");
    println!(
        "  Data: {} (temporary unless --data-dir is given)",
        config.data_dir.display()
    );
    println!(
        "  Simulated customers write {} messages a minute; replies go to a local stand-in webhook.",
        args.rate
    );
    println!(
        "  Facebook, Instagram, WhatsApp, X and Telegram customers write as many through Balie's \
         signed webhooks; replies arrive at a local fake platform (see the log)."
    );
    println!("  Stop with Ctrl-C.");
    println!();
    app.run(balie_server::shutdown_signal()).await?;
    drop(temp);
    Ok(())
}
