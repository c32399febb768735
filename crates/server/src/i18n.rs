//! The agent UI's words in Dutch and English. The language comes from the `balie_lang`
//! cookie, else the browser's `Accept-Language`, else Dutch.

use axum::http::HeaderMap;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Nl,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Nl => "nl",
            Lang::En => "en",
        }
    }

    pub fn from_headers(headers: &HeaderMap) -> Self {
        let cookie = headers
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|kv| kv.trim().strip_prefix("balie_lang=").map(str::to_string));
        match cookie.as_deref() {
            Some("en") => return Lang::En,
            Some("nl") => return Lang::Nl,
            _ => {}
        }
        let accept = headers
            .get("accept-language")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let first = accept
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if first.starts_with("en") {
            Lang::En
        } else {
            Lang::Nl
        }
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::Nl => &NL,
            Lang::En => &EN,
        }
    }
}

/// Every UI string, once per language.
#[derive(Debug, Serialize)]
pub struct Texts {
    pub lang: &'static str,
    pub other_lang: &'static str,
    pub other_lang_name: &'static str,
    pub title_login: &'static str,
    pub email: &'static str,
    pub password: &'static str,
    pub log_in: &'static str,
    pub log_out: &'static str,
    /// The brand switcher's label and button (agency users).
    pub brand: &'static str,
    pub switch_brand: &'static str,
    pub login_failed: &'static str,
    pub login_throttled: &'static str,
    pub login_busy: &'static str,
    pub inbox: &'static str,
    pub search: &'static str,
    pub customer: &'static str,
    pub channel: &'static str,
    pub message: &'static str,
    pub waiting: &'static str,
    pub due: &'static str,
    pub priority: &'static str,
    pub empty_inbox: &'static str,
    pub answered: &'static str,
    pub overdue: &'static str,
    pub reply: &'static str,
    pub send: &'static str,
    pub reply_placeholder: &'static str,
    pub reply_note: &'static str,
    /// After the counter's "31 / 280": how the platform counts.
    pub counted_as_platform: &'static str,
    pub characters: &'static str,
    pub nothing_to_send: &'static str,
    pub invalid_character: &'static str,
    pub reply_checks: &'static str,
    pub flag_too_long: &'static str,
    pub flag_canned: &'static str,
    pub flag_tone: &'static str,
    pub flag_risky_joke: &'static str,
    pub flag_personal_data: &'static str,
    pub flag_contradicts_fact: &'static str,
    pub flag_other_language: &'static str,
    pub flag_redirects_to_form: &'static str,
    pub timeline: &'static str,
    pub identities: &'static str,
    pub notes: &'static str,
    pub name: &'static str,
    pub save: &'static str,
    pub status: &'static str,
    pub close: &'static str,
    pub reopen: &'static str,
    pub queued: &'static str,
    pub sent: &'static str,
    pub failed: &'static str,
    pub received: &'static str,
    pub removed: &'static str,
    pub escalation: &'static str,
    /// Escalation signals, named as `balie analyze` names them (the script looks them up).
    pub repeat_contact: &'static str,
    pub threat_to_leave: &'static str,
    pub going_public: &'static str,
    pub shaming_hashtag: &'static str,
    pub time_pressure: &'static str,
    pub live: &'static str,
    pub offline: &'static str,
    pub no_results: &'static str,
    pub you: &'static str,
    pub open: &'static str,
    pub closed: &'static str,
    pub pending: &'static str,
    pub snoozed: &'static str,
    pub urgent: &'static str,
    pub high: &'static str,
    pub normal: &'static str,
    pub low: &'static str,
    pub negative: &'static str,
    pub neutral: &'static str,
    pub positive: &'static str,
    pub complaint: &'static str,
    pub question: &'static str,
    pub praise: &'static str,
    pub other: &'static str,
    pub channels: &'static str,
    pub platform: &'static str,
    pub account: &'static str,
    pub webhook_url: &'static str,
    pub credentials: &'static str,
    pub set: &'static str,
    pub not_set: &'static str,
    pub add_or_update_channel: &'static str,
    pub secrets_note: &'static str,
    pub place_direct: &'static str,
    pub place_comment: &'static str,
    pub place_post: &'static str,
    pub place_mention: &'static str,
    pub place_email: &'static str,
    pub place_api: &'static str,
    pub open_on_platform: &'static str,
    pub assignee: &'static str,
    pub take: &'static str,
    pub release: &'static str,
}

