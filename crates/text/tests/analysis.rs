//! Integration tests of `balie_text::analyze`: the JSON contract and triage behaviour on small inline messages.

use balie_text::{Intent, Sentiment, analyze};

const KEYS: [&str; 11] = [
    "lang",
    "sentiment",
    "sentiment_score",
    "intent",
    "complaint",
    "question",
    "needs_reply",
    "escalation",
    "escalation_signals",
    "urgency",
    "topics",
];

#[test]
fn analysis_serialises_to_exactly_the_stable_keys_in_order() {
    let v = serde_json::to_value(analyze("@brand waarom is mijn pakket nog niet bezorgd?"))
        .expect("serialises");
    let obj = v.as_object().expect("an object");
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    let mut expected = KEYS.to_vec();
    expected.sort_unstable();
    let mut got = keys.clone();
    got.sort_unstable();
    assert_eq!(got, expected);
    let line = serde_json::to_string(&analyze("hoi")).expect("serialises");
    let positions: Vec<usize> = KEYS
        .iter()
        .map(|k| line.find(&format!("\"{k}\":")).expect("key present"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{line}");
    assert!(matches!(
        obj["sentiment"].as_str(),
        Some("negative" | "neutral" | "positive")
    ));
    assert!(matches!(
        obj["intent"].as_str(),
        Some("complaint" | "question" | "praise" | "other")
    ));
    assert!(obj["urgency"].as_u64().is_some_and(|u| u <= 100));
}

#[test]
fn analysis_is_deterministic() {
    let text = "@brand lost my bag AGAIN, third time this year!! #fail https://t.co/x";
    assert_eq!(analyze(text), analyze(text));
}

#[test]
fn dutch_and_english_are_recognised_and_short_noise_is_undetermined() {
    assert_eq!(
        analyze("@brand Hoe laat vertrekt de laatste trein naar Utrecht?").lang,
        "nl"
    );
    assert_eq!(
        analyze("@brand thanks so much, the crew was amazing!").lang,
        "en"
    );
    assert_eq!(analyze("😂😂 @someone").lang, "und");
}

#[test]
fn youpie_complaint_is_urgent_and_escalated() {
    let a = analyze(
        "@brand For the third time: my refund is missing. I'm going to tell everyone to avoid you.",
    );
    assert!(a.complaint && a.escalation && a.needs_reply);
    assert_eq!(a.intent, Intent::Complaint);
    assert_eq!(a.sentiment, Sentiment::Negative);
    assert!(a.urgency >= 80, "{a:?}");
    assert!(a.escalation_signals.contains(&"repeat_contact".to_string()));
    assert!(a.escalation_signals.contains(&"going_public".to_string()));
}

#[test]
fn ordinary_complaint_is_normal_or_high_and_praise_deserves_a_reply() {
    let c = analyze("@brand Ik vind het niet leuk dat mijn pakket niet is bezorgd");
    assert!(c.complaint && c.needs_reply && !c.escalation, "{c:?}");
    assert!((20..80).contains(&c.urgency), "{c:?}");

    let p = analyze("@brand heel fijn geholpen door jullie medewerker, dank je wel!");
    assert_eq!(p.intent, Intent::Praise);
    assert_eq!(p.sentiment, Sentiment::Positive);
    assert!(p.needs_reply && !p.complaint);
}

#[test]
fn chatter_needs_no_reply_and_is_low_priority() {
    for text in [
        "Wat een mooi weer vandaag in Utrecht",
        "Watching the game tonight with friends",
        "RT @someone: nieuwe aflevering staat online",
    ] {
        let a = analyze(text);
        assert!(!a.needs_reply, "{text}: {a:?}");
        assert!(a.urgency < 20, "{text}: {a:?}");
    }
}

#[test]
fn negation_flips_dutch_and_english_sentiment() {
    assert_eq!(
        analyze("@brand dit is echt goed, bedankt!").sentiment,
        Sentiment::Positive
    );
    assert_eq!(
        analyze("@brand dit is echt niet goed").sentiment,
        Sentiment::Negative
    );
    assert_eq!(
        analyze("@brand not happy with the service at all").sentiment,
        Sentiment::Negative
    );
}

#[test]
fn topics_never_contain_handles_or_urls() {
    let a = analyze("@SomeBrand my wifi router keeps dropping https://t.co/abc #outage");
    assert!(!a.topics.is_empty());
    for t in &a.topics {
        assert!(
            !t.contains('@') && !t.contains("http") && !t.contains("somebrand"),
            "{t}"
        );
    }
}

#[test]
fn arbitrary_text_never_panics_and_stays_in_range() {
    // Deterministic pseudo-random strings mixing ASCII, Dutch accents, emoji, RTL, CJK,
    // combining marks, control characters, very long words and very long messages.
    let alphabet: Vec<char> = "aeiouxyzAEIOU ij@#?!.,:;()'’-_0123456789éëïöüçßñ😡👍🤬☀️\u{200d}\u{301}\u{0}\t\nабвгдαβγمرحباשלום你好こんにちは한국어"
        .chars()
        .collect();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..400 {
        let len = (next() % if round % 50 == 0 { 5_000 } else { 160 }) as usize;
        let text: String = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        let a = analyze(&text);
        assert!(a.urgency <= 100);
        assert!((-1.0..=1.0).contains(&a.sentiment_score), "{text:?}");
        assert!(a.topics.len() <= 3);
        assert!(!a.lang.is_empty());
    }
    let long_word = "abcdefghij".repeat(1_000);
    let a = analyze(&format!("{long_word} wifi router"));
    assert_eq!(a.topics, ["wifi router"]);
    assert_eq!(analyze("").lang, "und");
}

#[test]
fn sarcastic_thanks_is_a_complaint_not_praise() {
    for text in [
        "@united flight cancelled, rebooked for later. thanks for nothing",
        "Pakket weer kwijt, echt bedankt voor niks hoor",
    ] {
        let a = analyze(text);
        assert_eq!(a.sentiment, Sentiment::Negative, "{text}: {a:?}");
        assert_eq!(a.intent, Intent::Complaint, "{text}: {a:?}");
        assert!(a.complaint && a.needs_reply, "{text}: {a:?}");
    }
}
