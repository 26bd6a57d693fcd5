//! The simulated modem's brain: an AT command interpreter with SMS storage,
//! a virtual network that sends delivery reports, calls, a GNSS receiver
//! and switchable faults. Pure state: bytes in, [`Effect`]s out; the
//! runtime in `sim/mod.rs` moves the bytes and keeps the clock.

use std::{
    collections::{BTreeMap, VecDeque},
    time::Duration,
};

use serde::{Deserialize, Serialize};

mod commands;

use crate::modem::{
    pdu::{self, encode_deliver, encode_status_report, DeliverSpec, SmsTimestamp, StatusReport},
    ussd::DemoMenu,
};

/// Vendor behaviours the simulator can imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Accepts every setting the driver asks for.
    #[default]
    Generic,
    /// Like some SIMCom A76xx firmware: refuses to route status reports
    /// straight to the host (`AT+CNMI=2,2,0,1,0` and any other `<ds>`=1)
    /// and only stores them (`+CDSI`).
    A76xx,
    /// A modem that cannot store status reports (`<ds>`=2 refused): it
    /// only routes them straight to the host (`+CDS`).
    DirectReports,
}

/// How the simulated modem starts.
#[derive(Debug, Clone, PartialEq)]
pub struct SimSettings {
    pub number: String,
    pub operator: String,
    /// `+CSQ` rssi, 0-31 (99: unknown).
    pub rssi: u8,
    /// `+CREG` status: 1 home, 5 roaming, ...
    pub registration: u8,
    pub profile: Profile,
    /// Messages the SIM storage holds.
    pub capacity: usize,
    /// From accepting a SUBMIT to its status report.
    pub report_delay: Duration,
    /// From the end of a SUBMIT's PDU to the modem's `+CMGS` answer (a
    /// real modem takes seconds: the network has the message before the
    /// host hears so).
    pub submit_delay: Duration,
    /// TP-ST of the reports the network sends (0: delivered).
    pub report_status: u8,
    /// Phase 2+ message service (`+CSMS` service 1): `+CMT` and `+CDS`
    /// must be acknowledged with `AT+CNMA`.
    pub ack_required: bool,
}

impl Default for SimSettings {
    fn default() -> Self {
        SimSettings {
            number: "+15550009999".into(),
            operator: "Simulated Mobile".into(),
            rssi: 21,
            registration: 1,
            profile: Profile::Generic,
            capacity: 30,
            report_delay: Duration::from_millis(100),
            submit_delay: Duration::ZERO,
            report_status: 0,
            ack_required: false,
        }
    }
}

/// A message in simulated storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredSms {
    pub index: u32,
    /// 0 received unread, 1 received read (TS 27.005 PDU-mode `<stat>`).
    pub stat: u8,
    pub pdu: String,
}

/// A message the host sent through `AT+CMGS`, as the simulator decoded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Submitted {
    pub to: String,
    pub text: String,
    pub reference: u8,
    /// (concatenation reference, total, sequence) of a multipart part.
    pub concat: Option<(u16, u8, u8)>,
    pub status_report: bool,
}

/// A GNSS fix the simulator reports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SimFix {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default)]
    pub altitude: f64,
    /// km/h.
    #[serde(default)]
    pub speed: f64,
    #[serde(default)]
    pub course: f64,
    #[serde(default = "default_satellites")]
    pub satellites: u32,
}

fn default_satellites() -> u32 {
    8
}

/// Something the runtime must do for the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Bytes to the host.
    Write(Vec<u8>),
    /// Run [`Device::timer`] with this event after the delay.
    After(Duration, Timer),
}

/// Events the device scheduled for later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// The network's status report for a SUBMIT.
    Report { reference: u8, recipient: String },
    /// A line the modem writes later: the network's answer to a USSD
    /// request (`+CUSD`), or a send's `+CMGS` answer.
    Say { line: String },
}

