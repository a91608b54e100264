//! The plugin configuration: a strict JSON schema, compiled once into a `Policy`.
//! Every refusal names the field (as a path like `issuers[0].jwks.keys[1].kid`) and the problem.

use crate::catalog::{
    Catalog, HeaderMatcher, HeaderValueMatch, HostMatcher, PathMatcher, Rule, TemplateSegment, Tool,
};
use crate::keys::{compile_jwk, Alg};
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
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
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
    audit: AuditDoc,
    #[serde(default)]
    token_cache: TokenCacheDoc,
}

fn default_max_token_bytes() -> usize {
    8192
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuerDoc {
    issuer: String,
    jwks: JwksDoc,
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
struct ToolDoc {
    name: String,
    action: String,
    risk: Risk,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(rename = "match")]
    matches: Vec<MatchDoc>,
    #[serde(default)]
    priority: i32,
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
        StepUpDoc {
            acr_values: Vec::new(),
            max_age_s: default_step_up_age(),
            risks: default_step_up_risks(),
        }
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
        AuditDoc {
            header_prefix: default_header_prefix(),
            forward_authorization: false,
        }
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
}

impl Default for TokenCacheDoc {
    fn default() -> Self {
        TokenCacheDoc {
            max_entries: default_cache_entries(),
        }
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
    pub audit: AuditSettings,
    pub token_cache_entries: usize,
}

const MAX_TOKEN_BYTES_LIMIT: usize = 64 * 1024;
const MAX_TTL_LIMIT_S: u64 = 86_400;
const MAX_SKEW_LIMIT_S: u64 = 300;

impl Policy {
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
        de.end().map_err(|e| ConfigError::Schema {
            field: "(root)".into(),
            message: e.to_string(),
        })?;
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
            format!(
                "{} is outside 64..={MAX_TOKEN_BYTES_LIMIT}",
                doc.max_token_bytes
            ),
        ));
    }
    if let Some(url) = &doc.resource_metadata {
        if !url.starts_with("https://") && !url.starts_with("http://") || !is_quotable(url) {
            return Err(invalid(
                "resource_metadata",
                format!("{url:?} is not an http(s) URL"),
            ));
        }
    }
    if doc.issuers.is_empty() {
        return Err(invalid("issuers", "at least one issuer is required"));
    }
    let mut issuers = Vec::new();
    for (i, issuer) in doc.issuers.into_iter().enumerate() {
        let compiled = compile_issuer(issuer, &format!("issuers[{i}]"))?;
        if issuers
            .iter()
            .any(|other: &Issuer| other.issuer == compiled.issuer)
        {
            return Err(invalid(
                format!("issuers[{i}].issuer"),
                format!("{:?} is configured twice", compiled.issuer),
            ));
        }
        issuers.push(compiled);
    }

    let step_up = compile_step_up(doc.step_up)?;
    let catalog = compile_catalog(doc.tools, &step_up)?;

    let prefix = doc.audit.header_prefix;
    if prefix.len() < 2
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid(
            "audit.header_prefix",
            format!("{prefix:?} must be at least 2 characters of a-z, 0-9 and -"),
        ));
    }
    if doc.token_cache.max_entries > 1_000_000 {
        return Err(invalid(
            "token_cache.max_entries",
            format!("{} is above 1000000", doc.token_cache.max_entries),
        ));
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
        audit: AuditSettings {
            header_prefix: prefix,
            forward_authorization: doc.audit.forward_authorization,
        },
        token_cache_entries: doc.token_cache.max_entries,
    })
}

