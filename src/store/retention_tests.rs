//! Compression that is interrupted at each of its steps, expiry by horizon and in
//! batches, and what expiry must never touch.

use super::super::packed::{self, FRAME};
use super::*;
use crate::model::BuildResult;
use crate::store::{BuildWrite, LogChunk, LogWriter};
use serde_json::json;

fn temp() -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "pbmaster-retention-{}-{}",
        std::process::id(),
        now()
    ));
    (Store::open(&dir).expect("store"), dir)
}

/// Every chunk of a log, as the API reads it.
fn read_all(store: &Store, build: i64, step: i64, log: &str) -> Vec<(i64, Channel, Vec<u8>)> {
    let (mut out, mut after) = (Vec::new(), 0);
    loop {
        let chunks: Vec<LogChunk> = store.log_chunks(build, step, log, after).expect("read");
        let Some(last) = chunks.last() else { break };
        after = last.seq;
        out.extend(chunks.into_iter().map(|c| (c.seq, c.channel, c.data)));
    }
    out
}

/// A build of `builder` with two steps of logs (one larger than several frames),
/// finished unless `running`; its id and request.
fn build(store: &Store, builder: &str, running: bool) -> (i64, i64) {
    let request = store
        .add_request(builder, "test", &json!({}))
        .expect("request");
    let b = store.start_build(request, builder, "w1").unwrap().started();
    for step in 1..=2 {
        store
            .record_build(
                b.id,
                &[BuildWrite::StepStarted {
                    number: step,
                    name: format!("step {step}"),
                    at: 1.0,
                }],
            )
            .expect("step");
        let mut w = LogWriter::new(store, b.id, step);
        w.append("stdio", Channel::Header, b"$ make\n")
            .expect("write");
        for i in 0..(step * 300) {
            let line = format!("line {i} of step {step}: compiling module_{}\n", i % 17);
            let channel = if i % 5 == 0 {
                Channel::Stderr
            } else {
                Channel::Stdout
            };
            w.append("stdio", channel, line.as_bytes()).expect("write");
        }
        if step == 2 {
            let big: Vec<u8> = (0..FRAME * 2 + 99).map(|i| (i % 253) as u8).collect();
            w.append("big.log", Channel::Stdout, &big).expect("write");
        }
    }
    if !running {
        store
            .finish_build(b.id, &[], BuildResult::Success, None)
            .expect("finish");
    }
    (b.id, request)
}

fn all_logs(store: &Store, id: i64) -> Vec<(i64, Channel, Vec<u8>)> {
    let mut out = read_all(store, id, 1, "stdio");
    out.extend(read_all(store, id, 2, "stdio"));
    out.extend(read_all(store, id, 2, "big.log"));
    out
}

