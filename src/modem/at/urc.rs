//! What a line from the modem is: the end of a command (`OK`, an error), an
//! unsolicited result code (URC), the first line of a two-line URC, or
//! information text belonging to the command in flight.
//!
//! URCs can arrive at any moment, also between the lines of a response, so
//! the engine asks this module about every line it reads.

use super::parse::{cusd, fields, registration_stat};

/// How a command ended, when it did not end with `OK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModemError {
    /// Plain `ERROR`.
    Error,
    /// `+CME ERROR: <n>` (equipment) or its verbose text.
    Cme { code: Option<u16>, text: String },
    /// `+CMS ERROR: <n>` (message service) or its verbose text.
    Cms { code: Option<u16>, text: String },
}

impl std::fmt::Display for ModemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModemError::Error => f.write_str("ERROR"),
            ModemError::Cme { text, .. } => write!(f, "+CME ERROR: {text}"),
            ModemError::Cms {
                code: Some(code),
                text,
            } if text == &code.to_string() => {
                write!(
                    f,
                    "+CMS ERROR: {code} ({})",
                    super::parse::cms_reason(*code)
                )
            }
            ModemError::Cms { text, .. } => write!(f, "+CMS ERROR: {text}"),
        }
    }
}

/// A final result code: the command in flight is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Final {
    Ok,
    Failed(ModemError),
}

/// Which network a registration URC is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// `+CREG`: circuit switched (2G/3G; what SMS over CS uses).
    Cs,
    /// `+CEREG`: LTE.
    Eps,
}

/// An unsolicited result code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Urc {
    /// `+CMTI: "SM",3`: a message was stored at `index`.
    NewMessage { storage: String, index: u32 },
    /// `+CDSI: "SR",5`: a status report was stored at `index`.
    NewReport { storage: String, index: u32 },
    /// `+CMT` and the PDU line after it: a message routed straight to us.
    Message { pdu: String },
    /// `+CDS` and the PDU line after it: a status report routed to us.
    Report { pdu: String },
    /// `RING`: a call is ringing (repeats every few seconds).
    Ring,
    /// `+CLIP: "+15551234567",145`: who is calling.
    Caller { number: String },
    /// `NO CARRIER`: the call ended.
    CallEnded,
    /// `+CREG: <stat>` / `+CEREG: <stat>`: registration changed.
    Registration { network: Network, stat: u8 },
    /// `+CUSD: <m>[,"<text>"[,<dcs>]]`: the network's USSD answer (or a
    /// message it sent unasked); `text` is as the modem printed it.
    Ussd {
        m: u8,
        text: Option<String>,
        dcs: Option<u8>,
    },
}

/// The first line of a URC whose second line is a PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwoLine {
    Message,
    Report,
}

impl TwoLine {
    /// The URC once its PDU line has arrived.
    pub fn complete(self, pdu: String) -> Urc {
        match self {
            TwoLine::Message => Urc::Message { pdu },
            TwoLine::Report => Urc::Report { pdu },
        }
    }
}

/// What a line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Final(Final),
    Urc(Urc),
    UrcHeader(TwoLine),
    /// Information text: belongs to the command in flight, if any.
    Text,
}

/// Classifies a line. `expected` is the information prefix of the command
/// in flight (`"+CREG:"` for `AT+CREG?`), so its answer is not mistaken for
/// a URC that looks the same; empty when nothing is in flight.
pub fn classify(line: &str, expected: &str) -> Line {
    if let Some(done) = final_code(line) {
        return Line::Final(done);
    }
    if !expected.is_empty() && line.starts_with(expected) {
        return Line::Text;
    }
    if line == "RING" {
        return Line::Urc(Urc::Ring);
    }
    if line == "NO CARRIER" {
        return Line::Urc(Urc::CallEnded);
    }
    let Some((prefix, rest)) = line.split_once(':') else {
        return Line::Text;
    };
    let rest = rest.trim();
    match prefix {
        "+CMTI" => stored(rest)
            .map(|(storage, index)| Line::Urc(Urc::NewMessage { storage, index }))
            .unwrap_or(Line::Text),
        "+CDSI" => stored(rest)
            .map(|(storage, index)| Line::Urc(Urc::NewReport { storage, index }))
            .unwrap_or(Line::Text),
        "+CMT" => Line::UrcHeader(TwoLine::Message),
        "+CDS" => Line::UrcHeader(TwoLine::Report),
        "+CLIP" => match fields(rest).into_iter().next() {
            Some(number) => Line::Urc(Urc::Caller { number }),
            None => Line::Text,
        },
        "+CUSD" => match cusd(rest) {
            Some((m, text, dcs)) => Line::Urc(Urc::Ussd { m, text, dcs }),
            None => Line::Text,
        },
        "+CREG" | "+CEREG" => match registration_stat(rest) {
            Some(stat) => Line::Urc(Urc::Registration {
                network: if prefix == "+CREG" {
                    Network::Cs
                } else {
                    Network::Eps
                },
                stat,
            }),
            None => Line::Text,
        },
        _ => Line::Text,
    }
}

