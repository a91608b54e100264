//! What a decision is, why it was made, and the one mapping from a reason to an HTTP answer
//! (token-profile.md §8). Reason codes are fixed strings: they go into `error_description`, the JSON
//! body, metrics and the audit record, and never carry a claim value or token text.

/// Why a request was allowed or denied. One variant per reason; `code()` is the wire form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    // allowed
    ScopeGranted,
    AuthorizationDetailsGranted,
    UnknownToolAllowed,
    ProtocolMethodAllowed,
    ListAllowed,
    // the request itself is unusable
    AuthorizationInvalid,
    PathInvalid,
    BodyTooLarge,
    ContentTypeUnsupported,
    ContentEncodingUnsupported,
    JsonInvalid,
    JsonDuplicateKey,
    JsonrpcInvalid,
    JsonrpcBatch,
    ParamsInvalid,
    McpHeaderMismatch,
    // no credentials at all
    TokenMissing,
    // the token is not acceptable here
    TokenMalformed,
    TokenTooLarge,
    AlgNotAllowed,
    AlgKeyMismatch,
    KidMissing,
    KidUnknown,
    CritUnsupported,
    TypInvalid,
    SignatureInvalid,
    IssuerUnknown,
    AudienceMismatch,
    ExpMissing,
    IatMissing,
    TokenExpired,
    TokenNotYetValid,
    IatInFuture,
    LifetimeTooLong,
    JtiMissing,
    JtiInvalid,
    SubMissing,
    SubjectNotAllowed,
    ClientNotAllowed,
    ClaimsInvalid,
    // the token is fine but does not cover this call
    ToolUnknown,
    ScopeInsufficient,
    TxnRequired,
    StepUpRequired,
    MethodNotAllowed,
    ArgumentMissing,
    ArgumentConstraintFailed,
    // revoked, spent, or not checkable right now
    TokenRevoked,
    TaskRevoked,
    TaskCompleted,
    AgentRevoked,
    KeyRevoked,
    TokenAlreadyUsed,
    KeysUnavailable,
    RevocationFeedStale,
    /// The request ended (client gone, proxy limit) before the filter could decide: audit only.
    RequestIncomplete,
    // stolen or passed-along tokens, and calls that need a human's yes
    DpopProofMissing,
    DpopProofInvalid,
    DpopHtmMismatch,
    DpopHtuMismatch,
    DpopIatInvalid,
    DpopAthMismatch,
    DpopKeyMismatch,
    DpopProofReplayed,
    DpopBoundTokenAsBearer,
    CertificateBindingMismatch,
    BindingRequired,
    DelegationTooDeep,
    DelegationCycle,
    DelegationActorNotAllowed,
    DelegationPresenterMismatch,
    ApprovalRequired,
    ApprovalInvalid,
    ApprovalMismatch,
    ApprovalAlreadyUsed,
}

