//! intentgate's core: decides whether one request fits the task its agent token was minted for.
//!
//! Pure Rust with no proxy-wasm types: the adapter gathers `RequestFacts` and the host's clock, calls
//! [`evaluate`], and applies the [`Outcome`]. The whole request path is this file's `evaluate`:
//!
//! 1. the request itself: one `Authorization` header at most, a path that normalises safely, and on
//!    JSON-RPC endpoints a JSON body (bounded, identity-encoded) holding one strict JSON-RPC message;
//! 2. who is calling: the bearer token, verified (or taken from the verified-token cache);
//! 3. what is being asked: the catalog classifies the request (or the JSON-RPC call) into tool,
//!    action and risk;
//! 4. does the task cover it: scope or `authorization_details`, `txn`, step-up, argument constraints.
//!
//! Any failure is a deny with one [`Reason`]; `dry_run` only changes whether a deny is enforced.
//! Adapters call [`start`] with the headers; on JSON-RPC endpoints it asks for the body, and
//! [`evaluate`] then decides with it.

pub mod approval;
pub mod audit;
pub mod authz;
pub mod binding;
pub mod cache;
pub mod catalog;
pub mod config;
pub mod constraints;
pub mod crypto;
pub mod jcs;
pub mod json;
pub mod jsonrpc;
pub mod keys;
pub mod keyset;
pub mod outcome;
pub mod path;
pub mod revocation;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod token;
pub mod tools_list;

pub use audit::{AuditRecord, Responder};
pub use cache::TokenCache;
pub use config::{ConfigError, Endpoint, Mode, Policy, ProtocolMethods, UnknownTool, VerifierChoice};
pub use jsonrpc::{McpCall, Protocol};
pub use outcome::{deny_response, DenyResponse, Needed, Reason, RpcContext};
pub use token::VerifiedToken;

use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::rc::Rc;

/// Risk classes, lowest first (token-profile.md §5). The catalog assigns them; nothing else can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Read,
    Write,
    Credential,
    Payment,
    Infra,
}

impl Risk {
    pub fn name(self) -> &'static str {
        match self {
            Risk::Read => "read",
            Risk::Write => "write",
            Risk::Credential => "credential",
            Risk::Payment => "payment",
            Risk::Infra => "infra",
        }
    }
}

/// The request body as the adapter has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    /// Not read (plain HTTP endpoints are never buffered).
    NotRead,
    Complete(&'a [u8]),
    /// Longer than `jsonrpc.max_body_bytes`: never read to the end, never passed.
    TooLarge,
}

/// What the adapter knows about a request when it decides. Header names are lower case.
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// `:path`, as received.
    pub path: &'a str,
    /// `:authority`, as received.
    pub authority: &'a str,
    /// Every request header, pseudo-headers included.
    pub headers: &'a [(String, String)],
    pub body: Body<'a>,
    /// `:scheme` (`http` / `https`), for the DPoP `htu` check.
    pub scheme: &'a str,
    /// The TLS client certificate of the connection, when the client presented one.
    pub peer: Option<&'a binding::PeerCertificate>,
}

impl RequestFacts<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The classified call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub tool: String,
    pub action: String,
    pub risk: Risk,
    pub rule: String,
}

/// What the JSON-RPC body said, for the denial (its `id`) and the audit record.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RpcFacts {
    pub protocol: Option<Protocol>,
    pub id: serde_json::Value,
    pub method: Option<String>,
    /// The tool, resource or prompt name the call asks for, as sent.
    pub name: Option<String>,
    pub protocol_version: Option<String>,
}

/// The decision and everything the adapter needs to apply and audit it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub mode: Mode,
    pub reason: Reason,
    pub needed: Needed,
    pub intent: Option<Intent>,
    pub token: Option<Rc<VerifiedToken>>,
    /// SHA-256 of the presented token text, whether or not it verified.
    pub token_sha256: Option<[u8; 32]>,
    /// `Some(true)` when the token came from the verified-token cache.
    pub token_cache: Option<bool>,
    pub normalised_path: Option<String>,
    /// The normalised request target (path + query) when it differs from `:path`: the adapter
    /// forwards this, so the upstream serves exactly what was authorised.
    pub rewrite_target: Option<String>,
    /// Set on JSON-RPC endpoints.
    pub rpc: Option<RpcFacts>,
    pub constraint: Option<constraints::Check>,
    /// An allowed MCP `tools/list`: the adapter filters the response with [`tools_list::filter`].
    pub filter_tools_list: bool,
    /// One-time things an allowed call spends (a single-use token, a DPoP proof, an approval): the
    /// adapter must claim each in the state shared by all workers before forwarding, and refuse
    /// with `Claim::reason_if_taken` if any was claimed before.
    pub claims: Vec<Claim>,
    /// An allowed task-completing call: on a 2xx answer the adapter revokes this `txn`.
    pub completes_txn: Option<String>,
    /// Denied for an unknown `kid` (or no keys yet) of this remote issuer: a key refresh may help.
    pub key_refresh: Option<usize>,
}

