//! Text → elements.

use crate::banana::{Element, Word};
use crate::{Integer, DEPTH_CEILING};
use bytes::Bytes;
use std::fmt;

/// Text that is not valid notation, with where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong there.
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.reason
        )
    }
}

impl std::error::Error for ParseError {}

/// Parses every top-level expression in `text`.
pub fn parse(text: &str) -> Result<Vec<Element>, ParseError> {
    Parser {
        chars: text.char_indices().peekable(),
        text,
        line: 1,
        column: 1,
    }
    .all()
}

struct Parser<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    text: &'a str,
    line: usize,
    column: usize,
}

impl Parser<'_> {
    fn fail<T>(&self, reason: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            line: self.line,
            column: self.column,
            reason: reason.into(),
        })
    }

    fn bump(&mut self) -> Option<char> {
        let (_, c) = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn peek(&mut self) -> Option<char> {
        self.chars.peek().map(|&(_, c)| c)
    }

    fn all(mut self) -> Result<Vec<Element>, ParseError> {
        let mut top = Vec::new();
        let mut open: Vec<Vec<Element>> = Vec::new();
        loop {
            while self.peek().is_some_and(char::is_whitespace) {
                self.bump();
            }
            let Some(c) = self.peek() else { break };
            let element = match c {
                '(' => {
                    if open.len() >= DEPTH_CEILING {
                        return self.fail("lists nested too deep");
                    }
                    self.bump();
                    open.push(Vec::new());
                    continue;
                }
                ')' => {
                    self.bump();
                    match open.pop() {
                        Some(items) => Element::List(items),
                        None => return self.fail("unbalanced ')'"),
                    }
                }
                'b' if self.text[self.offset()..].starts_with("b'") => {
                    self.bump();
                    Element::Bytes(Bytes::from(self.quoted('\'', false)?))
                }
                '"' => Element::Bytes(Bytes::from(self.quoted('"', true)?)),
                _ => self.atom()?,
            };
            match open.last_mut() {
                Some(list) => list.push(element),
                None => top.push(element),
            }
        }
        if !open.is_empty() {
            return self.fail("unclosed '('");
        }
        Ok(top)
    }

    fn offset(&mut self) -> usize {
        self.chars.peek().map_or(self.text.len(), |&(i, _)| i)
    }

    /// A quoted string after its opening quote is next; `text` allows any character.
    fn quoted(&mut self, quote: char, text: bool) -> Result<Vec<u8>, ParseError> {
        self.bump();
        let mut out = Vec::new();
        loop {
            let Some(c) = self.bump() else {
                return self.fail("unterminated string");
            };
            match c {
                c if c == quote => return Ok(out),
                '\\' => {
                    let escaped = match self.bump() {
                        Some('\\') => b'\\',
                        Some('\'') => b'\'',
                        Some('"') => b'"',
                        Some('n') => b'\n',
                        Some('r') => b'\r',
                        Some('t') => b'\t',
                        Some('x') => {
                            let hi = self.bump().and_then(|c| c.to_digit(16));
                            let lo = self.bump().and_then(|c| c.to_digit(16));
                            match (hi, lo) {
                                (Some(h), Some(l)) => {
                                    let v = (h * 16 + l) as u8;
                                    if text && v >= 0x80 {
                                        let mut buf = [0u8; 4];
                                        out.extend_from_slice(
                                            char::from(v).encode_utf8(&mut buf).as_bytes(),
                                        );
                                        continue;
                                    }
                                    v
                                }
                                _ => return self.fail("bad \\x escape"),
                            }
                        }
                        _ => return self.fail("unknown escape"),
                    };
                    out.push(escaped);
                }
                c if text => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                c if (' '..='~').contains(&c) => out.push(c as u8),
                _ => return self.fail("byte strings hold printable ASCII; escape the rest"),
            }
        }
    }

    /// A number, `inf`, `nan`, `nan:HEX` or a vocabulary word.
    fn atom(&mut self) -> Result<Element, ParseError> {
        let start = self.offset();
        let (line, column) = (self.line, self.column);
        while self
            .peek()
            .is_some_and(|c| !c.is_whitespace() && c != '(' && c != ')')
        {
            self.bump();
        }
        let text = self.text;
        let word = &text[start..self.offset()];
        // Errors point at the start of the atom.
        let end = (self.line, self.column);
        (self.line, self.column) = (line, column);
        let parsed = self.atom_value(word);
        (self.line, self.column) = end;
        parsed.map_err(|reason| ParseError {
            line,
            column,
            reason,
        })
    }

    fn atom_value(&self, word: &str) -> Result<Element, String> {
        if let Some(bits) = word.strip_prefix("nan:") {
            return match u64::from_str_radix(bits, 16) {
                Ok(b) if f64::from_bits(b).is_nan() => Ok(Element::Float(f64::from_bits(b))),
                _ => Err(format!("bad NaN bits {bits:?}")),
            };
        }
        match word {
            "inf" => return Ok(Element::Float(f64::INFINITY)),
            "-inf" => return Ok(Element::Float(f64::NEG_INFINITY)),
            "nan" => return Ok(Element::Float(f64::NAN)),
            _ => {}
        }
        let numeric = word.starts_with(|c: char| c.is_ascii_digit() || c == '-');
        if numeric {
            if word.contains(['.', 'e', 'E']) {
                return match word.parse::<f64>() {
                    Ok(f) => Ok(Element::Float(f)),
                    Err(_) => Err(format!("bad float {word:?}")),
                };
            }
            return match word.parse::<Integer>() {
                Ok(i) => Ok(Element::Int(i)),
                Err(_) => Err(format!("bad integer {word:?}")),
            };
        }
        match Word::lookup(word.as_bytes()) {
            Some(w) => Ok(Element::Vocab(w)),
            None => Err(format!(
                "{word:?} is not a vocabulary word; quote byte strings as b'...'"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notation::to_string;

    #[test]
    fn round_trips_every_form() {
        let text = r#"(message 1 b'root' login 1 (tuple b'w1') (dictionary)) (b'unicode' "h\u{e9}\"\n") -5 2147483648 1.5 -0.0 inf nan nan:7ff8000000000001 b'\x00\'\\' ()"#
            .replace("\\u{e9}", "é");
        let parsed = parse(&text).unwrap();
        let printed: Vec<String> = parsed.iter().map(to_string).collect();
        assert_eq!(printed.join(" "), text);
    }

    #[test]
    fn reports_position_of_errors() {
        let e = parse("(1 2\n  bogus)").unwrap_err();
        assert_eq!((e.line, e.column), (2, 3));
        let e = parse("(1 2)\n(3 bogus)").unwrap_err();
        assert_eq!(
            (e.line, e.column),
            (2, 4),
            "positions after good atoms stay right"
        );
        assert!(parse("(").is_err());
        assert!(parse(")").is_err());
        assert!(parse("b'abc").is_err());
        assert!(parse("1.2.3").is_err());
        assert!(parse(&"(".repeat(100_000)).is_err());
    }
}
