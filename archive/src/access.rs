//! Who may do what: roles, scopes, principals, and the `api_tokens` table.
//!
//! A principal (a token from the configuration or the catalog, a verified
//! JWT, or the anonymous user of a server without tokens) has one [`Role`]
//! and one [`Scope`]. Roles are ordered: each can do what the ones below it
//! can. A scope limits the sources and topics a principal sees, by name or
//! glob pattern (`*` any run of characters, `?` one); every reader applies
//! it (SQL, search, event fetch, replay selection, the topic lists).
//!
//! Only a token's blake3 hash is stored (hex). The token itself is shown
//! once, when `hindsight token create` makes it.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::catalog::Catalog;
use crate::error::{Error, ErrorKind};
use crate::event::now_micros;
use crate::Result;

/// What a principal may do. Each role includes the ones before it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Metadata, counts and search, with payloads, keys and header values
    /// hidden.
    #[default]
    Viewer,
    /// Payloads and SQL.
    Analyst,
    /// Replay (and its control), compaction, retention and erasure.
    Operator,
    /// Everything, including tokens and the audit trail.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Analyst, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!("{text:?} is not a role (viewer, analyst, operator or admin)"),
                )
            })
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The sources and topics a principal sees. An empty list allows all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scope {
    pub sources: Vec<String>,
    pub topics: Vec<String>,
}

impl Scope {
    /// Everything.
    pub fn all() -> Scope {
        Scope::default()
    }

    pub fn is_everything(&self) -> bool {
        self.sources.is_empty() && self.topics.is_empty()
    }

    pub fn allows_source(&self, source: &str) -> bool {
        self.sources.is_empty()
            || self
                .sources
                .iter()
                .any(|pattern| glob_matches(pattern, source))
    }

    pub fn allows_topic(&self, topic: &str) -> bool {
        self.topics.is_empty()
            || self
                .topics
                .iter()
                .any(|pattern| glob_matches(pattern, topic))
    }

    pub fn allows(&self, source: &str, topic: &str) -> bool {
        self.allows_source(source) && self.allows_topic(topic)
    }

    /// For people and the audit trail: `sources=a,b topics=orders*`.
    pub fn describe(&self) -> String {
        if self.is_everything() {
            return "everything".to_owned();
        }
        let mut parts = Vec::new();
        if !self.sources.is_empty() {
            parts.push(format!("sources={}", self.sources.join(",")));
        }
        if !self.topics.is_empty() {
            parts.push(format!("topics={}", self.topics.join(",")));
        }
        parts.join(" ")
    }

    /// Problems with the patterns, for `validate()`.
    pub fn problems(&self) -> Vec<String> {
        self.sources
            .iter()
            .chain(&self.topics)
            .filter(|pattern| pattern.trim().is_empty())
            .map(|_| "a scope pattern is empty".to_owned())
            .collect()
    }
}

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    /// A token from `[[http.tokens]]` (or the older `http.auth_token`).
    Config,
    /// A token from `hindsight token create`.
    Catalog,
    /// A JWT verified against the configured keys.
    Jwt,
    /// No token: a server with no tokens at all (loopback only unless
    /// `http.allow_unauthenticated`).
    Anonymous,
    /// A command run on the machine (`hindsight replay run`, `erase`, ...).
    Cli,
}

/// Who is asking, with what role and scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub scope: Scope,
    pub kind: PrincipalKind,
}

impl Principal {
    /// The user of a server without tokens: everything.
    pub fn anonymous() -> Principal {
        Principal {
            name: "anonymous".to_owned(),
            role: Role::Admin,
            scope: Scope::all(),
            kind: PrincipalKind::Anonymous,
        }
    }

    /// Whoever runs a command on this machine: `cli:` and the user name.
    pub fn command_line() -> Principal {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".to_owned());
        Principal {
            name: format!("cli:{user}"),
            role: Role::Admin,
            scope: Scope::all(),
            kind: PrincipalKind::Cli,
        }
    }

    pub fn can(&self, role: Role) -> bool {
        self.role >= role
    }
}

/// `*` any run of characters, `?` one; everything else literal.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    fn matches(pattern: &[char], name: &[char]) -> bool {
        match pattern.split_first() {
            None => name.is_empty(),
            Some(('*', rest)) => (0..=name.len()).any(|skip| matches(rest, &name[skip..])),
            Some(('?', rest)) => !name.is_empty() && matches(rest, &name[1..]),
            Some((literal, rest)) => name.first() == Some(literal) && matches(rest, &name[1..]),
        }
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    matches(&pattern, &name)
}

/// Names the audit trail gives principals that are not catalog tokens.
pub fn is_reserved_name(name: &str) -> bool {
    let lower = name.trim().to_ascii_lowercase();
    ["anonymous", "unauthenticated", "http.auth_token"].contains(&lower.as_str())
        || lower.starts_with("cli:")
        || lower.starts_with("jwt:")
}

/// The stored form of a token: its blake3 hash in hex.
pub fn token_hash(token: &str) -> String {
    blake3::hash(token.trim().as_bytes()).to_hex().to_string()
}

