//! `hindsight token create|list|revoke` and `hindsight audit`.
//!
//! Token changes made here are audited like those made over HTTP, under the
//! principal `cli:` and the user name.

use anyhow::Context;
use clap::Subcommand;
use hindsight_archive::access::{new_token, token_hash, Principal, Role, Scope};
use hindsight_archive::audit::{AuditQuery, AuditRecord};
use hindsight_archive::catalog::Catalog;
use hindsight_archive::event::rfc3339;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make an API token and print it (the only time it is shown; the
    /// catalog keeps its hash).
    Create {
        /// The token's name, as the audit trail and `token list` show it.
        name: String,
        /// viewer, analyst, operator or admin.
        #[arg(long)]
        role: String,
        /// Sources it may see (names or patterns like `shop-*`); all when none.
        #[arg(long = "source")]
        sources: Vec<String>,
        /// Topics it may see (names or patterns like `orders.*`); all when none.
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// Store nothing: print the token and the `[[http.tokens]]` entry
        /// (its hash) to put in the configuration file.
        #[arg(long)]
        config_only: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every token: configuration and catalog, revoked ones too (never the tokens).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a catalog token: the next request with it is refused.
    Revoke { name: String },
}

pub async fn token(config: &Config, command: TokenCommand) -> anyhow::Result<()> {
    if let TokenCommand::Create {
        name,
        role,
        sources,
        topics,
        config_only: true,
        json,
    } = &command
    {
        let role = Role::parse(role)?;
        let token = new_token();
        let entry = format!(
            "[[http.tokens]]\nname = {name:?}\nhash = \"blake3:{}\"\nrole = \"{role}\"\nsources = {sources:?}\ntopics = {topics:?}\n",
            token_hash(&token)
        );
        if *json {
            println!(
                "{}",
                serde_json::json!({"name": name, "role": role, "token": token, "config": entry})
            );
        } else {
            println!("token (shown once): {token}\n\nadd to the configuration:\n\n{entry}");
        }
        return Ok(());
    }
    let (_store, catalog) = crate::open::open_archive(config).await?;
    let me = Principal::command_line();
    match command {
        TokenCommand::Create {
            name,
            role,
            sources,
            topics,
            json,
            ..
        } => {
            let role = Role::parse(&role)?;
            let scope = Scope { sources, topics };
            if let Some(problem) = scope.problems().into_iter().next() {
                anyhow::bail!("{problem}");
            }
            if config.http.config_tokens().iter().any(|t| t.name == name) {
                anyhow::bail!("the configuration defines a token named {name:?}");
            }
            let created = catalog.create_token(&name, role, &scope, &me.name).await;
            let mut record = AuditRecord::new(&me, "token.create");
            record.detail = Some(format!(
                "token {name:?} role {role} scope {}",
                scope.describe()
            ));
            record.status = i32::from(created.is_err());
            write_audit(&catalog, record).await?;
            let token = created?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"name": name, "role": role, "scope": scope, "token": token})
                );
            } else {
                println!(
                    "token {name:?} ({role}, {}): {token}\nit is shown this once; only its hash is stored",
                    scope.describe()
                );
            }
        }
        TokenCommand::List { json } => {
            let mut rows: Vec<serde_json::Value> = config
                .http
                .config_tokens()
                .into_iter()
                .map(|token| {
                    serde_json::json!({"name": token.name, "role": token.role, "scope": token.scope, "defined_in": "config"})
                })
                .collect();
            for token in catalog.tokens().await? {
                rows.push(serde_json::json!({
                    "name": token.name, "role": token.role, "scope": token.scope, "defined_in": "catalog",
                    "created_at": rfc3339(token.created_at), "created_by": token.created_by,
                    "revoked_at": token.revoked_at.and_then(rfc3339),
                }));
            }
            for row in &rows {
                if json {
                    println!("{row}");
                } else {
                    let scope: Scope =
                        serde_json::from_value(row["scope"].clone()).unwrap_or_default();
                    println!(
                        "{:<24} {:<9} {:<8} {:<30} {}",
                        row["name"].as_str().unwrap_or_default(),
                        row["role"].as_str().unwrap_or_default(),
                        row["defined_in"].as_str().unwrap_or_default(),
                        scope.describe(),
                        row["revoked_at"]
                            .as_str()
                            .map(|at| format!("revoked {at}"))
                            .unwrap_or_default()
                    );
                }
            }
            if rows.is_empty() && !json {
                println!("no tokens: `hindsight serve` answers anyone on loopback (http.listen)");
            }
        }
        TokenCommand::Revoke { name } => {
            let revoked = catalog.revoke_token(&name, &me.name).await;
            let mut record = AuditRecord::new(&me, "token.revoke");
            record.detail = Some(format!("token {name:?}"));
            record.status = i32::from(revoked.is_err());
            write_audit(&catalog, record).await?;
            revoked?;
            println!("token {name:?} is revoked");
        }
    }
    Ok(())
}

