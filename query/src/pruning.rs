//! Pruning on catalog facts: which segments a scan's filters need at all.
//!
//! [`segment_filter`] turns equality on source, topic and partition, and
//! bounds on event_time, into the catalog's `SegmentFilter`. Then
//! [`prune_segments`] drops the listed segments that DataFusion's
//! `PruningPredicate` proves cannot match, judged from each segment's
//! catalog facts (offset range, time span, bus). Anything it cannot judge
//! is kept.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use hindsight_archive::catalog::{SegmentFilter, SegmentRecord};

/// The column a filter side names, looking through casts.
fn column_name(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Column(column) => Some(column.name.as_str()),
        Expr::Cast(cast) => column_name(&cast.expr),
        Expr::TryCast(cast) => column_name(&cast.expr),
        _ => None,
    }
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(value, _) => Some(value),
        _ => None,
    }
}

fn timestamp_micros(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::TimestampMicrosecond(Some(micros), _) => Some(*micros),
        ScalarValue::TimestampMillisecond(Some(millis), _) => millis.checked_mul(1000),
        ScalarValue::TimestampSecond(Some(seconds), _) => seconds.checked_mul(1_000_000),
        _ => None,
    }
}

/// The catalog narrowing that the conjuncts of `filters` allow: equality on
/// source, topic and partition, and bounds on event_time.
pub fn segment_filter(filters: &[Expr]) -> SegmentFilter {
    let mut filter = SegmentFilter::default();
    let conjuncts = filters.iter().flat_map(|expr| split_conjunction(expr));
    for conjunct in conjuncts {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = conjunct else {
            continue;
        };
        // Normalise to `column op literal`.
        let (name, op, value) = match (column_name(left), literal(right)) {
            (Some(name), Some(value)) => (name, *op, value),
            _ => match (literal(left), column_name(right), op.swap()) {
                (Some(value), Some(name), Some(swapped)) => (name, swapped, value),
                _ => continue,
            },
        };
        match (name, op) {
            ("source", Operator::Eq) => {
                if let ScalarValue::Utf8(Some(text)) | ScalarValue::Utf8View(Some(text)) = value {
                    filter.source = Some(text.clone());
                }
            }
            ("topic", Operator::Eq) => {
                if let ScalarValue::Utf8(Some(text)) | ScalarValue::Utf8View(Some(text)) = value {
                    filter.topic = Some(text.clone());
                }
            }
            ("partition", Operator::Eq) => {
                let number = match value {
                    ScalarValue::Int32(Some(number)) => Some(*number),
                    ScalarValue::Int64(Some(number)) => i32::try_from(*number).ok(),
                    _ => None,
                };
                if number.is_some() {
                    filter.partition = number;
                }
            }
            ("event_time", _) => {
                let Some(micros) = timestamp_micros(value) else {
                    continue;
                };
                // time_from: segments whose newest event is at or after it;
                // time_to: segments whose oldest event is before it.
                let (from, to) = match op {
                    Operator::GtEq => (Some(micros), None),
                    Operator::Gt => (micros.checked_add(1), None),
                    Operator::Lt => (None, Some(micros)),
                    Operator::LtEq => (None, micros.checked_add(1)),
                    Operator::Eq => (Some(micros), micros.checked_add(1)),
                    _ => (None, None),
                };
                if let Some(from) = from {
                    filter.time_from = Some(filter.time_from.map_or(from, |old| old.max(from)));
                }
                if let Some(to) = to {
                    filter.time_to = Some(filter.time_to.map_or(to, |old| old.min(to)));
                }
            }
            _ => {}
        }
    }
    filter
}

