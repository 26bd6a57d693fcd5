//! Property tests for the PDU codec, through its public API only.
//!
//! Round trips (encode -> decode -> reassemble == original) for SUBMIT,
//! DELIVER and STATUS-REPORT; size and split invariants checked on the raw
//! octets by a small walker written independently of the codec; and
//! "never panics" for arbitrary and mutated input.
#![allow(clippy::unwrap_used)] // in tests a panic is the failure report

use proptest::prelude::*;
use switchboard::modem::pdu::{
    decode, decode_submit, encode_deliver, encode_status_report, encode_submit, Alphabet,
    DeliverSpec, Pdu, SmsTimestamp, StatusReport, SubmitOptions,
};

// ---------------------------------------------------------------- strategies

/// Characters of the GSM-7 basic table other than ASCII letters and digits.
const GSM_SPECIALS: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./:;<=>?¡ÄÖÑÜ§¿äöñüà";
/// Characters of the GSM-7 extension table.
const GSM_EXTENSION: &str = "\u{0C}^{}\\[~]|€";

fn pick(set: &'static str) -> impl Strategy<Value = char> {
    let chars: Vec<char> = set.chars().collect();
    proptest::sample::select(chars)
}

/// Characters that keep a text in GSM-7.
fn gsm_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => proptest::char::range('a', 'z'),
        2 => pick(GSM_SPECIALS),
        2 => pick(GSM_EXTENSION),
    ]
}

/// Anything: GSM-7, BMP scripts, emoji (surrogate pairs), any scalar value.
fn any_text_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => gsm_char(),
        2 => proptest::char::range('\u{0400}', '\u{04FF}'), // Cyrillic
        1 => proptest::char::range('\u{4E00}', '\u{4FFF}'), // CJK
        2 => proptest::char::range('\u{1F300}', '\u{1FAFF}'), // emoji
        1 => any::<char>(),
        1 => Just('\u{FFFD}'),
        1 => Just('\0'),
    ]
}

/// Texts from empty to well over the 255-part limit's neighbourhood of
/// "several parts"; half are pure GSM-7 so the septet path is exercised.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(gsm_char(), 0..800),
        proptest::collection::vec(any_text_char(), 0..400),
        // Mostly GSM-7 with a rare foreign character.
        (
            proptest::collection::vec(gsm_char(), 0..400),
            any_text_char(),
            any::<prop::sample::Index>()
        )
            .prop_map(|(mut v, c, at)| {
                let i = at.index(v.len() + 1);
                v.insert(i, c);
                v
            }),
        // Lots of characters that are two units wide, at every alignment.
        (
            0usize..3,
            proptest::collection::vec(pick("€[]{}"), 150..400)
        )
            .prop_map(|(lead, v)| std::iter::repeat_n('a', lead).chain(v).collect()),
        (
            0usize..3,
            proptest::collection::vec(proptest::char::range('\u{1F600}', '\u{1F64F}'), 30..200)
        )
            .prop_map(|(lead, v)| std::iter::repeat_n('я', lead).chain(v).collect()),
    ]
    .prop_map(|v| v.into_iter().collect())
}

fn number() -> impl Strategy<Value = String> {
    "[+]?[0-9*#]{1,20}"
}

fn alphanumeric_sender() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z][A-Za-z0-9]{0,10}", "[A-Za-z][A-Za-z0-9 .€-]{0,4}",]
}

fn timestamp() -> impl Strategy<Value = SmsTimestamp> {
    // 2000-01-02 .. 2099-12-30, so every zone keeps the local date in range.
    (946_771_200i64..4_102_358_400, -79i8..=79).prop_filter_map("representable", |(s, tz)| {
        SmsTimestamp::from_unix_seconds(s, tz)
    })
}

// ------------------------------------------- independent walker of the raw octets

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("encoder wrote bad hex"))
        .collect()
}

/// DCS, UDHI, UDL and UD of a PDU, located by walking the fields.
struct RawUserData {
    dcs: u8,
    udhi: bool,
    udl: usize,
    ud: Vec<u8>,
}

fn walk(bytes: &[u8], submit: bool) -> RawUserData {
    let mut i = 1 + usize::from(bytes[0]); // SMSC
    let first = bytes[i];
    i += 1;
    if submit {
        i += 1; // TP-MR
    }
    let addr_semi_octets = usize::from(bytes[i]);
    i += 2 + addr_semi_octets.div_ceil(2);
    i += 1; // TP-PID
    let dcs = bytes[i];
    i += 1;
    if submit {
        i += match (first >> 3) & 3 {
            0 => 0,
            2 => 1,
            _ => 7,
        };
    } else {
        i += 7; // TP-SCTS
    }
    let udl = usize::from(bytes[i]);
    RawUserData {
        dcs,
        udhi: first & 0x40 != 0,
        udl,
        ud: bytes[i + 1..].to_vec(),
    }
}