impl Reason {
    /// Every reason, so that adapters can pre-register one metric per reason at start-up.
    pub const ALL: [Reason; 75] = [
        Reason::ScopeGranted,
        Reason::AuthorizationDetailsGranted,
        Reason::UnknownToolAllowed,
        Reason::ProtocolMethodAllowed,
        Reason::ListAllowed,
        Reason::AuthorizationInvalid,
        Reason::PathInvalid,
        Reason::BodyTooLarge,
        Reason::ContentTypeUnsupported,
        Reason::ContentEncodingUnsupported,
        Reason::JsonInvalid,
        Reason::JsonDuplicateKey,
        Reason::JsonrpcInvalid,
        Reason::JsonrpcBatch,
        Reason::ParamsInvalid,
        Reason::McpHeaderMismatch,
        Reason::TokenMissing,
        Reason::TokenMalformed,
        Reason::TokenTooLarge,
        Reason::AlgNotAllowed,
        Reason::AlgKeyMismatch,
        Reason::KidMissing,
        Reason::KidUnknown,
        Reason::CritUnsupported,
        Reason::TypInvalid,
        Reason::SignatureInvalid,
        Reason::IssuerUnknown,
        Reason::AudienceMismatch,
        Reason::ExpMissing,
        Reason::IatMissing,
        Reason::TokenExpired,
        Reason::TokenNotYetValid,
        Reason::IatInFuture,
        Reason::LifetimeTooLong,
        Reason::JtiMissing,
        Reason::JtiInvalid,
        Reason::SubMissing,
        Reason::SubjectNotAllowed,
        Reason::ClientNotAllowed,
        Reason::ClaimsInvalid,
        Reason::ToolUnknown,
        Reason::ScopeInsufficient,
        Reason::TxnRequired,
        Reason::StepUpRequired,
        Reason::MethodNotAllowed,
        Reason::ArgumentMissing,
        Reason::ArgumentConstraintFailed,
        Reason::TokenRevoked,
        Reason::TaskRevoked,
        Reason::TaskCompleted,
        Reason::AgentRevoked,
        Reason::KeyRevoked,
        Reason::TokenAlreadyUsed,
        Reason::KeysUnavailable,
        Reason::RevocationFeedStale,
        Reason::RequestIncomplete,
        Reason::DpopProofMissing,
        Reason::DpopProofInvalid,
        Reason::DpopHtmMismatch,
        Reason::DpopHtuMismatch,
        Reason::DpopIatInvalid,
        Reason::DpopAthMismatch,
        Reason::DpopKeyMismatch,
        Reason::DpopProofReplayed,
        Reason::DpopBoundTokenAsBearer,
        Reason::CertificateBindingMismatch,
        Reason::BindingRequired,
        Reason::DelegationTooDeep,
        Reason::DelegationCycle,
        Reason::DelegationActorNotAllowed,
        Reason::DelegationPresenterMismatch,
        Reason::ApprovalRequired,
        Reason::ApprovalInvalid,
        Reason::ApprovalMismatch,
        Reason::ApprovalAlreadyUsed,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Reason::ScopeGranted => "scope_granted",
            Reason::AuthorizationDetailsGranted => "authorization_details_granted",
            Reason::UnknownToolAllowed => "unknown_tool_allowed",
            Reason::ProtocolMethodAllowed => "protocol_method_allowed",
            Reason::ListAllowed => "list_allowed",
            Reason::AuthorizationInvalid => "authorization_invalid",
            Reason::PathInvalid => "path_invalid",
            Reason::BodyTooLarge => "body_too_large",
            Reason::ContentTypeUnsupported => "content_type_unsupported",
            Reason::ContentEncodingUnsupported => "content_encoding_unsupported",
            Reason::JsonInvalid => "json_invalid",
            Reason::JsonDuplicateKey => "json_duplicate_key",
            Reason::JsonrpcInvalid => "jsonrpc_invalid",
            Reason::JsonrpcBatch => "jsonrpc_batch",
            Reason::ParamsInvalid => "params_invalid",
            Reason::McpHeaderMismatch => "mcp_header_mismatch",
            Reason::TokenMissing => "token_missing",
            Reason::TokenMalformed => "token_malformed",
            Reason::TokenTooLarge => "token_too_large",
            Reason::AlgNotAllowed => "alg_not_allowed",
            Reason::AlgKeyMismatch => "alg_key_mismatch",
            Reason::KidMissing => "kid_missing",
            Reason::KidUnknown => "kid_unknown",
            Reason::CritUnsupported => "crit_unsupported",
            Reason::TypInvalid => "typ_invalid",
            Reason::SignatureInvalid => "signature_invalid",
            Reason::IssuerUnknown => "issuer_unknown",
            Reason::AudienceMismatch => "audience_mismatch",
            Reason::ExpMissing => "exp_missing",
            Reason::IatMissing => "iat_missing",
            Reason::TokenExpired => "token_expired",
            Reason::TokenNotYetValid => "token_not_yet_valid",
            Reason::IatInFuture => "iat_in_future",
            Reason::LifetimeTooLong => "lifetime_too_long",
            Reason::JtiMissing => "jti_missing",
            Reason::JtiInvalid => "jti_invalid",
            Reason::SubMissing => "sub_missing",
            Reason::SubjectNotAllowed => "subject_not_allowed",
            Reason::ClientNotAllowed => "client_not_allowed",
            Reason::ClaimsInvalid => "claims_invalid",
            Reason::ToolUnknown => "tool_unknown",
            Reason::ScopeInsufficient => "scope_insufficient",
            Reason::TxnRequired => "txn_required",
            Reason::StepUpRequired => "step_up_required",
            Reason::MethodNotAllowed => "method_not_allowed",
            Reason::ArgumentMissing => "argument_missing",
            Reason::ArgumentConstraintFailed => "argument_constraint_failed",
            Reason::TokenRevoked => "token_revoked",
            Reason::TaskRevoked => "task_revoked",
            Reason::TaskCompleted => "task_completed",
            Reason::AgentRevoked => "agent_revoked",
            Reason::KeyRevoked => "key_revoked",
            Reason::TokenAlreadyUsed => "token_already_used",
            Reason::KeysUnavailable => "keys_unavailable",
            Reason::RevocationFeedStale => "revocation_feed_stale",
            Reason::RequestIncomplete => "request_incomplete",
            Reason::DpopProofMissing => "dpop_proof_missing",
            Reason::DpopProofInvalid => "dpop_proof_invalid",
            Reason::DpopHtmMismatch => "dpop_htm_mismatch",
            Reason::DpopHtuMismatch => "dpop_htu_mismatch",
            Reason::DpopIatInvalid => "dpop_iat_invalid",
            Reason::DpopAthMismatch => "dpop_ath_mismatch",
            Reason::DpopKeyMismatch => "dpop_key_mismatch",
            Reason::DpopProofReplayed => "dpop_proof_replayed",
            Reason::DpopBoundTokenAsBearer => "dpop_bound_token_as_bearer",
            Reason::CertificateBindingMismatch => "certificate_binding_mismatch",
            Reason::BindingRequired => "binding_required",
            Reason::DelegationTooDeep => "delegation_too_deep",
            Reason::DelegationCycle => "delegation_cycle",
            Reason::DelegationActorNotAllowed => "delegation_actor_not_allowed",
            Reason::DelegationPresenterMismatch => "delegation_presenter_mismatch",
            Reason::ApprovalRequired => "approval_required",
            Reason::ApprovalInvalid => "approval_invalid",
            Reason::ApprovalMismatch => "approval_mismatch",
            Reason::ApprovalAlreadyUsed => "approval_already_used",
        }
    }

    pub fn is_allow(self) -> bool {
        matches!(
            self,
            Reason::ScopeGranted
                | Reason::AuthorizationDetailsGranted
                | Reason::UnknownToolAllowed
                | Reason::ProtocolMethodAllowed
                | Reason::ListAllowed
        )
    }

    /// The one mapping from a reason to the HTTP status, the challenge (RFC 6750 / RFC 9470 error
    /// code) and the JSON-RPC error code used on JSON-RPC endpoints.
    pub fn response(self) -> ResponseShape {
        use Challenge::{Bare, Dpop, Error, NoChallenge};
        let (status, challenge, rpc_code) = match self {
            Reason::ScopeGranted
            | Reason::AuthorizationDetailsGranted
            | Reason::UnknownToolAllowed
            | Reason::ProtocolMethodAllowed
            | Reason::ListAllowed => (200, NoChallenge, 0),
            Reason::AuthorizationInvalid | Reason::PathInvalid | Reason::JsonrpcInvalid | Reason::JsonrpcBatch => {
                (400, Error("invalid_request"), -32600)
            }
            Reason::JsonDuplicateKey | Reason::RequestIncomplete => (400, Error("invalid_request"), -32600),
            Reason::JsonInvalid => (400, Error("invalid_request"), -32700),
            Reason::ParamsInvalid => (400, Error("invalid_request"), -32602),
            Reason::McpHeaderMismatch => (400, Error("invalid_request"), -32020),
            Reason::BodyTooLarge => (413, NoChallenge, -32600),
            Reason::ContentTypeUnsupported | Reason::ContentEncodingUnsupported => (415, NoChallenge, -32600),
            Reason::TokenMissing => (401, Bare, -32001),
            Reason::TokenMalformed
            | Reason::TokenTooLarge
            | Reason::AlgNotAllowed
            | Reason::AlgKeyMismatch
            | Reason::KidMissing
            | Reason::KidUnknown
            | Reason::CritUnsupported
            | Reason::TypInvalid
            | Reason::SignatureInvalid
            | Reason::IssuerUnknown
            | Reason::AudienceMismatch
            | Reason::ExpMissing
            | Reason::IatMissing
            | Reason::TokenExpired
            | Reason::TokenNotYetValid
            | Reason::IatInFuture
            | Reason::LifetimeTooLong
            | Reason::JtiMissing
            | Reason::JtiInvalid
            | Reason::SubMissing
            | Reason::SubjectNotAllowed
            | Reason::ClientNotAllowed
            | Reason::ClaimsInvalid
            | Reason::TokenRevoked
            | Reason::TaskRevoked
            | Reason::TaskCompleted
            | Reason::AgentRevoked
            | Reason::KeyRevoked
            | Reason::TokenAlreadyUsed
            | Reason::DpopBoundTokenAsBearer
            | Reason::CertificateBindingMismatch
            | Reason::BindingRequired
            | Reason::DelegationTooDeep
            | Reason::DelegationCycle
            | Reason::DelegationActorNotAllowed
            | Reason::DelegationPresenterMismatch => (401, Error("invalid_token"), -32001),
            Reason::DpopProofMissing
            | Reason::DpopProofInvalid
            | Reason::DpopHtmMismatch
            | Reason::DpopHtuMismatch
            | Reason::DpopIatInvalid
            | Reason::DpopAthMismatch
            | Reason::DpopKeyMismatch
            | Reason::DpopProofReplayed => (401, Dpop("invalid_dpop_proof"), -32001),
            Reason::ApprovalRequired
            | Reason::ApprovalInvalid
            | Reason::ApprovalMismatch
            | Reason::ApprovalAlreadyUsed => (403, Error("insufficient_scope"), -32003),
            // not the caller's fault, and not a pass: the gateway cannot check right now
            Reason::KeysUnavailable | Reason::RevocationFeedStale => (503, NoChallenge, -32000),
            Reason::ToolUnknown
            | Reason::ScopeInsufficient
            | Reason::TxnRequired
            | Reason::MethodNotAllowed
            | Reason::ArgumentMissing
            | Reason::ArgumentConstraintFailed => (403, Error("insufficient_scope"), -32003),
            Reason::StepUpRequired => (401, Error("insufficient_user_authentication"), -32001),
        };
        ResponseShape { status, challenge, rpc_code }
    }
}

