//! Service-centre time stamps (TS 23.040 §9.2.3.11): seven swapped
//! semi-octet pairs for year, month, day, hour, minute, second and time zone.
//!
//! The time zone is a signed count of quarter hours; its sign is bit 3 of the
//! octet, which after the swap is the top bit of the tens digit.

use super::error::PduError;
use super::reader::Reader;

/// Largest time zone offset the field can carry: the tens digit has only
/// three bits, so 79 quarter hours.
const MAX_TZ_QUARTERS: i8 = 79;

/// A time stamp as the service centre wrote it: local wall-clock time plus
/// the offset of that local time from UTC.
///
/// Decoding does not range-check the fields (a service centre with a broken
/// clock should not make the message undeliverable); use
/// [`SmsTimestamp::to_unix_seconds`], which returns `None` for impossible dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SmsTimestamp {
    /// Full year. The field holds two digits, read as 2000-2099.
    pub year: u16,
    /// Month, 1-12.
    pub month: u8,
    /// Day of month, 1-31.
    pub day: u8,
    /// Hour, 0-23.
    pub hour: u8,
    /// Minute, 0-59.
    pub minute: u8,
    /// Second, 0-59.
    pub second: u8,
    /// Offset of the local time from UTC in quarter hours (+4 = UTC+01:00).
    pub tz_quarters: i8,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`). `month` must be 1-12.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`]: (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // Both are small positive numbers by construction (1-31 and 1-12).
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u8) -> u8 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

impl SmsTimestamp {
    /// Converts to seconds since the Unix epoch (UTC), taking the time zone
    /// into account. `None` if any field is out of range (month 13, Feb 30,
    /// hour 24, ...).
    pub fn to_unix_seconds(&self) -> Option<i64> {
        let year = i64::from(self.year);
        if !(1..=12).contains(&self.month)
            || self.day == 0
            || self.day > days_in_month(year, self.month)
            || self.hour > 23
            || self.minute > 59
            || self.second > 59
            || self.tz_quarters.unsigned_abs() > MAX_TZ_QUARTERS.unsigned_abs()
        {
            return None;
        }
        let days = days_from_civil(year, u32::from(self.month), u32::from(self.day));
        let local = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        Some(local - i64::from(self.tz_quarters) * 15 * 60)
    }

    /// Builds the time stamp a service centre in zone `tz_quarters` would
    /// write for the Unix time `secs`. `None` if the local date falls outside
    /// 2000-2099 (the only years the field can carry) or the zone is beyond
    /// ±79 quarter hours.
    pub fn from_unix_seconds(secs: i64, tz_quarters: i8) -> Option<SmsTimestamp> {
        if tz_quarters.unsigned_abs() > MAX_TZ_QUARTERS.unsigned_abs() {
            return None;
        }
        let local = secs.checked_add(i64::from(tz_quarters) * 15 * 60)?;
        let (year, month, day) = civil_from_days(local.div_euclid(86_400));
        if !(2000..=2099).contains(&year) {
            return None;
        }
        let in_day = local.rem_euclid(86_400);
        // All narrowing casts below are of values already bounded:
        // year 2000-2099, month 1-12, day 1-31, hour < 24, minute/second < 60.
        Some(SmsTimestamp {
            year: year as u16,
            month: month as u8,
            day: day as u8,
            hour: (in_day / 3600) as u8,
            minute: (in_day / 60 % 60) as u8,
            second: (in_day % 60) as u8,
            tz_quarters,
        })
    }
}

/// Two decimal digits as a swapped semi-octet: units in the high nibble.
fn swapped_bcd(value: u8) -> u8 {
    ((value % 10) << 4) | (value / 10)
}

/// Reads a swapped semi-octet pair. Non-decimal nibbles are taken at face
/// value (so 0xA reads as ten) instead of failing; see [`SmsTimestamp`].
fn from_swapped_bcd(octet: u8) -> u8 {
    (octet & 0x0F) * 10 + (octet >> 4)
}

/// Reads a seven-octet time stamp field.
pub fn decode_timestamp(r: &mut Reader<'_>, field: &'static str) -> Result<SmsTimestamp, PduError> {
    let b = r.take(7, field)?;
    let mut digits = [0u8; 6];
    for (d, &octet) in digits.iter_mut().zip(b) {
        *d = from_swapped_bcd(octet);
    }
    let tz_octet = b.get(6).copied().unwrap_or(0);
    let magnitude = (tz_octet & 0x07) * 10 + (tz_octet >> 4);
    // magnitude <= 7 * 10 + 15 = 85, which fits in an i8.
    let magnitude = magnitude as i8;
    let tz_quarters = if tz_octet & 0x08 != 0 {
        -magnitude
    } else {
        magnitude
    };
    Ok(SmsTimestamp {
        year: 2000 + u16::from(digits[0]),
        month: digits[1],
        day: digits[2],
        hour: digits[3],
        minute: digits[4],
        second: digits[5],
        tz_quarters,
    })
}

