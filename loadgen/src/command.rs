//! A remote command run in a simulated way: `update` calls carrying stdout on the
//! master's command object, then `rc`, then `complete(None)`, in the shapes a
//! buildbot-worker 4.3.0 sends (protocol reference §5.5).

use crate::link::{text, Link, LinkError};
use crate::stats::Stats;
use pbwire::jelly::Value;
use pbwire::pb::{Message, ObjectId};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// What every simulated command does.
#[derive(Debug, Clone)]
pub struct Behaviour {
    pub stdout_bytes: u64,
    pub chunk_bytes: usize,
    /// Bytes per second; 0 is unlimited.
    pub rate: u64,
    pub rc: i64,
}

/// Tells whoever forces builds that a command started or finished.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    Started(Instant),
    Completed,
}

/// One command to run.
#[derive(Debug)]
pub struct Command {
    /// The master's object for this command (`(remote N)` in startCommand).
    pub object: i64,
    pub name: String,
    pub interrupt: oneshot::Receiver<()>,
}

/// Line-oriented stdout text of `len` bytes: real workers send whole lines. Cloning
/// the value shares its bytes, so one chunk serves every update.
fn stdout_text(len: usize) -> Value {
    const LINE: &str = "the quick brown fox jumps over the lazy dog; pbmaster-loadgen\n";
    let mut s = String::with_capacity(len);
    while s.len() < len {
        let take = (len - s.len()).min(LINE.len());
        s.push_str(&LINE[..take]);
    }
    Value::text(s)
}

/// `update([[{key: value}, 0]])`.
fn update_args(key: &str, value: Value) -> Vec<Value> {
    vec![Value::List(vec![Value::List(vec![
        Value::Dict(vec![(text(key), value)]),
        Value::int(0),
    ])])]
}

async fn update(link: &Link, object: i64, key: &str, value: Value) -> Result<(), LinkError> {
    link.call(
        ObjectId::Id(object),
        "update",
        update_args(key, value),
        vec![],
    )
    .await
    .map(drop)
}

/// Runs `cmd` to completion (or interruption) and releases the master's object.
pub async fn run(
    link: Link,
    cmd: Command,
    behaviour: Arc<Behaviour>,
    stats: Arc<Stats>,
    events: Option<mpsc::UnboundedSender<Event>>,
) -> Result<(), LinkError> {
    let Command {
        object,
        name,
        mut interrupt,
    } = cmd;
    let mut interrupted = false;
    if name == "shell" && behaviour.stdout_bytes > 0 {
        let chunk = behaviour.chunk_bytes.clamp(1, 600 * 1024);
        let full = stdout_text(chunk);
        let start = Instant::now();
        let mut sent: u64 = 0;
        while sent < behaviour.stdout_bytes {
            let n = (behaviour.stdout_bytes - sent).min(chunk as u64) as usize;
            let piece = if n == chunk {
                full.clone()
            } else {
                stdout_text(n)
            };
            tokio::select! {
                _ = &mut interrupt => { interrupted = true; break; }
                r = update(&link, object, "stdout", piece) => r?,
            }
            sent += n as u64;
            stats.stdout_bytes.fetch_add(n as u64, Ordering::Relaxed);
            if behaviour.rate > 0 {
                let due = start + Duration::from_secs_f64(sent as f64 / behaviour.rate as f64);
                tokio::select! {
                    _ = &mut interrupt => { interrupted = true; break; }
                    _ = tokio::time::sleep_until(due.into()) => {}
                }
            }
        }
    }
    if interrupted {
        stats.interrupts.fetch_add(1, Ordering::Relaxed);
        let header = "\ncommand interrupted, attempting to kill\nprocess killed by signal 9\n";
        update(&link, object, "header", text(header)).await?;
        update(&link, object, "rc", Value::int(-1)).await?;
    } else {
        let rc = if name == "shell" { behaviour.rc } else { 0 };
        update(&link, object, "rc", Value::int(rc)).await?;
    }
    let done = link
        .call(ObjectId::Id(object), "complete", vec![Value::None], vec![])
        .await?;
    let reply = done.await.map_err(|_| LinkError::Closed)?;
    if let Err(f) = reply {
        stats.error("complete refused", format!("{f:?}"));
    }
    // One decref per `(remote N)` received, after the last use, as Twisted does.
    link.send(&Message::Decref(object)).await?;
    stats.commands_completed.fetch_add(1, Ordering::Relaxed);
    if let Some(events) = events {
        let _ = events.send(Event::Completed);
    }
    Ok(())
}
