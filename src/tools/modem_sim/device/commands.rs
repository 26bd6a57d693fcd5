//! The AT command interpreter of the simulated modem: one answer (and its
//! side effects on the device) per command line.

use std::time::Duration;

use super::{tpdu_len, write, Device, Effect, Profile, Timer};
use crate::modem::{
    pdu::{encode_ussd, ussd_dcs, UssdForm},
    ussd::{demo_network, DemoMenu},
};

/// A USSD code the simulated network never answers (to see a timeout).
pub const SILENT_USSD_CODE: &str = "*999#";
/// How long the simulated network takes to answer a USSD request.
const USSD_DELAY: Duration = Duration::from_millis(30);

impl Device {
    pub(super) fn command(&mut self, line: &str) -> Vec<Effect> {
        self.log(line);
        let upper = line.to_ascii_uppercase();
        let Some(cmd) = upper.strip_prefix("AT") else {
            return vec![write("\r\nERROR\r\n")];
        };
        let ok = || vec![write("\r\nOK\r\n")];
        let answer = |text: String| vec![write(&format!("\r\n{text}\r\n\r\nOK\r\n"))];
        let error = || vec![write("\r\nERROR\r\n")];
        match cmd {
            "" | "Z" | "&F" | "+CMEE=1" | "+CMEE=2" | "+CMGF=0" | "+COPS=3,0" | "+CNMA"
            | "+CGPS=1" | "+CGPS=0" | "+QGPSEND" => {
                if cmd == "+CGPS=1" {
                    self.gnss_on = true;
                }
                ok()
            }
            "E0" => {
                self.echo = false;
                ok()
            }
            "E1" => {
                self.echo = true;
                ok()
            }
            "+CFUN=1,1" | "+CFUN=1" => {
                // A reset forgets the session settings.
                self.echo = true;
                self.creg_urc = false;
                self.cereg_urc = false;
                self.cnmi_mt = 0;
                self.cnmi_ds = 0;
                self.clip = false;
                ok()
            }
            "I" | "+CGMM" => answer("SIMULATED MODEM SIM-1".into()),
            "+CGMI" => answer("switchboard".into()),
            "+CGMR" => answer(format!("Revision: {:?}", self.settings.profile)),
            "+CGSN" => answer("867000000000001".into()),
            "+CPIN?" => answer("+CPIN: READY".into()),
            "+CSMS?" => answer(format!(
                "+CSMS: {},1,1,1",
                u8::from(self.settings.ack_required)
            )),
            "+CSCA?" => answer("+CSCA: \"+15550000000\",145".into()),
            "+CSQ" => answer(format!("+CSQ: {},99", self.settings.rssi)),
            "+CREG?" => answer(format!("+CREG: 1,{}", self.settings.registration)),
            "+CEREG?" => answer(format!("+CEREG: 1,{}", self.settings.registration)),
            "+COPS?" => answer(format!("+COPS: 0,0,\"{}\",7", self.settings.operator)),
            "+CNUM" => answer(format!("+CNUM: \"\",\"{}\",145", self.settings.number)),
            "+CLIP=1" => {
                self.clip = true;
                ok()
            }
            "+CLIP=0" => {
                self.clip = false;
                ok()
            }
            "H" | "+CHUP" => {
                self.ringing = None;
                ok()
            }
            "+CMGL=4" => {
                let mut text = String::new();
                for sms in self.storage.values_mut() {
                    text.push_str(&format!(
                        "\r\n+CMGL: {},{},,{}\r\n{}",
                        sms.index,
                        sms.stat,
                        tpdu_len(&sms.pdu),
                        sms.pdu
                    ));
                    sms.stat = 1;
                }
                text.push_str("\r\n\r\nOK\r\n");
                vec![write(&text)]
            }
            "+CPMS?" => answer(format!(
                "+CPMS: \"SM\",{used},{cap},\"SM\",{used},{cap},\"SM\",{used},{cap}",
                used = self.storage.len(),
                cap = self.settings.capacity
            )),
            "+CGPSINFO" => answer(format!("+CGPSINFO: {}", self.cgpsinfo())),
            "+QGPS=1" => {
                if self.gnss_on {
                    vec![write("\r\n+CME ERROR: 504\r\n")]
                } else {
                    self.gnss_on = true;
                    ok()
                }
            }
            "+QGPSLOC=2" => match (self.gnss_on, self.fix) {
                (true, Some(fix)) => answer(format!(
                    "+QGPSLOC: {},{:.5},{:.5},0.9,{:.1},3,{:.2},{:.1},{:.1},{},{:02}",
                    chrono::Utc::now().format("%H%M%S.000"),
                    fix.latitude,
                    fix.longitude,
                    fix.altitude,
                    fix.course,
                    fix.speed,
                    fix.speed / 1.852,
                    chrono::Utc::now().format("%d%m%y"),
                    fix.satellites
                )),
                (true, None) => vec![write("\r\n+CME ERROR: 516\r\n")],
                (false, _) => vec![write("\r\n+CME ERROR: 505\r\n")],
            },
            _ => self.command_with_arguments(cmd).unwrap_or_else(error),
        }
    }

