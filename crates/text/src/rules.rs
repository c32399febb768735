//! Hand-written Dutch and English cues: questions, escalation signals (the "Youpie"), complaint words, thanks, topics.

use std::sync::LazyLock;

use crate::features::FastMap;
use crate::lang::is_stopword;
use crate::tokenize::{Token, TokenKind};

/// The message as a word sequence (lowercase words, numbers, marks and emoji; mentions/URLs
/// dropped), with the categories of every cue phrase found in it (one pass over all cue lists).
pub struct Phrase<'a> {
    words: Vec<&'a str>,
    found: u16,
}

pub fn phrase_text(tokens: &[Token]) -> Phrase<'_> {
    let words: Vec<&str> = tokens
        .iter()
        .filter(|t| !matches!(t.kind, TokenKind::Mention | TokenKind::Url))
        .map(|t| t.text.as_str())
        .collect();
    let found = CUES.categories(&words);
    Phrase { words, found }
}

/// Cue categories, as bits.
const REQUEST: u16 = 1;
const REPEAT_CONTACT: u16 = 1 << 1;
const LEAVE_CAT: u16 = 1 << 2;
const PUBLIC_CAT: u16 = 1 << 3;
const TIME_CAT: u16 = 1 << 4;
const COMPLAINT: u16 = 1 << 5;
const THANKS_CAT: u16 = 1 << 6;
const ADDRESS_CAT: u16 = 1 << 7;
const SERVICE: u16 = 1 << 8;
const SARCASM: u16 = 1 << 9;

/// One cue phrase as words; the last word matches as a prefix unless the cue ended in a space.
struct Cue {
    words: Vec<String>,
    last_prefix: bool,
    category: u16,
}

/// Cue phrases matched word by word through hash lookups (no substring scans).
pub struct PhraseSet {
    cues: Vec<Cue>,
    by_first_word: FastMap<String, Vec<usize>>,
    by_first_chars: FastMap<String, Vec<usize>>,
}

fn first_chars(w: &str) -> &str {
    match w.char_indices().nth(3) {
        Some((i, _)) => &w[..i],
        None => w,
    }
}

impl PhraseSet {
    fn new() -> Self {
        PhraseSet {
            cues: Vec::new(),
            by_first_word: FastMap::default(),
            by_first_chars: FastMap::default(),
        }
    }

    fn add<S: AsRef<str>>(&mut self, cues: &[S], category: u16) {
        for c in cues {
            let c = c.as_ref();
            let words: Vec<String> = crate::tokenize::tokenize(c)
                .into_iter()
                .map(|t| t.text)
                .collect();
            let Some(first) = words.first().cloned() else {
                continue;
            };
            let last_prefix = !c.ends_with(' ');
            let id = self.cues.len();
            if words.len() == 1 && last_prefix {
                self.by_first_chars
                    .entry(first_chars(&first).to_string())
                    .or_default()
                    .push(id);
            } else {
                self.by_first_word.entry(first).or_default().push(id);
            }
            self.cues.push(Cue {
                words,
                last_prefix,
                category,
            });
        }
    }

    fn cue_at(&self, id: usize, words: &[&str]) -> bool {
        let cue = &self.cues[id];
        let last = cue.words.len() - 1;
        cue.words
            .iter()
            .enumerate()
            .all(|(j, cw)| match words.get(j) {
                Some(w) if j == last && cue.last_prefix => w.starts_with(cw.as_str()),
                Some(w) => *w == cw,
                None => false,
            })
    }

    /// The categories of all cues occurring in `words`.
    fn categories(&self, words: &[&str]) -> u16 {
        let mut found = 0;
        for i in 0..words.len() {
            let rest = &words[i..];
            let exact = self.by_first_word.get(words[i]).into_iter().flatten();
            let prefix = self
                .by_first_chars
                .get(first_chars(words[i]))
                .into_iter()
                .flatten();
            for &id in exact.chain(prefix) {
                let cat = self.cues[id].category;
                if found & cat == 0 && self.cue_at(id, rest) {
                    found |= cat;
                }
            }
        }
        found
    }
}

