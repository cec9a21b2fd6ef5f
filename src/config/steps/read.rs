//! From a flat step table to its kind's struct. Each kind reads the keys it takes;
//! a key it needs and lacks, or one it does not take, is reported at the step, a
//! malformed value at the value.

use super::*;
use crate::config::error::Problems;
use crate::config::file::{StepKind, StepTable};
use crate::config::properties;
use std::ops::Range;
use toml::Spanned;

/// The wire's string limit: no transfer block may be larger.
const MAX_BLOCK: u64 = 640 * 1024;

/// Where commands and transfers run, relative to the builder's directory.
const DEFAULT_WORKDIR: &str = "build";

/// Step `number` (1-based) of `builder`; `None` when it is wrong (the problems say
/// why).
pub(in crate::config) fn step(
    spanned: &Spanned<StepTable>,
    number: usize,
    builder: &str,
    problems: &mut Problems,
) -> Option<StepConfig> {
    let t = spanned.get_ref();
    let name = t.name.clone().unwrap_or_else(|| format!("step {number}"));
    let mut r = Reader {
        table: t,
        span: spanned.span(),
        here: format!("builder {builder:?}, {name}"),
        problems,
        taken: Vec::new(),
        wrong: false,
    };
    let action = match t.kind {
        StepKind::Shell => shell(&mut r),
        StepKind::Upload => upload(&mut r),
        StepKind::Download => download(&mut r),
        StepKind::StringDownload => string_download(&mut r),
        StepKind::DirectoryUpload => directory_upload(&mut r),
        StepKind::Mkdir => Step::Mkdir(DirStep {
            dir: r.need_text("dir", &t.dir),
        }),
        StepKind::Rmdir => Step::Rmdir(DirStep {
            dir: r.need_text("dir", &t.dir),
        }),
        StepKind::Listdir => Step::Listdir(ListdirStep {
            dir: r.need_text("dir", &t.dir),
            property: r.take("property", &t.property).cloned(),
        }),
        StepKind::Rm => Step::Rm(RmStep {
            path: r.need_text("path", &t.path),
        }),
        StepKind::Cpdir => Step::Cpdir(CpdirStep {
            from_dir: r.need_text("from_dir", &t.from_dir),
            to_dir: r.need_text("to_dir", &t.to_dir),
        }),
        StepKind::Stat => Step::Stat(StatStep {
            file: r.need_text("file", &t.file),
            property: r.take("property", &t.property).cloned(),
        }),
        StepKind::Glob => Step::Glob(GlobStep {
            path: r.need_text("path", &t.path),
            property: r.take("property", &t.property).cloned(),
        }),
        StepKind::SetProperty => Step::SetProperty(SetPropertyStep {
            property: r.need_text("property", &t.property),
            value: r
                .need("value", &t.value)
                .map_or(Json::Null, properties::json),
        }),
        StepKind::Git => git(&mut r),
    };
    r.finish().then(|| StepConfig {
        name,
        halt_on_failure: t.halt_on_failure,
        flunk_on_failure: t.flunk_on_failure,
        warn_on_failure: t.warn_on_failure,
        always_run: t.always_run,
        do_step_if: t.do_step_if.clone(),
        action,
    })
}

fn shell(r: &mut Reader) -> Step {
    let t = r.table;
    let command = r.need("command", &t.command).cloned();
    Step::Shell(ShellStep {
        command: command.unwrap_or(CommandLine::Argv(Vec::new())),
        workdir: r.workdir(),
        env: r.take("env", &t.env).cloned().unwrap_or_default(),
        timeout: r.timeout(),
        max_time: r.take("max_time", &t.max_time).copied(),
        logfiles: r.take("logfiles", &t.logfiles).cloned().unwrap_or_default(),
        interrupt_signal: r.take("interrupt_signal", &t.interrupt_signal).cloned(),
        decode_rc: r.decode_rc(),
        property: r.output_property(),
    })
}

fn upload(r: &mut Reader) -> Step {
    let t = r.table;
    Step::Upload(UploadStep {
        worker_src: r.need_text("worker_src", &t.worker_src),
        master_dest: r.master_path("master_dest", &t.master_dest),
        workdir: r.workdir(),
        limits: r.limits(),
        mode: r.mode(),
        keep_stamp: r
            .take("keep_stamp", &t.keep_stamp)
            .copied()
            .unwrap_or(false),
    })
}

