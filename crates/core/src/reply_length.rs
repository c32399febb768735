//! How long a reply is as each platform counts it, and whether it fits: one pure rule used by the composer, `lint-reply` and the sender.
//!
//! - X: twitter-text's weighted length in its v3 configuration: NFC first; 280 weighted;
//!   code points in U+0000–U+10FF, U+2000–U+200D, U+2010–U+201F and U+2032–U+2037 weigh 1,
//!   all others 2; every URL weighs 23; an emoji sequence (ZWJ families, skin tones, flags,
//!   keycaps) weighs 2 as a whole; U+FFFE, U+FEFF and U+FFFF make a post invalid, and so
//!   does an empty one.
//! - X direct messages: 10,000 characters.
//! - Mastodon: the instance's limit (500 by default), counted in graphemes, every `http(s)`
//!   URL as 23 and a remote mention `@user@domain` as its local part `@user`.
//! - Bluesky: 300 graphemes.
//! - WhatsApp 4,096 characters; Telegram 4,096 UTF-16 code units (Telegram counts a
//!   message's text that way); Messenger 2,000 characters; Facebook comments 8,000
//!   characters; Instagram comments 2,200 characters; Instagram DMs under 1,000 bytes of
//!   UTF-8. E-mail has no limit.
//!
//! A reply that is empty or only white space never fits.

mod emoji;
mod url;

use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;

use crate::ChannelKind;
use url::{Protocol, find_urls};

/// Mastodon's default post limit; an instance may set another.
pub const MASTODON_DEFAULT_LIMIT: usize = 500;

/// Where a reply goes, as far as its length is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyChannel {
    X,
    /// An X direct message: 10,000 characters.
    XDirect,
    Mastodon {
        limit: usize,
    },
    Bluesky,
    Whatsapp,
    Telegram,
    Messenger,
    FacebookComment,
    InstagramDirect,
    InstagramComment,
    Email,
}

/// What a platform counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthUnit {
    /// twitter-text's weighted characters.
    Weighted,
    Characters,
    Graphemes,
    Utf16Units,
    Bytes,
}

impl LengthUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            LengthUnit::Weighted => "weighted characters",
            LengthUnit::Characters => "characters",
            LengthUnit::Graphemes => "characters",
            LengthUnit::Utf16Units => "characters",
            LengthUnit::Bytes => "bytes",
        }
    }
}

/// A reply's length as its platform counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLength {
    pub length: usize,
    /// The most the platform takes; `None` when it sets no limit.
    pub max_length: Option<usize>,
    pub unit: LengthUnit,
    pub fits: bool,
}

impl ReplyLength {
    /// Whether the reply is longer than the platform takes (an empty reply is not too long).
    pub fn too_long(&self) -> bool {
        self.max_length.is_some_and(|max| self.length > max)
    }
}

impl ReplyChannel {
    /// The channel named as `balie lint-reply --channel` names it; `public` picks the comment
    /// limits over the DM ones where a platform has both (Facebook, Instagram).
    pub fn parse(name: &str, public: bool) -> Option<Self> {
        Some(match name {
            "x" => ReplyChannel::X,
            "mastodon" => ReplyChannel::Mastodon {
                limit: MASTODON_DEFAULT_LIMIT,
            },
            "bluesky" => ReplyChannel::Bluesky,
            "whatsapp" => ReplyChannel::Whatsapp,
            "telegram" => ReplyChannel::Telegram,
            "messenger" => ReplyChannel::Messenger,
            "facebook" if public => ReplyChannel::FacebookComment,
            "facebook" => ReplyChannel::Messenger,
            "instagram" if public => ReplyChannel::InstagramComment,
            "instagram" => ReplyChannel::InstagramDirect,
            "email" => ReplyChannel::Email,
            _ => return None,
        })
    }

    /// The names [`ReplyChannel::parse`] takes.
    pub const NAMES: [&'static str; 9] = [
        "x",
        "mastodon",
        "bluesky",
        "whatsapp",
        "telegram",
        "messenger",
        "facebook",
        "instagram",
        "email",
    ];

    /// The rule for a reply in a conversation on a channel of `kind`; `None` for the generic
    /// API channel and feeds, whose receivers set their own limits.
    pub fn for_kind(kind: ChannelKind, public: bool) -> Option<Self> {
        Some(match kind {
            ChannelKind::Messenger => ReplyChannel::Messenger,
            ChannelKind::FacebookPage if public => ReplyChannel::FacebookComment,
            ChannelKind::FacebookPage => ReplyChannel::Messenger,
            ChannelKind::Instagram if public => ReplyChannel::InstagramComment,
            ChannelKind::Instagram => ReplyChannel::InstagramDirect,
            ChannelKind::Whatsapp => ReplyChannel::Whatsapp,
            ChannelKind::X if public => ReplyChannel::X,
            ChannelKind::X => ReplyChannel::XDirect,
            ChannelKind::Telegram => ReplyChannel::Telegram,
            ChannelKind::Mastodon => ReplyChannel::Mastodon {
                limit: MASTODON_DEFAULT_LIMIT,
            },
            ChannelKind::Email => ReplyChannel::Email,
            ChannelKind::Api | ChannelKind::Feed => return None,
        })
    }

