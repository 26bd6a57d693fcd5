//! SMS-DELIVER (TS 23.040 §9.2.2.1): a message arriving from the network,
//! as the modem reports it in `+CMT`, `+CMGR` or `+CMGL`; plus the encoder
//! the simulated modem uses to fabricate such messages.
//!
//! Layout: first octet (MTI=00, MMS, LP, SRI, UDHI, RP), TP-OA, TP-PID,
//! TP-DCS, TP-SCTS (7 octets), TP-UDL, TP-UD.

use super::address;
use super::dcs::Alphabet;
use super::error::PduError;
use super::hex;
use super::part_text::PartText;
use super::reader::Reader;
use super::timestamp::{self, SmsTimestamp};
use super::udh::Concat;
use super::user_data;

/// TP-MMS set: "no more messages are waiting", what a network usually sends.
const FLAG_NO_MORE_MESSAGES: u8 = 0x04;
const FLAG_SRI: u8 = 0x20;
const FLAG_UDHI: u8 = 0x40;

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deliver {
    /// The service centre that delivered it, if the modem included it.
    pub smsc: Option<String>,
    /// TP-OA: "+15551234567" for international numbers, plain digits for
    /// other numbers, the text itself for alphanumeric senders.
    pub sender: String,
    /// TP-SCTS: when the service centre received the message.
    pub timestamp: SmsTimestamp,
    /// Alphabet from TP-DCS.
    pub alphabet: Alphabet,
    /// The text without the user data header. For [`Alphabet::Data8`] this
    /// is the octets as uppercase hex, so binary content is not mangled.
    pub text: String,
    /// Concatenation info when this is one part of a longer message.
    pub concat: Option<Concat>,
    /// The text before decoding: the parts of a long message are joined
    /// as this, then decoded (see [`PartText`]).
    pub raw: Option<PartText>,
    /// TP-SRI: the sender asked for a status report.
    pub status_report_indication: bool,
    /// TP-PID as received. 0x00 for ordinary messages; 0x40 is a "Type 0"
    /// (silent) message that handsets acknowledge and throw away, which the
    /// bridge will probably want to drop too.
    pub protocol_identifier: u8,
}

/// What the simulated modem needs to make a network-style SMS-DELIVER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverSpec {
    /// Originating address: a number ("+..." is international) or an
    /// alphanumeric sender of up to 11 GSM-7 septets.
    pub sender: String,
    /// Service centre to put in front of the TPDU (`None` writes `00`).
    pub smsc: Option<String>,
    /// Message text; split into concatenated parts when too long.
    pub text: String,
    /// Service centre time stamp.
    pub timestamp: SmsTimestamp,
    /// Reference for the concatenation header of a long message.
    pub concat_reference: u16,
    /// Use the 16-bit concatenation reference (IEI 0x08).
    pub concat_16bit: bool,
    /// Set TP-SRI.
    pub status_report_indication: bool,
}

/// Encodes a message as the network would deliver it: one hex PDU per part,
/// each with the SMSC prefix, split and encoded like [`super::encode_submit`].
pub fn encode_deliver(d: &DeliverSpec) -> Result<Vec<String>, PduError> {
    let mut head = Vec::new();
    address::encode_smsc(d.smsc.as_deref(), &mut head)?;
    let first_at = head.len();
    head.push(
        FLAG_NO_MORE_MESSAGES
            | if d.status_report_indication {
                FLAG_SRI
            } else {
                0
            },
    );
    address::encode_address(&d.sender, true, &mut head)?;
    head.push(0x00); // TP-PID
    let dcs_at = head.len();
    head.push(0x00); // TP-DCS, set per part below
    timestamp::encode_timestamp(&d.timestamp, &mut head)?;

    let parts = user_data::encode_text(&d.text, d.concat_reference, d.concat_16bit)?;
    let mut out = Vec::with_capacity(parts.len());
    for ud in &parts {
        let mut pdu = head.clone();
        if ud.has_header {
            if let Some(first) = pdu.get_mut(first_at) {
                *first |= FLAG_UDHI;
            }
        }
        if let Some(dcs) = pdu.get_mut(dcs_at) {
            *dcs = ud.alphabet.dcs();
        }
        user_data::push_user_data(ud, &mut pdu);
        out.push(hex::encode_hex(&pdu));
    }
    Ok(out)
}

/// Decodes the TPDU of an SMS-DELIVER; `r` is just past the first octet.
pub(super) fn decode_body(
    r: &mut Reader<'_>,
    smsc: Option<String>,
    first: u8,
) -> Result<Deliver, PduError> {
    let sender = address::decode_address(r, "TP-OA (originating address)")?;
    let protocol_identifier = r.octet("TP-PID")?;
    let alphabet = Alphabet::from_dcs(r.octet("TP-DCS")?);
    let timestamp = timestamp::decode_timestamp(r, "TP-SCTS (service centre time stamp)")?;
    let ud = user_data::decode_user_data(r, alphabet, first & FLAG_UDHI != 0)?;
    Ok(Deliver {
        smsc,
        sender,
        timestamp,
        alphabet,
        text: ud.text,
        concat: ud.concat,
        raw: ud.raw,
        status_report_indication: first & FLAG_SRI != 0,
        protocol_identifier,
    })
}
