//! The tool catalog: which tool, action and risk class a request is (token-profile.md §4–5).
//! Rules are compiled and ordered once at load; classification is a first-match scan.

use crate::constraints::Constraint;
use crate::Risk;

/// One tool of the catalog. The risk class comes from here, never from the agent or a server.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    /// The action of plain HTTP tools; JSON-RPC tools take theirs from the method.
    pub action: String,
    pub risk: Risk,
    /// Any of these `scope` values grants the tool.
    pub scopes: Vec<String>,
    /// What `authorization_details.identifier` must equal: the tool name, the MCP tool name, or the
    /// A2A agent.
    pub identifier: String,
    pub kind: ToolKind,
    pub constraints: Vec<Constraint>,
    /// A 2xx answer to this call ends the task: its `txn` is revoked on this Envoy.
    pub completes_task: bool,
    /// One token (`jti`) may make this call once.
    pub single_use: bool,
}

/// How requests reach the tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolKind {
    /// Plain HTTP, classified by `match` rules.
    Http,
    /// An MCP tool (`tools/call` with `params.name`).
    McpTool(String),
    /// MCP resources by exact URI or URI prefix (`resources/read`).
    McpResource { uri: String, prefix: bool },
    /// An MCP prompt (`prompts/get`).
    McpPrompt(String),
    /// Methods of an A2A agent (1.0 names).
    A2a { agent: String, methods: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatcher {
    Exact(String),
    /// Segment-aware: `/api` matches `/api` and `/api/x`, not `/apix`.
    Prefix(String),
    Template(Vec<TemplateSegment>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSegment {
    Literal(String),
    /// `{name}`: exactly one non-empty segment.
    Param,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatcher {
    Exact(String),
    /// `*.example.com`, stored as `.example.com`: any name ending with it (not the apex).
    Suffix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValueMatch {
    Exact(String),
    Present,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatcher {
    pub name: String,
    pub value: HeaderValueMatch,
}

/// One `match` entry of one tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `tools[i].match[j]`, the policy rule id in audit records.
    pub id: String,
    pub tool: usize,
    pub priority: i32,
    /// Upper-case methods; empty means any.
    pub methods: Vec<String>,
    pub path: PathMatcher,
    pub hosts: Vec<HostMatcher>,
    pub headers: Vec<HeaderMatcher>,
}

/// The request attributes rules look at.
pub struct Target<'a> {
    pub method: &'a str,
    /// Normalised path, without query.
    pub path: &'a str,
    /// Lower case, without port.
    pub host: &'a str,
    /// Lower-case names.
    pub headers: &'a [(String, String)],
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Catalog {
    pub tools: Vec<Tool>,
    /// In match order (see `Rule::precedence`).
    pub rules: Vec<Rule>,
}

impl Catalog {
    /// Order rules and refuse ties that could match the same request. Returns the two rule ids of
    /// the first ambiguous pair.
    pub fn new(tools: Vec<Tool>, mut rules: Vec<Rule>) -> Result<Catalog, (String, String)> {
        rules.sort_by_key(|r| std::cmp::Reverse(r.precedence()));
        for (i, a) in rules.iter().enumerate() {
            for b in rules.iter().skip(i + 1) {
                if a.precedence() != b.precedence() {
                    break;
                }
                if a.tool != b.tool && a.may_overlap(b) {
                    return Err((a.id.clone(), b.id.clone()));
                }
            }
        }
        Ok(Catalog { tools, rules })
    }

    pub fn mcp_tool(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| matches!(&t.kind, ToolKind::McpTool(n) if n == name))
    }

    pub fn mcp_prompt(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| matches!(&t.kind, ToolKind::McpPrompt(n) if n == name))
    }

    /// An exact URI entry first, else the longest matching prefix.
    pub fn mcp_resource(&self, requested: &str) -> Option<&Tool> {
        self.tools
            .iter()
            .filter_map(|t| match &t.kind {
                ToolKind::McpResource { uri, prefix: false } if uri == requested => Some((usize::MAX, t)),
                ToolKind::McpResource { uri, prefix: true } if requested.starts_with(uri.as_str()) => {
                    Some((uri.len(), t))
                }
                _ => None,
            })
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, t)| t)
    }

    pub fn a2a(&self, agent: &str, method: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| {
            matches!(&t.kind, ToolKind::A2a { agent: a, methods } if a == agent && methods.iter().any(|m| m == method))
        })
    }

    /// The first rule that matches, with its tool.
    pub fn classify(&self, target: &Target<'_>) -> Option<(&Tool, &Rule)> {
        let segments: Vec<&str> = target.path.split('/').skip(1).collect();
        self.rules.iter().find(|r| r.matches(target, &segments)).and_then(|r| self.tools.get(r.tool).map(|t| (t, r)))
    }
}

