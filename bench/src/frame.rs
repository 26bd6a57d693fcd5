//! Reading what the tool needs out of one event frame, fast.
//!
//! Every received frame passes through here, so this avoids building a JSON
//! tree: [`top_level_fields`] walks the outer object once and hands back the
//! raw text of the few keys asked for, and [`parse_timestamp_micros`] turns a
//! timestamp (RFC 3339 text or a number of s/ms/µs/ns since the epoch) into
//! microseconds since the epoch.

use chrono::DateTime;

/// The unit of a numeric timestamp field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum NumericUnit {
    /// Guess from the magnitude: a current date in seconds has 10 digits,
    /// in milliseconds 13, in microseconds 16, in nanoseconds 19.
    Auto,
    S,
    Ms,
    Us,
    Ns,
}

/// How to read one frame: which top-level keys carry what.
#[derive(Debug, Clone)]
pub struct FrameFormat {
    /// The key holding the event's creation time (switchboard: `timestamp`).
    pub timestamp_field: String,
    /// The unit when that field is a number rather than RFC 3339 text.
    pub numeric_unit: NumericUnit,
    /// A key whose presence marks a control message (switchboard's `pong`,
    /// `subscribed`, `error` carry `type`); such frames are not events.
    /// Empty: every text frame is an event.
    pub control_field: String,
    /// A key holding the event's integer id, read only when the caller needs
    /// it (catch-up watches for the head id). Empty: ids are not read.
    pub id_field: String,
}

impl Default for FrameFormat {
    fn default() -> Self {
        FrameFormat {
            timestamp_field: "timestamp".into(),
            numeric_unit: NumericUnit::Auto,
            control_field: "type".into(),
            id_field: String::new(),
        }
    }
}

/// What one frame turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// An event; its creation time (µs since the epoch) and id when found.
    Event {
        timestamp_us: Option<i64>,
        id: Option<i64>,
    },
    /// A control message (it has the control key).
    Control,
}

impl FrameFormat {
    /// Classifies a text frame and reads its timestamp and id.
    pub fn parse(&self, text: &str) -> Parsed {
        let keys = [
            self.timestamp_field.as_str(),
            self.control_field.as_str(),
            self.id_field.as_str(),
        ];
        let mut found = [None; 3];
        top_level_fields(text, &keys, &mut found);
        if found[1].is_some() {
            return Parsed::Control;
        }
        Parsed::Event {
            timestamp_us: found[0].and_then(|raw| parse_timestamp_micros(raw, self.numeric_unit)),
            id: found[2].and_then(|raw| raw.trim().parse::<i64>().ok()),
        }
    }
}

