//! JSON-RPC bodies of MCP (Streamable HTTP) and A2A: one strictly parsed message per POST, read into
//! the call it makes (token-profile.md §9).

use crate::json::{parse_strict, JsonError};
use crate::outcome::Reason;
use serde_json::{Map, Value};

/// The JSON-RPC protocols intentgate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Mcp,
    A2a,
}

/// One JSON-RPC message, as far as a decision needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The request `id` (string, number or null); `None` for a notification.
    pub id: Option<Value>,
    /// `None` for a response the client sends to a server's request (MCP sampling, elicitation).
    pub method: Option<String>,
    pub params: Option<Map<String, Value>>,
}

impl Message {
    /// The `id` to put into an error response (JSON-RPC 2.0 §5: null when it is not known).
    pub fn error_id(&self) -> Value {
        self.id.clone().unwrap_or(Value::Null)
    }
}

/// Read one JSON-RPC 2.0 message. Batches are refused for every protocol (see README).
pub fn parse_message(body: &[u8]) -> Result<Message, Reason> {
    let value = parse_strict(body).map_err(|e| match e {
        JsonError::DuplicateKey => Reason::JsonDuplicateKey,
        JsonError::Syntax | JsonError::TooDeep | JsonError::TooManyValues => Reason::JsonInvalid,
    })?;
    let mut object = match value {
        Value::Object(object) => object,
        Value::Array(_) => return Err(Reason::JsonrpcBatch),
        _ => return Err(Reason::JsonrpcInvalid),
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(Reason::JsonrpcInvalid);
    }
    let id = match object.remove("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(id),
        Some(_) => return Err(Reason::JsonrpcInvalid),
    };
    let params = match object.remove("params") {
        None => None,
        Some(Value::Object(params)) => Some(params),
        // MCP and A2A params are always objects; positional params name nothing we can check
        Some(_) => return Err(Reason::JsonrpcInvalid),
    };
    let method = match object.remove("method") {
        Some(Value::String(method)) => Some(method),
        Some(_) => return Err(Reason::JsonrpcInvalid),
        None if id.is_some() && (object.contains_key("result") || object.contains_key("error")) => None,
        None => return Err(Reason::JsonrpcInvalid),
    };
    Ok(Message { id, method, params })
}

/// What an MCP message asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum McpCall {
    ToolCall {
        name: String,
        arguments: Value,
    },
    ResourceRead {
        uri: String,
    },
    PromptGet {
        name: String,
    },
    /// `tools/list`, `resources/list`, `resources/templates/list`, `prompts/list`.
    List,
    /// Session plumbing: `initialize`, `server/discover`, `ping`, notifications, `logging/setLevel`,
    /// `completion/complete`,
    /// and responses to the server's own requests.
    Protocol,
    /// Anything else: denied.
    Other,
}

impl McpCall {
    /// The action a catalog entry of this kind is granted under (`authorization_details.actions`).
    pub fn action(&self) -> Option<&'static str> {
        match self {
            McpCall::ToolCall { .. } => Some("tools/call"),
            McpCall::ResourceRead { .. } => Some("resources/read"),
            McpCall::PromptGet { .. } => Some("prompts/get"),
            _ => None,
        }
    }

    /// The value `Mcp-Name` mirrors.
    pub fn name(&self) -> Option<&str> {
        match self {
            McpCall::ToolCall { name, .. } | McpCall::PromptGet { name } => Some(name),
            McpCall::ResourceRead { uri } => Some(uri),
            _ => None,
        }
    }
}

fn string_param(params: Option<&Map<String, Value>>, key: &str) -> Result<String, Reason> {
    match params.and_then(|p| p.get(key)) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(Reason::ParamsInvalid),
    }
}

pub fn classify_mcp(message: &Message) -> Result<McpCall, Reason> {
    let Some(method) = message.method.as_deref() else {
        return Ok(McpCall::Protocol);
    };
    let params = message.params.as_ref();
    Ok(match method {
        "tools/call" => {
            let name = string_param(params, "name")?;
            let arguments = match params.and_then(|p| p.get("arguments")) {
                None | Some(Value::Null) => Value::Object(Map::new()),
                Some(args @ Value::Object(_)) => args.clone(),
                Some(_) => return Err(Reason::ParamsInvalid),
            };
            McpCall::ToolCall { name, arguments }
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            McpCall::ResourceRead { uri: string_param(params, "uri")? }
        }
        "prompts/get" => McpCall::PromptGet { name: string_param(params, "name")? },
        "tools/list" | "resources/list" | "resources/templates/list" | "prompts/list" => McpCall::List,
        // `server/discover` is the 2026-07-28 replacement for `initialize`
        "initialize" | "server/discover" | "ping" | "logging/setLevel" | "completion/complete" => McpCall::Protocol,
        m if m.starts_with("notifications/") => McpCall::Protocol,
        _ => McpCall::Other,
    })
}

