//! SMS-SUBMIT (TS 23.040 §9.2.2.2): the TPDU the host hands to the modem
//! with `AT+CMGS` to send a message, and its decoder for the simulated modem.
//!
//! Layout: first octet (MTI=01, RD, VPF, SRR, UDHI, RP), TP-MR, TP-DA,
//! TP-PID, TP-DCS, TP-VP (0, 1 or 7 octets depending on VPF), TP-UDL, TP-UD.

use super::address;
use super::dcs::Alphabet;
use super::error::PduError;
use super::hex;
use super::reader::Reader;
use super::udh::Concat;
use super::user_data;

const MTI_SUBMIT: u8 = 0x01;
const FLAG_SRR: u8 = 0x20;
const FLAG_UDHI: u8 = 0x40;
/// TP-VPF = 10: relative validity period, one octet.
const VPF_RELATIVE: u8 = 0x10;

/// Settings for [`encode_submit`] that do not depend on the text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmitOptions {
    /// Ask the network for a delivery report (TP-SRR).
    pub status_report: bool,
    /// How long the service centre should keep trying, in minutes, written
    /// as a relative TP-VP (rounded up to the next value the field can
    /// express, capped at 441 days). `None` leaves the field out, so the
    /// service centre's default applies.
    pub validity_minutes: Option<u32>,
    /// Reference that ties the parts of a long message together; the caller
    /// should vary it between messages to the same recipient.
    pub concat_reference: u16,
    /// Use the 16-bit reference element (IEI 0x08) rather than the 8-bit
    /// one (IEI 0x00, which keeps only the low octet of the reference).
    pub concat_16bit: bool,
    /// TP-MR. Most modems replace it with their own counter; 0 is fine.
    pub message_reference: u8,
}

/// One part of an outgoing message, ready for `AT+CMGS` in PDU mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitPart {
    /// Full PDU as uppercase hex, including a leading `00` SMSC octet (use
    /// the SMSC stored on the SIM).
    pub hex: String,
    /// Octets excluding the SMSC part: the `<length>` of `AT+CMGS=<length>`.
    pub tpdu_len: usize,
    /// 1-based part number.
    pub part: u8,
    /// Number of parts of the message.
    pub total: u8,
}

/// An SMS-SUBMIT as the modem received it from the host (used by the
/// simulated modem to see what the server sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    /// TP-DA: "+digits" for international numbers, else as written.
    pub destination: String,
    /// TP-MR.
    pub message_reference: u8,
    /// TP-SRR: whether a status report was requested.
    pub status_report: bool,
    /// Alphabet from TP-DCS.
    pub alphabet: Alphabet,
    /// User data without the header (hex for 8-bit data).
    pub text: String,
    /// Concatenation info from the header, if any.
    pub concat: Option<Concat>,
}

/// Relative TP-VP value (§9.2.3.12.1) covering at least `minutes`:
/// 0-143 are 5-minute steps up to 12 h, 144-167 half hours up to 24 h,
/// 168-196 days up to 30 d, 197-255 weeks up to 63 weeks.
pub fn relative_validity(minutes: u32) -> u8 {
    const HOUR: u32 = 60;
    const DAY: u32 = 24 * HOUR;
    const WEEK: u32 = 7 * DAY;
    // Every branch's result is bounded to the byte by its range check.
    if minutes <= 12 * HOUR {
        (minutes.div_ceil(5).max(1) - 1) as u8
    } else if minutes <= DAY {
        (143 + (minutes - 12 * HOUR).div_ceil(30)) as u8
    } else if minutes <= 30 * DAY {
        (166 + minutes.div_ceil(DAY)) as u8
    } else if minutes <= 63 * WEEK {
        (192 + minutes.div_ceil(WEEK).max(5)) as u8
    } else {
        255
    }
}

