//! End to end in a real headless Chromium: log in, see a message arrive live in the inbox,
//! reply, see the reply on the timeline; customer HTML stays inert text.
//!
//! Needs `BALIE_CHROMEDRIVER` (path to chromedriver) and `BALIE_CHROMIUM` (path to the
//! browser); `.ci/run` sets both. Without them the test says so and does not run, except
//! under `CI=true`, where it fails: in CI it must run.

use std::process::Stdio;
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;

use crate::support::*;

struct Driver {
    child: tokio::process::Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn start_driver() -> Option<(Driver, String)> {
    let (driver, chromium) = match (
        std::env::var("BALIE_CHROMEDRIVER"),
        std::env::var("BALIE_CHROMIUM"),
    ) {
        (Ok(d), Ok(c)) => (d, c),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but BALIE_CHROMEDRIVER/BALIE_CHROMIUM are not set: the browser test must run in CI"
            );
            // Written to fd 2 itself, past the test harness's capture, so it always shows.
            use std::io::Write;
            if let Ok(mut err) = std::fs::OpenOptions::new().write(true).open("/dev/stderr") {
                let _ = writeln!(
                    err,
                    "browser test NOT RUN: set BALIE_CHROMEDRIVER and BALIE_CHROMIUM (see .ci/run) to run it"
                );
            }
            return None;
        }
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = tokio::process::Command::new(&driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {driver}: {e}"));
    let url = format!("http://127.0.0.1:{port}");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let probe = reqwest::Client::new();
    eventually(20, || async {
        probe
            .get(format!("{url}/status"))
            .send()
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    Some((Driver { child, url }, chromium))
}

/// Clicks what `locator` finds, looking it up again if the page replaced it meanwhile.
async fn click_fresh(
    client: &fantoccini::Client,
    locator: Locator<'_>,
) -> Result<(), fantoccini::error::CmdError> {
    let mut tries = 0;
    loop {
        let attempt = async { client.find(locator).await?.click().await };
        match attempt.await {
            Err(fantoccini::error::CmdError::Standard(e))
                if e.error == fantoccini::error::ErrorStatus::StaleElementReference
                    && tries < 5 =>
            {
                tries += 1;
            }
            other => return other,
        }
    }
}

#[tokio::test]
async fn an_agent_sees_a_message_arrive_live_and_replies() {
    let Some((driver, chromium)) = start_driver().await else {
        return;
    };
    let receiver = FakeReceiver::start(vec![]).await;
    let url = receiver.url.clone();
    let app = spawn_app_with(|c| c.outbound.url = url).await;
    app.post_message(&message("m-0", "ans", "Eerste vraag van vandaag"))
        .await;
    app.conversations().await;

    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic", "--lang=nl"]
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a webdriver session");

    let result = async {
        client.goto(&format!("{}/login", app.base)).await?;
        client.find(Locator::Id("email")).await?.send_keys(EMAIL).await?;
        client.find(Locator::Id("password")).await?.send_keys(PASSWORD).await?;
        client.find(Locator::Id("login-submit")).await?.click().await?;
        client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("#inbox-rows tr.conv")).await?;
        // The live stream is connected before we post.
        client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("#live-state.on")).await?;

        let evil = "Pakket kwijt <script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\">";
        app.post_message(&message("m-1", "kim", evil)).await;
        // The live script replaces rows and messages as events arrive, so elements are
        // looked up fresh (or read through the page) instead of held across events.
        let kim_link = Locator::XPath(
            "//tr[contains(@class,'conv')][td[contains(@class,'customer')][text()='Klant kim']]//td[contains(@class,'first-line')]/a",
        );
        client.wait().at_most(Duration::from_secs(10)).for_element(kim_link).await?;
        let line = client
            .execute(
                "return Array.from(document.querySelectorAll('#inbox-rows tr.conv'))
                   .filter(r => r.querySelector('td.customer').textContent === 'Klant kim')
                   .map(r => r.querySelector('td.first-line a').textContent)[0]",
                vec![],
            )
            .await?;
        assert_eq!(line, json!(evil), "customer HTML is shown as text");
        let pwned = client.execute("return [window.pwned === undefined, document.querySelectorAll('#inbox-rows script, #inbox-rows img').length]", vec![]).await?;
        assert_eq!(pwned, json!([true, 0]), "customer HTML must stay inert");

        click_fresh(&client, kim_link).await?;
        client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Id("reply-text")).await?;
        let timeline_text = client.execute("return document.querySelector('#timeline li.msg.in .text').textContent", vec![]).await?;
        assert_eq!(timeline_text, json!(evil));
        // The composer: an empty box cannot be sent, and says why.
        client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("#reply-send[disabled]")).await?;
        let why = client
            .execute("return [document.getElementById('reply-blocked').textContent, JSON.parse(document.body.dataset.texts).nothing_to_send]", vec![])
            .await?;
        assert_eq!(why[0], why[1], "in the page's language");
        assert!(why[0].as_str().is_some_and(|w| !w.is_empty()));
        // A risky draft is flagged beside the box with the words that triggered it.
        let risky = "Zoals we al drie keer hebben uitgelegd: bel ons op 06-12345678.";
        client.find(Locator::Id("reply-text")).await?.send_keys(risky).await?;
        client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("#reply-flags li.flag-tone")).await?;
        let shown = client
            .execute("return [document.getElementById('reply-count').textContent, JSON.parse(document.body.dataset.texts).characters, Array.from(document.querySelectorAll('#reply-flags li')).map(li => [li.className, li.querySelector('q') ? li.querySelector('q').textContent : ''])]", vec![])
            .await?;
        let unit = shown[1].as_str().unwrap_or_default();
        assert_eq!(shown[0], json!(format!("{} {unit}", risky.chars().count())), "the API channel sets no limit");
        let flags = shown[2].as_array().expect("flags");
        assert!(flags.contains(&json!(["flag flag-tone", "Zoals we al"])), "{flags:?}");
        assert!(!flags.iter().any(|f| f[0] == "flag flag-personal_data"), "a private reply has no personal-data flag: {flags:?}");
        if let Ok(dir) = std::env::var("BALIE_SCREENSHOT_DIR") {
            client.set_window_size(1100, 1000).await?;
            client.execute("document.getElementById('reply-form').scrollIntoView()", vec![]).await?;
            let png = client.screenshot().await?;
            std::fs::write(std::path::Path::new(&dir).join("composer.png"), png).expect("screenshot written");
        }
        client.find(Locator::Id("reply-text")).await?.clear().await?;
        let reply = "Hoi Kim, wat vervelend! Ik zoek het direct voor je uit en laat vandaag nog iets weten.";
        client.find(Locator::Id("reply-text")).await?.send_keys(reply).await?;
        // Wait for the composer's answer about this draft, not the one before.
        let counted = format!("//p[@id='reply-count'][starts-with(text(), '{} ')]", reply.chars().count());
        client.wait().at_most(Duration::from_secs(10)).for_element(Locator::XPath(&counted)).await?;
        client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("#reply-send:not([disabled])")).await?;
        let tone = client.execute("return document.querySelectorAll('#reply-flags li.flag-tone').length", vec![]).await?;
        assert_eq!(tone, json!(0), "a courteous reply raises no tone flag");
        client.find(Locator::Id("reply-send")).await?.click().await?;
        // The reply is on the timeline, and its delivery state turns to "sent" live.
        client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("#timeline li.msg.out .delivery.sent")).await?;
        let out_text = client.execute("return Array.from(document.querySelectorAll('#timeline li.msg.out .text')).map(e => e.textContent)", vec![]).await?;
        assert_eq!(out_text, json!([reply]), "exactly one reply on the timeline");
        let pwned = client.execute("return window.pwned === undefined", vec![]).await?;
        assert_eq!(pwned, json!(true));
        Ok::<_, fantoccini::error::CmdError>(())
    }
    .await;
    let _ = client.close().await;
    result.expect("browser flow");
    let got = receiver.got();
    assert_eq!(got.len(), 1, "the reply reached the webhook once");
    assert_eq!(got[0].body["recipient"]["id"], "kim");
}
