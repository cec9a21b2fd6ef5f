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

/// `text` with its colour escapes as spans.
pub fn render(text: &str) -> Markup {
    let mut pieces: Vec<(Style, &str)> = Vec::new();
    let mut style = Style::default();
    let mut rest = text;
    while let Some(at) = rest.find('\u{1b}') {
        pieces.push((style, &rest[..at]));
        let after = &rest[at + 1..];
        let Some(csi) = after.strip_prefix('[') else {
            rest = after;
            continue;
        };
        // Parameters, then one final byte in @..~.
        let end = csi.char_indices().find(|(_, c)| ('@'..='~').contains(c));
        match end {
            Some((i, 'm')) => {
                style.apply(&csi[..i]);
                rest = &csi[i + 1..];
            }
            Some((i, c)) => rest = &csi[i + c.len_utf8()..],
            None => rest = "",
        }
    }
    pieces.push((style, rest));
    html! {
        @for (style, piece) in pieces.iter().filter(|(_, p)| !p.is_empty()) {
            @match style.class() {
                Some(class) => span class=(class) { (piece) },
                None => (piece),
            }
        }
    }
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
}
