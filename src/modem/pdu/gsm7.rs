//! GSM 7-bit default alphabet (3GPP TS 23.038 §6.2.1) and septet packing.
//!
//! Text is first mapped to septets (one per character, two for characters of
//! the extension table, which are sent as ESC followed by the extension code),
//! and septets are then packed eight to seven octets, least significant bit
//! first (§6.1.2.1.1). When a user data header precedes the text, the text
//! starts at the next septet boundary after the header; the bits in between
//! are fill bits and are zero.

/// The escape septet that announces a character from the extension table.
pub const ESC: u8 = 0x1B;

/// The basic table, indexed by septet value. Index 0x1B is ESC, which never
/// stands for a character of its own; it is only here to keep the indexes.
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table: (code after ESC, character). Codes not listed here
/// are undefined; see [`septets_to_string`] for how they are shown.
const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'), // form feed
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// How a character is written in GSM-7: one septet, or ESC plus one septet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gsm7Char {
    /// A character of the basic table.
    Basic(u8),
    /// A character of the extension table (sent as ESC, code).
    Extended(u8),
}

impl Gsm7Char {
    /// Appends the character's septets.
    pub fn push_to(self, out: &mut Vec<u8>) {
        match self {
            Gsm7Char::Basic(s) => out.push(s),
            Gsm7Char::Extended(s) => {
                out.push(ESC);
                out.push(s);
            }
        }
    }
}

/// Looks a character up in the basic and extension tables; `None` when the
/// character cannot be sent in GSM-7 (the message must then use UCS-2).
pub fn lookup(c: char) -> Option<Gsm7Char> {
    // Fast path for the ASCII letters and digits, which sit at their ASCII codes.
    if c.is_ascii_alphanumeric() {
        return Some(Gsm7Char::Basic(c as u8));
    }
    if c != '\u{1B}' {
        if let Some(i) = BASIC.iter().position(|&b| b == c) {
            // position() < 128, so the index fits in a septet.
            return Some(Gsm7Char::Basic(i as u8));
        }
    }
    EXTENSION
        .iter()
        .find(|&&(_, e)| e == c)
        .map(|&(code, _)| Gsm7Char::Extended(code))
}

/// Maps a whole string to septets, or `None` if any character has no GSM-7 form.
pub fn string_to_septets(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        lookup(c)?.push_to(&mut out);
    }
    Some(out)
}

/// Maps septets (values 0..=127) back to text.
///
/// Received data can be anything, so undefined sequences are shown rather
/// than rejected, as §6.2.1.1 asks: ESC followed by a code that is not in the
/// extension table shows the basic-table character for that code; ESC ESC
/// (reserved for a further table) and an ESC at the very end show a space.
pub fn septets_to_string(septets: &[u8]) -> String {
    let mut out = String::with_capacity(septets.len());
    let mut iter = septets.iter().map(|&s| s & 0x7F);
    while let Some(s) = iter.next() {
        // Septets are masked to 0..=127 above, so indexing BASIC cannot fail.
        if s != ESC {
            out.push(BASIC[usize::from(s)]);
            continue;
        }
        match iter.next() {
            None | Some(ESC) => out.push(' '),
            Some(code) => match EXTENSION.iter().find(|&&(e, _)| e == code) {
                Some(&(_, c)) => out.push(c),
                None => out.push(BASIC[usize::from(code)]),
            },
        }
    }
    out
}

/// Number of octets needed to hold `septets` septets starting at bit 0.
pub fn packed_len(septets: usize) -> usize {
    (septets * 7).div_ceil(8)
}

/// Packs `septets` into `out`, the first septet starting at bit `start_bit`
/// of `out` (counting from bit 0 of `out[0]`). `out` is extended with zero
/// octets as needed; octets already in it (a user data header) are kept, and
/// the bits between them and `start_bit` stay zero (the fill bits).
pub fn pack_into(septets: &[u8], start_bit: usize, out: &mut Vec<u8>) {
    let total_bits = start_bit + septets.len() * 7;
    let needed = total_bits.div_ceil(8);
    if out.len() < needed {
        out.resize(needed, 0);
    }
    for (i, &s) in septets.iter().enumerate() {
        let bit = start_bit + i * 7;
        let (index, shift) = (bit / 8, bit % 8);
        let value = u16::from(s & 0x7F) << shift;
        // Both octets lie below `needed`: the septet ends at bit
        // bit + 6 < total_bits, and the high octet only gets bits when the
        // septet really crosses into it.
        if let Some(o) = out.get_mut(index) {
            *o |= value as u8;
        }
        if value > 0xFF {
            if let Some(o) = out.get_mut(index + 1) {
                *o |= (value >> 8) as u8;
            }
        }
    }
}

