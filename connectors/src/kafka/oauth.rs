//! OAUTHBEARER tokens for librdkafka: a static token, or OIDC client
//! credentials fetched from a token endpoint (and fetched again whenever
//! librdkafka asks, at 80% of the token's lifetime).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hindsight_archive::Secret;
use rdkafka::client::OAuthToken;

use super::client::{KafkaSasl, OidcSettings};

/// Where a connection's OAUTHBEARER tokens come from.
pub enum TokenSource {
    Static(Secret),
    Oidc(OidcSettings),
}

/// How long a token without an `exp` claim is used before asking again.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

impl TokenSource {
    pub fn new(sasl: &KafkaSasl) -> Option<TokenSource> {
        if let Some(oidc) = &sasl.oidc {
            return Some(TokenSource::Oidc(oidc.clone()));
        }
        sasl.token.clone().map(TokenSource::Static)
    }

    /// A token for librdkafka. Blocking (it may ask the token endpoint);
    /// librdkafka calls it from its own threads.
    pub fn token(&self) -> Result<OAuthToken, String> {
        let (token, lifetime) = match self {
            TokenSource::Static(token) => (token.expose().to_owned(), None),
            TokenSource::Oidc(oidc) => fetch_in_thread(oidc.clone())?,
        };
        let claims = jwt_claims(&token);
        let principal_name = claims
            .as_ref()
            .and_then(|claims| claims.get("sub"))
            .and_then(|sub| sub.as_str())
            .map(str::to_owned)
            .or_else(|| match self {
                TokenSource::Oidc(oidc) => Some(oidc.client_id.clone()),
                TokenSource::Static(_) => None,
            })
            .unwrap_or_else(|| "hindsight".to_owned());
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64;
        let expiry_ms = claims
            .as_ref()
            .and_then(|claims| claims.get("exp"))
            .and_then(serde_json::Value::as_i64)
            .map(|exp| exp * 1000)
            .or(lifetime.map(|lifetime| now_ms + lifetime.as_millis() as i64))
            .unwrap_or(now_ms + DEFAULT_LIFETIME.as_millis() as i64);
        Ok(OAuthToken {
            token,
            principal_name,
            lifetime_ms: expiry_ms,
        })
    }
}

/// The claims of a JWT, when the token is one (it need not be).
fn jwt_claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Runs the fetch on a thread of its own with its own small runtime, so it
/// works whichever thread librdkafka calls from.
fn fetch_in_thread(oidc: OidcSettings) -> Result<(String, Option<Duration>), String> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| format!("cannot start a runtime for the token request: {error}"))?;
        runtime.block_on(fetch(&oidc))
    })
    .join()
    .map_err(|_| "the token request panicked".to_owned())?
}

/// One client-credentials grant: `POST token_endpoint` with the client id
/// and secret as HTTP basic auth.
pub async fn fetch(oidc: &OidcSettings) -> Result<(String, Option<Duration>), String> {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
    if let Some(ca) = &oidc.ca_file {
        let pem =
            std::fs::read(ca).map_err(|error| format!("cannot read {}: {error}", ca.display()))?;
        let certificate = reqwest::Certificate::from_pem(&pem)
            .map_err(|error| format!("{} is not a PEM certificate: {error}", ca.display()))?;
        builder = builder.add_root_certificate(certificate);
    }
    let client = builder
        .build()
        .map_err(|error| format!("cannot build an HTTP client: {error}"))?;
    let mut form = vec![("grant_type", "client_credentials".to_owned())];
    if let Some(scope) = &oidc.scope {
        form.push(("scope", scope.clone()));
    }
    let body = form
        .iter()
        .map(|(name, value)| format!("{name}={}", url_encode(value)))
        .collect::<Vec<_>>()
        .join("&");
    let secret = oidc
        .client_secret
        .as_ref()
        .map(Secret::expose)
        .unwrap_or("");
    let response = client
        .post(&oidc.token_endpoint)
        .basic_auth(&oidc.client_id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|error| format!("token endpoint {}: {error}", oidc.token_endpoint))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|error| format!("token endpoint {}: {error}", oidc.token_endpoint))?;
    if !status.is_success() {
        let excerpt: String = text.chars().take(200).collect();
        return Err(format!(
            "token endpoint {} answered {status}: {excerpt}",
            oidc.token_endpoint
        ));
    }
    let answer: serde_json::Value = serde_json::from_str(&text).map_err(|error| {
        format!(
            "token endpoint {} did not answer JSON: {error}",
            oidc.token_endpoint
        )
    })?;
    let token = answer
        .get("access_token")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| {
            format!(
                "token endpoint {} gave no access_token",
                oidc.token_endpoint
            )
        })?;
    let lifetime = answer
        .get("expires_in")
        .and_then(serde_json::Value::as_u64)
        .map(Duration::from_secs);
    Ok((token.to_owned(), lifetime))
}

fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A one-shot token endpoint on loopback: answers one request with
    /// `answer` and hands back what it received.
    fn token_endpoint(answer: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut received = Vec::new();
            let mut buffer = [0u8; 4096];
            while let Ok(read) = stream.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                received.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&received);
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let length = text[..head_end]
                        .lines()
                        .find_map(|line| {
                            line.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|value| value.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if received.len() >= head_end + 4 + length {
                        break;
                    }
                }
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
            stream.write_all(response.as_bytes()).unwrap();
            String::from_utf8_lossy(&received).into_owned()
        });
        (format!("http://{address}/token"), handle)
    }

    #[test]
    fn client_credentials_are_exchanged_for_a_token() {
        // exp 4102444800 = 2100-01-01; sub "svc-hindsight".
        let jwt = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJzdmMtaGluZHNpZ2h0IiwiZXhwIjo0MTAyNDQ0ODAwfQ.";
        let answer: &'static str = Box::leak(
            format!(r#"{{"access_token":"{jwt}","token_type":"Bearer","expires_in":300}}"#)
                .into_boxed_str(),
        );
        let (endpoint, server) = token_endpoint(answer);
        let source = TokenSource::Oidc(OidcSettings {
            token_endpoint: endpoint,
            client_id: "hindsight".to_owned(),
            client_secret: Some(Secret::new("cl1ent-secret")),
            client_secret_file: None,
            scope: Some("kafka write".to_owned()),
            ca_file: None,
        });
        let token = source.token().unwrap();
        assert_eq!(token.token, jwt);
        assert_eq!(token.principal_name, "svc-hindsight");
        assert_eq!(token.lifetime_ms, 4_102_444_800_000);
        let request = server.join().unwrap();
        assert!(request.starts_with("POST /token "), "{request}");
        assert!(request.contains("grant_type=client_credentials&scope=kafka%20write"));
        let basic = base64::engine::general_purpose::STANDARD.encode("hindsight:cl1ent-secret");
        assert!(
            request.contains(&format!("authorization: Basic {basic}")),
            "{request}"
        );
    }

    #[test]
    fn a_static_token_without_claims_lives_an_hour() {
        let token = TokenSource::Static(Secret::new("opaque")).token().unwrap();
        assert_eq!(token.token, "opaque");
        assert_eq!(token.principal_name, "hindsight");
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!((token.lifetime_ms - now_ms - 3_600_000).abs() < 60_000);
    }
}