static CUES: LazyLock<PhraseSet> = LazyLock::new(|| {
    let mut set = PhraseSet::new();
    let mut repeat: Vec<String> = REPEAT.iter().map(|s| s.to_string()).collect();
    // "al drie keer", "3 keer gebeld"
    for c in COUNTS {
        repeat.push(format!(" al {c} keer "));
        repeat.push(format!(" {c} keer ge"));
        repeat.push(format!(" {c} keer contact"));
    }
    // "5x gebeld", "3x gemaild", "called 6 times", "tweeted you 4x"
    for n in 2..=20 {
        repeat.push(format!(" {n}x ge"));
        repeat.push(format!(" {n}x contact"));
        repeat.push(format!(" {n} x ge"));
        repeat.push(format!(" {n}x and "));
        repeat.push(format!(" {n}x now"));
        repeat.push(format!(" {n} times "));
    }
    // Long waits: "2 uur gewacht", "45 minuten in de wacht"; and a long time with what did
    // not happen or a contact verb: "al weken geen internet", "bel al dagen",
    // "wacht al twee weken" (a bare "al 3 weken" is no complaint: "al 3 weken vakantie").
    let mut spans: Vec<String> = ["dagen", "weken", "maanden"].map(String::from).to_vec();
    for c in COUNTS.iter().chain(&["een", "anderhalf", "1"]) {
        for unit in [
            "uur", "minuten", "dagen", "weken", "maanden", "week", "maand",
        ] {
            repeat.push(format!(" {c} {unit} gewacht"));
            repeat.push(format!(" {c} {unit} in de wacht"));
            repeat.push(format!(" {c} {unit} aan de telefoon"));
            spans.push(format!("{c} {unit}"));
        }
    }
    for span in &spans {
        for next in [
            "geen", "niet", "niks", "niets", "zonder", "onderweg", "wachten",
        ] {
            repeat.push(format!(" al {span} {next} "));
        }
        for verb in ["bel", "mail", "wacht", "probeer"] {
            repeat.push(format!(" {verb} al {span}"));
            repeat.push(format!(" {verb} ik al {span}"));
        }
    }
    set.add(&repeat, REPEAT_CONTACT);
    set.add(REQUESTS, REQUEST);
    set.add(LEAVE, LEAVE_CAT);
    set.add(PUBLIC, PUBLIC_CAT);
    set.add(TIME, TIME_CAT);
    set.add(COMPLAINT_CUES, COMPLAINT);
    set.add(THANKS, THANKS_CAT);
    set.add(ADDRESS, ADDRESS_CAT);
    set.add(SERVICE_NOUNS, SERVICE);
    set.add(SARCASTIC_THANKS, SARCASM);
    set
});

fn has_any(phrase: &Phrase<'_>, category: u16) -> bool {
    phrase.found & category != 0
}

const QUESTION_STARTERS: &[&str] = &[
    "what", "why", "how", "when", "where", "who", "which", "can", "could", "would", "will", "is",
    "are", "do", "does", "did", "should", "has", "have", "any", "anyone", "wat", "waarom", "hoe",
    "wanneer", "waar", "wie", "welke", "kan", "kunnen", "kun", "kunt", "zijn", "heb", "hebben",
    "heeft", "mag", "mogen", "klopt", "weet", "wordt", "gaat",
];

const REQUESTS: &[&str] = &[
    " anyone know ",
    " can you ",
    " could you ",
    " can someone ",
    " please help ",
    " pls help ",
    " plz help ",
    " help me ",
    " let me know ",
    " please advise ",
    " please fix ",
    " please respond ",
    " please reply ",
    " dm me ",
    " i need help ",
    " need help ",
    " weet iemand ",
    " need some help",
    " need assistance",
    " need your help",
    " need a refund",
    " need refund",
    " want a refund",
    " get back to me",
    " trouble signing in",
    " trouble logging in",
    " can't log in",
    " cant log in",
    " cannot log in",
    " can't sign in",
    " cant sign in",
    " got hacked",
    " was hacked",
    " been hacked",
    " is hacked",
    " hulp nodig",
    " graag hulp",
    " help mij",
    " kan iemand",
    " graag contact",
    " graag een reactie",
    " bel me terug",
    " bel mij terug",
    " neem contact op",
    " neem contact met mij op",
    " gehackt",
    " kunnen jullie ",
    " kun je ",
    " kunt u ",
    " graag reactie ",
    " graag antwoord ",
    " help mij ",
    " hoor graag ",
    " laat weten ",
    " laat even weten ",
    " graag weten ",
    " wil graag weten ",
    " please check ",
    " dm ",
];