/// Unpacks `count` septets starting at bit `start_bit` of `octets`.
/// Returns `None` if `octets` is too short to hold them.
pub fn unpack(octets: &[u8], start_bit: usize, count: usize) -> Option<Vec<u8>> {
    let end_bit = start_bit.checked_add(count.checked_mul(7)?)?;
    if end_bit.div_ceil(8) > octets.len() {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let bit = start_bit + i * 7;
        let (index, shift) = (bit / 8, bit % 8);
        let low = u16::from(*octets.get(index)?);
        // The next octet only matters when the septet crosses into it.
        let high = if shift > 1 {
            u16::from(*octets.get(index + 1)?)
        } else {
            0
        };
        out.push((((high << 8) | low) >> shift) as u8 & 0x7F);
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn hellohello_packs_to_the_textbook_value() {
        // The worked example in countless PDU guides (and easy to check by
        // hand: 'h' = 0x68 = 1101000, 'e' = 0x65 = 1100101; the first octet
        // is e's low bit followed by h's seven bits: 1 1101000 = 0xE8, the
        // second is e's remaining six bits with l's low two: 00 110010 = 0x32).
        let septets = string_to_septets("hellohello").unwrap();
        let mut out = Vec::new();
        pack_into(&septets, 0, &mut out);
        assert_eq!(out, [0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37]);
        assert_eq!(unpack(&out, 0, 10).unwrap(), septets);
        assert_eq!(septets_to_string(&septets), "hellohello");
    }

    #[test]
    fn eight_septets_fill_seven_octets() {
        let septets = string_to_septets("12345678").unwrap();
        let mut out = Vec::new();
        pack_into(&septets, 0, &mut out);
        // '1'..'8' = 0x31..0x38; computed by hand from the bit layout.
        assert_eq!(out, [0x31, 0xD9, 0x8C, 0x56, 0xB3, 0xDD, 0x70]);
        assert_eq!(packed_len(8), 7);
    }

    #[test]
    fn extension_characters_take_an_escape() {
        assert_eq!(lookup('€'), Some(Gsm7Char::Extended(0x65)));
        assert_eq!(lookup('['), Some(Gsm7Char::Extended(0x3C)));
        assert_eq!(lookup('\u{0C}'), Some(Gsm7Char::Extended(0x0A)));
        assert_eq!(lookup('@'), Some(Gsm7Char::Basic(0x00)));
        assert_eq!(lookup('à'), Some(Gsm7Char::Basic(0x7F)));
        assert_eq!(lookup('\u{1B}'), None);
        assert_eq!(lookup('ç'), None);
        assert_eq!(lookup('`'), None);
        assert_eq!(
            string_to_septets("a€[").unwrap(),
            [0x61, 0x1B, 0x65, 0x1B, 0x3C]
        );
    }

    #[test]
    fn every_table_character_round_trips() {
        for (i, &c) in BASIC.iter().enumerate() {
            if i == usize::from(ESC) {
                continue;
            }
            let septets = string_to_septets(&c.to_string()).unwrap();
            assert_eq!(septets, [i as u8], "{c:?}");
            assert_eq!(septets_to_string(&septets), c.to_string());
        }
        for &(code, c) in EXTENSION.iter() {
            let septets = string_to_septets(&c.to_string()).unwrap();
            assert_eq!(septets, [ESC, code]);
            assert_eq!(septets_to_string(&septets), c.to_string());
        }
    }

    #[test]
    fn odd_escapes_are_shown_not_rejected() {
        // ESC + undefined code shows the basic character; ESC ESC and a
        // trailing ESC show a space (TS 23.038 §6.2.1.1).
        assert_eq!(septets_to_string(&[ESC, 0x41]), "A");
        assert_eq!(septets_to_string(&[ESC, ESC, 0x41]), " A");
        assert_eq!(septets_to_string(&[0x41, ESC]), "A ");
        assert_eq!(septets_to_string(&[0xFF]), "à");
    }

    #[test]
    fn packing_after_a_header_leaves_fill_bits() {
        // A 6-octet header is 48 bits; the text starts at septet 7 (bit 49),
        // so exactly one fill bit is left zero.
        let mut out = vec![0xFF; 6];
        pack_into(&[0x7F], 49, &mut out);
        assert_eq!(out, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE]);
        assert_eq!(unpack(&out, 49, 1).unwrap(), [0x7F]);
    }

    #[test]
    fn unpack_refuses_short_input() {
        assert_eq!(unpack(&[0xE8], 0, 2), None);
        assert_eq!(unpack(&[], 0, 0), Some(vec![]));
        assert_eq!(unpack(&[0x00], usize::MAX, 1), None);
    }
}
