//! The text of a USSD answer (`+CUSD: <m>,"<text>",<dcs>`), in whatever
//! form the modem reports it.
//!
//! USSD strings are coded with the cell-broadcast data coding scheme (TS
//! 23.038 §5), not the SMS one. Modems differ in how they hand the text
//! over: most print GSM-7 text as plain characters and UCS-2 as hex; some
//! (Huawei sticks, for one) print the packed GSM-7 septets as hex, others
//! one septet per octet. [`decode_ussd`] reads all of these.

use super::{gsm7, hex, ucs2};

/// The alphabet a cell-broadcast DCS names, and how many leading octets of
/// hex user data are a language indication to skip.
fn cbs_alphabet(dcs: u8) -> (Alphabet, usize) {
    match dcs >> 4 {
        // 0000, 0010, 0011: languages in GSM-7.
        0x0 | 0x2 | 0x3 => (Alphabet::Gsm7, 0),
        // 0001 0001: UCS-2 after a two-character language, packed into
        // two octets. 0001 0000 (GSM-7 after the language) is read as it
        // comes: the language is part of the text the modem prints.
        0x1 if dcs & 0x0F == 0x01 => (Alphabet::Ucs2, 2),
        0x1 => (Alphabet::Gsm7, 0),
        // 01xx general data coding and 1001 (with a header): bits 3..2.
        0x4..=0x7 | 0x9 => match (dcs >> 2) & 0x03 {
            0b01 => (Alphabet::Data8, 0),
            0b10 => (Alphabet::Ucs2, 0),
            _ => (Alphabet::Gsm7, 0),
        },
        // 1111: bit 2 selects 8-bit data.
        0xF if dcs & 0x04 != 0 => (Alphabet::Data8, 0),
        // 1111 GSM-7, and reserved groups (read as GSM-7, as §5 asks).
        _ => (Alphabet::Gsm7, 0),
    }
}

/// The alphabets of USSD text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alphabet {
    Gsm7,
    Ucs2,
    Data8,
}

/// How a modem hands USSD text over; the simulator can speak each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UssdForm {
    /// The characters themselves (GSM-7 text in the TE character set).
    Text,
    /// UCS-2 octets as hex (DCS 72).
    Ucs2Hex,
    /// Packed GSM-7 septets as hex.
    PackedHex,
    /// GSM-7 septets as hex, one per octet.
    UnpackedHex,
}

/// The DCS a modem reports with text of `form`: 72 (UCS-2) or 15 (GSM-7,
/// language unspecified).
pub fn ussd_dcs(form: UssdForm) -> u8 {
    match form {
        UssdForm::Ucs2Hex => 72,
        UssdForm::Text | UssdForm::PackedHex | UssdForm::UnpackedHex => 15,
    }
}

/// Writes `text` the way a modem reporting `form` would; `None` when it
/// is not GSM-7 text and `form` needs that.
pub fn encode_ussd(text: &str, form: UssdForm) -> Option<String> {
    Some(match form {
        UssdForm::Text => text.to_owned(),
        UssdForm::Ucs2Hex => {
            let units: Vec<u16> = text.encode_utf16().collect();
            let mut octets = Vec::new();
            ucs2::units_to_octets(&units, &mut octets);
            hex::encode_hex(&octets)
        }
        UssdForm::PackedHex => {
            let mut septets = gsm7::string_to_septets(text)?;
            // TS 23.038 §6.1.2.3.1: seven spare bits would read as '@';
            // a CR fills them instead.
            if septets.len() % 8 == 7 {
                septets.push(b'\r');
            }
            let mut octets = Vec::new();
            gsm7::pack_into(&septets, 0, &mut octets);
            hex::encode_hex(&octets)
        }
        UssdForm::UnpackedHex => hex::encode_hex(&gsm7::string_to_septets(text)?),
    })
}

