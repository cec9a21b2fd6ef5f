//! `pbmaster wire decode|encode`: a byte stream ⇄ one readable expression per line.

use bytes::BytesMut;
use clap::{Subcommand, ValueEnum};
use pbwire::banana::{self, negotiation, Decoder, Dialect, Element};
use pbwire::{notation, Limits};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum WireCommand {
    /// Print each top-level expression of a raw stream (one direction of a PB
    /// connection, from its first byte) on a line of its own.
    Decode {
        /// `auto` follows the dialect negotiation at the start of the stream, as a peer
        /// does; `none` and `pb` fix the dialect for the whole stream.
        #[arg(long, value_enum, default_value_t = DialectArg::Auto)]
        dialect: DialectArg,
        /// The stream; standard input when absent.
        file: Option<PathBuf>,
    },
    /// Write the exact bytes of expressions in the notation `decode` prints.
    Encode {
        /// The text; standard input when absent.
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DialectArg {
    Auto,
    None,
    Pb,
}

/// Bytes read at a time: memory stays bounded for streams of any length.
const CHUNK: usize = 64 * 1024;

impl WireCommand {
    pub fn run(self) -> Result<(), Box<dyn std::error::Error>> {
        match self {
            WireCommand::Decode { dialect, file } => decode(dialect, open(file)?),
            WireCommand::Encode { file } => {
                let mut text = String::new();
                open(file)?.read_to_string(&mut text)?;
                encode(&text)
            }
        }
    }
}

fn open(file: Option<PathBuf>) -> io::Result<Box<dyn Read>> {
    Ok(match file {
        Some(path) => Box::new(File::open(path)?),
        None => Box::new(io::stdin().lock()),
    })
}

/// Follows the stream's own negotiation: its first expression is either the
/// listener's offer (a list) or the connecting side's choice (a bare string).
#[derive(Debug)]
enum Negotiation {
    Pending,
    Done,
}

fn decode(dialect: DialectArg, mut input: Box<dyn Read>) -> Result<(), Box<dyn std::error::Error>> {
    let mut decoder = Decoder::new(Limits::default());
    let mut negotiation = match dialect {
        DialectArg::Auto => Negotiation::Pending,
        DialectArg::None => Negotiation::Done,
        DialectArg::Pb => {
            decoder.set_dialect(Dialect::Pb);
            Negotiation::Done
        }
    };
    let mut out = BufWriter::new(io::stdout().lock());
    let mut buf = BytesMut::with_capacity(CHUNK);
    let mut line = String::new();
    loop {
        let start = buf.len();
        buf.resize(start + CHUNK, 0);
        let n = input.read(&mut buf[start..])?;
        buf.truncate(start + n);
        while let Some(element) = decoder.decode(&mut buf)? {
            if let Negotiation::Pending = negotiation {
                let chosen = negotiated(&element)
                    .map_err(|why| format!("offset {}: {why}", decoder.expression_start()))?;
                decoder.set_dialect(chosen);
                negotiation = Negotiation::Done;
            }
            line.clear();
            notation::print(&element, &mut line);
            line.push('\n');
            out.write_all(line.as_bytes())?;
        }
        if n == 0 {
            decoder.finish(&buf)?;
            break;
        }
    }
    out.flush()?;
    Ok(())
}

/// The dialect in force after the stream's first expression.
fn negotiated(first: &Element) -> Result<Dialect, negotiation::NegotiationError> {
    match first {
        Element::List(_) => negotiation::choose(first),
        _ => negotiation::accept(first),
    }
}

fn encode(text: &str) -> Result<(), Box<dyn std::error::Error>> {
    let elements = notation::parse(text)?;
    let mut bytes = BytesMut::new();
    let mut out = io::stdout().lock();
    for (i, e) in elements.iter().enumerate() {
        banana::encode(e, &mut bytes).map_err(|err| format!("expression {}: {err}", i + 1))?;
        if bytes.len() >= CHUNK {
            out.write_all(&bytes)?;
            bytes.clear();
        }
    }
    out.write_all(&bytes)?;
    out.flush()?;
    Ok(())
}
