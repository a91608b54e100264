//! MCP `tools/list` responses that show only what the token's task covers, so an agent does not plan
//! with tools it will be refused. A tool is listed when the catalog knows it and the task grants it
//! (by scope or `authorization_details`); conditions on the call itself — `txn`, step-up, argument
//! limits — are still checked when it is called. Tools the catalog does not know are never listed.

use crate::authz::task_covers;
use crate::config::Policy;
use crate::token::VerifiedToken;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filtered {
    pub body: Vec<u8>,
    pub kept: usize,
    pub removed: usize,
}

/// Why a response could not be filtered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unparseable;

/// Filter a `tools/list` response body of type `application/json` or `text/event-stream`.
pub fn filter(
    policy: &Policy,
    token: &VerifiedToken,
    content_type: &str,
    body: &[u8],
) -> Result<Filtered, Unparseable> {
    let media_type = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let mut filtered = Filtered { body: Vec::with_capacity(body.len()), kept: 0, removed: 0 };
    match media_type.as_str() {
        "application/json" => {
            let mut message: Value = serde_json::from_slice(body).map_err(|_| Unparseable)?;
            filter_message(policy, token, &mut message, &mut filtered)?;
            filtered.body = serde_json::to_vec(&message).map_err(|_| Unparseable)?;
        }
        "text/event-stream" => {
            let text = std::str::from_utf8(body).map_err(|_| Unparseable)?.replace("\r\n", "\n");
            let mut out = String::with_capacity(text.len());
            for event in text.split_terminator("\n\n") {
                let mut data: Vec<&str> = Vec::new();
                for line in event.lines() {
                    match line.strip_prefix("data:") {
                        Some(d) => data.push(d.strip_prefix(' ').unwrap_or(d)),
                        None => {
                            out.push_str(line);
                            out.push('\n');
                        }
                    }
                }
                if !data.is_empty() {
                    let mut message: Value = serde_json::from_str(&data.join("\n")).map_err(|_| Unparseable)?;
                    filter_message(policy, token, &mut message, &mut filtered)?;
                    out.push_str("data: ");
                    out.push_str(&serde_json::to_string(&message).map_err(|_| Unparseable)?);
                    out.push('\n');
                }
                out.push('\n');
            }
            filtered.body = out.into_bytes();
        }
        _ => return Err(Unparseable),
    }
    Ok(filtered)
}

/// Filter `result.tools` of one JSON-RPC response; other messages (errors, notifications) pass as
/// they are.
fn filter_message(
    policy: &Policy,
    token: &VerifiedToken,
    message: &mut Value,
    counts: &mut Filtered,
) -> Result<(), Unparseable> {
    let Some(tools) = message.get_mut("result").and_then(|r| r.get_mut("tools")) else {
        return Ok(());
    };
    let tools = tools.as_array_mut().ok_or(Unparseable)?;
    let before = tools.len();
    tools.retain(|tool| {
        tool.get("name")
            .and_then(Value::as_str)
            .and_then(|name| policy.catalog.mcp_tool(name))
            .is_some_and(|entry| task_covers(policy, entry, "tools/call", token).is_some())
    });
    counts.kept += tools.len();
    counts.removed += before - tools.len();
    Ok(())
}

/// What replaces a `tools/list` response that could not be filtered (unless configured to pass):
/// a JSON-RPC internal error with the request's `id`, framed for the response's content type.
pub fn unfilterable_error(id: &Value, content_type: &str) -> Vec<u8> {
    let error = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": -32603, "message": "tools/list response could not be checked",
                  "data": {"reason": "tools_list_unparseable"}},
    });
    if content_type.trim_start().to_ascii_lowercase().starts_with("text/event-stream") {
        format!("event: message\ndata: {error}\n\n").into_bytes()
    } else {
        error.to_string().into_bytes()
    }
}
