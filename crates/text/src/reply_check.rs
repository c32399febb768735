//! The composer's text-only guardrails for a draft reply: tone, risky jokes, personal data in public, another language, a brush-off to a form.
//!
//! Each flag names the words that triggered it (code-point offsets, end exclusive) and says
//! why in the agent's language (Dutch or English). The checks are phrase lists and
//! patterns, written for webcare replies in Dutch and English and measured for false alarms
//! on real agent replies (`tests/reply_checks.rs`); they advise, they never block or rewrite.

use serde::Serialize;

/// What a flag is about; the stable `lint-reply` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    TooLong,
    Canned,
    Tone,
    RiskyJoke,
    PersonalData,
    ContradictsFact,
    OtherLanguage,
    RedirectsToForm,
}

/// One finding about a draft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplyFlag {
    pub kind: FlagKind,
    pub message: String,
    /// First code point of the words that triggered the flag.
    pub start: usize,
    /// One past the last code point.
    pub end: usize,
}

/// The language the agent reads Balie in, for the flags' explanations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentLanguage {
    Dutch,
    English,
}

impl AgentLanguage {
    pub fn parse(code: &str) -> Option<Self> {
        match code {
            "nl" => Some(AgentLanguage::Dutch),
            "en" => Some(AgentLanguage::English),
            _ => None,
        }
    }

    fn pick(self, nl: &str, en: &str) -> String {
        match self {
            AgentLanguage::Dutch => nl.to_owned(),
            AgentLanguage::English => en.to_owned(),
        }
    }
}

/// A draft reply and what the checks need to know about where it goes.
#[derive(Debug, Clone, Copy)]
pub struct ReplyDraft<'a> {
    pub text: &'a str,
    /// Whether everyone can read it (a post, a comment), not only the customer.
    pub public: bool,
    /// The language the customer wrote in (ISO 639-1), when known.
    pub customer_language: Option<&'a str>,
    pub agent_language: AgentLanguage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tone {
    Condescending,
    Blaming,
    Sarcastic,
    Aggressive,
    Dismissive,
}

impl Tone {
    fn why(self, lang: AgentLanguage) -> String {
        match self {
            Tone::Condescending => lang.pick(
                "Klinkt belerend: de klant voelt zich terechtgewezen. Leg het gewoon (opnieuw) uit.",
                "Sounds condescending: the customer feels lectured. Simply explain it (again).",
            ),
            Tone::Blaming => lang.pick(
                "Legt de schuld bij de klant. Zeg wat er nu kan, niet wat de klant fout deed.",
                "Blames the customer. Say what can be done now, not what they did wrong.",
            ),
            Tone::Sarcastic => lang.pick(
                "Kan sarcastisch overkomen; schriftelijk en in het openbaar valt dat slecht.",
                "May read as sarcastic; in writing and in public that lands badly.",
            ),
            Tone::Aggressive => lang.pick(
                "Klinkt agressief of beledigend. Blijf hoffelijk, ook als de klant dat niet is.",
                "Sounds aggressive or insulting. Stay courteous, even if the customer is not.",
            ),
            Tone::Dismissive => lang.pick(
                "Wimpelt de klant af. Zeg wat je wel kunt doen of bij wie de klant terecht kan.",
                "Brushes the customer off. Say what you can do, or who can help.",
            ),
        }
    }
}

