//! Reassembly of inbound multipart messages, as pure functions over the
//! parts received so far: which message a part belongs to, whether it is a
//! repeat, whether it completes its message, the text of the whole, and
//! which messages have waited too long for their missing parts.
//!
//! The driver (`inbound.rs`) commits a part to the store before it counts
//! here; what these functions look at mirrors the store's inbound parts.
//!
//! The text of the whole is decoded from the parts' septets or code units
//! joined (see [`PartText`]), not from their decoded texts joined, so a
//! character a sender split between two parts arrives whole.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::{modem::pdu::PartText, store::InboundPartRow};

/// Key of an inbound multipart message: sender, reference, total.
pub(super) type PartsKey = (String, u32, u32);

/// The parts received so far, per message.
pub(super) type Partials = BTreeMap<PartsKey, Vec<InboundPartRow>>;

/// Groups parts (as loaded from the store) by the message they belong to.
pub(super) fn group(rows: impl IntoIterator<Item = InboundPartRow>) -> Partials {
    let mut partials: Partials = BTreeMap::new();
    for row in rows {
        partials
            .entry((row.sender.clone(), row.reference, row.total))
            .or_default()
            .push(row);
    }
    partials
}

/// Whether part `sequence` is already among `have`.
pub(super) fn is_repeat(have: &[InboundPartRow], sequence: u32) -> bool {
    have.iter().any(|p| p.sequence == sequence)
}

/// Whether one more part, added to `have`, makes all `total` parts.
pub(super) fn completes(have: &[InboundPartRow], total: u32) -> bool {
    have.len() + 1 == total as usize
}

/// Puts `parts` in sequence order and joins their text. Also gives the
/// earliest send time among them (`None` when there are no parts).
///
/// Consecutive parts are joined as units and decoded once; across a gap
/// (a part that never came) or a part kept only as text (stored before
/// units were, or 8-bit data), the decoded texts are put side by side.
pub(super) fn join(parts: &mut [InboundPartRow]) -> (String, Option<i64>) {
    parts.sort_by_key(|p| p.sequence);
    let mut content = String::new();
    // Units of consecutive parts not decoded yet, and the last sequence.
    let mut run: Vec<PartText> = Vec::new();
    let mut last: Option<u32> = None;
    let flush = |run: &mut Vec<PartText>, content: &mut String| {
        if let Some(joined) = PartText::join(run.iter()) {
            content.push_str(&joined.decode());
        } else {
            // Mixed alphabets: each part's own decoding.
            run.iter().for_each(|part| content.push_str(&part.decode()));
        }
        run.clear();
    };
    for part in parts.iter() {
        let consecutive = last.is_some_and(|last| part.sequence == last + 1);
        if !consecutive {
            flush(&mut run, &mut content);
        }
        match part.raw.as_deref().and_then(PartText::from_stored) {
            Some(units) => run.push(units),
            None => {
                flush(&mut run, &mut content);
                content.push_str(&part.content);
            }
        }
        last = Some(part.sequence);
    }
    flush(&mut run, &mut content);
    let first_sent = parts.iter().map(|p| p.sent_at).min();
    (content, first_sent)
}