/// Does the message ask something (a question mark, a question word first, or a request)?
pub fn is_question(tokens: &[Token], phrase: &Phrase<'_>) -> bool {
    if tokens
        .iter()
        .any(|t| t.kind == TokenKind::Punct && t.text.contains('?'))
    {
        return true;
    }
    let first_word = tokens
        .iter()
        .find(|t| !matches!(t.kind, TokenKind::Mention | TokenKind::Url));
    if let Some(t) = first_word
        && t.kind == TokenKind::Word
        && QUESTION_STARTER_SET.contains_key(t.text.as_str())
        && tokens.len() >= 3
        && !exclamative(&phrase.words)
    {
        return true;
    }
    is_request(phrase)
}

/// "Wat een mooi weer", "what a day", "hoe leuk": exclamations, not questions.
fn exclamative(words: &[&str]) -> bool {
    matches!(
        (words.first(), words.get(1)),
        (
            Some(&"wat"),
            Some(&"een" | &"leuk" | &"mooi" | &"fijn" | &"goed")
        ) | (Some(&"what"), Some(&"a" | &"an" | &"great" | &"lovely"))
            | (Some(&"hoe"), Some(&"leuk" | &"mooi" | &"fijn" | &"gaaf"))
            | (Some(&"how"), Some(&"lovely" | &"nice" | &"cool" | &"sweet"))
    )
}

/// An explicit request for help or an answer ("can you", "kunnen jullie", "please help").
pub fn is_request(phrase: &Phrase<'_>) -> bool {
    has_any(phrase, REQUEST)
}

const SERVICE_NOUNS: &[&str] = &[
    " pakket",
    " bestelling",
    " levering",
    " bezorg",
    " factuur",
    " rekening",
    " klantenservice",
    " monteur",
    " internet",
    " wifi",
    " storing",
    " app ",
    " abonnement",
    " trein",
    " vlucht",
    " bagage",
    " koffer",
    " retour",
    " terugbetal",
    " geld ",
    " order",
    " account",
    " wachtwoord",
    " inloggen",
    " verbinding",
    " bereik",
    " tv ",
    " afschrijving",
    " incasso",
    " klant",
];

/// Mentions something a company delivers or bills (used for Dutch complaint detection).
pub fn has_service_noun(phrase: &Phrase<'_>) -> bool {
    has_any(phrase, SERVICE)
}

const COUNTS: &[&str] = &[
    "twee", "drie", "vier", "vijf", "zes", "tien", "2", "3", "4", "5", "6", "10", "meerdere",
    "zoveel", "tig", "vaak", "honderd",
];

const REPEAT: &[&str] = &[
    " second time ",
    " third time ",
    " fourth time ",
    " fifth time ",
    " 2nd time ",
    " 3rd time ",
    " 4th time ",
    " 5th time ",
    " my second ",
    " my third ",
    " my fourth ",
    " my 2nd ",
    " my 3rd ",
    " my 4th ",
    " my 5th ",
    " i've called",
    " i have called",
    " i've emailed",
    " i have emailed",
    " i've messaged",
    " hung up on me",
    " keeps hanging up",
    " kept hanging up",
    " tweede keer ",
    " derde keer ",
    " vierde keer ",
    " 3e keer ",
    " 4e keer ",
    " for the second time",
    " for the third time",
    " for the fourth time",
    " for the fifth time",
    " for the 2nd time",
    " for the 3rd time",
    " for the 4th time",
    " for the 5th time",
    " for the nth time",
    " twice ",
    " three times",
    " 3 times",
    " four times",
    " 4 times",
    " 5 times",
    " multiple times",
    " several times",
    " many times",
    " numerous times",
    " countless times",
    " still no answer",
    " still no response",
    " still no reply",
    " still no word",
    " still no update",
    " still no refund",
    " still no call",
    " still haven't heard",
    " still havent heard",
    " still have not heard",
    " still waiting",
    " no response",
    " no reply",
    " no answer",
    " never heard back",
    " haven't heard back",
    " havent heard back",
    " never got back",
    " no one got back",
    " nobody got back",
    " no one has got back",
    " already called",
    " already emailed",
    " already e-mailed",
    " already contacted",
    " already sent",
    " already dm'd",
    " already messaged",
    " already tweeted",
    " already spoke",
    " on hold for",
    " hours on hold",
    " been on hold",
    " called again",
    " again and again",
    " keep calling",
    " kept calling",
    " every time i call",
    " nog steeds geen",
    " nog steeds niks",
    " nog steeds niets",
    " nog steeds niet",
    " nog altijd geen",
    " nog altijd niet",
    " nog niks gehoord",
    " nog niets gehoord",
    " nog geen reactie",
    " nog geen antwoord",
    " geen reactie",
    " geen antwoord",
    " niks gehoord",
    " niets gehoord",
    " niks meer gehoord",
    " niets meer gehoord",
    " al gebeld",
    " al gemaild",
    " al ge-maild",
    " al eerder",
    " al een paar keer",
    " vorige week gemaild",
    " vorige week gebeld",
    " weken geleden",
    " opnieuw gebeld",
    " weer gebeld",
    " nogmaals ",
    " zoveelste keer",
    " in de wacht",
    " keer gebeld",
    " keer gemaild",
    " keer contact",
    " voor de tweede keer",
    " voor de derde keer",
    " voor de vierde keer",
    " voor de 2e keer",
    " voor de 3e keer",
    " zonder reactie",
    " zonder antwoord",
    " niemand reageert",
    " reageert niemand",
    " niemand belt terug",
    " niet teruggebeld",
    " nooit teruggebeld",
    " sinds vorige week",
    " hours on the phone",
    " hour on the phone",
    " nobody can tell me",
    " no one can tell me",
    " nobody gets back",
    " still nothing",
];