/// Checks the size and "never split a character" rules on one part and
/// returns the number of text payload units (septets or UTF-16 units).
fn check_part(raw: &RawUserData, multipart: bool) -> usize {
    assert!(raw.ud.len() <= 140, "user data of {} octets", raw.ud.len());
    assert_eq!(
        raw.udhi, multipart,
        "UDHI must be set exactly on multipart messages"
    );
    let header = if raw.udhi {
        1 + usize::from(raw.ud[0])
    } else {
        0
    };
    match raw.dcs {
        0x00 => {
            assert!(raw.udl <= 160);
            assert_eq!(raw.ud.len(), (raw.udl * 7).div_ceil(8));
            let skip = (header * 8).div_ceil(7);
            let septets: Vec<u8> = (skip..raw.udl)
                .map(|n| {
                    let (byte, shift) = (n * 7 / 8, n * 7 % 8);
                    let lo = u16::from(raw.ud[byte]);
                    let hi = u16::from(raw.ud.get(byte + 1).copied().unwrap_or(0));
                    (((hi << 8 | lo) >> shift) & 0x7F) as u8
                })
                .collect();
            let mut k = 0;
            while k < septets.len() {
                if septets[k] == 0x1B {
                    assert!(k + 1 < septets.len(), "part ends with a lone ESC");
                    k += 1;
                }
                k += 1;
            }
            septets.len()
        }
        0x08 => {
            assert_eq!(raw.ud.len(), raw.udl);
            let body = &raw.ud[header..];
            assert_eq!(body.len() % 2, 0);
            let units: Vec<u16> = body
                .chunks(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            if let Some(&last) = units.last() {
                assert!(
                    !(0xD800..0xDC00).contains(&last),
                    "part ends with a high surrogate"
                );
            }
            if let Some(&first) = units.first() {
                assert!(
                    !(0xDC00..0xE000).contains(&first),
                    "part starts with a low surrogate"
                );
            }
            units.len()
        }
        other => panic!("encoder used DCS {other:02X}"),
    }
}

/// Capacity in payload units of one part of a multipart message.
fn multipart_capacity(dcs: u8, sixteen_bit: bool) -> usize {
    match (dcs, sixteen_bit) {
        (0x00, false) => 153,
        (0x00, true) => 152,
        (_, false) => 67,
        (_, true) => 66,
    }
}

/// Parts other than the last must be full but for at most one unit (the
/// next character was two units wide); otherwise the split is too early.
fn check_fill(sizes: &[(u8, usize)], sixteen_bit: bool) {
    if sizes.len() < 2 {
        return;
    }
    for &(dcs, n) in &sizes[..sizes.len() - 1] {
        let cap = multipart_capacity(dcs, sixteen_bit);
        assert!(
            n == cap || n + 1 == cap,
            "part of {n} units, capacity {cap}"
        );
    }
}

// -------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn submit_round_trip(
        text in text(),
        to in number(),
        reference in any::<u16>(),
        sixteen in any::<bool>(),
        status_report in any::<bool>(),
        validity in proptest::option::of(0u32..700_000),
        mr in any::<u8>(),
    ) {
        let opts = SubmitOptions {
            status_report,
            validity_minutes: validity,
            concat_reference: reference,
            concat_16bit: sixteen,
            message_reference: mr,
        };
        let parts = encode_submit(&to, &text, &opts).unwrap();
        let total = parts.len();
        prop_assert!((1..=255).contains(&total));
        let mut pieces = Vec::new();
        let mut sizes = Vec::new();
        // Decode in reverse order to show reassembly goes by sequence number.
        for p in parts.iter().rev() {
            prop_assert!(p.hex.starts_with("00"));
            prop_assert_eq!(p.tpdu_len * 2 + 2, p.hex.len());
            prop_assert_eq!(usize::from(p.total), total);
            let raw = walk(&unhex(&p.hex), true);
            sizes.push((p.part, (raw.dcs, check_part(&raw, total > 1))));
            let s = decode_submit(&p.hex).unwrap();
            prop_assert_eq!(&s.destination, &to);
            prop_assert_eq!(s.message_reference, mr);
            prop_assert_eq!(s.status_report, status_report);
            prop_assert!(s.alphabet != Alphabet::Data8);
            let seq = match s.concat {
                None => { prop_assert_eq!(total, 1); 1 }
                Some(c) => {
                    let want = if sixteen { reference } else { reference & 0xFF };
                    prop_assert_eq!(c.reference, want);
                    prop_assert_eq!(usize::from(c.total), total);
                    prop_assert_eq!(c.sequence, p.part);
                    c.sequence
                }
            };
            pieces.push((seq, s.text));
        }
        pieces.sort_by_key(|(seq, _)| *seq);
        let joined: String = pieces.into_iter().map(|(_, t)| t).collect();
        prop_assert_eq!(joined, text);
        sizes.sort_by_key(|(part, _)| *part);
        let sizes: Vec<(u8, usize)> = sizes.into_iter().map(|(_, s)| s).collect();
        check_fill(&sizes, sixteen);
    }

    #[test]
    fn deliver_round_trip(
        text in text(),
        sender in prop_oneof![number(), alphanumeric_sender()],
        smsc in proptest::option::of("[+]?[0-9]{1,20}"),
        ts in timestamp(),
        reference in any::<u16>(),
        sixteen in any::<bool>(),
        sri in any::<bool>(),
    ) {
        let spec = DeliverSpec {
            sender: sender.clone(),
            smsc: smsc.clone(),
            text: text.clone(),
            timestamp: ts,
            concat_reference: reference,
            concat_16bit: sixteen,
            status_report_indication: sri,
        };
        let pdus = encode_deliver(&spec).unwrap();
        let total = pdus.len();
        let mut pieces = Vec::new();
        let mut sizes = Vec::new();
        for hex in pdus.iter().rev() {
            let raw = walk(&unhex(hex), false);
            let units = check_part(&raw, total > 1);
            let Pdu::Deliver(d) = decode(hex).unwrap() else {
                panic!("encode_deliver made something other than a DELIVER");
            };
            prop_assert_eq!(&d.sender, &sender);
            prop_assert_eq!(&d.smsc, &smsc);
            prop_assert_eq!(d.timestamp, ts);
            prop_assert_eq!(d.status_report_indication, sri);
            let seq = d.concat.map_or(1, |c| c.sequence);
            prop_assert_eq!(d.concat.map_or(1, |c| usize::from(c.total)), total);
            sizes.push((seq, (raw.dcs, units)));
            pieces.push((seq, d.text));
        }
        pieces.sort_by_key(|(seq, _)| *seq);
        let joined: String = pieces.into_iter().map(|(_, t)| t).collect();
        prop_assert_eq!(joined, text);
        sizes.sort_by_key(|(seq, _)| *seq);
        let sizes: Vec<(u8, usize)> = sizes.into_iter().map(|(_, s)| s).collect();
        check_fill(&sizes, sixteen);
    }

    #[test]
    fn status_report_round_trip(
        mr in any::<u8>(),
        recipient in number(),
        sct in timestamp(),
        dt in timestamp(),
        status in any::<u8>(),
        smsc in proptest::option::of("[+]?[0-9]{1,20}"),
    ) {
        let r = StatusReport {
            message_reference: mr,
            recipient,
            service_centre_time: sct,
            discharge_time: dt,
            status,
        };
        let hex = encode_status_report(&r, smsc.as_deref()).unwrap();
        prop_assert_eq!(decode(&hex).unwrap(), Pdu::StatusReport(r));
    }

    #[test]
    fn timestamp_unix_round_trip(ts in timestamp()) {
        let secs = ts.to_unix_seconds().unwrap();
        prop_assert_eq!(SmsTimestamp::from_unix_seconds(secs, ts.tz_quarters), Some(ts));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let _ = decode(&hex);
        let _ = decode_submit(&hex);
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_text(s in "\\PC{0,200}") {
        let _ = decode(&s);
        let _ = decode_submit(&s);
    }

    /// Valid PDUs with a few octets changed, inserted or dropped reach far
    /// deeper into the decoders than random bytes do.
    #[test]
    fn decoders_never_panic_on_mutated_pdus(
        text in proptest::collection::vec(any_text_char(), 0..200).prop_map(|v| v.into_iter().collect::<String>()),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..6),
        sixteen in any::<bool>(),
    ) {
        let opts = SubmitOptions { concat_16bit: sixteen, validity_minutes: Some(60), ..SubmitOptions::default() };
        let submit = encode_submit("+15551234567", &text, &opts).unwrap().remove(0).hex;
        let spec = DeliverSpec {
            sender: "Bank".into(),
            smsc: Some("+447785016005".into()),
            text: text.clone(),
            timestamp: SmsTimestamp::from_unix_seconds(1_700_000_000, 4).unwrap(),
            concat_reference: 9,
            concat_16bit: sixteen,
            status_report_indication: false,
        };
        let deliver = encode_deliver(&spec).unwrap().remove(0);
        for hex in [submit, deliver] {
            let mut bytes = unhex(&hex);
            for (at, value, kind) in &edits {
                let i = at.index(bytes.len() + 1);
                match kind {
                    0 if i < bytes.len() => bytes[i] = *value,
                    1 => bytes.insert(i, *value),
                    2 if i < bytes.len() => { bytes.remove(i); }
                    _ => bytes.truncate(i),
                }
            }
            let mutated: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
            let _ = decode(&mutated);
            let _ = decode_submit(&mutated);
        }
    }

    /// Every field of these PDUs is required, so every strict prefix of a
    /// valid PDU must be rejected (and never panic).
    #[test]
    fn every_prefix_of_a_valid_pdu_is_an_error(text in text()) {
        let opts = SubmitOptions::default();
        let submit = encode_submit("+15551234567", &text, &opts).unwrap().remove(0).hex;
        for cut in (0..submit.len()).step_by(2) {
            prop_assert!(decode_submit(&submit[..cut]).is_err(), "prefix {cut} accepted");
        }
    }
}

#[test]
fn too_many_parts_is_an_error() {
    let opts = SubmitOptions::default();
    // 255 parts of 67 UTF-16 units is the most a UCS-2 message can carry.
    assert!(encode_submit("1", &"я".repeat(255 * 67), &opts).is_ok());
    assert!(encode_submit("1", &"я".repeat(255 * 67 + 1), &opts).is_err());
}