/// Phrases, as lowercase words; `_` stands for any one word, a trailing `*` for any ending.
const TONE_PHRASES: &[(Tone, &str)] = &[
    (Tone::Condescending, "as stated in our terms"),
    (Tone::Condescending, "as stated in our"),
    (Tone::Condescending, "as clearly stated"),
    (Tone::Condescending, "as we already explained"),
    (Tone::Condescending, "as we have already explained"),
    (Tone::Condescending, "as previously explained"),
    (Tone::Condescending, "as already explained"),
    (Tone::Condescending, "as i already said"),
    (Tone::Condescending, "as i said before"),
    (Tone::Condescending, "as we said before"),
    (Tone::Condescending, "like i said"),
    (Tone::Condescending, "like we said"),
    (Tone::Condescending, "as you should know"),
    (Tone::Condescending, "you should know"),
    (Tone::Condescending, "if you had read"),
    (Tone::Condescending, "read the terms"),
    (Tone::Condescending, "read our terms"),
    (Tone::Condescending, "read the instructions"),
    (Tone::Condescending, "for the _ time"),
    (Tone::Condescending, "not rocket science"),
    (Tone::Condescending, "it's not that difficult"),
    (Tone::Condescending, "it is not that difficult"),
    (Tone::Condescending, "it's not that hard"),
    (Tone::Condescending, "it's really not that"),
    (Tone::Condescending, "zoals we al"),
    (Tone::Condescending, "zoals ik al zei"),
    (Tone::Condescending, "zoals ik al eerder"),
    (Tone::Condescending, "zoals al eerder"),
    (Tone::Condescending, "zoals eerder gezegd"),
    (Tone::Condescending, "zoals eerder uitgelegd"),
    (Tone::Condescending, "zoals vermeld in onze voorwaarden"),
    (Tone::Condescending, "zoals in onze voorwaarden staat"),
    (Tone::Condescending, "zoals in de voorwaarden staat"),
    (Tone::Condescending, "als je de voorwaarden had gelezen"),
    (Tone::Condescending, "als u de voorwaarden had gelezen"),
    (Tone::Condescending, "lees de voorwaarden"),
    (Tone::Condescending, "lees onze voorwaarden"),
    (Tone::Condescending, "voor de _ keer"),
    (Tone::Condescending, "drie keer uitgelegd"),
    (Tone::Condescending, "zo moeilijk is het niet"),
    (Tone::Condescending, "zo moeilijk is dat niet"),
    (Tone::Condescending, "dat is niet zo moeilijk"),
    (Tone::Condescending, "dat is toch niet zo moeilijk"),
    (Tone::Condescending, "dat had u kunnen weten"),
    (Tone::Condescending, "dat had je kunnen weten"),
    (Tone::Condescending, "dat weet u toch"),
    (Tone::Condescending, "dat weet je toch"),
    (Tone::Blaming, "your own fault"),
    (Tone::Blaming, "your fault"),
    (Tone::Blaming, "you should have read"),
    (Tone::Blaming, "you should have checked"),
    (Tone::Blaming, "you should have known"),
    (Tone::Blaming, "you failed to"),
    (Tone::Blaming, "you didn't read"),
    (Tone::Blaming, "you did not read"),
    (Tone::Blaming, "that's on you"),
    (Tone::Blaming, "that is on you"),
    (Tone::Blaming, "user error"),
    (Tone::Blaming, "not our fault"),
    (Tone::Blaming, "eigen schuld"),
    (Tone::Blaming, "had je moeten"),
    (Tone::Blaming, "had u moeten"),
    (Tone::Blaming, "je had beter"),
    (Tone::Blaming, "u had beter"),
    (Tone::Blaming, "jouw fout"),
    (Tone::Blaming, "uw fout"),
    (Tone::Blaming, "niet goed gelezen"),
    (Tone::Blaming, "niet onze schuld"),
    (Tone::Blaming, "ligt aan jou"),
    (Tone::Blaming, "ligt aan u"),
    (Tone::Blaming, "ligt aan jezelf"),
    (Tone::Sarcastic, "good luck with that"),
    (Tone::Sarcastic, "nice try"),
    (Tone::Sarcastic, "yeah right"),
    (Tone::Sarcastic, "thanks for nothing"),
    (Tone::Sarcastic, "what a surprise"),
    (Tone::Sarcastic, "surprise surprise"),
    (Tone::Sarcastic, "if you say so"),
    (Tone::Sarcastic, "bless your heart"),
    (Tone::Sarcastic, "wow just wow"),
    (Tone::Sarcastic, "congratulations you"),
    (Tone::Sarcastic, "wat een verrassing"),
    (Tone::Sarcastic, "als jij het zegt"),
    (Tone::Sarcastic, "als u het zegt"),
    (Tone::Sarcastic, "nou gefeliciteerd"),
    (Tone::Sarcastic, "helaas pindakaas"),
    (Tone::Sarcastic, "pech gehad"),
    (Tone::Sarcastic, "ja ja"),
    (Tone::Aggressive, "shut up"),
    (Tone::Aggressive, "stop whining"),
    (Tone::Aggressive, "stop complaining"),
    (Tone::Aggressive, "calm down"),
    (Tone::Aggressive, "how dare you"),
    (Tone::Aggressive, "get lost"),
    (Tone::Aggressive, "grow up"),
    (Tone::Aggressive, "deal with it"),
    (Tone::Aggressive, "what is wrong with you"),
    (Tone::Aggressive, "what's wrong with you"),
    (Tone::Aggressive, "stupid"),
    (Tone::Aggressive, "idiot*"),
    (Tone::Aggressive, "moron*"),
    (Tone::Aggressive, "ridiculous"),
    (Tone::Aggressive, "nonsense"),
    (Tone::Aggressive, "pathetic"),
    (Tone::Aggressive, "we don't care"),
    (Tone::Aggressive, "we do not care"),
    (Tone::Aggressive, "hou op met zeuren"),
    (Tone::Aggressive, "stop met zeuren"),
    (Tone::Aggressive, "zeur niet"),
    (Tone::Aggressive, "doe normaal"),
    (Tone::Aggressive, "doe even normaal"),
    (Tone::Aggressive, "rustig aan"),
    (Tone::Aggressive, "kalm aan"),
    (Tone::Aggressive, "kap ermee"),
    (Tone::Aggressive, "belachelijk"),
    (Tone::Aggressive, "onzin"),
    (Tone::Aggressive, "idioot"),
    (Tone::Aggressive, "sukkel"),
    (Tone::Aggressive, "dom"),
    (Tone::Aggressive, "domme"),
    (Tone::Aggressive, "zielig"),
    (Tone::Aggressive, "boeit ons niet"),
    (Tone::Aggressive, "maakt ons niet uit"),
    (Tone::Aggressive, "zoek het maar uit"),
    (Tone::Aggressive, "zoek het zelf maar uit"),
    (Tone::Dismissive, "not our problem"),
    (Tone::Dismissive, "not our responsibility"),
    (Tone::Dismissive, "nothing we can do"),
    (Tone::Dismissive, "we can't help you"),
    (Tone::Dismissive, "we cannot help you"),
    (Tone::Dismissive, "take it or leave it"),
    (Tone::Dismissive, "that's just how it is"),
    (Tone::Dismissive, "that's the way it is"),
    (Tone::Dismissive, "it is what it is"),
    (Tone::Dismissive, "sorry you feel that way"),
    (Tone::Dismissive, "go elsewhere"),
    (Tone::Dismissive, "free to leave"),
    (Tone::Dismissive, "free to cancel"),
    (Tone::Dismissive, "niet ons probleem"),
    (Tone::Dismissive, "daar kunnen wij niets aan doen"),
    (Tone::Dismissive, "daar kunnen we niets aan doen"),
    (Tone::Dismissive, "daar kunnen wij niks aan doen"),
    (Tone::Dismissive, "daar kunnen we niks aan doen"),
    (Tone::Dismissive, "daar gaan wij niet over"),
    (Tone::Dismissive, "daar gaan we niet over"),
    (Tone::Dismissive, "zo is het nu eenmaal"),
    (Tone::Dismissive, "dat is nu eenmaal zo"),
    (Tone::Dismissive, "het is niet anders"),
    (Tone::Dismissive, "jammer dan"),
    (Tone::Dismissive, "ergens anders"),
    (Tone::Dismissive, "vrij om te vertrekken"),
    (Tone::Dismissive, "vrij om op te zeggen"),
];

