//! Prometheus metrics: what the core counts, how big the store is, and the process's memory,
//! read at scrape time and written as OpenMetrics text (prometheus-client).
//!
//! Counters carry `_total`; latencies are histograms in seconds; everything is prefixed
//! `fibergun_`, except `process_resident_memory_bytes`, Prometheus's standard name.

use fibergun::{RemoteState, LATENCY_BOUNDS};
use fibergun_drive::PeerSnapshot;
use fibergun_lmdb::StoreStats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The process's memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessMemory {
    /// Resident memory now, in bytes.
    pub resident_bytes: u64,
    /// The most it has been, in bytes.
    pub peak_resident_bytes: u64,
}

impl ProcessMemory {
    /// Reads `/proc/self/status` (Linux); zeros elsewhere.
    pub fn read() -> ProcessMemory {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
                .map_or(0, |k| k * 1024)
        };
        ProcessMemory {
            resident_bytes: kib("VmRSS:"),
            peak_resident_bytes: kib("VmHWM:"),
        }
    }
}

/// Everything one scrape reports.
#[derive(Debug)]
struct Scrape {
    peer: PeerSnapshot,
    store: StoreFigures,
    memory: ProcessMemory,
}

/// What the store reports, by backend.
#[derive(Debug, Default)]
pub struct StoreFigures {
    /// An LMDB store's size (or the S3 store's replica's).
    pub size: Option<StoreStats>,
    /// The S3 store's uploads and snapshots.
    pub s3: Option<fibergun_s3::S3Figures>,
    /// The PostgreSQL store's batches, size and change feed.
    pub postgres: Option<fibergun_postgres::PgFigures>,
}

/// A latency histogram as prometheus-client encodes one.
#[derive(Debug)]
struct Latency<'a>(&'a fibergun::LatencyHistogram);

