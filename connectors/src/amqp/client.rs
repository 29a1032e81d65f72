//! The client settings both RabbitMQ directions share: a connection's URL,
//! password, TLS files and login mechanism, and how a connection is opened.

use std::path::PathBuf;

use hindsight_archive::{Error, ErrorKind, Result, Secret, SecretUrl};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::uri::{AMQPScheme, AMQPUri, SASLMechanism};
use lapin::{Connect, Connection, ConnectionProperties};
use serde::{Deserialize, Serialize};

use crate::tls::{load_secret, one_line, tls_cause, TlsSettings};

/// How Hindsight logs in to RabbitMQ.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmqpAuth {
    /// User name and password (the URL's, or `password`).
    #[default]
    Plain,
    /// The client certificate's identity (RabbitMQ's
    /// `rabbitmq_auth_mechanism_ssl`); needs `tls.cert_file`.
    External,
}

/// `[connections.NAME] bus = "amqp"`, or a source's or target's own `url`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpConnection {
    /// `amqp://user@host:5672/vhost` or `amqps://…` (TLS). A password in the
    /// URL is allowed, but `password`/`password_file` keep it out of it.
    pub url: SecretUrl,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub auth: AmqpAuth,
    /// Only with `amqps://`. Peer verification is always on.
    #[serde(default)]
    pub tls: Option<TlsSettings>,
}

impl AmqpConnection {
    /// A connection that is only a URL (a source's or a target's own).
    pub fn from_url(url: SecretUrl) -> Self {
        AmqpConnection {
            url,
            ..AmqpConnection::default()
        }
    }

    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        match self.url.expose().parse::<AMQPUri>() {
            Ok(uri) => format!("{}:{}", uri.authority.host, uri.authority.port),
            Err(_) => self.url.redacted(),
        }
    }

    pub fn uses_tls(&self) -> bool {
        self.url.expose().starts_with("amqps://")
    }

    /// `plaintext`, `tls` or `tls+external`, for listings.
    pub fn security(&self) -> &'static str {
        match (self.uses_tls(), self.auth) {
            (false, _) => "plaintext",
            (true, AmqpAuth::Plain) => "tls",
            (true, AmqpAuth::External) => "tls+external",
        }
    }

    /// Problems as `path.field: message`.
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let url = self.url.expose();
        if !url.starts_with("amqp://") && !url.starts_with("amqps://") {
            problems.push(format!("{path}.url: must start with amqp:// or amqps://"));
        } else if let Err(error) = url.parse::<AMQPUri>() {
            problems.push(format!("{path}.url: {error}"));
        }
        if let Some(tls) = &self.tls {
            if !self.uses_tls() {
                problems.push(format!("{path}.tls: TLS settings need an amqps:// url"));
            }
            if !tls.verify_hostname {
                problems.push(format!(
                    "{path}.tls.verify_hostname: RabbitMQ connections always verify the broker's certificate and host"
                ));
            }
            problems.extend(tls.problems(&format!("{path}.tls")));
        }
        if self.auth == AmqpAuth::External
            && self.tls.as_ref().is_none_or(|tls| tls.cert_file.is_none())
        {
            problems.push(format!(
                "{path}.auth: external needs a client certificate (tls.cert_file and tls.key_file) and an amqps:// url"
            ));
        }
        problems
    }

    /// Reads the `*_file` secrets.
    pub fn load_secrets(&mut self, path: &str) -> Vec<String> {
        let mut problems: Vec<String> = load_secret(
            &mut self.password,
            self.password_file.as_deref(),
            &format!("{path}.password"),
        )
        .err()
        .into_iter()
        .collect();
        if let Some(tls) = &mut self.tls {
            problems.extend(tls.load_secrets(&format!("{path}.tls")));
        }
        problems
    }

    /// The URL with the password and login mechanism applied.
    fn uri(&self) -> std::result::Result<AMQPUri, String> {
        let mut uri: AMQPUri = self.url.expose().parse()?;
        if let Some(password) = &self.password {
            password
                .expose()
                .clone_into(&mut uri.authority.userinfo.password);
        }
        if self.auth == AmqpAuth::External {
            uri.query.auth_mechanism = Some(SASLMechanism::External);
        }
        Ok(uri)
    }

    /// The CA bundle and client identity, read from their files.
    fn tls_config(&self) -> std::result::Result<OwnedTLSConfig, String> {
        let Some(tls) = &self.tls else {
            return Ok(OwnedTLSConfig::default());
        };
        let read = |file: &PathBuf| {
            std::fs::read(file).map_err(|error| format!("cannot read {}: {error}", file.display()))
        };
        let cert_chain = match &tls.ca_file {
            Some(file) => Some(
                String::from_utf8(read(file)?)
                    .map_err(|_| format!("{} is not a PEM file", file.display()))?,
            ),
            None => None,
        };
        let identity = match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => {
                let pem = read(cert)?;
                let key_pem = read(key)?;
                // tcp-stream takes an unencrypted PKCS#8 key: decrypt here.
                let private = match &tls.key_password {
                    Some(password) => openssl::pkey::PKey::private_key_from_pem_passphrase(
                        &key_pem,
                        password.expose().as_bytes(),
                    ),
                    None => openssl::pkey::PKey::private_key_from_pem(&key_pem),
                }
                .map_err(|error| {
                    format!(
                        "cannot read the private key {} (wrong key_password?): {}",
                        key.display(),
                        one_line(&error.to_string())
                    )
                })?;
                let key = private
                    .private_key_to_pem_pkcs8()
                    .map_err(|error| format!("cannot encode the private key: {error}"))?;
                Some(OwnedIdentity::PKCS8 { pem, key })
            }
            _ => None,
        };
        Ok(OwnedTLSConfig {
            identity,
            cert_chain,
        })
    }

    /// Connects as `client_name` (shown in RabbitMQ's management UI).
    /// `what` names the connection in errors (`connection "prod-rabbit"`,
    /// `source "orders"`). Wrong credentials and TLS failures are
    /// [`ErrorKind::InvalidInput`]: retrying cannot fix them. A broker that
    /// does not answer is [`ErrorKind::Retryable`]. The error is one line
    /// that names the connection, the host and the cause, never a secret.
    pub async fn connect(&self, what: &str, client_name: &str) -> Result<Connection> {
        let address = self.address();
        let invalid = |cause: String| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("{what} (amqp, {address}): {cause}"),
            )
        };
        let uri = self
            .uri()
            .map_err(|error| invalid(format!("bad url: {error}")))?;
        let tls = self.tls_config().map_err(invalid)?;
        if uri.scheme == AMQPScheme::AMQP && self.tls.is_some() {
            return Err(invalid("TLS settings need an amqps:// url".to_owned()));
        }
        let runtime = lapin::runtime::default_runtime()
            .map_err(|error| invalid(format!("no runtime for lapin: {error}")))?;
        let properties = ConnectionProperties::default().with_connection_name(client_name.into());
        let error = match uri.connect_with_config(properties, tls, runtime).await {
            Ok(connection) => return Ok(connection),
            Err(error) => classify(what, &address, &error),
        };
        Err(self.explain(what, &address, error).await)
    }

    /// Says more where the library says too little: why a certificate was
    /// refused (OpenSSL's verify result), and that a plaintext URL points at
    /// a TLS port (the broker's TLS alert is all lapin sees).
    async fn explain(&self, what: &str, address: &str, error: Error) -> Error {
        let message = error.message().to_owned();
        let uses_tls = self.uses_tls();
        let tls = self.tls.clone();
        let probe_address = address.to_owned();
        let explained = tokio::task::spawn_blocking(move || {
            if uses_tls && message.contains("certificate verify failed") {
                crate::tls::verify_failure(&probe_address, tls.as_ref()).map(|why| {
                    let cause = tls_cause(&why).unwrap_or_else(|| "TLS handshake failed".to_owned());
                    format!("{cause} (OpenSSL: {why})")
                })
            } else if !uses_tls && crate::tls::speaks_tls(&probe_address) {
                Some(format!(
                    "{probe_address} is a TLS port: use an amqps:// url (with tls.ca_file if its CA is not in the system store)"
                ))
            } else {
                None
            }
        })
        .await
        .ok()
        .flatten();
        match explained {
            Some(cause) => Error::new(
                ErrorKind::InvalidInput,
                format!("{what} (amqp, {address}): {cause}"),
            ),
            None => error,
        }
    }
}

