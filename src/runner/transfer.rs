//! File transfers between master and worker. The master hands the worker a writer
//! (uploads) or a reader (downloads) object; the worker drives it with `write`,
//! `utime`, `close`, `unpack` or `read` calls, at most one block at a time. Master-side
//! paths are resolved inside the transfer root ([`super::root`]); one that is not
//! ends the step in `exception` before the worker is asked for anything.

use super::build::{BuildJob, StepOutcome};
use super::command::run_command;
use super::objects::{FileReader, FileWriter, TransferState};
use super::properties::Properties;
use super::root::{Target, TransferRoot};
use super::unpack::{extract_tar, UnpackError};
use crate::config::{Compression, FileMode, Step, TransferLimits};
use crate::model::BuildResult;
use crate::worker::CommandVersion;
use pbwire::jelly::Value;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The wire's string limit: no block may be larger.
const MAX_BLOCK: u64 = 640 * 1024;

/// Runs an upload, download, string download or directory upload.
pub async fn run_transfer(
    job: &mut BuildJob,
    props: &mut Properties,
    step: &Step,
    number: i64,
) -> StepOutcome {
    match prepare(job, props, step) {
        Ok(plan) => execute(job, number, plan).await,
        Err(e) => StepOutcome::exception(e),
    }
}

/// What to run: the command, its arguments but for the object, and the object.
struct Plan {
    command: &'static str,
    args: Vec<(Value, Value)>,
    object: Object,
    /// Where a directory upload is unpacked, with its compression and size cap.
    unpack: Option<(Target, Compression, u64)>,
    /// The file an upload writes: removed again if the step fails, so a failed or
    /// truncated upload leaves nothing at the destination.
    written: Option<PathBuf>,
    max_size: Option<u64>,
}

enum Object {
    Writer(FileWriter),
    Reader(FileReader),
}

/// An upload's keys, for a file or (with its compression) a directory.
struct Upload<'s> {
    worker_src: &'s str,
    master_dest: &'s str,
    workdir: &'s str,
    limits: TransferLimits,
    mode: Option<FileMode>,
    keep_stamp: bool,
    directory: Option<Compression>,
}

/// What a download sends: a master file, or a string from the config.
enum Source<'s> {
    File(&'s str),
    Content(&'s str),
}

/// A download's keys.
struct Download<'s> {
    source: Source<'s>,
    worker_dest: &'s str,
    workdir: &'s str,
    limits: TransferLimits,
    mode: Option<FileMode>,
}

fn prepare(job: &BuildJob, props: &Properties, step: &Step) -> Result<Plan, String> {
    match step {
        Step::Upload(u) => upload(
            job,
            props,
            Upload {
                worker_src: &u.worker_src,
                master_dest: &u.master_dest,
                workdir: &u.workdir,
                limits: u.limits,
                mode: u.mode,
                keep_stamp: u.keep_stamp,
                directory: None,
            },
        ),
        Step::DirectoryUpload(d) => upload(
            job,
            props,
            Upload {
                worker_src: &d.worker_src,
                master_dest: &d.master_dest,
                workdir: &d.workdir,
                limits: d.limits,
                mode: None,
                keep_stamp: false,
                directory: Some(d.compress),
            },
        ),
        Step::Download(d) => download(
            job,
            props,
            Download {
                source: Source::File(&d.master_src),
                worker_dest: &d.worker_dest,
                workdir: &d.workdir,
                limits: d.limits,
                mode: d.mode,
            },
        ),
        Step::StringDownload(s) => download(
            job,
            props,
            Download {
                source: Source::Content(&s.content),
                worker_dest: &s.worker_dest,
                workdir: &s.workdir,
                limits: TransferLimits::default(),
                mode: s.mode,
            },
        ),
        _ => Err("not a transfer step".into()),
    }
}

fn render(props: &Properties, s: &str) -> Result<String, String> {
    props.render(s).map_err(|e| e.to_string())
}

/// The command version the worker reports for `name`, or why it cannot transfer.
fn need(job: &BuildJob, name: &'static str) -> Result<CommandVersion, String> {
    job.worker
        .commands
        .get(name)
        .map(|v| CommandVersion::parse(v))
        .ok_or_else(|| format!("worker is too old: it does not know the {name} command"))
}

/// The build's transfer root: `files` in the data folder.
fn root(job: &BuildJob) -> TransferRoot {
    TransferRoot::in_data_dir(&job.files_dir)
}

fn block(limits: TransferLimits, default: u64) -> u64 {
    limits.block_size.unwrap_or(default).clamp(1, MAX_BLOCK)
}

fn int_or_none(v: Option<u64>) -> Value {
    v.map_or(Value::None, |v| Value::int(v as i64))
}

