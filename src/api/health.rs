//! Probes for load balancers and orchestrators, open to anyone (they reveal only
//! whether the master serves), and `/metrics`, a read like any other.

use super::{ask, ApiState};
use crate::master::Msg;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::atomic::{AtomicBool, Ordering};

/// What `/readyz` knows beside the store: set by whoever starts the listeners and
/// asks the master to drain.
#[derive(Debug, Default)]
pub struct Health {
    pb_listening: AtomicBool,
    draining: AtomicBool,
}

impl Health {
    pub fn set_pb_listening(&self, up: bool) {
        self.pb_listening.store(up, Ordering::Relaxed);
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

/// The process serves HTTP.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// 200 when the store takes writes, the PB listener accepts and the master is not
/// draining; else 503 with every reason, one a line.
pub async fn readyz(State(s): State<ApiState>) -> Response {
    let mut why = Vec::new();
    if s.health.draining.load(Ordering::Relaxed) {
        why.push("draining: the master is stopping".to_owned());
    }
    if !s.health.pb_listening.load(Ordering::Relaxed) {
        why.push("the PB listener is not accepting".to_owned());
    }
    let store = s.store.clone();
    match tokio::task::spawn_blocking(move || store.check_writable()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!("readyz: the store is not writable: {e}");
            why.push("the store is not writable".to_owned());
        }
        Err(_) => why.push("the store check failed".to_owned()),
    }
    match why.is_empty() {
        true => (StatusCode::OK, "ready\n").into_response(),
        false => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready\n{}\n", why.join("\n")),
        )
            .into_response(),
    }
}

/// The Prometheus text exposition; attached workers and latent pools are read now.
pub async fn metrics(State(s): State<ApiState>) -> Response {
    let attached = s
        .store
        .read(|st| st.workers())
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|w| w.state == crate::model::WorkerState::Attached)
        .map(|w| w.version)
        .collect::<Vec<_>>();
    let pools = ask(&s, |reply| Msg::Pools { reply })
        .await
        .unwrap_or_default();
    let text = crate::metrics::metrics().encode(&attached, &pools);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
