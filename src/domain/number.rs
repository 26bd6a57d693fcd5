//! Phone numbers, parsed once at the edge.
//!
//! A recipient is written in E.164 (`+<country code><number>`), whatever
//! way it was typed: with a leading `+`, or as a national number of the
//! instance's default region (`07911 123456` in `GB` is `+447911123456`).
//! Parsing and the country metadata come from the `phonenumber` crate
//! (Google's libphonenumber data); what it does not cover (short codes,
//! and the characters we accept around the digits) is written here.
//!
//! A number must be *possible*: a country code that exists, and a number of
//! digits that country's numbers can have. It need not match the country's
//! assigned ranges (libphonenumber's "valid"): number plans change faster
//! than any copy of the metadata, the network is the final judge of a
//! destination, and the reserved fictional ranges (`+1 555 01xx`) that
//! examples and tests use are possible but not valid.

use std::{fmt, str::FromStr};

use phonenumber::{country, metadata::DATABASE, Mode};
use serde::Serialize;

/// A destination: E.164 (`+15551234567`), or a short code (`12345`) where
/// the instance allows them. Every stage that names a number uses this.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

/// Longest input looked at; nobody types a number this long, and the
/// parser never sees an unbounded string.
const MAX_INPUT: usize = 64;
/// Short codes: operator and service numbers without a country code. No
/// standard fixes their length; 3 to 8 digits covers the countries that
/// publish theirs (the metadata crate has no short-code data).
const SHORT_CODE_DIGITS: std::ops::RangeInclusive<usize> = 3..=8;

/// How an instance reads the numbers it is given (`settings/set`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NumberRules {
    /// The country a number without `+` belongs to; `None`: every number
    /// must carry its country code.
    pub default_region: Option<Region>,
    /// Whether 3 to 8 digits without `+` are taken as a short code.
    pub allow_short_codes: bool,
}

impl NumberRules {
    /// What a number that was already parsed at the edge is re-read with
    /// (an outbox row, a group member): E.164 or a short code.
    pub const STORED: NumberRules = NumberRules {
        default_region: None,
        allow_short_codes: true,
    };
}

/// Why a text is not a number the instance can send to. The message says
/// what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{input}' is not a phone number: {reason}")]
pub struct InvalidNumber {
    /// The input, cut short.
    input: String,
    reason: String,
}

impl InvalidNumber {
    fn new(raw: &str, reason: impl Into<String>) -> InvalidNumber {
        InvalidNumber {
            input: super::truncate(raw.trim(), 40).to_owned(),
            reason: reason.into(),
        }
    }
}

impl From<InvalidNumber> for String {
    fn from(err: InvalidNumber) -> String {
        err.to_string()
    }
}

impl PhoneNumber {
    /// Parses an international number (`+` and the country code); see
    /// [`PhoneNumber::parse_with`] for national numbers and short codes.
    pub fn parse(raw: &str) -> Result<PhoneNumber, InvalidNumber> {
        PhoneNumber::parse_with(raw, &NumberRules::default())
    }

