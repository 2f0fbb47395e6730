//! HTTP filter: DNS over HTTPS (RFC 8484), POST application/dns-message and
//! GET ?dns=<base64url>. Bodies are read at end of stream (the filter pauses
//! body iteration until then; Envoy's buffer filter bounds the size). A query
//! the policy blocks gets a local HTTP 200 with the filter's DNS answer.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::attribution;
use crate::dns::{self, Outcome};
use crate::state::{self, Stat};

const CONTENT_TYPE: &str = "application/dns-message";
const MAX_DOH_MESSAGE: usize = 65_535;

pub struct DnsDoh {
    id: u32,
    enforce: bool,
    post_query: bool,
    dns_response: bool,
}

impl DnsDoh {
    pub fn new(id: u32, enforce: bool) -> Self {
        DnsDoh { id, enforce, post_query: false, dns_response: false }
    }

    /// Observes the query; answers it locally (and says so) if the policy blocks it.
    fn query(&mut self, bytes: &[u8]) -> bool {
        let client = Rc::new(attribution::client(self).0);
        match dns::on_query(self.id, bytes, &client, "doh", self.enforce) {
            Outcome::Forward => false,
            Outcome::Answer(answer) if answer.is_empty() => {
                self.send_http_response(403, vec![], None);
                true
            }
            Outcome::Answer(answer) => {
                self.send_http_response(
                    200,
                    vec![("content-type", CONTENT_TYPE), ("cache-control", "no-store"), ("x-dnsguard", "blocked")],
                    Some(&answer),
                );
                true
            }
        }
    }
}

/// The value of the `dns` parameter of a request path, base64url-decoded.
pub fn get_query_param(path: &str) -> Option<Vec<u8>> {
    let (_, query) = path.split_once('?')?;
    let value = query.split('&').find_map(|kv| kv.strip_prefix("dns="))?;
    base64url_decode(value)
}

/// RFC 4648 base64url without padding (padding tolerated).
pub fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    if s.len() > MAX_DOH_MESSAGE * 4 / 3 + 4 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        return None; // a single leftover character cannot encode a byte
    }
    Some(out)
}

impl Context for DnsDoh {}

impl HttpContext for DnsDoh {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let method = self.get_http_request_header(":method").unwrap_or_default();
        if method == "GET" {
            let path = self.get_http_request_header(":path").unwrap_or_default();
            if path.contains("dns=") {
                match get_query_param(&path) {
                    Some(bytes) => {
                        if self.query(&bytes) {
                            return Action::Pause;
                        }
                    }
                    None => state::with(|vm| vm.count(Stat::ParseErrors, 1)),
                }
            }
        } else if method == "POST" {
            let ct = self.get_http_request_header("content-type").unwrap_or_default();
            self.post_query = ct.trim().eq_ignore_ascii_case(CONTENT_TYPE);
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.post_query {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        if let Some(body) = self.get_http_request_body(0, body_size.min(MAX_DOH_MESSAGE)) {
            if self.query(&body) {
                return Action::Pause;
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let ct = self.get_http_response_header("content-type").unwrap_or_default();
        self.dns_response = ct.trim().eq_ignore_ascii_case(CONTENT_TYPE);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.dns_response {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        if let Some(body) = self.get_http_response_body(0, body_size.min(MAX_DOH_MESSAGE)) {
            dns::on_response(self.id, &body);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        dns::on_close(self.id);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn decodes_rfc8484_example() {
        // RFC 8484 section 4.1.1: www.example.com A, id 0
        let q = get_query_param("/dns-query?dns=AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB").unwrap();
        let m = dnswire::parse_message(&q).unwrap();
        assert_eq!(m.questions[0].name, "www.example.com");
        assert!(base64url_decode("a").is_none());
        assert!(base64url_decode("a$b").is_none());
    }
}
