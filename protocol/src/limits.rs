//! Every bound the decoders enforce, in one place.

/// Bounds on what a peer may make the decoders buffer or build.
///
/// Each limit is checked as soon as a header declares a size, before any byte of the
/// body is buffered and before anything is allocated for it. The defaults accept
/// everything a real Twisted peer can send (Twisted's own limits are the 64-byte
/// prefix and the 640 KiB string and list sizes) and bound what Twisted leaves open
/// (nesting depth, bytes and elements per message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Base-128 prefix bytes before a type byte. Twisted: `_PREFIX_LIMIT = 64`; it also
    /// caps integers at 448 bits.
    pub max_prefix_len: usize,
    /// Bytes in one STRING element. Twisted: `SIZE_LIMIT = 640 * 1024`; buildbot keeps
    /// file-transfer blocks and log chunks under it.
    pub max_string_len: usize,
    /// Elements declared by one LIST header. Twisted: `SIZE_LIMIT` as well.
    pub max_list_len: usize,
    /// Lists open at once inside one top-level expression. Twisted has no bound; real
    /// buildbot traffic nests fewer than ten deep (failures with frames are the deepest).
    /// Also bounds the recursion of every walk over decoded trees.
    pub max_depth: usize,
    /// Bytes one top-level expression may occupy on the wire, so that a peer cannot make
    /// a connection buffer without bound by nesting lists of maximal strings.
    pub max_message_bytes: usize,
    /// Elements (atoms and lists) in one top-level expression. A one-byte element costs
    /// far more in memory than on the wire, so this bounds memory per message.
    pub max_message_elements: usize,
}

/// Hard ceiling on [`Limits::max_depth`]: tree walks recurse, and this keeps their
/// stack use bounded whatever a caller configures.
pub const DEPTH_CEILING: usize = 256;

impl Limits {
    /// Twisted's prefix and size limits, and generous bounds on the rest.
    pub const TWISTED: Limits = Limits {
        max_prefix_len: 64,
        max_string_len: 640 * 1024,
        max_list_len: 640 * 1024,
        max_depth: 64,
        max_message_bytes: 16 * 1024 * 1024,
        max_message_elements: 1 << 20,
    };

    /// The depth actually enforced: the configured one, capped at [`DEPTH_CEILING`].
    pub fn depth(&self) -> usize {
        self.max_depth.min(DEPTH_CEILING)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::TWISTED
    }
}
