//! The admin channel page: admins add platform channels; credentials are sealed and never
//! shown back; other roles are refused.

use balie_core::Role;
use reqwest::StatusCode;

use crate::support::*;

#[tokio::test]
async fn an_admin_adds_a_channel_and_its_secrets_are_never_shown() {
    let app = spawn_app().await;
    app.add_user("admin@balie.test", Role::Admin, &[app.brand])
        .await;
    let cookie = app.login_as("admin@balie.test", PASSWORD).await;
    let no_redirect = no_redirects();
    let bot_token = "123456:bot-token-that-must-stay-secret";
    let resp = no_redirect
        .post(format!("{}/admin/channels", app.base))
        .header("cookie", &cookie)
        .form(&[
            ("kind", "telegram"),
            ("name", "tg-main"),
            ("bot_token", bot_token),
            ("secret_token", "webhook-secret-xyz"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let channel = app
        .store
        .channel_by_name("tg-main")
        .await
        .unwrap()
        .expect("channel created");
    assert_eq!(channel.kind, balie_core::ChannelKind::Telegram);
    assert!(
        !channel.settings.contains(bot_token),
        "secrets are not in plain settings"
    );
    let page = app
        .http
        .get(format!("{}/admin/channels", app.base))
        .header("cookie", &cookie)
        .header("accept-language", "en")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("tg-main"));
    assert!(
        page.contains("/webhooks/telegram/tg-main"),
        "the page tells where to point the platform"
    );
    assert!(page.contains("bot_token: set"), "{page}");
    assert!(
        !page.contains(bot_token) && !page.contains("webhook-secret-xyz"),
        "credentials are never shown back"
    );
    // A bad name changes nothing and says why.
    let resp = app
        .http
        .post(format!("{}/admin/channels", app.base))
        .header("cookie", &cookie)
        .form(&[("kind", "x"), ("name", "bad name!")])
        .send()
        .await
        .unwrap();
    assert!(resp.text().await.unwrap().contains("channel-error"));
    assert!(
        app.store
            .channel_by_name("bad name!")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn agents_cannot_change_channels() {
    let app = spawn_app().await;
    let cookie = app.login().await;
    let resp = app
        .http
        .get(format!("{}/admin/channels", app.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = app
        .http
        .post(format!("{}/admin/channels", app.base))
        .header("cookie", &cookie)
        .form(&[("kind", "telegram"), ("name", "sneaky")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(app.store.channel_by_name("sneaky").await.unwrap().is_none());
}
