//! Tokenizer for short, noisy social text: words, @mentions, #hashtags, URLs, emoji, punctuation.

/// What a token is; mentions and URLs keep no text (never leak a handle into features or topics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Word,
    Hashtag,
    Mention,
    Url,
    Emoji,
    Punct,
    Number,
}

/// One token; `text` is lowercased, elongations squeezed ("soooo" -> "soo").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub text: String,
}

fn is_emoji(c: char) -> bool {
    matches!(c as u32,
        0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2B00..=0x2BFF | 0x2300..=0x23FF)
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Push `c` lowercased, squeezing runs of three or more equal characters to two.
fn push_squeezed(out: &mut String, c: char) {
    for l in c.to_lowercase() {
        let b = out.as_bytes();
        if l.is_ascii() && b.len() >= 2 && b[b.len() - 1] == l as u8 && b[b.len() - 2] == l as u8 {
            continue;
        }
        if !l.is_ascii() {
            let mut it = out.chars().rev();
            if it.next() == Some(l) && it.next() == Some(l) {
                continue;
            }
        }
        out.push(l);
    }
}

/// Split `text` into tokens. Never fails; unknown symbols are dropped.
pub fn tokenize(text: &str) -> Vec<Token> {
    let mut tokens = Vec::with_capacity(text.len() / 4 + 4);
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let n = chars.len();
    let mut i = 0;
    while i < n {
        let (pos, c) = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let rest = &text[pos..];
        if starts_with_ignore_case(rest, "http://")
            || starts_with_ignore_case(rest, "https://")
            || starts_with_ignore_case(rest, "www.")
        {
            while i < n && !chars[i].1.is_whitespace() {
                i += 1;
            }
            tokens.push(Token {
                kind: TokenKind::Url,
                text: String::new(),
            });
            continue;
        }
        if (c == '@' || c == '#') && i + 1 < n && is_word_char(chars[i + 1].1) {
            let mut j = i + 1;
            let mut word = String::new();
            while j < n && is_word_char(chars[j].1) {
                if c == '#' {
                    push_squeezed(&mut word, chars[j].1);
                }
                j += 1;
            }
            i = j;
            if c == '@' {
                tokens.push(Token {
                    kind: TokenKind::Mention,
                    text: String::new(),
                });
            } else {
                tokens.push(Token {
                    kind: TokenKind::Hashtag,
                    text: word,
                });
            }
            continue;
        }
        if c.is_alphanumeric() {
            let mut j = i;
            let mut word = String::new();
            let mut all_digits = true;
            while j < n {
                let ch = chars[j].1;
                if ch.is_alphanumeric() {
                    all_digits &= ch.is_ascii_digit();
                    push_squeezed(&mut word, ch);
                    j += 1;
                } else if (ch == '\'' || ch == '’' || ch == '-')
                    && j + 1 < n
                    && chars[j + 1].1.is_alphanumeric()
                    && j > i
                {
                    word.push(if ch == '-' { '-' } else { '\'' });
                    j += 1;
                } else {
                    break;
                }
            }
            i = j;
            tokens.push(Token {
                kind: if all_digits {
                    TokenKind::Number
                } else {
                    TokenKind::Word
                },
                text: word,
            });
            continue;
        }
        if is_emoji(c) {
            tokens.push(Token {
                kind: TokenKind::Emoji,
                text: c.to_string(),
            });
            i += 1;
            continue;
        }
        if matches!(c, '?' | '!' | '.' | ',' | ';' | ':' | '(' | ')') {
            // Emoticons such as :) :( :-( ;) are kept as one emoji-like token.
            if (c == ':' || c == ';') && i + 1 < n {
                let mut j = i + 1;
                if chars[j].1 == '-' && j + 1 < n {
                    j += 1;
                }
                let m = chars[j].1;
                if matches!(m, ')' | '(' | 'D' | 'P' | 'p' | '/') {
                    let face = match m {
                        ')' | 'D' | 'P' | 'p' => ":)",
                        _ => ":(",
                    };
                    tokens.push(Token {
                        kind: TokenKind::Emoji,
                        text: face.to_string(),
                    });
                    i = j + 1;
                    continue;
                }
            }
            // Collapse runs like "?!?!" into one token holding the distinct marks.
            let mut j = i;
            let mut text = String::new();
            while j < n && matches!(chars[j].1, '?' | '!' | '.') && c != ',' {
                if !text.contains(chars[j].1) {
                    text.push(chars[j].1);
                }
                j += 1;
            }
            if j == i {
                text.push(c);
                j = i + 1;
            }
            i = j;
            tokens.push(Token {
                kind: TokenKind::Punct,
                text,
            });
            continue;
        }
        i += 1;
    }
    tokens
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: &str) {
        let got: Vec<String> = tokenize(input)
            .iter()
            .map(|t| match t.kind {
                TokenKind::Mention => "@".to_string(),
                TokenKind::Url => "<url>".to_string(),
                TokenKind::Hashtag => format!("#{}", t.text),
                _ => t.text.clone(),
            })
            .collect();
        assert_eq!(got.join(" "), expect, "input: {input}");
    }

    #[test]
    fn handles_urls_and_hashtags_are_typed() {
        check(
            "@brand Waarom is mijn vlucht NIET doorgegaan?? https://t.co/x #fail",
            "@ waarom is mijn vlucht niet doorgegaan ? <url> #fail",
        );
    }

    #[test]
    fn elongations_emoji_and_emoticons() {
        check("Sooooo goood 😡 :-( didn't", "soo good 😡 :( didn't");
        check("Wait... what?!", "wait . what ?!");
    }
}