impl Outcome {
    fn new(mode: Mode) -> Outcome {
        Outcome {
            mode,
            reason: Reason::TokenMissing,
            needed: Needed::Nothing,
            intent: None,
            token: None,
            token_sha256: None,
            token_cache: None,
            normalised_path: None,
            rewrite_target: None,
            rpc: None,
            constraint: None,
            filter_tools_list: false,
            claims: Vec::new(),
            completes_txn: None,
            key_refresh: None,
        }
    }

    fn decide(mut self, reason: Reason, needed: Needed) -> Outcome {
        self.reason = reason;
        self.needed = needed;
        self
    }

    pub fn allowed(&self) -> bool {
        self.reason.is_allow()
    }

    /// Turn an allow into a denial found by the adapter (a single-use `jti` another worker spent).
    pub fn refuse(mut self, reason: Reason, needed: Needed) -> Outcome {
        self.reason = reason;
        self.needed = needed;
        self.claims.clear();
        self.completes_txn = None;
        self.filter_tools_list = false;
        self
    }

    /// Whether the request goes upstream: allowed, or denied in `dry_run`.
    pub fn passes(&self) -> bool {
        self.allowed() || self.mode == Mode::DryRun
    }

    pub fn decision(&self) -> &'static str {
        if self.allowed() {
            "allow"
        } else {
            "deny"
        }
    }

    /// The response to send instead of forwarding, when the decision is enforced.
    pub fn enforced_denial(&self, policy: &Policy) -> Option<DenyResponse> {
        if self.passes() {
            return None;
        }
        let rpc = self
            .rpc
            .as_ref()
            .map(|rpc| RpcContext { id: &rpc.id, constraint: self.constraint.as_ref().and_then(|c| c.constraint()) });
        Some(deny_response(self.reason, &self.needed, policy.resource_metadata.as_deref(), rpc))
    }
}

/// Something an allowed call uses up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClaimKind {
    /// The token's `jti` on a `single_use` tool.
    SingleUse,
    /// A DPoP proof's `jti` (replay protection).
    DpopProof,
    /// An approval's `jti`: each approval allows one call.
    Approval,
}

