//! Small helpers shared by the parsers: typed decoding with JSON paths in errors, and the
//! several ways platforms write a timestamp.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::ParseError;

/// Decodes `body` as `T`, naming the path of the first offending field on failure.
pub(crate) fn decode_body<T: DeserializeOwned>(
    platform: &'static str,
    body: &[u8],
) -> Result<T, ParseError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| malformed(platform, "", e))
}

/// Decodes a sub-tree already read as a [`serde_json::Value`]; `at` is its path in the body.
pub(crate) fn decode_value<T: DeserializeOwned>(
    platform: &'static str,
    at: &str,
    value: &serde_json::Value,
) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(value).map_err(|e| malformed(platform, at, e))
}

fn malformed(
    platform: &'static str,
    at: &str,
    e: serde_path_to_error::Error<serde_json::Error>,
) -> ParseError {
    let inner = e.path().to_string();
    let path = match (at.is_empty(), inner == ".") {
        (true, _) => inner,
        (false, true) => at.to_owned(),
        (false, false) => format!("{at}.{inner}"),
    };
    ParseError::Malformed {
        platform,
        path,
        reason: e.into_inner().to_string(),
    }
}

/// An integer the platform may write as a JSON number or as a string of digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lenient(pub i64);

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Float(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Lenient(n)),
            // Timestamps are whole numbers; a float would be a platform quirk, truncate it.
            #[allow(clippy::cast_possible_truncation)]
            Raw::Float(f) if f.is_finite() => Ok(Lenient(f as i64)),
            Raw::Float(_) => Err(serde::de::Error::custom("not a finite number")),
            Raw::Text(s) => {
                s.trim().parse().map(Lenient).map_err(|_| {
                    serde::de::Error::custom(format!("expected an integer, got {s:?}"))
                })
            }
        }
    }
}

/// An id the platform may write as a number or a string (Telegram chat ids, X numeric ids).
pub(crate) fn id_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Text(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::Int(n) => n.to_string(),
        Raw::Text(s) => s,
    })
}

/// An epoch timestamp that may be in seconds or in milliseconds (Meta writes both, and its
/// dashboard's test deliveries use seconds where real ones use milliseconds), as milliseconds.
/// Anything below 10^11 is read as seconds: as milliseconds that would be March 1973, as
/// seconds the year 5138.
pub(crate) fn epoch_millis(t: i64) -> i64 {
    if t.unsigned_abs() < 100_000_000_000 {
        seconds_to_millis(t)
    } else {
        t
    }
}

/// Seconds since the epoch to milliseconds, saturating instead of overflowing.
pub(crate) fn seconds_to_millis(s: i64) -> i64 {
    s.saturating_mul(1000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_from_civil_matches_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2018, 10, 10), 17_814);
    }

    #[test]
    fn epoch_timestamps_in_seconds_or_milliseconds_are_read_as_such() {
        assert_eq!(epoch_millis(1_527_459_824), 1_527_459_824_000);
        assert_eq!(epoch_millis(1_458_692_752_478), 1_458_692_752_478);
    }

    #[test]
    fn lenient_integers_accept_numbers_and_digit_strings() {
        let v: Vec<Lenient> = serde_json::from_str(r#"[1, "2", 3.0]"#).expect("valid");
        assert_eq!(v, vec![Lenient(1), Lenient(2), Lenient(3)]);
        assert!(serde_json::from_str::<Lenient>(r#""soon""#).is_err());
    }
}