/// Words that offend whatever the intent, and subjects no joke about a customer survives.
const OFFENSIVE_WORDS: &[&str] = &[
    "kanker*",
    "tering*",
    "tyfus*",
    "klere*",
    "mongool",
    "debiel*",
    "retard*",
    "spast*",
    "nazi*",
    "hitler",
    "holocaust",
    "terrorist*",
    "rape",
    "verkracht*",
    "kill yourself",
];
const JOKE_MARKERS: &[&str] = &[
    "haha*",
    "hihi",
    "lol",
    "lmao",
    "grapje",
    "geintje",
    "just kidding",
    "jk",
    "kidding",
    "no offense",
    "no offence",
    "geen belediging",
    "😂",
    "🤣",
    "😜",
    "😉",
];
const SENSITIVE_SUBJECTS: &[&str] = &[
    "dood",
    "overleden",
    "begrafenis",
    "dead",
    "died",
    "death",
    "funeral",
    "ziek*",
    "sick",
    "cancer",
    "disabled",
    "gehandicapt*",
    "religion",
    "religie",
    "god",
    "allah",
    "jezus",
    "jesus",
    "jood*",
    "jew*",
    "moslim*",
    "muslim*",
    "zwart*",
    "black",
    "fat",
    "dik*",
    "dikke",
    "vrouwen",
    "women",
    "blond*",
    "allochto*",
    "immigrant*",
    "gay",
    "homo*",
];

