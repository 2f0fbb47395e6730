//! The canonical presentation form of a name, as every part of dnsguard
//! writes and checks it (the Python side is `detectors/dnsname.py`; the two
//! are held together by a property test).
//!
//! Labels separated by `.`, no trailing dot, the root as `""`; each label 1
//! to 63 octets, the whole name at most 253 octets plus dots; octets
//! `a-z0-9-_` as themselves, every other octet as `\DDD`. So a canonical name
//! holds only `[a-z0-9._\-]` characters and is safe in a TAB-separated feed
//! line, an RPZ zone or a log line.

/// Octets of one label at most.
pub const MAX_LABEL_OCTETS: usize = 63;
/// Octets of a name's labels plus the dots between them, at most.
pub const MAX_NAME_OCTETS: usize = 253;

/// Written as itself in the canonical form (after folding to lower case).
pub fn plain_octet(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
}

/// Appends one label's octets in canonical form.
pub fn push_label(out: &mut String, label: &[u8]) {
    // the common label, already canonical: one copy
    if label.iter().all(|&b| plain_octet(b)) {
        if let Ok(text) = std::str::from_utf8(label) {
            out.push_str(text);
            return;
        }
    }
    for &b in label {
        let c = b.to_ascii_lowercase();
        if plain_octet(c) {
            out.push(c as char);
        } else {
            out.push('\\');
            out.push((b'0' + c / 100) as char);
            out.push((b'0' + (c / 10) % 10) as char);
            out.push((b'0' + c % 10) as char);
        }
    }
}

/// Whether `name` is a valid name in canonical form (the root, `""`, included).
pub fn is_canonical_name(name: &str) -> bool {
    if name.is_empty() {
        return true;
    }
    let bytes = name.as_bytes();
    let (mut label, mut total, mut i) = (0usize, 0usize, 0usize);
    while let Some(&b) = bytes.get(i) {
        match b {
            b'.' => {
                if label == 0 {
                    return false;
                }
                label = 0;
                total += 1;
                i += 1;
            }
            b'\\' => {
                // exactly three digits, an octet that the form does not write as itself
                let Some(d) = bytes.get(i + 1..i + 4) else { return false };
                if !d.iter().all(u8::is_ascii_digit) {
                    return false;
                }
                let value = d.iter().fold(0u32, |v, &c| v * 10 + u32::from(c - b'0'));
                match u8::try_from(value) {
                    Ok(octet) if !plain_octet(octet.to_ascii_lowercase()) && !octet.is_ascii_uppercase() => {}
                    _ => return false,
                }
                label += 1;
                total += 1;
                i += 4;
            }
            b if plain_octet(b) => {
                label += 1;
                total += 1;
                i += 1;
            }
            _ => return false,
        }
        if label > MAX_LABEL_OCTETS || total > MAX_NAME_OCTETS {
            return false;
        }
    }
    label > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names() {
        for ok in ["", "a", "www.example.com", "a\\032b.example", "x_y-z.0", "\\042.example.com", "a\\046b"] {
            assert!(is_canonical_name(ok), "{ok}");
        }
        let long_label = "a".repeat(64);
        let long_name = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(62)].join(".");
        assert_eq!(long_name.len(), 254);
        for bad in [
            ".", "a.", ".a", "a..b", "A.com", "a b", "a\tb", "a\nb", "*.example.com", "a\\04", "a\\256", "a\\097",
            "a\\065", "a\\", "é.com", &long_label, &long_name,
        ] {
            assert!(!is_canonical_name(bad), "{bad:?}");
        }
        let max_label = format!("{}.com", "\\000".repeat(63));
        assert!(is_canonical_name(&max_label));
        assert!(!is_canonical_name(&format!("{}.com", "\\000".repeat(64))));
    }

    #[test]
    fn pushes_labels_canonically() {
        let mut s = String::new();
        push_label(&mut s, b"Ab*. \x00\xff-_");
        assert_eq!(s, "ab\\042\\046\\032\\000\\255-_");
        assert!(is_canonical_name(&s));
    }
}
