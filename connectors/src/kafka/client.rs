//! The client settings both Kafka directions share: a connection's brokers,
//! security protocol, SASL and TLS, turned into one librdkafka
//! configuration; the OAUTHBEARER token source; and the start-up probe that
//! turns a wrong password or certificate into one clear line.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hindsight_archive::secret::ClientProperties;
use hindsight_archive::{Error, ErrorKind, Result, Secret};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::{Deserialize, Serialize};

pub use super::context::ConnectionContext;
use super::oauth::TokenSource;
use crate::tls::{load_secret, TlsSettings};

/// librdkafka's `security.protocol`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    #[default]
    #[serde(alias = "PLAINTEXT")]
    Plaintext,
    #[serde(alias = "SSL")]
    Ssl,
    #[serde(alias = "SASL_PLAINTEXT")]
    SaslPlaintext,
    #[serde(alias = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    fn as_librdkafka(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

/// `sasl.mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "plain", alias = "PLAIN")]
    Plain,
    #[serde(rename = "scram-sha-256", alias = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "scram-sha-512", alias = "SCRAM-SHA-512")]
    ScramSha512,
    #[serde(rename = "oauthbearer", alias = "OAUTHBEARER")]
    OauthBearer,
}

impl SaslMechanism {
    fn as_librdkafka(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OauthBearer => "OAUTHBEARER",
        }
    }
}

/// `[connections.NAME.sasl]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSasl {
    pub mechanism: SaslMechanism,
    /// PLAIN and SCRAM.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// OAUTHBEARER with a token issued elsewhere (static).
    #[serde(default)]
    pub token: Option<Secret>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// OAUTHBEARER with OIDC client credentials.
    #[serde(default)]
    pub oidc: Option<OidcSettings>,
}

/// OIDC client credentials (RFC 6749 §4.4) against a token endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    pub token_endpoint: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<Secret>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub scope: Option<String>,
    /// PEM CA bundle for the token endpoint (default: the system store).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// `[connections.NAME] bus = "kafka"`, or a source's or target's own
/// `brokers` (with `client` properties).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConnection {
    /// Bootstrap servers, `host:port`.
    pub brokers: Vec<String>,
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
    #[serde(default)]
    pub sasl: Option<KafkaSasl>,
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// Extra librdkafka properties; they win over the settings above.
    /// Secret ones are printed redacted.
    #[serde(default)]
    pub client: ClientProperties,
}

impl KafkaConnection {
    /// A connection that is only brokers and properties (a source's or a
    /// target's own).
    pub fn inline(brokers: Vec<String>, client: ClientProperties) -> Self {
        KafkaConnection {
            brokers,
            client,
            ..KafkaConnection::default()
        }
    }

    pub fn addresses(&self) -> String {
        self.brokers.join(",")
    }

    /// `sasl_ssl (scram-sha-256)`, `ssl (mutual)`, … for listings.
    pub fn security(&self) -> String {
        let mut text = self.security_protocol.as_librdkafka().to_owned();
        if let Some(sasl) = &self.sasl {
            text.push_str(&format!(
                " ({})",
                sasl.mechanism.as_librdkafka().to_ascii_lowercase()
            ));
        }
        if self.tls.as_ref().is_some_and(|tls| tls.cert_file.is_some()) {
            text.push_str(" (mutual)");
        }
        text
    }

