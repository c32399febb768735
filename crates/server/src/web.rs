//! The agent UI: server-rendered pages (login, inbox, conversation, search) whose live
//! parts are updated by a small script from the event stream. Customer text is always
//! rendered as text: templates escape it, the script only ever sets `textContent`.

use askama::Template;
use axum::Extension;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use balie_core::{
    ConversationId, ConversationStatus, CustomerId, Direction, EscalationSignal, Intent,
    MessageAnalysis, Millis, PlaceKind, Priority, Sentiment, User,
};

use balie_store::{InboxRow, TimelineMessage};
use serde::Deserialize;

use crate::access::{Action, Member, member};
use crate::compose::{DraftLint, ReplyContext};
use crate::edge::Client;
use crate::error::ApiError;
use crate::i18n::{Lang, Texts};
use crate::metrics::Metrics;
use crate::signin::Refusal;
use crate::{AppState, auth};

/// The session cookie over plain HTTP.
const SESSION_COOKIE: &str = "balie_session";
/// The session cookie over HTTPS: `__Host-` makes the browser refuse one set by another
/// site or for a wider domain, and requires `Secure` and `Path=/`.
const HOST_SESSION_COOKIE: &str = "__Host-balie_session";

fn session_cookie_name(client: Client) -> &'static str {
    if client.https {
        HOST_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

/// Each `name=value` pair of the request's cookies.
fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
}

pub fn has_session_cookie(headers: &HeaderMap) -> bool {
    session_token(headers).is_some()
}

/// Removes a plain `balie_session` cookie (see [`HOST_SESSION_COOKIE`]).
pub fn drop_plain_session_cookie(headers: &mut HeaderMap) {
    let kept: Vec<String> = cookies(headers)
        .filter(|(name, _)| *name != SESSION_COOKIE)
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    headers.remove("cookie");
    if let Ok(v) = HeaderValue::from_str(&kept.join("; "))
        && !kept.is_empty()
    {
        headers.insert("cookie", v);
    }
}

/// Unbidden bidirectional controls (embeddings, overrides, isolates) in customer text
/// would reorder what surrounds them on the page; they are shown as visible marks instead.
/// Storage keeps the text as it came.
pub fn shown(text: &str) -> String {
    text.chars()
        .fold(String::with_capacity(text.len()), |mut out, c| {
            if matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}') {
                out.push_str(&format!("[U+{:04X}]", u32::from(c)));
            } else {
                out.push(c);
            }
            out
        })
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(inbox))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/lang/{code}", get(set_lang))
        .route("/conversations/{id}", get(conversation))
        .route("/conversations/{id}/reply", post(reply))
        .route("/conversations/{id}/draft", post(check_draft))
        .route("/conversations/{id}/status", post(set_status))
        .route("/conversations/{id}/assign", post(assign))
        .route("/customers/{id}", post(update_customer))
        .route("/search", get(search))
        .route("/brand", post(switch_brand))
        .route("/assets/app.js", get(app_js))
        .route("/assets/app.css", get(app_css))
}

/// The session token from the request's cookie (either name; over HTTPS the plain one has
/// already been removed by `security::guard`).
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    cookies(headers)
        .find(|(name, value)| {
            (*name == SESSION_COOKIE || *name == HOST_SESSION_COOKIE) && !value.is_empty()
        })
        .map(|(_, value)| value.to_string())
}

/// The logged-in agent, if the request carries a live session cookie.
pub async fn session_user(state: &AppState, headers: &HeaderMap) -> Result<Option<User>, ApiError> {
    let Some(token) = session_token(headers) else {
        return Ok(None);
    };
    Ok(state
        .store
        .session_user(&auth::token_hash(&token), state.clock.now())
        .await?)
}

/// An HTML page response, or a redirect to the login page.
pub enum Page {
    Html(String),
    Login,
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        match self {
            Page::Html(body) => {
                let mut r = Html(body).into_response();
                let h = r.headers_mut();
                h.insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(
                        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
                    ),
                );
                r
            }
            Page::Login => Redirect::to("/login").into_response(),
        }
    }
}

