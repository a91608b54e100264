//! Baselines for `scripts/bench`, not part of intentgate: the smallest proxy-wasm HTTP filter, to
//! price what Envoy's Wasm filter costs per request before a filter does any work of its own.
//!
//! The plugin configuration picks the HTTP context:
//! * anything but `headers` — [`Noop`]: every callback returns `Continue` and makes no host call;
//! * `headers` — [`Headers`]: reads all request headers in one host call and sets one header, the
//!   least an authorizing filter does.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { headers: false }) });
}}

struct Root {
    headers: bool,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX);
        self.headers = matches!(config, Ok(Some(bytes)) if bytes.as_slice() == b"headers");
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        if self.headers {
            Some(Box::new(Headers))
        } else {
            Some(Box::new(Noop))
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Continue from every callback; no host call.
struct Noop;

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }

    fn on_http_response_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        Action::Continue
    }
}

/// Reads every request header (one host call) and sets one (one host call).
struct Headers;

impl Context for Headers {}

impl HttpContext for Headers {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let count = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).map_or(0, |headers| headers.len());
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, "x-noop-headers", Some(&count.to_string()));
        Action::Continue
    }
}