static FILLER_SET: LazyLock<FastMap<&'static str, ()>> =
    LazyLock::new(|| FILLER.iter().map(|w| (*w, ())).collect());
static QUESTION_STARTER_SET: LazyLock<FastMap<&'static str, ()>> =
    LazyLock::new(|| QUESTION_STARTERS.iter().map(|w| (*w, ())).collect());

const LEAVE: &[&str] = &[
    " switch to ",
    " switching to ",
    " switching providers",
    " switching provider",
    " cancel my account",
    " cancel my subscription",
    " cancel my contract",
    " cancel my membership",
    " cancelling my ",
    " canceling my ",
    " close my account",
    " never fly ",
    " never flying ",
    " never use you",
    " never using ",
    " never buy ",
    " never buying ",
    " never order",
    " never again",
    " never shop",
    " last time i fly",
    " last time i use",
    " last time i buy",
    " last time i order",
    " lost a customer",
    " lost my business",
    " losing a customer",
    " business elsewhere",
    " going elsewhere",
    " go elsewhere",
    " done with you",
    " find another provider",
    " opzeggen",
    " zeg ik op",
    " zeg ik mijn",
    " opgezegd",
    " overstappen",
    " stap ik over",
    " stap over",
    " nooit meer",
    " laatste keer dat",
    " klant kwijt",
    " klant af",
    " ben ik weg",
    " ik ben weg",
    " andere provider",
    " naar de concurrent",
    " zeg mijn ",
    " abonnement op ",
    " contract op ",
    " abonnement opzeg",
    " contract opzeg",
    " lidmaatschap op",
    " ga ik weg",
];

const PUBLIC: &[&str] = &[
    " going to the media",
    " tell everyone",
    " telling everyone",
    " the press",
    " reporter",
    " journalist",
    " lawyer",
    " attorney",
    " sue ",
    " suing ",
    " legal action",
    " small claims",
    " better business bureau",
    " bbb ",
    " ombudsman",
    " trading standards",
    " trustpilot",
    " bad review",
    " post this everywhere",
    " going viral",
    " consumentenbond",
    " radar ",
    " kassa ",
    " geschillencommissie",
    " advocaat",
    " rechter ",
    " juridische stappen",
    " de krant",
    " de media",
    " iedereen weten",
    " iedereen vertellen",
    " kiyoh",
    " slechte review",
    " file a complaint",
    " filing a complaint",
    " formal complaint",
    " report you",
    " reporting you",
    " the dot ",
    " department of transportation",
    " consumer protection",
    " attorney general",
    " fcc ",
    " chargeback",
    " klacht indienen",
    " klacht in te dienen",
    " acm ",
    " autoriteit consument",
    " tuchtcommissie",
];