pub fn render(t: impl Template) -> Result<Page, ApiError> {
    t.render()
        .map(Page::Html)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("template: {e}")))
}

fn priority_word(t: &Texts, p: Priority) -> &'static str {
    match p {
        Priority::Urgent => t.urgent,
        Priority::High => t.high,
        Priority::Normal => t.normal,
        Priority::Low => t.low,
    }
}

fn status_word(t: &Texts, s: ConversationStatus) -> &'static str {
    match s {
        ConversationStatus::Open => t.open,
        ConversationStatus::Pending => t.pending,
        ConversationStatus::Snoozed => t.snoozed,
        ConversationStatus::Closed => t.closed,
    }
}

/// "12 min", "3 u 5 min" style durations.
fn span(ms: i64) -> String {
    let m = (ms.max(0) / 60_000) as u64;
    if m < 60 {
        format!("{m} min")
    } else {
        format!("{} h {} min", m / 60, m % 60)
    }
}

fn clock(ms: Millis) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(|t| {
            format!(
                "{:02}-{:02} {:02}:{:02} UTC",
                t.day(),
                u8::from(t.month()),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_default()
}

struct RowView {
    id: i64,
    customer: String,
    channel: String,
    first_line: String,
    waiting: String,
    due: String,
    overdue: bool,
    priority: &'static str,
    priority_rank: i64,
    waiting_flag: i64,
    due_ms: i64,
    since_ms: i64,
    sentiment: String,
    intent: String,
    escalation: bool,
    assignee: String,
}

fn row_view(t: &Texts, r: &InboxRow, now: Millis) -> RowView {
    let c = &r.conversation;
    let (waiting, due, overdue) = match (c.waiting_since, c.reply_due) {
        (Some(since), Some(due)) => {
            let left = due - now;
            let due_s = if left >= 0 {
                span(left)
            } else {
                format!("{} {}", t.overdue, span(-left))
            };
            (span(now - since), due_s, left < 0)
        }
        _ => (t.answered.to_string(), String::new(), false),
    };
    RowView {
        id: c.id.0,
        customer: shown(&r.customer_name),
        channel: shown(&r.channel_name),
        first_line: shown(&r.first_line),
        waiting,
        due,
        overdue,
        priority: priority_word(t, c.priority),
        priority_rank: c.priority.rank(),
        waiting_flag: i64::from(c.waiting_since.is_none()),
        due_ms: c.reply_due.unwrap_or(i64::MAX),
        since_ms: c.waiting_since.unwrap_or(0),
        sentiment: sentiment_word(t, r.last.as_ref()),
        intent: intent_word(t, r.last.as_ref()),
        escalation: r.last.as_ref().is_some_and(|a| a.escalation),
        assignee: shown(r.assignee_name.as_deref().unwrap_or_default()),
    }
}

/// The UI word for a message's sentiment, or empty when it was not analysed.
fn sentiment_word(t: &Texts, analysis: Option<&MessageAnalysis>) -> String {
    let word = match analysis.map(|a| a.sentiment) {
        Some(Sentiment::Negative) => t.negative,
        Some(Sentiment::Neutral) => t.neutral,
        Some(Sentiment::Positive) => t.positive,
        None => "",
    };
    word.to_string()
}

/// The UI word for a message's intent, or empty when it was not analysed.
fn intent_word(t: &Texts, analysis: Option<&MessageAnalysis>) -> String {
    let word = match analysis.map(|a| a.intent) {
        Some(Intent::Complaint) => t.complaint,
        Some(Intent::Question) => t.question,
        Some(Intent::Praise) => t.praise,
        Some(Intent::Other) => t.other,
        None => "",
    };
    word.to_string()
}

/// An escalation signal in the agent's language.
fn signal_word(t: &Texts, signal: EscalationSignal) -> &'static str {
    match signal {
        EscalationSignal::RepeatContact => t.repeat_contact,
        EscalationSignal::ThreatToLeave => t.threat_to_leave,
        EscalationSignal::GoingPublic => t.going_public,
        EscalationSignal::ShamingHashtag => t.shaming_hashtag,
        EscalationSignal::TimePressure => t.time_pressure,
    }
}

struct MessageView {
    id: i64,
    outbound: bool,
    author: String,
    channel: String,
    text: String,
    at: String,
    delivery: String,
    delivery_class: &'static str,
    error: String,
    removed: bool,
    sentiment: String,
    intent: String,
    escalation: bool,
    signals: String,
    place: &'static str,
    place_url: String,
    /// Epoch ms, for the script to show the time in the agent's own time zone.
    at_ms: i64,
}

fn place_word(t: &Texts, kind: PlaceKind) -> &'static str {
    match kind {
        PlaceKind::Direct => t.place_direct,
        PlaceKind::Comment => t.place_comment,
        PlaceKind::Post => t.place_post,
        PlaceKind::Mention => t.place_mention,
        PlaceKind::Email => t.place_email,
        PlaceKind::Api => t.place_api,
    }
}