    /// Parses what a client typed as a number, by the instance's rules.
    /// Spaces, dashes, dots and parentheses between the digits are dropped;
    /// anything else (letters, a second `+`) is refused.
    pub fn parse_with(raw: &str, rules: &NumberRules) -> Result<PhoneNumber, InvalidNumber> {
        let trimmed = raw.trim();
        if trimmed.len() > MAX_INPUT {
            return Err(InvalidNumber::new(raw, "it is far too long"));
        }
        let (international, rest) = match trimmed.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let mut digits = String::with_capacity(rest.len());
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => {
                    return Err(InvalidNumber::new(
                        raw,
                        "use digits, with an optional leading + and spaces, dashes, dots or \
                         parentheses between them",
                    ))
                }
            }
        }
        if digits.is_empty() {
            return Err(InvalidNumber::new(raw, "it has no digits"));
        }
        if international {
            return e164(raw, None, &format!("+{digits}")).map(|(number, _)| number);
        }
        let short = SHORT_CODE_DIGITS.contains(&digits.len());
        // A national number of the default region comes first. Where a
        // short code could also be a national number (Germany has five-
        // digit ones), it is the national number only if it is assigned.
        let national = rules
            .default_region
            .map(|region| e164(raw, Some(region), &digits));
        match national {
            Some(Ok((number, valid))) if valid || !(short && rules.allow_short_codes) => {
                return Ok(number)
            }
            Some(Err(err)) if !short => return Err(err),
            _ if short => {
                return if rules.allow_short_codes {
                    Ok(PhoneNumber(digits))
                } else {
                    Err(InvalidNumber::new(
                        raw,
                        "it looks like a short code, and this instance does not send to short \
                         codes (allow them with \"allowShortCodes\": true in settings/set)",
                    ))
                };
            }
            _ => {}
        }
        Err(InvalidNumber::new(
            raw,
            "it has no country code: write it as +<country code><number>, or set the \
             instance's \"defaultRegion\" (settings/set) to read it as a national number",
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a short code rather than an E.164 number.
    pub fn is_short_code(&self) -> bool {
        !self.0.starts_with('+')
    }
}

/// Parses `text` (digits with a leading `+`, or national digits of
/// `region`) into E.164, checking the country code and the length; says
/// too whether the number is in an assigned range (libphonenumber's "valid").
fn e164(
    raw: &str,
    region: Option<Region>,
    text: &str,
) -> Result<(PhoneNumber, bool), InvalidNumber> {
    let parsed = phonenumber::parse(region.map(|r| r.0), text).map_err(|err| {
        let reason = match err {
            phonenumber::ParseError::InvalidCountryCode => match region {
                Some(region) => format!("it is not a number of region {region}"),
                None => "it does not start with a country calling code".to_owned(),
            },
            phonenumber::ParseError::TooLong => "it has too many digits".to_owned(),
            phonenumber::ParseError::TooShortNsn | phonenumber::ParseError::TooShortAfterIdd => {
                "it has too few digits".to_owned()
            }
            _ => "it is not a number".to_owned(),
        };
        InvalidNumber::new(raw, reason)
    })?;
    let code = parsed.code().value();
    let national = parsed.national().to_string();
    let lengths = possible_lengths(code);
    if !lengths.is_empty() && !lengths.contains(&(national.len() as u16)) {
        let mut allowed = lengths.iter().map(u16::to_string).collect::<Vec<_>>();
        let last = allowed.pop().unwrap_or_default();
        let allowed = if allowed.is_empty() {
            last
        } else {
            format!("{} or {last}", allowed.join(", "))
        };
        return Err(InvalidNumber::new(
            raw,
            format!(
                "numbers with country code +{code} have {allowed} digits after it, this one has {}",
                national.len()
            ),
        ));
    }
    let valid = parsed.is_valid();
    Ok((
        PhoneNumber(parsed.format().mode(Mode::E164).to_string()),
        valid,
    ))
}

/// The lengths (without the country code) that numbers of every kind can
/// have under `code`, over all the regions that share it. Written here
/// because the crate keeps its own length check private; the lengths come
/// from its metadata.
fn possible_lengths(code: u16) -> Vec<u16> {
    let mut lengths: Vec<u16> = DATABASE
        .by_code(&code)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|meta| {
            let d = meta.descriptors();
            [
                Some(d.general()),
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.premium_rate(),
                d.shared_cost(),
                d.personal_number(),
                d.voip(),
                d.pager(),
                d.uan(),
                d.voicemail(),
            ]
            .into_iter()
            .flatten()
            .flat_map(|desc| desc.possible_length().to_vec())
            .collect::<Vec<_>>()
        })
        .collect();
    lengths.sort_unstable();
    lengths.dedup();
    lengths
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A country or territory whose national numbers an instance reads: an ISO
/// 3166-1 alpha-2 code (`US`, `GB`, `DE`) that the number metadata knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region(country::Id);

/// A region code the metadata does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a region: use an ISO 3166-1 alpha-2 country code such as US, GB or DE")]
pub struct UnknownRegion(String);

impl FromStr for Region {
    type Err = UnknownRegion;

    fn from_str(raw: &str) -> Result<Region, UnknownRegion> {
        let upper = raw.trim().to_ascii_uppercase();
        let unknown = || UnknownRegion(super::truncate(raw.trim(), 20).to_owned());
        if upper.len() != 2 {
            return Err(unknown());
        }
        let id: country::Id = upper.parse().map_err(|_| unknown())?;
        // A code the crate names but has no numbering data for is no use.
        DATABASE.by_id(id.as_ref()).ok_or_else(unknown)?;
        Ok(Region(id))
    }
}

impl Region {
    pub fn as_str(&self) -> &str {
        self.0.as_ref()
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Region {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Region {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Region, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(code: &str) -> NumberRules {
        NumberRules {
            default_region: Some(code.parse().expect("a region")),
            allow_short_codes: false,
        }
    }

    fn e164_of(raw: &str, rules: &NumberRules) -> String {
        PhoneNumber::parse_with(raw, rules)
            .unwrap_or_else(|e| panic!("{raw}: {e}"))
            .to_string()
    }

    #[test]
    fn numbers_are_written_in_e164() {
        let none = NumberRules::default();
        assert_eq!(e164_of(" +1 (555) 123-4567 ", &none), "+15551234567");
        assert_eq!(e164_of("+44 7911 123456", &none), "+447911123456");
        assert_eq!(e164_of("+49 30.1234", &none), "+49301234");
        // A national number of the instance's region, with its trunk prefix.
        assert_eq!(e164_of("07911 123456", &region("GB")), "+447911123456");
        assert_eq!(e164_of("030 123456", &region("de")), "+4930123456");
        assert_eq!(e164_of("(555) 123-4567", &region("US")), "+15551234567");
        // The international prefix of the region, and a + that wins over it.
        assert_eq!(e164_of("0049 30 1234", &region("DE")), "+49301234");
        assert_eq!(e164_of("+44 7911 123456", &region("US")), "+447911123456");
    }

    #[test]
    fn without_a_plus_or_a_region_a_number_is_refused_saying_why() {
        let err = PhoneNumber::parse("5551234567").expect_err("no country code");
        assert!(err.to_string().contains("no country code"), "{err}");
        assert!(err.to_string().contains("defaultRegion"), "{err}");
    }

    #[test]
    fn non_numbers_and_impossible_numbers_are_refused_saying_why() {
        for (bad, why) in [
            ("", "no digits"),
            ("+", "no digits"),
            ("abc", "use digits"),
            ("+1555abc", "use digits"),
            ("++15551234567", "use digits"),
            ("+1-800-FLOWERS", "use digits"),
            ("+999123456", "country calling code"),
            ("+1555123", "this one has 6"),
            (
                "+44 7911 1234567890",
                "have 7, 9 or 10 digits after it, this one has 14",
            ),
            (&"1".repeat(100), "far too long"),
        ] {
            let err = PhoneNumber::parse(bad).expect_err(bad).to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let err = PhoneNumber::parse_with("12", &region("US")).expect_err("too short");
        assert!(err.to_string().contains("not a phone number"), "{err}");
    }

    #[test]
    fn short_codes_pass_only_where_the_instance_allows_them() {
        let refused = PhoneNumber::parse("12345").expect_err("short code");
        assert!(refused.to_string().contains("allowShortCodes"), "{refused}");
        let allowed = NumberRules {
            default_region: None,
            allow_short_codes: true,
        };
        let code = PhoneNumber::parse_with("123 45", &allowed).expect("allowed");
        assert_eq!(code.as_str(), "12345");
        assert!(code.is_short_code());
        // A national number of the region is not taken for a short code,
        // unless it could be one and is not an assigned number.
        let de = NumberRules {
            default_region: Some("DE".parse().expect("a region")),
            allow_short_codes: true,
        };
        assert_eq!(e164_of("12345", &de), "12345");
        assert_eq!(e164_of("030 123456", &de), "+4930123456");
        let dk = NumberRules {
            default_region: Some("DK".parse().expect("a region")),
            allow_short_codes: true,
        };
        assert_eq!(e164_of("32 12 34 56", &dk), "+4532123456");
        // With + it is never a short code.
        assert!(PhoneNumber::parse_with("+12345", &allowed).is_err());
        // Stored numbers read back the same.
        for stored in ["+15551234567", "12345"] {
            assert_eq!(e164_of(stored, &NumberRules::STORED), stored);
        }
    }

    #[test]
    fn regions_are_country_codes_the_metadata_knows() {
        assert_eq!("gb".parse::<Region>().expect("GB").as_str(), "GB");
        for bad in ["", "G", "GBR", "XX", "ZZ", "001", "United Kingdom"] {
            let err = bad.parse::<Region>().expect_err(bad);
            assert!(err.to_string().contains("ISO 3166-1"), "{bad}: {err}");
        }
    }
}