const FORM_PHRASES: &[&str] = &[
    "contact form",
    "contact us form",
    "web form",
    "webform",
    "online form",
    "support form",
    "request form",
    "fill in the form",
    "fill out the form",
    "fill out our form",
    "fill out this form",
    "fill in our form",
    "submit a request",
    "submit a ticket",
    "contactformulier",
    "webformulier",
    "klachtenformulier",
    "online formulier",
    "het formulier",
    "ons formulier",
    "dit formulier",
    "een formulier",
];

/// Every text-only flag for a draft. Length (`too_long`) is the platform's rule, in
/// `balie_core::reply_length`; `canned` and `contradicts_fact` need the brand's history.
pub fn check_reply(
    draft: &ReplyDraft<'_>,
    language_of: impl Fn(&str) -> &'static str,
) -> Vec<ReplyFlag> {
    let chars: Vec<char> = draft.text.chars().collect();
    let words = words(&chars);
    let lang = draft.agent_language;
    let mut flags = Vec::new();
    for (tone, phrase) in TONE_PHRASES {
        for (start, end) in find_phrase(&words, phrase) {
            flags.push(flag(FlagKind::Tone, tone.why(lang), start, end));
        }
    }
    risky_jokes(&words, lang, &mut flags);
    if draft.public {
        personal_data(&chars, &words, lang, &mut flags);
    }
    for phrase in FORM_PHRASES {
        for (start, end) in find_phrase(&words, phrase) {
            flags.push(flag(FlagKind::RedirectsToForm, form_why(lang), start, end));
        }
    }
    if let Some(customer) = draft.customer_language {
        let reply = language_of(draft.text);
        if reply != "und" && customer != "und" && reply != customer {
            let why = lang.pick(
                &format!(
                    "De klant schreef in het {}; dit antwoord is in het {}.",
                    language_name_nl(customer),
                    language_name_nl(reply)
                ),
                &format!(
                    "The customer wrote in {}; this reply is in {}.",
                    language_name_en(customer),
                    language_name_en(reply)
                ),
            );
            flags.push(flag(FlagKind::OtherLanguage, why, 0, chars.len()));
        }
    }
    flags.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end)));
    // A phrase found through two overlapping patterns is one finding: the longest.
    flags.dedup_by(|later, earlier| later.kind == earlier.kind && later.start < earlier.end);
    flags
}

fn flag(kind: FlagKind, message: String, start: usize, end: usize) -> ReplyFlag {
    ReplyFlag {
        kind,
        message,
        start,
        end,
    }
}

fn form_why(lang: AgentLanguage) -> String {
    lang.pick(
        "Stuurt de klant naar een formulier. Help liever hier, of neem het zelf over in een DM.",
        "Sends the customer to a form. Help here instead, or take it over yourself in a DM.",
    )
}

fn language_name_nl(code: &str) -> &str {
    match code {
        "nl" => "Nederlands",
        "en" => "Engels",
        "de" => "Duits",
        "fr" => "Frans",
        "es" => "Spaans",
        other => other,
    }
}