/// The messages whose first part arrived `limit` or more before `now`.
pub(super) fn expired(
    partials: &Partials,
    now: DateTime<Utc>,
    limit: chrono::Duration,
) -> Vec<PartsKey> {
    partials
        .iter()
        .filter(|(_, parts)| {
            parts
                .iter()
                .map(|p| p.received_at)
                .min()
                .is_some_and(|first| now - first >= limit)
        })
        .map(|(key, _)| key.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::InstanceName;

    fn part(
        sender: &str,
        reference: u32,
        total: u32,
        sequence: u32,
        content: &str,
        sent_at: i64,
        received_at: DateTime<Utc>,
    ) -> InboundPartRow {
        InboundPartRow {
            instance: InstanceName::parse("alpha").expect("a valid name"),
            sender: sender.to_owned(),
            reference,
            total,
            sequence,
            content: content.to_owned(),
            raw: None,
            sent_at,
            received_at,
        }
    }

    /// A part as the driver stores it: its text and its units.
    fn units(sequence: u32, total: u32, raw: PartText) -> InboundPartRow {
        InboundPartRow {
            raw: Some(raw.to_stored()),
            ..part("+1555", 9, total, sequence, &raw.decode(), 10, Utc::now())
        }
    }

    #[test]
    fn a_character_split_between_two_parts_is_joined_before_it_is_decoded() {
        let utf16: Vec<u16> = "Hi 😀 there".encode_utf16().collect();
        let (a, b) = utf16.split_at(4); // "Hi " and the high surrogate
        let mut parts = vec![
            units(2, 2, PartText::Utf16(b.to_vec())),
            units(1, 2, PartText::Utf16(a.to_vec())),
        ];
        assert_eq!(join(&mut parts).0, "Hi 😀 there");

        let septets = crate::modem::pdu::PartText::Septets(vec![0x35, 0x1B]);
        let rest = PartText::Septets(vec![0x65, 0x20, 0x61]);
        let mut parts = vec![units(1, 2, septets), units(2, 2, rest)];
        assert_eq!(join(&mut parts).0, "5€ a");
    }

    #[test]
    fn across_a_missing_part_or_a_part_without_units_texts_are_put_side_by_side() {
        let emoji: Vec<u16> = "😀".encode_utf16().collect();
        // Part 2 never came: the high surrogate of part 1 must not pair with
        // the low surrogate that opens part 3.
        let mut parts = vec![
            units(1, 3, PartText::Utf16(vec![0x41, emoji[0]])),
            units(3, 3, PartText::Utf16(vec![emoji[1], 0x42])),
        ];
        assert_eq!(join(&mut parts).0, "A\u{FFFD}\u{FFFD}B");
        // A part kept as text only (stored before units were) keeps its text.
        let mut parts = vec![
            units(1, 3, PartText::Septets(vec![0x41])),
            part("+1555", 9, 3, 2, "old", 10, Utc::now()),
            units(3, 3, PartText::Septets(vec![0x42])),
        ];
        assert_eq!(join(&mut parts).0, "AoldB");
    }

    #[test]
    fn parts_are_grouped_by_sender_reference_and_total() {
        let now = Utc::now();
        let partials = group([
            part("+1555", 7, 2, 2, "b", 10, now),
            part("+1555", 7, 3, 1, "x", 10, now),
            part("+1666", 7, 2, 1, "y", 10, now),
            part("+1555", 7, 2, 1, "a", 10, now),
        ]);
        assert_eq!(partials.len(), 3);
        let both = &partials[&("+1555".to_owned(), 7, 2)];
        assert_eq!(both.iter().map(|p| p.sequence).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(partials[&("+1555".to_owned(), 7, 3)].len(), 1);
        assert_eq!(partials[&("+1666".to_owned(), 7, 2)].len(), 1);
    }

    #[test]
    fn a_part_seen_before_is_a_repeat() {
        let now = Utc::now();
        let have = [part("+1555", 7, 3, 2, "b", 10, now)];
        assert!(is_repeat(&have, 2));
        assert!(!is_repeat(&have, 1));
        assert!(!is_repeat(&[], 1));
    }

    #[test]
    fn the_last_missing_part_completes_the_message() {
        let now = Utc::now();
        let one = [part("+1555", 7, 3, 2, "b", 10, now)];
        let two = [
            part("+1555", 7, 3, 2, "b", 10, now),
            part("+1555", 7, 3, 3, "c", 10, now),
        ];
        assert!(!completes(&[], 3));
        assert!(!completes(&one, 3));
        assert!(completes(&two, 3));
        assert!(completes(&[], 1));
    }

    #[test]
    fn parts_join_in_sequence_order_with_the_earliest_send_time() {
        let now = Utc::now();
        let mut parts = vec![
            part("+1555", 7, 3, 3, "lo!", 30, now),
            part("+1555", 7, 3, 1, "Hel", 20, now),
            part("+1555", 7, 3, 2, "lo, hel", 25, now),
        ];
        assert_eq!(join(&mut parts), ("Hello, hello!".to_owned(), Some(20)));
        assert_eq!(
            parts.iter().map(|p| p.sequence).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(join(&mut []), (String::new(), None));
    }

    #[test]
    fn a_message_expires_when_its_first_part_is_old_enough() {
        let now = Utc::now();
        let limit = chrono::Duration::seconds(60);
        let partials = group([
            // First part 90 s ago, a later one just now: expired.
            part(
                "+1555",
                1,
                3,
                1,
                "a",
                10,
                now - chrono::Duration::seconds(90),
            ),
            part("+1555", 1, 3, 2, "b", 10, now),
            // Exactly at the limit: expired.
            part("+1666", 2, 2, 1, "c", 10, now - limit),
            // Recent: kept waiting.
            part(
                "+1777",
                3,
                2,
                1,
                "d",
                10,
                now - chrono::Duration::seconds(5),
            ),
        ]);
        assert_eq!(
            expired(&partials, now, limit),
            [("+1555".to_owned(), 1, 3), ("+1666".to_owned(), 2, 2)]
        );
        assert!(expired(&Partials::new(), now, limit).is_empty());
    }
}
