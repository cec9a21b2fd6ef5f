//! `startCommand` arguments for a shell step, in the form the worker's command
//! version expects (the table in the protocol reference, §5.9).

use crate::config::{CommandLine, StepConfig};
use crate::worker::CommandVersion;
use pbwire::jelly::Value;
use std::collections::BTreeMap;

/// The argument dictionary of `startCommand(ref, id, "shell", args)`.
pub fn shell_args(step: &StepConfig, commands: &BTreeMap<String, String>) -> Vec<(Value, Value)> {
    let version = commands.get("shell").map(|v| CommandVersion::parse(v));
    let t = Value::text;
    let mut args = vec![
        (t("workdir"), t(&step.workdir)),
        (
            t("command"),
            match &step.command {
                CommandLine::Shell(s) => t(s),
                CommandLine::Argv(argv) => Value::List(argv.iter().map(|a| t(a)).collect()),
            },
        ),
        (
            t("env"),
            if step.env.is_empty() {
                Value::None
            } else {
                Value::Dict(step.env.iter().map(|(k, v)| (t(k), t(v))).collect())
            },
        ),
        (t("want_stdout"), Value::Bool(true)),
        (t("want_stderr"), Value::Bool(true)),
        (
            t("logfiles"),
            Value::Dict(step.logfiles.iter().map(|(k, v)| (t(k), t(v))).collect()),
        ),
        (
            t("timeout"),
            step.timeout.map_or(Value::None, |s| Value::int(s as i64)),
        ),
        (
            t("maxTime"),
            step.max_time.map_or(Value::None, |s| Value::int(s as i64)),
        ),
        (t("logEnviron"), Value::Bool(true)),
    ];
    match version {
        // A worker too old to report versions also wants the workdir as `dir`.
        None => args.push((t("dir"), t(&step.workdir))),
        // Before 2.7 the master may not set usePTY at all.
        Some(v) if v.below(2, 7) => {}
        // Before 3.0, "slave-config" defers to the worker's own setting; 3.x needs a bool.
        Some(v) if v.below(3, 0) => args.push((t("usePTY"), t("slave-config"))),
        Some(_) => args.push((t("usePTY"), Value::Bool(false))),
    }
    if let Some(signal) = &step.interrupt_signal {
        if version.is_some_and(|v| !v.below(2, 15)) {
            args.push((t("interruptSignal"), t(signal)));
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step() -> StepConfig {
        crate::config::parse(
            "[master]\ndata_dir='d'\n[[worker]]\nname='w'\npassword='p'\n[[builder]]\nname='b'\nworkers=['w']\n\
             [[builder.step]]\ncommand=['make','-j2']\ninterrupt_signal='TERM'\n",
        )
        .unwrap()
        .builders[0]
            .steps[0]
            .clone()
    }

    fn get<'a>(args: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
        args.iter().find(|(k, _)| k.is_str(key)).map(|(_, v)| v)
    }

    #[test]
    fn modern_workers_get_a_bool_pty_and_the_signal() {
        let commands = BTreeMap::from([("shell".to_owned(), "3.3".to_owned())]);
        let args = shell_args(&step(), &commands);
        assert_eq!(get(&args, "usePTY"), Some(&Value::Bool(false)));
        assert_eq!(get(&args, "interruptSignal"), Some(&Value::text("TERM")));
        assert_eq!(
            get(&args, "command"),
            Some(&Value::List(vec![Value::text("make"), Value::text("-j2")]))
        );
    }

    #[test]
    fn legacy_workers_get_slave_config() {
        let commands = BTreeMap::from([("shell".to_owned(), "2.16".to_owned())]);
        let args = shell_args(&step(), &commands);
        assert_eq!(get(&args, "usePTY"), Some(&Value::text("slave-config")));
        let old = BTreeMap::from([("shell".to_owned(), "2.14".to_owned())]);
        assert_eq!(get(&shell_args(&step(), &old), "interruptSignal"), None);
        assert!(get(&shell_args(&step(), &BTreeMap::new()), "dir").is_some());
    }
}
