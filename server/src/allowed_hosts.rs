//! Which `Host` header values the HTTP server answers, against DNS
//! rebinding: a page on `attacker.example` whose name the attacker then
//! points at 127.0.0.1 reaches the server as same-origin, but its requests
//! still say `Host: attacker.example`, so they are refused.
//!
//! Accepted, ports ignored:
//! - every name in `http.allowed_hosts` (`"*"` accepts any host);
//! - the listen address itself, as an IP literal;
//! - bound to a loopback address: `localhost` and the loopback literals
//!   (`127.0.0.1`, `[::1]`, …);
//! - bound to every address (`0.0.0.0`, `[::]`): `localhost` and any IP
//!   literal (the server listens on all of them, and a literal cannot be
//!   rebound); any other name (the machine's DNS name, a proxy's) must be
//!   listed in `http.allowed_hosts`.
//!
//! The port is not compared: rebinding depends on the name only, and port
//! mappings (containers, `ssh -L 9000:localhost:7878`) change the port the
//! browser sends.

use std::net::IpAddr;

/// The accepted hosts; see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    /// Configured names, normalised by [`host_name`].
    configured: Vec<String>,
    /// `"*"` was configured: every host is accepted.
    any: bool,
    /// The address the server is bound to; unknown means loopback rules.
    listen: Option<IpAddr>,
}

impl AllowedHosts {
    /// From `http.allowed_hosts`; entries [`check_allowed_host`] refuses are
    /// ignored (the configuration is validated before it gets here).
    pub fn new(configured: &[String]) -> Self {
        AllowedHosts {
            any: configured.iter().any(|entry| entry.trim() == "*"),
            configured: configured
                .iter()
                .filter_map(|entry| host_name(entry.trim()))
                .collect(),
            listen: None,
        }
    }

    /// The same list, for a server bound to `address`.
    pub fn listening_on(self, address: IpAddr) -> Self {
        AllowedHosts {
            listen: Some(address),
            ..self
        }
    }

    /// Whether a `Host` header (or request-target authority) is accepted.
    pub fn allows(&self, host: &str) -> bool {
        if self.any {
            return true;
        }
        let Some(name) = host_name(host) else {
            return false;
        };
        if self.configured.contains(&name) {
            return true;
        }
        let listen = self.listen.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        match name.parse::<IpAddr>() {
            Ok(literal) => {
                literal == listen
                    || listen.is_unspecified()
                    || (listen.is_loopback() && literal.is_loopback())
            }
            Err(_) => name == "localhost" && (listen.is_loopback() || listen.is_unspecified()),
        }
    }
}

/// The host name of an authority (`name`, `name:port`, `[v6]:port`, `v6`),
/// lowercase, without the port, the brackets or a trailing dot; `None` when
/// it is not one.
pub fn host_name(authority: &str) -> Option<String> {
    let (name, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (inside, rest) = bracketed.split_once(']')?;
        inside.parse::<std::net::Ipv6Addr>().ok()?;
        match rest {
            "" => (inside, None),
            _ => (inside, Some(rest.strip_prefix(':')?)),
        }
    } else if authority.parse::<std::net::Ipv6Addr>().is_ok() {
        (authority, None)
    } else {
        match authority.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (authority, None),
        }
    };
    if port.is_some_and(|port| port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'));
    valid.then(|| name.to_ascii_lowercase())
}

/// Why an `http.allowed_hosts` entry is refused, if it is.
pub fn check_allowed_host(entry: &str) -> Result<(), String> {
    let entry = entry.trim();
    if entry == "*" {
        return Ok(());
    }
    if host_name(entry).is_none() {
        return Err(format!(
            "{entry:?} is not a host name like hindsight.example.com (no scheme or path)"
        ));
    }
    let has_port = if entry.starts_with('[') {
        !entry.ends_with(']')
    } else {
        entry.contains(':') && entry.parse::<std::net::Ipv6Addr>().is_err()
    };
    if has_port {
        return Err(format!(
            "{entry:?} has a port: list the name alone, the port is not compared"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(configured: &[&str], listen: &str) -> AllowedHosts {
        let configured: Vec<String> = configured.iter().map(|s| (*s).to_owned()).collect();
        AllowedHosts::new(&configured).listening_on(listen.parse().unwrap())
    }

    #[test]
    fn bound_to_loopback_only_loopback_names_and_configured_names_are_accepted() {
        let allowed = hosts(&["Hindsight.Example.com"], "127.0.0.1");
        for host in [
            "localhost:7878",
            "LOCALHOST",
            "localhost.:7878",
            "127.0.0.1:7878",
            "127.0.0.1",
            "127.0.0.2:9000",
            "[::1]:7878",
            "[::1]",
            "hindsight.example.com",
            "hindsight.example.com:443",
        ] {
            assert!(allowed.allows(host), "{host} should be accepted");
        }
        for host in [
            "attacker.example",
            "attacker.example:7878",
            "localhost.attacker.example",
            "127.0.0.1.nip.io:7878",
            "192.168.1.5:7878",
            "0.0.0.0:7878",
            "",
            ":7878",
            "localhost:port",
            "[::1",
            "[nope]:1",
            "local host",
            "user@localhost",
        ] {
            assert!(!allowed.allows(host), "{host:?} should be refused");
        }
    }

    #[test]
    fn bound_to_every_address_ip_literals_and_localhost_are_accepted_but_names_need_the_list() {
        let allowed = hosts(&[], "0.0.0.0");
        for host in [
            "192.168.1.5:7878",
            "10.0.0.7",
            "[fe80::1]:7878",
            "localhost",
        ] {
            assert!(allowed.allows(host), "{host} should be accepted");
        }
        for host in ["my-laptop.lan:7878", "attacker.example"] {
            assert!(!allowed.allows(host), "{host} should be refused");
        }
        assert!(hosts(&["my-laptop.lan"], "::").allows("my-laptop.lan:7878"));
    }

    #[test]
    fn bound_to_one_address_only_that_literal_is_accepted() {
        let allowed = hosts(&[], "192.168.1.5");
        assert!(allowed.allows("192.168.1.5:7878"));
        for host in ["localhost:7878", "127.0.0.1:7878", "192.168.1.6:7878"] {
            assert!(!allowed.allows(host), "{host} should be refused");
        }
    }

    #[test]
    fn a_star_accepts_every_host() {
        assert!(hosts(&["*"], "127.0.0.1").allows("attacker.example"));
    }

    #[test]
    fn allowed_host_entries_are_names_without_port_or_scheme() {
        for entry in ["hindsight.example.com", "10.0.0.7", "::1", "[::1]", "*"] {
            assert_eq!(check_allowed_host(entry), Ok(()), "{entry}");
        }
        for entry in [
            "hindsight.example.com:8080",
            "[::1]:8080",
            "https://hindsight.example.com",
            "hindsight.example.com/ui",
            "",
        ] {
            assert!(
                check_allowed_host(entry).is_err(),
                "{entry} should be refused"
            );
        }
    }
}