    /// The platform's name, for messages.
    pub fn platform(self) -> &'static str {
        match self {
            ReplyChannel::X => "X",
            ReplyChannel::XDirect => "an X direct message",
            ReplyChannel::Mastodon { .. } => "Mastodon",
            ReplyChannel::Bluesky => "Bluesky",
            ReplyChannel::Whatsapp => "WhatsApp",
            ReplyChannel::Telegram => "Telegram",
            ReplyChannel::Messenger => "Messenger",
            ReplyChannel::FacebookComment => "a Facebook comment",
            ReplyChannel::InstagramDirect => "an Instagram DM",
            ReplyChannel::InstagramComment => "an Instagram comment",
            ReplyChannel::Email => "e-mail",
        }
    }

    /// The reply's length as this platform counts it.
    pub fn measure(self, text: &str) -> ReplyLength {
        let blank = text.trim().is_empty();
        let simple = |length: usize, max: usize, unit| ReplyLength {
            length,
            max_length: Some(max),
            unit,
            fits: !blank && length <= max,
        };
        match self {
            ReplyChannel::X => {
                let count = x_count(text);
                ReplyLength {
                    length: count.weighted_length,
                    max_length: Some(X_MAX_WEIGHTED),
                    unit: LengthUnit::Weighted,
                    fits: count.valid,
                }
            }
            ReplyChannel::XDirect => simple(text.chars().count(), 10_000, LengthUnit::Characters),
            ReplyChannel::Mastodon { limit } => {
                simple(mastodon_length(text), limit, LengthUnit::Graphemes)
            }
            ReplyChannel::Bluesky => {
                simple(text.graphemes(true).count(), 300, LengthUnit::Graphemes)
            }
            ReplyChannel::Whatsapp => simple(text.chars().count(), 4096, LengthUnit::Characters),
            ReplyChannel::Telegram => {
                simple(text.encode_utf16().count(), 4096, LengthUnit::Utf16Units)
            }
            ReplyChannel::Messenger => simple(text.chars().count(), 2000, LengthUnit::Characters),
            ReplyChannel::FacebookComment => {
                simple(text.chars().count(), 8000, LengthUnit::Characters)
            }
            ReplyChannel::InstagramComment => {
                simple(text.chars().count(), 2200, LengthUnit::Characters)
            }
            ReplyChannel::InstagramDirect => simple(text.len(), 999, LengthUnit::Bytes),
            ReplyChannel::Email => ReplyLength {
                length: text.chars().count(),
                max_length: None,
                unit: LengthUnit::Characters,
                fits: !blank,
            },
        }
    }

    /// Why the reply cannot go out on this platform as it is, if it cannot.
    pub fn refusal(self, text: &str) -> Option<String> {
        let measured = self.measure(text);
        if text.trim().is_empty() {
            return Some("the reply is empty".to_owned());
        }
        match measured.max_length {
            Some(max) if measured.length > max => Some(format!(
                "the reply is {} {} as {} counts them; it allows at most {max}",
                measured.length,
                measured.unit.as_str(),
                self.platform()
            )),
            _ if !measured.fits => Some(format!(
                "the reply holds a character {} does not accept (U+FFFE, U+FEFF or U+FFFF)",
                self.platform()
            )),
            _ => None,
        }
    }
}

/// X's limit in weighted characters.
pub const X_MAX_WEIGHTED: usize = 280;

/// twitter-text's `parseTweet` result, the parts Balie uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XCount {
    pub weighted_length: usize,
    pub valid: bool,
}

/// twitter-text's weighted length and validity (v3 configuration).
pub fn x_count(text: &str) -> XCount {
    let text: Vec<char> = text.nfc().collect();
    let urls = find_urls(&text, Protocol::Optional);
    let mut urls = urls.iter().peekable();
    let mut weight = 0usize;
    let mut i = 0;
    while i < text.len() {
        if let Some(url) = urls.peek().filter(|url| url.start == i) {
            weight += 23;
            i = url.end;
            urls.next();
            continue;
        }
        if let Some(len) = emoji::emoji_len(&text[i..]) {
            weight += 2;
            i += len;
            continue;
        }
        weight += char_weight(text[i]);
        i += 1;
    }
    let invalid = text
        .iter()
        .any(|c| matches!(c, '\u{FFFE}' | '\u{FEFF}' | '\u{FFFF}'));
    XCount {
        weighted_length: weight,
        valid: !text.is_empty() && !invalid && weight <= X_MAX_WEIGHTED,
    }
}

