//! The list pages: build requests, workers, latent pools and instances, changes.

use super::layout::{json, page, result, time};
use super::{html, viewer, PageResult};
use crate::api::{ApiState, Caller};
use crate::master::Msg;
use axum::extract::State;
use axum::Extension;
use maud::html;
use serde_json::Value;

/// Rows per list.
const LIMIT: i64 = 200;

/// Why a request for `builder` waits, from its workers' states and its pools'.
fn why_waiting(
    config: &crate::config::Config,
    builder: &str,
    attached: &[&str],
    pools: &[Value],
) -> String {
    let Some(b) = config.builders.iter().find(|b| b.name == builder) else {
        return "its builder is no longer configured".into();
    };
    let mut why = Vec::new();
    for p in pools
        .iter()
        .filter(|p| b.workers.iter().any(|w| p["name"] == **w))
    {
        let name = p["name"].as_str().unwrap_or_default();
        if let Some(q) = p["quarantined_for"].as_f64() {
            why.push(format!("pool {name} quarantined for {q} s"));
        } else if p["live"].as_u64() >= p["max_instances"].as_u64() {
            why.push(format!("pool {name} at its cap of {}", p["max_instances"]));
        } else if let Some(phases) = p["phases"].as_object().filter(|m| !m.is_empty()) {
            let list: Vec<String> = phases.iter().map(|(k, v)| format!("{v} {k}")).collect();
            why.push(format!("pool {name}: instances {}", list.join(", ")));
        } else {
            why.push(format!("pool {name}: no instance yet"));
        }
    }
    let own: Vec<&String> = b
        .workers
        .iter()
        .filter(|w| !pools.iter().any(|p| p["name"] == ***w))
        .collect();
    if !own.is_empty() {
        match own.iter().any(|w| attached.contains(&w.as_str())) {
            true => why.push("its workers are busy".into()),
            false => why.push("none of its workers is attached".into()),
        }
    }
    why.join("; ")
}

pub async fn requests(State(s): State<ApiState>, caller: Option<Extension<Caller>>) -> PageResult {
    let (rows, workers) = s
        .store
        .read(|st| {
            let mut rows = Vec::new();
            for r in st.requests(LIMIT)? {
                let builds = st.builds_of_request(r.id)?;
                rows.push((r, builds));
            }
            Ok((rows, st.workers()?))
        })
        .await?;
    let attached: Vec<&str> = workers
        .iter()
        .filter(|w| w.state == crate::model::WorkerState::Attached)
        .map(|w| w.name.as_str())
        .collect();
    let pools = crate::api::ask_master(&s, |reply| Msg::Pools { reply })
        .await
        .unwrap_or_default();
    let body = html! {
        section data-refresh="requests" data-watch="build_started build_finished request_queued worker_attached worker_detached instance" {
            table {
                thead { tr { th { "Request" } th { "Builder" } th { "Submitted" } th { "State" } th { "Builds" } th { "Reason" } th { "Properties" } } }
                tbody {
                    @for (r, builds) in &rows {
                        tr {
                            td { (r.id) }
                            td { a href=(format!("/builders/{}", super::urlencode(&r.builder))) { (r.builder) } }
                            td { (time(Some(r.submitted_at))) }
                            td {
                                @if r.complete { (result(r.result, true)) }
                                @else if builds.iter().any(|b| b.finished_at.is_none()) { (result(None, false)) }
                                @else {
                                    span.result.waiting { "waiting" }
                                    " " span.why { (why_waiting(&s.config.get(), &r.builder, &attached, pools.as_array().map(Vec::as_slice).unwrap_or_default())) }
                                }
                            }
                            td { @for b in builds { a href=(format!("/builds/{}", b.id)) { "#" (b.number) } " " } }
                            td { (r.reason) }
                            td { (json(&r.properties)) }
                        }
                    }
                }
            }
            @if let Some(pools) = pools.as_array().filter(|p| !p.is_empty()) {
                h2 { "Latent pools" }
                (pool_table(pools))
            }
        }
    };
    html(page("Build requests", viewer(caller), true, body))
}

