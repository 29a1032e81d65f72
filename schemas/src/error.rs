//! Why a payload did not decode. Never fatal: the event still shows raw,
//! with this reason next to it.

/// Why a payload could not be decoded, in words for the person reading it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// The bytes are not framed the way the topic's format says.
    Framing,
    /// The schema id is in neither the catalog nor the registry.
    UnknownSchema,
    /// The registry could not be asked (down, refused, timed out, rate-limited).
    RegistryUnavailable,
    /// The schema itself cannot be parsed or compiled.
    BadSchema,
    /// The body does not match its schema (truncated, wrong type, too deep).
    Mismatch,
}

impl DecodeError {
    pub fn new(kind: DecodeErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn framing(message: impl Into<String>) -> Self {
        Self::new(DecodeErrorKind::Framing, message)
    }

    pub fn bad_schema(message: impl Into<String>) -> Self {
        Self::new(DecodeErrorKind::BadSchema, message)
    }

    pub fn mismatch(message: impl Into<String>) -> Self {
        Self::new(DecodeErrorKind::Mismatch, message)
    }
}

/// Nesting deeper than this is refused rather than followed (a hostile or
/// broken payload must not exhaust the stack).
pub const MAX_DEPTH: usize = 64;
