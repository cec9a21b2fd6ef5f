//! A readable text form of banana elements, one that maps back to the exact bytes.
//!
//! | Text | Element |
//! |---|---|
//! | `(a b c)`, `()` | LIST |
//! | `42`, `-7`, `2147483648` | INT / NEG / LONGINT / LONGNEG, chosen by value as Twisted does |
//! | `1.5`, `1e+300`, `-0.0`, `inf`, `-inf`, `nan`, `nan:7ff8000000000001` | FLOAT (`nan:` gives the bits of a non-canonical NaN) |
//! | `b'raw\x00'` | STRING; printable ASCII as is, `\\ \' \n \r \t`, else `\xHH` |
//! | `"text"` | STRING holding UTF-8; printed for the payload of `(b'unicode' ...)` |
//! | `message` | VOCAB token: one of the 31 `pb` vocabulary words, bare |

mod parse;
mod print;

pub use parse::{parse, ParseError};
pub use print::{print, to_string};
