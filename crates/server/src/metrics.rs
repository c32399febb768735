//! Prometheus counters and latency histograms, rendered by hand in the text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    pub messages_received: AtomicU64,
    pub messages_deduplicated: AtomicU64,
    pub messages_processed: AtomicU64,
    pub requests_rejected: AtomicU64,
    pub signatures_rejected: AtomicU64,
    pub replies_queued: AtomicU64,
    pub replies_sent: AtomicU64,
    pub replies_failed: AtomicU64,
    pub replies_retried: AtomicU64,
    /// Sign-ins refused before any password check: throttled, or every check slot busy.
    pub logins_refused: AtomicU64,
    /// Argon2 password checks running now, and how many may run at once.
    pub password_checks_in_flight: AtomicU64,
    pub password_checks_max: AtomicU64,
    latencies: Mutex<BTreeMap<(String, String), Histogram>>,
    /// Webhook events answered 2xx but set aside, by (platform, reason).
    webhook_dropped: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Webhook events kept unread in the journal, by platform.
    webhook_unread: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    /// Counts one webhook event set aside for `reason`.
    pub fn webhook_dropped(&self, platform: &'static str, reason: &'static str) {
        let mut map = self
            .webhook_dropped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *map.entry((platform, reason)).or_default() += 1;
    }

    /// Counts one webhook event kept unread in the journal.
    pub fn webhook_unread(&self, platform: &'static str) {
        let mut map = self
            .webhook_unread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *map.entry(platform).or_default() += 1;
    }

    pub fn observe_request(&self, route: &str, method: &str, took: Duration) {
        let secs = took.as_secs_f64();
        let mut map = match self.latencies.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let h = map
            .entry((route.to_string(), method.to_string()))
            .or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// The Prometheus text exposition, with the backlogs read at scrape time.
    pub fn render(&self, journal_backlog: i64, outbox_backlog: i64) -> String {
        let mut out = String::with_capacity(4096);
        let counters: [(&str, &str, &AtomicU64); 10] = [
            (
                "balie_messages_received_total",
                "Inbound events accepted into the journal.",
                &self.messages_received,
            ),
            (
                "balie_messages_deduplicated_total",
                "Inbound events dropped as duplicates of journalled ones.",
                &self.messages_deduplicated,
            ),
            (
                "balie_messages_processed_total",
                "Journal entries turned into messages by the pipeline.",
                &self.messages_processed,
            ),
            (
                "balie_requests_rejected_total",
                "Requests refused for bad input or missing credentials.",
                &self.requests_rejected,
            ),
            (
                "balie_webhook_signature_rejected_total",
                "Webhook deliveries with a missing or forged signature.",
                &self.signatures_rejected,
            ),
            (
                "balie_replies_queued_total",
                "Replies a person decided to send, queued in the outbox.",
                &self.replies_queued,
            ),
            (
                "balie_replies_sent_total",
                "Replies the platform accepted.",
                &self.replies_sent,
            ),
            (
                "balie_replies_failed_total",
                "Replies the platform refused for good.",
                &self.replies_failed,
            ),
            (
                "balie_replies_retried_total",
                "Delivery attempts that will be retried.",
                &self.replies_retried,
            ),
            (
                "balie_logins_refused_total",
                "Sign-ins refused before a password check (throttled or busy).",
                &self.logins_refused,
            ),
        ];
        for (name, help, value) in counters {
            write_single(&mut out, name, help, "counter", value);
        }
        let _ = writeln!(
            out,
            "# HELP balie_journal_backlog Journal entries not yet processed.\n# TYPE balie_journal_backlog gauge\nbalie_journal_backlog {journal_backlog}"
        );
        let _ = writeln!(
            out,
            "# HELP balie_outbox_backlog Replies waiting for delivery.\n# TYPE balie_outbox_backlog gauge\nbalie_outbox_backlog {outbox_backlog}"
        );
        let name = "balie_webhook_events_dropped_total";
        let _ = writeln!(
            out,
            "# HELP {name} Webhook events answered 2xx and set aside (receipts, reactions, the brand's own activity, ...), by platform and reason.\n# TYPE {name} counter"
        );
        let dropped = self
            .webhook_dropped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for ((platform, reason), n) in dropped.iter() {
            let _ = writeln!(
                out,
                "{name}{{platform=\"{platform}\",reason=\"{reason}\"}} {n}"
            );
        }
        drop(dropped);
        let name = "balie_webhook_events_unread_total";
        let _ = writeln!(
            out,
            "# HELP {name} Webhook events Balie could not read, kept in the journal for a later version, by platform.\n# TYPE {name} counter"
        );
        let unread = self
            .webhook_unread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (platform, n) in unread.iter() {
            let _ = writeln!(out, "{name}{{platform=\"{platform}\"}} {n}");
        }
        drop(unread);
        let gauges: [(&str, &str, &AtomicU64); 2] = [
            (
                "balie_password_checks_in_flight",
                "Argon2 password checks running now.",
                &self.password_checks_in_flight,
            ),
            (
                "balie_password_checks_max",
                "Argon2 password checks allowed at once.",
                &self.password_checks_max,
            ),
        ];
        for (name, help, value) in gauges {
            write_single(&mut out, name, help, "gauge", value);
        }
        let name = "balie_http_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} HTTP request latency.\n# TYPE {name} histogram"
        );
        let map = match self.latencies.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        for ((route, method), h) in map.iter() {
            let labels = format!(
                "route=\"{}\",method=\"{}\"",
                escape_label(route),
                escape_label(method)
            );
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{{labels},le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
        }
        out
    }
}

/// One metric without labels, with its help and type lines.
fn write_single(out: &mut String, name: &str, help: &str, kind: &str, value: &AtomicU64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
        value.load(Ordering::Relaxed)
    );
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_counters_backlogs_and_histograms() {
        let m = Metrics::default();
        Metrics::inc(&m.messages_received, 3);
        m.observe_request("/api/v1/messages", "POST", Duration::from_millis(3));
        m.webhook_dropped("meta", "receipt");
        m.webhook_dropped("meta", "receipt");
        m.webhook_unread("telegram");
        let text = m.render(7, 2);
        assert!(text.contains(
            "balie_webhook_events_dropped_total{platform=\"meta\",reason=\"receipt\"} 2"
        ));
        assert!(text.contains("balie_webhook_events_unread_total{platform=\"telegram\"} 1"));
        assert!(text.contains("balie_messages_received_total 3"));
        assert!(text.contains("balie_journal_backlog 7"));
        assert!(text.contains("balie_outbox_backlog 2"));
        assert!(text.contains(
            "balie_http_request_duration_seconds_bucket{route=\"/api/v1/messages\",method=\"POST\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "balie_http_request_duration_seconds_bucket{route=\"/api/v1/messages\",method=\"POST\",le=\"0.0025\"} 0"
        ));
    }
}
