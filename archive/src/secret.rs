//! Secrets in configuration: passwords, keys, tokens.
//!
//! [`Secret`] holds one. Its `Debug`, `Display` and `Serialize` print
//! [`REDACTED`], so a secret cannot reach a log line, `check-config` or an API
//! answer by accident: code that needs the value asks for it with
//! [`Secret::expose`]. [`redact_url`] and [`is_secret_property`] do the same
//! for secrets that hide inside a URL or a client property map.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a secret looks like wherever it is shown.
pub const REDACTED: &str = "[redacted]";

/// A secret value (a password, key or token) that never prints.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that needs it (a client library).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarText).map(Secret)
    }
}

/// Reads any scalar as text, and never puts the value in an error: an
/// environment variable `HINDSIGHT__HTTP__AUTH_TOKEN=123456` reaches serde
/// as a number, and serde's own "invalid type: integer `123456`" would
/// print the secret.
struct ScalarText;

impl serde::de::Visitor<'_> for ScalarText {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string (the value is not shown: it is a secret)")
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<String, E> {
        Ok(value.to_owned())
    }

    fn visit_string<E: serde::de::Error>(self, value: String) -> Result<String, E> {
        Ok(value)
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<String, E> {
        Ok(value.to_string())
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<String, E> {
        Ok(value.to_string())
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<String, E> {
        Ok(value.to_string())
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<String, E> {
        Ok(value.to_string())
    }
}

/// A client property's value: any scalar, as text (secret or not, so an
/// error never shows one).
#[derive(Deserialize)]
#[serde(transparent)]
struct PropertyValue(#[serde(deserialize_with = "scalar_text")] String);

fn scalar_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    deserializer.deserialize_any(ScalarText)
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

/// A URL that may carry a password (`amqp://user:password@host/vhost`): it
/// deserialises from the full text, and prints and serialises with the
/// password replaced by [`REDACTED`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(url.into())
    }

    /// The URL with its password, for the client library.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL as it may be shown and stored.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when the URL carries a real password (not a redacted one).
    pub fn has_password(&self) -> bool {
        url::Url::parse(&self.0)
            .ok()
            .and_then(|url| url.password().map(|p| p != REDACTED_IN_URL))
            .unwrap_or(false)
    }

    /// True when the password was taken out of this URL (it was read back
    /// from a record), so it cannot connect as it is.
    pub fn lacks_password(&self) -> bool {
        url::Url::parse(&self.0)
            .ok()
            .and_then(|url| url.password().map(|p| p == REDACTED_IN_URL))
            .unwrap_or(false)
    }
}

/// [`REDACTED`] as it appears in a URL's user information.
const REDACTED_IN_URL: &str = "%5Bredacted%5D";

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarText).map(SecretUrl)
    }
}

impl From<&str> for SecretUrl {
    fn from(value: &str) -> Self {
        SecretUrl(value.to_owned())
    }
}

/// `amqp://user:secret@host/` becomes `amqp://user:%5Bredacted%5D@host/`.
/// Text that does not parse as a URL is shown whole only when it has no `@`
/// (so no user information to hide).
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some(REDACTED));
            }
            parsed.to_string()
        }
        Err(_) if url.contains('@') => REDACTED.to_owned(),
        Err(_) => url.to_owned(),
    }
}

/// True for client properties whose value is a secret: librdkafka's
/// `sasl.password`, `ssl.key.password`, `ssl.keystore.password`,
/// `sasl.oauthbearer.client.secret`, `ssl.key.pem`, `sasl.jaas.config`, and
/// anything else named like a password, secret, token or private key.
pub fn is_secret_property(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "jaas",
        "key.pem",
        "private",
        "credential",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// A client property map as it may be shown: secret values redacted.
pub fn redact_properties<'a>(
    properties: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> std::collections::BTreeMap<String, String> {
    properties
        .into_iter()
        .map(|(name, value)| {
            let shown = if is_secret_property(name) {
                REDACTED.to_owned()
            } else {
                value.clone()
            };
            (name.clone(), shown)
        })
        .collect()
}

/// Client properties (librdkafka's `name = value` pairs), some of them
/// secret: `Debug` and `Serialize` show the secret ones (see
/// [`is_secret_property`]) as [`REDACTED`]. It derefs to the map.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ClientProperties(pub std::collections::BTreeMap<String, String>);

impl<'de> Deserialize<'de> for ClientProperties {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, PropertyValue>::deserialize(deserializer)?;
        Ok(ClientProperties(
            map.into_iter()
                .map(|(name, value)| (name, value.0))
                .collect(),
        ))
    }
}

