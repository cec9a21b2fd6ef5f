//! The retention janitor: a task that compresses the logs of builds as they finish
//! and, at start and then every `[retention] interval`, deletes the logs and builds
//! past their horizons. All its store work runs on blocking threads in small
//! batches, each its own short transaction, so builds never wait on it for long;
//! what fails is logged, counted and tried again on the next round.

use crate::config::Retention;
use crate::events::{Event, Events};
use crate::metrics::metrics;
use crate::store::{now, Store, StoreResult, Swept};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Builds a batch takes: a few milliseconds of the write lock at most.
pub const BATCH: i64 = 20;

#[derive(Debug)]
pub struct Janitor {
    store: Store,
    retention: Retention,
    events: Events,
}

impl Janitor {
    pub fn new(store: &Store, retention: Retention, events: &Events) -> Janitor {
        Janitor {
            store: store.clone(),
            retention,
            events: events.clone(),
        }
    }

    /// Runs until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut finished = self.events.subscribe();
        let mut tick = tokio::time::interval(self.retention.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let sweep = tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => true,
                event = finished.recv() => match event {
                    Ok(Event::BuildFinished { .. }) | Err(RecvError::Lagged(_)) => false,
                    Ok(_) => continue,
                    // The master is going away.
                    Err(RecvError::Closed) => return,
                },
            };
            // One round serves every build that finished meanwhile.
            while matches!(finished.try_recv(), Ok(_) | Err(TryRecvError::Lagged(_))) {}
            if self.retention.compress_logs {
                self.compress(&stop).await;
            }
            if sweep {
                self.expire(&stop).await;
            }
        }
    }

    /// Compresses the logs of every finished build not yet compressed. One that
    /// fails is passed over until the next round, so it holds up no other.
    async fn compress(&self, stop: &CancellationToken) {
        let mut after = 0;
        loop {
            let batch = self
                .store
                .off_thread(move |st| st.builds_to_pack(after, BATCH))
                .await;
            let batch = match batch {
                Ok(ids) if ids.is_empty() => return,
                Ok(ids) => ids,
                Err(e) => return self.failed("compress", &e),
            };
            for id in batch {
                if stop.is_cancelled() {
                    return;
                }
                after = id;
                match self.store.off_thread(move |st| st.pack_logs(id)).await {
                    Ok(p) => {
                        metrics().retention.packed(&p);
                        tracing::debug!(
                            build = id,
                            raw = p.raw,
                            stored = p.stored,
                            "logs compressed"
                        );
                    }
                    Err(e) => self.failed("compress", &e),
                }
            }
        }
    }

    /// Deletes the logs and the builds past their horizons, a batch at a time.
    async fn expire(&self, stop: &CancellationToken) {
        let t = now();
        let mut total = Swept::default();
        if let Some(h) = self.retention.builds {
            let before = t - h.as_secs_f64();
            self.batches(stop, &mut total, move |st| st.delete_builds(before, BATCH))
                .await;
        }
        if let Some(h) = self.retention.logs {
            let before = t - h.as_secs_f64();
            self.batches(stop, &mut total, move |st| st.expire_logs(before, BATCH))
                .await;
        }
        if total != Swept::default() {
            info!(
                builds = total.builds,
                requests = total.requests,
                logs = total.logs,
                bytes = total.bytes,
                "retention: expired builds and logs deleted"
            );
        }
    }

    async fn batches<F>(&self, stop: &CancellationToken, total: &mut Swept, batch: F)
    where
        F: Fn(&Store) -> StoreResult<Swept> + Clone + Send + 'static,
    {
        while !stop.is_cancelled() {
            let one = batch.clone();
            match self.store.off_thread(move |st| one(st)).await {
                Ok(s) if s == Swept::default() => return,
                Ok(s) => {
                    metrics().retention.swept(&s);
                    total.logs += s.logs;
                    total.builds += s.builds;
                    total.requests += s.requests;
                    total.bytes += s.bytes;
                }
                Err(e) => return self.failed("expire", &e),
            }
        }
    }

    fn failed(&self, task: &str, e: &crate::store::StoreError) {
        metrics().retention.failed(task);
        warn!("retention ({task}): {e}; tried again later");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BuildResult;
    use crate::store::{Channel, LogWriter};

    #[tokio::test]
    async fn a_build_that_cannot_be_compressed_holds_up_no_other() {
        let dir =
            std::env::temp_dir().join(format!("pbmaster-janitor-{}-{}", std::process::id(), now()));
        let store = Store::open(&dir).expect("store");
        // Large enough to be compressed.
        let output = b"output\n".repeat(1000);
        let mut ids = Vec::new();
        for _ in 0..3 {
            let request = store
                .add_request("b1", "test", &serde_json::json!({}))
                .expect("request");
            let b = store.start_build(request, "b1", "w1").unwrap().started();
            LogWriter::new(&store, b.id, 1)
                .append("stdio", Channel::Stdout, &output)
                .expect("write");
            store
                .finish_build(b.id, &[], BuildResult::Success, None)
                .expect("finish");
            ids.push(b.id);
        }
        // The first build's log cannot be read: a folder where its file should be.
        let plain = |id: i64| dir.join("logs/0").join(format!("{id}.log"));
        std::fs::remove_file(plain(ids[0])).expect("remove");
        std::fs::create_dir(plain(ids[0])).expect("folder");
        let janitor = Janitor::new(&store, Retention::default(), &Events::default());
        janitor.compress(&CancellationToken::new()).await;
        assert_eq!(store.builds_to_pack(0, 10).expect("left"), [ids[0]]);
        for &id in &ids[1..] {
            assert!(!plain(id).exists());
            let log = store.log_chunks(id, 1, "stdio", 0).expect("read");
            assert_eq!(log[0].data, output);
        }
        std::fs::remove_dir_all(dir).ok();
    }
}
