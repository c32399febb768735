//! Where the URLs in a reply are, as twitter-text's extractor finds them (X and Mastodon count each as 23).
//!
//! Written from twitter-text's published rules, not its code: a URL may start after any
//! character but a letter or digit, `@`, `$` or `#`; a domain is labels of letters, digits
//! and hyphens (underscores only in subdomains) ending in a known top-level domain; without
//! `http://` or `https://` the domain must be ASCII, may not follow `-`, `_`, `.` or `/`, and
//! a bare `name.cc` (a country domain without subdomain or path) only counts for `.co` and
//! `.tv`; every label must fit 63 characters in its punycode form; a path and a query may
//! follow, and end on a character that can end them (not on a full stop or a comma).

use std::collections::HashSet;
use std::ops::Range;
use std::sync::LazyLock;

static TLDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../../data/tlds.txt")
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .collect()
});

/// Whether a URL needs its `http(s)://` (Mastodon) or may go without (X).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Required,
    Optional,
}

/// The URLs in `text` (a slice of code points), as ranges of code-point indices.
pub(crate) fn find_urls(text: &[char], protocol: Protocol) -> Vec<Range<usize>> {
    let mut urls = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let before = i.checked_sub(1).map(|p| text[p]);
        if before.is_none_or(may_precede_url)
            && let Some(end) = url_at(text, i, before, protocol)
        {
            urls.push(i..end);
            i = end;
        } else {
            i += 1;
        }
    }
    urls
}

fn may_precede_url(c: char) -> bool {
    !(c.is_ascii_alphanumeric()
        || matches!(
            c,
            '@' | '＠' | '$' | '#' | '＃' | '\u{FFFE}' | '\u{FEFF}' | '\u{FFFF}'
        ))
}

fn url_at(text: &[char], start: usize, before: Option<char>, protocol: Protocol) -> Option<usize> {
    let scheme = scheme_len(&text[start..]);
    let bad_before = before.is_some_and(|c| matches!(c, '-' | '_' | '.' | '/'));
    if scheme == 0 && (protocol == Protocol::Required || bad_before) {
        return None;
    }
    let host_start = start + scheme;
    let (host_end, country_only) = host(text, host_start, scheme > 0)?;
    let mut end = host_end;
    if text.get(end) == Some(&':') {
        let digits = text[end + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits > 0 {
            end += 1 + digits;
        }
    }
    let path_end = path(text, end);
    let query_end = query(text, path_end);
    if scheme == 0 && country_only && query_end == host_end {
        return None;
    }
    Some(query_end)
}

fn scheme_len(text: &[char]) -> usize {
    ["https://", "http://"]
        .iter()
        .find(|scheme| {
            text.len() >= scheme.len()
                && text
                    .iter()
                    .zip(scheme.chars())
                    .all(|(a, b)| a.to_ascii_lowercase() == b)
        })
        .map_or(0, |scheme| scheme.len())
}

fn is_domain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || (!c.is_ascii() && c.is_alphanumeric())
}

/// The end of the host starting at `start`, and whether it is a bare `name.cc`.
fn host(text: &[char], start: usize, has_scheme: bool) -> Option<(usize, bool)> {
    let run = text[start..]
        .iter()
        .take_while(|&&c| is_domain_char(c) || matches!(c, '-' | '_' | '.'))
        .count();
    let candidate: String = text[start..start + run].iter().collect();
    let labels: Vec<&str> = candidate.split('.').collect();
    // The longest prefix of labels that ends in a known top-level domain.
    let tld_at = (1..labels.len()).rev().find(|&j| {
        let tld = labels[j].to_lowercase();
        TLDS.contains(tld.as_str())
            && (has_scheme || tld.is_ascii())
            && labels[j].chars().all(is_domain_char)
    })?;
    let labels = &labels[..=tld_at];
    let domain_name = tld_at - 1;
    for (index, label) in labels.iter().enumerate() {
        let allowed_underscore = index < domain_name;
        if !label_is_valid(label, allowed_underscore) || (!has_scheme && !label.is_ascii()) {
            return None;
        }
    }
    let host_len: usize =
        labels.iter().map(|l| l.chars().count()).sum::<usize>() + labels.len() - 1;
    let tld = labels[tld_at];
    let country_only = labels.len() == 2
        && tld.len() == 2
        && tld.is_ascii()
        && !matches!(tld.to_ascii_lowercase().as_str(), "co" | "tv");
    Some((start + host_len, country_only))
}