fn download(r: &mut Reader) -> Step {
    let t = r.table;
    Step::Download(DownloadStep {
        master_src: r.master_path("master_src", &t.master_src),
        worker_dest: r.need_text("worker_dest", &t.worker_dest),
        workdir: r.workdir(),
        limits: r.limits(),
        mode: r.mode(),
    })
}

fn string_download(r: &mut Reader) -> Step {
    let t = r.table;
    Step::StringDownload(StringDownloadStep {
        content: r.need_text("content", &t.content),
        worker_dest: r.need_text("worker_dest", &t.worker_dest),
        workdir: r.workdir(),
        mode: r.mode(),
    })
}

fn directory_upload(r: &mut Reader) -> Step {
    let t = r.table;
    Step::DirectoryUpload(DirectoryUploadStep {
        worker_src: r.need_text("worker_src", &t.worker_src),
        master_dest: r.master_path("master_dest", &t.master_dest),
        workdir: r.workdir(),
        compress: r.compress(),
        limits: r.limits(),
    })
}

fn git(r: &mut Reader) -> Step {
    let t = r.table;
    Step::Git(GitStep {
        repo_url: r.need_text("repo_url", &t.repo_url),
        branch: r.take("branch", &t.branch).cloned(),
        mode: r.git_mode(),
        workdir: r.workdir(),
        timeout: r.timeout(),
    })
}

/// Reads one step table, remembering which keys its kind took and whether anything
/// was wrong. Values that are wrong read as defaults; the step is then dropped.
struct Reader<'t, 'p, 'x> {
    table: &'t StepTable,
    span: Range<usize>,
    /// The step, for messages: `builder "b", step 2`.
    here: String,
    problems: &'p mut Problems<'x>,
    taken: Vec<&'static str>,
    wrong: bool,
}

impl<'t> Reader<'t, '_, '_> {
    fn problem(&mut self, span: Range<usize>, message: String) {
        self.wrong = true;
        self.problems.at(span, message);
    }

