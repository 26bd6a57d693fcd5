//! TP-UDL and TP-UD: turning text into the user data of one or more parts,
//! and user data back into text.
//!
//! Splitting rules (TS 23.040 §9.2.3.16 / §9.2.3.24.1): a part carries at
//! most 140 octets of user data, i.e. 160 GSM-7 septets or 70 UTF-16 units.
//! When a message needs several parts each one spends 6 (8-bit reference) or
//! 7 (16-bit reference) octets on the concatenation header, leaving 153/152
//! septets or 67/66 units. A character is never cut in two: an ESC and its
//! extension code stay together, as do the two halves of a surrogate pair.

use std::ops::Range;

use super::dcs::Alphabet;
use super::error::PduError;
use super::gsm7;
use super::hex;
use super::part_text::PartText;
use super::reader::Reader;
use super::ucs2;
use super::udh::{self, Concat};

/// Maximum octets of user data in one TPDU.
pub const MAX_UD_OCTETS: usize = 140;

/// User data for one part, ready to be placed after TP-UDL's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedUserData {
    /// Alphabet of the whole message (all parts share it).
    pub alphabet: Alphabet,
    /// Whether a header is present (TP-UDHI).
    pub has_header: bool,
    /// TP-UDL: septets for GSM-7, octets otherwise (header included).
    pub udl: u8,
    /// TP-UD octets (header included).
    pub octets: Vec<u8>,
    /// 1-based part number.
    pub part: u8,
    /// Number of parts.
    pub total: u8,
}

/// Septets a header of `octets` octets occupies: the text starts on the
/// next septet boundary.
fn header_septets(octets: usize) -> usize {
    (octets * 8).div_ceil(7)
}

/// Largest payload (in septets or UTF-16 units) of a single, unsplit part.
fn single_capacity(alphabet: Alphabet) -> usize {
    match alphabet {
        Alphabet::Gsm7 => MAX_UD_OCTETS * 8 / 7,
        _ => MAX_UD_OCTETS / 2,
    }
}

/// Largest payload of one part of a concatenated message.
fn multi_capacity(alphabet: Alphabet, sixteen_bit: bool) -> usize {
    let header = udh::concat_header_len(sixteen_bit);
    match alphabet {
        Alphabet::Gsm7 => MAX_UD_OCTETS * 8 / 7 - header_septets(header),
        _ => (MAX_UD_OCTETS - header) / 2,
    }
}

/// Groups characters (given as their widths in payload units) into parts.
/// Returns ranges of character indexes. Text that fits in one part stays
/// whole, even when empty; otherwise parts are filled greedily and a
/// character always goes entirely into one part.
fn plan_parts(widths: &[usize], single: usize, multi: usize) -> Vec<Range<usize>> {
    if widths.iter().sum::<usize>() <= single {
        #[allow(clippy::single_range_in_vec_init)] // one part holding every character
        return vec![0..widths.len()];
    }
    let mut parts = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, &w) in widths.iter().enumerate() {
        if used + w > multi {
            parts.push(start..i);
            start = i;
            used = 0;
        }
        used += w;
    }
    parts.push(start..widths.len());
    parts
}

/// Payload units of a message plus, per character, where its units start.
struct Units<T> {
    units: Vec<T>,
    /// `starts[i]` is the first unit of character `i`; one extra entry at the end.
    starts: Vec<usize>,
}