fn language_name_en(code: &str) -> &str {
    match code {
        "nl" => "Dutch",
        "en" => "English",
        "de" => "German",
        "fr" => "French",
        "es" => "Spanish",
        other => other,
    }
}

/// A word of the draft: lowercase text and its code-point range.
#[derive(Debug)]
struct Word {
    text: String,
    start: usize,
    end: usize,
}

/// Words are runs of letters and digits (with inner apostrophes); emoji are words of their own.
fn words(chars: &[char]) -> Vec<Word> {
    let mut words = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() {
            let start = i;
            let mut text = String::new();
            while i < chars.len() {
                let c = chars[i];
                let inner_apostrophe = matches!(c, '\'' | '’')
                    && i > start
                    && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric());
                if c.is_alphanumeric() {
                    text.extend(c.to_lowercase());
                } else if inner_apostrophe {
                    text.push('\'');
                } else {
                    break;
                }
                i += 1;
            }
            words.push(Word {
                text,
                start,
                end: i,
            });
        } else {
            if (c as u32) >= 0x1F300 {
                words.push(Word {
                    text: c.to_string(),
                    start: i,
                    end: i + 1,
                });
            }
            i += 1;
        }
    }
    words
}

fn word_matches(pattern: &str, word: &str) -> bool {
    match pattern.strip_suffix('*') {
        _ if pattern == "_" => true,
        Some(prefix) => word.starts_with(prefix),
        None => word == pattern,
    }
}

/// Where a phrase occurs, as code-point ranges.
fn find_phrase(words: &[Word], phrase: &str) -> Vec<(usize, usize)> {
    let pattern: Vec<&str> = phrase.split_whitespace().collect();
    if pattern.is_empty() || words.len() < pattern.len() {
        return Vec::new();
    }
    (0..=words.len() - pattern.len())
        .filter(|&i| {
            pattern
                .iter()
                .zip(&words[i..])
                .all(|(p, w)| word_matches(p, &w.text))
        })
        .map(|i| (words[i].start, words[i + pattern.len() - 1].end))
        .collect()
}

fn risky_jokes(words: &[Word], lang: AgentLanguage, flags: &mut Vec<ReplyFlag>) {
    for phrase in OFFENSIVE_WORDS {
        for (start, end) in find_phrase(words, phrase) {
            let why = lang.pick(
                "Dit woord kwetst, ook als grap of stopwoord. Laat het weg.",
                "This word hurts, even as a joke or a figure of speech. Leave it out.",
            );
            flags.push(flag(FlagKind::RiskyJoke, why, start, end));
        }
    }
    let joking = JOKE_MARKERS
        .iter()
        .any(|m| !find_phrase(words, m).is_empty());
    if !joking {
        return;
    }
    for subject in SENSITIVE_SUBJECTS {
        for (start, end) in find_phrase(words, subject) {
            let why = lang.pick(
                "Een grap over dit onderwerp kan kwetsen, en een openbare reactie leeft voort. Blijf zakelijk.",
                "A joke on this subject can offend, and a public reply lives on. Keep it plain.",
            );
            flags.push(flag(FlagKind::RiskyJoke, why, start, end));
        }
    }
}

/// Code-point ranges found by one detector.
type Spans = Vec<(usize, usize)>;

fn personal_data(chars: &[char], words: &[Word], lang: AgentLanguage, flags: &mut Vec<ReplyFlag>) {
    let detected: [(Spans, &str, &str); 6] = [
        (emails(chars), "een e-mailadres", "an e-mail address"),
        (ibans(chars), "een IBAN", "an IBAN"),
        (postcodes(chars), "een postcode", "a postcode"),
        (street_addresses(words), "een adres", "a postal address"),
        (phone_numbers(chars), "een telefoonnummer", "a phone number"),
        (
            order_numbers(words),
            "een order- of klantnummer",
            "an order or customer number",
        ),
    ];
    let mut found: Vec<(usize, usize, &str, &str)> = detected
        .into_iter()
        .flat_map(|(spans, nl, en)| spans.into_iter().map(move |(s, e)| (s, e, nl, en)))
        .collect();
    found.sort_by_key(|f| (f.0, std::cmp::Reverse(f.1)));
    let hidden = links_and_handles(chars);
    let mut last_end = 0;
    for (start, end, nl, en) in found {
        if start < last_end || hidden[start..end].iter().any(|&h| h) {
            continue;
        }
        last_end = end;
        let why = lang.pick(
            &format!("Dit lijkt {nl} in een openbare reactie. Bied aan het privé verder te bespreken (DM, e-mail of telefoon)."),
            &format!("This looks like {en} in a public reply. Offer to take it private (DM, e-mail or phone)."),
        );
        flags.push(flag(FlagKind::PersonalData, why, start, end));
    }
}

