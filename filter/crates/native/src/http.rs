//! A small HTTP/1.1 client for the module's own threads (never a worker
//! thread): `Content-Length` bodies, bounded reads and timeouts. The feed
//! poller makes one request per connection ([`request`]); the event shipper
//! keeps one connection open across its POSTs ([`Connection`]), since a
//! connect per batch costs about as much as encoding the batch. The collector
//! and the feed server answer this way.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the connection may carry another request (the server framed
    /// the body with `Content-Length` and did not ask to close).
    reusable: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

const MAX_HEADER_BYTES: usize = 64 * 1024;

/// One request: `method path` with `headers` and `body`; at most `max_body`
/// bytes of the answer's body are read.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    pub max_body: usize,
}

fn resolve(address: &str) -> Result<SocketAddr, String> {
    address
        .to_socket_addrs()
        .map_err(|e| format!("{address}: {e}"))?
        .next()
        .ok_or_else(|| format!("{address}: no address"))
}

fn connect(address: &str, timeout: Duration) -> Result<BufReader<TcpStream>, String> {
    let addr = resolve(address)?;
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(2_000).min(timeout)).map_err(|e| format!("{address}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    Ok(BufReader::new(stream))
}

/// What went wrong in one exchange, and whether the request may be sent
/// again on a new connection: only when the server closed a kept connection
/// before answering anything (it timed the idle connection out).
struct Failed {
    error: String,
    retry: bool,
}

impl Failed {
    fn io(e: std::io::Error) -> Failed {
        Failed { error: e.to_string(), retry: false }
    }
}

fn exchange(conn: &mut BufReader<TcpStream>, address: &str, req: &Request<'_>, keep_alive: bool) -> Result<Response, Failed> {
    let Request { method, path, headers, body, max_body } = *req;
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {address}\r\nconnection: {connection}\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let stream = conn.get_mut();
    let sent = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body));
    if let Err(e) = sent {
        return Err(Failed { error: e.to_string(), retry: keep_alive });
    }
    let mut line = String::new();
    let n = conn.read_line(&mut line).map_err(|e| Failed { error: e.to_string(), retry: keep_alive })?;
    if n == 0 {
        return Err(Failed { error: "connection closed before an answer".into(), retry: keep_alive });
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| Failed { error: format!("bad status line {:?}", line.trim_end()), retry: false })?;
    let mut headers = Vec::new();
    let mut seen = line.len();
    loop {
        line.clear();
        let n = conn.read_line(&mut line).map_err(Failed::io)?;
        seen += n;
        if n == 0 || seen > MAX_HEADER_BYTES {
            return Err(Failed { error: "headers truncated or too large".into(), retry: false });
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let length = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse::<usize>().ok());
    let closes = headers.iter().any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
    let mut body = Vec::new();
    match length {
        Some(n) if n > max_body => return Err(Failed { error: format!("body of {n} bytes exceeds {max_body}"), retry: false }),
        Some(n) => {
            body.resize(n, 0);
            conn.read_exact(&mut body).map_err(Failed::io)?;
        }
        None => {
            conn.take(max_body as u64 + 1).read_to_end(&mut body).map_err(Failed::io)?;
            if body.len() > max_body {
                return Err(Failed { error: format!("body exceeds {max_body}"), retry: false });
            }
        }
    }
    Ok(Response { status, headers, body, reusable: keep_alive && length.is_some() && !closes })
}

/// Sends `req` to `address` on a connection of its own.
pub fn request(address: &str, req: &Request<'_>, timeout: Duration) -> Result<Response, String> {
    let mut conn = connect(address, timeout)?;
    exchange(&mut conn, address, req, false).map_err(|f| f.error)
}

/// One kept-alive connection to `address`, opened on first use and again
/// after the server closes it or an exchange fails.
pub struct Connection {
    address: String,
    timeout: Duration,
    open: Option<BufReader<TcpStream>>,
}

impl Connection {
    pub fn new(address: &str, timeout: Duration) -> Connection {
        Connection { address: address.to_owned(), timeout, open: None }
    }

    /// Whether a connection is open now (for tests and stats).
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// As [`request`], on the kept connection. A request that a kept
    /// connection could not carry (closed by the server while idle) is sent
    /// once more on a new one; any other failure closes the connection.
    pub fn request(&mut self, req: &Request<'_>) -> Result<Response, String> {
        let reused = self.open.is_some();
        let mut conn = match self.open.take() {
            Some(c) => c,
            None => connect(&self.address, self.timeout)?,
        };
        let answer = match exchange(&mut conn, &self.address, req, true) {
            Err(f) if f.retry && reused => {
                conn = connect(&self.address, self.timeout)?;
                exchange(&mut conn, &self.address, req, true)
            }
            other => other,
        };
        match answer {
            Ok(r) => {
                if r.reusable {
                    self.open = Some(conn);
                }
                Ok(r)
            }
            Err(f) => Err(f.error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Connection, Request};

    fn post(body: &[u8]) -> Request<'_> {
        Request { method: "POST", path: "/v1/events", headers: &[], body, max_body: 1024 }
    }

    /// A server that answers `per_connection` requests on each connection it
    /// accepts and then closes it; counts the connections.
    fn server(per_connection: usize) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| unreachable!("{e}"));
        let address = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepted);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut reader = BufReader::new(conn.try_clone().unwrap_or_else(|e| unreachable!("{e}")));
                let mut conn = conn;
                for _ in 0..per_connection {
                    let mut length = 0usize;
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    loop {
                        line.clear();
                        let _ = reader.read_line(&mut line);
                        let l = line.trim_end().to_ascii_lowercase();
                        if l.is_empty() {
                            break;
                        }
                        if let Some(v) = l.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    let _ = conn.write_all(format!("HTTP/1.1 202 Accepted\r\ncontent-length: {}\r\n\r\n", body.len()).as_bytes());
                    let _ = conn.write_all(&body);
                }
            }
        });
        (address, accepted)
    }

    #[test]
    fn posts_share_one_connection_while_the_server_keeps_it() {
        let (address, accepted) = server(usize::MAX);
        let mut c = Connection::new(&address, Duration::from_secs(5));
        for i in 0..5 {
            let body = format!("batch {i}");
            let r = c.request(&post(body.as_bytes())).unwrap_or_else(|e| unreachable!("{e}"));
            assert_eq!((r.status, r.body), (202, body.into_bytes()));
        }
        assert!(c.is_open());
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_connection_the_server_closed_is_replaced_and_the_post_still_arrives() {
        let (address, accepted) = server(2);
        let mut c = Connection::new(&address, Duration::from_secs(5));
        for i in 0..5 {
            let body = format!("batch {i}");
            let r = c.request(&post(body.as_bytes())).unwrap_or_else(|e| unreachable!("{e}"));
            assert_eq!((r.status, r.body), (202, body.into_bytes()));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn nothing_listening_is_an_error_not_a_hang() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| unreachable!("{e}"));
        let address = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        drop(listener);
        let mut c = Connection::new(&address, Duration::from_secs(2));
        assert!(c.request(&post(b"x")).is_err());
        assert!(!c.is_open());
    }
}
