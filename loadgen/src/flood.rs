//! Flood mode: many logins with a wrong password from one address, each on a new
//! connection that logs in, sends its (wrong) response and closes without waiting for
//! the refusal — what a password guesser does, to measure what it costs the master.

use crate::cli::FloodArgs;
use crate::link::{self, Incoming};
use pbwire::jelly::Value;
use pbwire::pb::{Message, ObjectId};
use serde_json::json;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    errors: AtomicU64,
}

pub async fn run(args: FloodArgs) -> ExitCode {
    let counts = Arc::new(Counts::default());
    let slots = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let started = Instant::now();
    let mut attempts = JoinSet::new();
    for _ in 0..args.attempts {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let (args, counts) = (args.clone(), counts.clone());
        attempts.spawn(async move {
            let counter = match attempt(&args).await {
                Ok(()) => &counts.sent,
                Err(_) => &counts.errors,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    while attempts.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    let sent = counts.sent.load(Ordering::Relaxed);
    crate::emit(&json!({
        "attempts": args.attempts,
        "sent": sent,
        "errors": counts.errors.load(Ordering::Relaxed),
        "elapsed_s": (elapsed * 100.0).round() / 100.0,
        "per_s": (sent as f64 / elapsed.max(1e-9)).round(),
    }));
    ExitCode::SUCCESS
}

/// One wrong login: connect, `login(name)`, `respond(wrong, mind)`, close.
async fn attempt(args: &FloodArgs) -> Result<(), link::LinkError> {
    let (link, mut inbox) = link::connect(args.master).await?;
    let reader = tokio::spawn(async move {
        while let Ok(Some(Incoming::Call(_) | Incoming::Decref)) = inbox.next().await {}
    });
    let challenge = link
        .call(
            ObjectId::Root,
            "login",
            vec![Value::bytes(args.name.as_bytes().to_vec())],
            vec![],
        )
        .await?
        .await
        .map_err(|_| link::LinkError::Closed)?
        .map_err(|_| link::LinkError::Protocol("login refused".into()))?;
    let Some([Value::Bytes(challenge), Value::Remote(challenger)]) = challenge.as_seq() else {
        return Err(link::LinkError::Protocol("bad login answer".into()));
    };
    let response = pbwire::login::response(args.password.as_bytes(), challenge);
    let mind = link.export()?;
    let answer = link
        .call(
            ObjectId::Id(*challenger),
            "respond",
            vec![Value::bytes(response.to_vec()), Value::Remote(mind)],
            vec![],
        )
        .await?;
    // A guesser does not wait for the refusal.
    drop(answer);
    link.send(&Message::Decref(*challenger)).await?;
    reader.abort();
    Ok(())
}
