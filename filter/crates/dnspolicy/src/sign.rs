//! HMAC-SHA256 over the feed body, with key ids so two keys can be accepted
//! while one is rotated out. Header form: `keyid=<id>,sig=<64 hex digits>`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    Missing,
    Malformed,
    UnknownKey(String),
    Mismatch,
}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureError::Missing => write!(f, "feed is unsigned"),
            SignatureError::Malformed => write!(f, "feed signature header is malformed"),
            SignatureError::UnknownKey(k) => write!(f, "feed signed with unknown key id {k:?}"),
            SignatureError::Mismatch => write!(f, "feed signature does not match its body"),
        }
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable_hmac(),
    }
}

#[cold]
fn unreachable_hmac() -> HmacSha256 {
    // Not reachable (see above); a fixed key keeps this total without panicking.
    <HmacSha256 as Mac>::new(&Default::default())
}

/// The signature header value for `body` under key `id`.
pub fn sign_hex(id: &str, key: &[u8], body: &[u8]) -> String {
    let mut m = mac(key);
    m.update(body);
    let tag = m.finalize().into_bytes();
    let mut hex = String::with_capacity(64);
    for b in tag {
        hex.push(nibble(b >> 4));
        hex.push(nibble(b & 0xF));
    }
    format!("keyid={id},sig={hex}")
}

fn nibble(n: u8) -> char {
    char::from(if n < 10 { b'0' + n } else { b'a' + (n & 0xF) - 10 })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes().chunks(2).map(|p| Some(digit(*p.first()?)? << 4 | digit(*p.get(1)?)?)).collect()
}

/// Checks `header` (see module docs) against `body` with the keys accepted
/// now; returns the id of the key that signed it. Comparison is constant-time.
pub fn verify<'k>(header: Option<&str>, body: &[u8], keys: &'k [(String, Vec<u8>)]) -> Result<&'k str, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut id = None;
    let mut sig = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("keyid", v)) => id = Some(v),
            Some(("sig", v)) => sig = Some(v),
            _ => return Err(SignatureError::Malformed),
        }
    }
    let (Some(id), Some(sig)) = (id, sig) else { return Err(SignatureError::Malformed) };
    let tag = unhex(sig).filter(|t| t.len() == 32).ok_or(SignatureError::Malformed)?;
    let (kid, key) = keys.iter().find(|(k, _)| k == id).ok_or_else(|| SignatureError::UnknownKey(id.to_string()))?;
    let mut m = mac(key);
    m.update(body);
    m.verify_slice(&tag).map_err(|_| SignatureError::Mismatch)?;
    Ok(kid.as_str())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn keys() -> Vec<(String, Vec<u8>)> {
        vec![("k2".into(), b"new secret".to_vec()), ("k1".into(), b"old secret".to_vec())]
    }

    #[test]
    fn rfc4231_case_2() {
        // HMAC-SHA256("Jefe", "what do ya want for nothing?")
        let h = sign_hex("t", b"Jefe", b"what do ya want for nothing?");
        assert_eq!(h, "keyid=t,sig=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn accepts_either_key_during_rotation() {
        let body = b"dnsguard-policy/1\tsnapshot\t1\t0\t0\n";
        assert_eq!(verify(Some(&sign_hex("k1", b"old secret", body)), body, &keys()).unwrap(), "k1");
        assert_eq!(verify(Some(&sign_hex("k2", b"new secret", body)), body, &keys()).unwrap(), "k2");
    }

    #[test]
    fn rejects_tampering_unknown_keys_and_garbage() {
        let body = b"dnsguard-policy/1\tsnapshot\t1\t0\t0\n";
        let good = sign_hex("k1", b"old secret", body);
        assert_eq!(verify(Some(&good), b"dnsguard-policy/1\tsnapshot\t2\t0\t0\n", &keys()), Err(SignatureError::Mismatch));
        assert_eq!(verify(None, body, &keys()), Err(SignatureError::Missing));
        assert!(matches!(verify(Some(&sign_hex("k9", b"x", body)), body, &keys()), Err(SignatureError::UnknownKey(_))));
        assert_eq!(verify(Some(&sign_hex("k1", b"wrong", body)), body, &keys()), Err(SignatureError::Mismatch));
        assert_eq!(verify(Some("keyid=k1,sig=zz"), body, &keys()), Err(SignatureError::Malformed));
        assert_eq!(verify(Some("keyid=k1"), body, &keys()), Err(SignatureError::Malformed));
        assert_eq!(verify(Some("sig=00,what=1"), body, &keys()), Err(SignatureError::Malformed));
    }
}
