//! What the git poller reads from git and decides, without running anything: ref
//! names it accepts, `git ls-remote` output, which commits a poll turns into changes,
//! and one commit's description.

use std::collections::BTreeMap;

/// A branch name git would accept (`git check-ref-format` rules) that also cannot be
/// taken for an option or a revision expression. The poller refuses anything else,
/// whether it comes from the config or from the repository.
pub fn check_branch(name: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("branch {name:?} {why}"));
    if name.is_empty() || name.len() > 255 {
        return bad("must have 1 to 255 bytes");
    }
    if name.starts_with('-') {
        return bad("starts with '-'");
    }
    if name
        .bytes()
        .any(|b| b < 0x20 || b == 0x7f || b" ~^:?*[\\".contains(&b))
    {
        return bad("has a space, a control character or one of ~^:?*[\\");
    }
    if name.contains("..") || name.contains("@{") || name == "@" || name.contains("//") {
        return bad("has '..', '@{', '//' or is '@'");
    }
    if name.ends_with('/') || name.ends_with('.') || name.starts_with('/') {
        return bad("starts or ends with '/' or ends with '.'");
    }
    if name
        .split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        return bad("has a part starting with '.' or ending with '.lock'");
    }
    Ok(())
}

/// True for a full object name (SHA-1 or SHA-256, lower-case hex).
pub fn is_object_name(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The branch heads in `git ls-remote --heads` output. Lines that are not
/// `<object name>\trefs/heads/<valid branch>` are skipped and counted.
pub fn heads(output: &str) -> (BTreeMap<String, String>, usize) {
    let mut heads = BTreeMap::new();
    let mut skipped = 0;
    for line in output.lines().filter(|l| !l.is_empty()) {
        let parsed = line.split_once('\t').and_then(|(rev, name)| {
            let branch = name.strip_prefix("refs/heads/")?;
            (is_object_name(rev) && check_branch(branch).is_ok())
                .then(|| (branch.to_owned(), rev.to_owned()))
        });
        match parsed {
            Some((branch, rev)) => {
                heads.insert(branch, rev);
            }
            None => skipped += 1,
        }
    }
    (heads, skipped)
}

/// What a poll does about one branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Changes for the commits reachable from `new` and from none of `not`
    /// (oldest first); a force-push that leaves none gives one for `new`.
    Log { new: String, not: Vec<String> },
}

/// The plan of one poll: per changed branch, which commits to describe. `last` is
/// what the store remembers; `None` before the first poll, which only records the
/// heads (so following a repository does not replay its history).
pub fn plan(
    last: Option<&BTreeMap<String, String>>,
    now: &BTreeMap<String, String>,
) -> BTreeMap<String, Step> {
    let Some(last) = last else {
        return BTreeMap::new();
    };
    let mut steps = BTreeMap::new();
    for (branch, new) in now {
        let not = match last.get(branch) {
            Some(old) if old == new => continue,
            Some(old) => vec![old.clone()],
            // A new branch: what no branch known before had.
            None => last.values().cloned().collect(),
        };
        steps.insert(
            branch.clone(),
            Step::Log {
                new: new.clone(),
                not,
            },
        );
    }
    steps
}

/// One commit as `git show -s -z --format=%an <%ae>%x00%ct%x00%B` prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    pub author: String,
    pub when: f64,
    pub comments: String,
}

pub fn commit(output: &[u8]) -> Result<Commit, String> {
    let text = String::from_utf8_lossy(output);
    let mut parts = text.splitn(3, '\0');
    let author = parts.next().unwrap_or_default().to_owned();
    let when = parts
        .next()
        .and_then(|t| t.trim().parse::<i64>().ok())
        .ok_or("git show gave no commit time")?;
    let comments = parts
        .next()
        .unwrap_or_default()
        .trim_end_matches('\0')
        .trim_end()
        .to_owned();
    Ok(Commit {
        author,
        when: when.max(0) as f64,
        comments,
    })
}

