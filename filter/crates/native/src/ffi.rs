//! The thin, unsafe layer between Envoy's dynamic-module ABI (Envoy 1.40,
//! `source/extensions/dynamic_modules/abi/abi.h`) and [`Module`]: the UDP
//! listener filter's event hooks, the configuration hooks both filters share
//! (`module_new`, `module_destroy`; the network filter's own hooks are in
//! `ffi_tcp.rs`), and the callbacks Envoy exports (resolved when Envoy loads
//! the library). Nothing here decides anything.
//!
//! Lifetimes: `config_new` leaks an `Arc<Module>` into the pointer Envoy keeps
//! for the filter configuration; each filter (one per worker's listener) gets
//! that same pointer back and only borrows it; `config_destroy` takes the Arc
//! back, stops the module's threads and drops it.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::sync::Arc;

use crate::config::Config;
use crate::module::{now_micros, Gauge, Module, Reply, Stat, StatsSink};

extern "C" {
    // glibc (Linux): nice values are per thread, so this touches only the caller
    fn setpriority(which: c_int, who: c_uint, prio: c_int) -> c_int;
    fn gettid() -> c_int;
}

/// The lowest CPU priority (nice 19) for the calling thread: the module's own
/// shipping and feed threads yield to Envoy's workers under contention. When
/// the CPU never frees up, the event queue fills and drops its oldest events
/// (counted), the designed degradation; DNS is never the one to wait.
fn background_priority() {
    const PRIO_PROCESS: c_int = 0;
    // SAFETY: plain syscalls on the calling thread's own id; failure only
    // leaves the priority unchanged.
    unsafe {
        let tid = gettid();
        let _ = setpriority(PRIO_PROCESS, c_uint::try_from(tid).unwrap_or(0), 19);
    }
}

/// `envoy_dynamic_module_type_envoy_buffer` and `..._module_buffer`: a pointer and a length.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Buffer {
    ptr: *const c_char,
    length: usize,
}

impl Buffer {
    pub(crate) const NULL: Buffer = Buffer { ptr: std::ptr::null(), length: 0 };

    pub(crate) fn of(bytes: &[u8]) -> Buffer {
        Buffer { ptr: bytes.as_ptr().cast(), length: bytes.len() }
    }

    /// # Safety
    /// `ptr` must point at `length` readable bytes for the returned lifetime.
    pub(crate) unsafe fn as_slice<'a>(&self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            return &[];
        }
        // SAFETY: Envoy hands out buffers valid for the duration of the hook.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.length) }
    }
}

const STATUS_CONTINUE: u32 = 0;
const STATUS_STOP_ITERATION: u32 = 1;
const METRICS_SUCCESS: u32 = 0;

