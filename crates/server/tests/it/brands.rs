//! Brands and roles, tried on every route the router has: the route-by-role matrix written
//! out here (not read from the code's permission table), and every route tried by one
//! brand's users and token with another brand's ids.

use std::collections::BTreeSet;
use std::time::Duration;

use balie_core::{BrandId, BrandSlug, ConversationId, ConversationStatus, Role, UserId};
use balie_server::auth;
use reqwest::StatusCode;

use crate::support::*;

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// Anyone: sign-in, language, assets, health, metrics; platform webhooks, which carry
    /// the platform's signature instead of a user's session.
    Public,
    /// A signed-in member with one of these roles in the current brand.
    Roles(&'static [Role]),
    /// A signed-in member with one of these roles, or an API token.
    RolesOrToken(&'static [Role]),
    /// An API token only.
    Token,
}

const ALL: &[Role] = &[Role::Agent, Role::Supervisor, Role::Admin];
const SUPERVISORS: &[Role] = &[Role::Supervisor, Role::Admin];
const ADMINS: &[Role] = &[Role::Admin];

/// The expected matrix, one line per route and method. The assign line is tried as
/// releasing a conversation another agent holds (taking a free one is everyone's).
const MATRIX: &[(&str, &str, Who)] = &[
    ("GET", "/", Who::Roles(ALL)),
    ("GET", "/login", Who::Public),
    ("POST", "/login", Who::Public),
    ("POST", "/logout", Who::Public),
    ("GET", "/lang/{code}", Who::Public),
    ("GET", "/conversations/{id}", Who::Roles(ALL)),
    ("POST", "/conversations/{id}/reply", Who::Roles(ALL)),
    ("POST", "/conversations/{id}/draft", Who::Roles(ALL)),
    ("POST", "/conversations/{id}/status", Who::Roles(ALL)),
    (
        "POST",
        "/conversations/{id}/assign",
        Who::Roles(SUPERVISORS),
    ),
    ("POST", "/customers/{id}", Who::Roles(ALL)),
    ("GET", "/search", Who::Roles(ALL)),
    ("POST", "/brand", Who::Roles(ALL)),
    ("GET", "/assets/app.js", Who::Public),
    ("GET", "/assets/app.css", Who::Public),
    ("GET", "/admin/channels", Who::Roles(ADMINS)),
    ("POST", "/admin/channels", Who::Roles(ADMINS)),
    ("GET", "/events", Who::RolesOrToken(ALL)),
    ("GET", "/api/v1/conversations", Who::RolesOrToken(ALL)),
    ("POST", "/api/v1/messages", Who::Token),
    ("GET", "/healthz", Who::Public),
    ("GET", "/metrics", Who::Public),
    ("GET", "/webhooks/{platform}/{channel}", Who::Public),
    ("POST", "/webhooks/{platform}/{channel}", Who::Public),
];

/// Every (method, path) the application's router answers, read from the router itself
/// (its `Debug` form lists each route's path and allowed methods).
fn routes_from_the_router() -> BTreeSet<(String, String)> {
    let debug = format!("{:?}", balie_server::routes());
    let (routes, rest) = debug
        .split_once("node: Node { paths: {")
        .expect("the router lists its paths");
    let paths_part = rest.split("fallback_router").next().unwrap_or_default();
    let mut paths = std::collections::HashMap::new();
    for entry in paths_part.split("RouteId(").skip(1) {
        let (id, after) = entry.split_once("): \"").expect("a route id and path");
        let path = after.split('"').next().expect("a path");
        paths.insert(id.to_string(), path.to_string());
    }
    let mut out = BTreeSet::new();
    for entry in routes.split("RouteId(").skip(1) {
        let Some((id, after)) = entry.split_once("): MethodRouter(") else {
            continue;
        };
        let allowed = after
            .split_once("allow_header: Bytes(b\"")
            .and_then(|(_, a)| a.split('"').next())
            .expect("a route's allowed methods");
        for method in allowed.split(',').filter(|m| *m != "HEAD") {
            out.insert((method.to_string(), paths[id].clone()));
        }
    }
    assert!(out.len() > 10, "routes read from the router: {out:?}");
    out
}

/// Two brands: the app's own (`a`, where the test agent works) and `b`, each with an API
/// channel and one customer's conversation; members of `a` with each role.
struct TwoBrands {
    a: BrandId,
    b_slug: String,
    conv_a: i64,
    customer_a: i64,
    conv_b: i64,
    customer_b: i64,
    token_b: String,
    /// An agent of `a` who holds `conv_a` whenever a test needs someone else to hold it.
    holder: UserId,
    cookies: Vec<(Role, String)>,
}

async fn two_brands(app: &TestApp) -> TwoBrands {
    let now = balie_server::outbox::now_ms();
    let b = app
        .store
        .create_brand(&BrandSlug::parse("visser").unwrap(), "Visser", now)
        .await
        .unwrap();
    let token_b = auth::new_token("balie").unwrap();
    app.store
        .create_api_token("visser", &auth::token_hash(&token_b), b.id, now)
        .await
        .unwrap();
    let r = app
        .post_message(&message("a1", "anna", "Mijn taart is kapot"))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let mut body = message("b1", "bob", "Geheime vis van Visser");
    body["channel"] = "vis-geheim".into();
    let r = app
        .http
        .post(format!("{}/api/v1/messages", app.base))
        .bearer_auth(&token_b)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let first = |brand: BrandId| {
        let store = app.store.clone();
        async move {
            let rows = store
                .inbox(brand, ConversationStatus::Open, 10)
                .await
                .unwrap();
            rows.first()
                .map(|r| (r.conversation.id.0, r.conversation.customer_id.0))
        }
    };
    let (conv_a, customer_a) = eventually(10, || first(app.brand)).await;
    let (conv_b, customer_b) = eventually(10, || first(b.id)).await;
    let holder = app
        .add_user("holder@balie.test", Role::Agent, &[app.brand])
        .await
        .id;
    app.add_user("super@balie.test", Role::Supervisor, &[app.brand])
        .await;
    app.add_user("admin@balie.test", Role::Admin, &[app.brand])
        .await;
    let mut cookies = Vec::new();
    for (role, email) in [
        (Role::Agent, EMAIL),
        (Role::Supervisor, "super@balie.test"),
        (Role::Admin, "admin@balie.test"),
    ] {
        cookies.push((role, app.login_as(email, PASSWORD).await));
    }
    TwoBrands {
        a: app.brand,
        b_slug: b.slug.to_string(),
        conv_a,
        customer_a,
        conv_b,
        customer_b,
        token_b,
        holder,
        cookies,
    }
}

/// Whose ids a request names.
#[derive(Clone, Copy)]
struct Ids {
    conversation: i64,
    customer: i64,
    channel: &'static str,
    brand_slug: &'static str,
}

/// The request a route is tried with: its path with `ids` filled in, and a plausible body.
fn request(
    client: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    ids: Ids,
    n: usize,
) -> reqwest::RequestBuilder {
    let url = format!(
        "{base}{}",
        path.replace(
            "/conversations/{id}",
            &format!("/conversations/{}", ids.conversation)
        )
        .replace("/customers/{id}", &format!("/customers/{}", ids.customer))
        .replace("{code}", "en")
        .replace("{platform}", "telegram")
        .replace("{channel}", ids.channel)
    );
    let key = format!("key-{n}");
    let channel_name = if ids.channel == "web" {
        format!("tg-{n}")
    } else {
        ids.channel.to_string()
    };
    let back = ids.conversation.to_string();
    let form: Vec<(&str, &str)> = match path {
        "/login" => vec![
            ("email", "nobody@balie.test"),
            ("password", "wrong password"),
        ],
        "/conversations/{id}/reply" => vec![("text", "Hallo"), ("key", &key)],
        "/conversations/{id}/draft" => vec![("text", "Hallo")],
        "/conversations/{id}/status" => vec![("status", "open")],
        "/conversations/{id}/assign" => vec![("to", "nobody")],
        "/customers/{id}" => vec![
            ("display_name", "Veranderd"),
            ("notes", ""),
            ("back", &back),
        ],
        "/brand" => vec![("brand", ids.brand_slug)],
        "/admin/channels" => vec![
            ("kind", "telegram"),
            ("name", &channel_name),
            ("bot_token", "1:bot"),
            ("secret_token", "s"),
        ],
        _ => vec![],
    };
    match method {
        "GET" if path == "/search" => client.get(format!("{url}?q=vis")),
        "GET" => client.get(url),
        _ if path == "/api/v1/messages" => {
            let mut body = message(&format!("m-{n}"), "carla", "Nog een vraag");
            body["channel"] = ids.channel.into();
            client.post(url).json(&body)
        }
        _ if path.starts_with("/webhooks/") => client.post(url).body("{}"),
        _ => client.post(url).form(&form),
    }
}

#[tokio::test]
async fn every_route_is_in_the_matrix_and_each_role_gets_what_it_says() {
    let listed: BTreeSet<(String, String)> = MATRIX
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        routes_from_the_router(),
        listed,
        "every route of the router has exactly one line in the matrix"
    );
    let app = spawn_app().await;
    let w = two_brands(&app).await;
    let client = no_redirects();
    let ids = Ids {
        conversation: w.conv_a,
        customer: w.customer_a,
        channel: "web",
        brand_slug: "balie",
    };
    let mut n = 0;
    // Logging out ends the session: that line goes last.
    let mut lines: Vec<_> = MATRIX.iter().collect();
    lines.sort_by_key(|(_, p, _)| *p == "/logout");
    for (method, path, who) in lines {
        for (role, cookie) in &w.cookies {
            n += 1;
            // Someone else holds the conversation, so `assign` is a release of another's.
            app.store
                .assign(
                    w.a,
                    ConversationId(w.conv_a),
                    Some(w.holder),
                    Some(w.holder),
                    balie_server::outbox::now_ms(),
                )
                .await
                .unwrap();
            let status = request(&client, &app.base, method, path, ids, n)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status();
            let allowed = match who {
                Who::Public | Who::Token => None,
                Who::Roles(roles) | Who::RolesOrToken(roles) => Some(roles.contains(role)),
            };
            match allowed {
                Some(true) => assert!(
                    status.is_success() || status.is_redirection(),
                    "{role:?} {method} {path}: {status}"
                ),
                Some(false) => {
                    assert_eq!(status, StatusCode::FORBIDDEN, "{role:?} {method} {path}")
                }
                None => {}
            }
        }
        // Without a session or token.
        n += 1;
        let status = request(&client, &app.base, method, path, ids, n)
            .send()
            .await
            .unwrap()
            .status();
        match who {
            Who::Public if path.starts_with("/webhooks/") => {}
            Who::Public => assert!(
                !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
                "anyone {method} {path}: {status}"
            ),
            Who::Roles(_) if *method == "GET" => {
                assert_eq!(status, StatusCode::SEE_OTHER, "{method} {path} to sign-in")
            }
            _ => assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}"),
        }
        if matches!(who, Who::Token | Who::RolesOrToken(_)) {
            n += 1;
            let status = request(&client, &app.base, method, path, ids, n)
                .bearer_auth(&app.token)
                .send()
                .await
                .unwrap()
                .status();
            assert!(status.is_success(), "token {method} {path}: {status}");
        }
    }
}