pub static NL: Texts = Texts {
    lang: "nl",
    other_lang: "en",
    other_lang_name: "English",
    title_login: "Inloggen bij Balie",
    email: "E-mailadres",
    password: "Wachtwoord",
    log_in: "Inloggen",
    log_out: "Uitloggen",
    brand: "Merk",
    switch_brand: "Wissel",
    login_failed: "Onbekend e-mailadres of verkeerd wachtwoord.",
    login_throttled: "Te veel mislukte pogingen. Probeer het opnieuw over",
    login_busy: "Het is even te druk om in te loggen. Probeer het opnieuw over",
    inbox: "Inbox",
    search: "Zoeken",
    customer: "Klant",
    channel: "Kanaal",
    message: "Bericht",
    waiting: "Wacht",
    due: "Antwoord uiterlijk",
    priority: "Prioriteit",
    empty_inbox: "Niemand wacht op antwoord.",
    answered: "beantwoord",
    overdue: "te laat",
    reply: "Antwoorden",
    send: "Versturen",
    reply_placeholder: "Schrijf een persoonlijk antwoord…",
    reply_note: "Balie verstuurt niets zonder dat jij op Versturen drukt.",
    counted_as_platform: "tekens, geteld zoals het platform telt",
    characters: "tekens",
    nothing_to_send: "Schrijf eerst een antwoord.",
    invalid_character: "Het antwoord bevat een teken dat het platform niet aanneemt.",
    reply_checks: "Controle van je antwoord",
    flag_too_long: "Te lang",
    flag_canned: "Standaardtekst",
    flag_tone: "Toon",
    flag_risky_joke: "Riskante grap",
    flag_personal_data: "Persoonsgegevens",
    flag_contradicts_fact: "Spreekt feiten tegen",
    flag_other_language: "Andere taal",
    flag_redirects_to_form: "Verwijst naar formulier",
    timeline: "Tijdlijn",
    identities: "Bekend als",
    notes: "Notities",
    name: "Naam",
    save: "Opslaan",
    status: "Status",
    close: "Afsluiten",
    reopen: "Heropenen",
    queued: "in wachtrij",
    sent: "verstuurd",
    failed: "mislukt",
    received: "ontvangen",
    removed: "verwijderd door klant",
    escalation: "Escalatie",
    repeat_contact: "al eerder contact gezocht",
    threat_to_leave: "dreigt weg te gaan",
    going_public: "dreigt publiek te gaan",
    shaming_hashtag: "schandhashtag",
    time_pressure: "haast",
    live: "live",
    offline: "verbinding weg, opnieuw verbinden…",
    no_results: "Niets gevonden.",
    you: "jij",
    open: "open",
    closed: "gesloten",
    pending: "in afwachting",
    snoozed: "gesluimerd",
    urgent: "urgent",
    high: "hoog",
    normal: "normaal",
    low: "laag",
    negative: "negatief",
    neutral: "neutraal",
    positive: "positief",
    complaint: "klacht",
    question: "vraag",
    praise: "lof",
    other: "overig",
    channels: "Kanalen",
    platform: "Platform",
    account: "Account-id",
    webhook_url: "Webhook-URL",
    credentials: "Sleutels",
    set: "ingesteld",
    not_set: "niet ingesteld",
    add_or_update_channel: "Kanaal toevoegen of wijzigen",
    secrets_note: "Sleutels worden versleuteld opgeslagen en nooit meer getoond. Laat een veld leeg om de opgeslagen waarde te houden.",
    place_direct: "privébericht",
    place_comment: "reactie",
    place_post: "bericht",
    place_mention: "vermelding",
    place_email: "e-mail",
    place_api: "API",
    open_on_platform: "bekijk op platform",
    assignee: "Behandelaar",
    take: "Oppakken",
    release: "Vrijgeven",
};

