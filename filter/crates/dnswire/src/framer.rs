//! DNS over TCP framing: a 2-byte length prefix before each message
//! (RFC 1035 4.2.2, RFC 7766). Reads may split a message or carry several.

/// Largest DNS message (the length prefix is 16 bits).
pub const MAX_DNS_MESSAGE: usize = 65_535;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// More bytes are buffered than the bound allows: the stream is not DNS
    /// or is abusive; the caller stops parsing this direction.
    Overflow,
}

/// Reassembles length-prefixed messages from a byte stream, with a bounded buffer.
#[derive(Debug, Default)]
pub struct TcpFramer {
    buf: Vec<u8>,
    start: usize,
    max_buffer: usize,
    poisoned: bool,
}

impl TcpFramer {
    pub fn new(max_buffer: usize) -> Self {
        TcpFramer { buf: Vec::new(), start: 0, max_buffer: max_buffer.max(2 + MAX_DNS_MESSAGE), poisoned: false }
    }

    /// Appends stream bytes. After an overflow the framer stays poisoned and ignores input.
    pub fn push(&mut self, data: &[u8]) -> Result<(), FrameError> {
        if self.poisoned {
            return Err(FrameError::Overflow);
        }
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 4096 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.len() - self.start + data.len() > self.max_buffer {
            self.poisoned = true;
            self.buf = Vec::new();
            self.start = 0;
            return Err(FrameError::Overflow);
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// The next complete message, if one is buffered ("need more bytes" is `None`).
    pub fn next_message(&mut self) -> Option<&[u8]> {
        let pending = self.buf.get(self.start..)?;
        let len = match pending {
            [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]) as usize,
            _ => return None,
        };
        let msg = pending.get(2..2 + len)?;
        self.start += 2 + len;
        Some(msg)
    }

    /// Bytes buffered but not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }
}
