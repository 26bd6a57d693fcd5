//! Whole-PDU tests against known-good PDUs. Each expected value was put
//! together by hand from the field layouts in TS 23.040 (the derivation is
//! given next to it), so a mistake in the codec and in the test would have
//! to be the same mistake twice.

use super::*;

/// SCTS 2024-01-15 12:34:56, zone +4 quarters (UTC+1): 42 10 51 21 43 65 40.
const SCTS: &str = "42105121436540";

fn scts() -> SmsTimestamp {
    SmsTimestamp {
        year: 2024,
        month: 1,
        day: 15,
        hour: 12,
        minute: 34,
        second: 56,
        tz_quarters: 4,
    }
}

fn deliver(hex: &str) -> Deliver {
    match decode(hex) {
        Ok(Pdu::Deliver(d)) => d,
        other => panic!("expected a DELIVER, got {other:?}"),
    }
}

#[test]
fn classic_tutorial_deliver() {
    // The SMS-DELIVER from Lars Pettersson's "SMS and the PDU format":
    // SMSC 07 91 7283010010F5 = +27381000015; first octet 04 (DELIVER,
    // no more messages); OA 0B C8 7238880900F1 = 11 digits, subscriber
    // type, 27838890001; PID 00; DCS 00; SCTS 99-03-29 15:16:59 +2h;
    // UDL 0A; "hellohello".
    let d = deliver("07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37");
    assert_eq!(d.smsc.as_deref(), Some("+27381000015"));
    assert_eq!(d.sender, "27838890001");
    assert_eq!(d.text, "hellohello");
    assert_eq!(d.alphabet, Alphabet::Gsm7);
    assert_eq!(d.timestamp.tz_quarters, 8);
    assert_eq!(d.concat, None);
    assert!(!d.status_report_indication);
    assert_eq!(d.protocol_identifier, 0);
}

#[test]
fn deliver_from_international_sender() {
    // SMSC +447785016005 (07 91 447758100650), first octet 24 (DELIVER +
    // MMS + SRI), OA +15551234567 (0B 91 5155214365F7), PID 00, DCS 00,
    // SCTS, UDL 04, "Test" packed: T=1010100, e=1100101 -> 1|1010100 = D4,
    // 110010 + s's 11 -> F2, 11100 + t's 100 -> 9C, 1110 -> 0E.
    let hex = format!("0791447758100650240B915155214365F70000{SCTS}04D4F29C0E");
    let d = deliver(&hex);
    assert_eq!(d.smsc.as_deref(), Some("+447785016005"));
    assert_eq!(d.sender, "+15551234567");
    assert_eq!(d.text, "Test");
    assert_eq!(d.timestamp, scts());
    // 12:34:56 at UTC+1 = 11:34:56Z (`date -u -d '2024-01-15 11:34:56' +%s`).
    assert_eq!(d.timestamp.to_unix_seconds(), Some(1_705_318_496));
    assert!(d.status_report_indication);

    // The encoder produces exactly the same octets.
    let spec = DeliverSpec {
        sender: "+15551234567".into(),
        smsc: Some("+447785016005".into()),
        text: "Test".into(),
        timestamp: scts(),
        concat_reference: 0,
        concat_16bit: false,
        status_report_indication: true,
    };
    assert_eq!(encode_deliver(&spec).unwrap(), [hex]);
    // Lower case and surrounding whitespace are accepted.
    let lower = format!(" 0791447758100650240b915155214365f70000{SCTS}04d4f29c0e\r\n");
    assert_eq!(deliver(&lower).text, "Test");
}

#[test]
fn deliver_from_alphanumeric_sender() {
    // OA 0B D0 C7F7FBCC2E03 = "Google" (see address.rs for the packing).
    let d = deliver(&format!("00040BD0C7F7FBCC2E030000{SCTS}04D4F29C0E"));
    assert_eq!(d.smsc, None);
    assert_eq!(d.sender, "Google");
    assert_eq!(d.text, "Test");
}