/// An inbound SMS to deliver through the virtual network.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InboundSms {
    pub from: String,
    pub text: String,
    /// Route it straight to the host as `+CMT` (a class 0 message does
    /// this whatever `+CNMI` says) instead of storing it.
    #[serde(default)]
    pub direct: bool,
    /// Use a 16-bit concatenation reference.
    #[serde(default)]
    pub concat_16bit: bool,
    /// The concatenation reference; 0 picks the next one.
    #[serde(default)]
    pub reference: u16,
    /// Deliver only these parts (1-based) now, to send the rest later with
    /// the same `reference`; empty: all of them.
    #[serde(default)]
    pub only_parts: Vec<u8>,
}

/// The simulated modem.
#[derive(Debug)]
pub struct Device {
    settings: SimSettings,
    echo: bool,
    /// `+CREG=<n>` / `+CEREG=<n>`: whether registration changes are announced.
    creg_urc: bool,
    cereg_urc: bool,
    /// `+CNMI` `<mt>` and `<ds>`: how messages and reports reach the host.
    cnmi_mt: u8,
    cnmi_ds: u8,
    clip: bool,
    storage: BTreeMap<u32, StoredSms>,
    /// Parts the network holds because storage was full; delivered as
    /// soon as there is room.
    network_queue: VecDeque<String>,
    next_mr: u8,
    next_concat: u16,
    /// Command line being assembled.
    line: Vec<u8>,
    /// Set between `AT+CMGS=<n>` and Ctrl-Z: the PDU being typed.
    body: Option<Vec<u8>>,
    ringing: Option<String>,
    gnss_on: bool,
    fix: Option<SimFix>,
    /// Where the USSD session is in the demo network's menu.
    ussd: DemoMenu,
    // Faults.
    silent: bool,
    storage_full: bool,
    /// What the next sends do: `None` succeeds, `Some(code)` fails.
    cms_errors: VecDeque<Option<u16>>,
    // What tests inspect.
    submitted: Vec<Submitted>,
    commands: VecDeque<String>,
}

/// Commands remembered for inspection.
const COMMAND_LOG: usize = 1000;
/// Longest command line accepted before it is discarded as noise.
const MAX_COMMAND: usize = 1024;

impl Device {
    pub fn new(settings: SimSettings) -> Device {
        Device {
            settings,
            echo: true,
            creg_urc: false,
            cereg_urc: false,
            cnmi_mt: 0,
            cnmi_ds: 0,
            clip: false,
            storage: BTreeMap::new(),
            network_queue: VecDeque::new(),
            next_mr: 0,
            next_concat: 1,
            line: Vec::new(),
            body: None,
            ringing: None,
            gnss_on: false,
            fix: None,
            ussd: DemoMenu::Idle,
            silent: false,
            storage_full: false,
            cms_errors: VecDeque::new(),
            submitted: Vec::new(),
            commands: VecDeque::new(),
        }
    }

    pub fn settings(&self) -> &SimSettings {
        &self.settings
    }

    pub fn storage(&self) -> Vec<StoredSms> {
        self.storage.values().cloned().collect()
    }

    pub fn submitted(&self) -> Vec<Submitted> {
        self.submitted.clone()
    }

    pub fn commands(&self) -> Vec<String> {
        self.commands.iter().cloned().collect()
    }

    /// Parts waiting in the network for free storage.
    pub fn network_queue_len(&self) -> usize {
        self.network_queue.len()
    }

    pub fn is_silent(&self) -> bool {
        self.silent
    }

    pub fn set_silent(&mut self, silent: bool) {
        self.silent = silent;
    }

    pub fn set_storage_full(&mut self, full: bool) -> Vec<Effect> {
        self.storage_full = full;
        if full {
            Vec::new()
        } else {
            self.drain_network_queue()
        }
    }

    /// After `skip` more good sends, the next `count` fail with
    /// `+CMS ERROR: <code>`.
    pub fn fail_sends(&mut self, code: u16, count: usize, skip: usize) {
        self.cms_errors.clear();
        self.cms_errors.extend(std::iter::repeat_n(None, skip));
        self.cms_errors
            .extend(std::iter::repeat_n(Some(code), count));
    }

    pub fn set_fix(&mut self, fix: Option<SimFix>) {
        self.fix = fix;
    }

