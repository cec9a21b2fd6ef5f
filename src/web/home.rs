//! The home page: each builder with its last builds, the queue, attached workers and
//! latent pools at a glance.

use super::layout::{page, result, time};
use super::{html, viewer, PageResult};
use crate::api::{ApiState, Caller};
use crate::master::Msg;
use crate::model::WorkerState;
use axum::extract::State;
use axum::Extension;
use maud::html;

/// Builds shown per builder.
const LAST: i64 = 5;

pub async fn home(State(s): State<ApiState>, caller: Option<Extension<Caller>>) -> PageResult {
    let names: Vec<String> = s
        .config
        .get()
        .builders
        .iter()
        .map(|b| b.name.clone())
        .collect();
    let (recent, queued, workers) = s
        .store
        .read(move |st| {
            let mut recent = Vec::new();
            for name in names {
                recent.push((name.clone(), st.builds(Some(&name), LAST)?));
            }
            Ok((recent, st.queued_requests()?, st.workers()?))
        })
        .await?;
    let pools = crate::api::ask_master(&s, |reply| Msg::Pools { reply })
        .await
        .unwrap_or_default();
    let attached: Vec<_> = workers
        .iter()
        .filter(|w| w.state == WorkerState::Attached)
        .collect();
    let body = html! {
        section data-refresh="builders" data-watch="build_started build_finished request_queued worker_attached worker_detached instance" {
            table {
                thead { tr { th { "Builder" } th { "Last builds" } th { "Queued" } } }
                tbody {
                    @for (name, builds) in &recent {
                        tr {
                            td { a href=(format!("/builders/{}", super::urlencode(name))) { (name) } }
                            td {
                                @for b in builds {
                                    a.build href=(format!("/builds/{}", b.id)) title=(format!("#{}", b.number)) {
                                        (result(b.result, b.finished_at.is_some()))
                                        " #" (b.number)
                                    }
                                    " "
                                }
                            }
                            td { (queued.iter().filter(|r| &r.builder == name).count()) }
                        }
                    }
                }
            }
            p {
                a href="/buildrequests" { (queued.len()) " request(s) queued" }
                " · "
                a href="/workers" { (attached.len()) " worker(s) attached (" (s.config.get().workers.len()) " configured)" }
            }
            @if let Some(pools) = pools.as_array().filter(|p| !p.is_empty()) {
                h2 { "Latent pools" }
                table {
                    thead { tr { th { "Pool" } th { "Live" } th { "Waiting" } th { "Phases" } } }
                    tbody {
                        @for p in pools {
                            tr {
                                td { a href="/latent" { (p["name"].as_str().unwrap_or_default()) } }
                                td { (p["live"]) " / " (p["max_instances"]) }
                                td { (p["waiting"]) }
                                td { (super::layout::json(&p["phases"])) }
                            }
                        }
                    }
                }
            }
            p.small { "Now: " (time(Some(crate::store::now()))) }
        }
    };
    html(page("Builders", viewer(caller), true, body))
}
