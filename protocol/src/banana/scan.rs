//! The scanner: reads one top-level expression's headers into a flat tape of
//! [`Node`]s, checking every limit as soon as a header declares a size. It stops
//! where the input runs out and resumes there when more arrives, so each header is
//! read once (an incomplete element's header again); nothing is consumed until the
//! expression is complete.

use super::tape::Node;
use super::{ty, DecodeErrorKind, Dialect, Word};
use crate::Limits;

/// Offsets on the tape are `u32`; no expression may be larger than this.
const MAX_EXPRESSION_BYTES: usize = u32::MAX as usize;

/// Tapes longer than this are not kept for reuse once their expression is done, so a
/// single huge message does not pin its memory for the life of a connection.
const KEPT_NODES: usize = 1 << 14;

/// The state of reading one expression, kept between calls while input arrives.
#[derive(Debug, Default)]
pub(super) struct Scanner {
    /// Offset, from the expression's first byte, of the next element to read.
    pos: usize,
    /// The elements read so far, in wire order.
    nodes: Vec<Node>,
    /// Lists still open, innermost last: items still to come, and the list's node.
    open: Vec<(u32, u32)>,
    /// Whether a node refers to the expression's bytes (a STRING, a long integer).
    refers: bool,
}

/// A rejected element: what was wrong and the element's offset in the expression.
pub(super) type ScanError = (DecodeErrorKind, usize);

impl Scanner {
    /// The tape of the expression [`run`](Self::run) completed.
    pub(super) fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Whether the tape refers to the expression's bytes: if not, they need not be
    /// kept.
    pub(super) fn refers_to_bytes(&self) -> bool {
        self.refers
    }

    /// Whether a list of an expression is open (the expression is partly read).
    pub(super) fn in_list(&self) -> bool {
        !self.open.is_empty()
    }

    /// Forgets the expression, keeping the space for the next one.
    pub(super) fn reset(&mut self) {
        self.pos = 0;
        self.refers = false;
        self.open.clear();
        if self.nodes.capacity() > KEPT_NODES {
            self.nodes = Vec::new();
        } else {
            self.nodes.clear();
        }
    }

    /// Gives back the tape's space if no expression is partly read.
    pub(super) fn release(&mut self) {
        if self.pos == 0 && self.nodes.is_empty() {
            self.nodes = Vec::new();
            self.open = Vec::new();
        }
    }