fn compile_issuer(doc: IssuerDoc, at: &str) -> Result<Issuer, ConfigError> {
    if doc.issuer.is_empty() {
        return Err(invalid(format!("{at}.issuer"), "must not be empty"));
    }
    if doc.algorithms.is_empty() {
        return Err(invalid(
            format!("{at}.algorithms"),
            "at least one algorithm is required",
        ));
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
    if doc.jwks.keys.is_empty() {
        return Err(invalid(
            format!("{at}.jwks.keys"),
            "at least one key is required",
        ));
    }
    let mut keys = HashMap::new();
    for (k, value) in doc.jwks.keys.iter().enumerate() {
        let field = format!("{at}.jwks.keys[{k}]");
        let key = compile_jwk(value, &algorithms).map_err(|e| invalid(&field, e.0))?;
        if keys.contains_key(&key.kid) {
            return Err(invalid(
                format!("{field}.kid"),
                format!("{:?} appears twice", key.kid),
            ));
        }
        keys.insert(key.kid.clone(), key);
    }
    if doc.token_types.is_empty() {
        return Err(invalid(
            format!("{at}.token_types"),
            "at least one typ is required",
        ));
    }
    if doc.max_ttl_s == 0 || doc.max_ttl_s > MAX_TTL_LIMIT_S {
        return Err(invalid(
            format!("{at}.max_ttl_s"),
            format!("{} is outside 1..={MAX_TTL_LIMIT_S}", doc.max_ttl_s),
        ));
    }
    if doc.clock_skew_s > MAX_SKEW_LIMIT_S {
        return Err(invalid(
            format!("{at}.clock_skew_s"),
            format!("{} is above {MAX_SKEW_LIMIT_S}", doc.clock_skew_s),
        ));
    }
    for (j, prefix) in doc.subject_prefixes.iter().enumerate() {
        if prefix.is_empty() {
            return Err(invalid(
                format!("{at}.subject_prefixes[{j}]"),
                "must not be empty",
            ));
        }
    }
    for (j, id) in doc.client_ids.iter().enumerate() {
        if id.is_empty() {
            return Err(invalid(
                format!("{at}.client_ids[{j}]"),
                "must not be empty",
            ));
        }
    }
    Ok(Issuer {
        issuer: doc.issuer,
        keys,
        algorithms,
        token_types: doc.token_types.iter().map(|t| normalise_typ(t)).collect(),
        max_ttl_s: doc.max_ttl_s as i64,
        clock_skew_s: doc.clock_skew_s as i64,
        subject_prefixes: doc.subject_prefixes,
        client_ids: doc.client_ids,
    })
}

fn compile_step_up(doc: StepUpDoc) -> Result<StepUp, ConfigError> {
    for (i, acr) in doc.acr_values.iter().enumerate() {
        if acr.is_empty() || acr.contains(' ') || !is_quotable(acr) {
            return Err(invalid(
                format!("step_up.acr_values[{i}]"),
                format!("{acr:?} is not a valid acr value"),
            ));
        }
    }
    if doc.max_age_s == 0 || doc.max_age_s > MAX_TTL_LIMIT_S {
        return Err(invalid(
            "step_up.max_age_s",
            format!("{} is outside 1..={MAX_TTL_LIMIT_S}", doc.max_age_s),
        ));
    }
    Ok(StepUp {
        acr_values: doc.acr_values,
        max_age_s: doc.max_age_s as i64,
        risks: doc.risks,
    })
}

fn compile_catalog(docs: Vec<ToolDoc>, step_up: &StepUp) -> Result<Catalog, ConfigError> {
    let mut tools = Vec::new();
    let mut rules = Vec::new();
    let mut names = HashSet::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let at = format!("tools[{i}]");
        if doc.name.is_empty() || !is_quotable(&doc.name) {
            return Err(invalid(
                format!("{at}.name"),
                format!("{:?} must be visible ASCII", doc.name),
            ));
        }
        if !names.insert(doc.name.clone()) {
            return Err(invalid(
                format!("{at}.name"),
                format!("{:?} is a duplicate tool name", doc.name),
            ));
        }
        if doc.action.is_empty() || !is_quotable(&doc.action) {
            return Err(invalid(
                format!("{at}.action"),
                format!("{:?} must be visible ASCII", doc.action),
            ));
        }
        for (j, scope) in doc.scopes.iter().enumerate() {
            if !is_scope_token(scope) {
                return Err(invalid(
                    format!("{at}.scopes[{j}]"),
                    format!("{scope:?} is not an RFC 6749 scope token"),
                ));
            }
        }
        if step_up.risks.contains(&doc.risk) && step_up.acr_values.is_empty() {
            return Err(invalid(
                "step_up.acr_values",
                format!(
                    "required: tool {:?} has risk {} which needs step-up",
                    doc.name,
                    doc.risk.name()
                ),
            ));
        }
        if doc.matches.is_empty() {
            return Err(invalid(
                format!("{at}.match"),
                "at least one match rule is required",
            ));
        }
        for (j, m) in doc.matches.into_iter().enumerate() {
            rules.push(compile_rule(
                m,
                &format!("{at}.match[{j}]"),
                tools.len(),
                doc.priority,
            )?);
        }
        tools.push(Tool {
            name: doc.name,
            action: doc.action,
            risk: doc.risk,
            scopes: doc.scopes,
        });
    }
    Catalog::new(tools, rules)
        .map_err(|(first, second)| ConfigError::AmbiguousRules { first, second })
}

