//! SMS-STATUS-REPORT (TS 23.040 §9.2.2.3): the network's answer to a
//! SUBMIT sent with TP-SRR, reported by the modem in `+CDS` or stored.
//!
//! Layout: first octet (MTI=10, MMS, LP, SRQ, UDHI), TP-MR, TP-RA,
//! TP-SCTS, TP-DT, TP-ST, then optional TP-PI/PID/DCS/UDL/UD. The optional
//! tail carries nothing the bridge uses and is not decoded: octets after
//! TP-ST are accepted and ignored, whatever they hold.

use super::address;
use super::error::PduError;
use super::hex;
use super::reader::Reader;
use super::timestamp::{self, SmsTimestamp};

/// First octet written by the encoder: MTI = 10, TP-MMS set (no more messages).
const FIRST_OCTET: u8 = 0x06;

/// A delivery report for a message sent earlier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// TP-MR of the SUBMIT this reports on: the number `+CMGS` returned.
    pub message_reference: u8,
    /// TP-RA: the recipient of that SUBMIT.
    pub recipient: String,
    /// TP-SCTS: when the service centre accepted the SUBMIT.
    pub service_centre_time: SmsTimestamp,
    /// TP-DT: when the message was delivered, or the status last changed.
    pub discharge_time: SmsTimestamp,
    /// TP-ST as received; see [`StatusReport::outcome`].
    pub status: u8,
}

/// What a TP-ST value means for the message, in the terms the bridge acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryOutcome {
    /// 0x00-0x1F: the message reached the recipient (or was replaced).
    Delivered,
    /// 0x20-0x3F: a temporary error; the service centre is still trying.
    Pending,
    /// 0x40-0x7F and anything else: permanent error, or the service centre
    /// gave up. Reserved values with bit 7 set are treated as failures too.
    Failed,
}

impl StatusReport {
    /// Classifies TP-ST (§9.2.3.15) into delivered / still trying / failed.
    pub fn outcome(&self) -> DeliveryOutcome {
        match self.status {
            0x00..=0x1F => DeliveryOutcome::Delivered,
            0x20..=0x3F => DeliveryOutcome::Pending,
            _ => DeliveryOutcome::Failed,
        }
    }
}

/// Encodes a status report as the network would send it (for the simulated
/// modem), with the given SMSC in front (`None` writes `00`).
pub fn encode_status_report(r: &StatusReport, smsc: Option<&str>) -> Result<String, PduError> {
    let mut pdu = Vec::new();
    address::encode_smsc(smsc, &mut pdu)?;
    pdu.push(FIRST_OCTET);
    pdu.push(r.message_reference);
    address::encode_address(&r.recipient, false, &mut pdu)?;
    timestamp::encode_timestamp(&r.service_centre_time, &mut pdu)?;
    timestamp::encode_timestamp(&r.discharge_time, &mut pdu)?;
    pdu.push(r.status);
    Ok(hex::encode_hex(&pdu))
}

/// Decodes the TPDU of a status report; `r` is just past the first octet.
pub(super) fn decode_body(r: &mut Reader<'_>) -> Result<StatusReport, PduError> {
    let message_reference = r.octet("TP-MR")?;
    let recipient = address::decode_address(r, "TP-RA (recipient address)")?;
    let service_centre_time =
        timestamp::decode_timestamp(r, "TP-SCTS (service centre time stamp)")?;
    let discharge_time = timestamp::decode_timestamp(r, "TP-DT (discharge time)")?;
    let status = r.octet("TP-ST (status)")?;
    // Optional parameters (TP-PI onwards) are deliberately not decoded.
    r.rest();
    Ok(StatusReport {
        message_reference,
        recipient,
        service_centre_time,
        discharge_time,
        status,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn outcome_ranges() {
        let mut r = StatusReport {
            message_reference: 0,
            recipient: String::new(),
            service_centre_time: SmsTimestamp::from_unix_seconds(1_700_000_000, 0).unwrap(),
            discharge_time: SmsTimestamp::from_unix_seconds(1_700_000_000, 0).unwrap(),
            status: 0,
        };
        for (status, outcome) in [
            (0x00, DeliveryOutcome::Delivered),
            (0x02, DeliveryOutcome::Delivered),
            (0x1F, DeliveryOutcome::Delivered),
            (0x20, DeliveryOutcome::Pending),
            (0x30, DeliveryOutcome::Pending),
            (0x3F, DeliveryOutcome::Pending),
            (0x40, DeliveryOutcome::Failed),
            (0x65, DeliveryOutcome::Failed),
            (0x7F, DeliveryOutcome::Failed),
            (0x80, DeliveryOutcome::Failed),
            (0xFF, DeliveryOutcome::Failed),
        ] {
            r.status = status;
            assert_eq!(r.outcome(), outcome, "TP-ST 0x{status:02X}");
        }
    }
}
