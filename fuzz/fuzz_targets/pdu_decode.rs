//! Fuzz target: the PDU decoders must return `Ok` or `Err` for any input,
//! never panic. The input is tried both as text (exercising the hex parser)
//! and hex-encoded (exercising the field decoders on arbitrary octets).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::modem::pdu::{decode, decode_submit, Pdu};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decode(text);
        let _ = decode_submit(text);
    }
    let hex: String = data.iter().map(|b| format!("{b:02X}")).collect();
    // Whatever decodes must also render without trouble.
    if let Ok(Pdu::Deliver(d)) = decode(&hex) {
        let _ = d.timestamp.to_unix_seconds();
        let _ = format!("{d:?}");
    }
    if let Ok(Pdu::StatusReport(r)) = decode(&hex) {
        let _ = r.outcome();
        let _ = r.discharge_time.to_unix_seconds();
    }
    let _ = decode_submit(&hex);
});