/// The paths of `git diff-tree -z --name-only` output.
pub fn files(output: &[u8]) -> Vec<String> {
    output
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

/// The object names `git rev-list` printed, one a line.
pub fn revisions(output: &str) -> Vec<String> {
    output
        .lines()
        .filter(|l| is_object_name(l))
        .map(str::to_owned)
        .collect()
}

/// `repo` as it may be shown: a URL's user and password are dropped.
pub fn public_repo(repo: &str) -> String {
    let Some((scheme, rest)) = repo.split_once("://") else {
        return repo.to_owned();
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => repo.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "ae50284b83b387a364927267fe46b1eb437f8146";
    const B: &str = "0123456789abcdef0123456789abcdef01234567";
    const C: &str = "fedcba9876543210fedcba9876543210fedcba98";

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn accepts_ordinary_branch_names() {
        for ok in ["main", "release/1.2", "feature/a-b_c", "v1.0-rc", "x@y"] {
            assert_eq!(check_branch(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_option_looking_and_malformed_branch_names() {
        for bad in [
            "",
            "-f",
            "--upload-pack=touch x",
            "a b",
            "a..b",
            "a~1",
            "HEAD^",
            "a:b",
            "x*",
            "a\nb",
            "a\\b",
            "/a",
            "a/",
            "a.",
            "a//b",
            ".hidden",
            "a/.b",
            "a.lock",
            "@",
            "a@{1}",
            "[x",
        ] {
            assert!(check_branch(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn reads_heads_and_skips_the_rest() {
        let out = format!(
            "{A}\trefs/heads/main\n{B}\trefs/heads/release/1\n{C}\trefs/tags/v1\n\
             zz\trefs/heads/bad\n{C}\trefs/heads/-x\n{C}\trefs/heads/a..b\n"
        );
        let (h, skipped) = heads(&out);
        assert_eq!(h, map(&[("main", A), ("release/1", B)]));
        assert_eq!(skipped, 4);
    }

    #[test]
    fn a_first_poll_only_records() {
        assert!(plan(None, &map(&[("main", A)])).is_empty());
    }

    #[test]
    fn plans_moved_new_and_unchanged_branches() {
        let last = map(&[("main", A), ("dev", B)]);
        let now = map(&[("main", C), ("dev", B), ("topic", C)]);
        let p = plan(Some(&last), &now);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(
            p["main"],
            Step::Log {
                new: C.into(),
                not: vec![A.into()]
            }
        );
        let Step::Log { not, .. } = &p["topic"];
        assert_eq!(not.len(), 2, "a new branch excludes every known head");
        // A deleted branch causes nothing.
        assert!(plan(Some(&last), &map(&[("main", A)])).is_empty());
    }

    #[test]
    fn parses_a_commit_and_its_files() {
        let c = commit(b"Ann <ann@x.org>\x001700000000\x00fix: a\n\nbody\n\n").unwrap();
        assert_eq!(c.author, "Ann <ann@x.org>");
        assert_eq!(c.when, 1_700_000_000.0);
        assert_eq!(c.comments, "fix: a\n\nbody");
        assert!(commit(b"Ann\x00soon\x00x").is_err());
        assert_eq!(files(b"a.c\x00dir/b c.txt\x00"), ["a.c", "dir/b c.txt"]);
        assert_eq!(revisions(&format!("{A}\nnoise\n{B}\n")), [A, B]);
    }

    #[test]
    fn credentials_in_urls_are_not_shown() {
        assert_eq!(
            public_repo("https://user:tok@example.org/r.git"),
            "https://example.org/r.git"
        );
        assert_eq!(
            public_repo("ssh://git@example.org/r@x.git"),
            "ssh://example.org/r@x.git"
        );
        assert_eq!(public_repo("/srv/git/r.git"), "/srv/git/r.git");
        assert_eq!(public_repo("git@host:r.git"), "git@host:r.git");
    }
}
