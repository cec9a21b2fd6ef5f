//! What the retention janitor did: logs compressed (and the bytes before and after),
//! logs and builds deleted, and its failures.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Task {
    task: String,
}

#[derive(Debug)]
pub struct RetentionMetrics {
    packed: Counter,
    packed_raw: Counter,
    packed_stored: Counter,
    logs_expired: Counter,
    builds_deleted: Counter,
    requests_deleted: Counter,
    bytes_deleted: Counter,
    errors: Family<Task, Counter>,
}

impl RetentionMetrics {
    pub(super) fn new(r: &mut Registry) -> RetentionMetrics {
        let m = RetentionMetrics {
            packed: Counter::default(),
            packed_raw: Counter::default(),
            packed_stored: Counter::default(),
            logs_expired: Counter::default(),
            builds_deleted: Counter::default(),
            requests_deleted: Counter::default(),
            bytes_deleted: Counter::default(),
            errors: Family::default(),
        };
        let counters = [
            (
                "logs_compressed",
                "Finished builds whose logs were compressed",
                &m.packed,
            ),
            (
                "logs_compressed_raw_bytes",
                "Log bytes compressed, before",
                &m.packed_raw,
            ),
            (
                "logs_compressed_stored_bytes",
                "Log bytes compressed, after",
                &m.packed_stored,
            ),
            (
                "logs_expired",
                "Builds whose logs were deleted by the retention policy",
                &m.logs_expired,
            ),
            (
                "builds_expired",
                "Builds deleted by the retention policy",
                &m.builds_deleted,
            ),
            (
                "requests_expired",
                "Finished build requests deleted with their builds",
                &m.requests_deleted,
            ),
            (
                "log_file_bytes_expired",
                "Bytes of log files deleted by the retention policy",
                &m.bytes_deleted,
            ),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
        r.register(
            "retention_errors",
            "Retention work that failed (and is tried again later), by task: compress, expire",
            m.errors.clone(),
        );
        m
    }

    pub fn packed(&self, p: &crate::store::Packed) {
        self.packed.inc();
        self.packed_raw.inc_by(p.raw);
        self.packed_stored.inc_by(p.stored);
    }

    pub fn swept(&self, s: &crate::store::Swept) {
        self.logs_expired.inc_by(s.logs);
        self.builds_deleted.inc_by(s.builds);
        self.requests_deleted.inc_by(s.requests);
        self.bytes_deleted.inc_by(s.bytes);
    }

    pub fn failed(&self, task: &str) {
        self.errors
            .get_or_create(&Task {
                task: task.to_owned(),
            })
            .inc();
    }
}
