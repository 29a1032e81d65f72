//! The client settings both RabbitMQ directions share.

use hindsight_archive::{Error, ErrorKind, Result, SecretUrl};
use lapin::{Connection, ConnectionProperties};

/// Connects to `url` as `name` (shown in RabbitMQ's management UI). The
/// error names the host, never the password.
pub async fn connect(url: &SecretUrl, name: &str) -> Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(url.expose(), properties)
        .await
        .map_err(|error| {
            Error::new(
                ErrorKind::Retryable,
                format!("cannot connect to RabbitMQ at {url}: {error}"),
            )
        })
}