/// One line for a failed connection attempt, and whether retrying may help.
fn classify(what: &str, address: &str, error: &lapin::Error) -> Error {
    let text = one_line(&error.to_string());
    let lower = text.to_ascii_lowercase();
    let (kind, cause) = if let Some(cause) = tls_cause(&text) {
        (ErrorKind::InvalidInput, cause)
    } else if lower.contains("access_refused")
        || lower.contains("access refused")
        || lower.contains("authentication")
        || lower.contains("login was refused")
    {
        (
            ErrorKind::InvalidInput,
            "login refused: wrong user name or password, or no access to the vhost".to_owned(),
        )
    } else if lower.contains("invalid protocol")
        || lower.contains("protocol header")
        || lower.contains("connection reset") && lower.contains("handshake")
    {
        (
            ErrorKind::InvalidInput,
            "the broker closed the connection during the handshake (a plaintext amqp:// url on a TLS port?)"
                .to_owned(),
        )
    } else {
        (ErrorKind::Retryable, "cannot connect".to_owned())
    };
    Error::new(kind, format!("{what} (amqp, {address}): {cause}: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_needs_a_client_certificate_and_the_password_stays_out() {
        let connection = AmqpConnection {
            url: SecretUrl::new("amqps://guest@127.0.0.1:5671/%2f"),
            password: Some(Secret::new("pw")),
            auth: AmqpAuth::External,
            ..AmqpConnection::default()
        };
        let problems = connection.problems("connections.r");
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("connections.r.auth:")),
            "{problems:?}"
        );
        let uri = connection.uri().unwrap();
        assert_eq!(uri.authority.userinfo.password, "pw");
        assert_eq!(uri.query.auth_mechanism, Some(SASLMechanism::External));
        assert!(!format!("{connection:?}").contains("pw"));
        assert_eq!(connection.address(), "127.0.0.1:5671");
        assert_eq!(connection.security(), "tls+external");
    }
}