/// Minutes a relative TP-VP value stands for (inverse of [`relative_validity`]).
pub fn relative_validity_minutes(vp: u8) -> u32 {
    let vp = u32::from(vp);
    match vp {
        0..=143 => (vp + 1) * 5,
        144..=167 => 12 * 60 + (vp - 143) * 30,
        168..=196 => (vp - 166) * 24 * 60,
        _ => (vp - 192) * 7 * 24 * 60,
    }
}

/// Encodes `text` to `to` as one or more SMS-SUBMIT PDUs: GSM-7 (with the
/// extension table) when every character fits, else UCS-2, split into
/// concatenated parts when it does not fit in one.
///
/// Errors: an empty or invalid number (digits, `*`, `#`, optional leading
/// `+`; at most 20 digits), or text that would need more than 255 parts.
pub fn encode_submit(
    to: &str,
    text: &str,
    opts: &SubmitOptions,
) -> Result<Vec<SubmitPart>, PduError> {
    let mut destination = Vec::new();
    address::encode_address(to, false, &mut destination)?;
    let parts = user_data::encode_text(text, opts.concat_reference, opts.concat_16bit)?;
    let mut out = Vec::with_capacity(parts.len());
    for ud in &parts {
        let mut first = MTI_SUBMIT;
        if opts.status_report {
            first |= FLAG_SRR;
        }
        if ud.has_header {
            first |= FLAG_UDHI;
        }
        if opts.validity_minutes.is_some() {
            first |= VPF_RELATIVE;
        }
        let mut pdu = vec![0x00, first, opts.message_reference];
        pdu.extend_from_slice(&destination);
        pdu.push(0x00); // TP-PID: plain short message
        pdu.push(ud.alphabet.dcs());
        if let Some(minutes) = opts.validity_minutes {
            pdu.push(relative_validity(minutes));
        }
        user_data::push_user_data(ud, &mut pdu);
        out.push(SubmitPart {
            hex: hex::encode_hex(&pdu),
            tpdu_len: pdu.len() - 1,
            part: ud.part,
            total: ud.total,
        });
    }
    Ok(out)
}

