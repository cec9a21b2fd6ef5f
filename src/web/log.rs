//! A finished log a page at a time: a 100 MB log is never read whole to show it.

use super::layout::{page, Viewer};
use super::{html, not_found, urlencode, viewer, PageResult};
use crate::api::{ApiState, Caller};
use crate::store::{Channel, LogChunk, Store, StoreResult};
use axum::extract::{Path, Query, State};
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;

/// Bytes of a log shown on one page.
pub const PAGE_BYTES: usize = 256 * 1024;

/// Some of a log's bytes by channel, and where the next page starts if more
/// follows: a chunk's sequence and an offset in it (a chunk may hold megabytes).
#[derive(Debug, Default)]
pub struct LogPage {
    pub chunks: Vec<(Channel, Vec<u8>)>,
    pub next: Option<(i64, usize)>,
}

/// About [`PAGE_BYTES`] of a log from byte `at` of chunk `from` on (0, 0: the start).
pub fn read_page(
    st: &Store,
    build: i64,
    step: i64,
    log: &str,
    from: i64,
    mut at: usize,
) -> StoreResult<LogPage> {
    let (mut page, mut bytes, mut after) = (LogPage::default(), 0, from - 1);
    loop {
        let got = st.log_chunks(build, step, log, after)?;
        if got.is_empty() {
            return Ok(page);
        }
        for c in got {
            if bytes >= PAGE_BYTES {
                page.next = Some((c.seq, 0));
                return Ok(page);
            }
            let start = std::mem::take(&mut at).min(c.data.len());
            let data = &c.data[start..];
            let room = PAGE_BYTES - bytes;
            if data.len() > room {
                let cut = boundary(data, room);
                page.chunks.push((c.channel, data[..cut].to_vec()));
                page.next = Some((c.seq, start + cut));
                return Ok(page);
            }
            bytes += data.len();
            after = c.seq;
            page.chunks.push((c.channel, data.to_vec()));
        }
    }
}

/// `at`, moved back to the start of a UTF-8 character it would split.
fn boundary(data: &[u8], at: usize) -> usize {
    let mut i = at;
    while i > 0 && at - i < 3 && data.get(i).is_some_and(|b| b & 0xC0 == 0x80) {
        i -= 1;
    }
    if i == 0 {
        at
    } else {
        i
    }
}

/// Log bytes as text: invalid UTF-8 as U+FFFD, colours as spans, stderr and headers
/// marked; escaped like every value.
pub fn render(chunks: &[(Channel, Vec<u8>)]) -> Markup {
    html! {
        pre.log {
            @for (channel, bytes) in chunks {
                @let text = String::from_utf8_lossy(bytes);
                @match channel {
                    Channel::Stdout => (super::ansi::render(&text)),
                    Channel::Stderr => span.stderr { (super::ansi::render(&text)) },
                    Channel::Header => span.header { (text) },
                }
            }
        }
    }
}

/// A log rendered as it arrives (a live log): each channel's colours go on from one
/// piece to the next, and a character cut between two pieces is joined.
#[derive(Debug, Default)]
pub struct LiveRender {
    out: super::ansi::Painter,
    err: super::ansi::Painter,
    /// The bytes of a character cut at the end of the last piece, and its channel.
    carry: Vec<u8>,
    carry_channel: Option<Channel>,
}

impl LiveRender {
    /// The next chunks as markup; `last`: nothing follows (a cut character shows as
    /// U+FFFD).
    pub fn chunks(&mut self, chunks: &[LogChunk], last: bool) -> Markup {
        let mut pieces = Vec::with_capacity(chunks.len() + 1);
        for c in chunks {
            if self.carry_channel.is_some_and(|ch| ch != c.channel) {
                self.flush_carry(&mut pieces);
            }
            let mut bytes = std::mem::take(&mut self.carry);
            bytes.extend_from_slice(&c.data);
            let cut = complete_up_to(&bytes);
            self.carry = bytes.split_off(cut);
            self.carry_channel = (!self.carry.is_empty()).then_some(c.channel);
            pieces.push((c.channel, String::from_utf8_lossy(&bytes).into_owned()));
        }
        if last {
            self.flush_carry(&mut pieces);
        }
        html! {
            @for (channel, text) in &pieces {
                @match channel {
                    Channel::Stdout => (self.out.paint(text)),
                    Channel::Stderr => span.stderr { (self.err.paint(text)) },
                    Channel::Header => span.header { (text) },
                }
            }
        }
    }