const SHAME: &[&str] = &[
    "fail",
    "schande",
    "shame",
    "boycot",
    "nooitmeer",
    "neveragain",
    "worst",
    "disgrace",
    "ripoff",
    "scam",
    "oplicht",
    "klantonvriendelijk",
    "slechteservice",
    "slechtservice",
    "badservice",
    "sucks",
    "wanprestatie",
    "unacceptable",
    "nietnormaal",
    "belachelijk",
    "waardeloos",
    "terrible",
    "awful",
    "disappointed",
    "teleurgesteld",
];

const TIME: &[&str] = &[
    " asap",
    " urgent",
    " emergency",
    " immediately",
    " right now",
    " right away",
    " as soon as possible",
    " need it today",
    " need this today",
    " by tonight",
    " fixed today",
    " sorted today",
    " resolved today",
    " by today",
    " today or ",
    " before tomorrow",
    " my flight leaves",
    " flight leaves in",
    " leaves in an hour",
    " deadline",
    " zsm",
    " z.s.m",
    " spoed",
    " dringend",
    " nu meteen",
    " vandaag nog",
    " zo snel mogelijk",
    " zo spoedig mogelijk",
    " binnen een uur",
    " noodgeval",
    " acuut",
];

/// Escalation signals, in a fixed order, as short machine names.
pub fn escalation_signals(tokens: &[Token], phrase: &Phrase<'_>) -> Vec<String> {
    let mut out = Vec::new();
    if has_any(phrase, REPEAT_CONTACT) {
        out.push("repeat_contact".to_string());
    }
    if has_any(phrase, LEAVE_CAT) {
        out.push("threat_to_leave".to_string());
    }
    if has_any(phrase, PUBLIC_CAT) {
        out.push("going_public".to_string());
    }
    if tokens
        .iter()
        .any(|t| t.kind == TokenKind::Hashtag && SHAME.iter().any(|s| t.text.contains(s)))
    {
        out.push("shaming_hashtag".to_string());
    }
    if has_any(phrase, TIME_CAT) {
        out.push("time_pressure".to_string());
    }
    out
}

const COMPLAINT_CUES: &[&str] = &[
    " klacht",
    " storing",
    " kapot",
    " werkt niet",
    " werkt nog steeds niet",
    " doet het niet",
    " te laat",
    " niet geleverd",
    " niet ontvangen",
    " niet bezorgd",
    " nooit ontvangen",
    " geen bereik",
    " geen internet",
    " geen verbinding",
    " teleurgesteld",
    " ontevreden",
    " geld terug",
    " terugbetaling",
    " vertraging",
    " schandalig",
    " belachelijk",
    " waardeloos",
    " slechte service",
    " slechte klantenservice",
    " klantonvriendelijk",
    " onacceptabel",
    " dubbel afgeschreven",
    " traag",
    " alweer",
    " weer eens",
    " kwijt",
    " niemand neemt",
    " neemt niet op",
    " niet bereikbaar",
    " onbereikbaar",
    " geen informatie",
    " foutmelding",
    " kan niet inloggen",
    " lukt niet",
    " lukt het niet",
    " werkt weer niet",
    " staat stil",
    " stilgestaan",
    " uitgevallen",
    " valt uit",
    " klopt niet",
    " onterecht",
    " dubbele afschrijving",
    " niet is bezorgd",
    " niet bezorgd",
    " niet aangekomen",
    " nog niet binnen",
    " nog steeds niet",
    " verkeerde",
    " beschadigd",
    " wachttijd",
    " wacht al",
    " zit al",
    " sta al",
    " niemand helpt",
    " niemand komt",
    " niemand die",
    " is een grap",
    " een lachertje",
    " zonder uitleg",
    " zonder bericht",
    " zonder overleg",
    " zonder reden",
    " zonder reactie",
    " verdubbeld",
    " te veel afgeschreven",
    " te veel betaald",
    " te veel gerekend",
    " keer afgeschreven",
    " dubbel betaald",
    " waar blijft",
    " blijft uit",
    " geen tv",
    " geen televisie",
    " geen beeld",
    " geen wifi",
    " geen netwerk",
    " geen signaal",
    " geen stroom",
    " geen gas",
    " geen water",
    " geen warm water",
    " geen verwarming",
    " geen telefoon",
    " geen pakket",
    " nog altijd niet",
    " ligt eruit",
    " ligt er uit",
    " ligt er weer uit",
    " ligt er al",
    " ligt plat",
    " rijdt niet",
    " rijden niet",
    " reed niet",
    " doet niks",
    " doet niets",
    " werkt niks",
    " werkt al",
    " niet meer bereikbaar",
    " wanneer wordt dit opgelost",
    " wanneer is dit opgelost",
    " wanneer wordt het opgelost",
];