impl ClaimKind {
    /// The name of the shared set that remembers these.
    pub fn set_name(self) -> &'static str {
        match self {
            ClaimKind::SingleUse => "used",
            ClaimKind::DpopProof => "dpop",
            ClaimKind::Approval => "approvals",
        }
    }

    /// What the caller needs instead: a replayed DPoP proof gets the DPoP challenge with `algs`.
    pub fn needed_if_taken(self, policy: &Policy) -> Needed {
        match self {
            ClaimKind::DpopProof => Needed::DpopProof {
                algs: policy.binding.dpop.algorithms.iter().map(|a| a.name().to_string()).collect(),
            },
            ClaimKind::SingleUse | ClaimKind::Approval => Needed::Nothing,
        }
    }

    pub fn reason_if_taken(self) -> Reason {
        match self {
            ClaimKind::SingleUse => Reason::TokenAlreadyUsed,
            ClaimKind::DpopProof => Reason::DpopProofReplayed,
            ClaimKind::Approval => Reason::ApprovalAlreadyUsed,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub kind: ClaimKind,
    pub id: String,
    pub expires_at: i64,
}

/// What a gateway remembers between requests. Everything in it either only saves work (the
/// verified-token cache) or is fed by the adapter from configuration, fetches and shared data: the
/// current key sets, the deny lists, and the tokens already spent on single-use tools.
pub struct State {
    pub cache: TokenCache,
    /// Signature verification by the host, installed by the adapter after a self-test.
    pub host_verifier: Option<Box<dyn crypto::HostVerifier>>,
    pub keys: keyset::KeyStore,
    pub revocations: revocation::Revocations,
    /// What this worker knows was spent: (kind, id) → until when it stays spent.
    pub claimed: std::collections::HashMap<(ClaimKind, String), i64>,
}

impl State {
    /// The state a freshly loaded policy starts from: inline keys, configured deny lists.
    pub fn new(policy: &Policy) -> State {
        let mut keys = keyset::KeyStore::new(policy.issuers.len());
        for (i, issuer) in policy.issuers.iter().enumerate() {
            if issuer.remote.is_none() {
                keys.set(i, keyset::KeySet { keys: issuer.keys.clone() });
            }
        }
        State {
            cache: TokenCache::new(policy.token_cache_entries, policy.token_cache_bytes),
            host_verifier: None,
            keys,
            revocations: revocation::Revocations {
                configured: policy.revocation.configured.clone(),
                ..Default::default()
            },
            claimed: Default::default(),
        }
    }
}

/// The first step, on request headers.
#[derive(Debug)]
pub enum Step {
    Decided(Box<Outcome>),
    /// A JSON-RPC endpoint: read the body (at most `max_bytes`), then call [`evaluate`].
    ReadBody {
        max_bytes: usize,
    },
}

/// Decide on headers alone, or ask for the body (JSON-RPC endpoints). Content type, encoding and a
/// declared length over the cap are refused here, before anything is buffered.
pub fn start(policy: &Policy, facts: &RequestFacts<'_>, now: i64, state: &mut State) -> Step {
    let Ok(target) = path::normalise(facts.path) else {
        return Step::Decided(Box::new(evaluate(policy, facts, now, state)));
    };
    match policy.jsonrpc.endpoint_for(&target.path) {
        Some(endpoint) if facts.method == "POST" => match check_body_headers(policy, facts) {
            Ok(()) => Step::ReadBody { max_bytes: policy.jsonrpc.max_body_bytes },
            Err(reason) => {
                let mut outcome = Outcome::new(policy.mode);
                outcome.rpc = Some(RpcFacts { protocol: Some(endpoint.protocol), ..RpcFacts::default() });
                Step::Decided(Box::new(outcome.decide(reason, Needed::Nothing)))
            }
        },
        Some(_) => Step::Decided(Box::new(evaluate(policy, facts, now, state))),
        None => {
            // an approval binds a plain HTTP call's body too: read it first
            let host = catalog::host_of(facts.authority);
            let request =
                catalog::Target { method: facts.method, path: &target.path, host: &host, headers: facts.headers };
            match policy.catalog.classify(&request) {
                Some((tool, _)) if approval::needs_body(policy, tool) => {
                    Step::ReadBody { max_bytes: policy.jsonrpc.max_body_bytes }
                }
                _ => Step::Decided(Box::new(evaluate(policy, facts, now, state))),
            }
        }
    }
}

fn check_body_headers(policy: &Policy, facts: &RequestFacts<'_>) -> Result<(), Reason> {
    let media_type = facts.header("content-type").unwrap_or("").split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(Reason::ContentTypeUnsupported);
    }
    if let Some(encoding) = facts.header("content-encoding") {
        if !encoding.trim().eq_ignore_ascii_case("identity") {
            return Err(Reason::ContentEncodingUnsupported);
        }
    }
    if let Some(length) = facts.header("content-length") {
        if length.trim().parse::<usize>().map_or(true, |n| n > policy.jsonrpc.max_body_bytes) {
            return Err(Reason::BodyTooLarge);
        }
    }
    Ok(())
}

/// The outcome to audit for a request that ended before it could be decided (the client went away,
/// or a proxy limit answered first, while the filter was still reading the body). Never forwarded.
pub fn abandoned(policy: &Policy) -> Outcome {
    Outcome::new(policy.mode).decide(Reason::RequestIncomplete, Needed::Nothing)
}

