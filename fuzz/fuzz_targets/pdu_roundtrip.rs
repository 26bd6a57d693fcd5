//! Fuzz target: any text encoded as SUBMIT and as DELIVER parts decodes,
//! part by part, back to the same text. The first input octet picks the
//! options; the rest, read as UTF-8 (lossily), is the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::modem::pdu::{
    decode, decode_submit, encode_deliver, encode_submit, DeliverSpec, Pdu, PduError, SmsTimestamp,
    SubmitOptions,
};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest).into_owned();
    let sixteen = flags & 1 != 0;
    let reference = u16::from(flags) * 257;

    let opts = SubmitOptions {
        status_report: flags & 2 != 0,
        validity_minutes: (flags & 4 != 0).then_some(u32::from(flags) * 997),
        concat_reference: reference,
        concat_16bit: sixteen,
        message_reference: flags,
    };
    let parts = match encode_submit("+15551234567", &text, &opts) {
        Ok(parts) => parts,
        Err(PduError::TooManyParts { .. }) => return,
        Err(e) => panic!("encode_submit failed: {e}"),
    };
    let mut joined = String::new();
    for (i, p) in parts.iter().enumerate() {
        let s = decode_submit(&p.hex).expect("own SUBMIT must decode");
        assert_eq!(usize::from(p.part), i + 1);
        assert_eq!(s.concat.map_or(1, |c| c.sequence), p.part);
        assert!(p.hex.len() / 2 - 1 == p.tpdu_len && p.tpdu_len <= 176);
        joined.push_str(&s.text);
    }
    assert_eq!(joined, text, "SUBMIT round trip");

    let spec = DeliverSpec {
        sender: if flags & 8 != 0 {
            "Alerts".into()
        } else {
            "0612345678".into()
        },
        smsc: (flags & 16 != 0).then(|| "+447785016005".into()),
        text: text.clone(),
        timestamp: SmsTimestamp::from_unix_seconds(1_700_000_000, 4).expect("valid time"),
        concat_reference: reference,
        concat_16bit: sixteen,
        status_report_indication: flags & 32 != 0,
    };
    let pdus = encode_deliver(&spec).expect("same text fitted in a SUBMIT");
    let mut joined = String::new();
    for (i, hex) in pdus.iter().enumerate() {
        let Ok(Pdu::Deliver(d)) = decode(hex) else {
            panic!("own DELIVER must decode: {hex}");
        };
        assert_eq!(d.concat.map_or(1, |c| usize::from(c.sequence)), i + 1);
        assert_eq!(d.sender, spec.sender);
        joined.push_str(&d.text);
    }
    assert_eq!(joined, text, "DELIVER round trip");
});
