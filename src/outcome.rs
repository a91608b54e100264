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
    // the request itself is unusable
    AuthorizationInvalid,
    PathInvalid,
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
}

impl Reason {
    /// Every reason, so that adapters can pre-register one metric per reason at start-up.
    pub const ALL: [Reason; 33] = [
        Reason::ScopeGranted,
        Reason::AuthorizationDetailsGranted,
        Reason::UnknownToolAllowed,
        Reason::AuthorizationInvalid,
        Reason::PathInvalid,
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
    ];

    pub fn code(self) -> &'static str {
        match self {
            Reason::ScopeGranted => "scope_granted",
            Reason::AuthorizationDetailsGranted => "authorization_details_granted",
            Reason::UnknownToolAllowed => "unknown_tool_allowed",
            Reason::AuthorizationInvalid => "authorization_invalid",
            Reason::PathInvalid => "path_invalid",
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
        }
    }

    pub fn is_allow(self) -> bool {
        matches!(
            self,
            Reason::ScopeGranted | Reason::AuthorizationDetailsGranted | Reason::UnknownToolAllowed
        )
    }

    /// The one mapping from a reason to the HTTP status and the RFC 6750 / RFC 9470 error code.
    /// `None` as error code means a bare challenge (RFC 6750 §3.1: no credentials, no error).
    fn status_and_error(self) -> (u16, Option<&'static str>) {
        match self {
            Reason::ScopeGranted
            | Reason::AuthorizationDetailsGranted
            | Reason::UnknownToolAllowed => (200, None),
            Reason::AuthorizationInvalid | Reason::PathInvalid => (400, Some("invalid_request")),
            Reason::TokenMissing => (401, None),
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
            | Reason::ClaimsInvalid => (401, Some("invalid_token")),
            Reason::ToolUnknown | Reason::ScopeInsufficient | Reason::TxnRequired => {
                (403, Some("insufficient_scope"))
            }
            Reason::StepUpRequired => (401, Some("insufficient_user_authentication")),
        }
    }
}

/// What the policy needs from the caller to turn a denial into an allow; it shapes the challenge.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Needed {
    #[default]
    Nothing,
    /// Any one of these scope values would grant the call.
    Scopes(Vec<String>),
    /// A fresh authentication with one of these `acr` values, no older than `max_age_s`.
    StepUp {
        acr_values: Vec<String>,
        max_age_s: u64,
    },
}

/// A complete denial, ready to be written by an adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyResponse {
    pub status: u16,
    /// The value of the `WWW-Authenticate` header.
    pub www_authenticate: String,
    /// `{"error": …, "reason": …}`
    pub body: String,
}

/// Render the denial for `reason`. `resource_metadata` is the RFC 9728 URL advertised in the bare
/// challenge, when configured.
pub fn deny_response(
    reason: Reason,
    needed: &Needed,
    resource_metadata: Option<&str>,
) -> DenyResponse {
    let (status, error) = reason.status_and_error();
    let mut challenge = String::from("Bearer");
    let mut params: Vec<String> = Vec::new();
    if let Some(url) = resource_metadata {
        params.push(format!("resource_metadata=\"{}\"", quoted_safe(url)));
    }
    if let Some(error) = error {
        params.push(format!("error=\"{error}\""));
        params.push(format!("error_description=\"{}\"", reason.code()));
    }
    match needed {
        Needed::Nothing => {}
        Needed::Scopes(scopes) if !scopes.is_empty() => {
            params.push(format!("scope=\"{}\"", quoted_safe(&scopes.join(" "))));
        }
        Needed::Scopes(_) => {}
        Needed::StepUp {
            acr_values,
            max_age_s,
        } => {
            params.push(format!(
                "acr_values=\"{}\"",
                quoted_safe(&acr_values.join(" "))
            ));
            params.push(format!("max_age=\"{max_age_s}\""));
        }
    }
    if !params.is_empty() {
        challenge.push(' ');
        challenge.push_str(&params.join(", "));
    }
    let body = serde_json::json!({
        "error": error.unwrap_or("unauthorized"),
        "reason": reason.code(),
    })
    .to_string();
    DenyResponse {
        status,
        www_authenticate: challenge,
        body,
    }
}

/// Configuration values that end up inside a quoted-string: keep them to visible ASCII without quotes
/// or backslashes (the config loader already refuses anything else; this is the belt to that brace).
fn quoted_safe(value: &str) -> String {
    value
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\' || *c == ' ')
        .collect()
}