/// Decide one request. `now` is the host's clock in Unix seconds; `state` is what the gateway
/// remembers between requests (see [`State`]).
pub fn evaluate(policy: &Policy, facts: &RequestFacts<'_>, now: i64, state: &mut State) -> Outcome {
    let mut outcome = Outcome::new(policy.mode);

    // 1. the request itself
    let mut authorization = facts.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("authorization"));
    let first_credentials = authorization.next();
    if authorization.next().is_some() {
        return outcome.decide(Reason::AuthorizationInvalid, Needed::Nothing);
    }
    let target = match path::normalise(facts.path) {
        Ok(target) => target,
        Err(_) => return outcome.decide(Reason::PathInvalid, Needed::Nothing),
    };
    if target.target() != facts.path {
        outcome.rewrite_target = Some(target.target());
    }
    outcome.normalised_path = Some(target.path.clone());
    let endpoint = policy.jsonrpc.endpoint_for(&target.path);
    if endpoint.is_none() && facts.body == Body::TooLarge {
        return outcome.decide(Reason::BodyTooLarge, Needed::Nothing);
    }
    let call = match endpoint {
        None => None,
        Some(endpoint) => match read_call(policy, endpoint, facts, &mut outcome) {
            Ok(call) => Some(call),
            Err(reason) => return outcome.decide(reason, Needed::Nothing),
        },
    };

    // 2. who is calling, and with what right to present the token
    let Some((_, credentials)) = first_credentials else {
        return outcome.decide(Reason::TokenMissing, Needed::Nothing);
    };
    // Proxies join repeated headers with commas (Envoy does): a comma is never part of a bearer
    // credential, so this is two Authorization headers, and ambiguous.
    if credentials.contains(',') {
        return outcome.decide(Reason::AuthorizationInvalid, Needed::Nothing);
    }
    let (scheme, raw_token) = match credentials_of(credentials) {
        Ok(parsed) => parsed,
        Err(reason) => return outcome.decide(reason, Needed::Nothing),
    };
    let token = match verify_cached(policy, raw_token, now, state, &mut outcome) {
        Ok(token) => token,
        Err(reason) => return outcome.decide(reason, Needed::Nothing),
    };
    outcome.token = Some(Rc::clone(&token));
    // revocation is checked on every use: a cached verification does not outlive it
    if let Err(reason) = state.revocations.check(&token, now) {
        return outcome.decide(reason, Needed::Nothing);
    }
    if let Err((reason, needed)) =
        check_sender(policy, facts, &target.path, scheme, raw_token, &token, state, now, &mut outcome)
    {
        return outcome.decide(reason, needed);
    }

    // 3. what is being asked, and 4. does the task cover it
    let (reason, needed, tool) = match &call {
        Some(call) => authorize_call(policy, call, &token, now, &mut outcome),
        None => authorize_http(policy, facts, &target.path, &token, now, &mut outcome),
    };
    if !reason.is_allow() {
        return outcome.decide(reason, needed);
    }
    let risk = tool.map_or(Risk::Read, |t| t.risk);
    if token.claims.cnf.is_none()
        && (policy.issuers.get(token.issuer_index).is_some_and(|i| i.require_binding)
            || policy.binding.required_for_risks.contains(&risk))
    {
        return outcome.decide(Reason::BindingRequired, Needed::Nothing);
    }
    // 5. the task's lifetime, one-time use, and a human's yes
    if let Some(feed) = &policy.revocation.feed {
        if risk >= feed.stale_min_risk && state.revocations.feed_stale(now, feed.max_staleness_s) {
            return outcome.decide(Reason::RevocationFeedStale, Needed::Nothing);
        }
    }
    if let Some(tool) = tool {
        if tool.completes_task {
            outcome.completes_txn = token.claims.txn.clone();
        }
        if let Some(approvals) = policy.approvals.as_ref().filter(|a| a.risks.contains(&tool.risk)) {
            let digest = approval::call_digest(call.as_ref().and_then(Call::arguments), facts, &target.target());
            match approval::check(policy, approvals, facts, &token, tool, &digest, state.host_verifier.as_deref(), now)
            {
                Ok(claim) => outcome.claims.push(claim),
                Err((reason, needed)) => return outcome.decide(reason, needed),
            }
        }
        // last: a call refused for anything else (no approval yet) must not spend a single-use token
        if tool.single_use {
            let expires_at = token.claims.exp.saturating_add(token.clock_skew_s);
            outcome.claims.push(Claim { kind: ClaimKind::SingleUse, id: token.claims.jti.clone(), expires_at });
        }
    }
    if let Some(spent) =
        outcome.claims.iter().find(|c| state.claimed.get(&(c.kind, c.id.clone())).is_some_and(|exp| *exp > now))
    {
        let (reason, needed) = (spent.kind.reason_if_taken(), spent.kind.needed_if_taken(policy));
        return outcome.decide(reason, needed);
    }
    outcome.decide(reason, needed)
}

