//! Values inside AT responses: signal, registration, operator, stored
//! messages, message references, caller ids, GNSS fixes, and readable
//! reasons for `+CMS ERROR` codes.
//!
//! Every parser takes the text after the `+XXX:` prefix (or the lines of a
//! response) and returns `None` for anything it does not understand; none
//! of them can panic, whatever the modem sent.

use chrono::{NaiveDate, NaiveTime};

/// Splits a parameter list on commas that are not inside quotes, trims each
/// field and removes its quotes.
pub fn fields(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut current).trim().to_owned()),
            c => current.push(c),
        }
    }
    out.push(current.trim().to_owned());
    out
}

/// The rest of the first line that starts with `prefix`, trimmed.
pub fn info<'a>(lines: &'a [String], prefix: &str) -> Option<&'a str> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .map(str::trim)
}

/// `+CSQ: <rssi>,<ber>` → dBm (TS 27.007: 0 is -113 dBm or less, 31 is -51
/// or more, 2 dB a step; 99 is "not known").
pub fn csq_dbm(rest: &str) -> Option<i32> {
    let rssi: i32 = fields(rest).first()?.parse().ok()?;
    match rssi {
        0..=31 => Some(-113 + 2 * rssi),
        _ => None,
    }
}

/// The registration status in `+CREG`/`+CEREG`, as URC (`<stat>[,<lac>,<ci>
/// [,<act>]]`) or as the answer to a query (`<n>,<stat>[,...]`). The two are
/// told apart by the second field: quoted location in the URC, a bare
/// status in the answer.
pub fn registration_stat(rest: &str) -> Option<u8> {
    let raw: Vec<&str> = rest.split(',').map(str::trim).collect();
    let pick = match raw.as_slice() {
        [stat] => stat,
        [_, second, ..] if second.starts_with('"') => raw.first()?,
        [_, stat, ..] => stat,
        [] => return None,
    };
    pick.parse().ok().filter(|s| *s <= 10)
}

/// What a registration status means, in the words of `ConnectionInfo`.
pub fn registration_name(stat: u8) -> &'static str {
    match stat {
        1 | 6 | 9 => "home",
        5 | 7 | 10 => "roaming",
        2 => "searching",
        3 => "denied",
        0 => "not_registered",
        _ => "unknown",
    }
}

/// `+COPS: <mode>[,<format>,<oper>[,<act>]]` → the operator's name.
pub fn operator(rest: &str) -> Option<String> {
    fields(rest)
        .into_iter()
        .nth(2)
        .filter(|name| !name.is_empty())
}

/// `+CMGS: <mr>` → the message reference the network will report on.
pub fn message_reference(rest: &str) -> Option<u8> {
    let mr: u32 = fields(rest).first()?.parse().ok()?;
    Some((mr % 256) as u8)
}

/// `+CUSD: <m>[,"<text>"[,<dcs>]]` → `m`, the text as printed and the
/// DCS. The text runs to the last quote of the line, so quotes and commas
/// inside it (networks put both in menus) stay part of it.
pub fn cusd(rest: &str) -> Option<(u8, Option<String>, Option<u8>)> {
    let rest = rest.trim();
    let (m, after) = match rest.split_once(',') {
        Some((m, after)) => (m, Some(after.trim())),
        None => (rest, None),
    };
    let m: u8 = m.trim().parse().ok().filter(|m| *m <= 5)?;
    let Some(after) = after else {
        return Some((m, None, None));
    };
    let (text, dcs) = match after.strip_prefix('"') {
        Some(quoted) => {
            let end = quoted.rfind('"')?;
            let dcs = quoted[end + 1..].trim().trim_start_matches(',').trim();
            (Some(quoted[..end].to_owned()), dcs)
        }
        // Some modems leave the quotes out.
        None => match after.rsplit_once(',') {
            Some((text, dcs)) => (Some(text.trim().to_owned()), dcs.trim()),
            None => (Some(after.to_owned()), ""),
        },
    };
    let dcs = if dcs.is_empty() {
        None
    } else {
        Some(dcs.parse().ok()?)
    };
    Some((m, text, dcs))
}

