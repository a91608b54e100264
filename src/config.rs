//! The plugin configuration: a strict JSON schema, compiled once into a `Policy`.
//! Every refusal names the field (as a path like `issuers[0].jwks.keys[1].kid`) and the problem.

use crate::catalog::{
    Catalog, HeaderMatcher, HeaderValueMatch, HostMatcher, PathMatcher, Rule, TemplateSegment, Tool, ToolKind,
};
use crate::constraints::{Bound, Constraint, Op};
use crate::jsonrpc::{Protocol, A2A_METHODS};
use crate::keys::{compile_jwk, Alg};
use crate::keyset::RemoteKeys;
use crate::revocation::{Entries, Kind};
use crate::token::{normalise_typ, Issuer};
use crate::Risk;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::fmt;

/// A configuration that cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// Not JSON, an unknown field, a missing field or a value of the wrong type.
    Schema { field: String, message: String },
    /// A well-formed value that is impossible or contradictory.
    Invalid { field: String, message: String },
    /// Two rules of different tools that tie in precedence and can match the same request.
    AmbiguousRules { first: String, second: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Schema { field, message } => write!(f, "invalid config at {field}: {message}"),
            ConfigError::Invalid { field, message } => write!(f, "invalid config at {field}: {message}"),
            ConfigError::AmbiguousRules { first, second } => write!(
                f,
                "invalid config at {first}: overlaps {second} with equal precedence; give one a higher priority"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.into(), message: message.into() }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    DryRun,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::DryRun => "dry_run",
        }
    }
}