/// How the token was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Bearer,
    Dpop,
}

/// Sender constraint (token-profile.md §3 `cnf`, §6 presenter binding): a DPoP-bound token comes
/// with a valid proof of its key, a certificate-bound one on the connection with that certificate,
/// and an authenticated caller (mTLS SPIFFE ID) is the one the token names as acting.
#[allow(clippy::too_many_arguments)]
fn check_sender(
    policy: &Policy,
    facts: &RequestFacts<'_>,
    path: &str,
    scheme: Scheme,
    raw_token: &str,
    token: &VerifiedToken,
    state: &State,
    now: i64,
    outcome: &mut Outcome,
) -> Result<(), (Reason, Needed)> {
    let dpop_needed =
        || Needed::DpopProof { algs: policy.binding.dpop.algorithms.iter().map(|a| a.name().to_string()).collect() };
    let cnf = token.claims.cnf.as_ref();
    match (cnf.and_then(|c| c.jkt.as_deref()), scheme) {
        (Some(_), Scheme::Bearer) => return Err((Reason::DpopBoundTokenAsBearer, Needed::Nothing)),
        (None, Scheme::Dpop) => return Err((Reason::DpopProofInvalid, dpop_needed())),
        (Some(jkt), Scheme::Dpop) => {
            let mut proofs = facts.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("dpop"));
            let proof = match (proofs.next(), proofs.next()) {
                (Some((_, proof)), None) => proof,
                (None, _) => return Err((Reason::DpopProofMissing, dpop_needed())),
                (Some(_), Some(_)) => return Err((Reason::DpopProofInvalid, dpop_needed())),
            };
            let origin = match &policy.binding.dpop.htu_origin {
                Some(origin) => origin.clone(),
                None => format!("{}://{}", facts.scheme, facts.authority),
            };
            let request =
                binding::ProofRequest { method: facts.method, origin: &origin, path, access_token: raw_token, jkt };
            let accepted =
                binding::check_proof(proof, &request, &policy.binding.dpop, state.host_verifier.as_deref(), now)
                    .map_err(|reason| (reason, dpop_needed()))?;
            outcome.claims.push(Claim {
                kind: ClaimKind::DpopProof,
                id: accepted.jti,
                expires_at: accepted.remember_until,
            });
        }
        (None, Scheme::Bearer) => {}
    }
    if let Some(x5t) = cnf.and_then(|c| c.x5t_s256.as_deref()) {
        binding::check_certificate(x5t, facts.peer).map_err(|reason| (reason, Needed::Nothing))?;
    }
    if let Some(caller) = facts.peer.and_then(|p| p.spiffe_id()) {
        if token.claims.presenter() != caller {
            return Err((Reason::DelegationPresenterMismatch, Needed::Nothing));
        }
    }
    Ok(())
}

fn verify_cached(
    policy: &Policy,
    raw_token: &str,
    now: i64,
    state: &mut State,
    outcome: &mut Outcome,
) -> Result<Rc<VerifiedToken>, Reason> {
    let hash: [u8; 32] = Sha256::digest(raw_token.as_bytes()).into();
    outcome.token_sha256 = Some(hash);
    if let Some(token) = state.cache.get(&hash, now) {
        // a key rotated out of its issuer's set takes its cached tokens with it
        if state.keys.get(token.issuer_index).is_some_and(|set| set.keys.contains_key(&token.kid)) {
            outcome.token_cache = Some(true);
            return Ok(token);
        }
    }
    outcome.token_cache = Some(false);
    let host = match policy.verifier {
        VerifierChoice::Rust => None,
        VerifierChoice::Auto | VerifierChoice::Host => state.host_verifier.as_deref(),
    };
    let verified = match token::verify(
        raw_token,
        &policy.issuers,
        &state.keys,
        host,
        &policy.audience,
        policy.max_token_bytes,
        now,
    ) {
        Ok(verified) => Rc::new(verified),
        Err(reason) => {
            // an unknown kid (or no keys yet) of a remote issuer may be a rotation: tell the adapter
            if matches!(reason, Reason::KidUnknown | Reason::KeysUnavailable) {
                outcome.key_refresh = token::issuer_index_of(raw_token, &policy.issuers)
                    .filter(|i| policy.issuers.get(*i).is_some_and(|issuer| issuer.remote.is_some()));
            }
            return Err(reason);
        }
    };
    state.cache.insert(hash, Rc::clone(&verified));
    Ok(verified)
}