/// A2A method names, with the v0.3 names mapped to their 1.0 equivalents.
pub fn a2a_method(method: &str) -> Option<&'static str> {
    Some(match method {
        "SendMessage" | "message/send" => "SendMessage",
        "SendStreamingMessage" | "message/stream" => "SendStreamingMessage",
        "GetTask" | "tasks/get" => "GetTask",
        "ListTasks" | "tasks/list" => "ListTasks",
        "CancelTask" | "tasks/cancel" => "CancelTask",
        "SubscribeToTask" | "tasks/resubscribe" => "SubscribeToTask",
        "CreateTaskPushNotificationConfig" | "tasks/pushNotificationConfig/set" => "CreateTaskPushNotificationConfig",
        "GetTaskPushNotificationConfig" | "tasks/pushNotificationConfig/get" => "GetTaskPushNotificationConfig",
        "ListTaskPushNotificationConfigs" | "tasks/pushNotificationConfig/list" => "ListTaskPushNotificationConfigs",
        "DeleteTaskPushNotificationConfig" | "tasks/pushNotificationConfig/delete" => {
            "DeleteTaskPushNotificationConfig"
        }
        "GetExtendedAgentCard" | "agent/getAuthenticatedExtendedCard" => "GetExtendedAgentCard",
        _ => return None,
    })
}

/// Every A2A 1.0 method name, for validating the catalog.
pub const A2A_METHODS: [&str; 11] = [
    "SendMessage",
    "SendStreamingMessage",
    "GetTask",
    "ListTasks",
    "CancelTask",
    "SubscribeToTask",
    "CreateTaskPushNotificationConfig",
    "GetTaskPushNotificationConfig",
    "ListTaskPushNotificationConfigs",
    "DeleteTaskPushNotificationConfig",
    "GetExtendedAgentCard",
];

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn messages_parse_strictly() {
        let ok = parse_message(
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a","arguments":{"x":1}}}"#,
        );
        assert_eq!(ok.as_ref().map(|m| m.method.as_deref()), Ok(Some("tools/call")));
        assert_eq!(ok.map(|m| m.error_id()), Ok(Value::from(7)));
        let cases: [(&[u8], Reason); 10] = [
            (br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, Reason::JsonrpcBatch),
            (br#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}"#, Reason::JsonDuplicateKey),
            (br#"{"jsonrpc":"2.0","id":1,"method":"tools/call""#, Reason::JsonInvalid),
            (br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, Reason::JsonrpcInvalid),
            (br#"{"jsonrpc":"2.0","id":1}"#, Reason::JsonrpcInvalid),
            (br#"{"jsonrpc":"2.0","id":1,"method":7}"#, Reason::JsonrpcInvalid),
            (br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]}"#, Reason::JsonrpcInvalid),
            (br#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#, Reason::JsonrpcInvalid),
            (br#""ping""#, Reason::JsonrpcInvalid),
            (b"\xff", Reason::JsonInvalid),
        ];
        for (body, want) in cases {
            assert_eq!(parse_message(body).err(), Some(want), "{}", String::from_utf8_lossy(body));
        }
        let response = parse_message(br#"{"jsonrpc":"2.0","id":3,"result":{}}"#);
        assert_eq!(response.map(|m| m.method), Ok(None));
    }

    #[test]
    fn mcp_calls_are_read_from_params() {
        let call = |body: &str| parse_message(body.as_bytes()).and_then(|m| classify_mcp(&m));
        assert_eq!(
            call(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"refund","arguments":{"amount":5}}}"#
            ),
            Ok(McpCall::ToolCall { name: "refund".into(), arguments: serde_json::json!({"amount": 5}) })
        );
        assert_eq!(
            call(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}"#),
            Err(Reason::ParamsInvalid)
        );
        assert_eq!(call(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#), Err(Reason::ParamsInvalid));
        assert_eq!(
            call(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":[1]}}"#),
            Err(Reason::ParamsInvalid)
        );
        assert_eq!(
            call(r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}"#),
            Ok(McpCall::ResourceRead { uri: "file:///a".into() })
        );
        assert_eq!(
            call(r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p"}}"#),
            Ok(McpCall::PromptGet { name: "p".into() })
        );
        assert_eq!(call(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#), Ok(McpCall::List));
        assert_eq!(call(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#), Ok(McpCall::Protocol));
        assert_eq!(call(r#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage"}"#), Ok(McpCall::Other));
        assert_eq!(a2a_method("message/send"), Some("SendMessage"));
        assert_eq!(a2a_method("sendmessage"), None);
    }
}
