//! The network filter's side of the FFI (DNS over TCP and DoT): Envoy's
//! network-filter hooks translated into [`TcpConn`] calls, and the buffer
//! callbacks they need. Nothing here decides anything.
//!
//! Lifetimes: the filter configuration owns an `Arc<Module>` (as the UDP
//! listener's does, see `ffi.rs`); each connection's filter holds a clone of
//! it in a boxed [`Filter`], made in `filter_new` and taken back in
//! `filter_destroy`, after which Envoy never calls with that pointer again.
//!
//! Re-entrancy: a local answer is written with Envoy's `write`, which runs the
//! connection's write filters, this one included, before it returns. The read
//! hook therefore ends its borrow of the filter before writing, and the write
//! hook lets the module's own answers pass untouched.

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::sync::Arc;

use crate::ffi::{module_destroy, module_new, Buffer, Host};
use crate::module::{now_micros, Module};
use crate::tcp::TcpConn;

const STATUS_CONTINUE: u32 = 0;

extern "C" {
    fn envoy_dynamic_module_callback_network_filter_get_read_buffer_chunks_size(filter: *mut c_void) -> usize;
    fn envoy_dynamic_module_callback_network_filter_get_read_buffer_chunks(filter: *mut c_void, out: *mut Buffer) -> bool;
    fn envoy_dynamic_module_callback_network_filter_get_read_buffer_size(filter: *mut c_void) -> usize;
    fn envoy_dynamic_module_callback_network_filter_drain_read_buffer(filter: *mut c_void, length: usize) -> bool;
    fn envoy_dynamic_module_callback_network_filter_append_read_buffer(filter: *mut c_void, data: Buffer) -> bool;
    fn envoy_dynamic_module_callback_network_filter_get_write_buffer_chunks_size(filter: *mut c_void) -> usize;
    fn envoy_dynamic_module_callback_network_filter_get_write_buffer_chunks(filter: *mut c_void, out: *mut Buffer) -> bool;
    fn envoy_dynamic_module_callback_network_filter_get_write_buffer_size(filter: *mut c_void) -> usize;
    fn envoy_dynamic_module_callback_network_filter_drain_write_buffer(filter: *mut c_void, length: usize) -> bool;
    fn envoy_dynamic_module_callback_network_filter_append_write_buffer(filter: *mut c_void, data: Buffer) -> bool;
    fn envoy_dynamic_module_callback_network_filter_write(filter: *mut c_void, data: Buffer, end_stream: bool);
    fn envoy_dynamic_module_callback_network_filter_get_remote_address(filter: *mut c_void, address: *mut Buffer, port: *mut u32) -> bool;
    fn envoy_dynamic_module_callback_network_filter_is_ssl(filter: *mut c_void) -> bool;
    fn envoy_dynamic_module_callback_network_filter_get_ssl_uri_sans_size(filter: *mut c_void) -> usize;
    fn envoy_dynamic_module_callback_network_filter_get_ssl_uri_sans(filter: *mut c_void, out: *mut Buffer) -> bool;
    fn envoy_dynamic_module_callback_network_filter_get_ssl_subject(filter: *mut c_void, out: *mut Buffer) -> bool;
}

/// The client certificate's identity on a TLS connection: its first URI SAN
/// (a SPIFFE id in a mesh), else its subject; None without a certificate.
///
/// # Safety
/// Only inside a hook of `envoy`'s connection.
unsafe fn tls_peer(envoy: *mut c_void) -> Option<String> {
    // SAFETY: Envoy's buffers for this hook, copied out before it returns.
    unsafe {
        let n = envoy_dynamic_module_callback_network_filter_get_ssl_uri_sans_size(envoy);
        if n > 0 {
            let mut sans = vec![Buffer::NULL; n];
            if envoy_dynamic_module_callback_network_filter_get_ssl_uri_sans(envoy, sans.as_mut_ptr()) {
                if let Some(first) = sans.first().map(|b| String::from_utf8_lossy(b.as_slice()).into_owned()) {
                    if !first.is_empty() {
                        return Some(first);
                    }
                }
            }
        }
        let mut subject = Buffer::NULL;
        if envoy_dynamic_module_callback_network_filter_get_ssl_subject(envoy, &mut subject) {
            let s = String::from_utf8_lossy(subject.as_slice()).into_owned();
            if !s.is_empty() {
                return Some(s);
            }
        }
        None
    }
}

/// One connection's filter.
struct Filter {
    module: Arc<Module>,
    /// Made at the connection's first data (see `connection`).
    conn: Option<TcpConn>,
    /// Set while the filter writes its own answers to the client.
    writing_local: bool,
}