pub static EN: Texts = Texts {
    lang: "en",
    other_lang: "nl",
    other_lang_name: "Nederlands",
    title_login: "Log in to Balie",
    email: "E-mail address",
    password: "Password",
    log_in: "Log in",
    log_out: "Log out",
    brand: "Brand",
    switch_brand: "Switch",
    login_failed: "Unknown e-mail address or wrong password.",
    login_throttled: "Too many failed attempts. Try again in",
    login_busy: "Too busy to sign you in just now. Try again in",
    inbox: "Inbox",
    search: "Search",
    customer: "Customer",
    channel: "Channel",
    message: "Message",
    waiting: "Waiting",
    due: "Reply due",
    priority: "Priority",
    empty_inbox: "Nobody is waiting for an answer.",
    answered: "answered",
    overdue: "overdue",
    reply: "Reply",
    send: "Send",
    reply_placeholder: "Write a personal reply…",
    reply_note: "Balie sends nothing until you press Send.",
    counted_as_platform: "characters, counted as the platform counts",
    characters: "characters",
    nothing_to_send: "Write a reply first.",
    invalid_character: "The reply holds a character the platform does not accept.",
    reply_checks: "Checks on your reply",
    flag_too_long: "Too long",
    flag_canned: "Canned",
    flag_tone: "Tone",
    flag_risky_joke: "Risky joke",
    flag_personal_data: "Personal data",
    flag_contradicts_fact: "Contradicts a fact",
    flag_other_language: "Other language",
    flag_redirects_to_form: "Sends to a form",
    timeline: "Timeline",
    identities: "Known as",
    notes: "Notes",
    name: "Name",
    save: "Save",
    status: "Status",
    close: "Close",
    reopen: "Reopen",
    queued: "queued",
    sent: "sent",
    failed: "failed",
    received: "received",
    removed: "removed by customer",
    escalation: "Escalation",
    repeat_contact: "contacted before",
    threat_to_leave: "threatens to leave",
    going_public: "threatens to go public",
    shaming_hashtag: "shaming hashtag",
    time_pressure: "time pressure",
    live: "live",
    offline: "connection lost, reconnecting…",
    no_results: "Nothing found.",
    you: "you",
    open: "open",
    closed: "closed",
    pending: "pending",
    snoozed: "snoozed",
    urgent: "urgent",
    high: "high",
    normal: "normal",
    low: "low",
    negative: "negative",
    neutral: "neutral",
    positive: "positive",
    complaint: "complaint",
    question: "question",
    praise: "praise",
    other: "other",
    channels: "Channels",
    platform: "Platform",
    account: "Account id",
    webhook_url: "Webhook URL",
    credentials: "Credentials",
    set: "set",
    not_set: "not set",
    add_or_update_channel: "Add or update a channel",
    secrets_note: "Credentials are stored encrypted and never shown again. Leave a field empty to keep the stored value.",
    place_direct: "direct message",
    place_comment: "comment",
    place_post: "post",
    place_mention: "mention",
    place_email: "e-mail",
    place_api: "API",
    open_on_platform: "open on platform",
    assignee: "Assignee",
    take: "Take it",
    release: "Release",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_comes_from_cookie_then_accept_language() {
        let mut h = HeaderMap::new();
        assert_eq!(Lang::from_headers(&h), Lang::Nl);
        h.insert("accept-language", "en-GB,en;q=0.9".parse().expect("header"));
        assert_eq!(Lang::from_headers(&h), Lang::En);
        h.insert("cookie", "a=b; balie_lang=nl".parse().expect("header"));
        assert_eq!(Lang::from_headers(&h), Lang::Nl);
    }
}
