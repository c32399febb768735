//! The `balie lint-reply` command: a draft reply's platform length and text-only flags, JSON lines in and out.

use std::io::{BufRead, BufWriter, Write};

use anyhow::Context;
use balie_core::ReplyChannel;
use balie_text::reply_check::{AgentLanguage, ReplyDraft};
use serde_json::{Value, json};

/// Check draft replies: reads `{"text": ..., "public": true|false, "customer_language": "nl"}`
/// lines on stdin and writes one JSON line per input with `length`, `max_length`, `fits` and
/// `flags`.
#[derive(clap::Args, Debug)]
pub struct LintReplyArgs {
    /// Where the reply goes: x, mastodon, bluesky, whatsapp, telegram, messenger, facebook,
    /// instagram or email.
    #[arg(long, value_parser = ReplyChannel::NAMES)]
    pub channel: String,
    /// The brand whose history and facts the `canned` and `contradicts_fact` checks would use
    /// (with `--data-dir`; those two checks are not implemented yet).
    #[arg(long, value_name = "SLUG")]
    pub brand: Option<String>,
    /// Language of the flags' explanations: nl or en.
    #[arg(long, default_value = "en", value_parser = ["nl", "en"])]
    pub lang: String,
}

/// The checks that need the brand's history and facts, not implemented yet.
const NOT_YET_CHECKED: [&str; 2] = ["canned", "contradicts_fact"];

pub fn lint_reply(args: LintReplyArgs, with_data_dir: bool) -> anyhow::Result<()> {
    let lang = AgentLanguage::parse(&args.lang).unwrap_or(AgentLanguage::English);
    if with_data_dir {
        eprintln!(
            "balie lint-reply: the canned and contradicts_fact checks are not implemented yet; \
             only the text-only checks ran{}",
            args.brand
                .as_deref()
                .map(|b| format!(" (brand {b})"))
                .unwrap_or_default()
        );
    }
    let stdin = std::io::stdin().lock();
    let mut out = BufWriter::new(std::io::stdout().lock());
    for line in stdin.lines() {
        let line = line.context("reading stdin")?;
        let answer = match lint_line(&line, &args.channel, lang) {
            Ok(mut answer) => {
                if with_data_dir {
                    answer["not_checked"] = json!(NOT_YET_CHECKED);
                }
                answer
            }
            Err(error) => json!({ "error": error }),
        };
        serde_json::to_writer(&mut out, &answer).context("writing stdout")?;
        out.write_all(b"\n").context("writing stdout")?;
    }
    out.flush().context("writing stdout")?;
    Ok(())
}

fn lint_line(line: &str, channel: &str, lang: AgentLanguage) -> Result<Value, String> {
    let input: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let text = input
        .get("text")
        .and_then(Value::as_str)
        .ok_or("missing string field \"text\"")?;
    let public = input
        .get("public")
        .and_then(Value::as_bool)
        .ok_or("missing boolean field \"public\"")?;
    let customer_language = match input.get("customer_language") {
        None | Some(Value::Null) => None,
        Some(Value::String(code)) if !code.is_empty() => Some(code.as_str()),
        Some(_) => {
            return Err("\"customer_language\" must be a language code such as \"nl\"".into());
        }
    };
    let rule = ReplyChannel::parse(channel, public).ok_or("unknown channel")?;
    let draft = ReplyDraft {
        text,
        public,
        customer_language,
        agent_language: lang,
    };
    serde_json::to_value(balie_server::compose::lint(rule, &draft)).map_err(|e| e.to_string())
}
