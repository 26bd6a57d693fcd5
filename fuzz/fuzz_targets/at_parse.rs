//! Fuzz target: whatever bytes a modem sends, the AT framing, the line and
//! URC classifier and every response parser return values, never panic.
//! The first input octet picks how the bytes are split into reads (the
//! framer must give the same frames however the stream is cut); the rest
//! is the stream. The simulated modem's command interpreter gets the same
//! bytes as host input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::modem::at::{classify, parse, Frame, Framer};
use switchboard::tools::modem_sim::{Device, SimSettings};

const PREFIXES: &[&str] = &["", "+CSQ:", "+CREG:", "+CMGL:", "+CMGR:", "+CMGS:", "+COPS:"];

fn frames(chunks: impl Iterator<Item = Vec<u8>>) -> Vec<Frame> {
    let mut framer = Framer::new();
    let mut out = Vec::new();
    for chunk in chunks {
        framer.push(&chunk);
        while let Some(frame) = framer.next_frame() {
            out.push(frame);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(split % 17) + 1;
    let whole = frames(std::iter::once(stream.to_vec()));
    let pieces = frames(stream.chunks(step).map(<[u8]>::to_vec));
    // Cutting the stream elsewhere may only change where a lone ">" (a
    // prompt whose space had not arrived) falls, never the lines.
    let lines = |f: &[Frame]| -> Vec<String> {
        f.iter()
            .filter_map(|f| match f {
                Frame::Line(l) => Some(l.clone()),
                Frame::Prompt => None,
            })
            .collect()
    };
    if !stream.contains(&b'>') {
        assert_eq!(lines(&whole), lines(&pieces));
    }
    let text: Vec<String> = lines(&whole);
    for line in &text {
        assert!(line.len() <= 3 * switchboard::modem::at::frame::MAX_LINE);
        for prefix in PREFIXES {
            let _ = classify(line, prefix);
        }
        let rest = line.split_once(':').map_or(line.as_str(), |(_, r)| r);
        let _ = parse::fields(rest);
        let _ = parse::csq_dbm(rest);
        let _ = parse::registration_stat(rest).map(parse::registration_name);
        let _ = parse::operator(rest);
        let _ = parse::message_reference(rest);
        let _ = parse::own_number(rest);
        let _ = parse::cgpsinfo(rest);
        let _ = parse::qgpsloc(rest);
    }
    let _ = parse::listed(&text);
    let _ = parse::read_pdu(&text);
    let mut device = Device::new(SimSettings::default());
    let _ = device.input(stream);
});