/// Decodes the PDU a host passes to `AT+CMGS` (hex, with the leading SMSC
/// information). Any TP-VPF is accepted and the validity period skipped.
pub fn decode_submit(hex_pdu: &str) -> Result<Submit, PduError> {
    let bytes = hex::decode_hex(hex_pdu)?;
    let mut r = Reader::new(&bytes);
    address::decode_smsc(&mut r)?;
    let first = r.octet("first octet (TP-MTI)")?;
    let mti = first & 0x03;
    if mti != MTI_SUBMIT {
        return Err(PduError::UnexpectedMessageType {
            mti,
            expected: "SMS-SUBMIT",
        });
    }
    let message_reference = r.octet("TP-MR")?;
    let destination = address::decode_address(&mut r, "TP-DA (destination address)")?;
    let _pid = r.octet("TP-PID")?;
    let alphabet = Alphabet::from_dcs(r.octet("TP-DCS")?);
    // TP-VPF, bits 4..3: 00 absent, 10 relative (1 octet),
    // 01 enhanced (7 octets), 11 absolute (7 octets).
    let vp_len = match (first >> 3) & 0x03 {
        0b00 => 0,
        0b10 => 1,
        _ => 7,
    };
    r.take(vp_len, "TP-VP (validity period)")?;
    let ud = user_data::decode_user_data(&mut r, alphabet, first & FLAG_UDHI != 0)?;
    Ok(Submit {
        destination,
        message_reference,
        status_report: first & FLAG_SRR != 0,
        alphabet,
        text: ud.text,
        concat: ud.concat,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn single_gsm7_part_matches_hand_assembly() {
        let parts = encode_submit("+15551234567", "hellohello", &SubmitOptions::default()).unwrap();
        assert_eq!(parts.len(), 1);
        // 00 SMSC from SIM | 01 SUBMIT, no VP | 00 MR | 0B 91 5155214365F7
        // destination (see address.rs) | 00 PID | 00 DCS GSM-7 | 0A UDL
        // 10 septets | E8329BFD4697D9EC37 ("hellohello", gsm7.rs).
        assert_eq!(
            parts[0].hex,
            "0001000B915155214365F700000AE8329BFD4697D9EC37"
        );
        // Everything after the SMSC octet: 46 hex digits = 23 octets, less 1.
        assert_eq!(parts[0].tpdu_len, parts[0].hex.len() / 2 - 1);
        assert_eq!(parts[0].tpdu_len, 22);
        assert_eq!((parts[0].part, parts[0].total), (1, 1));
        let s = decode_submit(&parts[0].hex).unwrap();
        assert_eq!(s.destination, "+15551234567");
        assert_eq!(s.text, "hellohello");
        assert_eq!(s.alphabet, Alphabet::Gsm7);
        assert_eq!(s.concat, None);
        assert!(!s.status_report);
    }

    #[test]
    fn options_set_their_bits() {
        let opts = SubmitOptions {
            status_report: true,
            validity_minutes: Some(24 * 60),
            message_reference: 0x42,
            ..SubmitOptions::default()
        };
        let parts = encode_submit("1234", "hi", &opts).unwrap();
        // First octet 0x31 = MTI 01 | VPF relative 0x10 | SRR 0x20;
        // VP 0xA7 = 167 = 24 hours; "hi" packs to E8 34.
        assert_eq!(parts[0].hex, "003142048121430000A702E834");
        let s = decode_submit(&parts[0].hex).unwrap();
        assert!(s.status_report);
        assert_eq!(s.message_reference, 0x42);
        assert_eq!(s.destination, "1234");
        assert_eq!(s.text, "hi");
    }

    #[test]
    fn every_validity_format_is_skipped() {
        // Same SUBMIT with VPF none / relative / enhanced / absolute.
        // SMSC 00 | first | MR 00 | DA 04812143 | PID 00 | DCS 00 | VP | 02 E834 ("hi").
        let base = |first: &str, vp: &str| format!("00{first}00048121430000{vp}02E834");
        for (first, vp) in [
            ("01", ""),
            ("11", "A7"),
            ("09", "01000000000000"),
            ("19", "42105121436500"),
        ] {
            let s = decode_submit(&base(first, vp)).unwrap();
            assert_eq!(s.text, "hi", "VPF via first octet {first}");
        }
        // Absolute VP cut short is a truncation error, not a panic.
        assert!(matches!(
            decode_submit("0019000481214300004210"),
            Err(PduError::Truncated { .. })
        ));
    }

    #[test]
    fn rejects_deliver_and_bad_numbers() {
        assert!(matches!(
            decode_submit("0004"),
            Err(PduError::UnexpectedMessageType { mti: 0, .. })
        ));
        let o = SubmitOptions::default();
        assert_eq!(encode_submit("", "x", &o), Err(PduError::EmptyAddress));
        assert!(matches!(
            encode_submit("Bank", "x", &o),
            Err(PduError::InvalidAddress { .. })
        ));
    }

    #[test]
    fn validity_rounds_up() {
        assert_eq!(relative_validity(0), 0);
        assert_eq!(relative_validity(5), 0);
        assert_eq!(relative_validity(6), 1);
        assert_eq!(relative_validity(720), 143);
        assert_eq!(relative_validity(721), 144);
        assert_eq!(relative_validity(1440), 167);
        assert_eq!(relative_validity(1441), 168);
        assert_eq!(relative_validity(30 * 1440), 196);
        assert_eq!(relative_validity(30 * 1440 + 1), 197);
        assert_eq!(relative_validity(63 * 7 * 1440), 255);
        assert_eq!(relative_validity(u32::MAX), 255);
        for vp in 0..=255u8 {
            let m = relative_validity_minutes(vp);
            assert_eq!(relative_validity(m), vp, "vp {vp} = {m} min");
            assert!(relative_validity_minutes(relative_validity(m + 1)) > m || vp == 255);
        }
    }
}