    /// An optional key of this kind.
    fn take<T>(&mut self, key: &'static str, value: &'t Option<T>) -> Option<&'t T> {
        self.taken.push(key);
        value.as_ref()
    }

    /// A key this kind cannot do without.
    fn need<T>(&mut self, key: &'static str, value: &'t Option<T>) -> Option<&'t T> {
        let found = self.take(key, value);
        if found.is_none() {
            let message = format!("{}: a {:?} step needs `{key}`", self.here, self.table.kind);
            self.problem(self.span.clone(), message);
        }
        found
    }

    fn need_text(&mut self, key: &'static str, value: &'t Option<String>) -> String {
        self.need(key, value).cloned().unwrap_or_default()
    }

    /// A master-side transfer path: relative to the transfer root (`data_dir/files`)
    /// and without `..`, which the runner checks again after interpolation.
    fn master_path(&mut self, key: &'static str, value: &'t Option<String>) -> String {
        let path = self.need_text(key, value);
        let why = if path.starts_with('/') {
            Some("is absolute")
        } else if path.split('/').any(|part| part == "..") {
            Some("has a \"..\" component")
        } else {
            None
        };
        if let Some(why) = why {
            let message = format!(
                "{}: {key} {path:?} {why}; master paths are relative to the transfer root (data_dir/files)",
                self.here
            );
            self.problem(self.span.clone(), message);
        }
        path
    }

    fn workdir(&mut self) -> String {
        let t = self.table;
        self.take("workdir", &t.workdir)
            .cloned()
            .unwrap_or_else(|| DEFAULT_WORKDIR.to_owned())
    }

    fn timeout(&mut self) -> u64 {
        let t = self.table;
        self.take("timeout", &t.timeout)
            .copied()
            .unwrap_or(DEFAULT_TIMEOUT)
    }

    fn limits(&mut self) -> TransferLimits {
        let t = self.table;
        let max_size = self.take("max_size", &t.max_size).copied();
        let block_size = self.take("block_size", &t.block_size).map(|b| {
            let size = *b.get_ref();
            if size == 0 || size > MAX_BLOCK {
                let message = format!(
                    "{}: block_size must be 1..={MAX_BLOCK} (the wire's limit)",
                    self.here
                );
                self.problem(b.span(), message);
            }
            size
        });
        TransferLimits {
            max_size,
            block_size,
        }
    }

    fn mode(&mut self) -> Option<FileMode> {
        let t = self.table;
        let m = self.take("mode", &t.mode)?;
        match u32::from_str_radix(m.get_ref().trim_start_matches("0o"), 8) {
            Ok(bits) => Some(FileMode(bits)),
            Err(_) => {
                let message = format!(
                    "{}: mode {:?} is not octal (e.g. \"0644\")",
                    self.here,
                    m.get_ref()
                );
                self.problem(m.span(), message);
                None
            }
        }
    }

    fn compress(&mut self) -> Compression {
        let t = self.table;
        let Some(c) = self.take("compress", &t.compress) else {
            return Compression::None;
        };
        match c.get_ref().as_str() {
            "gz" => Compression::Gzip,
            "bz2" => Compression::Bzip2,
            _ => {
                let message = format!("{}: compress must be \"gz\" or \"bz2\"", self.here);
                self.problem(c.span(), message);
                Compression::None
            }
        }
    }

    fn git_mode(&mut self) -> GitMode {
        let t = self.table;
        let Some(m) = self.take("git_mode", &t.git_mode) else {
            return GitMode::default();
        };
        match m.get_ref().as_str() {
            "incremental" => GitMode::Incremental,
            "full" => GitMode::Full,
            _ => {
                let message = format!(
                    "{}: git_mode must be \"incremental\" or \"full\"",
                    self.here
                );
                self.problem(m.span(), message);
                GitMode::default()
            }
        }
    }

    fn decode_rc(&mut self) -> DecodeRc {
        let t = self.table;
        let mut decoded = BTreeMap::new();
        for (code, result) in self.take("decode_rc", &t.decode_rc).into_iter().flatten() {
            let parsed_code = code.parse::<i64>();
            if parsed_code.is_err() {
                let message = format!("{}: decode_rc key {code:?} is not an exit code", self.here);
                self.problem(result.span(), message);
            }
            let parsed_result = result.get_ref().parse::<BuildResult>();
            if parsed_result.is_err() {
                let message = format!("{}: {:?} is not a result", self.here, result.get_ref());
                self.problem(result.span(), message);
            }
            if let (Ok(code), Ok(result)) = (parsed_code, parsed_result) {
                decoded.insert(code, result);
            }
        }
        DecodeRc(decoded)
    }

    /// `property` and `property_from` of a shell step.
    fn output_property(&mut self) -> Option<OutputProperty> {
        let t = self.table;
        let name = self.take("property", &t.property);
        let from = match self.take("property_from", &t.property_from) {
            None => PropertySource::Stripped,
            Some(from) => match self.property_source(from) {
                Some(source) => source,
                None => {
                    let message = format!(
                        "{}: property_from must be stdout, stripped or regex:PATTERN (a valid regex)",
                        self.here
                    );
                    self.problem(from.span(), message);
                    PropertySource::Stripped
                }
            },
        };
        if let (None, Some(from)) = (name, &t.property_from) {
            let message = format!("{}: property_from needs `property`", self.here);
            self.problem(from.span(), message);
        }
        Some(OutputProperty {
            name: name?.clone(),
            from,
        })
    }

    fn property_source(&self, from: &Spanned<String>) -> Option<PropertySource> {
        match from.get_ref().as_str() {
            "stripped" => Some(PropertySource::Stripped),
            "stdout" => Some(PropertySource::Stdout),
            other => {
                let pattern = other.strip_prefix("regex:")?;
                Regex::new(pattern).ok().map(PropertySource::Regex)
            }
        }
    }

    /// Reports the keys set that this kind does not take; true if the step is right.
    fn finish(mut self) -> bool {
        for key in self.table.keys_set() {
            if !self.taken.contains(&key) {
                let message = format!(
                    "{}: `{key}` does not apply to a {:?} step",
                    self.here, self.table.kind
                );
                self.problem(self.span.clone(), message);
            }
        }
        !self.wrong
    }
}

#[cfg(test)]
mod tests {
    use crate::config::error::ConfigError;
    use crate::config::{parse, PropertySource, Step};

    const BUILDER: &str = "[master]\ndata_dir = \"d\"\n[[worker]]\nname = \"w\"\npassword = \"p\"\n[[builder]]\nname = \"b\"\nworkers = [\"w\"]\n[[builder.step]]\n";

    fn steps(body: &str) -> Result<Vec<Step>, Vec<ConfigError>> {
        let config = parse(&format!("{BUILDER}{body}"))?;
        Ok(config.builders[0]
            .steps
            .iter()
            .map(|s| s.action.clone())
            .collect())
    }

    /// The line of `needle` in the whole text (1-based).
    fn line_of(body: &str, needle: &str) -> usize {
        let text = format!("{BUILDER}{body}");
        let offset = text.find(needle).unwrap();
        text[..offset].matches('\n').count() + 1
    }

