//! JWT bearer tokens, verified against a JSON Web Key Set read from a file
//! or fetched from an identity provider's URL: the principal's name, role
//! and scope come from the token's claims.
//!
//! Only asymmetric signatures are accepted (RS*, PS*, ES*, EdDSA), with the
//! key the token's `kid` names (or the only key of the set), and the
//! algorithm must be the key's own when the key says. Expiry is checked
//! (60 s of leeway), and the issuer and audience when configured.
//!
//! The key set is loaded at start (a failure stops the start with one line
//! naming the file or URL and the cause), read again every `jwks_refresh`,
//! and at once when a token names a key the set lacks (at most once every
//! [`REFETCH_UNKNOWN_KID`]), so an identity provider can rotate its keys
//! without a restart. A failed refresh keeps the keys the server has and
//! logs a warning.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use hindsight_archive::access::{Principal, PrincipalKind, Role, Scope};
use hindsight_archive::SecretUrl;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `[http.jwt]` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// A file holding the JSON Web Key Set (`{"keys": [...]}`) the tokens
    /// are signed by. Exactly one of `jwks_file` and `jwks_url`.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// The identity provider's JWKS address (`https://…/.well-known/jwks.json`;
    /// plain `http` only on loopback). A password in it is never shown.
    #[serde(default)]
    pub jwks_url: Option<SecretUrl>,
    /// How often the key set is read again.
    #[serde(default = "default_refresh", with = "humantime_serde")]
    pub jwks_refresh: Duration,
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

fn default_refresh() -> Duration {
    Duration::from_secs(300)
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

/// The shortest time between two loads caused by tokens naming an unknown
/// key, so a stream of forged `kid`s cannot make the server hammer the
/// identity provider.
pub const REFETCH_UNKNOWN_KID: Duration = Duration::from_secs(5);

/// The largest key set accepted from a URL.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

impl JwtSettings {
    /// Every problem, each as `http.jwt.<key>: message`.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match (&self.jwks_file, &self.jwks_url) {
            (None, None) => problems.push("http.jwt: set jwks_file or jwks_url".to_owned()),
            (Some(_), Some(_)) => {
                problems.push("http.jwt: set either jwks_file or jwks_url, not both".to_owned())
            }
            (None, Some(url)) => {
                if let Err(problem) = check_jwks_url(url.expose()) {
                    problems.push(format!("http.jwt.jwks_url {}: {problem}", url.redacted()));
                }
            }
            (Some(_), None) => {}
        }
        if self.jwks_refresh < Duration::from_secs(1) {
            problems.push("http.jwt.jwks_refresh: must be at least 1s".to_owned());
        }
        problems
    }
}

/// A JWKS URL must be `https`, or `http` to a loopback host: keys fetched
/// in the clear could be replaced on the way.
fn check_jwks_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|error| format!("not a URL: {error}"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => return Err("the URL names no host".to_owned()),
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err("must be https (plain http only to a loopback address)".to_owned()),
        other => Err(format!("the scheme {other:?} is not https")),
    }
}

/// Where the key set comes from.
enum KeySource {
    File(PathBuf),
    Url {
        url: SecretUrl,
        client: reqwest::Client,
    },
}

impl KeySource {
    /// What to call the key set in a message (`http.jwt.jwks_url https://…`).
    fn describe(&self) -> String {
        match self {
            KeySource::File(path) => format!("http.jwt.jwks_file {}", path.display()),
            KeySource::Url { url, .. } => format!("http.jwt.jwks_url {}", url.redacted()),
        }
    }

    async fn load(&self) -> Result<JwkSet, String> {
        let text = match self {
            KeySource::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|error| error.to_string())?,
            KeySource::Url { url, client } => fetch(client, url.expose()).await?,
        };
        let keys: JwkSet = serde_json::from_str(&text)
            .map_err(|error| format!("not a JSON Web Key Set: {error}"))?;
        if keys.keys.is_empty() {
            return Err("the key set has no keys".to_owned());
        }
        Ok(keys)
    }
}