/// `+CNUM: [<alpha>],<number>,<type>` → the number.
pub fn own_number(rest: &str) -> Option<String> {
    fields(rest).into_iter().nth(1).filter(|n| !n.is_empty())
}

/// `+CSMS: <service>,<mt>,<mo>,<bm>` → whether `+CMT`/`+CDS` must be
/// acknowledged with `+CNMA` (service 1, "phase 2+").
pub fn needs_ack(rest: &str) -> bool {
    fields(rest).first().is_some_and(|s| s == "1")
}

/// A message in modem storage, from `+CMGL` or `+CMGR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPdu {
    pub index: u32,
    /// 0 received unread, 1 received read, 2 stored unsent, 3 stored sent.
    pub stat: u8,
    pub pdu: String,
}

/// The entries of an `AT+CMGL` answer: each `+CMGL: <index>,...` line is
/// followed by its PDU line. Entries without a PDU line are skipped.
pub fn listed(lines: &[String]) -> Vec<StoredPdu> {
    let mut out = Vec::new();
    let mut pending: Option<(u32, u8)> = None;
    for line in lines {
        if let Some(rest) = line.strip_prefix("+CMGL:") {
            let f = fields(rest);
            pending = f
                .first()
                .and_then(|i| i.parse().ok())
                .map(|index| (index, f.get(1).and_then(|s| s.parse().ok()).unwrap_or(0)));
        } else if let Some((index, stat)) = pending.take() {
            out.push(StoredPdu {
                index,
                stat,
                pdu: line.clone(),
            });
        }
    }
    out
}

/// The PDU of an `AT+CMGR` answer (the line after `+CMGR:`); `None` for an
/// empty slot.
pub fn read_pdu(lines: &[String]) -> Option<String> {
    let at = lines.iter().position(|l| l.starts_with("+CMGR:"))?;
    lines.get(at + 1).filter(|l| !l.is_empty()).cloned()
}

/// A readable reason for `+CMS ERROR: <code>` (TS 27.005 §3.2.5, and the
/// network's RP causes of TS 24.011 that modems pass through).
pub fn cms_reason(code: u16) -> &'static str {
    match code {
        1 => "unassigned (unallocated) number",
        8 => "operator determined barring",
        10 => "call barred",
        21 => "short message transfer rejected",
        27 => "destination out of service",
        28 => "unidentified subscriber",
        29 => "facility rejected",
        30 => "unknown subscriber",
        38 => "network out of order",
        41 => "temporary failure",
        42 => "congestion",
        47 => "resources unavailable",
        50 => "requested facility not subscribed",
        69 => "requested facility not implemented",
        81 => "invalid short message transfer reference value",
        95 => "invalid message",
        96 => "invalid mandatory information",
        97 => "message type non-existent or not implemented",
        111 => "protocol error",
        127 => "interworking error",
        128..=255 => "the network rejected the message (TP failure)",
        300 => "modem failure",
        301 => "SMS service of the modem reserved",
        302 => "operation not allowed",
        303 => "operation not supported",
        304 => "invalid PDU mode parameter",
        305 => "invalid text mode parameter",
        310 => "SIM not inserted",
        311 => "SIM PIN required",
        312 => "PH-SIM PIN required",
        313 => "SIM failure",
        314 => "SIM busy",
        315 => "SIM wrong",
        316 => "SIM PUK required",
        317 => "SIM PIN2 required",
        318 => "SIM PUK2 required",
        320 => "memory failure",
        321 => "invalid memory index",
        322 => "memory full",
        330 => "SMSC address unknown",
        331 => "no network service",
        332 => "network timeout",
        340 => "no +CNMA acknowledgement expected",
        500 => "unknown error",
        512..=u16::MAX => "manufacturer-specific error",
        _ => "unrecognized error",
    }
}

/// Whether sending again can help after `+CMS ERROR: <code>`: network
/// congestion and timeouts can pass; a barred or unknown number cannot.
pub fn cms_is_permanent(code: u16) -> bool {
    matches!(
        code,
        1 | 8 | 10 | 21 | 28 | 29 | 30 | 50 | 69 | 95..=97 | 304 | 305 | 310 | 313 | 315 | 316
    )
}

