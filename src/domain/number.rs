//! Phone numbers, parsed once at the edge.

use std::fmt;

use serde::Serialize;

/// A phone number: an optional leading `+` and 3 to 20 digits. Spaces,
/// dashes, dots and parentheses people type are dropped when parsing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(raw: &str) -> Result<PhoneNumber, String> {
        let trimmed = raw.trim();
        let (plus, rest) = match trimmed.strip_prefix('+') {
            Some(rest) => ("+", rest),
            None => ("", trimmed),
        };
        let digits: String = rest
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        if !(3..=20).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "'{}' is not a phone number: use digits with an optional leading + (3 to 20 digits)",
                crate::domain::truncate(raw, 40)
            ));
        }
        Ok(PhoneNumber(format!("{plus}{digits}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_normalized() {
        assert_eq!(
            PhoneNumber::parse(" +1 (555) 123-4567 ")
                .expect("ok")
                .as_str(),
            "+15551234567"
        );
        assert_eq!(
            PhoneNumber::parse("0049.30.1234").expect("ok").as_str(),
            "0049301234"
        );
    }

    #[test]
    fn non_numbers_are_refused() {
        for bad in [
            "",
            "+",
            "12",
            "abc",
            "+1555abc",
            "++15551234567",
            &"1".repeat(21),
        ] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad}");
        }
    }
}