/// What kind of `WWW-Authenticate` a denial carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// Not an authorization problem (413, 415): no challenge.
    NoChallenge,
    /// RFC 6750 §3.1: no credentials, no error code.
    Bare,
    Error(&'static str),
    /// RFC 9449 §7.1: a `DPoP` challenge with this error code and the accepted `algs`.
    Dpop(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseShape {
    pub status: u16,
    pub challenge: Challenge,
    /// JSON-RPC error code for denials on JSON-RPC endpoints: -32700 parse error, -32600 invalid
    /// request, -32602 invalid params, -32020 MCP header mismatch, -32001 unauthenticated, -32003
    /// forbidden, -32000 unavailable.
    pub rpc_code: i64,
}

/// What the policy needs from the caller to turn a denial into an allow; it shapes the challenge.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Needed {
    #[default]
    Nothing,
    /// Any one of these scope values would grant the call.
    Scopes(Vec<String>),
    /// A fresh authentication with one of these `acr` values, no older than `max_age_s`.
    StepUp { acr_values: Vec<String>, max_age_s: u64 },
    /// A DPoP proof signed with one of these algorithms.
    DpopProof { algs: Vec<String> },
    /// A human approval of exactly this call (the body carries the approval request).
    Approval(serde_json::Value),
}

/// A complete denial, ready to be written by an adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyResponse {
    pub status: u16,
    /// The value of the `WWW-Authenticate` header, when the denial has one.
    pub www_authenticate: Option<String>,
    /// `{"error": …, "reason": …}`, or a JSON-RPC error response on JSON-RPC endpoints.
    pub body: String,
}