/// Which of the connection's buffers a hook reads.
#[derive(Clone, Copy)]
enum Side {
    Read,
    Write,
}

/// The current buffer's chunks, borrowed from Envoy for the hook; `one`
/// holds the common single chunk without an allocation.
///
/// # Safety
/// Only inside the read (`Side::Read`) or write hook of `envoy`.
unsafe fn chunks<'a>(envoy: *mut c_void, side: Side, one: &'a mut [Buffer; 1], many: &'a mut Vec<Buffer>) -> &'a [Buffer] {
    // SAFETY: the hook's own buffer, valid until the hook returns.
    unsafe {
        let n = match side {
            Side::Read => envoy_dynamic_module_callback_network_filter_get_read_buffer_chunks_size(envoy),
            Side::Write => envoy_dynamic_module_callback_network_filter_get_write_buffer_chunks_size(envoy),
        };
        let out: &mut [Buffer] = if n == 1 {
            one
        } else {
            many.resize(n, Buffer::NULL);
            many
        };
        let ok = n > 0
            && match side {
                Side::Read => envoy_dynamic_module_callback_network_filter_get_read_buffer_chunks(envoy, out.as_mut_ptr()),
                Side::Write => envoy_dynamic_module_callback_network_filter_get_write_buffer_chunks(envoy, out.as_mut_ptr()),
            };
        if ok {
            out
        } else {
            &[]
        }
    }
}

/// `work` over the chunks as byte slices (no allocation for a single chunk).
fn with_slices<T>(bufs: &[Buffer], work: impl FnOnce(&[&[u8]]) -> T) -> T {
    // SAFETY: Envoy's chunks stay valid until the hook that got them returns,
    // and `work` runs inside it.
    match bufs {
        [] => work(&[]),
        [one] => work(&[unsafe { one.as_slice() }]),
        many => work(&many.iter().map(|b| unsafe { b.as_slice() }).collect::<Vec<_>>()),
    }
}

/// Replaces the hook's whole buffer with `bytes`.
///
/// # Safety
/// Only inside the read (`Side::Read`) or write hook of `envoy`.
unsafe fn replace(envoy: *mut c_void, side: Side, bytes: &[u8]) {
    // SAFETY: the hook's own buffer.
    unsafe {
        match side {
            Side::Read => {
                envoy_dynamic_module_callback_network_filter_drain_read_buffer(envoy, envoy_dynamic_module_callback_network_filter_get_read_buffer_size(envoy));
                if !bytes.is_empty() {
                    envoy_dynamic_module_callback_network_filter_append_read_buffer(envoy, Buffer::of(bytes));
                }
            }
            Side::Write => {
                envoy_dynamic_module_callback_network_filter_drain_write_buffer(envoy, envoy_dynamic_module_callback_network_filter_get_write_buffer_size(envoy));
                if !bytes.is_empty() {
                    envoy_dynamic_module_callback_network_filter_append_write_buffer(envoy, Buffer::of(bytes));
                }
            }
        }
    }
}

/// # Safety
/// Called by Envoy only.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_config_new(config_envoy: *mut c_void, _name: Buffer, config: Buffer) -> *const c_void {
    // SAFETY: as Envoy calls it.
    unsafe { module_new(Host::Network, config_envoy, config) }
}

/// # Safety
/// Called by Envoy only.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_config_destroy(config_module: *const c_void) {
    // SAFETY: as Envoy calls it.
    unsafe { module_destroy(config_module) }
}

/// # Safety
/// Called by Envoy only, with a configuration pointer from `config_new`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_new(config_module: *const c_void, _filter_envoy: *mut c_void) -> *mut c_void {
    if config_module.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: the configuration's Arc outlives its filters; this takes one more reference.
    let module = unsafe {
        Arc::increment_strong_count(config_module.cast::<Module>());
        Arc::from_raw(config_module.cast::<Module>())
    };
    Box::into_raw(Box::new(Filter { module, conn: None, writing_local: false })).cast()
}

/// The connection as the module sees it: the peer's address, whether Envoy
/// terminated TLS, and the client certificate's identity. Read at the first
/// data, not when the connection is accepted: a TLS handshake (and with it
/// the peer certificate) completes only after that.
///
/// # Safety
/// Only inside a hook of `envoy`'s connection.
unsafe fn connection(envoy: *mut c_void) -> TcpConn {
    let mut address = Buffer::NULL;
    let mut port = 0u32;
    // SAFETY: the connection's address, borrowed for this hook only (copied by TcpConn::new).
    unsafe {
        let peer = if envoy_dynamic_module_callback_network_filter_get_remote_address(envoy, &mut address, &mut port) {
            std::str::from_utf8(address.as_slice()).unwrap_or("")
        } else {
            ""
        };
        let tls = envoy_dynamic_module_callback_network_filter_is_ssl(envoy);
        let identity = if tls { tls_peer(envoy) } else { None };
        TcpConn::new(peer, u16::try_from(port).unwrap_or(0), tls, identity.as_deref())
    }
}

