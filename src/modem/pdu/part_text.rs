//! The text of one part of a long message before it is decoded.
//!
//! A sender splits a long text into parts by code units, and not every
//! sender keeps a character whole: some cut an emoji's UTF-16 surrogate
//! pair in two, or (against TS 23.040 §9.2.3.24.1) end a GSM-7 part on the
//! escape that belongs to the first character of the next. Decoded part by
//! part, such a character comes out as two U+FFFD, or `€` as `" e"`. So the
//! parts of a message are joined as septets or code units, and decoded
//! once, whole.

use super::{gsm7, hex, ucs2};

/// A part's payload: septets (GSM-7) or UTF-16 code units (UCS-2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartText {
    Septets(Vec<u8>),
    Utf16(Vec<u16>),
}

impl PartText {
    /// The text these units stand for, decoded leniently (as each part is).
    pub fn decode(&self) -> String {
        match self {
            PartText::Septets(septets) => gsm7::septets_to_string(septets),
            PartText::Utf16(units) => ucs2::units_to_string(units),
        }
    }

    /// The parts (in order) joined into one; `None` when they do not share
    /// an alphabet.
    pub fn join<'a>(parts: impl IntoIterator<Item = &'a PartText>) -> Option<PartText> {
        let mut parts = parts.into_iter();
        let mut joined = parts.next()?.clone();
        for part in parts {
            match (&mut joined, part) {
                (PartText::Septets(all), PartText::Septets(more)) => all.extend_from_slice(more),
                (PartText::Utf16(all), PartText::Utf16(more)) => all.extend_from_slice(more),
                _ => return None,
            }
        }
        Some(joined)
    }

    /// A form to store between the parts' arrival: `gsm7:` or `utf16:`
    /// and the units in hex (code units big-endian).
    pub fn to_stored(&self) -> String {
        match self {
            PartText::Septets(septets) => format!("gsm7:{}", hex::encode_hex(septets)),
            PartText::Utf16(units) => {
                let mut octets = Vec::with_capacity(units.len() * 2);
                ucs2::units_to_octets(units, &mut octets);
                format!("utf16:{}", hex::encode_hex(&octets))
            }
        }
    }

    /// Reads [`PartText::to_stored`]'s form back; `None` for anything else.
    pub fn from_stored(stored: &str) -> Option<PartText> {
        if let Some(septets) = stored.strip_prefix("gsm7:") {
            let septets = hex::decode_hex(septets).ok()?;
            return septets
                .iter()
                .all(|s| *s < 0x80)
                .then_some(PartText::Septets(septets));
        }
        let octets = hex::decode_hex(stored.strip_prefix("utf16:")?).ok()?;
        match ucs2::octets_to_units(&octets) {
            (units, false) => Some(PartText::Utf16(units)),
            (_, true) => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn a_surrogate_pair_cut_between_parts_is_one_character_when_joined() {
        let units: Vec<u16> = "ab😀cd".encode_utf16().collect();
        let (first, second) = units.split_at(3); // a, b, the high surrogate
        let first = PartText::Utf16(first.to_vec());
        let second = PartText::Utf16(second.to_vec());
        assert_eq!(first.decode() + &second.decode(), "ab\u{FFFD}\u{FFFD}cd");
        assert_eq!(
            PartText::join([&first, &second]).unwrap().decode(),
            "ab😀cd"
        );
    }

    #[test]
    fn an_escape_cut_from_its_character_is_the_character_when_joined() {
        let septets = gsm7::string_to_septets("5€ only").unwrap();
        let (first, second) = septets.split_at(2); // '5', ESC
        let first = PartText::Septets(first.to_vec());
        let second = PartText::Septets(second.to_vec());
        assert_eq!(first.decode() + &second.decode(), "5 e only");
        assert_eq!(
            PartText::join([&first, &second]).unwrap().decode(),
            "5€ only"
        );
    }

    #[test]
    fn stored_forms_read_back_and_mixed_alphabets_do_not_join() {
        for part in [
            PartText::Septets(vec![0x41, 0x1B, 0x65]),
            PartText::Utf16(vec![0xD83D, 0x0041]),
            PartText::Utf16(Vec::new()),
        ] {
            assert_eq!(PartText::from_stored(&part.to_stored()), Some(part));
        }
        for bad in [
            "",
            "gsm7:zz",
            "gsm7:80",
            "utf16:0041AA",
            "latin1:41",
            "Hello",
        ] {
            assert_eq!(PartText::from_stored(bad), None, "{bad}");
        }
        let mixed = [PartText::Septets(vec![0x41]), PartText::Utf16(vec![0x41])];
        assert_eq!(PartText::join(&mixed), None);
        assert_eq!(PartText::join(&[]), None);
    }
}