fn set_intent(outcome: &mut Outcome, tool: &catalog::Tool, action: &str, rule: String) {
    outcome.intent = Some(Intent { tool: tool.name.clone(), action: action.to_string(), risk: tool.risk, rule });
}

/// A decision on the call, with the catalog entry it concerned.
type CallDecision<'p> = (Reason, Needed, Option<&'p catalog::Tool>);

fn authorize_http<'p>(
    policy: &'p Policy,
    facts: &RequestFacts<'_>,
    path: &str,
    token: &VerifiedToken,
    now: i64,
    outcome: &mut Outcome,
) -> CallDecision<'p> {
    let host = catalog::host_of(facts.authority);
    let request = catalog::Target { method: facts.method, path, host: &host, headers: facts.headers };
    let Some((tool, rule)) = policy.catalog.classify(&request) else {
        return match policy.unknown_tool {
            UnknownTool::Deny => (Reason::ToolUnknown, Needed::Nothing, None),
            UnknownTool::AllowWithToken => (Reason::UnknownToolAllowed, Needed::Nothing, None),
        };
    };
    set_intent(outcome, tool, &tool.action, rule.id.clone());
    match authz::authorize(policy, tool, &tool.action, token, now) {
        Ok(grant) => (grant.reason, Needed::Nothing, Some(tool)),
        Err((reason, needed)) => (reason, needed, Some(tool)),
    }
}

/// A JSON-RPC call read from the body.
pub(crate) enum Call {
    Mcp(McpCall),
    A2a {
        agent: String,
        method: Option<&'static str>,
    },
    /// GET (the server's event stream) or DELETE (end of session) on an MCP endpoint.
    McpSession,
}

impl Call {
    /// The arguments an approval binds: `params.arguments` of an MCP tool call.
    fn arguments(&self) -> Option<&serde_json::Value> {
        match self {
            Call::Mcp(McpCall::ToolCall { arguments, .. }) => Some(arguments),
            _ => None,
        }
    }
}

fn read_call(
    policy: &Policy,
    endpoint: &Endpoint,
    facts: &RequestFacts<'_>,
    outcome: &mut Outcome,
) -> Result<Call, Reason> {
    let version = facts.header("mcp-protocol-version").map(str::to_string);
    outcome.rpc =
        Some(RpcFacts { protocol: Some(endpoint.protocol), protocol_version: version, ..RpcFacts::default() });
    if endpoint.protocol == Protocol::Mcp && (facts.method == "GET" || facts.method == "DELETE") {
        return Ok(Call::McpSession);
    }
    if facts.method != "POST" {
        return Err(Reason::JsonrpcInvalid);
    }
    check_body_headers(policy, facts)?;
    let body = match facts.body {
        Body::Complete(body) => body,
        Body::TooLarge => return Err(Reason::BodyTooLarge),
        // an adapter that did not read the body must not get an allow for it
        Body::NotRead => return Err(Reason::JsonInvalid),
    };
    let message = jsonrpc::parse_message(body)?;
    if let Some(rpc) = outcome.rpc.as_mut() {
        rpc.id = message.error_id();
        rpc.method = message.method.clone();
    }
    match endpoint.protocol {
        Protocol::Mcp => {
            let call = jsonrpc::classify_mcp(&message)?;
            if let Some(rpc) = outcome.rpc.as_mut() {
                rpc.name = call.name().map(str::to_string);
            }
            check_mcp_headers(facts, &message, &call)?;
            Ok(Call::Mcp(call))
        }
        Protocol::A2a => Ok(Call::A2a {
            agent: endpoint.agent.clone().unwrap_or_default(),
            method: message.method.as_deref().and_then(jsonrpc::a2a_method),
        }),
    }
}

/// MCP 2026-07-28: `Mcp-Method` and `Mcp-Name` mirror the body. Whenever they are sent they must
/// match it; the decision itself is always made from the body.
fn check_mcp_headers(facts: &RequestFacts<'_>, message: &jsonrpc::Message, call: &McpCall) -> Result<(), Reason> {
    if let Some(method) = facts.header("mcp-method") {
        if Some(method) != message.method.as_deref() {
            return Err(Reason::McpHeaderMismatch);
        }
    }
    if let Some(name) = facts.header("mcp-name") {
        if Some(name) != call.name() {
            return Err(Reason::McpHeaderMismatch);
        }
    }
    Ok(())
}