    pub fn set_report_status(&mut self, status: u8) {
        self.settings.report_status = status;
    }

    /// The network registration changes (1 home, 5 roaming, 2 searching,
    /// ...), announced with `+CREG` when the host asked for it.
    pub fn set_registration(&mut self, stat: u8) -> Vec<Effect> {
        self.settings.registration = stat;
        let mut text = String::new();
        if self.creg_urc {
            text.push_str(&format!("\r\n+CREG: {stat}\r\n"));
        }
        if self.cereg_urc {
            text.push_str(&format!("\r\n+CEREG: {stat}\r\n"));
        }
        vec![write(&text)]
    }

    /// Bytes from the host.
    pub fn input(&mut self, bytes: &[u8]) -> Vec<Effect> {
        let mut effects = Vec::new();
        for &b in bytes {
            if self.silent {
                // A hung modem hears nothing; the log still shows what the
                // host tried, for the tests.
                if b == b'\r' {
                    let line = String::from_utf8_lossy(&self.line).trim().to_owned();
                    self.line.clear();
                    self.log(&line);
                } else if !b.is_ascii_control() && self.line.len() < MAX_COMMAND {
                    self.line.push(b);
                }
                continue;
            }
            if let Some(body) = self.body.as_mut() {
                match b {
                    0x1A => {
                        let body = self.body.take().unwrap_or_default();
                        effects.extend(self.submit(&body));
                    }
                    0x1B => {
                        self.body = None;
                        effects.push(write("\r\nOK\r\n"));
                    }
                    b'\r' | b'\n' => {}
                    _ if body.len() < MAX_COMMAND => body.push(b),
                    _ => {}
                }
                continue;
            }
            match b {
                b'\r' => {
                    let line = String::from_utf8_lossy(&self.line).trim().to_owned();
                    self.line.clear();
                    if self.echo {
                        effects.push(Effect::Write(format!("{line}\r").into_bytes()));
                    }
                    if !line.is_empty() {
                        effects.extend(self.command(&line));
                    }
                }
                // Like a real modem, control characters outside a PDU
                // (a stray ESC, line noise) are not part of a command.
                _ if b.is_ascii_control() => {}
                _ if self.line.len() < MAX_COMMAND => self.line.push(b),
                _ => self.line.clear(),
            }
        }
        effects
    }

    /// A scheduled event is due.
    pub fn timer(&mut self, timer: Timer) -> Vec<Effect> {
        match timer {
            Timer::Report {
                reference,
                recipient,
            } => self.report(reference, &recipient),
            Timer::Say { line } => vec![write(&line)],
        }
    }

    /// The virtual network delivers an SMS (one URC or stored part each).
    pub fn deliver(&mut self, sms: &InboundSms) -> Result<Vec<Effect>, String> {
        let reference = if sms.reference == 0 {
            self.next_concat = self.next_concat.wrapping_add(1).max(1);
            self.next_concat
        } else {
            sms.reference
        };
        let now = chrono::Utc::now().timestamp();
        let pdus = encode_deliver(&DeliverSpec {
            sender: sms.from.clone(),
            smsc: Some("+15550000000".into()),
            text: sms.text.clone(),
            timestamp: SmsTimestamp::from_unix_seconds(now, 0)
                .ok_or_else(|| "the clock is out of range".to_owned())?,
            concat_reference: reference,
            concat_16bit: sms.concat_16bit,
            status_report_indication: false,
        })
        .map_err(|e| e.to_string())?;
        let pdus = pdus
            .into_iter()
            .enumerate()
            .filter(|(n, _)| sms.only_parts.is_empty() || sms.only_parts.contains(&((n + 1) as u8)))
            .map(|(_, pdu)| pdu);
        Ok(self.deliver_pdus(pdus, sms.direct))
    }

