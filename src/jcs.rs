//! RFC 8785 JSON canonicalisation, to hash a call's arguments the same way an approver did: object
//! members sorted by their UTF-16 code units, no insignificant white space, strings with the minimal
//! JSON escapes, numbers in their shortest round-trip form (integers without a fraction).

use serde_json::Value;

pub fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (key, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write(item, out);
            }
            out.push('}');
        }
    }
}

/// ECMAScript `Number.prototype.toString` for the values JSON carries: integral values print as
/// integers, others in the shortest form that reads back the same, with an exponent only outside
/// 1e-7 .. 1e21 (written `e+21` / `e-7` as ECMAScript does).
fn write_number(n: &serde_json::Number, out: &mut String) {
    if let Some(i) = n.as_i64() {
        out.push_str(&i.to_string());
        return;
    }
    if let Some(u) = n.as_u64() {
        out.push_str(&u.to_string());
        return;
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f == f.trunc() && f.abs() < 1e21 {
        out.push_str(&format!("{f:.0}"));
        return;
    }
    let abs = f.abs();
    if (1e-7..1e21).contains(&abs) {
        out.push_str(&format!("{f}"));
    } else {
        // Rust writes 1e21 and 1e-7; ECMAScript writes 1e+21 and 1e-7
        let text = format!("{f:e}");
        match text.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => out.push_str(&format!("{mantissa}e+{exp}")),
            _ => out.push_str(&text),
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn rfc8785_examples() {
        // RFC 8785 §3.2.2's example, as text: the numbers are written with more digits than f64 keeps
        let value: Value = serde_json::from_str(
            r#"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
                "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"/", "literals": [null, true, false]}"#,
        )
        .unwrap();
        assert_eq!(
            canonical(&value),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
        // UTF-16 order: "\u{20ac}" (0x20AC) sorts before "\u{1f600}" (surrogates 0xD83D…)
        let keys = json!({"\u{1f600}": 1, "\u{20ac}": 2, "a": 3, "B": 4});
        assert_eq!(canonical(&keys), "{\"B\":4,\"a\":3,\"\u{20ac}\":2,\"\u{1f600}\":1}");
        assert_eq!(canonical(&json!({"amount": 40.0, "n": -0.5})), r#"{"amount":40,"n":-0.5}"#);
    }
}