/// On a JSON-RPC endpoint the denial is a JSON-RPC error response carrying the request's `id`.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcContext<'a> {
    pub id: &'a serde_json::Value,
    /// The constraint that failed, named (never its values).
    pub constraint: Option<&'a str>,
}

/// Render the denial for `reason`. `resource_metadata` is the RFC 9728 URL advertised in the bare
/// challenge, when configured.
pub fn deny_response(
    reason: Reason,
    needed: &Needed,
    resource_metadata: Option<&str>,
    rpc: Option<RpcContext<'_>>,
) -> DenyResponse {
    let shape = reason.response();
    let error = match shape.challenge {
        Challenge::Error(error) | Challenge::Dpop(error) => Some(error),
        _ => None,
    };
    let scheme = if matches!(shape.challenge, Challenge::Dpop(_)) { "DPoP" } else { "Bearer" };
    let www_authenticate = (shape.challenge != Challenge::NoChallenge).then(|| {
        let mut params: Vec<String> = Vec::new();
        if let Some(url) = resource_metadata {
            params.push(format!("resource_metadata=\"{}\"", quoted_safe(url)));
        }
        if let Some(error) = error {
            params.push(format!("error=\"{error}\""));
            params.push(format!("error_description=\"{}\"", reason.code()));
        }
        match needed {
            Needed::Scopes(scopes) if !scopes.is_empty() => {
                params.push(format!("scope=\"{}\"", quoted_safe(&scopes.join(" "))));
            }
            Needed::StepUp { acr_values, max_age_s } => {
                params.push(format!("acr_values=\"{}\"", quoted_safe(&acr_values.join(" "))));
                params.push(format!("max_age=\"{max_age_s}\""));
            }
            Needed::DpopProof { algs } => params.push(format!("algs=\"{}\"", quoted_safe(&algs.join(" ")))),
            _ => {}
        }
        if params.is_empty() {
            scheme.to_string()
        } else {
            format!("{scheme} {}", params.join(", "))
        }
    });
    let error_word = match (shape.status, error) {
        (_, Some(error)) => error,
        (413, None) => "request_too_large",
        (415, None) => "unsupported_media_type",
        (503, None) => "temporarily_unavailable",
        _ => "unauthorized",
    };
    let approval_request = match needed {
        Needed::Approval(request) => Some(request.clone()),
        _ => None,
    };
    let body = match rpc {
        None => {
            let mut body = serde_json::json!({"error": error_word, "reason": reason.code()});
            if let (Some(request), Some(map)) = (approval_request, body.as_object_mut()) {
                map.insert("approval_request".into(), request);
            }
            body
        }
        Some(rpc) => {
            let mut data = serde_json::json!({"reason": reason.code()});
            if let (Some(constraint), Some(map)) = (rpc.constraint, data.as_object_mut()) {
                map.insert("constraint".into(), constraint.into());
            }
            if let (Some(request), Some(map)) = (approval_request, data.as_object_mut()) {
                map.insert("approval_request".into(), request);
            }
            serde_json::json!({
                "jsonrpc": "2.0",
                "id": rpc.id,
                "error": {"code": shape.rpc_code, "message": error_word, "data": data},
            })
        }
    }
    .to_string();
    DenyResponse { status: shape.status, www_authenticate, body }
}

/// Configuration values that end up inside a quoted-string: keep them to visible ASCII without quotes
/// or backslashes (the config loader already refuses anything else; this is the belt to that brace).
fn quoted_safe(value: &str) -> String {
    value.chars().filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\' || *c == ' ').collect()
}