    /// SMS-DELIVER PDUs (hex, with the SMSC prefix) arrive as they are,
    /// whoever made them: stored (`+CMTI`) or routed to the host (`+CMT`).
    pub fn deliver_pdus(
        &mut self,
        pdus: impl IntoIterator<Item = String>,
        direct: bool,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        for pdu in pdus {
            if direct || self.cnmi_mt == 2 {
                effects.push(write(&format!(
                    "\r\n+CMT: ,{}\r\n{pdu}\r\n",
                    tpdu_len(&pdu)
                )));
            } else {
                self.network_queue.push_back(pdu);
            }
        }
        effects.extend(self.drain_network_queue());
        effects
    }

    /// A call rings; the caller's number follows when `+CLIP` is on.
    pub fn ring(&mut self, from: &str) -> Vec<Effect> {
        self.ringing = Some(from.to_owned());
        let mut text = "\r\nRING\r\n".to_owned();
        if self.clip {
            text.push_str(&format!("\r\n+CLIP: \"{from}\",145,\"\",0,\"\",0\r\n"));
        }
        vec![write(&text)]
    }

    /// The caller gave up.
    pub fn remote_hang_up(&mut self) -> Vec<Effect> {
        if self.ringing.take().is_some() {
            vec![write("\r\nNO CARRIER\r\n")]
        } else {
            Vec::new()
        }
    }

    pub fn ringing(&self) -> Option<&str> {
        self.ringing.as_deref()
    }

    fn free_index(&self) -> Option<u32> {
        if self.storage_full || self.storage.len() >= self.settings.capacity {
            return None;
        }
        (0..self.settings.capacity as u32).find(|i| !self.storage.contains_key(i))
    }

    /// Stores what the network holds while there is room, announcing each
    /// with `+CMTI` when the host asked for it.
    fn drain_network_queue(&mut self) -> Vec<Effect> {
        let mut effects = Vec::new();
        while !self.network_queue.is_empty() {
            let Some(index) = self.free_index() else {
                break;
            };
            let Some(pdu) = self.network_queue.pop_front() else {
                break;
            };
            self.storage.insert(
                index,
                StoredSms {
                    index,
                    stat: 0,
                    pdu,
                },
            );
            if self.cnmi_mt >= 1 {
                effects.push(write(&format!("\r\n+CMTI: \"SM\",{index}\r\n")));
            }
        }
        effects
    }

    fn report(&mut self, reference: u8, recipient: &str) -> Vec<Effect> {
        let now = chrono::Utc::now().timestamp();
        let Some(time) = SmsTimestamp::from_unix_seconds(now, 0) else {
            return Vec::new();
        };
        let report = StatusReport {
            message_reference: reference,
            recipient: recipient.to_owned(),
            service_centre_time: time,
            discharge_time: time,
            status: self.settings.report_status,
        };
        let Ok(pdu) = encode_status_report(&report, Some("+15550000000")) else {
            return Vec::new();
        };
        if self.cnmi_ds == 1 {
            return vec![write(&format!("\r\n+CDS: {}\r\n{pdu}\r\n", tpdu_len(&pdu)))];
        }
        match self.free_index() {
            Some(index) => {
                self.storage.insert(
                    index,
                    StoredSms {
                        index,
                        stat: 0,
                        pdu,
                    },
                );
                if self.cnmi_ds == 2 {
                    vec![write(&format!("\r\n+CDSI: \"SM\",{index}\r\n"))]
                } else {
                    Vec::new()
                }
            }
            None => {
                self.network_queue.push_back(pdu);
                Vec::new()
            }
        }
    }

    fn submit(&mut self, body: &[u8]) -> Vec<Effect> {
        let hex = String::from_utf8_lossy(body).trim().to_owned();
        if let Some(Some(code)) = self.cms_errors.pop_front() {
            return vec![write(&format!("\r\n+CMS ERROR: {code}\r\n"))];
        }
        let submit = match pdu::decode_submit(&hex) {
            Ok(submit) => submit,
            Err(_) => return vec![write("\r\n+CMS ERROR: 304\r\n")],
        };
        let reference = self.next_mr;
        self.next_mr = self.next_mr.wrapping_add(1);
        let answer = format!("\r\n+CMGS: {reference}\r\n\r\nOK\r\n");
        let mut effects = vec![if self.settings.submit_delay.is_zero() {
            write(&answer)
        } else {
            Effect::After(self.settings.submit_delay, Timer::Say { line: answer })
        }];
        if submit.status_report {
            // After the answer: a report never overtakes its `+CMGS`.
            effects.push(Effect::After(
                self.settings.submit_delay + self.settings.report_delay,
                Timer::Report {
                    reference,
                    recipient: submit.destination.clone(),
                },
            ));
        }
        self.submitted.push(Submitted {
            to: submit.destination,
            text: submit.text,
            reference,
            concat: submit.concat.map(|c| (c.reference, c.total, c.sequence)),
            status_report: submit.status_report,
        });
        effects
    }

