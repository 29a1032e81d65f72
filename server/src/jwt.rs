//! JWT bearer tokens, verified against a JWKS file: the principal's name,
//! role and scope come from the token's claims.
//!
//! Only asymmetric signatures are accepted (RS*, PS*, ES*, EdDSA), with the
//! key the token's `kid` names (or the only key of the set), and the
//! algorithm must be the key's own when the key says. Expiry is checked
//! (60 s of leeway), and the issuer and audience when configured.

use std::collections::HashSet;
use std::path::PathBuf;

use hindsight_archive::access::{Principal, PrincipalKind, Role, Scope};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `[http.jwt]` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// The JSON Web Key Set (`{"keys": [...]}`) the tokens are signed by.
    pub jwks_file: PathBuf,
    /// The `iss` tokens must carry, when set.
    #[serde(default)]
    pub issuer: Option<String>,
    /// An `aud` tokens must carry, when set.
    #[serde(default)]
    pub audience: Option<String>,
    /// The claim holding the role (`viewer`, `analyst`, `operator`, `admin`).
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// The claim holding the source patterns (a list); none: all sources.
    #[serde(default = "default_sources_claim")]
    pub sources_claim: String,
    /// The claim holding the topic patterns (a list); none: all topics.
    #[serde(default = "default_topics_claim")]
    pub topics_claim: String,
    /// The claim naming the principal (`jwt:` and its value).
    #[serde(default = "default_name_claim")]
    pub name_claim: String,
}

fn default_role_claim() -> String {
    "hindsight_role".to_owned()
}
fn default_sources_claim() -> String {
    "hindsight_sources".to_owned()
}
fn default_topics_claim() -> String {
    "hindsight_topics".to_owned()
}
fn default_name_claim() -> String {
    "sub".to_owned()
}

const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Verifies tokens against one key set.
pub struct JwtVerifier {
    settings: JwtSettings,
    keys: JwkSet,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("jwks_file", &self.settings.jwks_file)
            .field("keys", &self.keys.keys.len())
            .finish()
    }
}

impl JwtVerifier {
    /// Reads the key set; an error names the file and what is wrong.
    pub fn load(settings: JwtSettings) -> Result<Self, String> {
        let text = std::fs::read_to_string(&settings.jwks_file).map_err(|error| {
            format!(
                "http.jwt.jwks_file {}: {error}",
                settings.jwks_file.display()
            )
        })?;
        let keys: JwkSet = serde_json::from_str(&text).map_err(|error| {
            format!(
                "http.jwt.jwks_file {}: not a JSON Web Key Set: {error}",
                settings.jwks_file.display()
            )
        })?;
        if keys.keys.is_empty() {
            return Err(format!(
                "http.jwt.jwks_file {}: the key set has no keys",
                settings.jwks_file.display()
            ));
        }
        Ok(JwtVerifier { settings, keys })
    }

    /// Whether `token` has the shape of a JWT (three dot-separated parts).
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3 && token.starts_with("eyJ")
    }

    /// The principal of a valid token, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<Principal, String> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|error| format!("the JWT header cannot be read: {error}"))?;
        if !ASYMMETRIC.contains(&header.alg) {
            return Err(format!(
                "the JWT is signed with {:?}; only asymmetric signatures are accepted",
                header.alg
            ));
        }
        let key = match &header.kid {
            Some(kid) => self
                .keys
                .find(kid)
                .ok_or_else(|| format!("no key {kid:?} in the key set"))?,
            None if self.keys.keys.len() == 1 => &self.keys.keys[0],
            None => return Err("the JWT names no key (kid) and the set has several".to_owned()),
        };
        if let Some(algorithm) = key.common.key_algorithm {
            if format!("{algorithm:?}") != format!("{:?}", header.alg) {
                return Err(format!(
                    "the JWT says {:?} but its key is for {algorithm:?}",
                    header.alg
                ));
            }
        }
        let decoding = DecodingKey::from_jwk(key)
            .map_err(|error| format!("the key cannot verify: {error}"))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = 60;
        validation.validate_nbf = true;
        let mut required = HashSet::from(["exp".to_owned()]);
        match &self.settings.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.insert("aud".to_owned());
            }
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &self.settings.issuer {
            validation.set_issuer(&[issuer]);
            required.insert("iss".to_owned());
        }
        // jsonwebtoken checks iss and aud only when the token has them.
        validation.required_spec_claims = required;
        let claims = jsonwebtoken::decode::<Value>(token, &decoding, &validation)
            .map_err(|error| format!("the JWT is not valid: {error}"))?
            .claims;
        let role = claims[&self.settings.role_claim]
            .as_str()
            .ok_or_else(|| format!("the JWT has no {:?} claim", self.settings.role_claim))
            .and_then(|role| Role::parse(role).map_err(|error| error.to_string()))?;
        let list = |claim: &str| -> Result<Vec<String>, String> {
            match &claims[claim] {
                Value::Null => Ok(Vec::new()),
                Value::String(one) => Ok(vec![one.clone()]),
                Value::Array(items) => items
                    .iter()
                    .map(|item| {
                        item.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| format!("the {claim:?} claim holds a non-string"))
                    })
                    .collect(),
                _ => Err(format!("the {claim:?} claim is not a list of patterns")),
            }
        };
        let name = claims[&self.settings.name_claim]
            .as_str()
            .unwrap_or("unnamed");
        Ok(Principal {
            name: format!("jwt:{name}"),
            role,
            scope: Scope {
                sources: list(&self.settings.sources_claim)?,
                topics: list(&self.settings.topics_claim)?,
            },
            kind: PrincipalKind::Jwt,
        })
    }
}
