//! `hindsight check-config`: the configuration as resolved (defaults, file,
//! environment), as JSON. Secrets print as `[redacted]`; the configuration
//! was validated before this runs.

use crate::config::Config;

pub fn run(config: &Config) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(config)?);
    Ok(())
}