    fn command_with_arguments(&mut self, cmd: &str) -> Option<Vec<Effect>> {
        let ok = || Some(vec![write("\r\nOK\r\n")]);
        if let Some(args) = cmd.strip_prefix("+CNMI=") {
            let values: Vec<u8> = args
                .split(',')
                .map(|v| v.trim().parse().unwrap_or(0))
                .collect();
            let mt = values.get(1).copied().unwrap_or(0);
            let ds = values.get(3).copied().unwrap_or(0);
            let refused = match self.settings.profile {
                Profile::Generic => false,
                Profile::A76xx => ds == 1,
                Profile::DirectReports => ds == 2,
            };
            if mt > 3 || ds > 2 || refused {
                return None;
            }
            self.cnmi_mt = mt;
            self.cnmi_ds = ds;
            return ok();
        }
        if cmd.starts_with("+CSMS=") {
            return Some(vec![write("\r\n+CSMS: 1,1,1\r\n\r\nOK\r\n")]);
        }
        if cmd.starts_with("+CPMS=") {
            return Some(vec![write(&format!(
                "\r\n+CPMS: {used},{cap},{used},{cap},{used},{cap}\r\n\r\nOK\r\n",
                used = self.storage.len(),
                cap = self.settings.capacity
            ))]);
        }
        if let Some(n) = cmd.strip_prefix("+CREG=") {
            self.creg_urc = n.trim() != "0";
            return ok();
        }
        if let Some(n) = cmd.strip_prefix("+CEREG=") {
            self.cereg_urc = n.trim() != "0";
            return ok();
        }
        if let Some(index) = cmd.strip_prefix("+CMGR=") {
            let index: u32 = index.trim().parse().ok()?;
            return Some(match self.storage.get_mut(&index) {
                Some(sms) => {
                    let was = sms.stat;
                    sms.stat = 1;
                    vec![write(&format!(
                        "\r\n+CMGR: {was},,{}\r\n{}\r\n\r\nOK\r\n",
                        tpdu_len(&sms.pdu),
                        sms.pdu
                    ))]
                }
                None => vec![write("\r\n+CMS ERROR: 321\r\n")],
            });
        }
        if let Some(args) = cmd.strip_prefix("+CMGD=") {
            let index: u32 = args.split(',').next()?.trim().parse().ok()?;
            self.storage.remove(&index);
            let mut effects = vec![write("\r\nOK\r\n")];
            effects.extend(self.drain_network_queue());
            return Some(effects);
        }
        if let Some(args) = cmd.strip_prefix("+CUSD=") {
            return self.ussd(args);
        }
        if let Some(length) = cmd.strip_prefix("+CMGS=") {
            let length: usize = length.trim().parse().ok()?;
            if !(1..=200).contains(&length) {
                return None;
            }
            self.body = Some(Vec::new());
            return Some(vec![write("\r\n> ")]);
        }
        None
    }

    /// `AT+CUSD=<n>[,"<str>"[,<dcs>]]`: `2` closes the session, `1` with a
    /// string sends it (a code, or a reply while a menu is open). `OK`
    /// comes at once and the network's `+CUSD` a moment later, as on a
    /// real modem. The demo network's answers come in each form modems
    /// print them in (plain, plain over several lines, UCS-2 hex, packed
    /// and unpacked GSM-7 hex), so the driver reads every one.
    fn ussd(&mut self, args: &str) -> Option<Vec<Effect>> {
        let ok = write("\r\nOK\r\n");
        let (n, rest) = match args.split_once(',') {
            Some((n, rest)) => (n.trim(), Some(rest)),
            None => (args.trim(), None),
        };
        match (n, rest) {
            ("2", _) => {
                self.ussd = DemoMenu::Idle;
                return Some(vec![ok]);
            }
            ("0" | "1", None) => return Some(vec![ok]),
            ("1", Some(_)) => {}
            _ => return None,
        }
        let rest = rest?.trim();
        let input = rest.strip_prefix('"')?;
        let input = &input[..input.find('"')?];
        let is_code = self.ussd == DemoMenu::Idle;
        if is_code && input == SILENT_USSD_CODE {
            return Some(vec![ok]);
        }
        let line = match demo_network(&mut self.ussd, input, is_code) {
            None => "\r\n+CUSD: 4\r\n".to_owned(),
            Some((m, text)) => {
                let form = match (self.ussd, m) {
                    (DemoMenu::Bundles, _) => UssdForm::Ucs2Hex,
                    (_, 2) => UssdForm::UnpackedHex,
                    _ if text.ends_with("activated.") => UssdForm::PackedHex,
                    _ => UssdForm::Text,
                };
                let wire = encode_ussd(&text, form).unwrap_or(text);
                // A plain menu goes over several lines, as modems print it.
                let wire = wire.replace('\n', "\r\n");
                format!("\r\n+CUSD: {m},\"{wire}\",{}\r\n", ussd_dcs(form))
            }
        };
        Some(vec![ok, Effect::After(USSD_DELAY, Timer::Say { line })])
    }

    fn cgpsinfo(&self) -> String {
        match (self.gnss_on, self.fix) {
            (true, Some(fix)) => {
                let now = chrono::Utc::now();
                format!(
                    "{},{},{},{},{},{},{:.1},{:.1},{:.1}",
                    degrees_minutes(fix.latitude.abs(), 2),
                    if fix.latitude < 0.0 { "S" } else { "N" },
                    degrees_minutes(fix.longitude.abs(), 3),
                    if fix.longitude < 0.0 { "W" } else { "E" },
                    now.format("%d%m%y"),
                    now.format("%H%M%S.0"),
                    fix.altitude,
                    fix.speed / 1.852,
                    fix.course
                )
            }
            _ => ",,,,,,,,".into(),
        }
    }
}

/// Decimal degrees → ddmm.mmmmmm with `width` degree digits.
fn degrees_minutes(value: f64, width: usize) -> String {
    let degrees = value.trunc();
    let minutes = (value - degrees) * 60.0;
    format!("{:0width$}{:09.6}", degrees as u32, minutes, width = width)
}

#[cfg(test)]
mod tests {
    use super::degrees_minutes;

    #[test]
    fn degrees_are_written_as_the_modem_does() {
        assert_eq!(degrees_minutes(31.5, 2), "3130.000000");
        assert_eq!(degrees_minutes(121.25, 3), "12115.000000");
    }
}