    /// Problems as `path.field: message`.
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.brokers.is_empty() || self.brokers.iter().any(|b| b.trim().is_empty()) {
            problems.push(format!("{path}.brokers: list at least one host:port"));
        }
        let protocol = self.security_protocol;
        match (&self.sasl, protocol.uses_sasl()) {
            (None, true) => problems.push(format!(
                "{path}.sasl: security_protocol {} needs a [sasl] section",
                protocol.as_librdkafka()
            )),
            (Some(_), false) => problems.push(format!(
                "{path}.sasl: set security_protocol to sasl_plaintext or sasl_ssl to use SASL"
            )),
            (Some(sasl), true) => problems.extend(sasl_problems(sasl, &format!("{path}.sasl"))),
            (None, false) => {}
        }
        if let Some(tls) = &self.tls {
            if !protocol.uses_tls() {
                problems.push(format!(
                    "{path}.tls: set security_protocol to ssl or sasl_ssl to use TLS"
                ));
            }
            problems.extend(tls.problems(&format!("{path}.tls")));
        }
        problems
    }

    /// Reads the `*_file` secrets.
    pub fn load_secrets(&mut self, path: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(sasl) = &mut self.sasl {
            let sasl_path = format!("{path}.sasl");
            let mut load =
                |value: &mut Option<Secret>, file: Option<&std::path::Path>, name: &str| {
                    if let Err(problem) = load_secret(value, file, &format!("{sasl_path}.{name}")) {
                        problems.push(problem);
                    }
                };
            load(
                &mut sasl.password,
                sasl.password_file.as_deref(),
                "password",
            );
            load(&mut sasl.token, sasl.token_file.as_deref(), "token");
            if let Some(oidc) = &mut sasl.oidc {
                load(
                    &mut oidc.client_secret,
                    oidc.client_secret_file.as_deref(),
                    "oidc.client_secret",
                );
            }
        }
        if let Some(tls) = &mut self.tls {
            problems.extend(tls.load_secrets(&format!("{path}.tls")));
        }
        problems
    }

    /// The librdkafka properties of this connection (without the brokers):
    /// security protocol, SASL, TLS, then the user's `client` properties.
    fn properties(&self) -> Vec<(String, String)> {
        let mut properties: Vec<(String, String)> = Vec::new();
        let mut set =
            |name: &str, value: &str| properties.push((name.to_owned(), value.to_owned()));
        set("security.protocol", self.security_protocol.as_librdkafka());
        if let Some(sasl) = &self.sasl {
            set("sasl.mechanism", sasl.mechanism.as_librdkafka());
            if let Some(username) = &sasl.username {
                set("sasl.username", username);
            }
            if let Some(password) = &sasl.password {
                set("sasl.password", password.expose());
            }
        }
        if let Some(tls) = &self.tls {
            if let Some(ca) = &tls.ca_file {
                set("ssl.ca.location", &ca.display().to_string());
            }
            if let Some(cert) = &tls.cert_file {
                set("ssl.certificate.location", &cert.display().to_string());
            }
            if let Some(key) = &tls.key_file {
                set("ssl.key.location", &key.display().to_string());
            }
            if let Some(password) = &tls.key_password {
                set("ssl.key.password", password.expose());
            }
            set(
                "ssl.endpoint.identification.algorithm",
                if tls.verify_hostname { "https" } else { "none" },
            );
        }
        for (name, value) in self.client.iter() {
            set(name, value);
        }
        properties
    }

    /// A librdkafka configuration: `bootstrap.servers`, the direction's own
    /// `settings`, then this connection's properties, which win.
    pub fn client_config(&self, settings: &[(&str, String)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.addresses());
        for (name, value) in settings {
            config.set(*name, value);
        }
        for (name, value) in self.properties() {
            config.set(name, value);
        }
        config
    }

    /// The context every client of this connection carries: it fetches
    /// OAUTHBEARER tokens and recognises failures that retrying cannot fix.
    /// `what` names the connection in errors.
    pub fn context(&self, what: &str) -> ConnectionContext {
        let tokens = self
            .sasl
            .as_ref()
            .filter(|sasl| sasl.mechanism == SaslMechanism::OauthBearer)
            .and_then(TokenSource::new);
        ConnectionContext {
            what: what.to_owned(),
            addresses: self.addresses(),
            first_broker: self.brokers.first().cloned(),
            tls: self.tls.clone(),
            tokens: tokens.map(Arc::new),
            fatal: Arc::new(Mutex::new(None)),
        }
    }

    /// Connects once and fetches the cluster's metadata, within `timeout`.
    /// A failure retrying cannot fix (a wrong password, an untrusted or
    /// expired certificate, a missing client certificate, a plaintext
    /// client on a TLS port) is [`ErrorKind::InvalidInput`] with one line
    /// naming the connection, the brokers and the cause; a broker that does
    /// not answer is [`ErrorKind::Retryable`]. Blocking: run it off the
    /// async workers.
    pub fn probe(&self, what: &str, timeout: Duration) -> Result<usize> {
        let context = self.context(what);
        let fatal = context.clone();
        let consumer: BaseConsumer<ConnectionContext> = self
            .client_config(&[("client.id", "hindsight-probe".to_owned())])
            .create_with_context(context)
            .map_err(|error| fatal.invalid(&format!("bad client settings: {error}")))?;
        let deadline = std::time::Instant::now() + timeout;
        let mut tls_checked = self.security_protocol.uses_tls();
        loop {
            let last = match consumer.fetch_metadata(None, Duration::from_millis(500)) {
                Ok(metadata) => return Ok(metadata.brokers().len()),
                Err(error) => error.to_string(),
            };
            // Serve the error and token callbacks.
            let _ = consumer.poll(Duration::from_millis(50));
            if let Some(error) = fatal.fatal_error() {
                return Err(error);
            }
            // A TLS port hangs up on a plaintext client without a word.
            if !tls_checked {
                tls_checked = true;
                if let Some(broker) = self.brokers.first() {
                    if crate::tls::speaks_tls(broker) {
                        return Err(fatal.invalid(&format!(
                            "{broker} speaks TLS but security_protocol is {}: set it to {}",
                            self.security_protocol.as_librdkafka(),
                            if self.security_protocol.uses_sasl() {
                                "sasl_ssl"
                            } else {
                                "ssl"
                            }
                        )));
                    }
                }
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::new(
                    ErrorKind::Retryable,
                    format!(
                        "{what} (kafka, {}): no broker answered within {} s: {last}",
                        fatal.addresses,
                        timeout.as_secs()
                    ),
                ));
            }
        }
    }
}