fn compile_rule(doc: MatchDoc, at: &str, tool: usize, priority: i32) -> Result<Rule, ConfigError> {
    let mut methods = Vec::new();
    for (k, method) in doc.methods.iter().enumerate() {
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid(
                format!("{at}.methods[{k}]"),
                format!("{method:?} must be an upper-case method"),
            ));
        }
        methods.push(method.clone());
    }
    let path = match (doc.path, doc.path_prefix, doc.path_template) {
        (Some(p), None, None) => PathMatcher::Exact(check_rule_path(&p, &format!("{at}.path"))?),
        (None, Some(p), None) => {
            PathMatcher::Prefix(check_rule_path(&p, &format!("{at}.path_prefix"))?)
        }
        (None, None, Some(t)) => {
            let field = format!("{at}.path_template");
            let checked = check_rule_path(&t, &field)?;
            let mut segments = Vec::new();
            for segment in checked.split('/').skip(1) {
                if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    if name.is_empty()
                        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    {
                        return Err(invalid(&field, format!("{t:?}: bad parameter {segment:?}")));
                    }
                    segments.push(TemplateSegment::Param);
                } else if segment.contains('{') || segment.contains('}') {
                    return Err(invalid(
                        &field,
                        format!("{t:?}: a parameter must be a whole segment"),
                    ));
                } else {
                    segments.push(TemplateSegment::Literal(segment.to_string()));
                }
            }
            PathMatcher::Template(segments)
        }
        _ => {
            return Err(invalid(
                at,
                "exactly one of path, path_prefix, path_template is required",
            ))
        }
    };
    let mut hosts = Vec::new();
    for (k, host) in doc.hosts.iter().enumerate() {
        let lower = host.to_ascii_lowercase();
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        };
        hosts.push(match lower.strip_prefix("*.") {
            Some(rest) if valid(rest) => HostMatcher::Suffix(format!(".{rest}")),
            None if valid(&lower) => HostMatcher::Exact(lower),
            _ => {
                return Err(invalid(
                    format!("{at}.hosts[{k}]"),
                    format!("{host:?} is not a host name or *.suffix"),
                ))
            }
        });
    }
    let mut headers = Vec::new();
    for (k, h) in doc.headers.iter().enumerate() {
        let field = format!("{at}.headers[{k}]");
        if h.name.is_empty()
            || !h
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                format!("{field}.name"),
                format!("{:?} is not a header name", h.name),
            ));
        }
        let value = match (&h.exact, h.present) {
            (Some(v), None) => HeaderValueMatch::Exact(v.clone()),
            (None, Some(true)) => HeaderValueMatch::Present,
            _ => {
                return Err(invalid(
                    &field,
                    "exactly one of exact or present: true is required",
                ))
            }
        };
        headers.push(HeaderMatcher {
            name: h.name.to_ascii_lowercase(),
            value,
        });
    }
    Ok(Rule {
        id: at.to_string(),
        tool,
        priority,
        methods,
        path,
        hosts,
        headers,
    })
}

/// A rule path must already be in normal form, or it could never match a normalised request path.
fn check_rule_path(path: &str, field: &str) -> Result<String, ConfigError> {
    match crate::path::normalise(path) {
        Ok(n) if n.path == path && n.query.is_empty() && !path.contains('%') => Ok(n.path),
        _ => Err(invalid(
            field,
            format!(
                "{path:?} must be a normalised path (leading /, no //, dot segments, %, ? or #)"
            ),
        )),
    }
}

/// RFC 6749 §3.3 scope-token: %x21 / %x23-5B / %x5D-7E.
fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Safe inside a quoted-string challenge parameter and a header value.
fn is_quotable(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}
