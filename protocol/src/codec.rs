//! A `tokio_util::codec` adapter: frames a byte stream into top-level banana elements.

use crate::banana::{self, DecodeError, Decoder as BananaDecoder, Dialect, Element, EncodeError};
use crate::Limits;
use bytes::BytesMut;

/// Decodes and encodes banana elements. The decoder's limits also bound how much the
/// framed reader buffers: a header declaring too much fails before its body is read.
#[derive(Debug)]
pub struct BananaCodec {
    decoder: BananaDecoder,
    dialect: Dialect,
}

/// Errors from the framed stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The peer's bytes are malformed or over a limit.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// An element cannot be sent.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The underlying stream failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl BananaCodec {
    /// A codec in dialect `none` whose decoder enforces `limits`.
    pub fn new(limits: Limits) -> BananaCodec {
        BananaCodec {
            decoder: BananaDecoder::new(limits),
            dialect: Dialect::None,
        }
    }

    /// Switches both directions to `dialect` once negotiation has chosen it.
    pub fn set_dialect(&mut self, dialect: Dialect) {
        self.dialect = dialect;
        self.decoder.set_dialect(dialect);
    }

    /// The dialect in force.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }
}

impl tokio_util::codec::Decoder for BananaCodec {
    type Item = Element;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Element>, CodecError> {
        Ok(self.decoder.decode(src)?)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Element>, CodecError> {
        match self.decoder.decode(src)? {
            Some(e) => Ok(Some(e)),
            None => {
                self.decoder.finish(src)?;
                Ok(None)
            }
        }
    }
}

impl tokio_util::codec::Encoder<&Element> for BananaCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &Element, dst: &mut BytesMut) -> Result<(), CodecError> {
        let start = dst.len();
        if let Err(e) = banana::encode(item, dst) {
            dst.truncate(start);
            return Err(e.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::codec::{Decoder, Encoder};

    #[test]
    fn frames_elements_across_chunks() {
        let mut codec = BananaCodec::new(Limits::default());
        let mut out = BytesMut::new();
        let e = Element::List(vec![Element::int(5), Element::Bytes("abc".into())]);
        codec.encode(&e, &mut out).unwrap();
        let mut input = BytesMut::from(&out[..3]);
        assert_eq!(codec.decode(&mut input).unwrap(), None);
        input.extend_from_slice(&out[3..]);
        assert_eq!(codec.decode(&mut input).unwrap(), Some(e));
        assert!(codec.decode_eof(&mut input).unwrap().is_none());
    }
}