fn sasl_problems(sasl: &KafkaSasl, path: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let has_password = sasl.password.is_some() || sasl.password_file.is_some();
    match sasl.mechanism {
        SaslMechanism::Plain | SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
            if sasl.username.as_deref().is_none_or(str::is_empty) || !has_password {
                problems.push(format!(
                    "{path}: {} needs username and password (or password_file)",
                    sasl.mechanism.as_librdkafka()
                ));
            }
            if sasl.token.is_some() || sasl.token_file.is_some() || sasl.oidc.is_some() {
                problems.push(format!(
                    "{path}: token and oidc are for mechanism = \"oauthbearer\""
                ));
            }
        }
        SaslMechanism::OauthBearer => {
            let static_token = sasl.token.is_some() || sasl.token_file.is_some();
            if static_token == sasl.oidc.is_some() {
                problems.push(format!(
                    "{path}: oauthbearer needs either token (or token_file) or [oidc]"
                ));
            }
            if let Some(oidc) = &sasl.oidc {
                if !oidc.token_endpoint.starts_with("https://")
                    && !oidc.token_endpoint.starts_with("http://")
                {
                    problems.push(format!(
                        "{path}.oidc.token_endpoint: must be an http(s):// URL"
                    ));
                }
                if oidc.client_secret.is_none() && oidc.client_secret_file.is_none() {
                    problems.push(format!(
                        "{path}.oidc.client_secret: give client_secret or client_secret_file"
                    ));
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> KafkaConnection {
        toml_from(text)
    }

    fn toml_from(text: &str) -> KafkaConnection {
        serde_json::from_value(toml_to_json(text)).unwrap()
    }

    fn toml_to_json(text: &str) -> serde_json::Value {
        // The connectors crate has no TOML parser; these tests use JSON.
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn settings_become_librdkafka_properties_and_the_users_win() {
        let connection = parse(
            r#"{"brokers": ["b1:9093", "b2:9093"], "security_protocol": "SASL_SSL",
                "sasl": {"mechanism": "scram-sha-256", "username": "u", "password": "pw"},
                "tls": {"ca_file": "/ca.pem", "verify_hostname": false},
                "client": {"ssl.endpoint.identification.algorithm": "https"}}"#,
        );
        assert!(connection
            .problems("c")
            .iter()
            .all(|p| p.contains("ca_file")));
        let properties: std::collections::BTreeMap<_, _> =
            connection.properties().into_iter().collect();
        assert_eq!(properties["security.protocol"], "sasl_ssl");
        assert_eq!(properties["sasl.mechanism"], "SCRAM-SHA-256");
        assert_eq!(properties["sasl.password"], "pw");
        assert_eq!(properties["ssl.ca.location"], "/ca.pem");
        assert_eq!(properties["ssl.endpoint.identification.algorithm"], "https");
        assert_eq!(connection.security(), "sasl_ssl (scram-sha-256)");
        assert!(!format!("{connection:?}").contains("pw"));
        assert!(!serde_json::to_string(&connection).unwrap().contains("pw"));
    }

    #[test]
    fn sasl_and_tls_must_match_the_protocol() {
        let problems = parse(r#"{"brokers": ["b:9092"], "security_protocol": "sasl_plaintext"}"#)
            .problems("connections.k");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("connections.k.sasl:"));
        let problems = parse(
            r#"{"brokers": ["b:9092"], "security_protocol": "sasl_ssl",
                "sasl": {"mechanism": "oauthbearer"}}"#,
        )
        .problems("k");
        assert!(problems[0].contains("token"), "{problems:?}");
        let problems = parse(r#"{"brokers": ["b:9092"], "tls": {}}"#).problems("k");
        assert!(problems[0].starts_with("k.tls:"), "{problems:?}");
    }
}
