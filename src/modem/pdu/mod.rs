//! SMS PDU codec (3GPP TS 23.040 transfer layer, TS 23.038 alphabets), as
//! used by a GSM modem in PDU mode (TS 27.005, `AT+CMGF=0`).
//!
//! The bridge uses it in two directions:
//! - outgoing: [`encode_submit`] turns text into SMS-SUBMIT PDUs for
//!   `AT+CMGS`; incoming: [`decode`] reads SMS-DELIVER and
//!   SMS-STATUS-REPORT PDUs from `+CMT`, `+CMGR`, `+CMGL` and `+CDS`;
//! - the simulated modem does the reverse with [`decode_submit`],
//!   [`encode_deliver`] and [`encode_status_report`];
//! - USSD answers (`+CUSD`), whose text is coded like cell broadcasts:
//!   [`decode_ussd`] (and [`encode_ussd`] for the simulated modem).
//!
//! Nothing here panics on received data: every decoder returns
//! [`PduError`] for malformed input. Not supported: national language
//! shift tables (text is read with the default alphabet), compressed text
//! (surfaced as 8-bit data), and the optional tail of status reports.

#![forbid(unsafe_code)]

mod address;
mod dcs;
mod deliver;
mod error;
mod gsm7;
mod hex;
mod part_text;
mod reader;
mod status;
mod submit;
mod timestamp;
mod ucs2;
mod udh;
mod user_data;
mod ussd;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests;

pub use dcs::Alphabet;
pub use deliver::{encode_deliver, Deliver, DeliverSpec};
pub use error::PduError;
pub use part_text::PartText;
pub use status::{encode_status_report, DeliveryOutcome, StatusReport};
pub use submit::{
    decode_submit, encode_submit, relative_validity, relative_validity_minutes, Submit,
    SubmitOptions, SubmitPart,
};
pub use timestamp::SmsTimestamp;
pub use udh::Concat;
pub use ussd::{decode_ussd, encode_ussd, ussd_dcs, UssdForm};

use reader::Reader;

/// A TPDU received from the network, told apart by TP-MTI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pdu {
    /// An incoming message (TP-MTI 00; reserved value 11 is read as this too,
    /// as TS 23.040 §9.2.3.1 instructs).
    Deliver(Deliver),
    /// A delivery report for a message we sent (TP-MTI 10).
    StatusReport(StatusReport),
}

/// Decodes a PDU as a modem returns it in `+CMGR` / `+CMGL` / `+CMT` /
/// `+CDS`: hex (either case, surrounding whitespace ignored) including the
/// leading SMSC information.
///
/// TP-MTI 01 in this direction (an SMS-SUBMIT-REPORT, or a stored outgoing
/// SUBMIT listed by `+CMGL`) gives [`PduError::UnexpectedMessageType`] with
/// `mti: 1`; use [`decode_submit`] for stored outgoing messages.
pub fn decode(hex_pdu: &str) -> Result<Pdu, PduError> {
    let bytes = hex::decode_hex(hex_pdu)?;
    let mut r = Reader::new(&bytes);
    let smsc = address::decode_smsc(&mut r)?;
    let first = r.octet("first octet (TP-MTI)")?;
    match first & 0x03 {
        0b00 | 0b11 => deliver::decode_body(&mut r, smsc, first).map(Pdu::Deliver),
        0b10 => status::decode_body(&mut r).map(Pdu::StatusReport),
        mti => Err(PduError::UnexpectedMessageType {
            mti,
            expected: "SMS-DELIVER or SMS-STATUS-REPORT",
        }),
    }
}