extern "C" {
    fn envoy_dynamic_module_callback_udp_listener_filter_get_datagram_data_chunks_size(filter: *mut c_void) -> usize;
    fn envoy_dynamic_module_callback_udp_listener_filter_get_datagram_data_chunks(filter: *mut c_void, out: *mut Buffer) -> bool;
    fn envoy_dynamic_module_callback_udp_listener_filter_get_peer_address(
        filter: *mut c_void,
        address: *mut Buffer,
        port: *mut u32,
    ) -> bool;
    fn envoy_dynamic_module_callback_udp_listener_filter_send_datagram(
        filter: *mut c_void,
        data: Buffer,
        peer_address: Buffer,
        peer_port: u32,
    ) -> bool;
    fn envoy_dynamic_module_callback_udp_listener_filter_config_define_counter(
        config: *mut c_void,
        name: Buffer,
        id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_udp_listener_filter_config_define_gauge(
        config: *mut c_void,
        name: Buffer,
        id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_udp_listener_filter_config_increment_counter(
        config: *mut c_void,
        id: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_udp_listener_filter_config_set_gauge(config: *mut c_void, id: usize, value: u64) -> u32;

    fn envoy_dynamic_module_callback_network_filter_config_define_counter(config: *mut c_void, name: Buffer, id: *mut usize) -> u32;
    fn envoy_dynamic_module_callback_network_filter_config_define_gauge(config: *mut c_void, name: Buffer, id: *mut usize) -> u32;
    fn envoy_dynamic_module_callback_network_filter_config_increment_counter(config: *mut c_void, id: usize, value: u64) -> u32;
    fn envoy_dynamic_module_callback_network_filter_config_set_gauge(config: *mut c_void, id: usize, value: u64) -> u32;
}

/// Which of Envoy's filter configurations holds the module: each has its own stat callbacks.
#[derive(Clone, Copy)]
pub(crate) enum Host {
    UdpListener,
    Network,
}

/// The module's stats as Envoy stats, defined on the filter configuration.
/// Envoy's counters and gauges are atomic, so any thread may add to them.
struct EnvoyStats {
    host: Host,
    config: *mut c_void,
    counters: Vec<usize>,
    gauges: Vec<usize>,
}

// SAFETY: `config` is Envoy's filter-configuration object, alive until
// config_destroy (which stops every thread using it first); the stat
// callbacks only touch atomic Envoy stats.
unsafe impl Send for EnvoyStats {}
unsafe impl Sync for EnvoyStats {}

impl StatsSink for EnvoyStats {
    fn count(&self, stat: Stat, n: u64) {
        let Some(&id) = Stat::ALL.iter().position(|s| *s == stat).and_then(|i| self.counters.get(i)) else { return };
        // SAFETY: see the Send/Sync note above.
        unsafe {
            match self.host {
                Host::UdpListener => envoy_dynamic_module_callback_udp_listener_filter_config_increment_counter(self.config, id, n),
                Host::Network => envoy_dynamic_module_callback_network_filter_config_increment_counter(self.config, id, n),
            }
        };
    }

    fn gauge(&self, gauge: Gauge, value: u64) {
        let Some(&id) = Gauge::ALL.iter().position(|g| *g == gauge).and_then(|i| self.gauges.get(i)) else { return };
        // SAFETY: see the Send/Sync note above.
        unsafe {
            match self.host {
                Host::UdpListener => envoy_dynamic_module_callback_udp_listener_filter_config_set_gauge(self.config, id, value),
                Host::Network => envoy_dynamic_module_callback_network_filter_config_set_gauge(self.config, id, value),
            }
        };
    }
}

/// The ABI this module was written against; Envoy 1.40 warns (and loads) when it differs.
static ABI_VERSION: &[u8] = b"dnsguard-native envoy-1.40\0";

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    ABI_VERSION.as_ptr().cast()
}

/// A filter configuration's module: the configuration parsed, the stats
/// defined on `config_envoy`, the threads started. Null (Envoy refuses the
/// configuration) on any error, which is logged.
///
/// # Safety
/// `config_envoy` is the `host` configuration Envoy is creating; `config` its bytes.
pub(crate) unsafe fn module_new(host: Host, config_envoy: *mut c_void, config: Buffer) -> *const c_void {
    // SAFETY: the configuration bytes are valid for this call.
    let text = unsafe { config.as_slice() };
    let parsed = match Config::parse(text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dnsguard-native: refusing the configuration: {e}");
            return std::ptr::null();
        }
    };
    let mut counters = Vec::new();
    let mut gauges = Vec::new();
    for (names, ids, gauge) in [
        (Stat::ALL.iter().map(|s| s.name()).collect::<Vec<_>>(), &mut counters, false),
        (Gauge::ALL.iter().map(|g| g.name()).collect::<Vec<_>>(), &mut gauges, true),
    ] {
        for name in names {
            let mut id = 0usize;
            // Envoy puts a UDP listener filter's stats under its filter name
            // (dnsguard.*); a network filter's under none: they get their own
            let name = match host {
                Host::UdpListener => name.to_string(),
                Host::Network => format!("dnsguard_tcp.{name}"),
            };
            let name_buf = Buffer::of(name.as_bytes());
            // SAFETY: config_envoy is the configuration Envoy is creating; the name outlives the call.
            let r = unsafe {
                match (host, gauge) {
                    (Host::UdpListener, true) => envoy_dynamic_module_callback_udp_listener_filter_config_define_gauge(config_envoy, name_buf, &mut id),
                    (Host::UdpListener, false) => envoy_dynamic_module_callback_udp_listener_filter_config_define_counter(config_envoy, name_buf, &mut id),
                    (Host::Network, true) => envoy_dynamic_module_callback_network_filter_config_define_gauge(config_envoy, name_buf, &mut id),
                    (Host::Network, false) => envoy_dynamic_module_callback_network_filter_config_define_counter(config_envoy, name_buf, &mut id),
                }
            };
            if r != METRICS_SUCCESS {
                eprintln!("dnsguard-native: cannot define stat {name} ({r})");
                return std::ptr::null();
            }
            ids.push(id);
        }
    }
    let stats = Box::new(EnvoyStats { host, config: config_envoy, counters, gauges });
    let module = match Module::new(parsed, stats) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            eprintln!("dnsguard-native: {e}");
            return std::ptr::null();
        }
    };
    if let Err(e) = module.start(background_priority) {
        eprintln!("dnsguard-native: cannot start: {e}");
        return std::ptr::null();
    }
    Arc::into_raw(module).cast()
}