impl ClientProperties {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when a secret property holds [`REDACTED`]: these properties
    /// were read back from a record, not given.
    pub fn lacks_secrets(&self) -> bool {
        self.0
            .iter()
            .any(|(name, value)| is_secret_property(name) && value == REDACTED)
    }
}

impl std::ops::Deref for ClientProperties {
    type Target = std::collections::BTreeMap<String, String>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for ClientProperties {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl fmt::Debug for ClientProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        redact_properties(&self.0).fmt(f)
    }
}

impl Serialize for ClientProperties {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        redact_properties(&self.0).serialize(serializer)
    }
}

impl FromIterator<(String, String)> for ClientProperties {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        ClientProperties(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_and_still_deserialise_whole() {
        let secret: Secret = serde_json::from_str("\"hunter2\"").unwrap();
        assert_eq!(secret.expose(), "hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"[redacted]\"");
    }

    #[test]
    fn secrets_given_as_numbers_are_read_as_text_and_never_echoed() {
        let secret: Secret = serde_json::from_str("123456").unwrap();
        assert_eq!(secret.expose(), "123456");
        let properties: ClientProperties =
            serde_json::from_str(r#"{"sasl.password": 987654, "linger.ms": 5}"#).unwrap();
        assert_eq!(properties["sasl.password"], "987654");
        assert_eq!(properties["linger.ms"], "5");
        let error = serde_json::from_str::<Secret>("[\"hunter2\"]").unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn url_passwords_are_redacted_and_the_rest_is_kept() {
        let url = SecretUrl::new("amqp://guest:hunter2@127.0.0.1:5672/%2f");
        assert_eq!(url.expose(), "amqp://guest:hunter2@127.0.0.1:5672/%2f");
        let shown = format!("{url:?} {url} {}", serde_json::to_string(&url).unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("guest:"), "{shown}");
        assert!(shown.contains("127.0.0.1:5672"), "{shown}");
        assert!(!url.lacks_password());
        let stored: SecretUrl =
            serde_json::from_str(&serde_json::to_string(&url).unwrap()).unwrap();
        assert!(stored.lacks_password());
        assert_eq!(redact_url("amqp://host/"), "amqp://host/");
        assert_eq!(redact_url("not a url with user:pw@host"), REDACTED);
    }

    #[test]
    fn secret_client_properties_are_redacted() {
        let mut properties = std::collections::BTreeMap::new();
        for (name, value) in [
            ("sasl.password", "p1"),
            ("ssl.key.password", "p2"),
            ("sasl.oauthbearer.client.secret", "p3"),
            ("sasl.username", "alice"),
            ("security.protocol", "SASL_SSL"),
        ] {
            properties.insert(name.to_owned(), value.to_owned());
        }
        let shown = redact_properties(&properties);
        let client = ClientProperties(properties.clone());
        let printed = format!("{client:?} {}", serde_json::to_string(&client).unwrap());
        assert!(
            !printed.contains("p1") && !printed.contains("p3"),
            "{printed}"
        );
        assert!(printed.contains("alice"), "{printed}");
        assert_eq!(shown["sasl.username"], "alice");
        assert_eq!(shown["security.protocol"], "SASL_SSL");
        for name in [
            "sasl.password",
            "ssl.key.password",
            "sasl.oauthbearer.client.secret",
        ] {
            assert_eq!(shown[name], REDACTED);
        }
    }
}
