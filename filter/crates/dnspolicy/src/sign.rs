//! Ed25519 signatures over the feed body. Only the feed server holds the
//! private key; filters hold public keys, so a filter's configuration (which
//! every sidecar can read) is not enough to forge a policy. Key ids let two
//! public keys be accepted while one is rotated out.
//!
//! Header form: `keyid=<id>,alg=ed25519,sig=<base64url of the 64-byte signature>`.

use ed25519_dalek::{Signature, VerifyingKey};

/// A public key the filter accepts feed signatures from.
#[derive(Debug, Clone)]
pub struct PublicKey {
    pub id: String,
    key: VerifyingKey,
}

impl PublicKey {
    /// A key from its id and its 32 bytes in base64 (standard or URL alphabet).
    pub fn parse(id: &str, base64: &str) -> Result<PublicKey, String> {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(format!("key id {id:?}: 1 to 64 of [A-Za-z0-9_-]"));
        }
        let bytes = crate::base64::decode(base64).ok_or_else(|| format!("key {id}: not base64"))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| format!("key {id}: an Ed25519 public key is 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| format!("key {id}: not an Ed25519 public key"))?;
        Ok(PublicKey { id: id.to_string(), key })
    }
}

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

/// Checks `header` (see module docs) against `body` with the keys accepted
/// now; returns the id of the key that signed it. Strict verification: no
/// malleable or small-order signatures.
pub fn verify<'k>(header: Option<&str>, body: &[u8], keys: &'k [PublicKey]) -> Result<&'k str, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let (mut id, mut alg, mut sig) = (None, None, None);
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("keyid", v)) if id.is_none() => id = Some(v),
            Some(("alg", v)) if alg.is_none() => alg = Some(v),
            Some(("sig", v)) if sig.is_none() => sig = Some(v),
            _ => return Err(SignatureError::Malformed),
        }
    }
    let (Some(id), Some("ed25519"), Some(sig)) = (id, alg, sig) else { return Err(SignatureError::Malformed) };
    let raw = crate::base64::decode(sig).ok_or(SignatureError::Malformed)?;
    let raw: [u8; 64] = raw.try_into().map_err(|_| SignatureError::Malformed)?;
    let key = keys.iter().find(|k| k.id == id).ok_or_else(|| SignatureError::UnknownKey(id.chars().take(64).collect()))?;
    key.key.verify_strict(body, &Signature::from_bytes(&raw)).map_err(|_| SignatureError::Mismatch)?;
    Ok(key.id.as_str())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn b64url(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().fold(0u32, |a, &b| a << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }

    fn signer(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn public(id: &str, seed: u8) -> PublicKey {
        PublicKey::parse(id, &b64url(signer(seed).verifying_key().as_bytes())).unwrap()
    }

    fn header(id: &str, seed: u8, body: &[u8]) -> String {
        format!("keyid={id},alg=ed25519,sig={}", b64url(&signer(seed).sign(body).to_bytes()))
    }

    #[test]
    fn rfc8032_test_vector_1() {
        // RFC 8032 7.1 TEST 1: the empty message
        let public_hex = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        let sig_hex = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
        let unhex = |h: &str| (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect::<Vec<u8>>();
        let keys = [PublicKey::parse("t", &b64url(&unhex(public_hex))).unwrap()];
        let h = format!("keyid=t,alg=ed25519,sig={}", b64url(&unhex(sig_hex)));
        assert_eq!(verify(Some(&h), b"", &keys).unwrap(), "t");
        assert_eq!(verify(Some(&h), b"x", &keys), Err(SignatureError::Mismatch));
    }

    #[test]
    fn accepts_either_key_during_rotation() {
        let keys = [public("k2", 2), public("k1", 1)];
        let body = b"dnsguard-policy/1\tsnapshot\t1\t0\t0\n";
        assert_eq!(verify(Some(&header("k1", 1, body)), body, &keys).unwrap(), "k1");
        assert_eq!(verify(Some(&header("k2", 2, body)), body, &keys).unwrap(), "k2");
    }

    #[test]
    fn rejects_tampering_unknown_and_wrong_keys_and_garbage() {
        let keys = [public("k1", 1)];
        let body = b"dnsguard-policy/1\tsnapshot\t1\t0\t0\n";
        let good = header("k1", 1, body);
        assert_eq!(verify(Some(&good), b"dnsguard-policy/1\tsnapshot\t2\t0\t0\n", &keys), Err(SignatureError::Mismatch));
        assert_eq!(verify(None, body, &keys), Err(SignatureError::Missing));
        assert!(matches!(verify(Some(&header("k9", 9, body)), body, &keys), Err(SignatureError::UnknownKey(_))));
        // signed by another key under a known id
        assert_eq!(verify(Some(&header("k1", 7, body)), body, &keys), Err(SignatureError::Mismatch));
        for bad in ["keyid=k1,alg=ed25519,sig=zz", "keyid=k1,alg=ed25519", "keyid=k1,alg=hmac-sha256,sig=AAAA",
                    "sig=00,what=1", &good.replace("alg=ed25519,", ""), &format!("{good},keyid=k2")] {
            assert_eq!(verify(Some(bad), body, &keys), Err(SignatureError::Malformed), "{bad}");
        }
    }

    #[test]
    fn public_keys_are_checked() {
        assert!(PublicKey::parse("k1", "AAAA").is_err());
        assert!(PublicKey::parse("", &b64url(&[0u8; 32])).is_err());
        assert!(PublicKey::parse("k 1", &b64url(signer(1).verifying_key().as_bytes())).is_err());
        assert!(PublicKey::parse("k1", &b64url(signer(1).verifying_key().as_bytes())).is_ok());
    }
}
