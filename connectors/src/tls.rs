//! What both buses share in a named connection: TLS files, secrets read
//! from files, and the one-line description of why a connection failed.

use std::path::{Path, PathBuf};

use hindsight_archive::Secret;
use serde::{Deserialize, Serialize};

/// `[connections.NAME.tls]`: a CA bundle, a client certificate for mutual
/// TLS, and whether the broker's certificate must name its host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM CA bundle the broker's certificate must chain to. Default: the
    /// system store.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (mutual TLS; RabbitMQ's EXTERNAL login).
    pub cert_file: Option<PathBuf>,
    /// Its PEM private key.
    pub key_file: Option<PathBuf>,
    /// The key's password, when the key is encrypted.
    pub key_password: Option<Secret>,
    pub key_password_file: Option<PathBuf>,
    /// The broker's certificate must name the host connected to.
    pub verify_hostname: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            ca_file: None,
            cert_file: None,
            key_file: None,
            key_password: None,
            key_password_file: None,
            verify_hostname: true,
        }
    }
}

impl TlsSettings {
    /// Problems as `path.field: message`.
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.cert_file.is_some() != self.key_file.is_some() {
            problems.push(format!(
                "{path}.cert_file: a client certificate needs both cert_file and key_file"
            ));
        }
        for (field, file) in [
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ] {
            if let Some(file) = file {
                if let Err(error) = std::fs::metadata(file) {
                    problems.push(format!(
                        "{path}.{field}: cannot read {}: {error}",
                        file.display()
                    ));
                }
            }
        }
        problems
    }

    /// Reads `key_password_file` into `key_password`.
    pub fn load_secrets(&mut self, path: &str) -> Vec<String> {
        load_secret(
            &mut self.key_password,
            self.key_password_file.as_deref(),
            &format!("{path}.key_password"),
        )
        .err()
        .into_iter()
        .collect()
    }
}

/// Fills `value` from `file` (its content, without the trailing newline).
/// Giving both is an error, and so is an unreadable or empty file; the
/// error names the file, never its content.
pub fn load_secret(
    value: &mut Option<Secret>,
    file: Option<&Path>,
    path: &str,
) -> Result<(), String> {
    let Some(file) = file else {
        return Ok(());
    };
    if value.is_some() {
        return Err(format!("{path}: give the value or {path}_file, not both"));
    }
    let text = std::fs::read_to_string(file)
        .map_err(|error| format!("{path}_file: cannot read {}: {error}", file.display()))?;
    let text = text.trim_end_matches(['\r', '\n']);
    if text.is_empty() {
        return Err(format!("{path}_file: {} is empty", file.display()));
    }
    *value = Some(Secret::new(text));
    Ok(())
}

/// Why a TLS handshake failed, in words and with what to do, from the
/// library's error text (OpenSSL's, as librdkafka and lapin report it).
/// `None` when the text is not about TLS.
pub fn tls_cause(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let cause = if lower.contains("certificate has expired")
        || lower.contains("certificate expired")
    {
        if lower.contains("alert") {
            "the broker refused our client certificate: it has expired"
        } else {
            "the broker's certificate has expired"
        }
    } else if lower.contains("hostname mismatch")
        || lower.contains("ip address mismatch")
        || lower.contains("does not match")
    {
        "the broker's certificate does not name this host (set tls.verify_hostname = false only if you must)"
    } else if lower.contains("alert certificate required")
        || lower.contains("peer did not return a certificate")
        || lower.contains("alert handshake failure") && lower.contains("certificate")
    {
        "the broker requires a client certificate: set tls.cert_file and tls.key_file"
    } else if lower.contains("unknown ca")
        || lower.contains("alert bad certificate")
        || lower.contains("alert certificate unknown")
    {
        "the broker refused our client certificate (not signed by a CA it trusts)"
    } else if lower.contains("self-signed certificate")
        || lower.contains("self signed certificate")
        || lower.contains("unable to get local issuer")
        || lower.contains("certificate verify failed")
        || lower.contains("could not be verified")
    {
        "the broker's certificate is not signed by a trusted CA: set tls.ca_file to the CA bundle that signed it"
    } else if lower.contains("wrong version number")
        || lower.contains("packet length too long")
        || lower.contains("record layer failure")
        || lower.contains("unexpected eof")
    {
        "the port does not speak TLS (is it a plaintext port?)"
    } else if lower.contains("ssl") || lower.contains("tls") || lower.contains("certificate") {
        "TLS handshake failed"
    } else {
        return None;
    };
    Some(cause.to_owned())
}