fn final_code(line: &str) -> Option<Final> {
    match line {
        "OK" => return Some(Final::Ok),
        "ERROR" => return Some(Final::Failed(ModemError::Error)),
        _ => {}
    }
    let error = |rest: &str| {
        let text = rest.trim().to_owned();
        (text.parse::<u16>().ok(), text)
    };
    if let Some(rest) = line.strip_prefix("+CME ERROR:") {
        let (code, text) = error(rest);
        return Some(Final::Failed(ModemError::Cme { code, text }));
    }
    if let Some(rest) = line.strip_prefix("+CMS ERROR:") {
        let (code, text) = error(rest);
        return Some(Final::Failed(ModemError::Cms { code, text }));
    }
    None
}

/// `"SM",3` → storage and index.
fn stored(rest: &str) -> Option<(String, u32)> {
    let mut parts = fields(rest).into_iter();
    let storage = parts.next()?;
    let index = parts.next()?.parse().ok()?;
    Some((storage, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_codes_end_a_command() {
        assert_eq!(classify("OK", ""), Line::Final(Final::Ok));
        assert_eq!(
            classify("+CMS ERROR: 500", "+CMGS:"),
            Line::Final(Final::Failed(ModemError::Cms {
                code: Some(500),
                text: "500".into()
            }))
        );
        assert_eq!(
            classify("+CME ERROR: SIM not inserted", ""),
            Line::Final(Final::Failed(ModemError::Cme {
                code: None,
                text: "SIM not inserted".into()
            }))
        );
    }

    #[test]
    fn urcs_are_recognized() {
        assert_eq!(
            classify("+CMTI: \"SM\",3", "+CSQ:"),
            Line::Urc(Urc::NewMessage {
                storage: "SM".into(),
                index: 3
            })
        );
        assert_eq!(
            classify("+CDSI: \"SR\",12", ""),
            Line::Urc(Urc::NewReport {
                storage: "SR".into(),
                index: 12
            })
        );
        assert_eq!(classify("+CMT: ,24", ""), Line::UrcHeader(TwoLine::Message));
        assert_eq!(classify("+CDS: 25", ""), Line::UrcHeader(TwoLine::Report));
        assert_eq!(classify("RING", ""), Line::Urc(Urc::Ring));
        assert_eq!(
            classify("+CLIP: \"+15551234567\",145,\"\",0,\"\",0", ""),
            Line::Urc(Urc::Caller {
                number: "+15551234567".into()
            })
        );
        assert_eq!(classify("NO CARRIER", ""), Line::Urc(Urc::CallEnded));
        assert_eq!(
            classify("+CUSD: 1,\"Menu: 1, \"Top\" 2\",72", ""),
            Line::Urc(Urc::Ussd {
                m: 1,
                text: Some("Menu: 1, \"Top\" 2".into()),
                dcs: Some(72)
            })
        );
        assert_eq!(
            classify("+CUSD: 4", ""),
            Line::Urc(Urc::Ussd {
                m: 4,
                text: None,
                dcs: None
            })
        );
    }

    #[test]
    fn a_registration_answer_is_not_taken_for_a_urc() {
        assert_eq!(classify("+CREG: 1,5", "+CREG:"), Line::Text);
        assert_eq!(
            classify("+CREG: 5", ""),
            Line::Urc(Urc::Registration {
                network: Network::Cs,
                stat: 5
            })
        );
        assert_eq!(
            classify("+CEREG: 1,\"00C3\",\"0000B1F2\",7", "+CSQ:"),
            Line::Urc(Urc::Registration {
                network: Network::Eps,
                stat: 1
            })
        );
    }

    #[test]
    fn anything_else_is_text() {
        for line in [
            "SIMCOM_Ltd",
            "0791448720003023",
            "+CSQ: 20,99",
            "+CMTI: junk",
        ] {
            assert_eq!(classify(line, ""), Line::Text, "{line}");
        }
    }
}
