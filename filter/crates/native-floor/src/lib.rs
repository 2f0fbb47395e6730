//! The cost floor of an Envoy dynamic-module network filter, for
//! `bench/bench_filter.py`: every hook returns at once and calls nothing
//! back. What Envoy spends here is spent by any native network filter,
//! whatever it does; dnsguard's native module (`crates/native`) is set beside
//! it. Loaded as module `dnsguard_native_floor`.

#![allow(unsafe_code)] // #[no_mangle] exports only: nothing here dereferences a pointer

use std::ffi::{c_char, c_void};

/// Envoy keeps the configuration and filter pointers it is given and only
/// hands them back; any non-null address will do.
static TOKEN: u8 = 0;

fn token() -> *mut c_void {
    std::ptr::addr_of!(TOKEN).cast_mut().cast()
}

#[repr(C)]
pub struct Buffer {
    ptr: *const c_char,
    length: usize,
}

const STATUS_CONTINUE: u32 = 0;
static ABI_VERSION: &[u8] = b"dnsguard-native-floor envoy-1.40\0";

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    ABI_VERSION.as_ptr().cast()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_config_new(_config_envoy: *mut c_void, _name: Buffer, _config: Buffer) -> *const c_void {
    token()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_config_destroy(_config_module: *const c_void) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_new(_config_module: *const c_void, _filter_envoy: *mut c_void) -> *mut c_void {
    token()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_new_connection(_filter_envoy: *mut c_void, _filter_module: *mut c_void) -> u32 {
    STATUS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_read(_filter_envoy: *mut c_void, _filter_module: *mut c_void, _length: usize, _end_stream: bool) -> u32 {
    STATUS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_write(_filter_envoy: *mut c_void, _filter_module: *mut c_void, _length: usize, _end_stream: bool) -> u32 {
    STATUS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_event(_filter_envoy: *mut c_void, _filter_module: *mut c_void, _event: u32) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_destroy(_filter_module: *mut c_void) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_above_write_buffer_high_watermark(_filter_envoy: *mut c_void, _filter_module: *mut c_void) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_below_write_buffer_low_watermark(_filter_envoy: *mut c_void, _filter_module: *mut c_void) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_scheduled(_filter_envoy: *mut c_void, _filter_module: *mut c_void, _event_id: u64) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_config_scheduled(_config_envoy: *mut c_void, _config_module: *const c_void, _event_id: u64) {}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
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
