//! Loading and checking: every problem is collected, with its line and column.

use super::{BuilderConfig, Config, StepConfig};
use crate::model::BuildResult;
use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::path::Path;

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line and column, when the problem has a place in the file.
    pub location: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some((line, col)) => write!(f, "line {line}, column {col}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Reads and checks a config file. Relative paths in it are made relative to the
/// file's folder.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            location: None,
            message: format!("cannot read {}: {e}", path.display()),
        }]
    })?;
    let mut config = parse(&text)?;
    let base = path.parent().unwrap_or(Path::new("."));
    if config.master.data_dir.is_relative() {
        config.master.data_dir = base.join(&config.master.data_dir);
    }
    // Absolute, so that paths handed to instances and subprocesses stay valid.
    if let Ok(abs) = std::path::absolute(&config.master.data_dir) {
        config.master.data_dir = abs;
    }
    for p in &mut config.latent_pools {
        if let Some(v) = &mut p.venv {
            if v.is_relative() {
                *v = base.join(&*v);
            }
            if let Ok(abs) = std::path::absolute(&*v) {
                *v = abs;
            }
        }
    }
    for w in &mut config.workers {
        if let Some(f) = &mut w.password_file {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
    }
    if let Some(c) = &mut config.changes {
        c.resolve_paths(base);
    }
    Ok(config)
}

/// Parses and checks config text.
pub fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
    let config: Config = toml::from_str(text).map_err(|e| {
        vec![ConfigError {
            location: e.span().map(|s| position(text, s.start)),
            message: e.message().to_owned(),
        }]
    })?;
    let errors = check(&config, text);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn check(config: &Config, text: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut at = |span: Range<usize>, message: String| {
        errors.push(ConfigError {
            location: Some(position(text, span.start)),
            message,
        });
    };
    if config
        .master
        .pb_listen
        .parse::<std::net::SocketAddr>()
        .is_err()
    {
        errors_push(
            &mut at,
            text,
            "pb_listen",
            "pb_listen is not an address like 0.0.0.0:9989",
        );
    }
    if config
        .master
        .http_listen
        .parse::<std::net::SocketAddr>()
        .is_err()
    {
        errors_push(
            &mut at,
            text,
            "http_listen",
            "http_listen is not an address like 127.0.0.1:8010",
        );
    }
    let mut workers = HashSet::new();
    for w in &config.workers {
        if !workers.insert(w.name.get_ref().as_str()) {
            at(
                w.name.span(),
                format!("worker {:?} is defined twice", w.name.get_ref()),
            );
        }
        let sources = [
            w.password.is_some(),
            w.password_env.is_some(),
            w.password_file.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            at(
                w.name.span(),
                format!(
                    "worker {:?} needs exactly one of password, password_env, password_file",
                    w.name.get_ref()
                ),
            );
        }
        if w.max_builds == 0 {
            at(
                w.name.span(),
                format!(
                    "worker {:?}: max_builds must be at least 1",
                    w.name.get_ref()
                ),
            );
        }
    }
    // Builders may name latent pools as workers.
    let pools = super::latent::check(&config.latent_pools, &workers, &mut at);
    let workers: HashSet<&str> = workers.union(&pools).copied().collect();
    let mut builders = HashSet::new();
    for b in &config.builders {
        if !builders.insert(b.name.get_ref().as_str()) {
            at(
                b.name.span(),
                format!("builder {:?} is defined twice", b.name.get_ref()),
            );
        }
        check_builder(b, &workers, &mut at);
    }
    super::schedulers::check(
        &config.schedulers,
        config.changes.as_ref(),
        &builders,
        &workers,
        &mut at,
    );
    errors
}

fn errors_push(at: &mut impl FnMut(Range<usize>, String), text: &str, key: &str, message: &str) {
    let start = text.find(key).unwrap_or(0);
    at(start..start, message.to_owned());
}

fn check_builder(
    b: &BuilderConfig,
    workers: &HashSet<&str>,
    at: &mut impl FnMut(Range<usize>, String),
) {
    let name = b.name.get_ref();
    if b.workers.is_empty() {
        at(b.name.span(), format!("builder {name:?} lists no workers"));
    }
    for w in &b.workers {
        if !workers.contains(w.get_ref().as_str()) {
            at(
                w.span(),
                format!("builder {name:?}: worker {:?} is not defined", w.get_ref()),
            );
        }
    }
    if b.steps.is_empty() {
        at(b.name.span(), format!("builder {name:?} has no steps"));
    }
    for (i, spanned) in b.steps.iter().enumerate() {
        let step = spanned.get_ref();
        let here = format!("builder {name:?}, {}", step.display_name(i + 1));
        check_step(step, spanned.span(), &here, at);
    }
}