/// Connects to `address` (`host:port`) with OpenSSL as the client would and
/// says why the broker's certificate is refused (OpenSSL's verify result:
/// "Hostname mismatch", "certificate has expired", "unable to get local
/// issuer certificate", …). `None` when it is accepted, or the broker cannot
/// be reached. librdkafka reports only "certificate verify failed"; this
/// tells its causes apart. Blocking, bounded by a few seconds.
pub fn verify_failure(address: &str, tls: Option<&TlsSettings>) -> Option<String> {
    use std::net::{TcpStream, ToSocketAddrs};
    use std::time::Duration;

    use openssl::ssl::{HandshakeError, SslConnector, SslMethod};
    use openssl::x509::X509VerifyResult;

    let (host, _) = address.rsplit_once(':')?;
    let host = host.trim_matches(['[', ']']);
    let mut builder = SslConnector::builder(SslMethod::tls_client()).ok()?;
    if let Some(ca) = tls.and_then(|tls| tls.ca_file.as_ref()) {
        builder.set_ca_file(ca).ok()?;
    }
    let connector = builder.build();
    let socket = address.to_socket_addrs().ok()?.next()?;
    let stream = TcpStream::connect_timeout(&socket, Duration::from_secs(5)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .ok()?;
    let mut configuration = connector.configure().ok()?;
    configuration.set_verify_hostname(tls.is_none_or(|tls| tls.verify_hostname));
    match configuration.connect(host, stream) {
        Err(HandshakeError::Failure(failed)) => {
            let result = failed.ssl().verify_result();
            (result != X509VerifyResult::OK).then(|| result.error_string().to_owned())
        }
        _ => None,
    }
}

/// True when `address` answers a TLS handshake (certificate not checked):
/// tells a plaintext client on a TLS port from a broker that is down.
/// Blocking, bounded by a few seconds.
pub fn speaks_tls(address: &str) -> bool {
    use std::net::{TcpStream, ToSocketAddrs};
    use std::time::Duration;

    use openssl::ssl::{HandshakeError, SslConnector, SslMethod, SslVerifyMode};

    let Some(socket) = address
        .to_socket_addrs()
        .ok()
        .and_then(|mut all| all.next())
    else {
        return false;
    };
    let Ok(stream) = TcpStream::connect_timeout(&socket, Duration::from_secs(5)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let Ok(mut builder) = SslConnector::builder(SslMethod::tls_client()) else {
        return false;
    };
    builder.set_verify(SslVerifyMode::NONE);
    let connector = builder.build();
    let Ok(mut configuration) = connector.configure() else {
        return false;
    };
    configuration.set_verify_hostname(false);
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    match configuration.connect(host.trim_matches(['[', ']']), stream) {
        Ok(_) => true,
        // A handshake that got as far as the server's certificate.
        Err(HandshakeError::Failure(failed)) => failed.ssl().peer_certificate().is_some(),
        Err(_) => false,
    }
}

/// The library's text on one line, with OpenSSL's internal file and line
/// references cut, for the end of an error message.
pub fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut = without_source_references(&joined);
    if cut.chars().count() > 300 {
        cut.chars().take(300).collect::<String>() + "…"
    } else {
        cut
    }
}

/// Removes `:../ssl/statem/statem_clnt.c:1889:` style source references.
fn without_source_references(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for part in text.split(':') {
        let trimmed = part.trim();
        let is_source = trimmed.ends_with(".c")
            || trimmed.chars().all(|c| c.is_ascii_digit()) && !trimmed.is_empty();
        if is_source {
            continue;
        }
        if !out.is_empty() {
            out.push(':');
        }
        out.push_str(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_files_without_their_newline() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret\n").unwrap();
        let mut value = None;
        load_secret(&mut value, Some(&file), "connections.k.sasl.password").unwrap();
        assert_eq!(value.unwrap().expose(), "s3cret");

        let mut both = Some(Secret::new("x"));
        let error = load_secret(&mut both, Some(&file), "a.password").unwrap_err();
        assert!(error.contains("not both"), "{error}");

        let missing = dir.path().join("nope");
        let error = load_secret(&mut None, Some(&missing), "a.password").unwrap_err();
        assert!(error.starts_with("a.password_file: cannot read"), "{error}");

        std::fs::write(&file, "\n").unwrap();
        let error = load_secret(&mut None, Some(&file), "a.password").unwrap_err();
        assert!(error.contains("is empty"), "{error}");
    }

    #[test]
    fn openssl_texts_become_causes() {
        let unknown_ca = "SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified";
        assert!(tls_cause(unknown_ca).unwrap().contains("tls.ca_file"));
        let expired = "error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed:../ssl/statem/statem_clnt.c:1889: (certificate has expired)";
        assert_eq!(
            tls_cause(expired).unwrap(),
            "the broker's certificate has expired"
        );
        assert!(one_line(expired).contains("(certificate has expired)"));
        assert!(!one_line(expired).contains("statem_clnt.c"));
        let plaintext = "error:0A00010B:SSL routines:ssl3_get_record:wrong version number";
        assert!(tls_cause(plaintext).unwrap().contains("plaintext"));
        let required =
            "SSL transport error: error:0A00045C:SSL routines::tlsv13 alert certificate required";
        assert!(tls_cause(required).unwrap().contains("client certificate"));
        assert_eq!(tls_cause("Connection refused"), None);
    }
}
