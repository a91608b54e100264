//! Request path normalisation. Rules match the normalised path, and the adapter forwards that same
//! path upstream, so what was authorised is what the upstream serves.

/// A request target split into its normalised path and its untouched query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalisedPath {
    pub path: String,
    /// The query including its leading `?`, or empty.
    pub query: String,
}

impl NormalisedPath {
    /// The request target to forward: normalised path plus the original query.
    pub fn target(&self) -> String {
        format!("{}{}", self.path, self.query)
    }
}

/// Why a path could not be normalised safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotOriginForm,
    BadPercentEncoding,
    /// `%2F`, `%5C`: a segment boundary the upstream may or may not see.
    EncodedSeparator,
    /// NUL or another control character, raw or encoded.
    ControlCharacter,
    /// `%25`: decoding once leaves a `%` that a second decoder would act on.
    DoubleEncoding,
    NotUtf8,
    Backslash,
    /// `..` above the root.
    EscapesRoot,
}

/// Normalise an origin-form request target (`:path`): percent-decode once, resolve dot segments,
/// collapse repeated slashes. Anything ambiguous is an error, never a guess.
pub fn normalise(target: &str) -> Result<NormalisedPath, PathError> {
    let target = target.split('#').next().unwrap_or("");
    let (raw_path, query) = match target.find('?') {
        Some(i) => target.split_at(i),
        None => (target, ""),
    };
    if !raw_path.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    let decoded = percent_decode_once(raw_path)?;
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::EscapesRoot);
                }
            }
            s => segments.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for s in &segments {
        path.push('/');
        path.push_str(s);
    }
    // keep a trailing slash: `/dir/` and `/dir` may be different resources upstream
    if path.is_empty() || (decoded.ends_with('/') && !segments.is_empty()) {
        path.push('/');
    }
    Ok(NormalisedPath { path, query: query.to_string() })
}

fn percent_decode_once(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|c| hex_value(*c));
            let lo = bytes.get(i + 2).and_then(|c| hex_value(*c));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadPercentEncoding);
            };
            let decoded = hi * 16 + lo;
            match decoded {
                b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                b'%' => return Err(PathError::DoubleEncoding),
                c if c < 0x20 || c == 0x7f => return Err(PathError::ControlCharacter),
                c => out.push(c),
            }
            i += 3;
        } else {
            match b {
                b'\\' => return Err(PathError::Backslash),
                c if c < 0x20 || c == 0x7f => return Err(PathError::ControlCharacter),
                c => out.push(c),
            }
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| PathError::NotUtf8)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn normalises_or_refuses() {
        let ok = [
            ("/", "/"),
            ("/api/tickets", "/api/tickets"),
            ("/api//tickets", "/api/tickets"),
            ("/api/./tickets", "/api/tickets"),
            ("/api/x/../tickets", "/api/tickets"),
            ("/api/%74ickets", "/api/tickets"),
            ("/api/tickets/", "/api/tickets/"),
            ("/api/caf%C3%A9", "/api/café"),
        ];
        for (input, want) in ok {
            assert_eq!(normalise(input).map(|p| p.path), Ok(want.to_string()), "{input}");
        }
        assert_eq!(normalise("/a/b?x=%2F&y=1").map(|p| p.target()), Ok("/a/b?x=%2F&y=1".to_string()));
        let bad = [
            ("api", PathError::NotOriginForm),
            ("/a%2Fb", PathError::EncodedSeparator),
            ("/a%2fb", PathError::EncodedSeparator),
            ("/a%5Cb", PathError::EncodedSeparator),
            ("/a%00b", PathError::ControlCharacter),
            ("/a\u{0}b", PathError::ControlCharacter),
            ("/a%252Fb", PathError::DoubleEncoding),
            ("/a%zz", PathError::BadPercentEncoding),
            ("/a%4", PathError::BadPercentEncoding),
            ("/a%C3", PathError::NotUtf8),
            ("/a\\b", PathError::Backslash),
            ("/../etc", PathError::EscapesRoot),
            ("/a/%2e%2e/%2e%2e/etc", PathError::EscapesRoot),
        ];
        for (input, want) in bad {
            assert_eq!(normalise(input), Err(want), "{input}");
        }
    }
}
