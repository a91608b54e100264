//! Argument-aware scopes: checks of a tool call's arguments against bounds that are either static in
//! the config or approved for the task in the token's `authorization_details` `limits`.

use crate::token::ToolCallDetail;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum Op {
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "in")]
    In,
    #[serde(rename = "prefix")]
    Prefix,
    #[serde(rename = "glob")]
    Glob,
}

/// Where the right-hand side of a comparison comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    Static(Value),
    /// A JSON pointer into the matching `authorization_details` entry's `limits`.
    Limit(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Constraint {
    /// Named in denials and audit records; never a value.
    pub id: String,
    /// A JSON pointer into the call's arguments.
    pub argument: String,
    pub op: Op,
    pub bound: Bound,
}

/// How a call fared against a tool's constraints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// No constraints, or all of them held (for at least one approved entry).
    Passed,
    /// The argument a constraint reads is absent.
    Missing(String),
    /// A constraint did not hold (or its bound was not approved for the task).
    Failed(String),
}

impl Check {
    pub fn constraint(&self) -> Option<&str> {
        match self {
            Check::Passed => None,
            Check::Missing(id) | Check::Failed(id) => Some(id),
        }
    }

    pub fn outcome(&self) -> &'static str {
        match self {
            Check::Passed => "passed",
            Check::Missing(_) => "argument_missing",
            Check::Failed(_) => "failed",
        }
    }
}

/// Check `arguments` against every constraint. Bounds taken from `limits` must hold within one
/// approved entry: a call may not combine one entry's amount with another's ticket.
pub fn check(constraints: &[Constraint], arguments: &Value, entries: &[&ToolCallDetail]) -> Check {
    if constraints.is_empty() {
        return Check::Passed;
    }
    for c in constraints {
        if arguments.pointer(&c.argument).is_none() {
            return Check::Missing(c.id.clone());
        }
    }
    let needs_limits = constraints.iter().any(|c| matches!(c.bound, Bound::Limit(_)));
    let candidates: Vec<Option<&ToolCallDetail>> =
        if needs_limits { entries.iter().map(|e| Some(*e)).collect() } else { vec![None] };
    let mut first_failure = None;
    for entry in candidates {
        match constraints.iter().find(|c| !holds(c, arguments, entry)) {
            None => return Check::Passed,
            Some(failed) => {
                first_failure.get_or_insert_with(|| failed.id.clone());
            }
        }
    }
    // no approved entry at all: the first limit-bound constraint is the one that cannot hold
    Check::Failed(first_failure.unwrap_or_else(|| {
        constraints.iter().find(|c| matches!(c.bound, Bound::Limit(_))).map(|c| c.id.clone()).unwrap_or_default()
    }))
}

fn holds(c: &Constraint, arguments: &Value, entry: Option<&ToolCallDetail>) -> bool {
    let Some(arg) = arguments.pointer(&c.argument) else {
        return false;
    };
    let bound = match &c.bound {
        Bound::Static(v) => v,
        Bound::Limit(pointer) => match entry.and_then(|e| e.limits.as_ref()).and_then(|l| l.pointer(pointer)) {
            Some(v) => v,
            None => return false,
        },
    };
    match c.op {
        Op::Le | Op::Lt | Op::Ge | Op::Gt => match (arg.as_f64(), bound.as_f64()) {
            (Some(a), Some(b)) if a.is_finite() && b.is_finite() => match c.op {
                Op::Le => a <= b,
                Op::Lt => a < b,
                Op::Ge => a >= b,
                _ => a > b,
            },
            _ => false,
        },
        Op::Eq => json_eq(arg, bound),
        Op::In => bound.as_array().is_some_and(|items| items.iter().any(|b| json_eq(arg, b))),
        Op::Prefix => matches!((arg, bound), (Value::String(a), Value::String(p)) if a.starts_with(p.as_str())),
        Op::Glob => matches!((arg, bound), (Value::String(a), Value::String(g)) if glob(g.as_bytes(), a.as_bytes())),
    }
}

/// Numbers compare by value (1 == 1.0); everything else structurally.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// `*` matches any run of characters, `?` one byte (see `glob`).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    glob(pattern.as_bytes(), text.as_bytes())
}