impl<T> Units<T> {
    fn widths(&self) -> Vec<usize> {
        // windows(2) only yields two-element slices.
        self.starts.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// Units of the characters in `chars`.
    fn slice(&self, chars: &Range<usize>) -> &[T] {
        let from = self.starts.get(chars.start).copied().unwrap_or(0);
        let to = self.starts.get(chars.end).copied().unwrap_or(from);
        self.units.get(from..to).unwrap_or(&[])
    }
}

fn gsm7_units(text: &str) -> Option<Units<u8>> {
    let mut units = Vec::with_capacity(text.len());
    let mut starts = Vec::with_capacity(text.len() + 1);
    for c in text.chars() {
        starts.push(units.len());
        gsm7::lookup(c)?.push_to(&mut units);
    }
    starts.push(units.len());
    Some(Units { units, starts })
}

fn ucs2_units(text: &str) -> Units<u16> {
    let mut units = Vec::with_capacity(text.len());
    let mut starts = Vec::with_capacity(text.len() + 1);
    let mut buf = [0u16; 2];
    for c in text.chars() {
        starts.push(units.len());
        units.extend_from_slice(c.encode_utf16(&mut buf));
    }
    starts.push(units.len());
    Units { units, starts }
}

/// Splits text into the user data of one or more parts: GSM-7 when every
/// character is in the default alphabet or its extension table, else UCS-2.
/// More than one part gets a concatenation header with `reference`.
pub fn encode_text(
    text: &str,
    reference: u16,
    sixteen_bit: bool,
) -> Result<Vec<EncodedUserData>, PduError> {
    match gsm7_units(text) {
        Some(units) => build_parts(&units, Alphabet::Gsm7, reference, sixteen_bit),
        None => build_parts(&ucs2_units(text), Alphabet::Ucs2, reference, sixteen_bit),
    }
}

/// Something that can be laid out after a header in the user data.
trait Payload: Copy {
    /// Appends `units` after `header` (already in `out`) and returns TP-UDL.
    fn lay_out(units: &[Self], header_len: usize, out: &mut Vec<u8>) -> usize;
}

impl Payload for u8 {
    fn lay_out(units: &[u8], header_len: usize, out: &mut Vec<u8>) -> usize {
        let skip = header_septets(header_len);
        gsm7::pack_into(units, skip * 7, out);
        skip + units.len()
    }
}

impl Payload for u16 {
    fn lay_out(units: &[u16], header_len: usize, out: &mut Vec<u8>) -> usize {
        ucs2::units_to_octets(units, out);
        header_len + units.len() * 2
    }
}

fn build_parts<T: Payload>(
    units: &Units<T>,
    alphabet: Alphabet,
    reference: u16,
    sixteen_bit: bool,
) -> Result<Vec<EncodedUserData>, PduError> {
    let plan = plan_parts(
        &units.widths(),
        single_capacity(alphabet),
        multi_capacity(alphabet, sixteen_bit),
    );
    let total =
        u8::try_from(plan.len()).map_err(|_| PduError::TooManyParts { needed: plan.len() })?;
    let mut parts = Vec::with_capacity(plan.len());
    for (index, chars) in plan.iter().enumerate() {
        // index < total <= 255, so index + 1 fits.
        let part = (index + 1) as u8;
        let mut octets = if total > 1 {
            udh::concat_header(reference, sixteen_bit, total, part)
        } else {
            Vec::new()
        };
        let header_len = octets.len();
        let udl = T::lay_out(units.slice(chars), header_len, &mut octets);
        // The plan keeps every part within 160 septets / 140 octets.
        let udl = u8::try_from(udl).map_err(|_| PduError::ValueOutOfRange {
            field: "TP-UDL",
            reason: format!("{udl} does not fit in one octet"),
        })?;
        parts.push(EncodedUserData {
            alphabet,
            has_header: total > 1,
            udl,
            octets,
            part,
            total,
        });
    }
    Ok(parts)
}

/// Writes TP-UDL and TP-UD for one part.
pub fn push_user_data(ud: &EncodedUserData, out: &mut Vec<u8>) {
    out.push(ud.udl);
    out.extend_from_slice(&ud.octets);
}

/// Text and concatenation info read from TP-UDL / TP-UD.
pub struct DecodedUserData {
    /// The text without the header. For 8-bit data: uppercase hex of the octets.
    pub text: String,
    /// Concatenation info from the header, if any.
    pub concat: Option<Concat>,
    /// The text undecoded, for joining the parts of a long message before
    /// decoding (`None` for 8-bit data, and for UCS-2 with an odd octet).
    pub raw: Option<PartText>,
}

/// Reads TP-UDL and TP-UD, which must be the last fields of the TPDU: the
/// number of octets TP-UDL implies must be exactly what is left.
///
/// 8-bit data is returned as uppercase hex, which keeps every octet intact
/// (binary payloads such as WAP push are not text in any alphabet).
pub fn decode_user_data(
    r: &mut Reader<'_>,
    alphabet: Alphabet,
    has_header: bool,
) -> Result<DecodedUserData, PduError> {
    let udl_offset = r.offset();
    let udl = usize::from(r.octet("TP-UDL")?);
    let octet_count = match alphabet {
        Alphabet::Gsm7 => gsm7::packed_len(udl),
        Alphabet::Ucs2 | Alphabet::Data8 => udl,
    };
    let ud_offset = r.offset();
    if r.remaining() < octet_count {
        return Err(PduError::InvalidField {
            offset: udl_offset,
            field: "TP-UDL",
            reason: format!(
                "{udl} {} need {octet_count} octets but only {} remain",
                if alphabet == Alphabet::Gsm7 {
                    "septets"
                } else {
                    "octets"
                },
                r.remaining()
            ),
        });
    }
    let ud = r.take(octet_count, "TP-UD")?;
    r.finish()?;

    let (header_len, concat) = if has_header {
        udh::parse(ud, ud_offset)?
    } else {
        (0, None)
    };
    let (text, raw) = match alphabet {
        Alphabet::Gsm7 => {
            let skip = header_septets(header_len);
            let count = udl
                .checked_sub(skip)
                .ok_or_else(|| PduError::InvalidField {
                    offset: udl_offset,
                    field: "TP-UDL",
                    reason: format!("{udl} septets is shorter than the {skip}-septet header"),
                })?;
            let septets = gsm7::unpack(ud, skip * 7, count).ok_or(PduError::Truncated {
                offset: ud_offset,
                expected: "TP-UD septets",
            })?;
            (
                gsm7::septets_to_string(&septets),
                Some(PartText::Septets(septets)),
            )
        }
        Alphabet::Ucs2 => {
            let octets = ud.get(header_len..).unwrap_or(&[]);
            let (units, dangling) = ucs2::octets_to_units(octets);
            (
                ucs2::octets_to_string(octets),
                (!dangling).then_some(PartText::Utf16(units)),
            )
        }
        Alphabet::Data8 => (hex::encode_hex(ud.get(header_len..).unwrap_or(&[])), None),
    };
    Ok(DecodedUserData { text, concat, raw })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn capacities_match_the_spec() {
        assert_eq!(single_capacity(Alphabet::Gsm7), 160);
        assert_eq!(multi_capacity(Alphabet::Gsm7, false), 153);
        assert_eq!(multi_capacity(Alphabet::Gsm7, true), 152);
        assert_eq!(single_capacity(Alphabet::Ucs2), 70);
        assert_eq!(multi_capacity(Alphabet::Ucs2, false), 67);
        assert_eq!(multi_capacity(Alphabet::Ucs2, true), 66);
    }

    fn sizes(parts: &[EncodedUserData]) -> Vec<usize> {
        parts.iter().map(|p| usize::from(p.udl)).collect()
    }

    #[test]
    fn gsm7_boundaries() {
        let p = encode_text(&"a".repeat(160), 0, false).unwrap();
        assert_eq!(sizes(&p), [160]);
        assert_eq!(p[0].octets.len(), 140);
        assert!(!p[0].has_header);
        // 161 septets: 153 + 8, each UDL counts the 7 header septets too.
        let p = encode_text(&"a".repeat(161), 0, false).unwrap();
        assert_eq!(sizes(&p), [160, 7 + 8]);
        assert!(p.iter().all(|x| x.has_header && x.total == 2));
        let p = encode_text(&"a".repeat(161), 0, true).unwrap();
        assert_eq!(sizes(&p), [160, 8 + 9]);
    }

    #[test]
    fn escape_pairs_are_never_split() {
        // 152 plain septets then '€' (2 septets): 154 > 153, so '€' must move
        // whole into part 2, leaving part 1 with 152 text septets.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(10));
        let p = encode_text(&text, 0, false).unwrap();
        assert_eq!(sizes(&p), [7 + 152, 7 + 12]);
        // A single '€' still fits when 158 + 2 = 160.
        let p = encode_text(&format!("{}€", "a".repeat(158)), 0, false).unwrap();
        assert_eq!(sizes(&p), [160]);
    }

    #[test]
    fn surrogate_pairs_are_never_split() {
        // 66 units of 'я' then an emoji: 68 > 67, so the emoji moves whole.
        let text = format!("{}😀{}", "я".repeat(66), "я".repeat(10));
        let p = encode_text(&text, 0, false).unwrap();
        assert_eq!(p[0].alphabet, Alphabet::Ucs2);
        assert_eq!(sizes(&p), [6 + 132, 6 + 24]);
        let p = encode_text(&"я".repeat(70), 0, false).unwrap();
        assert_eq!(sizes(&p), [140]);
        let p = encode_text(&"я".repeat(71), 0, true).unwrap();
        assert_eq!(sizes(&p), [7 + 132, 7 + 10]);
    }

    #[test]
    fn empty_text_is_one_empty_part() {
        let p = encode_text("", 0, false).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].udl, p[0].octets.len()), (0, 0));
        assert_eq!(p[0].alphabet, Alphabet::Gsm7);
    }

    #[test]
    fn part_limit() {
        // 255 * 153 septets is the most GSM-7 text a message can carry.
        assert_eq!(
            encode_text(&"a".repeat(255 * 153), 0, false).unwrap().len(),
            255
        );
        assert_eq!(
            encode_text(&"a".repeat(255 * 153 + 1), 0, false),
            Err(PduError::TooManyParts { needed: 256 })
        );
    }

    fn decode_bytes(bytes: &[u8], alphabet: Alphabet, udhi: bool) -> Result<String, PduError> {
        let mut r = Reader::new(bytes);
        decode_user_data(&mut r, alphabet, udhi).map(|d| d.text)
    }

    #[test]
    fn lying_lengths_are_errors() {
        // UDL says 10 septets (9 octets) but only 8 octets follow.
        let bytes = [0x0A, 0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC];
        assert!(matches!(
            decode_bytes(&bytes, Alphabet::Gsm7, false),
            Err(PduError::InvalidField { offset: 0, .. })
        ));
        // One octet too many.
        let bytes = [0x01, 0x41, 0x42];
        assert!(matches!(
            decode_bytes(&bytes, Alphabet::Gsm7, false),
            Err(PduError::TrailingData {
                offset: 2,
                count: 1
            })
        ));
        // Header longer than the septet count admits.
        let bytes = [0x03, 0x05, 0x00, 0x03];
        assert!(decode_bytes(&bytes, Alphabet::Gsm7, true).is_err());
        // UDHI with no user data at all.
        assert!(decode_bytes(&[0x00], Alphabet::Ucs2, true).is_err());
        // 7-septet header with UDL 6 would underflow.
        let bytes = [0x06, 0x05, 0x00, 0x03, 0x01, 0x02, 0x01];
        assert!(decode_bytes(&bytes, Alphabet::Gsm7, true).is_err());
    }

    #[test]
    fn data8_is_hex() {
        assert_eq!(
            decode_bytes(&[0x03, 0x00, 0xFF, 0x41], Alphabet::Data8, false).unwrap(),
            "00FF41"
        );
    }
}