impl EncodeMetric for Latency<'_> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.0.buckets.iter().copied())
            .collect();
        encoder.encode_histogram::<NoLabelSet>(self.0.sum_seconds(), self.0.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn state_name(state: RemoteState) -> &'static str {
    match state {
        RemoteState::Open(_) | RemoteState::Covered(_) => "connected",
        RemoteState::Dialing => "dialing",
        RemoteState::Waiting(_) => "waiting",
        RemoteState::Stopped => "stopped",
    }
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.peer.stats;
        counter(
            &mut e,
            "gets_received",
            "GET messages received",
            s.gets_received,
        )?;
        counter(
            &mut e,
            "gets_answered",
            "GETs answered (found or not)",
            s.gets_answered,
        )?;
        counter(
            &mut e,
            "puts_received",
            "Put messages received",
            s.puts_received,
        )?;
        counter(
            &mut e,
            "puts_acked",
            "Puts acknowledged once durable",
            s.puts_acked,
        )?;
        counter(
            &mut e,
            "puts_refused",
            "Puts refused or failed",
            s.puts_refused,
        )?;
        {
            let metric = ConstCounter::new(0u64);
            let mut family = e.encode_descriptor(
                "errors",
                "Error replies, by kind",
                None,
                metric.metric_type(),
            )?;
            for (kind, count) in s.errors.by_kind() {
                let labels = [("kind", kind)];
                ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
            }
        }
        {
            let metric = ConstCounter::new(0u64);
            let mut family = e.encode_descriptor(
                "refusals",
                "Requests refused, by the rule that refused them",
                None,
                metric.metric_type(),
            )?;
            for (rule, count) in s.refusals.by_rule() {
                let labels = [("rule", rule.name())];
                ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
            }
        }
        let put_latency = Latency(&s.put_latency);
        put_latency.encode(e.encode_descriptor(
            "put_ack_seconds",
            "From a put's arrival to its acknowledgement",
            None,
            put_latency.metric_type(),
        )?)?;
        let get_latency = Latency(&s.get_latency);
        get_latency.encode(e.encode_descriptor(
            "get_answer_seconds",
            "From a GET's arrival to its first answer",
            None,
            get_latency.metric_type(),
        )?)?;
        let store_batches = Latency(&self.peer.store_batches);
        store_batches.encode(e.encode_descriptor(
            "store_batch_seconds",
            "Storage batches, from the store taking one to its results: reads, writes and, on a durable store, the commit and its flush",
            None,
            store_batches.metric_type(),
        )?)?;
        counter(
            &mut e,
            "messages_received",
            "Messages received",
            s.messages_in,
        )?;
        counter(
            &mut e,
            "received_bytes",
            "Bytes of frames received",
            s.bytes_in,
        )?;
        counter(&mut e, "frames_sent", "Frames sent", s.frames_out)?;
        counter(&mut e, "sent_bytes", "Bytes of frames sent", s.bytes_out)?;
        counter(
            &mut e,
            "dedup_hits",
            "Messages dropped as already seen",
            s.duplicates,
        )?;
        counter(
            &mut e,
            "fields_pushed",
            "Fields pushed to subscribers",
            s.fields_pushed,
        )?;
        let p = &self.peer;
        gauge(
            &mut e,
            "connections",
            "Open connections",
            p.connections as i64,
        )?;
        gauge(&mut e, "links", "Open relay links", p.links as i64)?;
        {
            let metric = ConstGauge::new(0i64);
            let mut family = e.encode_descriptor(
                "configured_peers",
                "Configured peers, by state",
                None,
                metric.metric_type(),
            )?;
            for state in ["connected", "dialing", "waiting", "stopped"] {
                let n = p
                    .remotes
                    .iter()
                    .filter(|r| state_name(r.state) == state)
                    .count();
                let labels = [("state", state)];
                ConstGauge::new(n as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        if !p.upstreams.is_empty() {
            let metric = ConstGauge::new(0i64);
            let mut family = e.encode_descriptor(
                "upstream_connected",
                "Whether each upstream is connected (1) or not (0)",
                None,
                metric.metric_type(),
            )?;
            for up in &p.upstreams {
                let labels = [("upstream", up.url.as_str())];
                ConstGauge::new(i64::from(up.connected)).encode(family.encode_family(&labels)?)?;
            }
            let mut family = e.encode_descriptor(
                "upstream_waiting_writes",
                "Local writes an upstream has not acknowledged yet (kept in the outbox)",
                None,
                metric.metric_type(),
            )?;
            for up in &p.upstreams {
                let Some(waiting) = up.waiting else {
                    continue; // not known yet: the outbox is being read
                };
                let labels = [("upstream", up.url.as_str())];
                ConstGauge::new(waiting as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        gauge(
            &mut e,
            "subscribed_souls",
            "Souls some connection is subscribed to",
            p.subscribed_souls as i64,
        )?;
        gauge(
            &mut e,
            "pending_store_ops",
            "Storage operations not yet done",
            p.pending_store_ops as i64,
        )?;
        gauge(
            &mut e,
            "puts_verifying",
            "Puts waiting for signature checks",
            p.puts_verifying as i64,
        )?;
        gauge(
            &mut e,
            "held_frames",
            "Frames held while storage is behind",
            p.held_frames as i64,
        )?;
        if let Some(store) = &self.store.size {
            gauge(&mut e, "stored_nodes", "Nodes stored", store.nodes as i64)?;
            gauge(
                &mut e,
                "stored_fields",
                "Fields stored",
                store.fields as i64,
            )?;
            gauge(
                &mut e,
                "store_used_bytes",
                "Bytes of the store's map in use",
                store.used_bytes as i64,
            )?;
            gauge(
                &mut e,
                "store_map_bytes",
                "The most the store may grow to, in bytes",
                store.map_bytes as i64,
            )?;
        }
        if let Some(s3) = &self.store.s3 {
            encode_s3(&mut e, s3)?;
        }
        if let Some(pg) = &self.store.postgres {
            encode_postgres(&mut e, pg)?;
        }
        gauge(
            &mut e,
            "peak_resident_memory_bytes",
            "The most resident memory the process has used",
            self.memory.peak_resident_bytes as i64,
        )?;
        Ok(())
    }
}

/// The S3 store's uploads and snapshots.
fn encode_s3(
    e: &mut DescriptorEncoder,
    s3: &fibergun_s3::S3Figures,
) -> Result<(), std::fmt::Error> {
    let uploads = Latency(&s3.uploads);
    uploads.encode(e.encode_descriptor(
        "s3_batch_upload_seconds",
        "Confirmed uploads of write batches to S3, retries included",
        None,
        uploads.metric_type(),
    )?)?;
    counter(
        e,
        "s3_batch_upload_failures",
        "Batch uploads that failed (their writes were refused)",
        s3.upload_failures,
    )?;
    counter(
        e,
        "s3_uploaded_bytes",
        "Bytes of confirmed batch uploads",
        s3.uploaded_bytes,
    )?;
    gauge(
        e,
        "s3_last_batch",
        "The last batch S3 confirmed",
        s3.last_batch as i64,
    )?;
    counter(e, "s3_snapshots", "Snapshots written to S3", s3.snapshots)?;
    counter(
        e,
        "s3_snapshot_failures",
        "Snapshots that failed",
        s3.snapshot_failures,
    )?;
    gauge(
        e,
        "s3_last_snapshot_bytes",
        "Size of the last snapshot",
        s3.last_snapshot_bytes as i64,
    )?;
    gauge(
        e,
        "s3_last_snapshot_batch",
        "The batch the last snapshot holds everything up to",
        s3.last_snapshot_batch as i64,
    )
}

/// The PostgreSQL store's batches, table and change feed.
fn encode_postgres(
    e: &mut DescriptorEncoder,
    pg: &fibergun_postgres::PgFigures,
) -> Result<(), std::fmt::Error> {
    counter(
        e,
        "postgres_batches",
        "Write batches committed to PostgreSQL",
        pg.batches,
    )?;
    counter(
        e,
        "postgres_batch_failures",
        "Batches that failed (the database unreachable, a failover, the quota)",
        pg.batches_failed,
    )?;
    gauge(
        e,
        "postgres_table_bytes",
        "Size of fibergun_fields with its index and TOAST, as last measured (with a quota)",
        pg.table_bytes as i64,
    )?;
    gauge(
        e,
        "postgres_feed_connected",
        "Whether the change feed from the other relays is listening (1) or not (0)",
        i64::from(pg.feed_connected),
    )?;
    counter(
        e,
        "postgres_feed_changes",
        "Nodes other relays changed that the change feed passed on",
        pg.feed_changes,
    )?;
    counter(
        e,
        "postgres_feed_gaps",
        "Times the change feed listened again after losing its connection",
        pg.feed_gaps,
    )
}

/// Process metrics under Prometheus's standard names (no `fibergun_` prefix).
#[derive(Debug)]
struct Process(ProcessMemory);

impl Collector for Process {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        gauge(
            &mut e,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            self.0.resident_bytes as i64,
        )
    }
}

/// The OpenMetrics text for one scrape.
pub fn render(peer: PeerSnapshot, store: StoreFigures) -> String {
    let memory = ProcessMemory::read();
    let mut registry = Registry::default();
    registry
        .sub_registry_with_prefix("fibergun")
        .register_collector(Box::new(Scrape {
            peer,
            store,
            memory,
        }));
    registry.register_collector(Box::new(Process(memory)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of [`to_prometheus_text`]'s text.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a scraper's `Accept` header asks for OpenMetrics (Prometheus does); others (curl,
/// promtool, older scrapers) get Prometheus's classic text format.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// OpenMetrics text turned into Prometheus's classic text format (0.0.4): a counter's `HELP`
/// and `TYPE` name its samples' `_total` name, and there is no `# EOF` or `# UNIT`.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{prefix}{name}{suffix} {tail}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The JSON answer to `/health`: live (the process answers) and ready (the core answered, the
/// store is readable, and it is not shutting down). Returns it and whether it is ready.
pub fn health_json(
    peer: Option<&PeerSnapshot>,
    store: &Result<Option<StoreStats>, String>,
) -> (bool, String) {
    let core = peer.is_some_and(|p| !p.shutting_down);
    let ready = core && store.is_ok();
    let store_text = match store {
        Ok(_) => "ok".to_owned(),
        Err(e) => e.clone(),
    };
    let body = serde_json::json!({
        "status": if ready { "ok" } else { "unavailable" },
        "live": true,
        "ready": ready,
        "core": if core { "ok" } else { "not answering" },
        "store": store_text,
        "connections": peer.map_or(0, |p| p.connections),
    });
    (ready, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3_figures() -> fibergun_s3::S3Figures {
        let mut s3 = fibergun_s3::S3Figures {
            upload_failures: 1,
            last_batch: 42,
            snapshots: 2,
            ..Default::default()
        };
        s3.uploads.observe(std::time::Duration::from_millis(4));
        s3
    }

    #[test]
    fn a_scrape_names_every_metric_once_with_help_and_type() {
        let mut peer = PeerSnapshot::default();
        peer.stats.puts_acked = 3;
        peer.stats.errors.unauthorized = 2;
        peer.stats.refusals.count(fibergun::Rule::Rate);
        peer.stats
            .put_latency
            .observe(std::time::Duration::from_millis(3));
        peer.store_batches
            .observe(std::time::Duration::from_micros(700));
        let text = render(
            peer,
            StoreFigures {
                size: Some(StoreStats {
                    nodes: 5,
                    fields: 9,
                    used_bytes: 4096,
                    map_bytes: 1 << 20,
                }),
                s3: Some(s3_figures()),
                postgres: Some(fibergun_postgres::PgFigures {
                    batches: 7,
                    feed_connected: true,
                    ..Default::default()
                }),
            },
        );
        assert!(text.contains("fibergun_puts_acked_total 3"), "{text}");
        assert!(
            text.contains("fibergun_refusals_total{rule=\"rate\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("fibergun_refusals_total{rule=\"signed_only\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("fibergun_errors_total{kind=\"unauthorized\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("fibergun_put_ack_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(text.contains("fibergun_put_ack_seconds_count 1"), "{text}");
        assert!(
            text.contains("fibergun_store_batch_seconds_bucket{le=\"0.0005\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("fibergun_store_batch_seconds_bucket{le=\"0.001\"} 1"),
            "{text}"
        );
        assert!(text.contains("fibergun_stored_nodes 5"), "{text}");
        assert!(
            text.contains("fibergun_s3_batch_upload_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("fibergun_s3_batch_upload_failures_total 1"),
            "{text}"
        );
        assert!(text.contains("fibergun_s3_last_batch 42"), "{text}");
        assert!(text.contains("fibergun_s3_snapshots_total 2"), "{text}");
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.trim_end().ends_with("# EOF"));
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types, helps);
        let classic = to_prometheus_text(&text);
        assert!(classic.contains("# TYPE fibergun_puts_acked_total counter\n"));
        assert!(classic.contains("# HELP fibergun_puts_acked_total Puts acknowledged"));
        assert!(classic.contains("# TYPE fibergun_put_ack_seconds histogram\n"));
        assert!(!classic.contains("# EOF"));
    }
}
