//! Every step kind on every worker generation, with exact-bytes checks: string and
//! file downloads, uploads (round trip through the worker), directory uploads, the
//! file-system commands with their results as properties, properties from command
//! output and interpolation, conditions and clean-up steps, a git checkout, and the
//! errors users must see (a missing property, a file over max_size).

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::master::{test_dir, MasterProcess};
use support::workers::{Generation, RunningWorker, WorkerOptions};

const LONG: Duration = Duration::from_secs(90);

fn config(repo: &Path) -> String {
    format!(
        r#"
[[worker]]
name = "w1"
password = "pass"

[[builder]]
name = "files"
workers = ["w1"]
properties = {{ greeting = "hello" }}

[[builder.step]]
name = "string download"
kind = "string_download"
content = "%(prop:greeting)s from build %(prop:buildnumber)s\n"
worker_dest = "greeting.txt"
mode = "0640"

[[builder.step]]
name = "download"
kind = "download"
master_src = "fixtures/in.bin"
worker_dest = "in.bin"
block_size = 16384

[[builder.step]]
name = "upload it back"
kind = "upload"
worker_src = "in.bin"
master_dest = "out/%(prop:buildnumber)s/back.bin"
block_size = 20000
keep_stamp = true

[[builder.step]]
name = "make a tree"
command = "mkdir -p tree/sub && echo one > tree/a.txt && echo two > tree/sub/b.txt && cat greeting.txt"

[[builder.step]]
name = "directory upload"
kind = "directory_upload"
worker_src = "tree"
master_dest = "out/tree"
compress = "gz"

[[builder.step]]
name = "mkdir"
kind = "mkdir"
dir = "build/made/deep"

[[builder.step]]
name = "stat"
kind = "stat"
file = "build/in.bin"
property = "in_stat"

[[builder.step]]
name = "glob"
kind = "glob"
path = "build/tree/*.txt"
property = "found"

[[builder.step]]
name = "listdir"
kind = "listdir"
dir = "build/tree"
property = "listing"

[[builder.step]]
name = "cpdir"
kind = "cpdir"
from_dir = "build/tree"
to_dir = "build/tree-copy"

[[builder.step]]
name = "rm"
kind = "rm"
path = "build/tree-copy/a.txt"

[[builder.step]]
name = "answer"
command = "echo '  42  '"
property = "answer"

[[builder.step]]
name = "version"
command = "echo version=1.2.3-beta"
property = "version"
property_from = "regex:version=(\\S+)"

[[builder.step]]
name = "set"
kind = "set_property"
property = "flavour"
value = "%(prop:greeting)s-%(prop:answer)s"

[[builder.step]]
name = "use"
command = "echo answer=%(prop:answer)s version=%(prop:version)s flavour=%(prop:flavour)s; ls ../../tree-copy; test ! -e ../../tree-copy/a.txt"
workdir = "build/made/deep"

[[builder.step]]
name = "skipped by condition"
command = "echo never"
do_step_if = "%(prop:answer)s == 41"

[[builder.step]]
name = "rmdir"
kind = "rmdir"
dir = "build/made"

[[builder]]
name = "errors"
workers = ["w1"]

[[builder.step]]
name = "missing property"
command = "echo %(prop:nope)s"

[[builder.step]]
name = "clean-up"
command = "echo cleaning"
always_run = true

[[builder]]
name = "too-big"
workers = ["w1"]

[[builder.step]]
command = "head -c 5000 /dev/zero > big.bin"

[[builder.step]]
kind = "upload"
worker_src = "big.bin"
master_dest = "big.bin"
max_size = 1000

[[builder]]
name = "checkout"
workers = ["w1"]

[[builder.step]]
name = "git"
kind = "git"
repo_url = "{repo}"
branch = "main"
workdir = "src"

[[builder.step]]
name = "built from"
command = "cat README; echo %(prop:got_revision)s"
workdir = "src"
"#,
        repo = repo.display()
    )
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A repository with one commit on `main`; returns its path and the commit.
fn make_repo(dir: &Path) -> (std::path::PathBuf, String) {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).expect("repo dir");
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README"), "checked out by pbmaster\n").expect("write");
    git(&repo, &["add", "README"]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    let head = git(&repo, &["rev-parse", "HEAD"]);
    (repo, head)
}

fn step<'a>(build: &'a Value, name: &str) -> &'a Value {
    build["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no step {name:?} in {build}"))
}