#[test]
fn status_report() {
    // SMSC, first octet 06 (STATUS-REPORT + MMS), MR 2A, RA +15551234567,
    // SCTS 12:34:56, DT 12:35:56 (42105121536540), ST 00.
    let hex = format!("0791447758100650062A0B915155214365F7{SCTS}4210512153654000");
    let Ok(Pdu::StatusReport(r)) = decode(&hex) else {
        panic!("not a status report: {:?}", decode(&hex));
    };
    assert_eq!(r.message_reference, 42);
    assert_eq!(r.recipient, "+15551234567");
    assert_eq!(r.service_centre_time, scts());
    assert_eq!(r.discharge_time.minute, 35);
    assert_eq!(r.status, 0);
    assert_eq!(r.outcome(), DeliveryOutcome::Delivered);
    assert_eq!(
        encode_status_report(&r, Some("+447785016005")).unwrap(),
        hex
    );

    // A permanent failure (0x41 incompatible destination), with an
    // optional TP-PI octet after TP-ST, which is accepted and ignored.
    let failed = format!("00062A0B915155214365F7{SCTS}{SCTS}4100");
    let Ok(Pdu::StatusReport(r)) = decode(&failed) else {
        panic!("not a status report");
    };
    assert_eq!(r.outcome(), DeliveryOutcome::Failed);
    // Temporary error, SC still trying (0x30 congestion).
    let pending = format!("00062A0B915155214365F7{SCTS}{SCTS}30");
    assert!(matches!(
        decode(&pending),
        Ok(Pdu::StatusReport(StatusReport { status: 0x30, .. }))
    ));
    // Cut off before TP-ST.
    let cut = format!("00062A0B915155214365F7{SCTS}{SCTS}");
    assert_eq!(
        decode(&cut),
        Err(PduError::Truncated {
            offset: 25,
            expected: "TP-ST (status)"
        })
    );
}

#[test]
fn ucs2_with_emoji() {
    // "Hi😀" in UTF-16BE: 0048 0069 D83D DE00 (U+1F600 as a surrogate
    // pair, derived in ucs2.rs); DCS 08; UDL 08 octets.
    let parts = encode_submit("+15551234567", "Hi😀", &SubmitOptions::default()).unwrap();
    assert_eq!(parts[0].hex, "0001000B915155214365F700080800480069D83DDE00");
    assert_eq!(parts[0].tpdu_len, 21);
    let s = decode_submit(&parts[0].hex).unwrap();
    assert_eq!((s.alphabet, s.text.as_str()), (Alphabet::Ucs2, "Hi😀"));

    let d = deliver(&format!("00040B915155214365F70008{SCTS}0800480069D83DDE00"));
    assert_eq!(d.text, "Hi😀");
    assert_eq!(d.alphabet, Alphabet::Ucs2);
    // An unpaired high surrogate from the network becomes U+FFFD.
    let d = deliver(&format!("00040B915155214365F70008{SCTS}04D83D0041"));
    assert_eq!(d.text, "\u{FFFD}A");
}

#[test]
fn gsm7_with_euro_and_bracket() {
    // "€[" = ESC 65 ESC 3C = 0011011 1100101 0011011 0111100; packed:
    // 1|0011011 = 9B, 11|110010 = F2, 100|00110 = 86, 0111 = 07.
    // UDL counts 4 septets, two per character.
    let parts = encode_submit("+15551234567", "€[", &SubmitOptions::default()).unwrap();
    assert_eq!(parts[0].hex, "0001000B915155214365F70000049BF28607");
    let s = decode_submit(&parts[0].hex).unwrap();
    assert_eq!((s.alphabet, s.text.as_str()), (Alphabet::Gsm7, "€["));
}

#[test]
fn concatenated_part_with_fill_bit() {
    // UDH 05 00 03 CC 02 01 (8-bit ref 0xCC, part 1 of 2) is 48 bits, so
    // the text starts at septet 7 = bit 49 after one zero fill bit:
    // 'H' 1001000 << 1 = 90, then 'i' 1101001 fills the next octet = 69.
    // UDL = 7 header septets + 2. First octet 44 = DELIVER + MMS + UDHI.
    let d = deliver(&format!("00440B915155214365F70000{SCTS}09050003CC02019069"));
    assert_eq!(d.text, "Hi");
    assert_eq!(
        d.concat,
        Some(Concat {
            reference: 0xCC,
            total: 2,
            sequence: 1
        })
    );
    // 16-bit reference: 06 08 04 1234 02 01 is 56 bits, exactly 8 septets,
    // so no fill: 'H' = 48 at bit 56, 'i' starts at bit 63:
    // 1|1001000 = C8, 110100 = 34. UDL = 8 + 2.
    let d = deliver(&format!(
        "00440B915155214365F70000{SCTS}0A06080412340201C834"
    ));
    assert_eq!(d.text, "Hi");
    assert_eq!(
        d.concat,
        Some(Concat {
            reference: 0x1234,
            total: 2,
            sequence: 1
        })
    );
}

