//! File transfers between master and worker. The master hands the worker a writer
//! (uploads) or a reader (downloads) object; the worker drives it with `write`,
//! `utime`, `close`, `unpack` or `read` calls, at most one block at a time.

use super::build::{BuildJob, StepOutcome};
use super::command::run_command;
use super::objects::{extract_tar, Compression, FileReader, FileWriter, TransferState};
use super::properties::Properties;
use crate::config::{StepConfig, StepKind};
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
    step: &StepConfig,
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
    unpack: Option<(PathBuf, Compression, u64)>,
    /// The file an upload writes: removed again if the step fails, so a failed or
    /// truncated upload leaves nothing at the destination.
    written: Option<PathBuf>,
    max_size: Option<u64>,
}

enum Object {
    Writer(FileWriter),
    Reader(FileReader),
}

fn prepare(job: &BuildJob, props: &Properties, step: &StepConfig) -> Result<Plan, String> {
    let render = |o: &Option<String>| -> Result<String, String> {
        props
            .render(o.as_deref().unwrap_or_default())
            .map_err(|e| e.to_string())
    };
    let t = |s: &str| Value::text(s);
    let version = |name: &str| {
        job.worker
            .commands
            .get(name)
            .map(|v| CommandVersion::parse(v))
    };
    let workdir = props.render(&step.workdir).map_err(|e| e.to_string())?;
    let mode = match &step.mode {
        Some(m) => Some(
            u32::from_str_radix(m.get_ref().trim_start_matches("0o"), 8)
                .map_err(|_| format!("mode {:?} is not octal", m.get_ref()))?,
        ),
        None => None,
    };
    let max_size = step.max_size;
    let master_path = |p: String| {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            job.files_dir.join(p)
        }
    };
    let block = |default: u64| step.block_size.unwrap_or(default).clamp(1, MAX_BLOCK);
    let int_or_none = |v: Option<u64>| v.map_or(Value::None, |v| Value::int(v as i64));
    let need = |name: &'static str| {
        version(name)
            .ok_or_else(|| format!("worker is too old: it does not know the {name} command"))
    };
    let state = Arc::new(Mutex::new(TransferState::default()));
    Ok(match step.kind {
        StepKind::Upload | StepKind::DirectoryUpload => {
            let directory = step.kind == StepKind::DirectoryUpload;
            let command = if directory {
                "uploadDirectory"
            } else {
                "uploadFile"
            };
            let v = need(command)?;
            let src_key = if v.below(3, 0) {
                "slavesrc"
            } else {
                "workersrc"
            };
            let dest = master_path(render(&step.master_dest)?);
            let blocksize = block(if directory { 16 * 1024 } else { 256 * 1024 });
            let mut args = vec![
                (t("workdir"), t(&workdir)),
                (t(src_key), t(&render(&step.worker_src)?)),
                (t("maxsize"), int_or_none(max_size)),
                (t("blocksize"), Value::int(blocksize as i64)),
            ];
            let compression =
                Compression::parse(step.compress.as_ref().map(|c| c.get_ref().as_str()))?;
            if directory {
                args.push((
                    t("compress"),
                    compression.wire_name().map_or(Value::None, t),
                ));
            } else if step.keep_stamp == Some(true) {
                if v.below(2, 13) {
                    return Err("worker is too old to keep timestamps (uploadFile < 2.13)".into());
                }
                args.push((t("keepstamp"), Value::Bool(true)));
            }
            let archive = if directory {
                dest.with_extension("upload.tar")
            } else {
                dest.clone()
            };
            let writer = FileWriter::new(
                archive.clone(),
                max_size,
                if directory { None } else { mode },
                state,
            )?;
            let unpack = directory.then(|| {
                (
                    dest,
                    compression,
                    max_size.unwrap_or(1 << 30).saturating_mul(10),
                )
            });
            Plan {
                command,
                args,
                object: Object::Writer(writer),
                unpack,
                written: Some(archive),
                max_size,
            }
        }
        StepKind::Download | StepKind::StringDownload => {
            let v = need("downloadFile")?;
            let dest_key = if v.below(3, 0) {
                "slavedest"
            } else {
                "workerdest"
            };
            let reader = if step.kind == StepKind::Download {
                FileReader::open(&master_path(render(&step.master_src)?), state)?
            } else {
                FileReader::from_bytes(render(&step.content)?.into_bytes(), state)
            };
            let args = vec![
                (t("workdir"), t(&workdir)),
                (t(dest_key), t(&render(&step.worker_dest)?)),
                (t("maxsize"), int_or_none(max_size)),
                (t("blocksize"), Value::int(block(16 * 1024) as i64)),
                (
                    t("mode"),
                    mode.map_or(Value::None, |m| Value::int(i64::from(m))),
                ),
            ];
            Plan {
                command: "downloadFile",
                args,
                object: Object::Reader(reader),
                unpack: None,
                written: None,
                max_size,
            }
        }
        other => return Err(format!("{other:?} is not a transfer")),
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
    if let Some((dest, compression, limit)) = plan.unpack {
        if let Err(e) = extract_tar(
            &dest.with_extension("upload.tar"),
            &dest,
            compression,
            limit,
        ) {
            return StepOutcome {
                result: BuildResult::Failure,
                rc: end.rc,
                reason: Some(e),
            };
        }
    }
    StepOutcome {
        result: BuildResult::Success,
        rc: Some(0),
        reason: None,
    }
}
