//! Config problems with their place in the file, collected so that one check reports
//! them all.

use std::fmt;
use std::ops::Range;

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

/// The problems found so far in one config text.
#[derive(Debug)]
pub struct Problems<'t> {
    text: &'t str,
    found: Vec<ConfigError>,
}

impl<'t> Problems<'t> {
    pub fn new(text: &'t str) -> Problems<'t> {
        Problems {
            text,
            found: Vec::new(),
        }
    }

    /// How many problems are recorded so far.
    pub fn len(&self) -> usize {
        self.found.len()
    }

    /// Records a problem at a byte span of the text.
    pub fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.found.push(ConfigError {
            location: Some(position(self.text, span.start)),
            message: message.into(),
        });
    }

    /// A problem at a byte span, located but not recorded: a warning.
    pub fn located(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            location: Some(position(self.text, span.start)),
            message: message.into(),
        }
    }

    /// The 1-based line and column of a byte offset of the text.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        position(self.text, offset)
    }

    /// The config if nothing was wrong, else every problem. A part that could not be
    /// made (`None`) has always recorded why.
    pub fn finish<T>(mut self, made: Option<T>) -> Result<T, Vec<ConfigError>> {
        match made {
            Some(value) if self.found.is_empty() => Ok(value),
            None if self.found.is_empty() => {
                self.found.push(ConfigError {
                    location: None,
                    message: "the configuration is invalid".into(),
                });
                Err(self.found)
            }
            _ => Err(self.found),
        }
    }
}

/// The 1-based line and column of a byte offset.
pub fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