fn char_weight(c: char) -> usize {
    match c as u32 {
        0..=4351 | 8192..=8205 | 8208..=8223 | 8242..=8247 => 1,
        _ => 2,
    }
}

/// Mastodon's count: graphemes, with URLs as 23 and remote mentions as their local part.
fn mastodon_length(text: &str) -> usize {
    let chars: Vec<char> = text.chars().collect();
    let urls = find_urls(&chars, Protocol::Required);
    let mut countable = String::with_capacity(text.len());
    let mut url_count = 0;
    let mut i = 0;
    let mut urls = urls.iter().peekable();
    while i < chars.len() {
        if let Some(url) = urls.peek().filter(|url| url.start == i) {
            url_count += 1;
            i = url.end;
            urls.next();
            continue;
        }
        if let Some((local, skip)) = remote_mention(&chars, i) {
            countable.extend(&chars[i..i + local]);
            i += skip;
            continue;
        }
        countable.push(chars[i]);
        i += 1;
    }
    countable.graphemes(true).count() + 23 * url_count
}

/// At `@user@domain`: the length of `@user` and of the whole mention.
fn remote_mention(chars: &[char], i: usize) -> Option<(usize, usize)> {
    let word = |c: &char| c.is_ascii_alphanumeric() || *c == '_';
    if chars[i] != '@'
        || i.checked_sub(1)
            .is_some_and(|p| word(&chars[p]) || chars[p] == '/')
    {
        return None;
    }
    let user = chars[i + 1..].iter().take_while(|c| word(c)).count();
    let at = i + 1 + user;
    if user == 0 || chars.get(at) != Some(&'@') {
        return None;
    }
    let domain = chars[at + 1..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        .count();
    // The domain ends on a letter or digit, and holds at least one dot.
    let trimmed = chars[at + 1..at + 1 + domain]
        .iter()
        .rposition(char::is_ascii_alphanumeric)
        .map_or(0, |p| p + 1);
    if trimmed == 0 || !chars[at + 1..at + 1 + trimmed].contains(&'.') {
        return None;
    }
    Some((1 + user, 1 + user + 1 + trimmed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(channel: ReplyChannel, text: &str, length: usize, fits: bool) {
        let measured = channel.measure(text);
        assert_eq!(
            (measured.length, measured.fits),
            (length, fits),
            "{channel:?} {text:?}"
        );
    }

    #[test]
    fn each_platform_counts_as_it_publishes() {
        use ReplyChannel::*;
        let mastodon = Mastodon { limit: 500 };
        check(
            X,
            "Hoi Sanne, kijk op https://www.ns.nl/storingen",
            42,
            true,
        );
        check(X, &"a".repeat(281), 281, false);
        check(X, "", 0, false);
        check(
            mastodon,
            "@kim@mastodon.social zie https://example.com/a/very/long/path/indeed",
            32,
            true,
        );
        check(mastodon, "@kim zie example.com", 20, true);
        check(mastodon, &"é".repeat(501), 501, false);
        check(Bluesky, "👨‍👩‍👧‍👦🇳🇱e\u{301}", 3, true);
        check(Bluesky, &"ab".repeat(151), 302, false);
        check(Telegram, &"😷".repeat(2048), 4096, true);
        check(Telegram, &"😷".repeat(2049), 4098, false);
        check(Whatsapp, &"😷".repeat(4096), 4096, true);
        check(Messenger, &"x".repeat(2001), 2001, false);
        check(FacebookComment, &"x".repeat(8000), 8000, true);
        check(InstagramComment, &"x".repeat(2201), 2201, false);
        check(InstagramDirect, &"é".repeat(499), 998, true);
        check(InstagramDirect, &"é".repeat(500), 1000, false);
        check(Email, &"x".repeat(100_000), 100_000, true);
        check(Email, "  \n", 3, false);
    }

    #[test]
    fn refusal_says_how_the_platform_counts() {
        let refusal = ReplyChannel::X.refusal(&"b".repeat(430));
        assert_eq!(
            refusal.as_deref(),
            Some("the reply is 430 weighted characters as X counts them; it allows at most 280")
        );
        assert_eq!(ReplyChannel::X.refusal("ok"), None);
        assert_eq!(
            ReplyChannel::X.refusal("a\u{FFFF}").as_deref(),
            Some("the reply holds a character X does not accept (U+FFFE, U+FEFF or U+FFFF)")
        );
    }
}
