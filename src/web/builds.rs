//! A builder (its builds, a force form, its schedulers) and a build (steps, logs,
//! properties, changes, a stop button).

use super::layout::{data, duration, json, page, result, time};
use super::{html, not_found, urlencode, viewer, PageResult};
use crate::api::{ApiState, Caller};
use crate::config::Role;
use crate::store::{Keyset, StoreResult};
use axum::extract::{Path, Query, State};
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;

/// Where a page of builds starts (`before` or `after` a build id; neither: the
/// newest) and how many it shows.
#[derive(Debug, Deserialize)]
pub struct Paging {
    before: Option<i64>,
    after: Option<i64>,
    limit: Option<i64>,
}

/// Builds per page by default, and at most.
const PAGE: i64 = 50;
const MAX_PAGE: i64 = 200;

/// One page of builds, newest first, and whether older and newer ones exist.
struct BuildPage {
    rows: Vec<crate::store::BuildRow>,
    older: bool,
    newer: bool,
    limit: i64,
}

impl Paging {
    async fn read(&self, s: &ApiState, builder: Option<String>) -> StoreResult<BuildPage> {
        let limit = self.limit.unwrap_or(PAGE).clamp(1, MAX_PAGE);
        let at = match (self.before, self.after) {
            (Some(b), _) => Keyset::Before(b),
            (None, Some(a)) => Keyset::After(a),
            (None, None) => Keyset::Newest,
        };
        // One more than shown says whether the page has a next one that way.
        let mut rows = s
            .store
            .read(move |st| st.builds_page(builder.as_deref(), at, limit + 1))
            .await?;
        let beyond = rows.len() as i64 > limit;
        let (older, newer) = match at {
            Keyset::Newest => (beyond, false),
            Keyset::Before(_) => (beyond, true),
            Keyset::After(_) => {
                if beyond {
                    rows.remove(0);
                }
                (true, beyond)
            }
        };
        rows.truncate(limit as usize);
        Ok(BuildPage {
            rows,
            older,
            newer,
            limit,
        })
    }
}