fn label_is_valid(label: &str, allowed_underscore: bool) -> bool {
    let Some(first) = label.chars().next() else {
        return false;
    };
    let last = label.chars().last().unwrap_or(first);
    if !is_domain_char(first) || !is_domain_char(last) {
        return false;
    }
    if !allowed_underscore && label.contains('_') {
        return false;
    }
    // A label must fit DNS's 63 octets, in its punycode form when it is not ASCII.
    if label.is_ascii() {
        label.len() <= 63
    } else {
        idna::punycode::encode_str(&label.to_lowercase()).is_some_and(|p| p.len() + 4 <= 63)
    }
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!*';:=+,.$/%#[]-_~&|@()".contains(c)
        || c == '\u{2013}'
        || (!c.is_ascii() && c.is_alphanumeric() && (c as u32) < 0x0530)
}

fn may_end_path(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "=_#/+-)".contains(c)
        || (!c.is_ascii() && c.is_alphanumeric() && (c as u32) < 0x0530)
}

fn path(text: &[char], start: usize) -> usize {
    if text.get(start) != Some(&'/') {
        return start;
    }
    let run = text[start..]
        .iter()
        .take_while(|&&c| is_path_char(c))
        .count();
    let mut end = start + run;
    loop {
        while end > start + 1 && !may_end_path(text[end - 1]) {
            end -= 1;
        }
        // A closing parenthesis ends the path only when it closes one the path opened.
        let opened = text[start..end].iter().filter(|&&c| c == '(').count();
        let closed = text[start..end].iter().filter(|&&c| c == ')').count();
        if text[end - 1] == ')' && closed > opened {
            end -= 1;
        } else {
            return end;
        }
    }
}

fn query(text: &[char], start: usize) -> usize {
    if text.get(start) != Some(&'?') {
        return start;
    }
    let run = text[start..]
        .iter()
        .take_while(|&&c| c.is_ascii_alphanumeric() || "!?*'();:&=+$/%#[]-_.,~|@".contains(c))
        .count();
    let mut end = start + run;
    while end > start
        && !(text[end - 1].is_ascii_alphanumeric() || "-_&=#/".contains(text[end - 1]))
    {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, protocol: Protocol, expected: &[&str]) {
        let chars: Vec<char> = text.chars().collect();
        let found: Vec<String> = find_urls(&chars, protocol)
            .into_iter()
            .map(|r| chars[r].iter().collect())
            .collect();
        assert_eq!(found, expected, "in {text:?}");
    }

    #[test]
    fn urls_are_found_as_twitter_text_finds_them() {
        use Protocol::*;
        check(
            "Kijk op https://www.ns.nl/storingen.",
            Optional,
            &["https://www.ns.nl/storingen"],
        );
        check("zie www.ns.nl of ns.nl", Optional, &["www.ns.nl"]);
        check("zie ns.nl/geld-terug, ok", Optional, &["ns.nl/geld-terug"]);
        check(
            "t.co en voorbeeld.com",
            Optional,
            &["t.co", "voorbeeld.com"],
        );
        check("jan@example.com", Optional, &[]);
        check(
            "http://test_underscore.twitter.com",
            Optional,
            &["http://test_underscore.twitter.com"],
        );
        check(
            "http://domain-dash_2314352345_dfasd.foo-cow_4352.com",
            Optional,
            &[],
        );
        check("http://www.-domain4352.com/", Optional, &[]);
        check("Hoi.Ik kijk het na", Optional, &[]);
        check(
            "example.com https://example.com/a?b=c.",
            Required,
            &["https://example.com/a?b=c"],
        );
        check(
            "(zie https://example.com/x_(y))",
            Optional,
            &["https://example.com/x_(y)"],
        );
    }
}