/// Who checks ES256, ES384 and RS256 signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifierChoice {
    /// The host's BoringSSL when it offers `verify_signature` and passes the self-test, else Rust.
    #[default]
    Auto,
    /// The host only: a host without it (or failing the self-test) refuses the configuration.
    Host,
    /// Pure Rust compiled to wasm, always.
    Rust,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownTool {
    #[default]
    Deny,
    /// A request that matches no tool passes with any valid token (risk `read` in the audit).
    AllowWithToken,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigDoc {
    audience: String,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    unknown_tool: UnknownTool,
    #[serde(default = "default_max_token_bytes")]
    max_token_bytes: usize,
    #[serde(default)]
    resource_metadata: Option<String>,
    issuers: Vec<IssuerDoc>,
    #[serde(default)]
    tools: Vec<ToolDoc>,
    #[serde(default)]
    step_up: StepUpDoc,
    #[serde(default)]
    binding: BindingDoc,
    approvals: Option<ApprovalsDoc>,
    #[serde(default)]
    jsonrpc: JsonRpcDoc,
    #[serde(default)]
    revocation: RevocationDoc,
    #[serde(default)]
    audit: AuditDoc,
    #[serde(default)]
    token_cache: TokenCacheDoc,
    #[serde(default)]
    verifier: VerifierChoice,
}

fn default_max_token_bytes() -> usize {
    8192
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuerDoc {
    issuer: String,
    jwks: Option<JwksDoc>,
    remote_jwks: Option<RemoteJwksDoc>,
    algorithms: Vec<String>,
    #[serde(default = "default_token_types")]
    token_types: Vec<String>,
    #[serde(default = "default_max_ttl")]
    max_ttl_s: u64,
    #[serde(default = "default_skew")]
    clock_skew_s: u64,
    #[serde(default)]
    subject_prefixes: Vec<String>,
    #[serde(default)]
    client_ids: Vec<String>,
    #[serde(default)]
    actor_patterns: Vec<String>,
    #[serde(default = "default_delegation_depth")]
    max_delegation_depth: usize,
    #[serde(default)]
    require_binding: bool,
}

fn default_delegation_depth() -> usize {
    2
}

fn default_token_types() -> Vec<String> {
    vec!["at+jwt".into()]
}
fn default_max_ttl() -> u64 {
    900
}
fn default_skew() -> u64 {
    30
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JwksDoc {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoteJwksDoc {
    cluster: String,
    path: String,
    authority: String,
    #[serde(default)]
    discovery: bool,
    #[serde(default = "default_fetch_timeout")]
    timeout_ms: u64,
    #[serde(default = "default_max_jwks_bytes")]
    max_bytes: usize,
    #[serde(default = "default_min_refresh")]
    min_refresh_s: u64,
    #[serde(default = "default_max_refresh")]
    max_refresh_s: u64,
    #[serde(default = "default_kid_debounce")]
    unknown_kid_debounce_s: u64,
}

fn default_fetch_timeout() -> u64 {
    2000
}
fn default_max_jwks_bytes() -> usize {
    64 * 1024
}
fn default_min_refresh() -> u64 {
    30
}
fn default_max_refresh() -> u64 {
    3600
}
fn default_kid_debounce() -> u64 {
    10
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RevocationDoc {
    #[serde(default)]
    jti: Vec<String>,
    #[serde(default)]
    txn: Vec<String>,
    #[serde(default)]
    sub: Vec<String>,
    #[serde(default)]
    client_id: Vec<String>,
    #[serde(default)]
    actor: Vec<String>,
    #[serde(default)]
    kid: Vec<String>,
    feed: Option<FeedDoc>,
    revoke_header: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedDoc {
    cluster: String,
    path: String,
    authority: String,
    #[serde(default = "default_poll")]
    poll_s: u64,
    #[serde(default = "default_fetch_timeout")]
    timeout_ms: u64,
    #[serde(default = "default_max_feed_bytes")]
    max_bytes: usize,
    #[serde(default = "default_staleness")]
    max_staleness_s: u64,
    #[serde(default = "default_stale_risk")]
    stale_min_risk: Risk,
}

fn default_poll() -> u64 {
    30
}
fn default_max_feed_bytes() -> usize {
    1024 * 1024
}
fn default_staleness() -> u64 {
    300
}
fn default_stale_risk() -> Risk {
    Risk::Write
}

/// The revocation feed: where it is polled, and what a stale one means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub poll_s: u64,
    pub timeout_ms: u64,
    pub max_bytes: usize,
    pub max_staleness_s: i64,
    /// Once the feed is older than `max_staleness_s`, calls at or above this risk are refused.
    pub stale_min_risk: Risk,
}

/// Revocation settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RevocationSettings {
    pub configured: Entries,
    pub feed: Option<Feed>,
    /// A response header by which a trusted upstream ends the request's task (revokes its `txn`).
    pub revoke_header: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolDoc {
    name: String,
    action: Option<String>,
    risk: Risk,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(rename = "match")]
    matches: Option<Vec<MatchDoc>>,
    mcp: Option<McpToolDoc>,
    a2a: Option<A2aToolDoc>,
    #[serde(default)]
    constraints: Vec<ConstraintDoc>,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    completes_task: bool,
    #[serde(default)]
    single_use: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct McpToolDoc {
    tool: Option<String>,
    resource: Option<String>,
    resource_prefix: Option<String>,
    prompt: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct A2aToolDoc {
    agent: String,
    methods: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConstraintDoc {
    id: String,
    argument: String,
    op: Op,
    value: Option<serde_json::Value>,
    limit: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRpcDoc {
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
    #[serde(default = "default_max_response")]
    max_response_bytes: usize,
    #[serde(default)]
    endpoints: Vec<EndpointDoc>,
    #[serde(default)]
    protocol_methods: ProtocolMethods,
    #[serde(default = "default_true")]
    filter_tools_list: bool,
    #[serde(default)]
    unparseable_tools_list: UnparseableList,
}

impl Default for JsonRpcDoc {
    fn default() -> Self {
        JsonRpcDoc {
            max_body_bytes: default_max_body(),
            max_response_bytes: default_max_response(),
            endpoints: Vec::new(),
            protocol_methods: ProtocolMethods::default(),
            filter_tools_list: true,
            unparseable_tools_list: UnparseableList::default(),
        }
    }
}

fn default_max_body() -> usize {
    64 * 1024
}
fn default_max_response() -> usize {
    1024 * 1024
}
fn default_true() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointDoc {
    protocol: Protocol,
    path: Option<String>,
    path_prefix: Option<String>,
    agent: Option<String>,
}

/// What MCP session plumbing (`initialize`, `ping`, notifications, the GET stream) gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtocolMethods {
    #[default]
    AllowWithToken,
    Deny,
}

/// What a `tools/list` response that cannot be read becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnparseableList {
    /// Replaced by a JSON-RPC error: an agent never sees tools the filter could not check.
    #[default]
    Error,
    Pass,
}

/// One JSON-RPC endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub protocol: Protocol,
    pub path: PathMatcher,
    /// The A2A agent served here (the identifier of its calls).
    pub agent: Option<String>,
}

/// JSON-RPC body inspection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonRpcSettings {
    pub max_body_bytes: usize,
    pub max_response_bytes: usize,
    pub endpoints: Vec<Endpoint>,
    pub protocol_methods: ProtocolMethods,
    pub filter_tools_list: bool,
    pub unparseable_tools_list: UnparseableList,
}

impl JsonRpcSettings {
    /// The endpoint serving a normalised path: exact paths first, then the longest prefix.
    pub fn endpoint_for(&self, path: &str) -> Option<&Endpoint> {
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        self.endpoints.iter().filter(|e| e.path.matches_path(path, &segments)).max_by_key(|e| match &e.path {
            PathMatcher::Exact(_) => usize::MAX,
            PathMatcher::Prefix(p) => p.len(),
            PathMatcher::Template(t) => t.len(),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchDoc {
    #[serde(default)]
    methods: Vec<String>,
    path: Option<String>,
    path_prefix: Option<String>,
    path_template: Option<String>,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    headers: Vec<HeaderMatchDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderMatchDoc {
    name: String,
    exact: Option<String>,
    present: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BindingDoc {
    #[serde(default)]
    dpop: DpopDoc,
    #[serde(default)]
    required_for_risks: Vec<Risk>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DpopDoc {
    #[serde(default = "default_dpop_algorithms")]
    algorithms: Vec<String>,
    #[serde(default = "default_dpop_window")]
    iat_window_s: u64,
    htu_origin: Option<String>,
}

impl Default for DpopDoc {
    fn default() -> Self {
        DpopDoc { algorithms: default_dpop_algorithms(), iat_window_s: default_dpop_window(), htu_origin: None }
    }
}

fn default_dpop_algorithms() -> Vec<String> {
    ["ES256", "ES384", "RS256", "PS256", "EdDSA"].map(String::from).to_vec()
}
fn default_dpop_window() -> u64 {
    60
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalsDoc {
    issuer: String,
    jwks: JwksDoc,
    algorithms: Vec<String>,
    #[serde(default = "default_approval_types")]
    token_types: Vec<String>,
    #[serde(default = "default_approval_ttl")]
    max_ttl_s: u64,
    #[serde(default = "default_skew")]
    clock_skew_s: u64,
    #[serde(default = "default_approval_header")]
    header: String,
    #[serde(default = "default_approval_risks")]
    risks: Vec<Risk>,
}

fn default_approval_types() -> Vec<String> {
    vec!["intentgate-approval+jwt".into()]
}
fn default_approval_ttl() -> u64 {
    300
}
fn default_approval_header() -> String {
    "x-intentgate-approval".into()
}
fn default_approval_risks() -> Vec<Risk> {
    vec![Risk::Payment, Risk::Infra]
}

/// Sender-constrained tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub dpop: crate::binding::DpopSettings,
    /// Calls at these risks need a bound token (DPoP or mTLS), whatever the issuer.
    pub required_for_risks: Vec<Risk>,
}

/// Human approvals: who signs them, where they travel, which calls need one.
#[derive(Debug, Clone)]
pub struct Approvals {
    /// The approver, compiled like a token issuer (its own keys, algorithms and `typ`).
    pub issuer: Issuer,
    pub keys: crate::keyset::KeyStore,
    /// Lower-case request header carrying the approval JWT.
    pub header: String,
    pub risks: Vec<Risk>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepUpDoc {
    #[serde(default)]
    acr_values: Vec<String>,
    #[serde(default = "default_step_up_age")]
    max_age_s: u64,
    #[serde(default = "default_step_up_risks")]
    risks: Vec<Risk>,
}

impl Default for StepUpDoc {
    fn default() -> Self {
        StepUpDoc { acr_values: Vec::new(), max_age_s: default_step_up_age(), risks: default_step_up_risks() }
    }
}

fn default_step_up_age() -> u64 {
    300
}
fn default_step_up_risks() -> Vec<Risk> {
    vec![Risk::Credential, Risk::Payment, Risk::Infra]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditDoc {
    #[serde(default = "default_header_prefix")]
    header_prefix: String,
    #[serde(default)]
    forward_authorization: bool,
}

impl Default for AuditDoc {
    fn default() -> Self {
        AuditDoc { header_prefix: default_header_prefix(), forward_authorization: false }
    }
}

fn default_header_prefix() -> String {
    "x-intentgate-".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenCacheDoc {
    #[serde(default = "default_cache_entries")]
    max_entries: usize,
    #[serde(default = "default_cache_bytes")]
    max_bytes: usize,
}

fn default_cache_bytes() -> usize {
    4 * 1024 * 1024
}

impl Default for TokenCacheDoc {
    fn default() -> Self {
        TokenCacheDoc { max_entries: default_cache_entries(), max_bytes: default_cache_bytes() }
    }
}

fn default_cache_entries() -> usize {
    1024
}

/// Step-up requirements (RFC 9470) for the riskiest classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUp {
    pub acr_values: Vec<String>,
    pub max_age_s: i64,
    pub risks: Vec<Risk>,
}

/// Audit output settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    pub header_prefix: String,
    pub forward_authorization: bool,
}

/// The compiled configuration. Built once per plugin configuration and shared by every request.
#[derive(Debug, Clone)]
pub struct Policy {
    pub audience: String,
    pub mode: Mode,
    pub unknown_tool: UnknownTool,
    pub max_token_bytes: usize,
    pub resource_metadata: Option<String>,
    pub issuers: Vec<Issuer>,
    pub catalog: Catalog,
    pub step_up: StepUp,
    pub binding: Binding,
    pub approvals: Option<Approvals>,
    pub jsonrpc: JsonRpcSettings,
    pub revocation: RevocationSettings,
    pub audit: AuditSettings,
    pub token_cache_entries: usize,
    pub token_cache_bytes: usize,
    pub verifier: VerifierChoice,
}

const MAX_TOKEN_BYTES_LIMIT: usize = 64 * 1024;
const MAX_TTL_LIMIT_S: u64 = 86_400;
const MAX_SKEW_LIMIT_S: u64 = 300;

impl Policy {
    /// How long any token of any issuer can live, skew included: how long a completed task's `txn`
    /// must stay revoked to outlive every token of the task.
    pub fn longest_token_life_s(&self) -> i64 {
        self.issuers.iter().map(|i| i.max_ttl_s + i.clock_skew_s).max().unwrap_or(0)
    }

    /// Whether tasks can end on this gateway (a completing tool or the trusted header): only then is
    /// the shared list of completed tasks worth reading on every request.
    pub fn tracks_completion(&self) -> bool {
        self.revocation.revoke_header.is_some() || self.catalog.tools.iter().any(|t| t.completes_task)
    }

    /// Parse and compile a plugin configuration.
    pub fn from_json(bytes: &[u8]) -> Result<Policy, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let doc: ConfigDoc = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let field = e.path().to_string();
            ConfigError::Schema {
                field: if field == "." { "(root)".into() } else { field },
                message: e.into_inner().to_string(),
            }
        })?;
        de.end().map_err(|e| ConfigError::Schema { field: "(root)".into(), message: e.to_string() })?;
        compile(doc)
    }
}

fn compile(doc: ConfigDoc) -> Result<Policy, ConfigError> {
    if doc.audience.trim().is_empty() {
        return Err(invalid("audience", "must not be empty"));
    }
    if doc.max_token_bytes < 64 || doc.max_token_bytes > MAX_TOKEN_BYTES_LIMIT {
        return Err(invalid(
            "max_token_bytes",
            format!("{} is outside 64..={MAX_TOKEN_BYTES_LIMIT}", doc.max_token_bytes),
        ));
    }
    if let Some(url) = &doc.resource_metadata {
        if !url.starts_with("https://") && !url.starts_with("http://") || !is_quotable(url) {
            return Err(invalid("resource_metadata", format!("{url:?} is not an http(s) URL")));
        }
    }
    if doc.issuers.is_empty() {
        return Err(invalid("issuers", "at least one issuer is required"));
    }
    let mut issuers = Vec::new();
    for (i, issuer) in doc.issuers.into_iter().enumerate() {
        let compiled = compile_issuer(issuer, &format!("issuers[{i}]"))?;
        if issuers.iter().any(|other: &Issuer| other.issuer == compiled.issuer) {
            return Err(invalid(format!("issuers[{i}].issuer"), format!("{:?} is configured twice", compiled.issuer)));
        }
        issuers.push(compiled);
    }

    let step_up = compile_step_up(doc.step_up)?;
    let binding = compile_binding(doc.binding)?;
    let approvals = doc.approvals.map(compile_approvals).transpose()?;
    let jsonrpc = compile_jsonrpc(doc.jsonrpc)?;
    let revocation = compile_revocation(doc.revocation)?;
    let catalog = compile_catalog(doc.tools, &step_up, &jsonrpc)?;

    let prefix = doc.audit.header_prefix;
    if prefix.len() < 2 || !prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(invalid(
            "audit.header_prefix",
            format!("{prefix:?} must be at least 2 characters of a-z, 0-9 and -"),
        ));
    }
    if doc.token_cache.max_bytes > 256 * 1024 * 1024 {
        return Err(invalid("token_cache.max_bytes", format!("{} is above 268435456", doc.token_cache.max_bytes)));
    }
    if doc.token_cache.max_entries > 1_000_000 {
        return Err(invalid("token_cache.max_entries", format!("{} is above 1000000", doc.token_cache.max_entries)));
    }
    Ok(Policy {
        audience: doc.audience,
        mode: doc.mode,
        unknown_tool: doc.unknown_tool,
        max_token_bytes: doc.max_token_bytes,
        resource_metadata: doc.resource_metadata,
        issuers,
        catalog,
        step_up,
        binding,
        approvals,
        jsonrpc,
        revocation,
        audit: AuditSettings { header_prefix: prefix, forward_authorization: doc.audit.forward_authorization },
        token_cache_entries: doc.token_cache.max_entries,
        token_cache_bytes: doc.token_cache.max_bytes,
        verifier: doc.verifier,
    })
}

fn compile_issuer(doc: IssuerDoc, at: &str) -> Result<Issuer, ConfigError> {
    if doc.issuer.is_empty() {
        return Err(invalid(format!("{at}.issuer"), "must not be empty"));
    }
    if doc.algorithms.is_empty() {
        return Err(invalid(format!("{at}.algorithms"), "at least one algorithm is required"));
    }
    let mut algorithms = Vec::new();
    for (j, name) in doc.algorithms.iter().enumerate() {
        let alg = Alg::from_name(name).ok_or_else(|| {
            invalid(
                format!("{at}.algorithms[{j}]"),
                format!("{name:?} is not supported (ES256, ES384, RS256, PS256, EdDSA, HS256; never none)"),
            )
        })?;
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    let symmetric = algorithms.iter().filter(|a| a.is_symmetric()).count();
    if symmetric > 0 && symmetric != algorithms.len() {
        return Err(invalid(
            format!("{at}.algorithms"),
            "HS256 cannot be mixed with public-key algorithms in one issuer (algorithm confusion)",
        ));
    }
    let mut keys = HashMap::new();
    let remote = match (doc.jwks, doc.remote_jwks) {
        (Some(jwks), None) => {
            if jwks.keys.is_empty() {
                return Err(invalid(format!("{at}.jwks.keys"), "at least one key is required"));
            }
            for (k, value) in jwks.keys.iter().enumerate() {
                let field = format!("{at}.jwks.keys[{k}]");
                let key = compile_jwk(value, &algorithms).map_err(|e| invalid(&field, e.0))?;
                if keys.contains_key(&key.kid) {
                    return Err(invalid(format!("{field}.kid"), format!("{:?} appears twice", key.kid)));
                }
                keys.insert(key.kid.clone(), key);
            }
            None
        }
        (None, Some(remote)) => Some(compile_remote(remote, &format!("{at}.remote_jwks"), symmetric > 0)?),
        _ => return Err(invalid(at, "exactly one of jwks, remote_jwks is required")),
    };
    if doc.token_types.is_empty() {
        return Err(invalid(format!("{at}.token_types"), "at least one typ is required"));
    }
    if doc.max_ttl_s == 0 || doc.max_ttl_s > MAX_TTL_LIMIT_S {
        return Err(invalid(format!("{at}.max_ttl_s"), format!("{} is outside 1..={MAX_TTL_LIMIT_S}", doc.max_ttl_s)));
    }
    if doc.clock_skew_s > MAX_SKEW_LIMIT_S {
        return Err(invalid(format!("{at}.clock_skew_s"), format!("{} is above {MAX_SKEW_LIMIT_S}", doc.clock_skew_s)));
    }
    for (j, prefix) in doc.subject_prefixes.iter().enumerate() {
        if prefix.is_empty() {
            return Err(invalid(format!("{at}.subject_prefixes[{j}]"), "must not be empty"));
        }
    }
    if doc.max_delegation_depth > 8 {
        return Err(invalid(format!("{at}.max_delegation_depth"), format!("{} is above 8", doc.max_delegation_depth)));
    }
    for (j, pattern) in doc.actor_patterns.iter().enumerate() {
        if pattern.is_empty() {
            return Err(invalid(format!("{at}.actor_patterns[{j}]"), "must not be empty"));
        }
    }
    for (j, id) in doc.client_ids.iter().enumerate() {
        if id.is_empty() {
            return Err(invalid(format!("{at}.client_ids[{j}]"), "must not be empty"));
        }
    }
    Ok(Issuer {
        issuer: doc.issuer,
        keys,
        remote,
        algorithms,
        token_types: doc.token_types.iter().map(|t| normalise_typ(t)).collect(),
        max_ttl_s: doc.max_ttl_s as i64,
        clock_skew_s: doc.clock_skew_s as i64,
        subject_prefixes: doc.subject_prefixes,
        client_ids: doc.client_ids,
        actor_patterns: doc.actor_patterns,
        max_delegation_depth: doc.max_delegation_depth,
        require_binding: doc.require_binding,
    })
}

fn compile_remote(doc: RemoteJwksDoc, at: &str, symmetric: bool) -> Result<RemoteKeys, ConfigError> {
    if symmetric {
        return Err(invalid(at, "HMAC secrets are never fetched: configure them inline in jwks"));
    }
    check_upstream(&doc.cluster, &doc.path, &doc.authority, at)?;
    if doc.timeout_ms == 0 || doc.timeout_ms > 60_000 {
        return Err(invalid(format!("{at}.timeout_ms"), format!("{} is outside 1..=60000", doc.timeout_ms)));
    }
    if doc.max_bytes < 256 || doc.max_bytes > 4 * 1024 * 1024 {
        return Err(invalid(format!("{at}.max_bytes"), format!("{} is outside 256..=4194304", doc.max_bytes)));
    }
    if doc.min_refresh_s == 0 || doc.min_refresh_s > doc.max_refresh_s || doc.max_refresh_s > 86_400 {
        return Err(invalid(
            format!("{at}.min_refresh_s"),
            format!("{}..{} must satisfy 1 <= min <= max <= 86400", doc.min_refresh_s, doc.max_refresh_s),
        ));
    }
    if doc.unknown_kid_debounce_s == 0 || doc.unknown_kid_debounce_s > 3600 {
        return Err(invalid(
            format!("{at}.unknown_kid_debounce_s"),
            format!("{} is outside 1..=3600", doc.unknown_kid_debounce_s),
        ));
    }
    Ok(RemoteKeys {
        cluster: doc.cluster,
        path: doc.path,
        authority: doc.authority,
        discovery: doc.discovery,
        timeout_ms: doc.timeout_ms,
        max_bytes: doc.max_bytes,
        min_refresh_s: doc.min_refresh_s,
        max_refresh_s: doc.max_refresh_s,
        unknown_kid_debounce_s: doc.unknown_kid_debounce_s,
    })
}

fn check_upstream(cluster: &str, path: &str, authority: &str, at: &str) -> Result<(), ConfigError> {
    if cluster.is_empty() || !is_quotable(cluster) {
        return Err(invalid(format!("{at}.cluster"), format!("{cluster:?} is not a cluster name")));
    }
    if !path.starts_with('/') || !is_quotable(path) || path.contains(' ') {
        return Err(invalid(format!("{at}.path"), format!("{path:?} is not an absolute path")));
    }
    if authority.is_empty() || !is_quotable(authority) || authority.contains(' ') {
        return Err(invalid(format!("{at}.authority"), format!("{authority:?} is not a host")));
    }
    Ok(())
}

fn compile_revocation(doc: RevocationDoc) -> Result<RevocationSettings, ConfigError> {
    let mut configured = Entries::new();
    for (kind, values) in [
        (Kind::Jti, &doc.jti),
        (Kind::Txn, &doc.txn),
        (Kind::Sub, &doc.sub),
        (Kind::ClientId, &doc.client_id),
        (Kind::Actor, &doc.actor),
        (Kind::Kid, &doc.kid),
    ] {
        for (i, value) in values.iter().enumerate() {
            if value.is_empty() {
                return Err(invalid(format!("revocation.{}[{i}]", kind.name()), "must not be empty"));
            }
            configured.insert((kind, value.clone()), None);
        }
    }
    let feed = match doc.feed {
        None => None,
        Some(f) => {
            let at = "revocation.feed";
            check_upstream(&f.cluster, &f.path, &f.authority, at)?;
            if f.poll_s == 0 || f.poll_s > 3600 {
                return Err(invalid(format!("{at}.poll_s"), format!("{} is outside 1..=3600", f.poll_s)));
            }
            if f.timeout_ms == 0 || f.timeout_ms > 60_000 {
                return Err(invalid(format!("{at}.timeout_ms"), format!("{} is outside 1..=60000", f.timeout_ms)));
            }
            if f.max_bytes < 256 || f.max_bytes > 16 * 1024 * 1024 {
                return Err(invalid(format!("{at}.max_bytes"), format!("{} is outside 256..=16777216", f.max_bytes)));
            }
            if f.max_staleness_s < f.poll_s {
                return Err(invalid(
                    format!("{at}.max_staleness_s"),
                    format!(
                        "{} is shorter than poll_s {}: the feed would always be stale",
                        f.max_staleness_s, f.poll_s
                    ),
                ));
            }
            Some(Feed {
                cluster: f.cluster,
                path: f.path,
                authority: f.authority,
                poll_s: f.poll_s,
                timeout_ms: f.timeout_ms,
                max_bytes: f.max_bytes,
                max_staleness_s: f.max_staleness_s as i64,
                stale_min_risk: f.stale_min_risk,
            })
        }
    };
    let revoke_header = match doc.revoke_header {
        Some(h) if !h.is_empty() && h.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') => {
            Some(h)
        }
        Some(h) => return Err(invalid("revocation.revoke_header", format!("{h:?} must be a lower-case header name"))),
        None => None,
    };
    Ok(RevocationSettings { configured, feed, revoke_header })
}

fn compile_binding(doc: BindingDoc) -> Result<Binding, ConfigError> {
    let mut algorithms = Vec::new();
    for (i, name) in doc.dpop.algorithms.iter().enumerate() {
        match Alg::from_name(name) {
            Some(alg) if !alg.is_symmetric() => algorithms.push(alg),
            _ => {
                return Err(invalid(
                    format!("binding.dpop.algorithms[{i}]"),
                    format!("{name:?} is not an asymmetric algorithm (ES256, ES384, RS256, PS256, EdDSA)"),
                ))
            }
        }
    }
    if algorithms.is_empty() {
        return Err(invalid("binding.dpop.algorithms", "at least one algorithm is required"));
    }
    if doc.dpop.iat_window_s == 0 || doc.dpop.iat_window_s > 600 {
        return Err(invalid("binding.dpop.iat_window_s", format!("{} is outside 1..=600", doc.dpop.iat_window_s)));
    }
    if let Some(origin) = &doc.dpop.htu_origin {
        let well_formed = crate::binding::normalise_uri(origin).is_some_and(|n| n.ends_with('/'))
            && !origin.trim_end_matches('/').contains(['?', '#'])
            && origin.split_once("://").is_some_and(|(_, rest)| !rest.trim_end_matches('/').contains('/'));
        if !well_formed {
            return Err(invalid(
                "binding.dpop.htu_origin",
                format!("{origin:?} is not an origin (https://host[:port])"),
            ));
        }
    }
    Ok(Binding {
        dpop: crate::binding::DpopSettings {
            algorithms,
            iat_window_s: doc.dpop.iat_window_s as i64,
            htu_origin: doc.dpop.htu_origin.map(|o| o.trim_end_matches('/').to_string()),
        },
        required_for_risks: doc.required_for_risks,
    })
}

fn compile_approvals(doc: ApprovalsDoc) -> Result<Approvals, ConfigError> {
    let header = doc.header.to_ascii_lowercase();
    if header.is_empty() || !header.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(invalid("approvals.header", format!("{:?} is not a header name", doc.header)));
    }
    if header == "authorization" || header == "dpop" {
        return Err(invalid("approvals.header", format!("{header:?} carries other credentials")));
    }
    if doc.risks.is_empty() {
        return Err(invalid("approvals.risks", "at least one risk class is required"));
    }
    let issuer = compile_issuer(
        IssuerDoc {
            issuer: doc.issuer,
            jwks: Some(doc.jwks),
            remote_jwks: None,
            algorithms: doc.algorithms,
            token_types: doc.token_types,
            max_ttl_s: doc.max_ttl_s,
            clock_skew_s: doc.clock_skew_s,
            subject_prefixes: Vec::new(),
            client_ids: Vec::new(),
            actor_patterns: Vec::new(),
            max_delegation_depth: 0,
            require_binding: false,
        },
        "approvals",
    )?;
    let mut keys = crate::keyset::KeyStore::new(1);
    keys.set(0, crate::keyset::KeySet { keys: issuer.keys.clone() });
    Ok(Approvals { issuer, keys, header, risks: doc.risks })
}

fn compile_step_up(doc: StepUpDoc) -> Result<StepUp, ConfigError> {
    for (i, acr) in doc.acr_values.iter().enumerate() {
        if acr.is_empty() || acr.contains(' ') || !is_quotable(acr) {
            return Err(invalid(format!("step_up.acr_values[{i}]"), format!("{acr:?} is not a valid acr value")));
        }
    }
    if doc.max_age_s == 0 || doc.max_age_s > MAX_TTL_LIMIT_S {
        return Err(invalid("step_up.max_age_s", format!("{} is outside 1..={MAX_TTL_LIMIT_S}", doc.max_age_s)));
    }
    Ok(StepUp { acr_values: doc.acr_values, max_age_s: doc.max_age_s as i64, risks: doc.risks })
}

fn compile_jsonrpc(doc: JsonRpcDoc) -> Result<JsonRpcSettings, ConfigError> {
    if doc.max_body_bytes < 256 || doc.max_body_bytes > 16 * 1024 * 1024 {
        return Err(invalid("jsonrpc.max_body_bytes", format!("{} is outside 256..=16777216", doc.max_body_bytes)));
    }
    if doc.max_response_bytes < 1024 || doc.max_response_bytes > 64 * 1024 * 1024 {
        return Err(invalid(
            "jsonrpc.max_response_bytes",
            format!("{} is outside 1024..=67108864", doc.max_response_bytes),
        ));
    }
    let mut endpoints: Vec<Endpoint> = Vec::new();
    for (i, e) in doc.endpoints.into_iter().enumerate() {
        let at = format!("jsonrpc.endpoints[{i}]");
        let path = match (e.path, e.path_prefix) {
            (Some(p), None) => PathMatcher::Exact(check_rule_path(&p, &format!("{at}.path"))?),
            (None, Some(p)) => PathMatcher::Prefix(check_rule_path(&p, &format!("{at}.path_prefix"))?),
            _ => return Err(invalid(&at, "exactly one of path, path_prefix is required")),
        };
        match (e.protocol, &e.agent) {
            (Protocol::A2a, Some(agent)) if !agent.is_empty() && is_quotable(agent) => {}
            (Protocol::A2a, _) => {
                return Err(invalid(format!("{at}.agent"), "required for a2a: the agent served here"))
            }
            (Protocol::Mcp, Some(_)) => return Err(invalid(format!("{at}.agent"), "only for a2a endpoints")),
            (Protocol::Mcp, None) => {}
        }
        if endpoints.iter().any(|other| other.path == path) {
            return Err(invalid(&at, "another endpoint has the same path"));
        }
        endpoints.push(Endpoint { protocol: e.protocol, path, agent: e.agent });
    }
    Ok(JsonRpcSettings {
        max_body_bytes: doc.max_body_bytes,
        max_response_bytes: doc.max_response_bytes,
        endpoints,
        protocol_methods: doc.protocol_methods,
        filter_tools_list: doc.filter_tools_list,
        unparseable_tools_list: doc.unparseable_tools_list,
    })
}

fn compile_catalog(docs: Vec<ToolDoc>, step_up: &StepUp, jsonrpc: &JsonRpcSettings) -> Result<Catalog, ConfigError> {
    let mut tools: Vec<Tool> = Vec::new();
    let mut rules = Vec::new();
    let mut names = HashSet::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let at = format!("tools[{i}]");
        if doc.name.is_empty() || !is_quotable(&doc.name) {
            return Err(invalid(format!("{at}.name"), format!("{:?} must be visible ASCII", doc.name)));
        }
        if !names.insert(doc.name.clone()) {
            return Err(invalid(format!("{at}.name"), format!("{:?} is a duplicate tool name", doc.name)));
        }
        for (j, scope) in doc.scopes.iter().enumerate() {
            if !is_scope_token(scope) {
                return Err(invalid(format!("{at}.scopes[{j}]"), format!("{scope:?} is not an RFC 6749 scope token")));
            }
        }
        if step_up.risks.contains(&doc.risk) && step_up.acr_values.is_empty() {
            return Err(invalid(
                "step_up.acr_values",
                format!("required: tool {:?} has risk {} which needs step-up", doc.name, doc.risk.name()),
            ));
        }
        let kind = compile_kind(&doc, &at, jsonrpc)?;
        let action = match (&kind, &doc.action) {
            (ToolKind::Http, Some(action)) if !action.is_empty() && is_quotable(action) => action.clone(),
            (ToolKind::Http, _) => {
                return Err(invalid(format!("{at}.action"), "required for HTTP tools, visible ASCII"));
            }
            (_, Some(_)) => {
                return Err(invalid(format!("{at}.action"), "JSON-RPC tools take their action from the method"));
            }
            (ToolKind::McpTool(_), None) => "tools/call".into(),
            (ToolKind::McpResource { .. }, None) => "resources/read".into(),
            (ToolKind::McpPrompt(_), None) => "prompts/get".into(),
            (ToolKind::A2a { .. }, None) => String::new(),
        };
        if let Some(clash) = tools.iter().find(|t| kinds_clash(&t.kind, &kind)) {
            return Err(invalid(&at, format!("serves the same calls as tool {:?}", clash.name)));
        }
        if !doc.constraints.is_empty() && !matches!(kind, ToolKind::McpTool(_)) {
            return Err(invalid(format!("{at}.constraints"), "only MCP tools (tools/call arguments) have constraints"));
        }
        let mut constraints = Vec::new();
        for (j, c) in doc.constraints.into_iter().enumerate() {
            constraints.push(compile_constraint(c, &format!("{at}.constraints[{j}]"), &constraints)?);
        }
        if let Some(matches) = doc.matches {
            if matches.is_empty() {
                return Err(invalid(format!("{at}.match"), "at least one match rule is required"));
            }
            for (j, m) in matches.into_iter().enumerate() {
                rules.push(compile_rule(m, &format!("{at}.match[{j}]"), tools.len(), doc.priority)?);
            }
        }
        let identifier = match &kind {
            ToolKind::McpTool(name) => name.clone(),
            ToolKind::A2a { agent, .. } => agent.clone(),
            _ => doc.name.clone(),
        };
        tools.push(Tool {
            name: doc.name,
            action,
            risk: doc.risk,
            scopes: doc.scopes,
            identifier,
            kind,
            constraints,
            completes_task: doc.completes_task,
            single_use: doc.single_use,
        });
    }
    Catalog::new(tools, rules).map_err(|(first, second)| ConfigError::AmbiguousRules { first, second })
}

fn compile_kind(doc: &ToolDoc, at: &str, jsonrpc: &JsonRpcSettings) -> Result<ToolKind, ConfigError> {
    let serves = |protocol: Protocol| jsonrpc.endpoints.iter().any(|e| e.protocol == protocol);
    match (&doc.matches, &doc.mcp, &doc.a2a) {
        (Some(_), None, None) => Ok(ToolKind::Http),
        (None, Some(mcp), None) => {
            if !serves(Protocol::Mcp) {
                return Err(invalid(format!("{at}.mcp"), "no jsonrpc endpoint has protocol mcp"));
            }
            let nonempty = |v: &Option<String>, field: &str| match v {
                Some(s) if s.is_empty() || !is_quotable(s) => {
                    Err(invalid(format!("{at}.mcp.{field}"), format!("{s:?} must be non-empty visible ASCII")))
                }
                _ => Ok(()),
            };
            nonempty(&mcp.tool, "tool")?;
            nonempty(&mcp.resource, "resource")?;
            nonempty(&mcp.resource_prefix, "resource_prefix")?;
            nonempty(&mcp.prompt, "prompt")?;
            match (&mcp.tool, &mcp.resource, &mcp.resource_prefix, &mcp.prompt) {
                (tool, None, None, None) => Ok(ToolKind::McpTool(tool.clone().unwrap_or_else(|| doc.name.clone()))),
                (None, Some(uri), None, None) => Ok(ToolKind::McpResource { uri: uri.clone(), prefix: false }),
                (None, None, Some(uri), None) => Ok(ToolKind::McpResource { uri: uri.clone(), prefix: true }),
                (None, None, None, Some(prompt)) => Ok(ToolKind::McpPrompt(prompt.clone())),
                _ => Err(invalid(format!("{at}.mcp"), "at most one of tool, resource, resource_prefix, prompt")),
            }
        }
        (None, None, Some(a2a)) => {
            if !jsonrpc.endpoints.iter().any(|e| e.agent.as_deref() == Some(a2a.agent.as_str())) {
                return Err(invalid(
                    format!("{at}.a2a.agent"),
                    format!("{:?}: no a2a endpoint serves this agent", a2a.agent),
                ));
            }
            if a2a.methods.is_empty() {
                return Err(invalid(format!("{at}.a2a.methods"), "at least one method is required"));
            }
            for (j, m) in a2a.methods.iter().enumerate() {
                if !A2A_METHODS.contains(&m.as_str()) {
                    return Err(invalid(
                        format!("{at}.a2a.methods[{j}]"),
                        format!("{m:?} is not an A2A 1.0 method name (e.g. SendMessage, GetTask)"),
                    ));
                }
            }
            Ok(ToolKind::A2a { agent: a2a.agent.clone(), methods: a2a.methods.clone() })
        }
        _ => Err(invalid(at, "exactly one of match, mcp, a2a is required")),
    }
}

/// Two catalog entries that would classify the same JSON-RPC call.
fn kinds_clash(a: &ToolKind, b: &ToolKind) -> bool {
    match (a, b) {
        (ToolKind::McpTool(x), ToolKind::McpTool(y)) | (ToolKind::McpPrompt(x), ToolKind::McpPrompt(y)) => x == y,
        (ToolKind::McpResource { uri: x, prefix: p }, ToolKind::McpResource { uri: y, prefix: q }) => x == y && p == q,
        (ToolKind::A2a { agent: x, methods: m }, ToolKind::A2a { agent: y, methods: n }) => {
            x == y && m.iter().any(|method| n.contains(method))
        }
        _ => false,
    }
}

fn compile_constraint(doc: ConstraintDoc, at: &str, earlier: &[Constraint]) -> Result<Constraint, ConfigError> {
    if doc.id.is_empty() || !doc.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.') {
        return Err(invalid(format!("{at}.id"), format!("{:?} must be letters, digits, _ - .", doc.id)));
    }
    if earlier.iter().any(|c| c.id == doc.id) {
        return Err(invalid(format!("{at}.id"), format!("{:?} is used twice in this tool", doc.id)));
    }
    let pointer_ok = |p: &str| p.starts_with('/');
    if !pointer_ok(&doc.argument) {
        return Err(invalid(format!("{at}.argument"), format!("{:?} is not a JSON pointer (/name)", doc.argument)));
    }
    let bound = match (doc.value, doc.limit) {
        (Some(value), None) => {
            let fits = match doc.op {
                Op::Le | Op::Lt | Op::Ge | Op::Gt => value.is_number(),
                Op::In => value.is_array(),
                Op::Prefix | Op::Glob => value.is_string(),
                Op::Eq => true,
            };
            if !fits {
                return Err(invalid(format!("{at}.value"), format!("{value} does not fit the operator")));
            }
            Bound::Static(value)
        }
        (None, Some(limit)) if pointer_ok(&limit) => Bound::Limit(limit),
        (None, Some(limit)) => {
            return Err(invalid(
                format!("{at}.limit"),
                format!("{limit:?} is not a JSON pointer into limits (/amount/max)"),
            ))
        }
        _ => return Err(invalid(at, "exactly one of value, limit is required")),
    };
    Ok(Constraint { id: doc.id, argument: doc.argument, op: doc.op, bound })
}

fn compile_rule(doc: MatchDoc, at: &str, tool: usize, priority: i32) -> Result<Rule, ConfigError> {
    let mut methods = Vec::new();
    for (k, method) in doc.methods.iter().enumerate() {
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid(format!("{at}.methods[{k}]"), format!("{method:?} must be an upper-case method")));
        }
        methods.push(method.clone());
    }
    let path = match (doc.path, doc.path_prefix, doc.path_template) {
        (Some(p), None, None) => PathMatcher::Exact(check_rule_path(&p, &format!("{at}.path"))?),
        (None, Some(p), None) => PathMatcher::Prefix(check_rule_path(&p, &format!("{at}.path_prefix"))?),
        (None, None, Some(t)) => {
            let field = format!("{at}.path_template");
            let checked = check_rule_path(&t, &field)?;
            let mut segments = Vec::new();
            for segment in checked.split('/').skip(1) {
                if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                        return Err(invalid(&field, format!("{t:?}: bad parameter {segment:?}")));
                    }
                    segments.push(TemplateSegment::Param);
                } else if segment.contains('{') || segment.contains('}') {
                    return Err(invalid(&field, format!("{t:?}: a parameter must be a whole segment")));
                } else {
                    segments.push(TemplateSegment::Literal(segment.to_string()));
                }
            }
            PathMatcher::Template(segments)
        }
        _ => return Err(invalid(at, "exactly one of path, path_prefix, path_template is required")),
    };
    let mut hosts = Vec::new();
    for (k, host) in doc.hosts.iter().enumerate() {
        let lower = host.to_ascii_lowercase();
        let valid = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        hosts.push(match lower.strip_prefix("*.") {
            Some(rest) if valid(rest) => HostMatcher::Suffix(format!(".{rest}")),
            None if valid(&lower) => HostMatcher::Exact(lower),
            _ => return Err(invalid(format!("{at}.hosts[{k}]"), format!("{host:?} is not a host name or *.suffix"))),
        });
    }
    let mut headers = Vec::new();
    for (k, h) in doc.headers.iter().enumerate() {
        let field = format!("{at}.headers[{k}]");
        if h.name.is_empty() || !h.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(invalid(format!("{field}.name"), format!("{:?} is not a header name", h.name)));
        }
        let value = match (&h.exact, h.present) {
            (Some(v), None) => HeaderValueMatch::Exact(v.clone()),
            (None, Some(true)) => HeaderValueMatch::Present,
            _ => return Err(invalid(&field, "exactly one of exact or present: true is required")),
        };
        headers.push(HeaderMatcher { name: h.name.to_ascii_lowercase(), value });
    }
    Ok(Rule { id: at.to_string(), tool, priority, methods, path, hosts, headers })
}

/// A rule path must already be in normal form, or it could never match a normalised request path.
fn check_rule_path(path: &str, field: &str) -> Result<String, ConfigError> {
    match crate::path::normalise(path) {
        Ok(n) if n.path == path && n.query.is_empty() && !path.contains('%') => Ok(n.path),
        _ => Err(invalid(
            field,
            format!("{path:?} must be a normalised path (leading /, no //, dot segments, %, ? or #)"),
        )),
    }
}

/// RFC 6749 §3.3 scope-token: %x21 / %x23-5B / %x5D-7E.
fn is_scope_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Safe inside a quoted-string challenge parameter and a header value.
fn is_quotable(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}