/// Which code points belong to a link or an `@handle`: their digits and codes are not the
/// customer's personal data.
fn links_and_handles(chars: &[char]) -> Vec<bool> {
    let mut hidden = vec![false; chars.len()];
    let mut start = 0;
    for end in (0..=chars.len()).filter(|&i| i == chars.len() || chars[i].is_whitespace()) {
        let chunk: String = chars[start..end].iter().collect();
        let lower = chunk.to_lowercase();
        if lower.contains("://")
            || lower
                .trim_start_matches(['(', '[', '"'])
                .starts_with("www.")
        {
            hidden[start..end].iter_mut().for_each(|h| *h = true);
        }
        start = end + 1;
    }
    for i in 0..chars.len() {
        let at_handle = chars[i] == '@' && (i == 0 || !chars[i - 1].is_alphanumeric());
        if at_handle {
            let len = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_alphanumeric() || **c == '_')
                .count();
            hidden[i..=i + len].iter_mut().for_each(|h| *h = true);
        }
    }
    hidden
}

/// Local parts of addresses a company publishes for everyone (not a person's own address).
const ROLE_MAILBOXES: &[&str] = &[
    "abuse",
    "reportphish",
    "phishing",
    "phish",
    "spoof",
    "security",
    "privacy",
    "support",
    "help",
    "helpdesk",
    "info",
    "service",
    "klantenservice",
    "contact",
    "noreply",
    "no-reply",
    "sales",
    "billing",
    "webcare",
    "klachten",
    "complaints",
    "feedback",
    "press",
    "pers",
];

fn emails(chars: &[char]) -> Vec<(usize, usize)> {
    let local = |c: char| c.is_alphanumeric() || "._%+-".contains(c);
    let domain = |c: char| c.is_alphanumeric() || ".-".contains(c);
    let mut out = Vec::new();
    for (at, _) in chars.iter().enumerate().filter(|(_, c)| **c == '@') {
        let start = (0..at).rev().take_while(|&i| local(chars[i])).last();
        let end = (at + 1..chars.len())
            .take_while(|&i| domain(chars[i]))
            .last()
            .map(|e| e + 1);
        let (Some(start), Some(mut end)) = (start, end) else {
            continue;
        };
        while end > at + 1 && !chars[end - 1].is_alphanumeric() {
            end -= 1;
        }
        let host: String = chars[at + 1..end].iter().collect();
        let Some((_, tld)) = host.rsplit_once('.') else {
            continue;
        };
        let local_part: String = chars[start..at].iter().collect::<String>().to_lowercase();
        if ROLE_MAILBOXES.contains(&local_part.as_str()) {
            continue;
        }
        if tld.len() >= 2
            && tld.chars().all(char::is_alphabetic)
            && host.split('.').all(|l| !l.is_empty())
        {
            out.push((start, end));
        }
    }
    out
}