    /// Reads on from where the last call stopped. `input` starts at the expression's
    /// first byte and holds at least what earlier calls saw. `Ok(Some(len))`: the
    /// expression is complete and `len` bytes long; `Ok(None)`: more input is needed.
    pub(super) fn run(
        &mut self,
        input: &[u8],
        limits: &Limits,
        dialect: Dialect,
    ) -> Result<Option<usize>, ScanError> {
        let max_bytes = limits.max_message_bytes.min(MAX_EXPRESSION_BYTES);
        loop {
            let start = self.pos;
            let Some((value, digits_end, type_byte)) =
                header(input, start, limits.max_prefix_len).map_err(|kind| (kind, start))?
            else {
                return Ok(None);
            };
            if self.nodes.len() >= limits.max_message_elements {
                return Err((DecodeErrorKind::TooManyElements, start));
            }
            let body = digits_end + 1;
            let fail = |kind| Err((kind, start));
            // The node, and the end of the element's bytes: only a STRING's body may
            // still be missing.
            let (node, end) = match type_byte {
                ty::LIST => {
                    if value > limits.max_list_len as u64 || value > u64::from(u32::MAX) {
                        return fail(DecodeErrorKind::ListTooLong);
                    }
                    if self.open.len() >= limits.depth() {
                        return fail(DecodeErrorKind::NestingTooDeep);
                    }
                    let len = value as u32;
                    (Node::List { len, span: 1 }, body)
                }
                ty::STRING => {
                    if value > limits.max_string_len as u64 {
                        return fail(DecodeErrorKind::StringTooLong);
                    }
                    let end = body.saturating_add(value as usize);
                    if end > max_bytes {
                        return fail(DecodeErrorKind::MessageTooLarge);
                    }
                    if end > input.len() {
                        return Ok(None);
                    }
                    self.refers = true;
                    let node = Node::Bytes {
                        start: body as u32,
                        end: end as u32,
                    };
                    (node, end)
                }
                ty::INT | ty::LONGINT | ty::NEG | ty::LONGNEG => {
                    let negative = matches!(type_byte, ty::NEG | ty::LONGNEG);
                    // Nine digits are 63 bits: they fit an i64 of either sign.
                    let node = if digits_end - start <= 9 {
                        let v = value as i64;
                        Node::Int(if negative { -v } else { v })
                    } else {
                        self.refers = true;
                        Node::BigInt {
                            negative,
                            start: start as u32,
                            end: digits_end as u32,
                        }
                    };
                    (node, body)
                }
                ty::FLOAT => {
                    let end = body + 8;
                    if end > max_bytes {
                        return fail(DecodeErrorKind::MessageTooLarge);
                    }
                    let Some(b) = input.get(body..end) else {
                        return Ok(None);
                    };
                    let mut be = [0u8; 8];
                    be.copy_from_slice(b);
                    (Node::Float(f64::from_be_bytes(be)), end)
                }
                ty::VOCAB => {
                    if dialect != Dialect::Pb {
                        return fail(DecodeErrorKind::VocabInPlainDialect);
                    }
                    match Word::from_index(value) {
                        Some(w) => (Node::Vocab(w), body),
                        None => return fail(DecodeErrorKind::UnknownVocab),
                    }
                }
                other => return fail(DecodeErrorKind::UnknownType(other)),
            };
            // Headers alone may take an expression over its size too.
            if end > max_bytes {
                return fail(DecodeErrorKind::MessageTooLarge);
            }
            let index = self.nodes.len();
            self.nodes.push(node);
            self.pos = end;
            if let Node::List { len, .. } = node {
                if len > 0 {
                    self.open.push((len, index as u32));
                    continue;
                }
            }
            // The element is complete, and with it every list it completes.
            loop {
                let Some(top) = self.open.last_mut() else {
                    return Ok(Some(end));
                };
                top.0 -= 1;
                if top.0 > 0 {
                    break;
                }
                let list = top.1 as usize;
                self.open.pop();
                let nodes = self.nodes.len() - list;
                if let Some(Node::List { span, .. }) = self.nodes.get_mut(list) {
                    *span = nodes as u32;
                }
            }
        }
    }
}

/// The header at `start`: the prefix's value (saturated), where its digits end (the
/// type byte's offset), and the type byte. `Ok(None)`: it has not all arrived.
#[inline(always)]
fn header(
    input: &[u8],
    start: usize,
    max_prefix: usize,
) -> Result<Option<(u64, usize, u8)>, DecodeErrorKind> {
    // Most headers have no digit or one.
    let Some(&b0) = input.get(start) else {
        return Ok(None);
    };
    if b0 >= 0x80 {
        return Ok(Some((0, start, b0)));
    }
    if max_prefix >= 1 {
        match input.get(start + 1) {
            None => return Ok(None),
            Some(&b1) if b1 >= 0x80 => return Ok(Some((u64::from(b0), start + 1, b1))),
            Some(_) => {}
        }
    }
    long_header(input, start, max_prefix)
}

/// [`header`] for prefixes of any length.
fn long_header(
    input: &[u8],
    start: usize,
    max_prefix: usize,
) -> Result<Option<(u64, usize, u8)>, DecodeErrorKind> {
    let mut value: u64 = 0;
    for (n, &b) in input.get(start..).unwrap_or_default().iter().enumerate() {
        if b >= 0x80 {
            return Ok(Some((value, start + n, b)));
        }
        // A run already over the limit fails now, before more is buffered.
        if n >= max_prefix {
            return Err(DecodeErrorKind::PrefixTooLong);
        }
        // Nine digits make 63 bits; a non-zero digit past them makes a value over
        // every limit, and integers that long are read from their digits.
        if n < 9 {
            value |= u64::from(b) << (7 * n);
        } else if b != 0 {
            value = u64::MAX;
        }
    }
    Ok(None)
}