/// Gives a configuration's module back: its threads stop, and it is dropped
/// once no filter holds it.
///
/// # Safety
/// `config_module` came from [`module_new`] and is given back once.
pub(crate) unsafe fn module_destroy(config_module: *const c_void) {
    if config_module.is_null() {
        return;
    }
    // SAFETY: the pointer came from Arc::into_raw in module_new and is given back once.
    let module = unsafe { Arc::from_raw(config_module.cast::<Module>()) };
    module.stop();
}

/// # Safety
/// Called by Envoy only, with the pointers it made for this filter (see the module docs).
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_udp_listener_filter_config_new(
    config_envoy: *mut c_void,
    _name: Buffer,
    config: Buffer,
) -> *const c_void {
    // SAFETY: as Envoy calls it.
    unsafe { module_new(Host::UdpListener, config_envoy, config) }
}

/// # Safety
/// Called by Envoy only, with the pointers it made for this filter (see the module docs).
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_udp_listener_filter_config_destroy(config_module: *const c_void) {
    // SAFETY: as Envoy calls it.
    unsafe { module_destroy(config_module) }
}

/// # Safety
/// Called by Envoy only, with the pointers it made for this filter (see the module docs).
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_udp_listener_filter_new(config_module: *const c_void, _filter_envoy: *mut c_void) -> *const c_void {
    // every filter borrows the configuration's module
    config_module
}

/// # Safety
/// Called by Envoy only, with the pointers it made for this filter (see the module docs).
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_udp_listener_filter_on_data(filter_envoy: *mut c_void, filter_module: *const c_void) -> u32 {
    if filter_module.is_null() {
        return STATUS_CONTINUE;
    }
    // SAFETY: the configuration (and so this Module) outlives its filters.
    let module = unsafe { &*filter_module.cast::<Module>() };
    // SAFETY: the datagram and peer buffers stay valid during this hook.
    let mut one = [Buffer::NULL; 1];
    let mut many = Vec::new();
    let (data, peer_ip, peer_port) = unsafe {
        let n = envoy_dynamic_module_callback_udp_listener_filter_get_datagram_data_chunks_size(filter_envoy);
        // a datagram is one chunk: no allocation for it on this path
        let chunks: &mut [Buffer] = if n == 1 {
            &mut one
        } else {
            many.resize(n, Buffer::NULL);
            &mut many
        };
        if n == 0 || !envoy_dynamic_module_callback_udp_listener_filter_get_datagram_data_chunks(filter_envoy, chunks.as_mut_ptr()) {
            return STATUS_CONTINUE;
        }
        let data: std::borrow::Cow<'_, [u8]> = match &*chunks {
            [one] => one.as_slice().into(),
            many => many.iter().flat_map(|c| c.as_slice().iter().copied()).collect::<Vec<u8>>().into(),
        };
        let mut address = Buffer::NULL;
        let mut port = 0u32;
        // borrowed from Envoy for this hook; an address that is not UTF-8 (never seen) is empty
        let peer = if envoy_dynamic_module_callback_udp_listener_filter_get_peer_address(filter_envoy, &mut address, &mut port) {
            std::str::from_utf8(address.as_slice()).unwrap_or("")
        } else {
            ""
        };
        (data, peer, port)
    };
    match module.on_datagram(&data, peer_ip, u16::try_from(peer_port).unwrap_or(0), now_micros()) {
        Reply::Pass => STATUS_CONTINUE,
        Reply::Answer(bytes) => {
            // SAFETY: a null peer address answers the datagram's own sender.
            unsafe { envoy_dynamic_module_callback_udp_listener_filter_send_datagram(filter_envoy, Buffer::of(&bytes), Buffer::NULL, 0) };
            STATUS_STOP_ITERATION
        }
        Reply::Swallow => STATUS_STOP_ITERATION,
    }
}

/// # Safety
/// Called by Envoy only, with the pointers it made for this filter (see the module docs).
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_udp_listener_filter_destroy(_filter_module: *const c_void) {
    // the filter only borrowed the configuration's module
}