    fn log(&mut self, line: &str) {
        if line.is_empty() {
            return;
        }
        if self.commands.len() >= COMMAND_LOG {
            self.commands.pop_front();
        }
        self.commands.push_back(line.to_owned());
    }
}

pub(super) fn write(text: &str) -> Effect {
    Effect::Write(text.as_bytes().to_vec())
}

/// TPDU octets of a hex PDU with its SMSC prefix: what `+CMT`, `+CMGR`
/// and `+CMGL` report as `<length>`.
pub(super) fn tpdu_len(pdu: &str) -> usize {
    let smsc = pdu
        .get(..2)
        .and_then(|h| u8::from_str_radix(h, 16).ok())
        .unwrap_or(0);
    (pdu.len() / 2).saturating_sub(1 + usize::from(smsc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(effects: &[Effect]) -> String {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Write(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
                Effect::After(..) => None,
            })
            .collect()
    }

    #[test]
    fn the_a76xx_profile_refuses_direct_status_reports() {
        let mut device = Device::new(SimSettings {
            profile: Profile::A76xx,
            ..SimSettings::default()
        });
        assert!(text(&device.input(b"AT+CNMI=2,2,0,1,0\r")).contains("ERROR"));
        assert!(text(&device.input(b"AT+CNMI=2,1,0,2,0\r")).contains("OK"));
    }

    #[test]
    fn a_stored_message_is_announced_listed_read_and_deleted() {
        let mut device = Device::new(SimSettings::default());
        device.input(b"ATE0\rAT+CNMI=2,1,0,1,0\r");
        let sms = InboundSms {
            from: "+15551112222".into(),
            text: "hi".into(),
            direct: false,
            concat_16bit: false,
            reference: 0,
            only_parts: Vec::new(),
        };
        assert!(text(&device.deliver(&sms).expect("deliver")).contains("+CMTI: \"SM\",0"));
        assert!(text(&device.input(b"AT+CMGL=4\r")).contains("+CMGL: 0,0,,"));
        assert!(text(&device.input(b"AT+CMGR=0\r")).contains("+CMGR: 1,,"));
        device.input(b"AT+CMGD=0\r");
        assert!(device.storage().is_empty());
    }

    #[test]
    fn a_full_storage_holds_messages_in_the_network_until_there_is_room() {
        let mut device = Device::new(SimSettings {
            capacity: 1,
            ..SimSettings::default()
        });
        device.input(b"ATE0\rAT+CNMI=2,1,0,1,0\r");
        for n in 0..2 {
            let sms = InboundSms {
                from: "+15551112222".into(),
                text: format!("m{n}"),
                direct: false,
                concat_16bit: false,
                reference: 0,
                only_parts: Vec::new(),
            };
            device.deliver(&sms).expect("deliver");
        }
        assert_eq!((device.storage().len(), device.network_queue_len()), (1, 1));
        assert!(text(&device.input(b"AT+CMGD=0\r")).contains("+CMTI"));
        assert_eq!((device.storage().len(), device.network_queue_len()), (1, 0));
    }

    #[test]
    fn garbage_commands_are_refused_not_fatal() {
        let mut device = Device::new(SimSettings::default());
        assert!(text(&device.input(b"\xff\xfeZZ\rAT+NOPE\rAT+CMGR=x\r")).contains("ERROR"));
        assert!(text(&device.input(&[b'A'; 5000])).is_empty());
        assert!(text(&device.input(b"\rAT\r")).contains("OK"));
    }
}