/// A GNSS fix.
#[derive(Debug, Clone, PartialEq)]
pub struct Fix {
    pub latitude: f64,
    pub longitude: f64,
    pub altitude: Option<f64>,
    /// km/h.
    pub speed: Option<f64>,
    pub course: Option<f64>,
    pub satellites: Option<u32>,
    /// Unix seconds (UTC), when the modem gave date and time.
    pub timestamp: Option<i64>,
}

/// SIMCom `+CGPSINFO: <lat>,<N/S>,<lon>,<E/W>,<date>,<UTC time>,<alt>,
/// <speed knots>,<course>`, with latitude as ddmm.mmmm and longitude as
/// dddmm.mmmm. All-empty fields mean "no fix yet": `None`.
pub fn cgpsinfo(rest: &str) -> Option<Fix> {
    let f = fields(rest);
    let get = |i: usize| f.get(i).map(String::as_str).unwrap_or("");
    let lat = degrees_minutes(get(0))? * hemisphere(get(1), "S")?;
    let lon = degrees_minutes(get(2))? * hemisphere(get(3), "W")?;
    Some(Fix {
        latitude: lat,
        longitude: lon,
        altitude: get(6).parse().ok().filter(|v: &f64| v.is_finite()),
        speed: get(7)
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(|knots| knots * 1.852),
        course: get(8).parse().ok().filter(|v: &f64| v.is_finite()),
        satellites: None,
        timestamp: utc(get(4), get(5)),
    })
    .filter(|fix| valid_position(fix.latitude, fix.longitude))
}

/// Quectel `+QGPSLOC: <UTC>,<lat>,<lon>,<hdop>,<alt>,<fix>,<cog>,<spkm>,
/// <spkn>,<date>,<nsat>` in mode 2 (signed decimal degrees).
pub fn qgpsloc(rest: &str) -> Option<Fix> {
    let f = fields(rest);
    let get = |i: usize| f.get(i).map(String::as_str).unwrap_or("");
    let latitude: f64 = get(1).parse().ok()?;
    let longitude: f64 = get(2).parse().ok()?;
    if !valid_position(latitude, longitude) {
        return None;
    }
    Some(Fix {
        latitude,
        longitude,
        altitude: get(4).parse().ok().filter(|v: &f64| v.is_finite()),
        speed: get(7).parse().ok().filter(|v: &f64| v.is_finite()),
        course: get(6).parse().ok().filter(|v: &f64| v.is_finite()),
        satellites: get(10).parse().ok(),
        timestamp: utc(get(9), get(0)),
    })
}

fn valid_position(lat: f64, lon: f64) -> bool {
    lat.is_finite() && lon.is_finite() && lat.abs() <= 90.0 && lon.abs() <= 180.0
}

/// ddmm.mmmm (or dddmm.mmmm) → decimal degrees.
fn degrees_minutes(text: &str) -> Option<f64> {
    let value: f64 = text.parse().ok()?;
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let degrees = (value / 100.0).trunc();
    let minutes = value - degrees * 100.0;
    Some(degrees + minutes / 60.0)
}

fn hemisphere(text: &str, negative: &str) -> Option<f64> {
    match text {
        t if t == negative => Some(-1.0),
        "N" | "E" => Some(1.0),
        _ => None,
    }
}

