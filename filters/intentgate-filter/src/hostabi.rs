//! Host calls the SDK only offers in a form that panics on a host error (and a panic kills the VM).

use proxy_wasm::types::{MapType, Status};

extern "C" {
    fn proxy_set_header_map_pairs(map_type: MapType, map_data: *const u8, map_size: usize) -> Status;
}

/// Set the whole request header map in one host call (Envoy clears the map and adds these pairs),
/// where the SDK's `set_map` would panic on an error.
pub fn set_request_headers(pairs: &[(&str, &[u8])]) -> Result<(), Status> {
    if pairs.is_empty() {
        return Ok(());
    }
    let serialized = serialize(pairs);
    // SAFETY: the pointer and length describe `serialized`, which outlives the call; the host only
    // reads it.
    match unsafe { proxy_set_header_map_pairs(MapType::HttpRequestHeaders, serialized.as_ptr(), serialized.len()) } {
        Status::Ok => Ok(()),
        status => Err(status),
    }
}

/// The proxy-wasm header map wire form: the pair count, each pair's key and value lengths (u32
/// little-endian), then every key and value followed by a NUL.
fn serialize(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let size: usize = 4 + pairs.iter().map(|(k, v)| 8 + k.len() + v.len() + 2).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}
