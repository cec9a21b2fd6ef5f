//! Raises the open-file soft limit, so 10,000 connections fit.

/// Raises the soft limit towards `wanted`, as far as the hard limit allows; says so
/// on stderr when that is not far enough, since connections past it will fail.
pub fn raise(wanted: u64) {
    match rlimit::increase_nofile_limit(wanted) {
        Ok(now) if now < wanted => eprintln!(
            "pbmaster-loadgen: the open-file limit is {now}, below the {wanted} wanted; \
             raise the hard limit (ulimit -Hn)"
        ),
        Ok(_) => {}
        Err(e) => eprintln!("pbmaster-loadgen: could not raise the open-file limit: {e}"),
    }
}