/// A platform link is only offered when it is plainly http(s): never `javascript:` or data.
fn safe_link(url: Option<&str>) -> String {
    match url {
        Some(u) if (u.starts_with("https://") || u.starts_with("http://")) && u.len() <= 2048 => {
            u.to_string()
        }
        _ => String::new(),
    }
}

fn message_view(t: &Texts, m: &TimelineMessage) -> MessageView {
    let analysis = m.analysis.as_ref();
    let signals = analysis
        .map(|a| {
            a.escalation_signals
                .iter()
                .map(|s| signal_word(t, *s))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let (delivery, class) = match m.message.delivery {
        balie_core::DeliveryState::Received => (t.received, "received"),
        balie_core::DeliveryState::Queued => (t.queued, "queued"),
        balie_core::DeliveryState::Sent => (t.sent, "sent"),
        balie_core::DeliveryState::Failed => (t.failed, "failed"),
    };
    MessageView {
        id: m.message.id.0,
        outbound: m.message.direction == Direction::Out,
        author: shown(&m.author_name),
        channel: shown(&m.channel_name),
        text: shown(&m.message.text),
        at: clock(m.message.created_at),
        at_ms: m.message.created_at,
        delivery: delivery.to_string(),
        delivery_class: class,
        error: shown(m.message.delivery_error.as_deref().unwrap_or_default()),
        removed: m.message.removed,
        sentiment: sentiment_word(t, analysis),
        intent: intent_word(t, analysis),
        escalation: analysis.is_some_and(|a| a.escalation),
        signals,
        place: m
            .message
            .place
            .as_ref()
            .map_or("", |p| place_word(t, p.kind)),
        place_url: safe_link(m.message.place.as_ref().and_then(|p| p.url.as_deref())),
    }
}

pub fn texts_json(t: &Texts) -> String {
    serde_json::to_string(t).unwrap_or_else(|_| "{}".into())
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    t: &'static Texts,
    failed: bool,
    /// Why the sign-in was not even tried (throttled, busy), or empty.
    refused: String,
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxPage {
    t: &'static Texts,
    texts: String,
    user: Member,
    rows: Vec<RowView>,
    last_event: i64,
}

#[derive(Template)]
#[template(path = "conversation.html")]
struct ConversationPage {
    t: &'static Texts,
    texts: String,
    user: Member,
    id: i64,
    customer_id: i64,
    /// The name as stored, for the edit form; `customer_shown` for display.
    customer_name: String,
    customer_shown: String,
    notes: String,
    identities: Vec<(String, String)>,
    channel: String,
    status: &'static str,
    closed: bool,
    priority: &'static str,
    assignee: String,
    mine: bool,
    messages: Vec<MessageView>,
    reply_key: String,
    last_event: i64,
    /// The reply box's counter for an empty draft ("0 / 280 ..."), counted as the platform counts.
    counter: String,
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage {
    t: &'static Texts,
    texts: String,
    user: Member,
    query: String,
    hits: Vec<(i64, String)>,
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
}

#[derive(Deserialize)]
struct LoginQuery {
    failed: Option<String>,
}

async fn login_page(headers: HeaderMap, Query(q): Query<LoginQuery>) -> Result<Page, ApiError> {
    let t = Lang::from_headers(&headers).texts();
    render(LoginPage {
        t,
        failed: q.failed.is_some(),
        refused: String::new(),
    })
}

async fn login(
    State(state): State<AppState>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, ApiError> {
    let email = form.email.trim();
    let t = Lang::from_headers(&headers).texts();
    if let Some(wait) = state
        .signin
        .throttled(email, client.addr, std::time::Instant::now())
    {
        return refuse_login(&state, t, Refusal::Throttled(wait), email, client);
    }
    let (user, hash) = match state.store.user_credentials(email).await? {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let ok = match state
        .signin
        .check(
            email,
            client.addr,
            &form.password,
            hash.as_deref(),
            &state.metrics,
        )
        .await
    {
        Ok(ok) => ok,
        Err(refusal) => return refuse_login(&state, t, refusal, email, client),
    };
    let Some(user) = user.filter(|_| ok) else {
        state.signin.failed(email, client.addr);
        Metrics::inc(&state.metrics.requests_rejected, 1);
        tracing::warn!(account = ?email, client = %client.addr, "failed sign-in");
        return Ok(Redirect::to("/login?failed=1").into_response());
    };
    state.signin.succeeded(email);
    let token = auth::new_token("sess").map_err(|e| ApiError::Internal(e.into()))?;
    let expires = state.clock.now() + state.config.session_hours * 3_600_000;
    state
        .store
        .create_session(
            user.id,
            &auth::token_hash(&token),
            expires,
            state.clock.now(),
        )
        .await?;
    tracing::info!(account = ?email, client = %client.addr, "signed in");
    let cookie = session_cookie(client, &token, state.config.session_hours * 3600);
    let mut r = Redirect::to("/").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|e| ApiError::Internal(e.into()))?,
    );
    Ok(r)
}

/// The `Set-Cookie` value for a session (an empty token and age 0 clears it).
fn session_cookie(client: Client, token: &str, max_age: i64) -> String {
    let name = session_cookie_name(client);
    let secure = if client.https { "; Secure" } else { "" };
    format!("{name}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

/// A sign-in turned away before its password was checked: 429 with the wait, or 503.
fn refuse_login(
    state: &AppState,
    t: &'static Texts,
    refusal: Refusal,
    email: &str,
    client: Client,
) -> Result<Response, ApiError> {
    Metrics::inc(&state.metrics.logins_refused, 1);
    tracing::warn!(account = ?email, client = %client.addr, ?refusal, "sign-in refused");
    let (status, wait, words) = match refusal {
        Refusal::Throttled(wait) => (
            StatusCode::TOO_MANY_REQUESTS,
            wait.as_secs().max(1),
            t.login_throttled,
        ),
        Refusal::Busy => (StatusCode::SERVICE_UNAVAILABLE, 1, t.login_busy),
    };
    let page = render(LoginPage {
        t,
        failed: false,
        refused: format!("{words} {wait} s."),
    })?;
    Ok((status, [(header::RETRY_AFTER, wait.to_string())], page).into_response())
}

async fn logout(
    State(state): State<AppState>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = session_token(&headers) {
        state
            .store
            .delete_session(&auth::token_hash(&token))
            .await?;
        state.sessions_ended.send_modify(|n| *n += 1);
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&session_cookie(client, "", 0))
            .map_err(|e| ApiError::Internal(e.into()))?,
    );
    Ok(r)
}

async fn set_lang(Path(code): Path<String>, headers: HeaderMap) -> Response {
    let code = if code == "en" { "en" } else { "nl" };
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| {
            r.find("://")
                .and_then(|i| r[i + 3..].find('/').map(|j| r[i + 3 + j..].to_string()))
        })
        .filter(|p| p.starts_with('/') && !p.starts_with("//"))
        .unwrap_or_else(|| "/".to_string());
    let mut r = Redirect::to(&back).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "balie_lang={code}; Path=/; SameSite=Lax; Max-Age=31536000"
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn inbox(State(state): State<AppState>, headers: HeaderMap) -> Result<Page, ApiError> {
    let Some(user) = member(&state, &headers).await? else {
        return Ok(Page::Login);
    };
    user.require(Action::Read)?;
    let t = Lang::from_headers(&headers).texts();
    let last_event = state.store.last_event_id().await?.0;
    let now = state.clock.now();
    let rows = state
        .store
        .inbox(user.brand_id(), ConversationStatus::Open, 200)
        .await?;
    render(InboxPage {
        t,
        texts: texts_json(t),
        user,
        rows: rows.iter().map(|r| row_view(t, r, now)).collect(),
        last_event,
    })
}

async fn conversation(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Page, ApiError> {
    let Some(user) = member(&state, &headers).await? else {
        return Ok(Page::Login);
    };
    user.require(Action::Read)?;
    let t = Lang::from_headers(&headers).texts();
    let last_event = state.store.last_event_id().await?.0;
    let view = state
        .store
        .conversation(user.brand_id(), ConversationId(id))
        .await?
        .ok_or(ApiError::NotFound("conversation"))?;
    let c = &view.row.conversation;
    let mine = c.assignee == Some(user.user.id);
    let lang = Lang::from_headers(&headers);
    let empty_draft = ReplyContext::of(&view).lint("", agent_language(lang));
    render(ConversationPage {
        t,
        texts: texts_json(t),
        user,
        id,
        customer_id: view.customer.id.0,
        customer_name: view.customer.display_name.clone(),
        customer_shown: shown(&view.customer.display_name),
        notes: view.customer.notes.clone(),
        identities: view
            .customer
            .identities
            .iter()
            .map(|i| {
                let who = i
                    .handle
                    .clone()
                    .or_else(|| i.name.clone())
                    .unwrap_or_else(|| i.external_id.clone());
                (i.platform.clone(), shown(&who))
            })
            .collect(),
        channel: shown(&view.row.channel_name),
        status: status_word(t, c.status),
        closed: c.status == ConversationStatus::Closed,
        priority: priority_word(t, c.priority),
        assignee: shown(view.row.assignee_name.as_deref().unwrap_or_default()),
        mine,
        messages: view.timeline.iter().map(|m| message_view(t, m)).collect(),
        reply_key: auth::random_hex(16).map_err(|e| ApiError::Internal(e.into()))?,
        last_event,
        counter: counter(t, &empty_draft),
    })
}

fn agent_language(lang: Lang) -> balie_text::reply_check::AgentLanguage {
    match lang {
        Lang::Nl => balie_text::reply_check::AgentLanguage::Dutch,
        Lang::En => balie_text::reply_check::AgentLanguage::English,
    }
}

/// "31 / 280 characters as X counts", or "31 characters" where the platform sets no limit.
fn counter(t: &Texts, lint: &DraftLint) -> String {
    match lint.max_length {
        Some(max) => format!("{} / {max} {}", lint.length, t.counted_as_platform),
        None => format!("{} {}", lint.length, t.characters),
    }
}

#[derive(Deserialize)]
struct DraftForm {
    text: String,
}

/// What the reply box shows while the agent types: the `lint-reply` answer for the draft in
/// this conversation, the counter, and why Send is disabled (empty when it is not).
#[derive(serde::Serialize)]
struct DraftAnswer {
    #[serde(flatten)]
    lint: DraftLint,
    counter: String,
    blocked: String,
    /// Per flag: its name in the agent's language.
    labels: Vec<&'static str>,
}

async fn check_draft(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<DraftForm>,
) -> Result<Response, ApiError> {
    let Some(user) = member(&state, &headers).await? else {
        return Err(ApiError::Unauthorized);
    };
    user.require(Action::Reply)?;
    if form.text.len() > 64 * 1024 {
        return Err(ApiError::field("text", "the draft is too long to check"));
    }
    let view = state
        .store
        .conversation(user.brand_id(), ConversationId(id))
        .await?
        .ok_or(ApiError::NotFound("conversation"))?;
    let lang = Lang::from_headers(&headers);
    let t = lang.texts();
    let lint = ReplyContext::of(&view).lint(&form.text, agent_language(lang));
    let blocked = if form.text.trim().is_empty() {
        t.nothing_to_send.to_owned()
    } else if lint.fits {
        String::new()
    } else {
        lint.flags
            .iter()
            .find(|f| f.kind == balie_text::reply_check::FlagKind::TooLong)
            .map(|f| f.message.clone())
            .unwrap_or_else(|| t.invalid_character.to_owned())
    };
    let labels = lint.flags.iter().map(|f| flag_label(t, f.kind)).collect();
    let answer = DraftAnswer {
        counter: counter(t, &lint),
        lint,
        blocked,
        labels,
    };
    Ok(axum::Json(answer).into_response())
}

fn flag_label(t: &Texts, kind: balie_text::reply_check::FlagKind) -> &'static str {
    use balie_text::reply_check::FlagKind;
    match kind {
        FlagKind::TooLong => t.flag_too_long,
        FlagKind::Canned => t.flag_canned,
        FlagKind::Tone => t.flag_tone,
        FlagKind::RiskyJoke => t.flag_risky_joke,
        FlagKind::PersonalData => t.flag_personal_data,
        FlagKind::ContradictsFact => t.flag_contradicts_fact,
        FlagKind::OtherLanguage => t.flag_other_language,
        FlagKind::RedirectsToForm => t.flag_redirects_to_form,
    }
}

#[derive(Deserialize)]
struct ReplyForm {
    text: String,
    key: String,
}

async fn reply(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<ReplyForm>,
) -> Result<Response, ApiError> {
    let Some(user) = member(&state, &headers).await? else {
        return Err(ApiError::Unauthorized);
    };
    user.require(Action::Reply)?;
    let text = form.text.trim();
    if text.is_empty() {
        return Err(ApiError::field("text", "a reply needs text"));
    }
    if text.len() > 64 * 1024 {
        return Err(ApiError::field("text", "the reply is too long"));
    }
    if form.key.is_empty() || form.key.len() > 128 {
        return Err(ApiError::field("key", "missing reply key"));
    }
    // The platform's own length rule, as the composer showed it: refused here, before the
    // outbox, so an overlong reply never becomes a failed delivery after the agent moved on.
    let view = state
        .store
        .conversation(user.brand_id(), ConversationId(id))
        .await?
        .ok_or(ApiError::NotFound("conversation"))?;
    if let Some(refusal) = ReplyContext::of(&view)
        .rule
        .and_then(|rule| rule.refusal(text))
    {
        return Err(ApiError::field("text", refusal));
    }
    // The person pressed Send: this is the only path by which a reply enters the outbox.
    let key = format!("web:{}:{}", user.user.id, form.key);
    state
        .store
        .queue_reply(
            user.brand_id(),
            ConversationId(id),
            user.user.id,
            text,
            &key,
            state.clock.now(),
        )
        .await?;
    Metrics::inc(&state.metrics.replies_queued, 1);
    state.outbox_wake.notify_one();
    Ok(Redirect::to(&format!("/conversations/{id}")).into_response())
}

#[derive(Deserialize)]
struct StatusForm {
    status: String,
}

async fn set_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<StatusForm>,
) -> Result<Response, ApiError> {
    let Some(user) = member(&state, &headers).await? else {
        return Err(ApiError::Unauthorized);
    };
    user.require(Action::Reply)?;
    let status = ConversationStatus::parse(&form.status)
        .ok_or_else(|| ApiError::field("status", "unknown status"))?;
    state
        .store
        .set_status(
            user.brand_id(),
            ConversationId(id),
            status,
            Some(user.user.id),
            state.clock.now(),
        )
        .await?;
    Ok(Redirect::to(&format!("/conversations/{id}")).into_response())
}

#[derive(Deserialize)]
struct AssignForm {
    /// `me` takes the conversation, `nobody` releases it.
    to: String,
}

async fn assign(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<AssignForm>,
) -> Result<Response, ApiError> {
    let Some(user) = member(&state, &headers).await? else {
        return Err(ApiError::Unauthorized);
    };
    let me = user.user.id;
    let assignee = match form.to.as_str() {
        "me" => Some(me),
        "nobody" => None,
        _ => return Err(ApiError::field("to", "`to` must be `me` or `nobody`")),
    };
    let view = state
        .store
        .conversation(user.brand_id(), ConversationId(id))
        .await?
        .ok_or(ApiError::NotFound("conversation"))?;
    // Taking a free conversation or giving up one's own is everyone's; taking or releasing
    // another agent's is a supervisor's.
    match view.row.conversation.assignee {
        Some(holder) if holder != me => user.require(Action::Reassign)?,
        _ => user.require(Action::TakeFree)?,
    }
    state
        .store
        .assign(
            user.brand_id(),
            ConversationId(id),
            assignee,
            Some(me),
            state.clock.now(),
        )
        .await?;
    Ok(Redirect::to(&format!("/conversations/{id}")).into_response())
}

#[derive(Deserialize)]
struct CustomerForm {
    display_name: String,
    notes: String,
    back: i64,
}

async fn update_customer(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<CustomerForm>,
) -> Result<Response, ApiError> {
    let Some(user) = member(&state, &headers).await? else {
        return Err(ApiError::Unauthorized);
    };
    user.require(Action::UpdateCustomer)?;
    let name = form.display_name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::field("display_name", "a name of 1 to 200 bytes"));
    }
    state
        .store
        .update_customer(user.brand_id(), CustomerId(id), name, form.notes.trim())
        .await?;
    Ok(Redirect::to(&format!("/conversations/{}", form.back)).into_response())
}

#[derive(Deserialize)]
struct SearchQuery {
    q: Option<String>,
}

async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<SearchQuery>,
) -> Result<Page, ApiError> {
    let Some(user) = member(&state, &headers).await? else {
        return Ok(Page::Login);
    };
    user.require(Action::Read)?;
    let t = Lang::from_headers(&headers).texts();
    let query = q.q.unwrap_or_default();
    let hits = if query.trim().is_empty() {
        Vec::new()
    } else {
        state.store.search(user.brand_id(), &query, 100).await?
    };
    render(SearchPage {
        t,
        texts: texts_json(t),
        user,
        query,
        hits: hits
            .into_iter()
            .map(|h| (h.conversation_id.0, shown(&h.text)))
            .collect(),
    })
}

#[derive(Deserialize)]
struct BrandForm {
    brand: String,
}

/// The brand switcher: an agency user works in another of their brands from now on. A brand
/// they do not belong to is not found.
async fn switch_brand(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<BrandForm>,
) -> Result<Response, ApiError> {
    let Some(user) = member(&state, &headers).await? else {
        return Err(ApiError::Unauthorized);
    };
    let brand = user
        .brands
        .iter()
        .find(|b| b.slug.as_str() == form.brand)
        .ok_or(ApiError::NotFound("brand"))?;
    let mut r = Redirect::to("/").into_response();
    if let Some(cookie) = crate::access::brand_cookie(brand) {
        r.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(r)
}

async fn app_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../assets/app.js"),
    )
        .into_response()
}

async fn app_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../assets/app.css"),
    )
        .into_response()
}
