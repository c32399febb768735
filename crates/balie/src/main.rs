//! The `balie` command: serve, demo, users, tokens, text analysis and benchmarks.

#[cfg(feature = "bench")]
mod bench_cmd;
mod channel_cmd;
mod demo;
mod demo_platforms;
mod lint_cmd;
mod platform_webhooks;
mod text_cmd;

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use balie_core::{Brand, BrandSlug, Role};
use balie_server::{App, Config, auth};
use balie_store::{Store, StoreError};
use clap::{Args, Parser, Subcommand};

/// mimalloc instead of glibc's allocator: allocation was 14-16% of the ingest profile
/// (`malloc_consolidate`, `unlink_chunk`), and mimalloc's thread-local free lists suit
/// the many short-lived buffers of request handling (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "balie",
    version,
    about = "Balie: the webcare desk that hears every customer and never goes silent."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
struct GlobalArgs {
    /// Data directory (database and state). Default: ./balie-data
    #[arg(long, global = true, env = "BALIE_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Configuration file (TOML); see balie.example.toml.
    #[arg(long, global = true, env = "BALIE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server: API, webhooks, agent UI and workers.
    Serve {
        /// Address to listen on. Default: 127.0.0.1:8080
        #[arg(long, env = "BALIE_LISTEN", value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Run the server on a temporary data dir with simulated customer traffic.
    Demo(demo::DemoArgs),
    /// Manage brands (the companies this installation does webcare for).
    #[command(subcommand)]
    Brand(BrandCommand),
    /// Manage agents, supervisors and admins.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens for the generic channel.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Configure platform channels (Facebook, Instagram, WhatsApp, X, Telegram).
    #[command(subcommand)]
    Channel(channel_cmd::ChannelCommand),
    /// Analyse messages (JSON lines on stdin) or evaluate the models.
    Analyze(text_cmd::AnalyzeArgs),
    /// Rebuild the embedded triage models from labelled data.
    Train(text_cmd::TrainArgs),
    /// Check draft replies (JSON lines on stdin): platform length and text-only flags.
    LintReply(lint_cmd::LintReplyArgs),
    /// Measure Balie's speed.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand, Debug)]
enum BrandCommand {
    /// Add a brand.
    Add {
        /// Short name: lowercase letters, digits and `-` (`acme`).
        slug: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Add a user. Asks for a password on a terminal, else generates and prints one.
    Add {
        #[arg(long)]
        email: String,
        /// The role in each `--brand`; `owner` makes the installation's owner (an admin of
        /// every brand, who alone may point a channel at another API host).
        #[arg(long, value_parser = ["agent", "supervisor", "admin", "owner"])]
        role: String,
        /// A brand (slug) the user belongs to; repeat for an agency user. Without it, on an
        /// installation with one brand: that brand.
        #[arg(long = "brand", value_name = "SLUG")]
        brands: Vec<String>,
        /// Display name (default: the part of the e-mail before @).
        #[arg(long)]
        name: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Create an API token; the token is the last word of the output.
    Create {
        #[arg(long)]
        name: String,
        /// The brand (slug) the token acts for. Without it, on an installation with one
        /// brand: that brand.
        #[arg(long, value_name = "SLUG")]
        brand: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Text analysis throughput on one core.
    Analyze(text_cmd::BenchAnalyzeArgs),
    /// Inbound messages over HTTP to a fresh server, against the raw insert limit.
    #[cfg(feature = "bench")]
    Ingest(bench_cmd::IngestArgs),
    /// Inbox, conversation and search latency over many stored messages.
    #[cfg(feature = "bench")]
    Query(bench_cmd::QueryArgs),
}

fn load_config(global: &GlobalArgs) -> anyhow::Result<Config> {
    let mut config = Config::load(global.config.as_deref())?;
    if let Some(dir) = &global.data_dir {
        config.data_dir = dir.clone();
    }
    Ok(config)
}

/// The store `config` names (SQLite in the data dir, or PostgreSQL), as the server opens it.
async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    balie_server::open_store(config).await
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("BALIE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("BALIE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Analyze(args) => return text_cmd::analyze(args),
        Command::Train(args) => return text_cmd::train(args),
        Command::LintReply(args) => {
            return lint_cmd::lint_reply(args, cli.global.data_dir.is_some());
        }
        Command::Bench(BenchCommand::Analyze(args)) => return text_cmd::bench_analyze(args),
        _ => {}
    }
    // One TLS provider for every outbound HTTPS call (rustls with ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { listen } => {
            init_tracing();
            let mut config = load_config(&cli.global)?;
            if let Some(listen) = listen {
                config.listen = listen;
            }
            let app = App::build(config.clone()).await?;
            tracing::info!(addr = %app.local_addr()?, data_dir = %config.data_dir.display(), "Balie is serving");
            app.run(balie_server::shutdown_signal()).await
        }
        Command::Demo(args) => {
            init_tracing();
            demo::run(
                args,
                load_config(&cli.global)?,
                cli.global.data_dir.is_some(),
            )
            .await
        }
        Command::Brand(BrandCommand::Add { slug, name }) => {
            let config = load_config(&cli.global)?;
            let slug = BrandSlug::parse(slug.trim()).context(
                "a brand slug is 1 to 40 lowercase letters, digits and -, not starting with -",
            )?;
            let name = name.trim();
            if name.is_empty() || name.len() > 200 {
                bail!("a brand name needs 1 to 200 bytes");
            }
            let store = open_store(&config).await?;
            match store
                .create_brand(&slug, name, balie_server::outbox::now_ms())
                .await
            {
                Ok(brand) => println!("Added brand {} ({}).", brand.slug, brand.name),
                Err(StoreError::Conflict(_)) => {
                    bail!("a brand with slug `{slug}` or name `{name}` already exists")
                }
                Err(e) => return Err(e.into()),
            }
            Ok(())
        }
        Command::User(UserCommand::Add {
            email,
            role,
            brands,
            name,
            password_stdin,
        }) => {
            let config = load_config(&cli.global)?;
            let owner = role == "owner";
            let role = if owner {
                Role::Admin
            } else {
                Role::parse(&role).context("role must be agent, supervisor, admin or owner")?
            };
            let email = email.trim().to_string();
            if !email.contains('@') || email.len() > 254 {
                bail!("`{email}` is not an e-mail address");
            }
            let (password, generated) = read_or_generate_password(password_stdin)?;
            let hash = auth::hash_password(&password)?;
            let name =
                name.unwrap_or_else(|| email.split('@').next().unwrap_or(&email).to_string());
            let store = open_store(&config).await?;
            let brands = brands_named(&*store, &config, &brands).await?;
            let now = balie_server::outbox::now_ms();
            match store.create_user(&email, &name, owner, &hash, now).await {
                Ok(user) => {
                    for brand in &brands {
                        store.set_membership(user.id, brand.id, role, now).await?;
                    }
                    let slugs: Vec<&str> = brands.iter().map(|b| b.slug.as_str()).collect();
                    println!(
                        "Added {} {} (id {}) to {}.",
                        if owner { "owner" } else { role.as_str() },
                        user.email,
                        user.id,
                        slugs.join(", ")
                    );
                    if generated {
                        println!("Generated password: {password}");
                    }
                }
                Err(StoreError::Conflict(_)) => bail!("a user with e-mail {email} already exists"),
                Err(e) => return Err(e.into()),
            }
            Ok(())
        }
        Command::Token(TokenCommand::Create { name, brand }) => {
            let config = load_config(&cli.global)?;
            let name = name.trim().to_string();
            if name.is_empty() {
                bail!("the token needs a name");
            }
            let token = auth::new_token("balie")?;
            let store = open_store(&config).await?;
            let slugs: Vec<String> = brand.into_iter().collect();
            let brand = brands_named(&*store, &config, &slugs).await?;
            let brand = brand.first().context("no brand")?;
            store
                .create_api_token(
                    &name,
                    &auth::token_hash(&token),
                    brand.id,
                    balie_server::outbox::now_ms(),
                )
                .await?;
            println!("Created API token `{name}`. It is shown once; store it safely:\n{token}");
            Ok(())
        }
        Command::Channel(command) => {
            let config = load_config(&cli.global)?;
            let store = open_store(&config).await?;
            channel_cmd::run(command, &config, &*store).await
        }
        #[cfg(feature = "bench")]
        Command::Bench(BenchCommand::Ingest(args)) => {
            bench_cmd::ingest(args, load_config(&cli.global)?).await
        }
        #[cfg(feature = "bench")]
        Command::Bench(BenchCommand::Query(args)) => bench_cmd::query(args).await,
        Command::Analyze(_)
        | Command::Train(_)
        | Command::LintReply(_)
        | Command::Bench(BenchCommand::Analyze(_)) => Ok(()),
    }
}

/// The brands `slugs` name; without any, the installation's only brand (the configured
/// default brand, made now, on an installation that has none yet).
async fn brands_named(
    store: &dyn Store,
    config: &Config,
    slugs: &[String],
) -> anyhow::Result<Vec<Brand>> {
    if slugs.is_empty() {
        let mut all = store.brands().await?;
        if all.is_empty() {
            store
                .ensure_brand(&config.default_brand, balie_server::outbox::now_ms())
                .await?;
            all = store.brands().await?;
        }
        if all.len() > 1 {
            let names: Vec<&str> = all.iter().map(|b| b.slug.as_str()).collect();
            bail!(
                "this installation has several brands: name one with --brand ({})",
                names.join(", ")
            );
        }
        return Ok(all);
    }
    let mut out = Vec::new();
    for slug in slugs {
        let brand = store
            .brand_by_slug(slug.trim())
            .await?
            .with_context(|| format!("no brand with slug `{slug}` (see `balie brand add`)"))?;
        out.push(brand);
    }
    Ok(out)
}

fn read_or_generate_password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    let stdin = std::io::stdin();
    if from_stdin || stdin.is_terminal() {
        if !from_stdin {
            print!("Password (leave empty to generate one): ");
            std::io::stdout().flush()?;
        }
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        let password = line.trim_end_matches(['\r', '\n']).to_string();
        if !password.is_empty() {
            auth::check_new_password(&password)?;
            return Ok((password, false));
        }
        if from_stdin {
            bail!("no password on standard input");
        }
    }
    Ok((auth::generate_password()?, true))
}