#[test]
fn long_submit_splits_and_reassembles() {
    let text = "0123456789".repeat(20) + "€";
    let opts = SubmitOptions {
        concat_reference: 0x0102,
        concat_16bit: true,
        ..SubmitOptions::default()
    };
    let parts = encode_submit("+15551234567", &text, &opts).unwrap();
    assert_eq!(parts.len(), 2);
    let mut joined = String::new();
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(usize::from(p.part), i + 1);
        assert_eq!(p.total, 2);
        assert_eq!(p.tpdu_len * 2 + 2, p.hex.len());
        let s = decode_submit(&p.hex).unwrap();
        let c = s.concat.unwrap();
        assert_eq!(
            (c.reference, c.total, usize::from(c.sequence)),
            (0x0102, 2, i + 1)
        );
        joined.push_str(&s.text);
    }
    assert_eq!(joined, text);
    // Part 1: first octet 41 (SUBMIT + UDHI), UDL 0xA0 = 160 septets
    // (8 header + 152 text), and the header right after UDL.
    assert!(parts[0].hex.starts_with(
        "0041000B915155214365F70000A0060804010202 01"
            .replace(' ', "")
            .as_str()
    ));
}

#[test]
fn malformed_input_is_an_error() {
    assert_eq!(
        decode(""),
        Err(PduError::Truncated {
            offset: 0,
            expected: "SMSC length"
        })
    );
    assert_eq!(decode("0"), Err(PduError::OddHexLength { digits: 1 }));
    assert!(matches!(
        decode("0X"),
        Err(PduError::InvalidHexDigit {
            position: 1,
            found: 'X'
        })
    ));
    // SUBMIT given to decode().
    assert!(matches!(
        decode("0001"),
        Err(PduError::UnexpectedMessageType { mti: 1, .. })
    ));
    // Cut inside the sender address.
    assert_eq!(
        decode("00040B9151"),
        Err(PduError::Truncated {
            offset: 4,
            expected: "TP-OA (originating address)"
        })
    );
    // One octet too many after the user data.
    let long = format!("0791447758100650240B915155214365F70000{SCTS}04D4F29C0E00");
    assert_eq!(
        decode(&long),
        Err(PduError::TrailingData {
            offset: 31,
            count: 1
        })
    );
    // UDL claims 0xA0 septets with four octets present.
    let short = format!("0791447758100650240B915155214365F70000{SCTS}A0D4F29C0E");
    assert!(matches!(
        decode(&short),
        Err(PduError::InvalidField {
            field: "TP-UDL",
            ..
        })
    ));
    // SMSC length pointing past the end.
    assert!(matches!(decode("FF91"), Err(PduError::Truncated { .. })));
}

#[test]
fn reserved_mti_reads_as_deliver() {
    // First octet 07: MTI 11 (reserved) + MMS; §9.2.3.1 says treat as DELIVER.
    let d = deliver(&format!("00070B915155214365F70000{SCTS}04D4F29C0E"));
    assert_eq!(d.text, "Test");
    // PID 40: a silent "Type 0" message is reported, not hidden.
    let d = deliver(&format!("00040B915155214365F74000{SCTS}00"));
    assert_eq!((d.protocol_identifier, d.text.as_str()), (0x40, ""));
}

#[test]
fn message_waiting_and_class_dcs_decode() {
    // DCS C8 (MWI discard, GSM-7), D0, F1 (class 1 GSM-7), 11 (class 1 GSM-7).
    for dcs in ["C8", "D0", "F1", "11"] {
        let d = deliver(&format!("00040B915155214365F700{dcs}{SCTS}04D4F29C0E"));
        assert_eq!(d.text, "Test", "DCS {dcs}");
    }
    // DCS E0 (MWI store, UCS-2).
    let d = deliver(&format!("00040B915155214365F700E0{SCTS}020041"));
    assert_eq!(d.text, "A");
    // DCS F4 (8-bit data, class 0) is returned as hex.
    let d = deliver(&format!("00040B915155214365F700F4{SCTS}03CAFE00"));
    assert_eq!((d.alphabet, d.text.as_str()), (Alphabet::Data8, "CAFE00"));
}

#[test]
fn deliver_round_trip_long_mixed_text() {
    let text = format!("{}{}", "Grüße 😀 ".repeat(20), "x");
    let spec = DeliverSpec {
        sender: "MyBank".into(),
        smsc: None,
        text: text.clone(),
        timestamp: scts(),
        concat_reference: 77,
        concat_16bit: false,
        status_report_indication: false,
    };
    let pdus = encode_deliver(&spec).unwrap();
    assert!(pdus.len() > 1);
    let mut joined = String::new();
    for pdu in &pdus {
        let d = deliver(pdu);
        assert_eq!(d.sender, "MyBank");
        assert_eq!(d.alphabet, Alphabet::Ucs2);
        assert_eq!(d.concat.map(|c| c.reference), Some(77));
        joined.push_str(&d.text);
    }
    assert_eq!(joined, text);
}