/// Dutch complaint phrases (no labelled Dutch complaint data exists here; see MODEL_CARD.md).
pub fn has_complaint_cue(phrase: &Phrase<'_>) -> bool {
    has_any(phrase, COMPLAINT)
}

const THANKS: &[&str] = &[
    " thanks",
    " thank you",
    " thank u",
    " thx",
    " ty ",
    " appreciate",
    " kudos",
    " shoutout",
    " shout out",
    " love you",
    " you rock",
    " great job",
    " well done",
    " bedankt",
    " dank je",
    " dank u",
    " dankjewel",
    " dankuwel",
    " dankzij jullie",
    " top service",
    " topservice",
    " goed geholpen",
    " super geholpen",
    " chapeau",
    " complimenten",
    " compliment",
    " petje af",
    " fijn dat",
];

const SARCASTIC_THANKS: &[&str] = &[
    " thanks for nothing",
    " thank you for nothing",
    " thx for nothing",
    " thanks a lot for nothing",
    " bedankt voor niks",
    " bedankt voor niets",
    " dank je voor niks",
    " dank je voor niets",
    " dankjewel voor niks",
    " dank je de koekoek",
];

/// Thanks that mean the opposite ("thanks for nothing", "bedankt voor niks").
pub fn has_sarcastic_thanks(phrase: &Phrase<'_>) -> bool {
    has_any(phrase, SARCASM)
}

/// Thanks or praise aimed at someone (deserves an answer too).
pub fn has_thanks(phrase: &Phrase<'_>) -> bool {
    has_any(phrase, THANKS_CAT)
}

const ADDRESS: &[&str] = &[
    " you ", " your ", " u ", " ur ", " you're ", " jullie ", " je ", " jij ", " uw ", " jou ",
];

/// Is the message plausibly aimed at the brand rather than chatter between others?
pub fn addressed(tokens: &[Token], phrase: &Phrase<'_>) -> bool {
    let retweet = tokens.first().is_some_and(|t| t.text == "rt")
        && tokens.get(1).is_some_and(|t| t.kind == TokenKind::Mention);
    if retweet {
        return false;
    }
    tokens.iter().any(|t| t.kind == TokenKind::Mention) || has_any(phrase, ADDRESS_CAT)
}

/// A few keyphrases (hashtags, adjacent content-word pairs, then long content words), in a deterministic order.
pub fn topics(tokens: &[Token], is_sentiment_word: impl Fn(&str) -> bool) -> Vec<String> {
    const MAX: usize = 3;
    let content: Vec<bool> = tokens
        .iter()
        .map(|t| {
            t.kind == TokenKind::Word
                && (3..=40).contains(&t.text.len())
                && !t.text.contains('\'')
                && t.text.chars().nth(2).is_some()
                && t.text.chars().any(|c| c.is_alphabetic())
                && !FILLER_SET.contains_key(t.text.as_str())
                && !is_stopword(&t.text)
                && !crate::features::is_negator(&t.text)
                && !is_sentiment_word(&t.text)
        })
        .collect();
    let mut out: Vec<String> = Vec::new();
    let fits = |out: &Vec<String>, s: &str| {
        out.len() < MAX && !out.iter().any(|o| o.contains(s) || s.contains(o.as_str()))
    };
    for t in tokens {
        if t.kind == TokenKind::Hashtag
            && t.text.len() <= 40
            && !SHAME.iter().any(|s| t.text.contains(s))
            && fits(&out, &t.text)
        {
            out.push(t.text.clone());
        }
    }
    for i in 1..tokens.len() {
        if out.len() >= MAX {
            return out;
        }
        if content[i - 1] && content[i] {
            let pair = format!("{} {}", tokens[i - 1].text, tokens[i].text);
            if fits(&out, &pair) {
                out.push(pair);
            }
        }
    }
    let mut singles: Vec<(usize, usize, &str)> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| content[*i])
        .map(|(i, t)| (t.text.chars().count(), i, t.text.as_str()))
        .collect();
    singles.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, _, w) in singles {
        if fits(&out, w) {
            out.push(w.to_string());
        }
    }
    out
}

