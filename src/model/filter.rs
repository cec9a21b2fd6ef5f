//! Which changes a change-driven scheduler cares about: a branch (exact or a regular
//! expression) and file globs.

use regex::{Regex, RegexBuilder};

/// Bound on a compiled expression, so a pathological pattern cannot eat memory.
const REGEX_SIZE: usize = 1 << 20;

/// A regular expression that must match a whole string.
pub fn whole_regex(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_SIZE)
        .build()
        .map_err(|e| e.to_string())
}

/// A file glob: `*` is any run of characters within one path segment, `?` one
/// character other than `/`, `**` anything across segments (`dir/**/x` also matches
/// `dir/x`). Everything else is literal. Matching is linear in the path's length.
#[derive(Debug, Clone)]
pub struct Glob(Regex);

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("an empty pattern matches nothing".into());
        }
        let mut re = String::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    if chars.peek() == Some(&'/') {
                        chars.next();
                        re.push_str("(?:.*/)?");
                    } else {
                        re.push_str(".*");
                    }
                }
                '*' => re.push_str("[^/]*"),
                '?' => re.push_str("[^/]"),
                c => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
            }
        }
        whole_regex(&re).map(Glob)
    }

    pub fn matches(&self, path: &str) -> bool {
        self.0.is_match(path)
    }
}

/// Which branches pass.
#[derive(Debug, Clone)]
pub enum BranchFilter {
    Any,
    Exact(String),
    /// Matched against the whole branch name.
    Pattern(Regex),
}

/// A change passes when its branch passes and, if there are globs, at least one of its
/// files matches one of them.
#[derive(Debug, Clone)]
pub struct ChangeFilter {
    pub branch: BranchFilter,
    pub files: Vec<Glob>,
}

impl ChangeFilter {
    /// Whether a change on `branch` touching `files` passes.
    pub fn matches(&self, branch: Option<&str>, files: &[String]) -> bool {
        let branch_ok = match &self.branch {
            BranchFilter::Any => true,
            BranchFilter::Exact(b) => branch == Some(b.as_str()),
            BranchFilter::Pattern(re) => branch.is_some_and(|b| re.is_match(b)),
        };
        branch_ok
            && (self.files.is_empty()
                || files
                    .iter()
                    .any(|f| self.files.iter().any(|g| g.matches(f))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str) -> Glob {
        Glob::new(p).unwrap()
    }

    #[test]
    fn globs() {
        assert!(glob("*.rs").matches("main.rs"));
        assert!(!glob("*.rs").matches("src/main.rs"));
        assert!(glob("src/**").matches("src/a/b/c.rs"));
        assert!(glob("**/*.md").matches("README.md"));
        assert!(glob("**/*.md").matches("doc/x/y.md"));
        assert!(glob("doc/**/x").matches("doc/x"));
        assert!(glob("a?c").matches("abc"));
        assert!(!glob("a?c").matches("a/c"));
        assert!(
            glob("a.(b)+").matches("a.(b)+"),
            "regex characters are literal"
        );
        assert!(!glob("a.c").matches("abc"));
        assert!(Glob::new("").is_err());
    }

    fn passes(f: &ChangeFilter, branch: Option<&str>, files: &[&str]) -> bool {
        let files: Vec<String> = files.iter().map(|f| f.to_string()).collect();
        f.matches(branch, &files)
    }

    fn filter(branch: BranchFilter, files: &[&str]) -> ChangeFilter {
        ChangeFilter {
            branch,
            files: files.iter().map(|f| glob(f)).collect(),
        }
    }

    #[test]
    fn branch_and_file_filters() {
        let f = filter(BranchFilter::Exact("main".into()), &[]);
        assert!(passes(&f, Some("main"), &[]));
        assert!(!passes(&f, Some("main2"), &[]));
        assert!(!passes(&f, None, &[]));

        let f = filter(
            BranchFilter::Pattern(whole_regex("release/.*").unwrap()),
            &["src/**"],
        );
        assert!(passes(&f, Some("release/1.0"), &["README", "src/a.rs"]));
        assert!(!passes(&f, Some("release/1.0"), &["README"]));
        assert!(
            !passes(&f, Some("xrelease/1.0"), &["src/a.rs"]),
            "whole match"
        );
        assert!(!passes(&f, Some("dev"), &["src/a.rs"]));

        let any = filter(BranchFilter::Any, &[]);
        assert!(passes(&any, None, &[]));
    }
}