fn run(generation: Generation) {
    let dir = test_dir(&format!("step-kinds-{}", generation.peer_name()));
    let (repo, head) = make_repo(&dir);
    let master = MasterProcess::start(&dir.join("master"), "", &config(&repo));
    // Master-side transfer paths resolve in the transfer root, data_dir/files.
    let data = dir.join("master/data/files");
    let input: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::create_dir_all(data.join("fixtures")).expect("fixtures dir");
    std::fs::write(data.join("fixtures/in.bin"), &input).expect("input");
    let opts = WorkerOptions::new("w1", "pass", master.pb);
    let worker = RunningWorker::start(generation, &dir.join("worker"), &opts).expect("worker");
    master.wait_attached("w1", LONG);

    let r = master.wait_request(master.force("files"), LONG);
    let id = r["builds"][0]["id"].as_i64().expect("build");
    let build = master.get(&format!("/api/builds/{id}"));
    assert_eq!(r["result"], "success", "{build}\n{}", worker.log());
    let wbuild = worker.basedir().join("files/build");
    let greeting =
        std::fs::read_to_string(wbuild.join("greeting.txt")).expect("greeting on the worker");
    assert_eq!(greeting, "hello from build 1\n");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(wbuild.join("greeting.txt"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    assert_eq!(
        std::fs::read(wbuild.join("in.bin")).expect("downloaded"),
        input,
        "download is exact"
    );
    let back = std::fs::read(data.join("out/1/back.bin")).expect("uploaded back");
    assert_eq!(back, input, "upload is exact");
    let worker_mtime = std::fs::metadata(wbuild.join("in.bin"))
        .and_then(|m| m.modified())
        .expect("mtime");
    let master_mtime = std::fs::metadata(data.join("out/1/back.bin"))
        .and_then(|m| m.modified())
        .expect("mtime");
    let skew = worker_mtime
        .duration_since(master_mtime)
        .or_else(|e| Ok::<_, ()>(e.duration()))
        .expect("skew");
    assert!(
        skew < Duration::from_secs(1),
        "keep_stamp kept the worker's mtime"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("out/tree/a.txt")).expect("tree"),
        "one\n"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("out/tree/sub/b.txt")).expect("tree"),
        "two\n"
    );
    let props = &build["properties"];
    assert_eq!(props["answer"][0], "42", "{props}");
    assert_eq!(props["version"][0], "1.2.3-beta");
    assert_eq!(props["flavour"][0], "hello-42");
    assert_eq!(props["in_stat"][0][6], 200_000, "stat size: {props}");
    let found: Vec<String> = props["found"][0]
        .as_array()
        .expect("glob")
        .iter()
        .map(|f| {
            f.as_str()
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(found, vec!["a.txt".to_owned()], "{props}");
    let mut listing: Vec<&str> = props["listing"][0]
        .as_array()
        .expect("listdir")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    listing.sort();
    assert_eq!(listing, vec!["a.txt", "sub"]);
    let used = master.output(id, number(&build, "use"), "stdout");
    assert!(
        used.contains("answer=42 version=1.2.3-beta flavour=hello-42"),
        "{used}"
    );
    assert!(
        used.contains("sub") && !used.contains("a.txt"),
        "cpdir copied, rm removed: {used}"
    );
    assert_eq!(step(&build, "skipped by condition")["result"], "skipped");
    assert!(!wbuild.join("made").exists(), "rmdir removed it");

    let r = master.wait_request(master.force("errors"), LONG);
    let build = master.get(&format!("/api/builds/{}", r["builds"][0]["id"]));
    assert_eq!(r["result"], "exception", "{build}");
    let missing = step(&build, "missing property");
    assert!(
        missing["reason"]
            .as_str()
            .is_some_and(|r| r.contains("\"nope\" is not set")),
        "{missing}"
    );
    assert_eq!(
        step(&build, "clean-up")["result"],
        "success",
        "always_run steps run after an exception"
    );

    let r = master.wait_request(master.force("too-big"), LONG);
    assert_eq!(r["result"], "failure", "{r}");
    let big = master.get(&format!("/api/builds/{}", r["builds"][0]["id"]));
    assert!(
        !data.join("big.bin").exists(),
        "no file over max_size at the destination: {big}"
    );
    let reason = big["steps"][1]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("max_size"), "a clear reason: {big}");
    let hidden: Vec<_> = std::fs::read_dir(&data)
        .expect("transfer root")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "no part file left: {hidden:?}");

    let r = master.wait_request(master.force("checkout"), LONG);
    let id = r["builds"][0]["id"].as_i64().expect("build");
    let build = master.get(&format!("/api/builds/{id}"));
    assert_eq!(
        r["result"],
        "success",
        "{build}\n{}",
        master.output(id, 1, "stderr")
    );
    assert_eq!(build["properties"]["got_revision"][0], head.as_str());
    assert!(master
        .output(id, 2, "stdout")
        .contains("checked out by pbmaster"));
    // A second checkout fetches into the existing clone.
    let r = master.wait_request(master.force("checkout"), LONG);
    assert_eq!(r["result"], "success", "{r}");
}

fn number(build: &Value, name: &str) -> i64 {
    step(build, name)["number"].as_i64().expect("number")
}

#[test]
fn buildbot_worker_4_3_0() {
    run(Generation::Worker4);
}

#[test]
fn buildbot_worker_2_10_5() {
    run(Generation::Worker2);
}

#[test]
fn buildbot_worker_0_9_15() {
    run(Generation::Worker09);
}

#[test]
fn buildslave_0_8_14() {
    run(Generation::Slave08);
}
