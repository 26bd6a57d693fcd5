//! TP-Data-Coding-Scheme (TS 23.038 §4): which alphabet the user data uses.
//!
//! Only the alphabet matters to the bridge; message classes, compression
//! flags' other meanings and message-waiting indications are read past.

/// Character set of a message's user data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alphabet {
    /// GSM 7-bit default alphabet with its extension table, septet-packed.
    Gsm7,
    /// UCS-2, in practice UTF-16 big-endian (surrogate pairs allowed).
    Ucs2,
    /// 8-bit binary data (or compressed data, which this codec does not expand).
    Data8,
}

impl Alphabet {
    /// The DCS octet this codec writes for the alphabet: class-less,
    /// uncompressed general data coding (group 00xx).
    pub fn dcs(self) -> u8 {
        match self {
            Alphabet::Gsm7 => 0x00,
            Alphabet::Data8 => 0x04,
            Alphabet::Ucs2 => 0x08,
        }
    }

    /// Reads the alphabet out of a received DCS octet. Every value maps to
    /// something: reserved values fall back to GSM-7 as §4 prescribes, and
    /// compressed text, which we cannot expand, is surfaced as 8-bit data.
    pub fn from_dcs(dcs: u8) -> Alphabet {
        match dcs >> 4 {
            // 00xx general data coding / 01xx marked for automatic deletion:
            // bit 5 = compressed, bit 4 = class present, bits 3..2 = alphabet.
            0x0..=0x7 => {
                if dcs & 0x20 != 0 {
                    return Alphabet::Data8;
                }
                match (dcs >> 2) & 0x03 {
                    0b01 => Alphabet::Data8,
                    0b10 => Alphabet::Ucs2,
                    // 0b00 is GSM-7; 0b11 is reserved, read as GSM-7.
                    _ => Alphabet::Gsm7,
                }
            }
            // 1000..1011 reserved coding groups.
            0x8..=0xB => Alphabet::Gsm7,
            // Message waiting indication, discard / store: GSM-7 text.
            0xC | 0xD => Alphabet::Gsm7,
            // Message waiting indication, store, UCS-2 text.
            0xE => Alphabet::Ucs2,
            // 1111 data coding / message class: bit 2 selects 8-bit data.
            _ => {
                if dcs & 0x04 != 0 {
                    Alphabet::Data8
                } else {
                    Alphabet::Gsm7
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn general_coding_group() {
        assert_eq!(Alphabet::from_dcs(0x00), Alphabet::Gsm7);
        assert_eq!(Alphabet::from_dcs(0x04), Alphabet::Data8);
        assert_eq!(Alphabet::from_dcs(0x08), Alphabet::Ucs2);
        // Reserved alphabet value.
        assert_eq!(Alphabet::from_dcs(0x0C), Alphabet::Gsm7);
        // Class bits are ignored: 0x10 = GSM-7 class 0 (flash), 0x18 = UCS-2 class 0.
        assert_eq!(Alphabet::from_dcs(0x10), Alphabet::Gsm7);
        assert_eq!(Alphabet::from_dcs(0x18), Alphabet::Ucs2);
        assert_eq!(Alphabet::from_dcs(0x19), Alphabet::Ucs2);
        // Compressed.
        assert_eq!(Alphabet::from_dcs(0x20), Alphabet::Data8);
        // Automatic deletion group.
        assert_eq!(Alphabet::from_dcs(0x48), Alphabet::Ucs2);
    }

    #[test]
    fn other_groups() {
        assert_eq!(Alphabet::from_dcs(0x80), Alphabet::Gsm7);
        assert_eq!(Alphabet::from_dcs(0xC0), Alphabet::Gsm7);
        assert_eq!(Alphabet::from_dcs(0xD8), Alphabet::Gsm7);
        assert_eq!(Alphabet::from_dcs(0xE8), Alphabet::Ucs2);
        assert_eq!(Alphabet::from_dcs(0xF0), Alphabet::Gsm7);
        assert_eq!(Alphabet::from_dcs(0xF5), Alphabet::Data8);
    }

    #[test]
    fn written_values_read_back() {
        for a in [Alphabet::Gsm7, Alphabet::Ucs2, Alphabet::Data8] {
            assert_eq!(Alphabet::from_dcs(a.dcs()), a);
        }
    }
}