/// A step's keys against its kind, and the values that have a fixed form.
fn check_step(
    step: &StepConfig,
    span: Range<usize>,
    here: &str,
    at: &mut impl FnMut(Range<usize>, String),
) {
    let (required, allowed) = step.kind.fields();
    let set = step.keys_set();
    for key in required {
        if !set.contains(key) {
            at(
                span.clone(),
                format!("{here}: a {:?} step needs `{key}`", step.kind),
            );
        }
    }
    for key in &set {
        if !required.contains(key) && !allowed.contains(key) {
            at(
                span.clone(),
                format!("{here}: `{key}` does not apply to a {:?} step", step.kind),
            );
        }
    }
    for (code, result) in step.decode_rc.iter().flatten() {
        if code.parse::<i64>().is_err() {
            at(
                result.span(),
                format!("{here}: decode_rc key {code:?} is not an exit code"),
            );
        }
        if result.get_ref().parse::<BuildResult>().is_err() {
            at(
                result.span(),
                format!("{here}: {:?} is not a result", result.get_ref()),
            );
        }
    }
    if let Some(m) = &step.mode {
        if u32::from_str_radix(m.get_ref().trim_start_matches("0o"), 8).is_err() {
            at(
                m.span(),
                format!(
                    "{here}: mode {:?} is not octal (e.g. \"0644\")",
                    m.get_ref()
                ),
            );
        }
    }
    if let Some(c) = &step.compress {
        if !matches!(c.get_ref().as_str(), "gz" | "bz2") {
            at(
                c.span(),
                format!("{here}: compress must be \"gz\" or \"bz2\""),
            );
        }
    }
    if let Some(m) = &step.git_mode {
        if !matches!(m.get_ref().as_str(), "incremental" | "full") {
            at(
                m.span(),
                format!("{here}: git_mode must be \"incremental\" or \"full\""),
            );
        }
    }
    if let Some(p) = &step.property_from {
        let ok = match p.get_ref().as_str() {
            "stdout" | "stripped" => true,
            other => other
                .strip_prefix("regex:")
                .is_some_and(|re| regex::Regex::new(re).is_ok()),
        };
        if !ok {
            at(p.span(), format!("{here}: property_from must be stdout, stripped or regex:PATTERN (a valid regex)"));
        }
    }
    if step.block_size.is_some_and(|b| b == 0 || b > 640 * 1024) {
        at(
            span,
            format!("{here}: block_size must be 1..=655360 (the wire's limit)"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[master]
data_dir = "data"

[[worker]]
name = "w1"
password = "pass"

[[builder]]
name = "b1"
workers = ["w1"]

[[builder.step]]
command = "echo hi"

[[scheduler]]
name = "force"
kind = "force"
builders = ["b1"]
"#;

    #[test]
    fn accepts_a_minimal_config() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.builders[0].steps[0].get_ref().workdir, "build");
        assert_eq!(c.master.pb_listen, "0.0.0.0:9989");
    }

    #[test]
    fn reports_every_error_with_its_line() {
        let bad = GOOD
            .replace("workers = [\"w1\"]", "workers = [\"w9\"]")
            .replace("builders = [\"b1\"]", "builders = [\"nope\"]");
        let errors = parse(&bad).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].location, Some((11, 12)));
        assert!(errors[0].message.contains("\"w9\" is not defined"));
        assert!(errors[1].message.contains("no builder \"nope\""));
    }

    #[test]
    fn checks_each_step_kind_s_keys() {
        let bad = GOOD.replace(
            "command = \"echo hi\"",
            "command = \"echo hi\"\n\n[[builder.step]]\nkind = \"upload\"\nworker_src = \"a\"\ndir = \"x\"\nmode = \"9\"",
        );
        let errors = parse(&bad).unwrap_err();
        let text: Vec<String> = errors.iter().map(|e| e.message.clone()).collect();
        assert!(
            text.iter().any(|m| m.contains("needs `master_dest`")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|m| m.contains("`dir` does not apply")),
            "{text:?}"
        );
        assert!(text.iter().any(|m| m.contains("not octal")), "{text:?}");
        assert!(errors.iter().all(|e| e.location.is_some()));
    }

    #[test]
    fn reports_syntax_errors_with_position() {
        let errors = parse("[master]\ndata_dir = \n").unwrap_err();
        assert_eq!(errors[0].location.map(|l| l.0), Some(2));
        let errors = parse(&GOOD.replace("command", "comand")).unwrap_err();
        assert!(errors[0].message.contains("comand"), "{errors:?}");
    }

    #[test]
    fn checks_ec2_pools() {
        let pool = "\n[[latent_pool]]\nname = \"cloud\"\ndriver = \"ec2\"\n\n[latent_pool.ec2]\nregion = \"us-east-1\"\ninstance_type = \"t3.micro\"\nami_name = \"x-*\"\ntags = { \"pbmaster:pool\" = \"no\" }\n";
        let errors = parse(&format!("{GOOD}{pool}")).unwrap_err();
        let text: Vec<String> = errors.iter().map(|e| e.message.clone()).collect();
        assert!(
            text.iter().any(|m| m.contains("needs ec2.ami_owners")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|m| m.contains("need `master_address`")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|m| m.contains("the master's own")),
            "{text:?}"
        );
        assert_eq!(
            text.iter().any(|m| m.contains("without the `ec2` feature")),
            !cfg!(feature = "ec2"),
            "{text:?}"
        );
        let good = pool
            .replace(
                "tags = { \"pbmaster:pool\" = \"no\" }",
                "ami_owners = [\"self\"]",
            )
            .replace(
                "driver = \"ec2\"",
                "driver = \"ec2\"\nmaster_address = \"ci:9989\"",
            );
        let result = parse(&format!("{GOOD}{good}"));
        assert_eq!(result.is_ok(), cfg!(feature = "ec2"), "{result:?}");
    }
}
