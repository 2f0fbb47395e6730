//! A cursor over a byte slice where every read is bounds-checked.

use core::fmt;

/// Why a message could not be parsed, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The message ended before a field it announced (byte offset of the read).
    ShortInput { offset: usize },
    /// The bytes are there but break the format (byte offset, what is wrong).
    Form { offset: usize, reason: &'static str },
}

impl ParseError {
    pub fn offset(&self) -> usize {
        match self {
            ParseError::ShortInput { offset } | ParseError::Form { offset, .. } => *offset,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::ShortInput { .. } => "short input",
            ParseError::Form { reason, .. } => reason,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason(), self.offset())
    }
}

pub(crate) fn form(offset: usize, reason: &'static str) -> ParseError {
    ParseError::Form { offset, reason }
}

#[derive(Clone)]
pub(crate) struct Reader<'a> {
    pub(crate) msg: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(msg: &'a [u8]) -> Self {
        Reader { msg, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.msg.len().saturating_sub(self.pos)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        let end = self.pos.checked_add(n).ok_or(ParseError::ShortInput { offset: self.pos })?;
        let out = self.msg.get(self.pos..end).ok_or(ParseError::ShortInput { offset: self.pos })?;
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, ParseError> {
        let b = self.bytes(1)?;
        b.first().copied().ok_or(ParseError::ShortInput { offset: self.pos })
    }

    pub(crate) fn u16(&mut self) -> Result<u16, ParseError> {
        let b = self.bytes(2)?;
        match b {
            [a, c] => Ok(u16::from_be_bytes([*a, *c])),
            _ => Err(ParseError::ShortInput { offset: self.pos }),
        }
    }

    pub(crate) fn u32(&mut self) -> Result<u32, ParseError> {
        let b = self.bytes(4)?;
        match b {
            [a, c, d, e] => Ok(u32::from_be_bytes([*a, *c, *d, *e])),
            _ => Err(ParseError::ShortInput { offset: self.pos }),
        }
    }
}
