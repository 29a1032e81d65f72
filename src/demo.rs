//! `hindsight demo`: the main job on the embedded default. Generates an order
//! flow, pushes it through the same batch -> segment -> commit path as the
//! real ingesters, prints what it did, then serves the API and UI.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Context;
use hindsight_archive::recovery::recover_abandoned;
use hindsight_archive::writer::ArchiveWriter;
use hindsight_ingest::run_pipeline;
use hindsight_ingest::source::demo::{DemoConfig, DemoSource};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

pub struct DemoOptions {
    pub events: u64,
    pub seed: u64,
    pub serve: bool,
}

pub async fn run(
    config: &Config,
    options: DemoOptions,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let (store, catalog) = crate::open::open_archive(config).await?;
    let (lease, renewal) = crate::open::take_writer_lease(&catalog).await?;
    let source_name = "demo";
    let recovered = recover_abandoned(
        &store,
        &catalog,
        Some(source_name),
        config.catalog.pending_grace,
    )
    .await
    .context("cannot clean up after an earlier crash")?;
    if recovered > 0 {
        println!("removed {recovered} segment(s) left pending by an earlier crash");
    }
    let next_offsets: HashMap<(String, i32), i64> = catalog
        .checkpoints(source_name)
        .await?
        .into_iter()
        .map(|c| ((c.topic, c.partition), c.next_position))
        .collect();
    let mut source = DemoSource::new(
        DemoConfig {
            source: source_name.to_owned(),
            events: options.events,
            seed: options.seed,
            ..DemoConfig::default()
        },
        next_offsets,
    );
    let writer = ArchiveWriter::new(store.clone(), catalog.clone(), config.segment_format())
        .with_lease(lease.clone());
    println!(
        "archiving {} demo events (orders, payments, shipments) into {}",
        options.events,
        config.storage_url()
    );
    let started = Instant::now();
    let summary = run_pipeline(&mut source, &writer, config.flush.policy(), cancel.clone())
        .await
        .context("demo archive failed")?;
    crate::open::release_writer_lease(&lease, renewal).await;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "archived {} events in {} segments ({:.1} MiB of Parquet) in {:.2} s, {:.0} events/s",
        summary.events,
        summary.segments,
        summary.bytes as f64 / 1_048_576.0,
        elapsed,
        summary.events as f64 / elapsed.max(1e-9),
    );
    let stats = catalog.topic_stats().await?;
    let total: i64 = stats.iter().map(|s| s.events).sum();
    println!("archive now holds {total} events:");
    for topic in &stats {
        println!(
            "  {}/{}: {} events, {} segments, {:.1} MiB",
            topic.source,
            topic.topic,
            topic.events,
            topic.segments,
            topic.bytes as f64 / 1_048_576.0
        );
    }
    println!("catalog: {}", config.catalog_url());
    if let Some(root) = store.local_root() {
        println!(
            "try: duckdb -c \"SELECT topic, count(*) FROM read_parquet('{}/**/*.parquet', hive_partitioning=true) GROUP BY topic\"",
            root.join(hindsight_archive::layout::SEGMENTS_ROOT).display()
        );
    }
    if !options.serve || cancel.is_cancelled() {
        catalog.close().await;
        return Ok(());
    }
    crate::serve::serve(config, store, catalog, cancel).await
}