/// Decodes the text of a `+CUSD` answer by its DCS (absent: GSM-7).
///
/// Hex is told from text by its look: UCS-2 and 8-bit answers are hex
/// whenever they can be; a GSM-7 answer is read as hex only when it is
/// nothing but hex digits and holds at least one of `A`-`F`, so an answer
/// of digits alone ("1234") stays what it says. Hex GSM-7 with every octet
/// below 0x80 is one septet per octet; otherwise it is packed.
pub fn decode_ussd(text: &str, dcs: Option<u8>) -> String {
    let (alphabet, skip) = cbs_alphabet(dcs.unwrap_or(15));
    let hex_digits = !text.is_empty()
        && text.len().is_multiple_of(2)
        && text.bytes().all(|b| b.is_ascii_hexdigit());
    let octets = || hex::decode_hex(text).ok();
    match alphabet {
        Alphabet::Ucs2 if hex_digits && (text.len() / 2).saturating_sub(skip).is_multiple_of(2) => {
            match octets() {
                Some(octets) => ucs2::octets_to_string(octets.get(skip..).unwrap_or_default()),
                None => text.to_owned(),
            }
        }
        Alphabet::Data8 if hex_digits => match octets() {
            // 8-bit text has no character set of its own; Latin-1 shows it.
            Some(octets) => octets.into_iter().map(char::from).collect(),
            None => text.to_owned(),
        },
        Alphabet::Gsm7 if hex_digits && text.bytes().any(|b| b.is_ascii_alphabetic()) => {
            match octets() {
                Some(octets) if octets.iter().all(|o| *o < 0x80) => {
                    gsm7::septets_to_string(&octets)
                }
                Some(octets) => unpack(&octets).unwrap_or_else(|| text.to_owned()),
                None => text.to_owned(),
            }
        }
        _ => text.to_owned(),
    }
}

/// Packed GSM-7 octets as text, without the filler of the last octet.
fn unpack(octets: &[u8]) -> Option<String> {
    let count = octets.len() * 8 / 7;
    let mut septets = gsm7::unpack(octets, 0, count)?;
    // When the septets fill the octets exactly, the last one may be the
    // filler of seven spare bits: CR by the standard, '@' (0) in practice.
    if (octets.len() * 8).is_multiple_of(7) && matches!(septets.last(), Some(0x0D | 0x00)) {
        septets.pop();
    }
    Some(gsm7::septets_to_string(&septets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_a_modem_reports_decodes_to_the_text() {
        for text in [
            "Your balance is 12.50 EUR.",
            "Bundles: 1 Day, 2 Week",
            "1234567",
            "Guthaben: 5€ {ok}",
        ] {
            for form in [
                UssdForm::Text,
                UssdForm::Ucs2Hex,
                UssdForm::PackedHex,
                UssdForm::UnpackedHex,
            ] {
                let wire = encode_ussd(text, form).expect("GSM-7 text");
                let decoded = decode_ussd(&wire, Some(ussd_dcs(form)));
                // Digits alone in hex have no A-F and stay as they are.
                if text == "1234567" && matches!(form, UssdForm::UnpackedHex) {
                    continue;
                }
                assert_eq!(decoded, text, "{form:?}: {wire}");
            }
        }
        let ucs2 = encode_ussd("Menü: 1 Guthaben 😀", UssdForm::Ucs2Hex).expect("any text");
        assert_eq!(decode_ussd(&ucs2, Some(72)), "Menü: 1 Guthaben 😀");
    }

    #[test]
    fn known_answers_from_real_modems_decode() {
        // Packed GSM-7 as a Huawei stick prints it: "Hello" (TS 23.038's
        // packing: C8 32 9B FD 06).
        assert_eq!(decode_ussd("C8329BFD06", Some(15)), "Hello");
        // UCS-2 "Hi" with DCS 72, and with a language before it (0x11).
        assert_eq!(decode_ussd("00480069", Some(72)), "Hi");
        assert_eq!(decode_ussd("E53600480069", Some(0x11)), "Hi");
        // Seven characters: the CR that fills the last octet is dropped.
        let seven = encode_ussd("1234567", UssdForm::PackedHex).expect("text");
        assert_eq!(seven.len(), 14);
        assert_eq!(decode_ussd(&seven, Some(15)), "1234567");
        // Plain text, a number alone, and no DCS at all stay as they are.
        assert_eq!(decode_ussd("Balance: 10", Some(15)), "Balance: 10");
        assert_eq!(decode_ussd("1234", Some(15)), "1234");
        assert_eq!(decode_ussd("Hello there", None), "Hello there");
        // Hex that cannot be what the DCS says is shown as it came.
        assert_eq!(decode_ussd("ABC", Some(72)), "ABC");
    }
}