/// IBANs, written with or without spaces in groups of four, whose mod-97 checksum holds.
fn ibans(chars: &[char]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 4 <= chars.len() {
        let starts_word = i == 0 || !chars[i - 1].is_alphanumeric();
        if !(starts_word
            && chars[i].is_ascii_uppercase()
            && chars[i + 1].is_ascii_uppercase()
            && chars[i + 2].is_ascii_digit()
            && chars[i + 3].is_ascii_digit())
        {
            i += 1;
            continue;
        }
        let mut compact = String::new();
        let mut j = i;
        let mut best = None;
        while j < chars.len() && compact.len() < 34 {
            let c = chars[j];
            if c.is_ascii_alphanumeric() {
                compact.push(c.to_ascii_uppercase());
                j += 1;
                let ends_word = chars.get(j).is_none_or(|n| !n.is_alphanumeric());
                if compact.len() >= 15 && ends_word && iban_checksum_holds(&compact) {
                    best = Some(j);
                }
            } else if c == ' ' && chars.get(j + 1).is_some_and(char::is_ascii_alphanumeric) {
                j += 1;
            } else {
                break;
            }
        }
        if let Some(end) = best {
            out.push((i, end));
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

fn iban_checksum_holds(iban: &str) -> bool {
    let rearranged = iban[4..].chars().chain(iban[..4].chars());
    let mut remainder: u32 = 0;
    for c in rearranged {
        let value = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

/// Dutch postcodes: four digits (not starting with 0), an optional space, two capitals.
fn postcodes(chars: &[char]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for i in 0..chars.len() {
        if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '-') {
            continue;
        }
        let digits = chars[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits != 4 || chars[i] == '0' {
            continue;
        }
        let mut j = i + 4;
        if chars.get(j) == Some(&' ') {
            j += 1;
        }
        let letters = chars
            .get(j..j + 2)
            .filter(|l| l.iter().all(char::is_ascii_uppercase));
        let ends = chars.get(j + 2).is_none_or(|c| !c.is_alphanumeric());
        if let Some(letters) = letters
            && ends
            && !matches!(letters, ['S', 'A'] | ['S', 'D'] | ['S', 'S'])
        {
            out.push((i, j + 2));
        }
    }
    out
}

const STREET_ENDINGS: &[&str] = &[
    "straat", "laan", "weg", "plein", "gracht", "kade", "dijk", "singel", "steeg", "hof", "dreef",
    "pad", "baan", "park",
];
const STREET_WORDS: &[&str] = &[
    "street",
    "st",
    "avenue",
    "ave",
    "road",
    "rd",
    "lane",
    "drive",
    "boulevard",
    "blvd",
];

/// A street name followed by a house number ("Dorpsstraat 12", "Kerklaan 3a"), or a house
/// number followed by a street ("221 Baker Street").
fn street_addresses(words: &[Word]) -> Vec<(usize, usize)> {
    let is_number = |w: &Word| {
        w.text.chars().next().is_some_and(|c| c.is_ascii_digit())
            && w.text.chars().filter(char::is_ascii_digit).count() <= 4
            && w.text.chars().skip_while(char::is_ascii_digit).count() <= 1
    };
    let mut out = Vec::new();
    for pair in words.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let dutch_street = STREET_ENDINGS
            .iter()
            .any(|e| a.text.len() > e.len() + 2 && a.text.ends_with(e));
        if dutch_street && is_number(b) {
            out.push((a.start, b.end));
        }
    }
    for triple in words.windows(3) {
        let [n, name, street] = triple else { continue };
        if is_number(n)
            && name.text.chars().all(char::is_alphabetic)
            && STREET_WORDS.contains(&street.text.as_str())
        {
            out.push((n.start, street.end));
        }
    }
    out
}

/// Phone numbers: Dutch mobile and landline numbers and international ones; the free and
/// paid service numbers a company publishes (0800, 0900, 1-800 and the like) are not personal.
fn phone_numbers(chars: &[char]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let starts = (c == '+' || c.is_ascii_digit() || c == '(')
            && (i == 0
                || !(chars[i - 1].is_alphanumeric()
                    || matches!(chars[i - 1], '/' | '.' | '=' | '-' | '_')));
        if !starts {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut digits = String::new();
        while j < chars.len() {
            let c = chars[j];
            if c.is_ascii_digit() {
                digits.push(c);
            } else if !(matches!(c, ' ' | '-' | '(' | ')' | '.') || (c == '+' && j == i)) {
                break;
            }
            j += 1;
        }
        while j > i && !chars[j - 1].is_ascii_digit() {
            j -= 1;
        }
        let ends_word = chars.get(j).is_none_or(|c| !c.is_alphanumeric());
        let international = c == '+' && (10..=15).contains(&digits.len());
        let dutch = digits.len() == 10 && digits.starts_with('0') && !digits.starts_with("00");
        let service = [
            "0800", "0900", "0906", "0909", "0880", "1800", "1888", "1877", "1866", "1855", "1844",
            "1833",
        ]
        .iter()
        .any(|p| digits.starts_with(p))
            || digits.starts_with("31800")
            || digits.starts_with("31900");
        if ends_word && (international || dutch) && !service {
            out.push((i, j));
            i = j;
        } else {
            i = j.max(i + 1);
        }
    }
    out
}

const ORDER_WORDS: &[&str] = &[
    "order",
    "ordernummer",
    "bestelling",
    "bestelnummer",
    "klantnummer",
    "pakket",
    "zending",
    "zendingnummer",
    "trackingnummer",
    "track",
    "tracking",
    "barcode",
    "contractnummer",
    "factuurnummer",
    "account",
    "customer",
    "rekeningnummer",
    "polisnummer",
    "reservation",
    "reservering",
    "reserveringsnummer",
    "booking",
    "confirmation",
];

/// An order, customer or tracking number: a code with at least five digits right after a
/// word that names one ("ordernummer 12345678", "order #AB123456"), or a track-and-trace
/// style code of letters and at least seven digits anywhere.
fn order_numbers(words: &[Word]) -> Vec<(usize, usize)> {
    let digits = |w: &Word| w.text.chars().filter(char::is_ascii_digit).count();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let letters = w.text.chars().filter(|c| c.is_alphabetic()).count();
        if letters >= 2
            && digits(w) >= 7
            && w.text.len() >= 10
            && w.text.chars().all(|c| c.is_ascii_alphanumeric())
        {
            out.push((w.start, w.end));
            continue;
        }
        if digits(w) < 5 || !w.text.chars().all(|c| c.is_ascii_alphanumeric()) {
            continue;
        }
        let named = words[i.saturating_sub(3)..i]
            .iter()
            .any(|p| ORDER_WORDS.contains(&p.text.as_str()) || p.text.ends_with("nummer"));
        if named {
            out.push((w.start, w.end));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str, public: bool) -> Vec<(FlagKind, String)> {
        let draft = ReplyDraft {
            text,
            public,
            customer_language: None,
            agent_language: AgentLanguage::English,
        };
        let chars: Vec<char> = text.chars().collect();
        check_reply(&draft, |_| "und")
            .into_iter()
            .map(|f| (f.kind, chars[f.start..f.end].iter().collect()))
            .collect()
    }

    #[test]
    fn iban_checksums_decide() {
        assert!(iban_checksum_holds("NL91ABNA0417164300"));
        assert!(!iban_checksum_holds("NL92ABNA0417164300"));
        assert_eq!(
            kinds("Maak het over naar NL91 ABNA 0417 1643 00, dank!", true),
            vec![(FlagKind::PersonalData, "NL91 ABNA 0417 1643 00".to_owned())]
        );
        let wrong: Vec<char> = "naar NL92 ABNA 0417 1643 00, dank".chars().collect();
        assert_eq!(ibans(&wrong), vec![]);
    }

    #[test]
    fn personal_data_only_counts_in_public() {
        assert_eq!(
            kinds("Bel ons op 0800-1234 of mail kim@voorbeeld.nl", false),
            vec![]
        );
        assert_eq!(
            kinds(
                "Bel 06-12345678 of mail kim@voorbeeld.nl, postcode 1234 AB",
                true
            ),
            vec![
                (FlagKind::PersonalData, "06-12345678".to_owned()),
                (FlagKind::PersonalData, "kim@voorbeeld.nl".to_owned()),
                (FlagKind::PersonalData, "1234 AB".to_owned()),
            ]
        );
        assert_eq!(
            kinds("Bel gerust 0800-0402 of 1-800-275-2273", true),
            vec![]
        );
    }
}
