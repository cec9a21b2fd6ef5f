//! Dialect negotiation at connection start (Twisted calls dialects "profiles").
//!
//! The listener offers its dialects as a plain list `(b'pb' b'none')`; the connecting
//! side answers with the first one it knows, as a bare STRING. Both then switch their
//! decoders and encoders to it. All of this travels in dialect `none`.

use super::{Dialect, Element};
use bytes::Bytes;

/// What the listener offers, in Twisted's order of preference.
pub const OFFERED: [Dialect; 2] = [Dialect::Pb, Dialect::None];

/// A negotiation message that does not follow the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// (Connector) the listener's first expression is not a list of byte strings.
    #[error("dialect offer is not a list of byte strings")]
    MalformedOffer,
    /// (Connector) none of the offered dialects is `pb` or `none`.
    #[error("no offered dialect is known")]
    NoCommonDialect,
    /// (Listener) the connector's first expression is not a byte string.
    #[error("dialect choice is not a byte string")]
    MalformedChoice,
    /// (Listener) the connector chose a dialect that was not offered.
    #[error("chosen dialect was not offered")]
    UnknownChoice,
}

/// The listener's first expression.
pub fn offer() -> Element {
    Element::List(
        OFFERED
            .iter()
            .map(|d| Element::Bytes(Bytes::from_static(d.name())))
            .collect(),
    )
}

/// The connecting side's choice: the first offered dialect it knows. Unknown names in
/// the offer are skipped, as Twisted skips them.
pub fn choose(offer: &Element) -> Result<Dialect, NegotiationError> {
    let Element::List(items) = offer else {
        return Err(NegotiationError::MalformedOffer);
    };
    let mut names = Vec::with_capacity(items.len());
    for item in items {
        names.push(item.as_bytes().ok_or(NegotiationError::MalformedOffer)?);
    }
    names
        .into_iter()
        .find_map(Dialect::from_name)
        .ok_or(NegotiationError::NoCommonDialect)
}

/// The expression that announces `dialect`: a bare STRING.
pub fn choice(dialect: Dialect) -> Element {
    Element::Bytes(Bytes::from_static(dialect.name()))
}

/// The listener's check of the client's choice: it must be a dialect it offered.
pub fn accept(choice: &Element) -> Result<Dialect, NegotiationError> {
    let name = choice.as_bytes().ok_or(NegotiationError::MalformedChoice)?;
    Dialect::from_name(name)
        .filter(|d| OFFERED.contains(d))
        .ok_or(NegotiationError::UnknownChoice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::banana::encode_to_vec;

    #[test]
    fn offer_is_twisteds_bytes() {
        assert_eq!(
            encode_to_vec(&offer()).unwrap(),
            b"\x02\x80\x02\x82pb\x04\x82none"
        );
        assert_eq!(encode_to_vec(&choice(Dialect::Pb)).unwrap(), b"\x02\x82pb");
    }

    #[test]
    fn client_picks_first_known_in_server_order() {
        let o = Element::List(vec![
            Element::Bytes(Bytes::from_static(b"foo")),
            Element::Bytes(Bytes::from_static(b"none")),
            Element::Bytes(Bytes::from_static(b"pb")),
        ]);
        assert_eq!(choose(&o), Ok(Dialect::None));
        assert_eq!(choose(&offer()), Ok(Dialect::Pb));
        assert_eq!(
            choose(&Element::List(vec![])),
            Err(NegotiationError::NoCommonDialect)
        );
        assert_eq!(
            choose(&Element::int(1)),
            Err(NegotiationError::MalformedOffer)
        );
    }

    #[test]
    fn server_accepts_only_offered_names() {
        assert_eq!(accept(&choice(Dialect::Pb)), Ok(Dialect::Pb));
        assert_eq!(
            accept(&Element::Bytes(Bytes::from_static(b"x"))),
            Err(NegotiationError::UnknownChoice)
        );
        assert_eq!(
            accept(&Element::List(vec![])),
            Err(NegotiationError::MalformedChoice)
        );
    }
}