/// Which of `segments` can hold rows matching `filters`, judged from the
/// catalog's facts alone. Anything that cannot be judged is kept.
pub(crate) fn prune_segments(
    state: &dyn Session,
    schema: &SchemaRef,
    filters: &[Expr],
    segments: &[SegmentRecord],
    buses: Option<Vec<Option<String>>>,
) -> Vec<bool> {
    let keep_all = vec![true; segments.len()];
    let Some(predicate) = conjunction(filters.iter().cloned()) else {
        return keep_all;
    };
    let pruned = DFSchema::try_from(Arc::clone(schema))
        .and_then(|df_schema| state.create_physical_expr(predicate, &df_schema))
        .and_then(|physical| {
            PruningPredicateBuilder::new()
                .with_file_schema(Arc::clone(schema))
                .try_build(physical)
        })
        .and_then(|pruning| pruning.prune(&SegmentStatistics { segments, buses }));
    match pruned {
        Ok(keep) if keep.len() == segments.len() => keep,
        Ok(_) => keep_all,
        Err(error) => {
            tracing::debug!(%error, "cannot prune segments on catalog facts; scanning all candidates");
            keep_all
        }
    }
}

/// Segment facts from the catalog, as DataFusion pruning statistics: one
/// container per segment. Minimums and maximums cover the non-null values of
/// a column; null counts are unknown.
struct SegmentStatistics<'a> {
    segments: &'a [SegmentRecord],
    /// Each segment's bus (from its source), when a filter needs it.
    buses: Option<Vec<Option<String>>>,
}

/// Whether `expr` reads the column `name`.
pub(crate) fn mentions_column(expr: &Expr, name: &str) -> bool {
    expr.column_refs().iter().any(|column| column.name == name)
}

impl SegmentStatistics<'_> {
    fn bound(&self, column: &Column, low: bool) -> Option<ArrayRef> {
        let segments = self.segments.iter().map(|record| &record.segment);
        let array: ArrayRef = match column.name.as_str() {
            "source" => Arc::new(StringArray::from_iter_values(
                segments.map(|s| s.source.as_str()),
            )),
            "topic" => Arc::new(StringArray::from_iter_values(
                segments.map(|s| s.topic.as_str()),
            )),
            "bus" => Arc::new(StringArray::from(self.buses.clone()?)),
            "partition" => Arc::new(Int32Array::from_iter_values(segments.map(|s| s.partition))),
            "offset" => Arc::new(Int64Array::from_iter_values(segments.map(|s| {
                if low {
                    s.first_offset
                } else {
                    s.last_offset
                }
            }))),
            "event_time" => Arc::new(
                TimestampMicrosecondArray::from_iter_values(segments.map(|s| {
                    if low {
                        s.min_event_time
                    } else {
                        s.max_event_time
                    }
                }))
                .with_timezone("UTC"),
            ),
            _ => return None,
        };
        Some(array)
    }
}

impl PruningStatistics for SegmentStatistics<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.bound(column, true)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.bound(column, false)
    }

    fn num_containers(&self) -> usize {
        self.segments.len()
    }

    fn null_counts(&self, _column: &Column) -> Option<ArrayRef> {
        None
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        None
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    #[test]
    fn segment_filters_come_from_simple_conjuncts() {
        let micros = 1_700_000_000_000_000i64;
        let time = |value: i64| {
            lit(ScalarValue::TimestampMicrosecond(
                Some(value),
                Some("UTC".into()),
            ))
        };
        let filters = vec![
            col("source")
                .eq(lit("demo"))
                .and(lit("orders").eq(col("topic"))),
            col("partition").eq(lit(2i32)),
            col("event_time").gt_eq(time(micros)),
            col("event_time").lt(time(micros + 3_600_000_000)),
            col("offset").gt(lit(5i64)),
        ];
        let filter = segment_filter(&filters);
        assert_eq!(filter.source.as_deref(), Some("demo"));
        assert_eq!(filter.topic.as_deref(), Some("orders"));
        assert_eq!(filter.partition, Some(2));
        assert_eq!(filter.time_from, Some(micros));
        assert_eq!(filter.time_to, Some(micros + 3_600_000_000));

        // OR is not a conjunct: it narrows nothing here (pruning handles it).
        let filter = segment_filter(&[col("topic").eq(lit("a")).or(col("topic").eq(lit("b")))]);
        assert_eq!(filter, SegmentFilter::default());
        // `event_time <= t` keeps segments starting at t.
        let filter = segment_filter(&[time(micros).gt_eq(col("event_time"))]);
        assert_eq!(filter.time_to, Some(micros + 1));
    }
}