/// # Safety
/// Called by Envoy only, with this filter's pointers.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_new_connection(_filter_envoy: *mut c_void, _filter_module: *mut c_void) -> u32 {
    STATUS_CONTINUE // the connection is read at its first data (see `connection`)
}

/// # Safety
/// Called by Envoy only, with this filter's pointers.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_read(filter_envoy: *mut c_void, filter_module: *mut c_void, _length: usize, _end_stream: bool) -> u32 {
    let filter = filter_module.cast::<Filter>();
    if filter.is_null() {
        return STATUS_CONTINUE;
    }
    let (mut one, mut many) = ([Buffer::NULL; 1], Vec::new());
    let outcome = {
        // SAFETY: the filter's own pointer; this borrow ends before any write below.
        let f = unsafe { &mut *filter };
        // SAFETY: inside the read hook.
        let conn = f.conn.get_or_insert_with(|| unsafe { connection(filter_envoy) });
        // SAFETY: inside the read hook.
        let bufs = unsafe { chunks(filter_envoy, Side::Read, &mut one, &mut many) };
        with_slices(bufs, |slices| conn.on_read(&f.module, slices, now_micros()))
    };
    if let Some(bytes) = &outcome.replace {
        // SAFETY: inside the read hook.
        unsafe { replace(filter_envoy, Side::Read, bytes) };
    }
    for answer in &outcome.answers {
        // SAFETY: no borrow of the filter is live: the write hook this re-enters borrows it afresh.
        unsafe {
            (*filter).writing_local = true;
            envoy_dynamic_module_callback_network_filter_write(filter_envoy, Buffer::of(answer), false);
            (*filter).writing_local = false;
        }
    }
    STATUS_CONTINUE
}

/// # Safety
/// Called by Envoy only, with this filter's pointers.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_write(filter_envoy: *mut c_void, filter_module: *mut c_void, _length: usize, _end_stream: bool) -> u32 {
    if filter_module.is_null() {
        return STATUS_CONTINUE;
    }
    // SAFETY: the filter's own pointer; the read hook holds no borrow while it writes.
    let f = unsafe { &mut *filter_module.cast::<Filter>() };
    if f.writing_local {
        return STATUS_CONTINUE; // the module's own answer, already whole
    }
    // nothing to pair before the client's first query
    let Some(conn) = f.conn.as_mut() else { return STATUS_CONTINUE };
    let (mut one, mut many) = ([Buffer::NULL; 1], Vec::new());
    // SAFETY: inside the write hook.
    let bufs = unsafe { chunks(filter_envoy, Side::Write, &mut one, &mut many) };
    if let Some(bytes) = with_slices(bufs, |slices| conn.on_write(&f.module, slices, now_micros())) {
        // SAFETY: inside the write hook.
        unsafe { replace(filter_envoy, Side::Write, &bytes) };
    }
    STATUS_CONTINUE
}

/// # Safety
/// Called by Envoy only.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_event(_filter_envoy: *mut c_void, _filter_module: *mut c_void, _event: u32) {
    // what is still waiting is reported when the filter is destroyed
}

/// # Safety
/// Called by Envoy only, once, with this filter's pointer.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_destroy(filter_module: *mut c_void) {
    if filter_module.is_null() {
        return;
    }
    // SAFETY: the pointer came from Box::into_raw in filter_new and is given back once.
    let mut f = unsafe { Box::from_raw(filter_module.cast::<Filter>()) };
    let Filter { module, conn, .. } = &mut *f;
    if let Some(conn) = conn {
        conn.on_close(module, now_micros());
    }
}

// Hooks Envoy resolves for every network filter; this one has no use for them.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_above_write_buffer_high_watermark(_filter_envoy: *mut c_void, _filter_module: *mut c_void) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_below_write_buffer_low_watermark(_filter_envoy: *mut c_void, _filter_module: *mut c_void) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_scheduled(_filter_envoy: *mut c_void, _filter_module: *mut c_void, _event_id: u64) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_config_scheduled(_config_envoy: *mut c_void, _config_module: *const c_void, _event_id: u64) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_http_callout_done(
    _filter_envoy: *mut c_void,
    _filter_module: *mut c_void,
    _callout_id: u64,
    _result: u32,
    _headers: *const c_void,
    _headers_size: usize,
    _body_chunks: *const c_void,
    _body_chunks_size: usize,
) {
}