#[test]
fn a_compressed_log_reads_back_the_same_chunks_and_the_plain_file_goes() {
    let (store, dir) = temp();
    let (id, _) = build(&store, "b1", false);
    let before = all_logs(&store, id);
    assert!(before.len() > 100);
    assert_eq!(store.builds_to_pack(0, 10).expect("to pack"), [id]);
    let p = store.pack_logs(id).expect("pack");
    assert!(p.raw > FRAME as u64 * 2 && p.stored * 4 < p.raw, "{p:?}");
    assert!(!store.log_file(id).exists());
    assert!(store.packed_file(id).exists());
    assert_eq!(all_logs(&store, id), before);
    // Reading from the middle, as a paged reader does.
    let from = before[before.len() / 3].0;
    let tail: Vec<_> = before.iter().filter(|c| c.0 > from).cloned().collect();
    let mut again = Vec::new();
    for step in 1..=2 {
        for log in ["stdio", "big.log"] {
            let got = store.log_chunks(id, step, log, from).expect("read");
            again.extend(got.into_iter().map(|c| (c.seq, c.channel, c.data)));
        }
    }
    again.sort_by_key(|c| c.0);
    assert_eq!(again[..], tail[..again.len()]);
    assert!(store.builds_to_pack(0, 10).expect("to pack").is_empty());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_log_smaller_than_a_block_stays_plain_but_is_done_with() {
    let (store, dir) = temp();
    let request = store
        .add_request("b1", "test", &serde_json::json!({}))
        .expect("request");
    let b = store.start_build(request, "b1", "w1").unwrap().started();
    LogWriter::new(&store, b.id, 1)
        .append("stdio", Channel::Stdout, b"short\n")
        .expect("write");
    store
        .finish_build(b.id, &[], crate::model::BuildResult::Success, None)
        .expect("finish");
    // Its end marked it done with: the janitor has nothing to look at.
    assert!(store.builds_to_pack(0, 10).expect("to pack").is_empty());
    let before = all_logs(&store, b.id);
    // Asked anyway, it leaves the file as it is.
    let p = store.pack_logs(b.id).expect("pack");
    assert!(
        p.raw > 0 && p.raw < PACK_AT_LEAST && p.stored == p.raw,
        "{p:?}"
    );
    assert!(store.log_file(b.id).exists() && !store.packed_file(b.id).exists());
    assert_eq!(all_logs(&store, b.id), before);
    assert!(store.builds_to_pack(0, 10).expect("to pack").is_empty());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_running_build_is_not_compressed() {
    let (store, dir) = temp();
    let (id, _) = build(&store, "b1", true);
    assert!(store.builds_to_pack(0, 10).expect("to pack").is_empty());
    assert!(store.log_file(id).exists());
    std::fs::remove_dir_all(dir).ok();
}

/// The states a crash can leave compression in; in each the log reads the same,
/// and compressing again finishes the job.
#[test]
fn compression_interrupted_at_any_step_leaves_a_readable_log() {
    let (store, dir) = temp();
    type Crash = fn(&Store, i64);
    let crashes: [(&str, Crash); 4] = [
        ("half-written compressed file", |st, id| {
            let tmp = st.packed_file(id).with_extension("zst.tmp");
            std::fs::write(tmp, b"\x28\xb5\x2f\xfd partial").expect("tmp");
        }),
        ("complete compressed file not renamed", |st, id| {
            let tmp = st.packed_file(id).with_extension("zst.tmp");
            let mut src = File::open(st.log_file(id)).expect("plain");
            let mut out = File::create(tmp).expect("tmp");
            packed::pack(&mut src, &mut out).expect("pack");
        }),
        ("renamed, plain file not removed", |st, id| {
            let mut src = File::open(st.log_file(id)).expect("plain");
            let mut out = File::create(st.packed_file(id)).expect("packed");
            packed::pack(&mut src, &mut out).expect("pack");
        }),
        ("plain file removed, build not marked", |st, id| {
            let mut src = File::open(st.log_file(id)).expect("plain");
            let mut out = File::create(st.packed_file(id)).expect("packed");
            packed::pack(&mut src, &mut out).expect("pack");
            std::fs::remove_file(st.log_file(id)).expect("remove");
        }),
    ];
    for (state, crash) in crashes {
        let (id, _) = build(&store, state, false);
        let before = all_logs(&store, id);
        crash(&store, id);
        assert_eq!(
            all_logs(&store, id),
            before,
            "{state}: read after the crash"
        );
        // A restarted master: a new handle on the same folder.
        let store = Store::open(&dir).expect("reopen");
        assert!(
            store.builds_to_pack(0, 100).expect("to pack").contains(&id),
            "{state}"
        );
        store.pack_logs(id).expect("pack again");
        assert_eq!(all_logs(&store, id), before, "{state}: read once finished");
        assert!(!store.log_file(id).exists(), "{state}");
        assert!(
            !store.packed_file(id).with_extension("zst.tmp").exists(),
            "{state}"
        );
        assert!(
            !store.builds_to_pack(0, 100).expect("to pack").contains(&id),
            "{state}"
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

fn finished_at(store: &Store, id: i64, t: f64) {
    store.execute_for_test(&format!(
        "UPDATE builds SET finished_at = {t} WHERE id = {id}"
    ));
}

#[test]
fn logs_past_the_horizon_expire_in_batches_and_say_so() {
    let (store, dir) = temp();
    let t = now();
    let old: Vec<i64> = (0..5).map(|_| build(&store, "b1", false).0).collect();
    for &id in &old {
        finished_at(&store, id, t - 1000.0);
    }
    store.pack_logs(old[0]).expect("pack");
    let (recent, _) = build(&store, "b1", false);
    let (running, _) = build(&store, "b1", true);
    let recent_logs = all_logs(&store, recent);
    let running_logs = all_logs(&store, running);
    let mut batches = Vec::new();
    loop {
        let s = store.expire_logs(t - 500.0, 2).expect("expire");
        if s == Swept::default() {
            break;
        }
        batches.push(s.logs);
        assert!(s.bytes > 0);
    }
    assert_eq!(batches, [2, 2, 1]);
    for &id in &old {
        assert!(!store.log_file(id).exists() && !store.packed_file(id).exists());
        assert_eq!(store.log_names(id, 2).expect("names"), ["big.log", "stdio"]);
        let note = read_all(&store, id, 2, "big.log");
        assert_eq!(note.len(), 1);
        assert_eq!(note[0].1, Channel::Header);
        assert_eq!(note[0].2, EXPIRED_NOTE.as_bytes());
        let steps = store.steps(id).expect("steps");
        assert!(
            steps.iter().all(|s| s.logs_expired_at.is_some()),
            "{steps:?}"
        );
    }
    assert_eq!(all_logs(&store, recent), recent_logs);
    assert_eq!(all_logs(&store, running), running_logs);
    assert!(store.steps(recent).expect("steps")[0]
        .logs_expired_at
        .is_none());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn old_builds_go_with_their_requests_but_never_running_queued_or_newest_ones() {
    let (store, dir) = temp();
    let t = now();
    let old: Vec<(i64, i64)> = (0..4).map(|_| build(&store, "b1", false)).collect();
    let (newest_of_b2, _) = build(&store, "b2", false);
    // A build ended as retry: its request is queued again.
    let (retried, queued) = build(&store, "b1", true);
    store
        .finish_build(retried, &[], BuildResult::Retry, None)
        .expect("retry");
    // A build whose report is not delivered yet.
    let (reporting, _) = build(&store, "b1", false);
    store
        .add_report("mail", reporting, "finished", &json!({}), t)
        .expect("report");
    let (running, _) = build(&store, "b1", true);
    for id in old
        .iter()
        .map(|b| b.0)
        .chain([newest_of_b2, retried, reporting, running])
    {
        finished_at(&store, id, t - 1000.0);
    }
    store.execute_for_test(&format!(
        "UPDATE builds SET finished_at = NULL WHERE id = {running}"
    ));
    let mut deleted = 0;
    loop {
        let s = store.delete_builds(t - 500.0, 3).expect("delete");
        assert!(s.builds <= 3);
        if s == Swept::default() {
            break;
        }
        assert_eq!(s.requests, s.builds, "each request had one build");
        deleted += s.builds;
    }
    assert_eq!(deleted, 4);
    for (id, request) in old {
        assert!(store.build(id).expect("build").is_none());
        assert!(store.steps(id).expect("steps").is_empty());
        assert!(store.request(request).expect("request").is_none());
        assert!(read_all(&store, id, 1, "stdio").is_empty());
        assert!(!store.log_file(id).exists());
    }
    for kept in [newest_of_b2, retried, reporting, running] {
        assert!(store.build(kept).expect("build").is_some(), "build {kept}");
    }
    assert!(store.request(queued).expect("request").is_some());
    assert_eq!(
        all_logs(&store, running).len(),
        all_logs(&store, reporting).len()
    );
    std::fs::remove_dir_all(dir).ok();
}