const FILLER: &[&str] = &[
    "second",
    "third",
    "fourth",
    "2nd",
    "3rd",
    "4th",
    "5th",
    "tweede",
    "derde",
    "vierde",
    "asking",
    "twee",
    "drie",
    "vier",
    "vijf",
    "two",
    "three",
    "four",
    "five",
    "everyone",
    "supposed",
    "graag",
    "anyone",
    "iemand",
    "someone",
    "nobody",
    "niemand",
    "anything",
    "doe",
    "does",
    "did",
    "haha",
    "hahaha",
    "alweer",
    "zoals",
    "heel",
    "hey",
    "hello",
    "hallo",
    "beste",
    "please",
    "pls",
    "plz",
    "thanks",
    "thank",
    "bedankt",
    "just",
    "really",
    "even",
    "gewoon",
    "echt",
    "nou",
    "wel",
    "amp",
    "via",
    "yet",
    "also",
    "ook",
    "get",
    "got",
    "going",
    "gaan",
    "still",
    "again",
    "weer",
    "nog",
    "steeds",
    "keer",
    "times",
    "time",
    "today",
    "vandaag",
    "want",
    "wil",
    "need",
    "make",
    "made",
    "doen",
    "gedaan",
    "said",
    "says",
    "zegt",
    "gezegd",
    "tell",
    "told",
    "guys",
    "jullie",
    "yes",
    "yeah",
    "okay",
    "right",
    "way",
    "know",
    "think",
    "denk",
    "see",
    "zien",
    "well",
    "much",
    "veel",
    "every",
    "other",
    "some",
    "something",
    "iets",
    "anything",
    "thing",
    "things",
    "since",
    "sinds",
    "hours",
    "uur",
    "days",
    "dagen",
    "week",
    "weken",
    "day",
    "dag",
    "now",
    "nu",
    "already",
    "called",
    "gebeld",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenize::tokenize;

    fn signals(text: &str) -> Vec<String> {
        let t = tokenize(text);
        escalation_signals(&t, &phrase_text(&t))
    }

    #[test]
    fn escalation_signals_in_dutch_and_english() {
        assert_eq!(
            signals("Al drie keer gebeld en nog steeds geen monteur. Ik ga overstappen #schande"),
            ["repeat_contact", "threat_to_leave", "shaming_hashtag"]
        );
        assert_eq!(
            signals("Vorige week gemaild en nog niks gehoord"),
            ["repeat_contact"]
        );
        assert_eq!(
            signals("For the third time: where is my refund? Need it ASAP"),
            ["repeat_contact", "time_pressure"]
        );
        assert_eq!(
            signals("Still no answer, telling everyone to avoid you"),
            ["repeat_contact", "going_public"]
        );
        assert!(signals("Lovely flight today, thanks crew!").is_empty());
        for repeat in [
            "this is my 4th email about the same issue",
            "3rd time asking where my refund is",
            "I've called 5 times this week",
            "Ik wacht al twee weken op mijn pakket",
            "nu al voor de derde keer een verkeerde rekening",
            "DM'd you twice already",
        ] {
            assert_eq!(signals(repeat), ["repeat_contact"], "{repeat}");
        }
        assert_eq!(
            signals("Cancelling my subscription if this isn't fixed today"),
            ["threat_to_leave", "time_pressure"]
        );
    }

    #[test]
    fn questions_and_requests() {
        let q = |s: &str| {
            let t = tokenize(s);
            is_question(&t, &phrase_text(&t))
        };
        assert!(q("@brand waar blijft mijn pakket"));
        assert!(q("Can you help me with my booking"));
        assert!(q("Is het normaal dat de app crasht?"));
        assert!(!q("Mooie dag vandaag"));
    }

    #[test]
    fn topics_skip_handles_stopwords_and_sentiment() {
        let t = tokenize("@brand my checked luggage is lost again, terrible #AMS");
        assert_eq!(
            topics(&t, |w| w == "terrible"),
            ["ams", "checked luggage", "lost"]
        );
    }
}
