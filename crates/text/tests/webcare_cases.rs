//! Webcare messages as a team sees them (Dutch and English), with what triage must make of them.
//!
//! Written by hand for Balie (no dataset text): each case is a phrasing the rules must cover,
//! so a changed cue list or model that loses one fails here with the message in the report.

use balie_text::{Sentiment, analyze};

/// What a case expects; `None` means "not checked" for that field.
struct Case {
    text: &'static str,
    complaint: Option<bool>,
    needs_reply: Option<bool>,
    signals: &'static [&'static str],
    sentiment: Option<Sentiment>,
    calm: bool,
}

const fn case(text: &'static str) -> Case {
    Case {
        text,
        complaint: None,
        needs_reply: None,
        signals: &[],
        sentiment: None,
        calm: false,
    }
}

impl Case {
    const fn complaint(mut self) -> Self {
        self.complaint = Some(true);
        self.needs_reply = Some(true);
        self
    }
    const fn no_complaint(mut self) -> Self {
        self.complaint = Some(false);
        self
    }
    const fn reply(mut self, yes: bool) -> Self {
        self.needs_reply = Some(yes);
        self
    }
    const fn signals(mut self, s: &'static [&'static str]) -> Self {
        self.signals = s;
        self
    }
    /// No escalation and no signals: counting or waiting words in a happy message.
    const fn calm(mut self) -> Self {
        self.calm = true;
        self.complaint = Some(false);
        self
    }
    const fn sentiment(mut self, s: Sentiment) -> Self {
        self.sentiment = Some(s);
        self
    }
}

use Sentiment::{Negative, Positive};

