//! `GET /metrics`: request counters and latency histograms, and the engine's gauges.
//!
//! Each [`AppState`](crate::AppState) has its own [`prometheus::Registry`] (no global
//! recorder), so several routers can live in one process, as they do in the tests. Request
//! metrics are labelled by the matched route template (`/v1/dimensions/{dim}/keys/{*key}`),
//! never the raw path, so keys cannot blow up the number of series. Engine gauges are read
//! from `Store::stats()` at scrape time.

use std::time::Duration;

use axum::http::StatusCode;
use prometheus::{
    Encoder as _, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// The content type of the Prometheus text exposition format.
pub(crate) const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The registry and the metrics in it.
pub(crate) struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    dim_keys: GaugeVec,
    dim_live_bytes: GaugeVec,
    dim_disk_bytes: GaugeVec,
    dim_layers: GaugeVec,
    compactions: IntCounter,
    syncs: IntCounter,
    recovery_seconds: Gauge,
    read_only: IntGauge,
    uptime_seconds: Gauge,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        // The definitions below are constants; failing to build them is a bug caught by tests.
        Metrics::build().expect("metric definitions are valid and unique")
    }

    fn build() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("jessy_http_requests_total", "HTTP requests answered, by method, route and status"),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "jessy_http_request_duration_seconds",
                "Time to answer (to the response head), by method, route and status",
            )
            .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["method", "route", "status"],
        )?;
        let dim = |name: &str, help: &str| GaugeVec::new(Opts::new(name, help), &["dimension", "dir"]);
        let dim_keys = dim("jessy_dimension_keys", "Live keys in the dimension")?;
        let dim_live_bytes = dim(
            "jessy_dimension_live_bytes",
            "Bytes of the newest entry of every live key in the dimension (entry headers, keys and values)",
        )?;
        let dim_disk_bytes = dim("jessy_dimension_disk_bytes", "Bytes the dimension's files take on disk")?;
        let dim_layers =
            dim("jessy_dimension_layers", "Log files of the dimension: its sealed layers plus the active region")?;
        let compactions = IntCounter::new("jessy_compactions_total", "Compactions run since the store was opened")?;
        let syncs = IntCounter::new("jessy_syncs_total", "Syncs to disk since the store was opened")?;
        let recovery_seconds =
            Gauge::new("jessy_recovery_time_seconds", "Time the last open spent recovering the store")?;
        let read_only = IntGauge::new("jessy_store_read_only", "1 when the store refuses writes after a failed sync")?;
        let uptime_seconds = Gauge::new("jessy_uptime_seconds", "Seconds since this server started")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        for g in [&dim_keys, &dim_live_bytes, &dim_disk_bytes, &dim_layers] {
            registry.register(Box::new(g.clone()))?;
        }
        registry.register(Box::new(compactions.clone()))?;
        registry.register(Box::new(syncs.clone()))?;
        registry.register(Box::new(recovery_seconds.clone()))?;
        registry.register(Box::new(read_only.clone()))?;
        registry.register(Box::new(uptime_seconds.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            latency,
            dim_keys,
            dim_live_bytes,
            dim_disk_bytes,
            dim_layers,
            compactions,
            syncs,
            recovery_seconds,
            read_only,
            uptime_seconds,
        })
    }

    /// Counts one answered request.
    pub(crate) fn observe_request(&self, method: &str, route: &str, status: StatusCode, elapsed: Duration) {
        // `as_str` is the code's digits without an allocation per request.
        let labels = [method, route, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.latency.with_label_values(&labels).observe(elapsed.as_secs_f64());
    }

    /// Copies the engine's numbers into the gauges and renders everything as text.
    pub(crate) fn render(
        &self,
        stats: &jessy_storage::StoreStats,
        uptime: Duration,
    ) -> Result<String, prometheus::Error> {
        // Reset first so a dropped dimension's series disappear.
        for g in [&self.dim_keys, &self.dim_live_bytes, &self.dim_disk_bytes, &self.dim_layers] {
            g.reset();
        }
        for d in &stats.dimensions {
            let labels = [d.name.as_str(), d.dir.as_str()];
            self.dim_keys.with_label_values(&labels).set(d.keys as f64);
            self.dim_live_bytes.with_label_values(&labels).set(d.live_bytes as f64);
            self.dim_disk_bytes.with_label_values(&labels).set(d.disk_bytes as f64);
            self.dim_layers.with_label_values(&labels).set(d.layers as f64);
        }
        // The engine keeps totals; counters only go up, so add what is new since last scrape.
        self.compactions.inc_by(stats.compactions.saturating_sub(self.compactions.get()));
        self.syncs.inc_by(stats.syncs.saturating_sub(self.syncs.get()));
        self.recovery_seconds.set(stats.recovery_time.as_secs_f64());
        self.read_only.set(i64::from(stats.read_only.is_some()));
        self.uptime_seconds.set(uptime.as_secs_f64());

        let mut out = Vec::new();
        prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_and_engine_gauges() {
        let m = Metrics::new();
        m.observe_request("GET", "/health", StatusCode::OK, Duration::from_millis(3));
        let stats = jessy_storage::StoreStats {
            dimensions: vec![],
            syncs: 7,
            compactions: 2,
            recovery_time: Duration::from_millis(1500),
            read_only: None,
        };
        let text = m.render(&stats, Duration::from_secs(1)).unwrap();
        assert!(text.contains(r#"jessy_http_requests_total{method="GET",route="/health",status="200"} 1"#), "{text}");
        assert!(text.contains("jessy_syncs_total 7"), "{text}");
        assert!(text.contains("jessy_compactions_total 2"), "{text}");
        assert!(text.contains("jessy_recovery_time_seconds 1.5"), "{text}");
        // A second scrape with the same totals must not double them.
        let text = m.render(&stats, Duration::from_secs(2)).unwrap();
        assert!(text.contains("jessy_syncs_total 7"), "{text}");
    }
}