fn upload(job: &BuildJob, props: &Properties, u: Upload) -> Result<Plan, String> {
    let t = |s: &str| Value::text(s);
    let directory = u.directory.is_some();
    let command = if directory {
        "uploadDirectory"
    } else {
        "uploadFile"
    };
    let v = need(job, command)?;
    let src_key = if v.below(3, 0) {
        "slavesrc"
    } else {
        "workersrc"
    };
    let max_size = u.limits.max_size;
    let master_dest = render(props, u.master_dest)?;
    let blocksize = block(u.limits, if directory { 16 * 1024 } else { 256 * 1024 });
    let mut args = vec![
        (t("workdir"), t(&render(props, u.workdir)?)),
        (t(src_key), t(&render(props, u.worker_src)?)),
        (t("maxsize"), int_or_none(max_size)),
        (t("blocksize"), Value::int(blocksize as i64)),
    ];
    if let Some(compression) = u.directory {
        args.push((
            t("compress"),
            compression.wire_name().map_or(Value::None, t),
        ));
    } else if u.keep_stamp {
        if v.below(2, 13) {
            return Err("worker is too old to keep timestamps (uploadFile < 2.13)".into());
        }
        args.push((t("keepstamp"), Value::Bool(true)));
    }
    // Checked last: resolving creates the destination's missing folders.
    let dest = if directory {
        root(job).dir_target(&master_dest)?
    } else {
        root(job).file_target(&master_dest)?
    };
    // A directory arrives as a tar stream, kept next to its folder until unpacked.
    let archive = if directory {
        dest.sibling("tar")
    } else {
        dest.clone()
    };
    let state = Arc::new(Mutex::new(TransferState::default()));
    let writer = FileWriter::new(&archive, max_size, u.mode.map(|m| m.0), state)?;
    let unpack = u.directory.map(|compression| {
        (
            dest,
            compression,
            max_size.unwrap_or(1 << 30).saturating_mul(10),
        )
    });
    Ok(Plan {
        command,
        args,
        object: Object::Writer(writer),
        unpack,
        written: Some(archive.path()),
        max_size,
    })
}

fn download(job: &BuildJob, props: &Properties, d: Download) -> Result<Plan, String> {
    let t = |s: &str| Value::text(s);
    let v = need(job, "downloadFile")?;
    let dest_key = if v.below(3, 0) {
        "slavedest"
    } else {
        "workerdest"
    };
    let state = Arc::new(Mutex::new(TransferState::default()));
    let reader = match d.source {
        Source::File(src) => {
            FileReader::from_file(root(job).open_file(&render(props, src)?)?, state)
        }
        Source::Content(content) => {
            FileReader::from_bytes(render(props, content)?.into_bytes(), state)
        }
    };
    let max_size = d.limits.max_size;
    let args = vec![
        (t("workdir"), t(&render(props, d.workdir)?)),
        (t(dest_key), t(&render(props, d.worker_dest)?)),
        (t("maxsize"), int_or_none(max_size)),
        (
            t("blocksize"),
            Value::int(block(d.limits, 16 * 1024) as i64),
        ),
        (
            t("mode"),
            d.mode.map_or(Value::None, |m| Value::int(i64::from(m.0))),
        ),
    ];
    Ok(Plan {
        command: "downloadFile",
        args,
        object: Object::Reader(reader),
        unpack: None,
        written: None,
        max_size,
    })
}

async fn execute(job: &mut BuildJob, number: i64, plan: Plan) -> StepOutcome {
    let (key, state, object): (&str, _, Box<dyn crate::conn::LocalObject>) = match plan.object {
        Object::Writer(w) => ("writer", w.state(), Box::new(w)),
        Object::Reader(r) => ("reader", r.state(), Box::new(r)),
    };
    let id = match job.worker.conn.export_object(object).await {
        Ok(id) => id,
        Err(e) => {
            return StepOutcome {
                result: BuildResult::Retry,
                rc: None,
                reason: Some(format!("worker lost: {e}")),
            }
        }
    };
    let mut args = plan.args;
    args.push((Value::text(key), Value::Remote(id)));
    let end = run_command(job, number, plan.command, args, false).await;
    job.worker.conn.unexport(id).await;
    if let Some(o) = StepOutcome::abnormal(&end) {
        return o;
    }
    let state = state.lock().map(|s| s.clone()).unwrap_or_default();
    let over = state.truncated || plan.max_size.is_some_and(|m| state.bytes >= m);
    let failed = match (&state.error, end.rc) {
        (Some(e), _) => Some(e.clone()),
        (None, Some(0)) if !state.truncated => None,
        (None, _) if over => Some(format!(
            "more than max_size ({} bytes)",
            plan.max_size.unwrap_or(0)
        )),
        (None, rc) => Some(format!("exit code {}", rc.unwrap_or(-1))),
    };
    if let Some(why) = failed {
        if let Some(path) = &plan.written {
            let _ = std::fs::remove_file(path);
        }
        return StepOutcome {
            result: BuildResult::Failure,
            rc: end.rc,
            reason: Some(why),
        };
    }
    if let (Some((dest, compression, limit)), Some(archive)) = (plan.unpack, &plan.written) {
        if let Err(e) = extract_tar(archive, &dest, compression, limit) {
            return StepOutcome {
                result: match e {
                    UnpackError::Refused(_) => BuildResult::Exception,
                    UnpackError::Failed(_) => BuildResult::Failure,
                },
                rc: end.rc,
                reason: Some(e.reason().to_owned()),
            };
        }
    }
    StepOutcome {
        result: BuildResult::Success,
        rc: Some(0),
        reason: None,
    }
}
