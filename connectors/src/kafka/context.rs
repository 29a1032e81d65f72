//! What every Kafka client of a connection carries in its context: the
//! error callback that tells a failure retrying cannot fix (a refused login,
//! a refused certificate) from a network blip, and the OAUTHBEARER token
//! source. [`connection_callbacks!`] puts both into any `ClientContext`.

use std::sync::{Arc, Mutex};

use hindsight_archive::{Error, ErrorKind};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use super::oauth::TokenSource;
use crate::tls::{one_line, tls_cause, TlsSettings};

/// What every Kafka client of a connection shares: its name for errors,
/// the OAUTHBEARER token source, and the first failure that retrying
/// cannot fix.
#[derive(Clone)]
pub struct ConnectionContext {
    pub(super) what: String,
    pub(super) addresses: String,
    /// The first broker, and the TLS settings, to explain a refused
    /// certificate (see [`crate::tls::verify_failure`]).
    pub(super) first_broker: Option<String>,
    pub(super) tls: Option<TlsSettings>,
    pub(super) tokens: Option<Arc<TokenSource>>,
    pub(super) fatal: Arc<Mutex<Option<String>>>,
}

impl ConnectionContext {
    pub(super) fn invalid(&self, cause: &str) -> Error {
        Error::new(
            ErrorKind::InvalidInput,
            format!("{} (kafka, {}): {cause}", self.what, self.addresses),
        )
    }

    /// The first failure seen that retrying cannot fix, as an error. A
    /// refused broker certificate is explained by connecting once more with
    /// OpenSSL directly (librdkafka does not say why).
    pub fn fatal_error(&self) -> Option<Error> {
        let mut cause = self.fatal.lock().ok()?.clone()?;
        let lower = cause.to_ascii_lowercase();
        if lower.contains("certificate verify failed") || lower.contains("could not be verified") {
            if let Some(why) = self
                .first_broker
                .as_deref()
                .and_then(|broker| crate::tls::verify_failure(broker, self.tls.as_ref()))
            {
                let explained =
                    tls_cause(&why).unwrap_or_else(|| "TLS handshake failed".to_owned());
                cause = format!("{explained} (OpenSSL: {why})");
            }
        }
        Some(self.invalid(&cause))
    }

    /// librdkafka's error callback: remembers the first failure that
    /// retrying cannot fix, for the start-up probe, which stops there. Once
    /// running, a client keeps retrying (librdkafka reconnects; a broker
    /// may refuse a re-authentication once and accept the next login), and
    /// such failures are logged as errors.
    pub fn on_error(&self, error: &KafkaError, reason: &str) {
        match fatal_cause(error.rdkafka_error_code(), reason) {
            Some(cause) => {
                tracing::error!(connection = %self.what, brokers = %self.addresses, %cause, "kafka connection refused (retried)");
                if let Ok(mut fatal) = self.fatal.lock() {
                    fatal.get_or_insert(cause);
                }
            }
            None => {
                tracing::warn!(connection = %self.what, brokers = %self.addresses, %error, reason, "kafka client error (retried)");
            }
        }
    }

    pub fn oauth_token(
        &self,
    ) -> std::result::Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        match &self.tokens {
            Some(tokens) => tokens.token().map_err(|error| {
                if let Ok(mut fatal) = self.fatal.lock() {
                    fatal
                        .get_or_insert_with(|| format!("cannot get an OAUTHBEARER token: {error}"));
                }
                error.into()
            }),
            None => Err("this connection has no OAUTHBEARER token source".into()),
        }
    }
}

/// The cause, when an error is one that retrying cannot fix.
fn fatal_cause(code: Option<RDKafkaErrorCode>, reason: &str) -> Option<String> {
    let text = one_line(reason);
    let lower = text.to_ascii_lowercase();
    match code {
        Some(RDKafkaErrorCode::Authentication)
        | Some(RDKafkaErrorCode::SaslAuthenticationFailed) => {
            Some(format!("authentication failed (wrong user name, password or token?): {text}"))
        }
        Some(RDKafkaErrorCode::SSL) => Some(format!(
            "{}: {text}",
            tls_cause(&text).unwrap_or_else(|| "TLS handshake failed".to_owned())
        )),
        _ if lower.contains("incorrect security.protocol") => Some(format!(
            "the broker hung up during the first request: is it a TLS (or SASL) port while security_protocol is {}? {text}",
            if lower.contains("ssl listener") { "plaintext" } else { "wrong" }
        )),
        _ if lower.contains("sasl authentication") || lower.contains("authentication failed") => {
            Some(format!("authentication failed: {text}"))
        }
        _ if lower.contains("ssl handshake") || lower.contains("alert certificate") || lower.contains("ssl transport error") && tls_cause(&text).is_some() => {
            Some(format!(
                "{}: {text}",
                tls_cause(&text).unwrap_or_else(|| "TLS handshake failed".to_owned())
            ))
        }
        _ if lower.contains("unsupported sasl mechanism") || lower.contains("mechanism") && lower.contains("not supported") || lower.contains("unsupported_sasl_mechanism") => {
            Some(format!("the broker does not offer this SASL mechanism: {text}"))
        }
        _ => None,
    }
}

/// The `ClientContext` items every context of a connection has: the error
/// callback and OAUTHBEARER tokens, handed to the `ConnectionContext` that
/// `|this| expression` reaches from the context.
macro_rules! connection_callbacks {
    (|$this:ident| $connection:expr) => {
        const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

        fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
            let $this = self;
            let connection: &$crate::kafka::context::ConnectionContext = $connection;
            connection.on_error(&error, reason);
        }

        fn generate_oauth_token(
            &self,
            _config: Option<&str>,
        ) -> std::result::Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
            let $this = self;
            let connection: &$crate::kafka::context::ConnectionContext = $connection;
            connection.oauth_token()
        }
    };
}
pub(crate) use connection_callbacks;

impl ClientContext for ConnectionContext {
    connection_callbacks!(|this| this);
}

impl ConsumerContext for ConnectionContext {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_errors_are_told_from_transient_ones() {
        assert!(fatal_cause(
            Some(RDKafkaErrorCode::BrokerTransportFailure),
            "Connection refused"
        )
        .is_none());
        assert!(fatal_cause(
            Some(RDKafkaErrorCode::BrokerTransportFailure),
            "Disconnected while requesting ApiVersion: might be caused by incorrect security.protocol configuration (connecting to a SSL listener?)"
        )
        .unwrap()
        .contains("TLS"));
        assert!(fatal_cause(
            Some(RDKafkaErrorCode::Authentication),
            "SASL authentication error: Authentication failed"
        )
        .unwrap()
        .starts_with("authentication failed"));
        assert!(fatal_cause(
            Some(RDKafkaErrorCode::SSL),
            "SSL handshake failed: certificate verify failed"
        )
        .unwrap()
        .contains("tls.ca_file"));
    }
}
