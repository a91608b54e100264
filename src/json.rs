//! A strict JSON reader for bodies the decision depends on. It refuses what lets two parsers read one
//! document differently — a key given twice in any object — and bounds depth and size, so hostile
//! input is an error, never a stack overflow or an unbounded allocation.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

/// Nesting deeper than this is refused (serde_json's own limit, 128, is a backstop).
pub const MAX_DEPTH: usize = 32;
/// Values (objects, arrays, scalars and keys) in one document.
pub const MAX_NODES: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON, truncated, or trailing bytes.
    Syntax,
    DuplicateKey,
    TooDeep,
    TooManyValues,
}

/// Parse `bytes` as one JSON document under the limits above.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    let verdict = Cell::new(None);
    let nodes = Cell::new(0usize);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = Strict { depth: 0, nodes: &nodes, verdict: &verdict };
    let value = seed.deserialize(&mut de).map_err(|_| verdict.get().unwrap_or(JsonError::Syntax))?;
    de.end().map_err(|_| JsonError::Syntax)?;
    Ok(value)
}

struct Strict<'a> {
    depth: usize,
    nodes: &'a Cell<usize>,
    /// Why parsing stopped, when it was one of our limits rather than a syntax error.
    verdict: &'a Cell<Option<JsonError>>,
}

impl Strict<'_> {
    fn fail<E: serde::de::Error>(&self, why: JsonError) -> E {
        self.verdict.set(Some(why));
        E::custom("refused")
    }

    fn count<E: serde::de::Error>(&self) -> Result<(), E> {
        let n = self.nodes.get() + 1;
        self.nodes.set(n);
        if n > MAX_NODES {
            return Err(self.fail(JsonError::TooManyValues));
        }
        Ok(())
    }

    fn nested<E: serde::de::Error>(&self) -> Result<Strict<'_>, E> {
        if self.depth + 1 > MAX_DEPTH {
            return Err(self.fail(JsonError::TooDeep));
        }
        Ok(Strict { depth: self.depth + 1, nodes: self.nodes, verdict: self.verdict })
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.count()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.count()?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.count()?;
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.count()?;
        Ok(serde_json::Number::from_f64(v).map(Value::Number).unwrap_or(Value::Null))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.count()?;
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        self.count()?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.count()?;
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.count()?;
        let inner = self.nested()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict { ..inner })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.count()?;
        let inner = self.nested()?;
        let mut seen = HashSet::new();
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            inner.count()?;
            if !seen.insert(key.clone()) {
                return Err(inner.fail(JsonError::DuplicateKey));
            }
            let value = map.next_value_seed(Strict { ..inner })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn accepts_ordinary_json_and_refuses_the_hostile_kinds() {
        assert_eq!(parse_strict(br#"{"a":[1,2.5,"x",null,true]}"#).map(|v| v["a"][1].clone()), Ok(2.5.into()));
        let cases: [(&[u8], JsonError); 6] = [
            (br#"{"method":"a","method":"b"}"#, JsonError::DuplicateKey),
            (br#"{"params":{"name":"a","x":{"y":1,"y":2}}}"#, JsonError::DuplicateKey),
            (br#"{"a":1"#, JsonError::Syntax),
            (br#"{"a":1} x"#, JsonError::Syntax),
            (b"", JsonError::Syntax),
            (br#"{"a":01}"#, JsonError::Syntax),
        ];
        for (input, want) in cases {
            assert_eq!(parse_strict(input), Err(want), "{}", String::from_utf8_lossy(input));
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(parse_strict(deep.as_bytes()), Err(JsonError::TooDeep));
        let very_deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse_strict(very_deep.as_bytes()), Err(JsonError::TooDeep));
        let ok_deep = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse_strict(ok_deep.as_bytes()).is_ok());
        let wide: String =
            format!("{{{}}}", (0..MAX_NODES).map(|i| format!("\"k{i}\":1")).collect::<Vec<_>>().join(","));
        assert_eq!(parse_strict(wide.as_bytes()), Err(JsonError::TooManyValues));
    }
}
