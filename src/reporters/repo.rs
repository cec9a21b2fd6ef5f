//! Repository URLs as changes carry them (`https://host/owner/repo.git`,
//! `git@host:owner/repo.git`, `ssh://git@host:22/group/sub/project`, `git://...`)
//! to the path segments a service names a project by. Each segment must look like a
//! name (letters, digits, `.`, `_`, `-`; not `.` or `..`), so a hostile repository
//! string can never reach another part of the API.

/// Longest segment accepted (GitHub allows 100 characters in a name).
const MAX_SEGMENT: usize = 255;
/// GitLab subgroups nest at most 20 deep.
const MAX_SEGMENTS: usize = 21;

/// The path segments of a repository URL (`.git` dropped), or why not.
pub fn segments(url: &str) -> Result<Vec<String>, String> {
    let url = url.trim();
    let path = if let Some((scheme, rest)) = url.split_once("://") {
        if !matches!(scheme, "https" | "http" | "ssh" | "git" | "git+ssh") {
            return Err(format!("unsupported scheme {scheme:?}"));
        }
        // host[:port] then the path.
        match rest.split_once('/') {
            Some((_, path)) => path,
            None => return Err("no path".into()),
        }
    } else if let Some((host, path)) = url.split_once(':') {
        // scp-like: [user@]host:path
        if host.is_empty() || host.contains('/') {
            return Err("not a repository URL".into());
        }
        path
    } else {
        return Err("not a repository URL".into());
    };
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let parts: Vec<String> = path.split('/').map(str::to_owned).collect();
    if parts.len() < 2 || parts.len() > MAX_SEGMENTS {
        return Err("expected owner/name".into());
    }
    for p in &parts {
        let ok = !p.is_empty()
            && p.len() <= MAX_SEGMENT
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(format!("path segment {p:?} is not a name"));
        }
    }
    Ok(parts)
}

/// GitHub's `owner/repo`: exactly two segments.
pub fn github(url: &str) -> Result<(String, String), String> {
    match <[String; 2]>::try_from(segments(url)?) {
        Ok([owner, repo]) => Ok((owner, repo)),
        Err(_) => Err("a GitHub repository is owner/name".into()),
    }
}

/// GitLab's project id: the full path, URL-encoded (`group%2Fsub%2Fproject`).
pub fn gitlab(url: &str) -> Result<String, String> {
    Ok(segments(url)?.join("%2F"))
}

/// Whether `rev` is a commit id (hex, 7 to 64 characters).
pub fn is_sha(rev: &str) -> bool {
    (7..=64).contains(&rev.len()) && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_usual_forms() {
        let want = Ok(("octo".to_owned(), "hello.rs".to_owned()));
        for url in [
            "https://github.com/octo/hello.rs",
            "https://github.com/octo/hello.rs.git",
            "http://ghe.example.org/octo/hello.rs/",
            "git@github.com:octo/hello.rs.git",
            "ssh://git@github.com:22/octo/hello.rs.git",
            "git://github.com/octo/hello.rs",
        ] {
            assert_eq!(github(url), want, "{url}");
        }
        assert_eq!(
            gitlab("git@gitlab.example.org:group/sub/project.git").as_deref(),
            Ok("group%2Fsub%2Fproject")
        );
    }

    #[test]
    fn rejects_paths_that_could_escape() {
        for url in [
            "https://github.com/octo/../admin",
            "https://github.com/octo/x?y=1",
            "https://github.com/octo/x#frag",
            "https://github.com/octo/a%2F..",
            "https://github.com/octo/sp ace",
            "https://github.com/only-one",
            "https://github.com/a/b/c",
            "file:///etc/passwd",
            "/local/path",
            "https://github.com//x",
        ] {
            assert!(github(url).is_err(), "{url}");
        }
        assert!(gitlab("https://gitlab.com/g/../../x").is_err());
        assert!(is_sha("0123abcdef"));
        assert!(!is_sha("main"));
        assert!(!is_sha("0123/../x"));
    }
}