/// A command's audit record, written before the command reports success.
pub async fn write_audit(catalog: &Catalog, record: AuditRecord) -> anyhow::Result<()> {
    catalog
        .insert_audit(&[record])
        .await
        .context("cannot write the audit record")
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only records at or after this: RFC 3339, or a duration back from now (`24h`).
    #[arg(long, value_parser = crate::verify::parse_since)]
    since: Option<i64>,
    /// Only this principal's records (a token's name, `cli:USER`, `anonymous`).
    #[arg(long)]
    principal: Option<String>,
    /// Only this action (`sql`, `events.search`, `replay.start`, `token.create`, ...).
    #[arg(long)]
    action: Option<String>,
    /// At most this many records (oldest first).
    #[arg(long, default_value_t = 1000)]
    limit: i64,
    /// One JSON object per line, for export.
    #[arg(long)]
    json: bool,
}

pub async fn audit(config: &Config, args: AuditArgs) -> anyhow::Result<()> {
    let (_store, catalog) = crate::open::open_archive(config).await?;
    let records = catalog
        .audit(&AuditQuery {
            since: args.since,
            until: None,
            principal: args.principal,
            action: args.action,
            limit: Some(args.limit.max(1)),
        })
        .await?;
    for record in &records {
        if args.json {
            let mut value = serde_json::to_value(record)?;
            value["at"] = serde_json::json!(rfc3339(record.at));
            println!("{value}");
        } else {
            println!(
                "{} {:<20} {:<8} {:<15} {:<18} {:>3} {:>8}  {}",
                rfc3339(record.at).unwrap_or_default(),
                record.principal,
                record.role,
                record.address.as_deref().unwrap_or("-"),
                record.action,
                record.status,
                record
                    .count
                    .map_or_else(|| "-".to_owned(), |count| count.to_string()),
                record
                    .detail
                    .as_deref()
                    .unwrap_or_default()
                    .chars()
                    .take(120)
                    .collect::<String>()
            );
        }
    }
    Ok(())
}

/// Records a command (`hindsight replay run …`) after it ran: its
/// arguments, with the password of any URL and the value of any secret
/// option replaced by `***`. A catalog that cannot be reached is logged.
pub async fn audit_command(config: &Config, action: &str, succeeded: bool) {
    let mut record = AuditRecord::new(&Principal::command_line(), action);
    record.detail = Some(redacted_arguments(std::env::args().skip(1)));
    record.status = i32::from(!succeeded);
    let written = async {
        let (_store, catalog) = crate::open::open_archive(config).await?;
        write_audit(&catalog, record).await
    }
    .await;
    if let Err(error) = written {
        tracing::error!(%action, error = format!("{error:#}"), "the command's audit record was not written");
    }
}

fn redacted_arguments(arguments: impl Iterator<Item = String>) -> String {
    let secret_flag = |argument: &str| {
        let name = argument.trim_start_matches('-').to_ascii_lowercase();
        ["password", "secret", "token", "key"]
            .iter()
            .any(|word| name.contains(word))
    };
    let mut out = Vec::new();
    let mut hide_next = false;
    for argument in arguments {
        if hide_next {
            out.push("***".to_owned());
            hide_next = false;
            continue;
        }
        if argument.starts_with("--") && secret_flag(&argument) && !argument.contains('=') {
            hide_next = true;
            out.push(argument);
            continue;
        }
        if let Some((flag, _)) = argument
            .split_once('=')
            .filter(|(flag, _)| flag.starts_with("--") && secret_flag(flag))
        {
            out.push(format!("{flag}=***"));
            continue;
        }
        let shown = match url::Url::parse(&argument) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("***"));
                url.to_string()
            }
            _ => argument,
        };
        out.push(shown);
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_arguments_are_hidden() {
        let shown = redacted_arguments(
            [
                "replay",
                "run",
                "--amqp-url",
                "amqp://user:hunter2@host/vh",
                "--sasl-password",
                "hunter2",
                "--token=hunter2",
                "--topic",
                "orders",
            ]
            .into_iter()
            .map(str::to_owned),
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("--topic orders"), "{shown}");
    }
}
