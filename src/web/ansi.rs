//! ANSI colour escapes in logs (compilers and test runners print them) as spans with
//! classes; every other escape sequence is dropped, and the text stays escaped.

use maud::{html, Markup};

/// The classes of the colours set so far: foreground and bold.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Style {
    fg: Option<u8>,
    bold: bool,
}

impl Style {
    fn class(self) -> Option<String> {
        let mut c = Vec::new();
        if let Some(fg) = self.fg {
            c.push(format!("fg{fg}"));
        }
        if self.bold {
            c.push("bold".to_owned());
        }
        (!c.is_empty()).then(|| c.join(" "))
    }

    /// Applies an SGR sequence's parameters (`1;31`).
    fn apply(&mut self, params: &str) {
        for p in params.split(';') {
            match p.parse::<u8>().unwrap_or(0) {
                0 => *self = Style::default(),
                1 => self.bold = true,
                22 => self.bold = false,
                n @ 30..=37 => self.fg = Some(n - 30),
                n @ 90..=97 => self.fg = Some(n - 90 + 8),
                39 => self.fg = None,
                _ => {}
            }
        }
    }
}

/// An escape sequence cut at the end of a piece longer than this is dropped, not kept.
const MAX_PENDING: usize = 64;

/// Renders a log that arrives in pieces (a live log): the colour set by one piece
/// goes on in the next, and an escape sequence cut between two is joined.
#[derive(Debug, Default)]
pub struct Painter {
    style: Style,
    /// The start of an escape sequence that the last piece ended in.
    pending: String,
}

impl Painter {
    /// The next piece of text, its colour escapes as spans.
    pub fn paint(&mut self, text: &str) -> Markup {
        let joined;
        let mut rest = match self.pending.is_empty() {
            true => text,
            false => {
                joined = std::mem::take(&mut self.pending) + text;
                joined.as_str()
            }
        };
        let mut pieces: Vec<(Style, &str)> = Vec::new();
        while let Some(at) = rest.find('\u{1b}') {
            pieces.push((self.style, &rest[..at]));
            let after = &rest[at + 1..];
            let Some(csi) = after.strip_prefix('[') else {
                if after.is_empty() {
                    self.keep(&rest[at..]);
                }
                rest = after;
                continue;
            };
            // Parameters, then one final byte in @..~.
            let end = csi.char_indices().find(|(_, c)| ('@'..='~').contains(c));
            match end {
                Some((i, 'm')) => {
                    self.style.apply(&csi[..i]);
                    rest = &csi[i + 1..];
                }
                Some((i, c)) => rest = &csi[i + c.len_utf8()..],
                None => {
                    self.keep(&rest[at..]);
                    rest = "";
                }
            }
        }
        pieces.push((self.style, rest));
        html! {
            @for (style, piece) in pieces.iter().filter(|(_, p)| !p.is_empty()) {
                @match style.class() {
                    Some(class) => span class=(class) { (piece) },
                    None => (piece),
                }
            }
        }
    }

    /// Keeps an unfinished escape sequence for the next piece (a bounded one).
    fn keep(&mut self, start: &str) {
        if start.len() <= MAX_PENDING {
            self.pending = start.to_owned();
        }
    }
}

/// `text` with its colour escapes as spans.
pub fn render(text: &str) -> Markup {
    Painter::default().paint(text)
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn colours_become_spans_and_the_rest_is_dropped() {
        let out = render("a \u{1b}[1;31mred <b>\u{1b}[0m b\u{1b}[2K c").into_string();
        assert_eq!(out, "a <span class=\"fg1 bold\">red &lt;b&gt;</span> b c");
        assert_eq!(render("x\u{1b}[").into_string(), "x");
    }

    #[test]
    fn a_colour_and_an_escape_go_on_across_pieces() {
        let mut p = super::Painter::default();
        let mut out = p.paint("a \u{1b}[3").into_string();
        out += &p.paint("2mgreen\n").into_string();
        out += &p.paint("still <i>\u{1b}").into_string();
        out += &p.paint("[0m plain").into_string();
        assert_eq!(
            out,
            "a <span class=\"fg2\">green\n</span><span class=\"fg2\">still &lt;i&gt;</span> plain"
        );
        // An endless sequence is not kept.
        let mut p = super::Painter::default();
        let long = format!("\u{1b}[{}", "1;".repeat(100));
        assert_eq!(p.paint(&long).into_string(), "");
        assert_eq!(p.paint("x").into_string(), "x");
    }
}