    fn flush_carry(&mut self, pieces: &mut Vec<(Channel, String)>) {
        if let Some(channel) = self.carry_channel.take() {
            let bytes = std::mem::take(&mut self.carry);
            pieces.push((channel, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
}

/// Where the bytes end but for a UTF-8 character they end in the middle of (its
/// first bytes are kept for the next piece; an invalid byte is not waited on).
fn complete_up_to(b: &[u8]) -> usize {
    for back in 1..=b.len().min(3) {
        let i = b.len() - back;
        let lead = b[i];
        if lead & 0xC0 == 0x80 {
            continue;
        }
        let need = match lead {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => 1,
        };
        return if need > back { i } else { b.len() };
    }
    b.len()
}

/// Where the page of a log from `(chunk, offset)` is.
pub fn page_link(build: i64, step: i64, log: &str, (from, at): (i64, usize)) -> String {
    format!(
        "/builds/{build}/steps/{step}/logs/{}?from={from}&at={at}",
        urlencode(log)
    )
}

#[derive(Debug, Deserialize)]
pub struct From {
    #[serde(default)]
    from: i64,
    #[serde(default)]
    at: usize,
}

pub async fn log_page(
    State(s): State<ApiState>,
    Path((build, step, log)): Path<(i64, i64, String)>,
    Query(q): Query<From>,
    caller: Option<Extension<Caller>>,
) -> PageResult {
    let name = log.clone();
    let found = s
        .store
        .read(move |st| match st.build(build)? {
            None => Ok(None),
            Some(b) => Ok(Some((b, read_page(st, build, step, &name, q.from, q.at)?))),
        })
        .await?;
    let Some((b, page_of)) = found else {
        return Err(not_found("such build"));
    };
    let raw = format!("/api/builds/{build}/steps/{step}/logs/{}", urlencode(&log));
    let body = html! {
        p {
            a href=(format!("/builds/{build}")) { (b.builder) " #" (b.number) }
            " · step " (step) " · " a href=(raw) { "raw" }
        }
        (render(&page_of.chunks))
        @if let Some(next) = page_of.next {
            p { a.next href=(page_link(build, step, &log, next)) { "Next page" } }
        }
    };
    let who: Viewer = viewer(caller);
    html(page(&format!("Log {log}"), who, false, body))
}

#[cfg(test)]
mod tests {
    use super::{boundary, LiveRender};
    use crate::store::{Channel, LogChunk};

    fn chunk(seq: i64, channel: Channel, data: &[u8]) -> LogChunk {
        LogChunk {
            seq,
            channel,
            data: data.to_vec(),
        }
    }

    #[test]
    fn a_live_log_joins_cut_characters_and_colours() {
        let e = "é".as_bytes();
        let mut r = LiveRender::default();
        let mut out = r
            .chunks(&[chunk(1, Channel::Stdout, &[b'a', e[0]])], false)
            .into_string();
        out += &r
            .chunks(&[chunk(2, Channel::Stdout, &[e[1], b'\x1b', b'['])], false)
            .into_string();
        out += &r
            .chunks(&[chunk(3, Channel::Stdout, b"31m</script>\xff")], false)
            .into_string();
        out += &r
            .chunks(&[chunk(4, Channel::Stderr, b"e\xe2\x82")], false)
            .into_string();
        out += &r.chunks(&[], true).into_string();
        assert_eq!(
            out,
            "aé<span class=\"fg1\">&lt;/script&gt;\u{fffd}</span>\
             <span class=\"stderr\">e</span><span class=\"stderr\">\u{fffd}</span>"
        );
    }

    #[test]
    fn a_page_does_not_split_a_character() {
        let text = "aé".as_bytes();
        assert_eq!(boundary(text, 2), 1);
        assert_eq!(boundary(text, 1), 1);
        assert_eq!(boundary(b"abc", 2), 2);
    }
}
