//! The decoder's fast path: a top-level expression that has arrived whole is checked
//! in one pass over the borrowed bytes, split off the buffer once, and built from
//! slices of that one piece. Most messages are small and arrive whole; the
//! incremental path remains for the rest, and for every error, so that errors and
//! their offsets are the same whichever path meets the input first.

use super::{ty, Dialect, Element, Word};
use crate::{Integer, Limits};
use bytes::Bytes;

/// One element's header and where its body lies.
#[derive(Debug, Clone, Copy)]
pub(super) struct Header {
    type_byte: u8,
    /// The prefix digits: `start..prefix_end`.
    start: usize,
    prefix_end: usize,
    /// The prefix's value, saturated.
    value: u64,
    /// The end of the element's own bytes (its body, for a STRING or FLOAT).
    end: usize,
}

/// Reads the header at `pos` and checks it as the incremental decoder does. `None`:
/// incomplete, or against a rule or a limit.
fn header(input: &[u8], pos: usize, limits: &Limits, dialect: Dialect) -> Option<Header> {
    let mut i = pos;
    let mut value: u64 = 0;
    let mut shift = 0u32;
    while let Some(&b) = input.get(i) {
        if b >= 0x80 {
            break;
        }
        if i - pos >= limits.max_prefix_len {
            return None;
        }
        if shift < 64 {
            value = value.saturating_add(u64::from(b).checked_shl(shift).unwrap_or(u64::MAX));
            if u64::from(b) > (u64::MAX >> shift) {
                value = u64::MAX;
            }
        } else if b != 0 {
            value = u64::MAX;
        }
        shift = shift.saturating_add(7);
        i += 1;
    }
    let type_byte = *input.get(i)?;
    let prefix_end = i;
    let mut end = i + 1;
    match type_byte {
        ty::LIST if value > limits.max_list_len as u64 => return None,
        ty::STRING => {
            if value > limits.max_string_len as u64 {
                return None;
            }
            end = end.checked_add(value as usize)?;
        }
        ty::FLOAT => end += 8,
        ty::VOCAB if dialect != Dialect::Pb || Word::from_index(value).is_none() => return None,
        ty::LIST | ty::INT | ty::NEG | ty::LONGINT | ty::LONGNEG | ty::VOCAB => {}
        _ => return None,
    }
    (end <= input.len()).then_some(Header {
        type_byte,
        start: pos,
        prefix_end,
        value,
        end,
    })
}

/// The length in bytes and the element count of the complete expression at the
/// front of `input`, if it is whole and within every limit. `stack` is scratch space
/// (kept by the caller to avoid an allocation per message).
pub(super) fn scan(
    input: &[u8],
    limits: &Limits,
    dialect: Dialect,
    stack: &mut Vec<u64>,
    tape: &mut Vec<Header>,
) -> Option<(usize, usize)> {
    stack.clear();
    tape.clear();
    let mut pos = 0;
    let mut elements = 0usize;
    loop {
        let h = header(input, pos, limits, dialect)?;
        if h.end > limits.max_message_bytes || elements >= limits.max_message_elements {
            return None;
        }
        elements += 1;
        pos = h.end;
        tape.push(h);
        if h.type_byte == ty::LIST {
            // Even an empty list counts as a level, as in the incremental path.
            if stack.len() >= limits.depth() {
                return None;
            }
            if h.value > 0 {
                stack.push(h.value);
                continue;
            }
        }
        // An element is complete, and with it every list it completes.
        loop {
            let Some(top) = stack.last_mut() else {
                return Some((pos, elements));
            };
            *top -= 1;
            if *top > 0 {
                break;
            }
            stack.pop();
        }
    }
}

/// Builds the expression whose headers [`scan`] put on `tape`; `bytes` is exactly
/// its bytes. `None` only if they do not belong together.
pub(super) fn build(bytes: &Bytes, tape: &[Header]) -> Option<Element> {
    let mut open: Vec<(u64, Vec<Element>)> = Vec::new();
    for h in tape {
        let digits = bytes.get(h.start..h.prefix_end)?;
        let mut element = match h.type_byte {
            ty::LIST if h.value > 0 => {
                // The scan saw every element of the list, so its count is exact.
                open.push((h.value, Vec::with_capacity(h.value as usize)));
                continue;
            }
            ty::LIST => Element::List(Vec::new()),
            ty::INT | ty::LONGINT => Element::Int(Integer::from_base128(false, digits)),
            ty::NEG | ty::LONGNEG => Element::Int(Integer::from_base128(true, digits)),
            ty::FLOAT => {
                let body: [u8; 8] = bytes.get(h.prefix_end + 1..h.end)?.try_into().ok()?;
                Element::Float(f64::from_be_bytes(body))
            }
            ty::VOCAB => Element::Vocab(Word::from_index(h.value)?),
            _ => Element::Bytes(bytes.slice(h.prefix_end + 1..h.end)),
        };
        loop {
            let Some((remaining, items)) = open.last_mut() else {
                return Some(element);
            };
            items.push(element);
            *remaining -= 1;
            if *remaining > 0 {
                break;
            }
            let (_, items) = open.pop()?;
            element = Element::List(items);
        }
    }
    None
}