/// Reads a live stream from the start for a moment and returns what came.
async fn replay(req: reqwest::RequestBuilder) -> String {
    let mut resp = req.header("last-event-id", "0").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut text = String::new();
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(until, resp.chunk()).await {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

#[tokio::test]
async fn every_route_refuses_another_brands_ids_as_not_found_and_shows_none_of_its_data() {
    let app = spawn_app().await;
    let w = two_brands(&app).await;
    let client = no_redirects();
    let theirs = Ids {
        conversation: w.conv_b,
        customer: w.customer_b,
        channel: "vis-geheim",
        brand_slug: "visser",
    };
    assert_eq!(w.b_slug, theirs.brand_slug);
    let secret = "Geheime vis";
    let admin = &w.cookies[2].1;
    let mut n = 1000;
    for (method, path, who) in MATRIX {
        n += 1;
        let mut req = request(&client, &app.base, method, path, theirs, n);
        req = match who {
            Who::Token => req.bearer_auth(&app.token),
            _ => req.header("cookie", admin),
        };
        if *path == "/events" {
            let seen = replay(req).await;
            assert!(seen.contains("taart"), "our own events do come");
            assert!(
                !seen.contains(secret),
                "another brand's event leaked: {seen}"
            );
            let seen = replay(
                client
                    .get(format!("{}/events", app.base))
                    .bearer_auth(&app.token),
            )
            .await;
            assert!(!seen.contains(secret), "through a token: {seen}");
            continue;
        }
        if *path == "/logout" {
            continue;
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let names_their_ids =
            path.contains("{id}") || *path == "/brand" || *path == "/api/v1/messages";
        if names_their_ids {
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "{method} {path} with their ids"
            );
        }
        assert!(
            !body.contains(secret),
            "{method} {path} showed another brand's words"
        );
    }
    let api = client
        .get(format!("{}/api/v1/conversations", app.base))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(api.contains("taart") && !api.contains(secret), "{api}");
    // Nothing of theirs changed: not closed, assigned, renamed, replied to or re-channelled.
    let view = app
        .store
        .conversation(
            app.store.brand_by_slug("visser").await.unwrap().unwrap().id,
            ConversationId(w.conv_b),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.row.conversation.status, ConversationStatus::Open);
    assert_eq!(view.row.conversation.assignee, None);
    assert_ne!(view.customer.display_name, "Veranderd");
    assert_eq!(view.timeline.len(), 1, "no reply went to their customer");
    let channel = app
        .store
        .channel_by_name("vis-geheim")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(channel.kind, balie_core::ChannelKind::Api);
    // And their own token sees theirs.
    let theirs_api = client
        .get(format!("{}/api/v1/conversations", app.base))
        .bearer_auth(&w.token_b)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(theirs_api.contains(secret) && !theirs_api.contains("taart"));
}

#[tokio::test]
async fn an_agency_user_switches_between_brands_and_sees_each_ones_inbox() {
    let app = spawn_app().await;
    let w = two_brands(&app).await;
    let visser = app.store.brand_by_slug("visser").await.unwrap().unwrap();
    app.add_user("agency@balie.test", Role::Agent, &[app.brand, visser.id])
        .await;
    let cookie = app.login_as("agency@balie.test", PASSWORD).await;
    let client = no_redirects();
    let inbox = |brand_cookie: Option<String>| {
        let mut c = cookie.clone();
        if let Some(b) = brand_cookie {
            c = format!("{c}; {b}");
        }
        let client = client.clone();
        let base = app.base.clone();
        async move {
            client
                .get(format!("{base}/"))
                .header("cookie", c)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let first = inbox(None).await;
    assert!(first.contains("Mijn taart") && !first.contains("Geheime vis"));
    assert!(
        first.contains(r#"<select id="brand-switch" name="brand">"#),
        "the switcher"
    );
    let switched = client
        .post(format!("{}/brand", app.base))
        .header("cookie", &cookie)
        .form(&[("brand", "visser")])
        .send()
        .await
        .unwrap();
    assert_eq!(switched.status(), StatusCode::SEE_OTHER);
    let set = switched
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(set, "balie_brand=visser");
    let second = inbox(Some(set)).await;
    assert!(second.contains("Geheime vis") && !second.contains("Mijn taart"));
    // Naming a brand one does not belong to in the cookie changes nothing.
    let agent_with_their_cookie = client
        .get(format!("{}/conversations/{}", app.base, w.conv_b))
        .header("cookie", format!("{}; balie_brand=visser", w.cookies[0].1))
        .send()
        .await
        .unwrap();
    assert_eq!(agent_with_their_cookie.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn only_the_owner_points_a_channel_at_another_host_and_gives_its_secrets_again() {
    let app = spawn_app().await;
    let admin = app
        .add_user("admin@balie.test", Role::Admin, &[app.brand])
        .await;
    add_user(
        app.store.as_ref(),
        "owner@balie.test",
        true,
        Role::Admin,
        &[],
    )
    .await;
    let admin_cookie = app.login_as(&admin.email, PASSWORD).await;
    let owner_cookie = app.login_as("owner@balie.test", PASSWORD).await;
    let client = no_redirects();
    let save = |cookie: &str, form: &[(&str, &str)]| {
        client
            .post(format!("{}/admin/channels", app.base))
            .header("cookie", cookie)
            .form(form)
            .send()
    };
    let base = [
        ("kind", "telegram"),
        ("name", "tg"),
        ("bot_token", "1:secret-bot"),
    ];
    let r = save(
        &admin_cookie,
        &[&base[..], &[("secret_token", "s1")]].concat(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "an admin adds a channel");
    let repoint = [
        ("kind", "telegram"),
        ("name", "tg"),
        ("api_base", "https://elsewhere.example"),
    ];
    let r = save(&admin_cookie, &repoint).await.unwrap();
    let page = r.text().await.unwrap();
    assert!(page.contains("owner"), "an admin may not repoint: {page}");
    let r = save(&owner_cookie, &repoint).await.unwrap();
    let page = r.text().await.unwrap();
    assert!(
        page.contains("credentials again"),
        "the secrets are asked again: {page}"
    );
    let settings = |s: String| s.contains("elsewhere");
    let channel = app.store.channel_by_name("tg").await.unwrap().unwrap();
    assert!(
        !settings(channel.settings.clone()),
        "refusals changed nothing"
    );
    let with_secrets = [
        &repoint[..],
        &[("bot_token", "2:new-bot"), ("secret_token", "s2")],
    ]
    .concat();
    let r = save(&owner_cookie, &with_secrets).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let channel = app.store.channel_by_name("tg").await.unwrap().unwrap();
    assert!(settings(channel.settings), "the owner repointed it");
}