/// A new token: `hs_` and 64 hex characters (244 random bits).
pub fn new_token() -> String {
    format!(
        "hs_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// A token as the catalog holds it (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    pub name: String,
    #[serde(skip)]
    pub token_hash: String,
    pub role: Role,
    pub scope: Scope,
    pub created_at: i64,
    pub created_by: String,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
}

fn token_from_row(row: &sqlx::any::AnyRow) -> Result<TokenRecord> {
    let role: String = row.try_get("role")?;
    let scope: String = row.try_get("scope_json")?;
    Ok(TokenRecord {
        name: row.try_get("name")?,
        token_hash: row.try_get("token_hash")?,
        role: Role::parse(&role)?,
        scope: serde_json::from_str(&scope).map_err(|error| {
            Error::internal(format!("a stored token scope is not JSON: {error}"))
        })?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        revoked_at: row.try_get("revoked_at")?,
        revoked_by: row.try_get("revoked_by")?,
    })
}

const TOKEN_COLUMNS: &str =
    "name, token_hash, role, scope_json, created_at, created_by, revoked_at, revoked_by";

impl Catalog {
    /// Makes a token and returns it: the only time it is seen.
    pub async fn create_token(
        &self,
        name: &str,
        role: Role,
        scope: &Scope,
        created_by: &str,
    ) -> Result<String> {
        if name.trim().is_empty() || name.len() > 255 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a token name is 1 to 255 characters",
            ));
        }
        if is_reserved_name(name) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{name:?} is a name the audit trail uses for other principals (anonymous, unauthenticated, http.auth_token, cli:…, jwt:…)"),
            ));
        }
        let token = new_token();
        let scope_json = serde_json::to_string(scope)
            .map_err(|error| Error::internal(format!("cannot write a scope: {error}")))?;
        let inserted = sqlx::query(
            "INSERT INTO api_tokens (name, token_hash, role, scope_json, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(token_hash(&token))
        .bind(role.as_str())
        .bind(scope_json)
        .bind(now_micros())
        .bind(created_by)
        .execute(self.pool())
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("a token named {name:?} exists already (revoked tokens keep their name)"),
            ));
        }
        Ok(token)
    }

    /// Every token made in the catalog, revoked ones included.
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY name"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// The live (not revoked) token with this hash.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL"
        ))
        .bind(hash)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// Whether any token was ever made here (then a server needs one).
    pub async fn has_tokens(&self) -> Result<bool> {
        let row = sqlx::query("SELECT count(*) AS n FROM api_tokens")
            .fetch_one(self.pool())
            .await?;
        let count: i64 = row.try_get("n")?;
        Ok(count > 0)
    }

    /// Revokes a token at once: the next request with it is refused.
    pub async fn revoke_token(&self, name: &str, revoked_by: &str) -> Result<()> {
        let revoked = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1, revoked_by = $2 \
             WHERE name = $3 AND revoked_at IS NULL",
        )
        .bind(now_micros())
        .bind(revoked_by)
        .bind(name)
        .execute(self.pool())
        .await?
        .rows_affected();
        if revoked == 0 {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no live token is named {name:?} (`hindsight token list`)"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parse() {
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Analyst);
        assert!(Role::Analyst > Role::Viewer);
        assert_eq!(Role::parse("Operator").unwrap(), Role::Operator);
        assert!(Role::parse("root").is_err());
    }

    #[test]
    fn scopes_match_names_and_patterns() {
        let scope = Scope {
            sources: vec![],
            topics: vec!["orders".to_owned(), "payments.*".to_owned()],
        };
        assert!(scope.allows("any", "orders"));
        assert!(scope.allows("any", "payments.eu"));
        assert!(!scope.allows("any", "orders2"));
        assert!(!scope.allows("any", "shipments"));
        assert!(Scope::all().allows("a", "b"));
    }

    #[tokio::test]
    async fn tokens_are_stored_hashed_and_revoked_at_once() {
        let directory = tempfile::tempdir().unwrap();
        let catalog = Catalog::open_for_test(directory.path()).await;
        assert!(!catalog.has_tokens().await.unwrap());
        let scope = Scope {
            sources: vec![],
            topics: vec!["orders".to_owned()],
        };
        let token = catalog
            .create_token("ci", Role::Analyst, &scope, "cli:test")
            .await
            .unwrap();
        assert!(token.starts_with("hs_") && token.len() == 67);
        let listed = catalog.tokens().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_ne!(listed[0].token_hash, token);
        assert!(!format!("{listed:?}").contains(&token));
        let found = catalog
            .token_by_hash(&token_hash(&token))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((found.role, found.scope), (Role::Analyst, scope.clone()));
        let again = catalog
            .create_token("ci", Role::Admin, &scope, "cli:test")
            .await;
        assert_eq!(again.unwrap_err().kind(), ErrorKind::Conflict);
        catalog.revoke_token("ci", "cli:test").await.unwrap();
        assert!(catalog
            .token_by_hash(&token_hash(&token))
            .await
            .unwrap()
            .is_none());
        assert!(catalog.has_tokens().await.unwrap());
    }
}
