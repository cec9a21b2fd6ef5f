//! `[[builder]]`: which workers (or latent pools) may run a builder, and its steps.

use super::error::Problems;
use super::file::BuilderTable;
use super::properties;
use super::steps::{step, StepConfig};
use serde_json::{Map, Value as Json};
use std::collections::HashSet;

/// A builder.
#[derive(Debug, Clone)]
pub struct BuilderConfig {
    pub name: String,
    /// Worker and latent pool names, all defined.
    pub workers: Vec<String>,
    /// Directory under the worker's base directory (default: the builder's name).
    pub builddir: String,
    /// The properties every build of it starts with.
    pub properties: Map<String, Json>,
    pub steps: Vec<StepConfig>,
}

/// One `[[builder]]`; `workers` are the defined worker and pool names. `None` when
/// it is wrong (the problems say why).
pub(super) fn builder(
    t: &BuilderTable,
    workers: &HashSet<&str>,
    problems: &mut Problems,
) -> Option<BuilderConfig> {
    let name = t.name.get_ref();
    if t.workers.is_empty() {
        problems.at(t.name.span(), format!("builder {name:?} lists no workers"));
    }
    for w in &t.workers {
        if !workers.contains(w.get_ref().as_str()) {
            problems.at(
                w.span(),
                format!("builder {name:?}: worker {:?} is not defined", w.get_ref()),
            );
        }
    }
    if t.steps.is_empty() {
        problems.at(t.name.span(), format!("builder {name:?} has no steps"));
    }
    let steps: Vec<Option<StepConfig>> = t
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| step(s, i + 1, name, problems))
        .collect();
    Some(BuilderConfig {
        name: name.clone(),
        workers: t.workers.iter().map(|w| w.get_ref().clone()).collect(),
        builddir: t.builddir.clone().unwrap_or_else(|| name.clone()),
        properties: properties::json_object(&t.properties),
        steps: steps.into_iter().collect::<Option<_>>()?,
    })
}