/// Finds the raw JSON text of the values of `keys` in the top-level object of
/// `json`, in one pass that stops once every key is found. An empty key is
/// never looked for. Text values are returned with their quotes. Keys written
/// with escapes are not recognised (no event format we know uses them); a
/// frame that is not a JSON object yields nothing.
pub fn top_level_fields<'a>(json: &'a str, keys: &[&str], out: &mut [Option<&'a str>]) {
    let bytes = json.as_bytes();
    let wanted = keys.iter().filter(|k| !k.is_empty()).count();
    let mut seen = 0;
    let mut i = skip_ws(bytes, 0);
    if bytes.get(i) != Some(&b'{') {
        return;
    }
    i += 1;
    while seen < wanted {
        i = skip_ws(bytes, i);
        if bytes.get(i) != Some(&b'"') {
            return; // `}` (end of object) or malformed
        }
        let Some(key_end) = string_end(bytes, i) else {
            return;
        };
        let key = &json[i + 1..key_end - 1];
        i = skip_ws(bytes, key_end);
        if bytes.get(i) != Some(&b':') {
            return;
        }
        i = skip_ws(bytes, i + 1);
        let Some(value_end) = value_end(bytes, i) else {
            return;
        };
        for (slot, wanted_key) in out.iter_mut().zip(keys) {
            if slot.is_none() && !wanted_key.is_empty() && *wanted_key == key {
                *slot = Some(&json[i..value_end]);
                seen += 1;
            }
        }
        i = skip_ws(bytes, value_end);
        match bytes.get(i) {
            Some(b',') => i += 1,
            _ => return,
        }
    }
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while matches!(bytes.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// Given the index of an opening quote, the index just past the closing one.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The index just past the JSON value starting at `start`.
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    match bytes.get(start)? {
        b'"' => string_end(bytes, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            while i < bytes.len() {
                match bytes[i] {
                    b'"' => {
                        i = string_end(bytes, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            // A number, true, false or null: runs to a delimiter.
            let mut i = start;
            while i < bytes.len()
                && !matches!(bytes[i], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                i += 1;
            }
            (i > start).then_some(i)
        }
    }
}

/// Microseconds since the Unix epoch from a raw JSON value: RFC 3339 text
/// (any fraction length, `Z` or an offset), or a number (or a string holding
/// one) in `unit`.
pub fn parse_timestamp_micros(raw: &str, unit: NumericUnit) -> Option<i64> {
    let raw = raw.trim();
    if let Some(text) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        if let Some(us) = parse_rfc3339_fast(text) {
            return Some(us);
        }
        if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
            return Some(dt.timestamp_micros());
        }
        return numeric_micros(text, unit);
    }
    numeric_micros(raw, unit)
}

fn numeric_micros(text: &str, unit: NumericUnit) -> Option<i64> {
    let value: f64 = text.parse().ok()?;
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let unit = match unit {
        NumericUnit::Auto if value < 1e11 => NumericUnit::S,
        NumericUnit::Auto if value < 1e14 => NumericUnit::Ms,
        NumericUnit::Auto if value < 1e17 => NumericUnit::Us,
        NumericUnit::Auto => NumericUnit::Ns,
        other => other,
    };
    let us = match unit {
        NumericUnit::S => value * 1e6,
        NumericUnit::Ms => value * 1e3,
        NumericUnit::Us => value,
        NumericUnit::Ns | NumericUnit::Auto => value / 1e3,
    };
    Some(us.round() as i64)
}

/// The common shape `YYYY-MM-DDTHH:MM:SS[.f+](Z|±HH:MM)` without chrono's
/// general parser, which costs more per frame than the rest of the receive
/// path. Anything else returns `None` and goes to chrono.
fn parse_rfc3339_fast(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let mut v = 0i64;
        for &c in &b[from..to] {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            // Digits past the sixth are below a microsecond: read, not kept.
            if i - start < 6 {
                micros = micros * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..6 {
            micros *= 10;
        }
    }
    let offset_secs = match &b[i..] {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let h = i64::from(h1 - b'0') * 10 + i64::from(h2 - b'0');
            let m = i64::from(m1 - b'0') * 10 + i64::from(m2 - b'0');
            let secs = h * 3600 + m * 60;
            if *sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return None,
    };
    let days = days_since_epoch(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(secs * 1_000_000 + micros)
}

/// Days from 1970-01-01 to a proleptic Gregorian date. Shifting the year to
/// start in March puts the leap day last, so each 400-year era has a fixed
/// day count and a day-of-year follows from the month by a linear formula.
fn days_since_epoch(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400; // 0..=399
    let month_from_march = (month + 9) % 12; // March = 0 ... February = 11
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719_468 days separate 0000-03-01 from 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const SWITCHBOARD: &str = r#"{"id":1042,"seq":17,"event":"message","instance":"alpha","timestamp":"2026-11-22T10:30:00.123456Z","data":{"id":"x","timestamp":1763807400,"type":"text","nested":[{"a":"}"}]}}"#;

    #[test]
    fn top_level_fields_ignores_keys_inside_nested_objects() {
        let mut out = [None; 3];
        top_level_fields(SWITCHBOARD, &["timestamp", "type", "id"], &mut out);
        assert_eq!(out[0], Some("\"2026-11-22T10:30:00.123456Z\""));
        assert_eq!(out[1], None, "`type` only appears inside data");
        assert_eq!(out[2], Some("1042"));
    }

    #[test]
    fn top_level_fields_skips_strings_with_braces_and_escaped_quotes() {
        let json = r#" { "a" : "x\"}{" , "b":[1,{"c":"]"}], "ts" : 17 } "#;
        let mut out = [None; 2];
        top_level_fields(json, &["ts", "b"], &mut out);
        assert_eq!(out[0], Some("17"));
        assert_eq!(out[1], Some(r#"[1,{"c":"]"}]"#));
    }

    #[test]
    fn top_level_fields_yields_nothing_for_non_objects_and_truncated_frames() {
        let mut out = [None; 1];
        top_level_fields("[1,2]", &["a"], &mut out);
        assert_eq!(out[0], None);
        top_level_fields(r#"{"a":"unterminated"#, &["a"], &mut out);
        assert_eq!(out[0], None);
        top_level_fields("", &["a"], &mut out);
        assert_eq!(out[0], None);
    }

    #[test]
    fn an_empty_key_is_never_matched() {
        let mut out = [None; 2];
        top_level_fields(r#"{"":1,"a":2}"#, &["", "a"], &mut out);
        assert_eq!(out, [None, Some("2")]);
    }

    #[test]
    fn rfc3339_with_microseconds_matches_chrono() {
        for text in [
            "2026-11-22T10:30:00.123456Z",
            "1970-01-01T00:00:00Z",
            "2000-02-29T23:59:59.5Z",
            "2024-12-31T23:59:59.999999999Z",
            "2026-03-01T00:00:00.000001+02:00",
            "1969-12-31T23:59:59.25-05:30",
        ] {
            let expected = DateTime::parse_from_rfc3339(text)
                .map(|d| d.timestamp_micros())
                .ok();
            assert_eq!(parse_rfc3339_fast(text), expected, "{text}");
            assert_eq!(
                parse_timestamp_micros(&format!("\"{text}\""), NumericUnit::Auto),
                expected
            );
        }
    }

    #[test]
    fn unusual_rfc3339_falls_back_to_chrono() {
        // Lower-case separators are valid RFC 3339 but not the fast shape.
        let text = "\"2026-11-22t10:30:00.5z\"";
        assert_eq!(
            parse_timestamp_micros(text, NumericUnit::Auto),
            Some(1_795_343_400_500_000)
        );
    }

    #[test]
    fn numeric_timestamps_are_read_in_the_given_or_guessed_unit() {
        let us = 1_763_807_400_123_456_i64;
        assert_eq!(
            parse_timestamp_micros("1763807400.123456", NumericUnit::Auto),
            Some(us)
        );
        assert_eq!(
            parse_timestamp_micros("1763807400123", NumericUnit::Auto),
            Some(us / 1000 * 1000)
        );
        assert_eq!(
            parse_timestamp_micros("1763807400123456", NumericUnit::Auto),
            Some(us)
        );
        assert_eq!(
            parse_timestamp_micros("1763807400123456789", NumericUnit::Auto),
            Some(us + 1)
        );
        assert_eq!(
            parse_timestamp_micros("\"1763807400123\"", NumericUnit::Ms),
            Some(us / 1000 * 1000)
        );
        assert_eq!(
            parse_timestamp_micros("1500", NumericUnit::Ms),
            Some(1_500_000)
        );
        assert_eq!(
            parse_timestamp_micros("\"yesterday\"", NumericUnit::Auto),
            None
        );
        assert_eq!(parse_timestamp_micros("-5", NumericUnit::Auto), None);
        assert_eq!(parse_timestamp_micros("null", NumericUnit::Auto), None);
    }

    #[test]
    fn a_frame_with_the_control_key_is_not_an_event() {
        let format = FrameFormat {
            id_field: "id".into(),
            ..FrameFormat::default()
        };
        assert_eq!(
            format.parse(r#"{"type":"pong","data":{},"timestamp":"2026-01-01T00:00:00Z"}"#),
            Parsed::Control
        );
        assert_eq!(
            format.parse(SWITCHBOARD),
            Parsed::Event {
                timestamp_us: Some(1_795_343_400_123_456),
                id: Some(1042)
            }
        );
    }

    #[test]
    fn days_since_epoch_counts_leap_years() {
        assert_eq!(days_since_epoch(1970, 1, 1), 0);
        assert_eq!(days_since_epoch(2000, 3, 1), 11_017);
        assert_eq!(days_since_epoch(1969, 12, 31), -1);
        assert_eq!(
            days_since_epoch(2100, 3, 1) - days_since_epoch(2100, 2, 28),
            1
        );
    }
}