/// ddmmyy and hhmmss(.s) → Unix seconds.
fn utc(date: &str, time: &str) -> Option<i64> {
    let date = NaiveDate::parse_from_str(date, "%d%m%y").ok()?;
    let whole = time.split('.').next()?;
    let time = NaiveTime::parse_from_str(whole, "%H%M%S").ok()?;
    Some(date.and_time(time).and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn fields_respect_quotes() {
        assert_eq!(
            fields(" \"a,b\", 3 ,,\"\""),
            ["a,b", "3", "", ""].map(String::from)
        );
    }

    #[test]
    fn ussd_answers_are_split_into_status_text_and_scheme() {
        assert_eq!(
            cusd("0,\"Balance: 1,50\",15"),
            Some((0, Some("Balance: 1,50".into()), Some(15)))
        );
        assert_eq!(cusd("2"), Some((2, None, None)));
        assert_eq!(
            cusd("1,\"Pick one\""),
            Some((1, Some("Pick one".into()), None))
        );
        assert_eq!(
            cusd("0,Plain,15"),
            Some((0, Some("Plain".into()), Some(15)))
        );
        for junk in ["", "9", "x,\"a\"", "0,\"open", "0,\"a\",dcs"] {
            assert_eq!(cusd(junk), None, "{junk}");
        }
    }

    #[test]
    fn signal_is_converted_to_dbm() {
        assert_eq!(csq_dbm("0,99"), Some(-113));
        assert_eq!(csq_dbm("20,0"), Some(-73));
        assert_eq!(csq_dbm("31,99"), Some(-51));
        assert_eq!(csq_dbm("99,99"), None);
        assert_eq!(csq_dbm("x"), None);
    }

    #[test]
    fn registration_reads_both_shapes() {
        assert_eq!(registration_stat("1,5"), Some(5));
        assert_eq!(registration_stat("5"), Some(5));
        assert_eq!(registration_stat("2,1,\"00C3\",\"0000B1F2\",7"), Some(1));
        assert_eq!(registration_stat("1,\"00C3\",\"0000B1F2\""), Some(1));
        assert_eq!(registration_stat(""), None);
        assert_eq!(registration_name(5), "roaming");
        assert_eq!(registration_name(1), "home");
    }

    #[test]
    fn operator_reference_and_number() {
        assert_eq!(
            operator("0,0,\"Vodafone DE\",7").as_deref(),
            Some("Vodafone DE")
        );
        assert_eq!(operator("0"), None);
        assert_eq!(message_reference("17"), Some(17));
        assert_eq!(message_reference("300"), Some(44));
        assert_eq!(
            own_number("\"\",\"+15550001000\",145").as_deref(),
            Some("+15550001000")
        );
    }

    #[test]
    fn stored_messages_are_listed_and_read() {
        let list = lines(&[
            "+CMGL: 1,0,,23",
            "0791AA",
            "+CMGL: 4,1,,20",
            "0791BB",
            "+CMGL: 5,1,,20",
        ]);
        assert_eq!(
            listed(&list),
            [
                StoredPdu {
                    index: 1,
                    stat: 0,
                    pdu: "0791AA".into()
                },
                StoredPdu {
                    index: 4,
                    stat: 1,
                    pdu: "0791BB".into()
                }
            ]
        );
        assert_eq!(
            read_pdu(&lines(&["+CMGR: 0,,23", "0791AA"])).as_deref(),
            Some("0791AA")
        );
        assert_eq!(read_pdu(&lines(&["+CMGR: 0,,0"])), None);
    }

    #[test]
    fn cms_errors_have_reasons() {
        assert_eq!(cms_reason(500), "unknown error");
        assert_eq!(cms_reason(42), "congestion");
        assert!(cms_is_permanent(1));
        assert!(!cms_is_permanent(42));
    }

    #[test]
    fn simcom_fixes_are_parsed_and_no_fix_is_none() {
        let fix =
            cgpsinfo("3113.343286,N,12121.234064,E,250311,072809.3,44.1,10.0,90.5").expect("a fix");
        assert!((fix.latitude - 31.222388).abs() < 1e-5);
        assert!((fix.longitude - 121.353901).abs() < 1e-5);
        assert_eq!(fix.altitude, Some(44.1));
        assert!((fix.speed.expect("speed") - 18.52).abs() < 1e-9);
        assert_eq!(fix.timestamp, Some(1301038089));
        assert_eq!(cgpsinfo(",,,,,,,,"), None);
        let south = cgpsinfo("3352.0,S,15112.0,W,,,,,").expect("a fix");
        assert!(south.latitude < 0.0 && south.longitude < 0.0);
    }

    #[test]
    fn quectel_fixes_are_parsed() {
        let fix = qgpsloc("061951.000,31.16576,121.38342,0.8,66.9,3,0.00,1.2,0.6,150521,07")
            .expect("a fix");
        assert_eq!(fix.latitude, 31.16576);
        assert_eq!(fix.satellites, Some(7));
        assert_eq!(fix.speed, Some(1.2));
        assert_eq!(qgpsloc("garbage"), None);
    }
}