/// `*` matches any run of characters (including none and `/`), `?` exactly one byte; nothing else is
/// special. Iterative, so a hostile pattern cannot recurse.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || Some(&c) == text.get(t) => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((bp, bt)) => {
                    p = bp + 1;
                    t = bt + 1;
                    backtrack = Some((bp, bt + 1));
                }
                None => return false,
            },
        }
    }
    pattern.get(p..).is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn constraint(id: &str, argument: &str, op: Op, bound: Bound) -> Constraint {
        Constraint { id: id.into(), argument: argument.into(), op, bound }
    }

    fn entry(limits: Value) -> ToolCallDetail {
        ToolCallDetail {
            locations: vec![],
            actions: vec![],
            identifier: None,
            privileges: vec![],
            limits: Some(limits),
        }
    }

    #[test]
    fn static_bounds() {
        let cs = [
            constraint("currency", "/currency", Op::In, Bound::Static(json!(["EUR", "USD"]))),
            constraint("path", "/path", Op::Prefix, Bound::Static(json!("/srv/"))),
            constraint("file", "/path", Op::Glob, Bound::Static(json!("/srv/*.txt"))),
            constraint("small", "/n", Op::Lt, Bound::Static(json!(10))),
        ];
        let ok = json!({"currency": "EUR", "path": "/srv/a/b.txt", "n": 9.5});
        assert_eq!(check(&cs, &ok, &[]), Check::Passed);
        let cases = [
            (json!({"currency": "GBP", "path": "/srv/a.txt", "n": 1}), Check::Failed("currency".into())),
            (json!({"currency": "EUR", "path": "/etc/a.txt", "n": 1}), Check::Failed("path".into())),
            (json!({"currency": "EUR", "path": "/srv/a.txt.gz", "n": 1}), Check::Failed("file".into())),
            (json!({"currency": "EUR", "path": "/srv/a.txt", "n": 10}), Check::Failed("small".into())),
            (json!({"currency": "EUR", "path": "/srv/a.txt", "n": "1"}), Check::Failed("small".into())),
            (json!({"currency": "EUR", "path": "/srv/a.txt"}), Check::Missing("small".into())),
        ];
        for (args, want) in cases {
            assert_eq!(check(&cs, &args, &[]), want, "{args}");
        }
    }

    #[test]
    fn limits_come_from_one_approved_entry() {
        let cs = [
            constraint("amount_within_task", "/amount", Op::Le, Bound::Limit("/amount/max".into())),
            constraint("approved_ticket", "/ticket_id", Op::In, Bound::Limit("/ticket_ids".into())),
        ];
        let small = entry(json!({"amount": {"max": 50}, "ticket_ids": ["T-1"]}));
        let large = entry(json!({"amount": {"max": 500}, "ticket_ids": ["T-2"]}));
        assert_eq!(check(&cs, &json!({"amount": 50, "ticket_id": "T-1"}), &[&small]), Check::Passed);
        assert_eq!(
            check(&cs, &json!({"amount": 51, "ticket_id": "T-1"}), &[&small]),
            Check::Failed("amount_within_task".into())
        );
        assert_eq!(
            check(&cs, &json!({"amount": 5, "ticket_id": "T-9"}), &[&small]),
            Check::Failed("approved_ticket".into())
        );
        // 400 is within the large entry's amount but that entry approves another ticket
        assert_eq!(
            check(&cs, &json!({"amount": 400, "ticket_id": "T-1"}), &[&small, &large]),
            Check::Failed("amount_within_task".into())
        );
        assert_eq!(check(&cs, &json!({"amount": 400, "ticket_id": "T-2"}), &[&small, &large]), Check::Passed);
        // granted by scope only: no approved limits, so a limit-bound constraint cannot hold
        assert_eq!(
            check(&cs, &json!({"amount": 1, "ticket_id": "T-1"}), &[]),
            Check::Failed("amount_within_task".into())
        );
    }

    #[test]
    fn glob_is_linear_and_exact() {
        assert!(glob(b"*", b""));
        assert!(glob(b"a*b?d", b"axxbcd"));
        assert!(!glob(b"a*b?d", b"axxbd"));
        let hostile_text = "a".repeat(5000);
        assert!(!glob(b"*a*a*a*a*a*b", hostile_text.as_bytes()));
    }
}