fn authorize_call<'p>(
    policy: &'p Policy,
    call: &Call,
    token: &VerifiedToken,
    now: i64,
    outcome: &mut Outcome,
) -> CallDecision<'p> {
    let protocol_allowed = match policy.jsonrpc.protocol_methods {
        ProtocolMethods::AllowWithToken => (Reason::ProtocolMethodAllowed, Needed::Nothing, None),
        ProtocolMethods::Deny => (Reason::MethodNotAllowed, Needed::Nothing, None),
    };
    // A tool the catalog does not know and a tool outside the task get the same answer, so that an
    // agent cannot probe which tools exist: no `scope` hint in either.
    let not_permitted = (Reason::ScopeInsufficient, Needed::Nothing, None);
    let (tool, action, arguments) = match call {
        Call::McpSession | Call::Mcp(McpCall::Protocol) => return protocol_allowed,
        Call::Mcp(McpCall::List) => {
            outcome.filter_tools_list = policy.jsonrpc.filter_tools_list
                && outcome.rpc.as_ref().and_then(|r| r.method.as_deref()) == Some("tools/list");
            return (Reason::ListAllowed, Needed::Nothing, None);
        }
        Call::Mcp(McpCall::Other) | Call::A2a { method: None, .. } => {
            return (Reason::MethodNotAllowed, Needed::Nothing, None);
        }
        Call::Mcp(mcp) => {
            let tool = match mcp {
                McpCall::ToolCall { name, .. } => policy.catalog.mcp_tool(name),
                McpCall::ResourceRead { uri } => policy.catalog.mcp_resource(uri),
                McpCall::PromptGet { name } => policy.catalog.mcp_prompt(name),
                _ => None,
            };
            let arguments = match mcp {
                McpCall::ToolCall { arguments, .. } => Some(arguments),
                _ => None,
            };
            (tool, mcp.action().unwrap_or_default(), arguments)
        }
        Call::A2a { agent, method: Some(method) } => (policy.catalog.a2a(agent, method), *method, None),
    };
    let Some(tool) = tool else {
        return not_permitted;
    };
    let rule = match &tool.kind {
        catalog::ToolKind::A2a { .. } => format!("a2a:{}", tool.name),
        _ => format!("mcp:{}", tool.name),
    };
    set_intent(outcome, tool, action, rule);
    let grant = match authz::authorize(policy, tool, action, token, now) {
        Ok(grant) => grant,
        Err((Reason::ScopeInsufficient, _)) => return not_permitted,
        Err((reason, needed)) => return (reason, needed, Some(tool)),
    };
    let empty = serde_json::Value::Object(serde_json::Map::new());
    let check = constraints::check(&tool.constraints, arguments.unwrap_or(&empty), &grant.entries);
    let verdict = match check {
        constraints::Check::Passed => (grant.reason, Needed::Nothing, Some(tool)),
        constraints::Check::Missing(_) => (Reason::ArgumentMissing, Needed::Nothing, Some(tool)),
        constraints::Check::Failed(_) => (Reason::ArgumentConstraintFailed, Needed::Nothing, Some(tool)),
    };
    if !tool.constraints.is_empty() {
        outcome.constraint = Some(check);
    }
    verdict
}

/// RFC 6750 §2.1 / RFC 9449 §7.1: `Bearer` or `DPoP` (any case), one or more spaces, the token.
/// Other schemes are not credentials this gateway accepts: the caller gets the bare challenge.
fn credentials_of(value: &str) -> Result<(Scheme, &str), Reason> {
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err(Reason::TokenMissing);
    };
    let token = rest.trim_start_matches(' ').trim_end_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(Reason::TokenMalformed);
    }
    Ok((scheme, token))
}

/// Unpadded base64url, as JOSE uses; padding or any other alphabet is refused.
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()
}

pub fn hex(bytes: &[u8; 32]) -> String {
    let mut out = String::with_capacity(64);
    for b in bytes {
        for nibble in [b >> 4, b & 0xf] {
            out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
        }
    }
    out
}