    #[test]
    fn each_kind_becomes_its_own_struct_with_parsed_values() {
        let body = "kind = \"directory_upload\"\nworker_src = \"t\"\nmaster_dest = \"o\"\ncompress = \"bz2\"\nblock_size = 4096\n\
            [[builder.step]]\nkind = \"git\"\nrepo_url = \"r\"\ngit_mode = \"full\"\n\
            [[builder.step]]\ncommand = [\"echo\", \"v=1\"]\nproperty = \"v\"\nproperty_from = \"regex:v=(\\\\d+)\"\ndecode_rc = { \"1\" = \"warnings\" }\n\
            [[builder.step]]\nkind = \"download\"\nmaster_src = \"a\"\nworker_dest = \"b\"\nmode = \"0640\"\n";
        let s = steps(body).unwrap();
        let Step::DirectoryUpload(d) = &s[0] else {
            panic!("{s:?}")
        };
        assert_eq!(d.compress, super::Compression::Bzip2);
        assert_eq!(d.limits.block_size, Some(4096));
        assert_eq!(d.workdir, "build");
        let Step::Git(g) = &s[1] else { panic!("{s:?}") };
        assert_eq!(g.mode, super::GitMode::Full);
        assert_eq!(g.timeout, super::DEFAULT_TIMEOUT);
        let Step::Shell(sh) = &s[2] else {
            panic!("{s:?}")
        };
        let property = sh.property.as_ref().unwrap();
        assert_eq!(property.name, "v");
        assert!(matches!(&property.from, PropertySource::Regex(re) if re.as_str() == "v=(\\d+)"));
        assert_eq!(sh.decode_rc.result(1), crate::model::BuildResult::Warnings);
        assert_eq!(sh.decode_rc.result(2), crate::model::BuildResult::Failure);
        let Step::Download(dl) = &s[3] else {
            panic!("{s:?}")
        };
        assert_eq!(dl.mode, Some(super::FileMode(0o640)));
    }

    #[test]
    fn a_bad_regex_in_property_from_is_one_error_at_its_line() {
        let body = "command = \"echo\"\nproperty = \"p\"\nproperty_from = \"regex:(unclosed\"\n";
        let errors = steps(body).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].location.map(|l| l.0),
            Some(line_of(body, "property_from"))
        );
        assert!(
            errors[0].message.contains("property_from must be"),
            "{errors:?}"
        );
    }

    #[test]
    fn master_paths_must_stay_under_the_transfer_root() {
        let ok = "kind = \"upload\"\nworker_src = \"a\"\nmaster_dest = \"out/%(prop:x)s/..x\"\n";
        assert!(steps(ok).is_ok());
        for (key, path) in [
            ("master_dest", "/srv/out"),
            ("master_dest", "out/../../pbmaster.sqlite"),
            ("master_src", "../secret"),
        ] {
            let kind = if key == "master_src" {
                "download\"\nworker_dest = \"b"
            } else {
                "upload\"\nworker_src = \"a"
            };
            let errors = steps(&format!("kind = \"{kind}\"\n{key} = \"{path}\"\n")).unwrap_err();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].message.contains(key) && errors[0].message.contains("transfer root"),
                "{errors:?}"
            );
        }
    }

    #[test]
    fn a_key_the_kind_does_not_take_is_reported() {
        let errors = steps("kind = \"mkdir\"\ndir = \"x\"\ncommand = \"true\"\n").unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .message
                .contains("`command` does not apply to a Mkdir step"),
            "{errors:?}"
        );
        let errors = steps("kind = \"rm\"\npath = \"x\"\nworkdir = \"w\"\n").unwrap_err();
        assert!(
            errors[0]
                .message
                .contains("`workdir` does not apply to a Rm step"),
            "{errors:?}"
        );
        // A value of a key the kind does not take is not looked at.
        let errors = steps("kind = \"stat\"\nfile = \"f\"\ncompress = \"zip\"\n").unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
    }

    #[test]
    fn malformed_values_are_reported_at_the_value() {
        let body = "kind = \"upload\"\nworker_src = \"a\"\nmaster_dest = \"b\"\nblock_size = 0\nmode = \"rw\"\n";
        let errors = steps(body).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(
            errors[0].location.map(|l| l.0),
            Some(line_of(body, "block_size"))
        );
        assert_eq!(errors[1].location.map(|l| l.0), Some(line_of(body, "mode")));
        let errors = steps("command = \"x\"\nproperty_from = \"stdout\"\n").unwrap_err();
        assert!(
            errors[0].message.contains("property_from needs `property`"),
            "{errors:?}"
        );
    }
}