/// Larger sorts first. See the README's "which rule wins".
type Precedence = (i32, u8, usize, usize, bool, bool, usize);

impl Rule {
    fn precedence(&self) -> Precedence {
        let (kind, literal, segments) = match &self.path {
            PathMatcher::Exact(p) => (3, p.len(), 0),
            PathMatcher::Template(segs) => {
                (2, segs.iter().filter(|s| matches!(s, TemplateSegment::Literal(_))).count(), segs.len())
            }
            PathMatcher::Prefix(p) => (1, p.len(), 0),
        };
        (self.priority, kind, literal, segments, !self.methods.is_empty(), !self.hosts.is_empty(), self.headers.len())
    }

    fn matches(&self, t: &Target<'_>, segments: &[&str]) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| m == t.method))
            && (self.hosts.is_empty() || self.hosts.iter().any(|h| h.matches(t.host)))
            && self.headers.iter().all(|h| h.matches(t.headers))
            && self.path.matches(t.path, segments)
    }

    /// Could some request match both rules? Conservative: `true` unless provably disjoint.
    fn may_overlap(&self, other: &Rule) -> bool {
        let methods = self.methods.is_empty()
            || other.methods.is_empty()
            || self.methods.iter().any(|m| other.methods.contains(m));
        let hosts = self.hosts.is_empty()
            || other.hosts.is_empty()
            || self.hosts.iter().any(|a| other.hosts.iter().any(|b| a.may_overlap(b)));
        let headers = !self.headers.iter().any(|a| {
            other.headers.iter().any(|b| {
                a.name == b.name
                    && matches!((&a.value, &b.value),
                        (HeaderValueMatch::Exact(x), HeaderValueMatch::Exact(y)) if x != y)
            })
        });
        methods && hosts && headers && self.path.may_overlap(&other.path)
    }
}

impl PathMatcher {
    /// `segments` is `path` split at `/` without the leading empty segment.
    pub fn matches_path(&self, path: &str, segments: &[&str]) -> bool {
        self.matches(path, segments)
    }

    fn matches(&self, path: &str, segments: &[&str]) -> bool {
        match self {
            PathMatcher::Exact(p) => p == path,
            PathMatcher::Prefix(p) => {
                p == "/"
                    || path == p
                    || (path.starts_with(p.as_str())
                        && (p.ends_with('/') || path.as_bytes().get(p.len()) == Some(&b'/')))
            }
            PathMatcher::Template(template) => {
                template.len() == segments.len()
                    && template.iter().zip(segments).all(|(t, s)| match t {
                        TemplateSegment::Literal(l) => l == s,
                        TemplateSegment::Param => !s.is_empty(),
                    })
            }
        }
    }

    /// Only called for matchers of equal precedence, hence of the same kind.
    fn may_overlap(&self, other: &PathMatcher) -> bool {
        match (self, other) {
            (PathMatcher::Exact(a), PathMatcher::Exact(b)) => a == b,
            (PathMatcher::Prefix(a), PathMatcher::Prefix(b)) => a == b,
            (PathMatcher::Template(a), PathMatcher::Template(b)) => {
                a.len() == b.len()
                    && a.iter().zip(b).all(|pair| match pair {
                        (TemplateSegment::Literal(x), TemplateSegment::Literal(y)) => x == y,
                        _ => true,
                    })
            }
            _ => true,
        }
    }
}

impl HostMatcher {
    fn matches(&self, host: &str) -> bool {
        match self {
            HostMatcher::Exact(h) => h == host,
            HostMatcher::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }

    fn may_overlap(&self, other: &HostMatcher) -> bool {
        match (self, other) {
            (HostMatcher::Exact(a), HostMatcher::Exact(b)) => a == b,
            (HostMatcher::Exact(h), s @ HostMatcher::Suffix(_))
            | (s @ HostMatcher::Suffix(_), HostMatcher::Exact(h)) => s.matches(h),
            (HostMatcher::Suffix(a), HostMatcher::Suffix(b)) => a.ends_with(b.as_str()) || b.ends_with(a.as_str()),
        }
    }
}

impl HeaderMatcher {
    fn matches(&self, headers: &[(String, String)]) -> bool {
        headers.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case(&self.name)
                && match &self.value {
                    HeaderValueMatch::Exact(v) => v == value,
                    HeaderValueMatch::Present => true,
                }
        })
    }
}

/// Lower-case the `:authority` and drop its port (IPv6 literals keep their brackets).
pub fn host_of(authority: &str) -> String {
    let lower = authority.to_ascii_lowercase();
    if lower.starts_with('[') {
        return match lower.find(']') {
            Some(end) => lower.split_at(end + 1).0.to_string(),
            None => lower,
        };
    }
    match lower.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host.to_string(),
        _ => lower,
    }
}