/// Writes a seven-octet time stamp field. The fields need not form a real
/// date (so a received stamp can be re-sent as is), but each must fit in
/// two digits, the year in 2000-2099 and the zone in ±79 quarter hours.
pub fn encode_timestamp(ts: &SmsTimestamp, out: &mut Vec<u8>) -> Result<(), PduError> {
    if !(2000..=2099).contains(&ts.year) {
        return Err(PduError::ValueOutOfRange {
            field: "time stamp year",
            reason: format!("{} is not in 2000-2099", ts.year),
        });
    }
    let fields = [ts.month, ts.day, ts.hour, ts.minute, ts.second];
    if fields.iter().any(|&v| v > 99) {
        return Err(PduError::ValueOutOfRange {
            field: "time stamp",
            reason: format!("{ts:?} has a field above 99"),
        });
    }
    if ts.tz_quarters.unsigned_abs() > MAX_TZ_QUARTERS.unsigned_abs() {
        return Err(PduError::ValueOutOfRange {
            field: "time zone",
            reason: format!("{} quarter hours is beyond ±79", ts.tz_quarters),
        });
    }
    // The year check above bounds year - 2000 to 0-99.
    out.push(swapped_bcd((ts.year - 2000) as u8));
    for v in fields {
        out.push(swapped_bcd(v));
    }
    let mut tz = swapped_bcd(ts.tz_quarters.unsigned_abs());
    if ts.tz_quarters < 0 {
        tz |= 0x08;
    }
    out.push(tz);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;

    fn ts(hex: &[u8]) -> SmsTimestamp {
        decode_timestamp(&mut Reader::new(hex), "ts").unwrap()
    }

    #[test]
    fn decodes_positive_zone() {
        // 99 30 92 51 61 95 80 -> 99-03-29 15:16:59, zone "08" = +2h; the
        // example time stamp from the widely used PDU tutorial by Lars
        // Pettersson, re-derived here digit by digit. Year read as 2099.
        let t = ts(&[0x99, 0x30, 0x92, 0x51, 0x61, 0x95, 0x80]);
        assert_eq!(
            t,
            SmsTimestamp {
                year: 2099,
                month: 3,
                day: 29,
                hour: 15,
                minute: 16,
                second: 59,
                tz_quarters: 8
            }
        );
    }

    #[test]
    fn decodes_negative_zone() {
        // Zone octet 0x0A: low nibble 1010 = sign bit + tens 2, high nibble
        // units 0 -> -20 quarters = UTC-5.
        let t = ts(&[0x42, 0x10, 0x51, 0x21, 0x43, 0x65, 0x0A]);
        assert_eq!(t.tz_quarters, -20);
        assert_eq!((t.year, t.month, t.day), (2024, 1, 15));
        assert_eq!((t.hour, t.minute, t.second), (12, 34, 56));
        // 2024-01-15 12:34:56 at UTC-5 is 17:34:56 UTC = 1705340096
        // (`date -u -d '2024-01-15 17:34:56' +%s`).
        assert_eq!(t.to_unix_seconds(), Some(1_705_340_096));
        let mut out = Vec::new();
        encode_timestamp(&t, &mut out).unwrap();
        assert_eq!(out, [0x42, 0x10, 0x51, 0x21, 0x43, 0x65, 0x0A]);
    }

    #[test]
    fn unix_conversion_round_trips() {
        for &(secs, tz) in &[
            (946_684_800i64, 0i8), // 2000-01-01T00:00:00Z
            (1_709_210_096, 4),    // leap day 2024
            (4_102_444_799, -48),  // 2099-12-31T23:59:59Z at UTC-12
            (1_700_000_000, 79),
        ] {
            let t = SmsTimestamp::from_unix_seconds(secs, tz).unwrap();
            assert_eq!(t.to_unix_seconds(), Some(secs), "{t:?}");
            let mut out = Vec::new();
            encode_timestamp(&t, &mut out).unwrap();
            assert_eq!(ts(&out), t);
        }
        // 2024-02-29 is real; 2023-02-29 and 2100 are not.
        let leap = SmsTimestamp::from_unix_seconds(1_709_210_096, 4).unwrap();
        assert_eq!((leap.month, leap.day), (2, 29));
        assert_eq!(SmsTimestamp::from_unix_seconds(4_102_444_800, 0), None);
        assert_eq!(SmsTimestamp::from_unix_seconds(0, 0), None);
        assert_eq!(SmsTimestamp::from_unix_seconds(1_700_000_000, 80), None);
        // Extremes neither overflow nor panic.
        assert_eq!(SmsTimestamp::from_unix_seconds(i64::MAX, 79), None);
        assert_eq!(SmsTimestamp::from_unix_seconds(i64::MIN, -79), None);
        assert_eq!(SmsTimestamp::from_unix_seconds(0, i8::MIN), None);
    }

    #[test]
    fn impossible_dates_have_no_unix_time() {
        let good = SmsTimestamp::from_unix_seconds(1_700_000_000, 0).unwrap();
        for bad in [
            SmsTimestamp { month: 13, ..good },
            SmsTimestamp { month: 0, ..good },
            SmsTimestamp {
                year: 2023,
                month: 2,
                day: 29,
                ..good
            },
            SmsTimestamp { hour: 24, ..good },
            SmsTimestamp { second: 60, ..good },
        ] {
            assert_eq!(bad.to_unix_seconds(), None, "{bad:?}");
        }
        // Non-decimal digits decode without panicking, but make no date.
        let t = ts(&[0xFF; 7]);
        assert_eq!(t.to_unix_seconds(), None);
    }

    #[test]
    fn refuses_unencodable_values() {
        let good = SmsTimestamp::from_unix_seconds(1_700_000_000, 0).unwrap();
        let mut out = Vec::new();
        assert!(encode_timestamp(&SmsTimestamp { year: 1999, ..good }, &mut out).is_err());
        assert!(encode_timestamp(&SmsTimestamp { day: 100, ..good }, &mut out).is_err());
        assert!(encode_timestamp(
            &SmsTimestamp {
                tz_quarters: -80,
                ..good
            },
            &mut out
        )
        .is_err());
        assert!(out.is_empty());
    }
}
