//! `hindsight query "SELECT …"`: one read-only SQL statement over the archive,
//! printed as a table for people or streamed as JSON, NDJSON, CSV, Parquet or
//! Arrow IPC for tools. Same engine, limits and errors as `POST /api/v1/sql`.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use futures::StreamExt;
use hindsight_query::format::{Encoder, OutputFormat};
use hindsight_query::QueryEngine;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

pub async fn run(
    config: &Config,
    sql: &str,
    format: &str,
    print_stats: bool,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let format: OutputFormat = format.parse()?;
    let sql = if sql == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("cannot read the SQL statement from standard input")?;
        text
    } else {
        sql.to_owned()
    };
    let sql = sql.as_str();
    let (store, catalog) = crate::open::open_archive(config).await?;
    let schemas = crate::schemas::open(config, &catalog).await?;
    let engine = QueryEngine::with_schemas(
        store,
        catalog.clone(),
        config.query.limits(),
        Arc::clone(&schemas),
    )
    .context("cannot start the query engine")?;
    let started = Instant::now();
    let output = engine.sql(sql).await?;
    let stats = output.stats;
    let schema = output.schema.clone();
    let mut stream = output.stream;
    let mut encoder = Encoder::new(format, &schema)?;
    let stdout = std::io::stdout();
    let mut rows = 0usize;
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = cancel.cancelled() => bail!("query interrupted"),
        };
        let Some(batch) = next else { break };
        let batch = batch.map_err(hindsight_query::Error::from)?;
        rows += batch.num_rows();
        let bytes = encoder.batch(&batch)?;
        write_all(&stdout, &bytes)?;
    }
    write_all(&stdout, &encoder.finish(&schema)?)?;
    if print_stats {
        let total: i64 = catalog
            .topic_stats()
            .await?
            .iter()
            .map(|topic| topic.segments)
            .sum();
        eprintln!(
            "segments: {} scanned of {} in the archive ({} matched in the catalog, {:.1} MiB); \
             {rows} row{} in {:.0} ms",
            stats.segments_scanned,
            total,
            stats.segments_from_catalog,
            stats.bytes_scanned as f64 / 1_048_576.0,
            if rows == 1 { "" } else { "s" },
            started.elapsed().as_secs_f64() * 1000.0,
        );
    }
    catalog.close().await;
    Ok(())
}

fn write_all(stdout: &std::io::Stdout, bytes: &[u8]) -> anyhow::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let mut lock = stdout.lock();
    match lock.write_all(bytes).and_then(|()| lock.flush()) {
        Ok(()) => Ok(()),
        // `hindsight query … | head` closes the pipe early: not an error.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(error) => Err(error).context("cannot write the result to stdout"),
    }
}
