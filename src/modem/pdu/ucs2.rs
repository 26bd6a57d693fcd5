//! UCS-2 user data, treated as UTF-16 big-endian.
//!
//! TS 23.038 says "UCS2", but every handset sends and expects UTF-16, so
//! characters outside the Basic Multilingual Plane (emoji) travel as
//! surrogate pairs. Received data is decoded leniently: an unpaired surrogate
//! or a dangling odd octet becomes U+FFFD instead of an error.

/// Serialises UTF-16 code units big-endian, as they go into the user data.
pub fn units_to_octets(units: &[u16], out: &mut Vec<u8>) {
    for &u in units {
        out.extend_from_slice(&u.to_be_bytes());
    }
}

/// Decodes big-endian UTF-16 octets. Unpaired surrogates and a trailing odd
/// octet each decode to U+FFFD, so no input is rejected.
pub fn octets_to_string(octets: &[u8]) -> String {
    let (units, dangling) = octets_to_units(octets);
    let mut text = units_to_string(&units);
    if dangling {
        text.push(char::REPLACEMENT_CHARACTER);
    }
    text
}

/// Big-endian octets as UTF-16 code units, and whether an odd octet was
/// left over.
pub fn octets_to_units(octets: &[u8]) -> (Vec<u16>, bool) {
    let chunks = octets.chunks_exact(2);
    let dangling = !chunks.remainder().is_empty();
    // chunks_exact(2) only yields two-octet slices.
    let units = chunks
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect();
    (units, dangling)
}

/// Decodes code units; an unpaired surrogate becomes U+FFFD.
pub fn units_to_string(units: &[u16]) -> String {
    char::decode_utf16(units.iter().copied())
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn emoji_becomes_a_surrogate_pair() {
        // U+1F600 - 0x10000 = 0xF600 = 0b0000111101_1000000000:
        // high = 0xD800 + 0x3D = 0xD83D, low = 0xDC00 + 0x200 = 0xDE00.
        let units: Vec<u16> = "😀".encode_utf16().collect();
        assert_eq!(units, [0xD83D, 0xDE00]);
        let mut octets = Vec::new();
        units_to_octets(&units, &mut octets);
        assert_eq!(octets, [0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(octets_to_string(&octets), "😀");
    }

    #[test]
    fn broken_input_gives_replacement_characters() {
        // Lone high surrogate, then 'A'.
        assert_eq!(octets_to_string(&[0xD8, 0x3D, 0x00, 0x41]), "\u{FFFD}A");
        // Lone low surrogate at the end.
        assert_eq!(octets_to_string(&[0x00, 0x41, 0xDE, 0x00]), "A\u{FFFD}");
        // Odd octet count.
        assert_eq!(octets_to_string(&[0x00, 0x41, 0x42]), "A\u{FFFD}");
        assert_eq!(octets_to_string(&[]), "");
    }
}
