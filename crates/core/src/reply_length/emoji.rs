//! Where an emoji sequence starts and how long it is, so X can count the whole sequence as 2.
//!
//! A sequence is a flag (two regional indicators), a keycap (`#`, `*` or a digit, optional
//! VS16, U+20E3), or a pictographic base with an optional VS16 or skin tone, an optional
//! tag sequence (subdivision flags), and further bases joined by ZERO WIDTH JOINER.
//! Pictographic code points are the Unicode `Extended_Pictographic` blocks; `©` and `®` only
//! count as emoji when VS16 asks for the emoji form.

const VS16: char = '\u{FE0F}';
const ZWJ: char = '\u{200D}';
const KEYCAP: char = '\u{20E3}';

fn is_regional_indicator(c: char) -> bool {
    ('\u{1F1E6}'..='\u{1F1FF}').contains(&c)
}

fn is_skin_tone(c: char) -> bool {
    ('\u{1F3FB}'..='\u{1F3FF}').contains(&c)
}

fn is_tag(c: char) -> bool {
    ('\u{E0020}'..='\u{E007E}').contains(&c)
}

fn is_pictographic(c: char) -> bool {
    matches!(c as u32,
        0x203C | 0x2049 | 0x2122 | 0x2139 | 0x2194..=0x2199 | 0x21A9..=0x21AA
        | 0x231A..=0x231B | 0x2328 | 0x2388 | 0x23CF | 0x23E9..=0x23F3 | 0x23F8..=0x23FA
        | 0x24C2 | 0x25AA..=0x25AB | 0x25B6 | 0x25C0 | 0x25FB..=0x25FE | 0x2600..=0x27BF
        | 0x2934..=0x2935 | 0x2B05..=0x2B07 | 0x2B1B..=0x2B1C | 0x2B50 | 0x2B55 | 0x3030
        | 0x303D | 0x3297 | 0x3299 | 0x1F000..=0x1F1E5 | 0x1F200..=0x1F3FA | 0x1F400..=0x1FAFF)
}

/// The number of code points of the emoji sequence starting at `text[0]`, if one does.
pub(crate) fn emoji_len(text: &[char]) -> Option<usize> {
    let first = *text.first()?;
    let at = |i: usize| text.get(i).copied();
    if is_regional_indicator(first) {
        return Some(if at(1).is_some_and(is_regional_indicator) {
            2
        } else {
            1
        });
    }
    if first.is_ascii_digit() || first == '#' || first == '*' {
        return match (at(1), at(2)) {
            (Some(KEYCAP), _) => Some(2),
            (Some(VS16), Some(KEYCAP)) => Some(3),
            _ => None,
        };
    }
    let is_base = |c: char| is_pictographic(c) || is_skin_tone(c);
    if matches!(first, '\u{A9}' | '\u{AE}') {
        return (at(1) == Some(VS16)).then_some(2);
    }
    if !is_base(first) {
        return None;
    }
    let mut i = 1;
    loop {
        if at(i) == Some(VS16) || at(i).is_some_and(is_skin_tone) {
            i += 1;
        }
        if at(i).is_some_and(is_tag) {
            while at(i).is_some_and(is_tag) {
                i += 1;
            }
            if at(i) == Some('\u{E007F}') {
                i += 1;
            }
        }
        if at(i) == Some(ZWJ) && at(i + 1).is_some_and(is_base) {
            i += 2;
        } else {
            return Some(i);
        }
    }
}