/// A table of builds with links to the older and newer pages (`base`: the page's
/// path).
fn build_table(page: &BuildPage, base: &str, with_builder: bool) -> Markup {
    let link = |key: &str, id: i64| format!("{base}?{key}={id}&limit={}", page.limit);
    html! {
        table.builds {
            thead { tr {
                th { "#" }
                @if with_builder { th { "Builder" } }
                th { "Result" } th { "Worker" } th { "Started" } th { "Duration" } th { "Reason" }
            } }
            tbody {
                @for b in &page.rows {
                    tr {
                        td { a href=(format!("/builds/{}", b.id)) { "#" (b.number) } }
                        @if with_builder {
                            td { a href=(format!("/builders/{}", urlencode(&b.builder))) { (b.builder) } }
                        }
                        td { (result(b.result, b.finished_at.is_some())) }
                        td { (b.worker) }
                        td { (time(Some(b.started_at))) }
                        td { (duration(b.started_at, b.finished_at)) }
                        td { (b.reason.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
        p.pager {
            @if let (true, Some(first)) = (page.newer, page.rows.first()) {
                a.newer href=(link("after", first.id)) { "Newer builds" } " "
            }
            @if let (true, Some(last)) = (page.older, page.rows.last()) {
                a.older href=(link("before", last.id)) { "Older builds" }
            }
        }
    }
}

/// Every builder's builds, a page at a time.
pub async fn builds(
    State(s): State<ApiState>,
    Query(q): Query<Paging>,
    caller: Option<Extension<Caller>>,
) -> PageResult {
    let page_of = q.read(&s, None).await?;
    // Only the newest page changes as builds start and end.
    let live = q.before.is_none() && q.after.is_none();
    let body = html! {
        section data-refresh="builds" data-watch="build_started build_finished" { (build_table(&page_of, "/builds", true)) }
    };
    html(page("Builds", viewer(caller), live, body))
}

pub async fn builder(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<Paging>,
    caller: Option<Extension<Caller>>,
) -> PageResult {
    let who = viewer(caller);
    let current = s.config.get();
    let Some(config) = current.builders.iter().find(|b| b.name == name).cloned() else {
        return Err(not_found("such builder"));
    };
    let page_of = q.read(&s, Some(name.clone())).await?;
    let live = q.before.is_none() && q.after.is_none();
    let schedulers: Vec<_> = current
        .schedulers
        .iter()
        .filter(|sc| sc.builders.contains(&name))
        .collect();
    let base = format!("/builders/{}", urlencode(&name));
    let body = html! {
        p { "Workers: " @for w in &config.workers { code { (w) } " " } }
        p { "Steps: " @for st in &config.steps { code { (st.name) } " " } }
        @if !schedulers.is_empty() {
            p { "Schedulers: " @for sc in &schedulers { code { (sc.name) } " " } }
        }
        @if who.may(Role::Force) {
            form #force data-builder=(name) {
                h2 { "Force a build" }
                label { "Reason " input name="reason" value="forced from the web"; }
                label { "Properties (NAME=VALUE, one a line) " textarea name="properties" rows="3" {} }
                button type="submit" { "Force" }
                span.status {}
            }
        }
        section data-refresh="builds" data-watch="build_started build_finished" data-builder=(name) {
            h2 { "Builds" }
            (build_table(&page_of, &base, false))
        }
    };
    html(page(&format!("Builder {name}"), who, live, body))
}

struct StepView {
    step: crate::store::StepRow,
    logs: Vec<LogView>,
}

/// A log's name and its first page.
struct LogView {
    name: String,
    page: super::log::LogPage,
}

pub async fn build(
    State(s): State<ApiState>,
    Path(id): Path<i64>,
    caller: Option<Extension<Caller>>,
) -> PageResult {
    let who = viewer(caller);
    let found = s.store.read(move |st| load(st, id)).await?;
    let Some((build, steps, changes, asked)) = found else {
        return Err(not_found("such build"));
    };
    let running = build.finished_at.is_none();
    let body = html! {
        section data-refresh="summary" data-watch="step_started step_finished build_finished" data-build=(build.id) {
            table.summary {
                tr { th { "Builder" } td { a href=(format!("/builders/{}", urlencode(&build.builder))) { (build.builder) } " #" (build.number) } }
                tr { th { "Result" } td #build-result { (result(build.result, !running)) } }
                tr { th { "Worker" } td { (build.worker) } }
                tr { th { "Started" } td { (time(Some(build.started_at))) } }
                tr { th { "Duration" } td { (duration(build.started_at, build.finished_at)) } }
                tr { th { "Request" } td { a href="/buildrequests" { (build.request_id) } " " (asked.as_deref().unwrap_or("")) } }
                @if let Some(why) = &build.reason { tr { th { "Why it ended so" } td { (why) } } }
            }
            @if running && who.may(Role::Stop) {
                button #stop data-build=(build.id) { "Stop" }
            }
            h2 { "Steps" }
            table.steps {
                thead { tr { th { "#" } th { "Step" } th { "Result" } th { "rc" } th { "Duration" } th { "Why" } } }
                tbody {
                    @for v in &steps {
                        tr {
                            td { (v.step.number) }
                            td { (v.step.name) }
                            td { (result(v.step.result, v.step.finished_at.is_some())) }
                            td { @if let Some(rc) = v.step.rc { (rc) } }
                            td { (duration(v.step.started_at, v.step.finished_at)) }
                            td { (v.step.reason.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        section data-refresh="logs" data-watch="step_started build_finished" data-build=(build.id) {
            h2 { "Logs" }
            @for v in &steps {
                @for log in &v.logs {
                    (log_view(build.id, &v.step, log))
                }
            }
        }
        h2 { "Properties" }
        table.properties {
            thead { tr { th { "Name" } th { "Value" } th { "Source" } } }
            tbody {
                @for (name, pair) in build.properties.as_object().into_iter().flatten() {
                    tr {
                        td { (name) }
                        td { (json(&pair[0])) }
                        td { (pair[1].as_str().unwrap_or_default()) }
                    }
                }
            }
        }
        @if !changes.is_empty() {
            h2 { "Changes" }
            ul { @for c in &changes { li { a href="/changes" { "change " (c) } } } }
        }
        (data("build-data", &serde_json::json!({"id": build.id, "running": running})))
    };
    html(page(
        &format!("{} #{}", build.builder, build.number),
        who,
        running,
        body,
    ))
}

/// A build, its steps with their logs, its changes and its request's reason.
type Loaded = (
    crate::store::BuildRow,
    Vec<StepView>,
    Vec<i64>,
    Option<String>,
);

/// The build, each step with the head of each log, the changes behind it.
fn load(st: &crate::store::Store, id: i64) -> StoreResult<Option<Loaded>> {
    let Some(build) = st.build(id)? else {
        return Ok(None);
    };
    let mut steps = Vec::new();
    for step in st.steps(id)? {
        let mut logs = Vec::new();
        let mut names = st.log_names(id, step.number)?;
        // A running step's output may not have arrived yet; it goes to stdio.
        if step.finished_at.is_none() && !names.iter().any(|n| n == "stdio") {
            names.insert(0, "stdio".to_owned());
        }
        for name in names {
            // A running step's log streams in from the script instead.
            let page = match step.finished_at {
                Some(_) => super::log::read_page(st, id, step.number, &name, 0, 0)?,
                None => super::log::LogPage::default(),
            };
            logs.push(LogView { name, page });
        }
        steps.push(StepView { step, logs });
    }
    let changes = st.changes_of_request(build.request_id)?;
    let reason = st.request(build.request_id)?.map(|r| r.reason);
    Ok(Some((build, steps, changes, reason)))
}

/// One log: rendered here when the step is over (invalid UTF-8 as U+FFFD, stderr and
/// headers marked), followed live by the script while it runs.
fn log_view(build: i64, step: &crate::store::StepRow, view: &LogView) -> Markup {
    let LogView { name: log, page } = view;
    let raw = format!(
        "/api/builds/{build}/steps/{}/logs/{}",
        step.number,
        urlencode(log)
    );
    let live = step.finished_at.is_none();
    html! {
        details.log open {
            summary { (step.name) " · " (log) " " a href=(raw) { "raw" } }
            @if live {
                pre.log data-live=(format!("{raw}/live")) data-follow=(format!("{raw}?follow=true")) {}
            } @else {
                (super::log::render(&page.chunks))
                @if let Some(next) = page.next {
                    p {
                        "The first " (super::log::PAGE_BYTES / 1024) " KiB: "
                        a.next href=(super::log::page_link(build, step.number, log, next)) { "next page" }
                    }
                }
            }
        }
    }
}