fn cases() -> Vec<Case> {
    vec![
        // Repeat contact, counted with digits and "x" as people type it.
        case("@KPN ik heb nu 5x gebeld, niemand helpt me")
            .complaint()
            .signals(&["repeat_contact"])
            .sentiment(Negative),
        case("@NS al 3x gemaild zonder reactie")
            .complaint()
            .signals(&["repeat_contact"]),
        case("@Ziggo al 4 keer contact gehad en het is nog altijd niet opgelost")
            .complaint()
            .signals(&["repeat_contact"]),
        case("@united I've tweeted you 4x and called twice, still nothing")
            .complaint()
            .signals(&["repeat_contact"]),
        case("@Delta 3rd time asking: where is my bag?")
            .complaint()
            .signals(&["repeat_contact"]),
        case("@comcast called 6 times this week and nobody can tell me anything")
            .complaint()
            .signals(&["repeat_contact"]),
        // Waiting and outages.
        case("Jullie klantenservice is een grap. 2 uur gewacht aan de telefoon.")
            .complaint()
            .signals(&["repeat_contact"])
            .sentiment(Negative),
        case("@Ziggo sinds maandag geen tv, wanneer wordt dit opgelost?").complaint(),
        case("@Eneco al drie dagen geen warm water en niemand komt").complaint(),
        case("@bol_com mijn pakket is al een week onderweg, waar blijft het?").complaint(),
        case("@AmericanAir been waiting 3 days for my luggage. This is ridiculous")
            .complaint()
            .sentiment(Negative),
        case("@Ziggo internet ligt er weer uit").complaint(),
        case("@NS Trein rijdt niet. Weer.").complaint(),
        case("@united lost my bag, again")
            .complaint()
            .sentiment(Negative),
        // Money taken without asking.
        case("@Essent jullie hebben mijn termijnbedrag verdubbeld zonder uitleg").complaint(),
        case("@Vattenfall er is twee keer afgeschreven deze maand").complaint(),
        // Leaving and going public.
        case("@KPN ik zeg mijn abonnement op")
            .complaint()
            .signals(&["threat_to_leave"]),
        case("@Tele2 ik stap over naar KPN als dit niet vandaag opgelost is")
            .complaint()
            .signals(&["threat_to_leave"]),
        case("@united I will be filing a complaint with the DOT")
            .complaint()
            .signals(&["going_public"])
            .sentiment(Negative),
        case("@comcast I'm going to report you to the BBB")
            .complaint()
            .signals(&["going_public"])
            .sentiment(Negative),
        case("@Coolblue dit gaat naar de Consumentenbond")
            .complaint()
            .signals(&["going_public"]),
        // Questions that need an answer but are not complaints.
        case("@Albert_Heijn kunnen jullie me vertellen of de winkel in Utrecht open is?")
            .no_complaint()
            .reply(true),
        case("@JetBlue what time does the JFK terminal open?")
            .no_complaint()
            .reply(true),
        case("@NS mag mijn hond mee in de trein?")
            .no_complaint()
            .reply(true),
        case("@MojangSupport my account got hacked please get back to me!").reply(true),
        case("@Google i need some help with my account").reply(true),
        case("@Ziggo ik heb hulp nodig met mijn modem").reply(true),
        // Praise deserves an answer too, and is not a complaint.
        case("@KLM bedankt voor de snelle hulp vandaag!")
            .no_complaint()
            .reply(true)
            .sentiment(Positive),
        case("@ANWB top geholpen door de wegenwacht, dank jullie wel!")
            .no_complaint()
            .reply(true)
            .sentiment(Positive),
        case("@SouthwestAir thanks for getting me home early, love you guys")
            .no_complaint()
            .reply(true)
            .sentiment(Positive),
        // Counting and waiting words in a happy message are no escalation.
        case("@KPN ik ben al sinds 2010 klant en nog steeds heel tevreden").calm(),
        case("@united I've flown with you 20 times this year and love it").calm(),
        case("@Delta this is my 3rd time flying with you and always great").calm(),
        case("@Eneco bedankt, de monteur kwam binnen een uur en alles werkt weer").calm(),
        case("@KLM ik heb al 3 weken vakantie, heerlijk").calm(),
        case("@KPN al weken geen internet en niemand komt")
            .complaint()
            .signals(&["repeat_contact"]),
        case("@Ziggo ik bel al dagen en krijg niemand te pakken")
            .complaint()
            .signals(&["repeat_contact"]),
        case("@AHeijn wat een grap, die nieuwe reclame haha").calm(),
        // Chatter about the brand between others needs no reply.
        case("RT @nieuws: NS presenteert nieuwe dienstregeling voor 2027")
            .no_complaint()
            .reply(false),
        case("Wie gaat er vanavond mee naar de film? Ik heb kaartjes")
            .no_complaint()
            .reply(false),
    ]
}

#[test]
fn webcare_phrasings_are_triaged_as_a_team_expects() {
    let mut failures = Vec::new();
    for c in cases() {
        let a = analyze(c.text);
        let mut wrong = Vec::new();
        if let Some(want) = c.complaint
            && a.complaint != want
        {
            wrong.push(format!("complaint {} (want {want})", a.complaint));
        }
        if let Some(want) = c.needs_reply
            && a.needs_reply != want
        {
            wrong.push(format!("needs_reply {} (want {want})", a.needs_reply));
        }
        for s in c.signals {
            if !a.escalation_signals.iter().any(|x| x == s) {
                wrong.push(format!("signals {:?} lack {s}", a.escalation_signals));
            }
        }
        if !c.signals.is_empty() && !a.escalation {
            wrong.push("escalation false".to_string());
        }
        if c.calm && (a.escalation || !a.escalation_signals.is_empty()) {
            wrong.push(format!("escalated by {:?}", a.escalation_signals));
        }
        if let Some(want) = c.sentiment
            && a.sentiment != want
        {
            wrong.push(format!("sentiment {:?} (want {want:?})", a.sentiment));
        }
        if !wrong.is_empty() {
            failures.push(format!("{:?}: {}", c.text, wrong.join(", ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases().len(),
        failures.join("\n")
    );
}
