//! Elements → text.

use crate::banana::Element;
use std::fmt::Write;

/// The text of one element.
pub fn to_string(element: &Element) -> String {
    let mut out = String::new();
    print(element, &mut out);
    out
}

/// Appends the text of `element` to `out`. Iterative: trees may be deep.
pub fn print(element: &Element, out: &mut String) {
    // Each frame: the remaining siblings, and whether they are a `unicode` payload.
    let mut stack: Vec<(std::slice::Iter<'_, Element>, bool, bool)> =
        vec![(std::slice::from_ref(element).iter(), false, true)];
    while let Some((siblings, unicode_list, first)) = stack.last_mut() {
        let Some(e) = siblings.next() else {
            stack.pop();
            if !stack.is_empty() {
                out.push(')');
            }
            continue;
        };
        let is_payload = *unicode_list && !*first && siblings.len() == 0;
        if !*first {
            out.push(' ');
        }
        *first = false;
        match e {
            Element::List(items) => {
                out.push('(');
                let unicode = items.len() == 2
                    && matches!(&items[0], Element::Bytes(b) if b.as_ref() == b"unicode");
                stack.push((items.iter(), unicode, true));
            }
            Element::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Element::Float(f) => float(*f, out),
            Element::Vocab(w) => out.push_str(std::str::from_utf8(w.as_bytes()).unwrap_or("?")),
            Element::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) if is_payload => text(s, out),
                _ => bytes(b, out),
            },
        }
    }
}

const CANONICAL_NAN: u64 = 0x7ff8_0000_0000_0000;

fn float(f: f64, out: &mut String) {
    if f.is_nan() {
        if f.to_bits() == CANONICAL_NAN {
            out.push_str("nan");
        } else {
            let _ = write!(out, "nan:{:016x}", f.to_bits());
        }
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "inf" } else { "-inf" });
    } else {
        // Debug is the shortest text that parses back to the same bits, and always
        // has a '.' or an exponent, so it never reads as an integer.
        let _ = write!(out, "{f:?}");
    }
}

fn bytes(b: &[u8], out: &mut String) {
    out.push_str("b'");
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("\\'"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(c as char),
            _ => {
                let _ = write!(out, "\\x{c:02x}");
            }
        }
    }
    out.push('\'');
}

fn text(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