/// The body of a GET of `url`, at most [`MAX_JWKS_BYTES`].
async fn fetch(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let mut response = client.get(url).send().await.map_err(causes)?;
    if !response.status().is_success() {
        return Err(format!("the server answered {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(causes)? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_JWKS_BYTES {
            return Err(format!("the key set is larger than {MAX_JWKS_BYTES} bytes"));
        }
    }
    String::from_utf8(body).map_err(|_| "the key set is not UTF-8 text".to_owned())
}

/// An error and its causes on one line, without the URL reqwest repeats
/// (it may hold a password).
fn causes(error: reqwest::Error) -> String {
    hindsight_archive::error::causes(&error.without_url())
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

/// Verifies tokens against one key set, kept current.
pub struct JwtVerifier {
    settings: JwtSettings,
    source: KeySource,
    /// The keys and when they were loaded (or a load last failed).
    keys: RwLock<(Arc<JwkSet>, Instant)>,
    /// Held while the key set is loaded again, so one load serves every
    /// request that wanted it.
    loading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("source", &self.source.describe())
            .field("keys", &self.current().0.keys.len())
            .finish()
    }
}

impl JwtVerifier {
    /// Loads the key set; an error is one line naming the file or URL and
    /// what is wrong.
    pub async fn load(settings: JwtSettings) -> Result<Self, String> {
        if let Some(problem) = settings.problems().into_iter().next() {
            return Err(problem);
        }
        let source = match (&settings.jwks_file, &settings.jwks_url) {
            (Some(path), _) => KeySource::File(path.clone()),
            (None, Some(url)) => {
                let parsed = check_jwks_url(url.expose())?;
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .https_only(parsed.scheme() == "https")
                    .redirect(reqwest::redirect::Policy::limited(3))
                    .build()
                    .map_err(|error| {
                        format!("http.jwt.jwks_url {}: {}", url.redacted(), causes(error))
                    })?;
                KeySource::Url {
                    url: url.clone(),
                    client,
                }
            }
            (None, None) => unreachable!("problems() reports a missing key set"),
        };
        let keys = source
            .load()
            .await
            .map_err(|problem| format!("{}: {problem}", source.describe()))?;
        Ok(JwtVerifier {
            settings,
            source,
            keys: RwLock::new((Arc::new(keys), Instant::now())),
            loading: tokio::sync::Mutex::new(()),
        })
    }

    fn current(&self) -> (Arc<JwkSet>, Instant) {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The key set to check a token naming `kid` against: loaded again when
    /// it is older than `jwks_refresh`, or lacks `kid` and was loaded more
    /// than [`REFETCH_UNKNOWN_KID`] ago.
    async fn keys_for(&self, kid: Option<&str>) -> Arc<JwkSet> {
        let wanted = |(keys, loaded): &(Arc<JwkSet>, Instant)| {
            let age = loaded.elapsed();
            age >= self.settings.jwks_refresh
                || (age >= REFETCH_UNKNOWN_KID && kid.is_some_and(|kid| keys.find(kid).is_none()))
        };
        let current = self.current();
        if !wanted(&current) {
            return current.0;
        }
        let _loading = self.loading.lock().await;
        // Another request may have loaded it while this one waited.
        let current = self.current();
        if !wanted(&current) {
            return current.0;
        }
        let keys = match self.source.load().await {
            Ok(keys) => {
                tracing::info!(
                    keys = keys.keys.len(),
                    "loaded the JWT key set from {}",
                    self.source.describe()
                );
                Arc::new(keys)
            }
            Err(problem) => {
                tracing::warn!(
                    "{}: {problem}; the key set loaded before is kept",
                    self.source.describe()
                );
                current.0
            }
        };
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = (keys.clone(), Instant::now());
        keys
    }

    /// Whether `token` has the shape of a JWT (three dot-separated parts).
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3 && token.starts_with("eyJ")
    }

    /// The principal of a valid token, or why it is refused.
    pub async fn verify(&self, token: &str) -> Result<Principal, String> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|error| format!("the JWT header cannot be read: {error}"))?;
        if !ASYMMETRIC.contains(&header.alg) {
            return Err(format!(
                "the JWT is signed with {:?}; only asymmetric signatures are accepted",
                header.alg
            ));
        }
        let keys = self.keys_for(header.kid.as_deref()).await;
        let key = match &header.kid {
            Some(kid) => keys
                .find(kid)
                .ok_or_else(|| format!("no key {kid:?} in the key set"))?,
            None if keys.keys.len() == 1 => &keys.keys[0],
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(file: Option<&str>, url: Option<&str>) -> JwtSettings {
        let mut value = serde_json::json!({});
        if let Some(file) = file {
            value["jwks_file"] = file.into();
        }
        if let Some(url) = url {
            value["jwks_url"] = url.into();
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_key_set_comes_from_exactly_one_place_and_urls_are_https_or_loopback() {
        let problems = |file, url| settings(file, url).problems();
        assert_eq!(problems(Some("/etc/jwks.json"), None), Vec::<String>::new());
        for url in [
            "https://idp.example.com/.well-known/jwks.json",
            "http://127.0.0.1:8080/jwks.json",
            "http://localhost/jwks.json",
            "http://[::1]:9000/jwks.json",
        ] {
            assert_eq!(problems(None, Some(url)), Vec::<String>::new(), "{url}");
        }
        assert_eq!(
            problems(None, None),
            ["http.jwt: set jwks_file or jwks_url"]
        );
        assert_eq!(
            problems(Some("/etc/jwks.json"), Some("https://idp.example.com/jwks")),
            ["http.jwt: set either jwks_file or jwks_url, not both"]
        );
        let plain = problems(None, Some("http://idp.example.com/jwks.json"));
        assert!(plain[0].contains("must be https"), "{plain:?}");
        let ftp = problems(None, Some("ftp://idp.example.com/jwks.json"));
        assert!(ftp[0].contains("\"ftp\" is not https"), "{ftp:?}");
        let secret = problems(None, Some("http://user:hunter2@idp.example.com/jwks.json"));
        assert!(!secret[0].contains("hunter2"), "{secret:?}");
        let mut short = settings(Some("/etc/jwks.json"), None);
        short.jwks_refresh = Duration::from_millis(10);
        assert_eq!(
            short.problems(),
            ["http.jwt.jwks_refresh: must be at least 1s"]
        );
    }
}