pub async fn workers(State(s): State<ApiState>, caller: Option<Extension<Caller>>) -> PageResult {
    let known = s
        .store
        .read(|st| {
            let workers = st.workers()?;
            let recent = st.builds(None, 500)?;
            Ok((workers, recent))
        })
        .await?;
    let (workers, recent) = known;
    let body = html! {
        section data-refresh="workers" data-watch="worker_attached worker_detached build_started build_finished" {
            table {
                thead { tr { th { "Worker" } th { "State" } th { "Version" } th { "Connected" } th { "Peer" } th { "Builds" } } }
                tbody {
                    @for w in &s.config.get().workers {
                        @let row = workers.iter().find(|r| r.name == w.name);
                        tr {
                            td { (w.name) }
                            td { @match row { Some(r) => span class=(format!("state {}", r.state)) { (r.state.to_string()) }, None => "never connected" } }
                            td { (row.and_then(|r| r.version.clone()).unwrap_or_default()) }
                            td { (time(row.and_then(|r| r.connected_at))) }
                            td { (row.and_then(|r| r.peer.clone()).unwrap_or_default()) }
                            td {
                                @for b in recent.iter().filter(|b| b.worker == w.name).take(5) {
                                    a.build href=(format!("/builds/{}", b.id)) { (result(b.result, b.finished_at.is_some())) " " (b.builder) " #" (b.number) }
                                    " "
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    html(page("Workers", viewer(caller), true, body))
}

fn pool_table(pools: &[Value]) -> maud::Markup {
    html! {
        table {
            thead { tr { th { "Pool" } th { "Driver" } th { "Live" } th { "Phases" } th { "Waiting" } th { "Failures in a row" } th { "Quarantined for" } th { "Last failure" } } }
            tbody {
                @for p in pools {
                    tr {
                        td { (p["name"].as_str().unwrap_or_default()) }
                        td { (p["driver"].as_str().unwrap_or_default()) }
                        td { (p["live"]) " / " (p["max_instances"]) }
                        td { (json(&p["phases"])) }
                        td { (p["waiting"]) }
                        td { (p["failures_in_a_row"]) }
                        td { @if let Some(q) = p["quarantined_for"].as_f64() { (q) " s" } }
                        td { @if !p["last_failure"].is_null() { (json(&p["last_failure"])) } }
                    }
                }
            }
        }
    }
}

/// An instance's time to ready, builds run with the seconds they used of its time,
/// and (with a price) its cost and the cost per build, idle time shared.
fn accounting_cells(a: &Value) -> maud::Markup {
    let seconds = |v: &Value| v.as_f64().map(|s| format!("{s:.1} s"));
    let money = |v: &Value| v.as_f64().map(|c| format!("{c:.4}"));
    html! {
        td { @if let Some(t) = seconds(&a["time_to_ready"]) { (t) } }
        td {
            (a["builds_run"].as_u64().unwrap_or(0))
            @if let (Some(busy), Some(all)) = (seconds(&a["busy_seconds"]), seconds(&a["instance_seconds"])) {
                " (busy " (busy) " of " (all) ")"
            }
        }
        td {
            @if let Some(cost) = money(&a["cost"]) {
                (cost)
                @if let Some(per) = money(&a["cost_per_build"]) { " (" (per) " per build)" }
            }
        }
    }
}

pub async fn latent(State(s): State<ApiState>, caller: Option<Extension<Caller>>) -> PageResult {
    let pools = crate::api::ask_master(&s, |reply| Msg::Pools { reply })
        .await
        .unwrap_or_default();
    let instances = s.store.read(|st| st.instances(LIMIT)).await?;
    // Shown through their JSON form, as the API serves them.
    let instances: Vec<Value> = instances
        .iter()
        .filter_map(|i| serde_json::to_value(i).ok())
        .collect();
    let body = html! {
        section data-refresh="latent" data-watch="instance" {
            h2 { "Pools" }
            (pool_table(pools.as_array().map(Vec::as_slice).unwrap_or_default()))
            h2 { "Instances" }
            table {
                thead { tr { th { "Instance" } th { "Pool" } th { "Phase" } th { "Since" } th { "Cloud id" } th { "Time to ready" } th { "Builds" } th { "Cost" } th { "Failure" } th { "Transitions" } } }
                tbody {
                    @for i in &instances {
                        tr {
                            td { (i["name"].as_str().unwrap_or_default()) }
                            td { (i["pool"].as_str().unwrap_or_default()) }
                            td { span class=(format!("phase {}", i["phase"].as_str().unwrap_or_default())) { (i["phase"].as_str().unwrap_or_default()) } }
                            td { (time(i["since"].as_f64())) }
                            td { (i["cloud_id"].as_str().unwrap_or_default()) }
                            (accounting_cells(&i["accounting"]))
                            td {
                                @if let Some(why) = i["failure_reason"].as_str() {
                                    span.result.failure { (i["failure_phase"].as_str().unwrap_or_default()) } " " (why)
                                }
                            }
                            td {
                                ol.timeline {
                                    @for t in i["transitions"].as_array().into_iter().flatten() {
                                        li { (t[0].as_str().unwrap_or_default()) " " (time(t[1].as_f64())) @if let Some(d) = t[2].as_str() { " " (d) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    html(page("Latent pools", viewer(caller), true, body))
}

pub async fn changes(State(s): State<ApiState>, caller: Option<Extension<Caller>>) -> PageResult {
    let rows = s
        .store
        .read(|st| {
            let mut rows = Vec::new();
            for c in st.changes(LIMIT)? {
                let requests = st.requests_of_change(c.id)?;
                let mut builds = Vec::new();
                for r in &requests {
                    builds.extend(st.builds_of_request(*r)?);
                }
                rows.push((c, builds));
            }
            Ok(rows)
        })
        .await?;
    let body = html! {
        section data-refresh="changes" data-watch="request_queued build_started build_finished" {
            table {
                thead { tr { th { "Change" } th { "Received" } th { "Author" } th { "Branch" } th { "Revision" } th { "Comments" } th { "Files" } th { "Builds" } } }
                tbody {
                    @for (c, builds) in &rows {
                        tr {
                            td { (c.id) }
                            td { (time(Some(c.received_at))) }
                            td { (c.change.author) }
                            td { (c.change.branch.as_deref().unwrap_or("")) }
                            td { code { (c.change.revision.as_deref().unwrap_or("")) } }
                            td { (c.change.comments) }
                            td { (c.change.files.len()) }
                            td { @for b in builds { a.build href=(format!("/builds/{}", b.id)) { (result(b.result, b.finished_at.is_some())) " " (b.builder) " #" (b.number) } " " } }
                        }
                    }
                }
            }
        }
    };
    html(page("Changes", viewer(caller), true, body))
}
