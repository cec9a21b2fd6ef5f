//! What the EC2 API's errors mean to the driver: which codes are capacity shortages,
//! which are worth another try, which move a launch to its next choice, which spot
//! request states are interruption notices; and the back-off between tries.

use super::super::driver::DriverError;
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use std::time::Duration;

/// Error codes that mean "no capacity for this request now"; a spot launch falls back
/// to on-demand on them.
pub(super) const CAPACITY_CODES: [&str; 6] = [
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "SpotMaxPriceTooLow",
    "MaxSpotInstanceCountExceeded",
    "UnfulfillableCapacity",
    "InsufficientHostCapacity",
];

/// Error codes after which a launch tries its next choice of subnet and instance
/// type: no capacity there, no free address in the subnet, the type not offered in
/// the subnet's zone.
pub(super) const NEXT_CHOICE_CODES: [&str; 2] =
    ["InsufficientFreeAddressesInSubnet", "Unsupported"];

/// Error codes of a throttled call (counted apart in the metrics).
pub(super) const THROTTLE_CODES: [&str; 5] = [
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "TooManyRequestsException",
];

/// Error codes worth another try: the request was throttled or the service failed.
pub(super) const TRANSIENT_CODES: [&str; 9] = [
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "TooManyRequestsException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
];

/// 0.5 s, 1 s, 2 s … capped at 16 s, with up to 50 % random extra so that many
/// instances retrying at once spread out.
pub(super) fn backoff(attempt: u32) -> Duration {
    let base = 500u64 << attempt.saturating_sub(1).min(5);
    let mut r = [0u8; 2];
    let jitter = match getrandom::fill(&mut r) {
        Ok(()) => u64::from(u16::from_le_bytes(r)) * base / 2 / 65_535,
        Err(_) => 0,
    };
    Duration::from_millis(base + jitter)
}

/// The driver's words for a failed call: the cloud's code and message, and whether
/// another try may succeed.
pub(super) fn classify<E>(what: &str, e: &SdkError<E, HttpResponse>) -> DriverError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            DriverError {
                message: format!("{what}: {}", aws_sdk_ec2::error::DisplayErrorContext(e)),
                transient: true,
                code: None,
            }
        }
        _ => {
            let code = e.code().unwrap_or("");
            let message = e.message().unwrap_or("");
            let transient = TRANSIENT_CODES.contains(&code)
                || (status.is_some_and(|s| s >= 500) && !CAPACITY_CODES.contains(&code));
            let text = match (code.is_empty(), status) {
                (false, _) => format!("{what}: {code}: {message}"),
                (true, Some(s)) => format!("{what}: HTTP {s}: {message}"),
                (true, None) => format!("{what}: {}", aws_sdk_ec2::error::DisplayErrorContext(e)),
            };
            DriverError {
                message: text,
                transient,
                code: (!code.is_empty()).then(|| code.to_owned()),
            }
        }
    }
}

pub(super) fn is_capacity_error(e: &DriverError) -> bool {
    e.code
        .as_deref()
        .is_some_and(|c| CAPACITY_CODES.contains(&c))
}

/// A launch that failed this way may succeed later: throttling, server errors, and
/// no capacity for the instance type now (capacity comes and goes; only a spot
/// request falls back to on-demand at once).
pub(super) fn launch_again(e: &DriverError) -> bool {
    e.transient || is_capacity_error(e)
}

pub(super) fn is_not_found(e: &DriverError) -> bool {
    e.code.as_deref() == Some("InvalidInstanceID.NotFound")
}

/// Whether a spot request's status code says the cloud is taking the instance back
/// (`marked-for-termination`, `marked-for-stop`, `instance-terminated-by-price`, ...).
pub(super) fn is_interruption_notice(code: &str) -> bool {
    [
        "marked-for-",
        "instance-terminated-",
        "instance-stopped-",
        "instance-hibernated-",
    ]
    .iter()
    .any(|p| code.starts_with(p))
}

pub(super) fn next_choice(e: &DriverError) -> bool {
    e.code
        .as_deref()
        .is_some_and(|c| NEXT_CHOICE_CODES.contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) >= Duration::from_millis(500));
        assert!(backoff(1) <= Duration::from_millis(750));
        assert!(backoff(3) >= Duration::from_secs(2));
        assert!(backoff(30) <= Duration::from_secs(24));
    }

    #[test]
    fn spot_notices_are_told_from_other_request_states() {
        for code in [
            "marked-for-termination",
            "marked-for-stop",
            "instance-terminated-by-price",
            "instance-terminated-no-capacity",
        ] {
            assert!(is_interruption_notice(code), "{code}");
        }
        for code in [
            "fulfilled",
            "pending-fulfillment",
            "request-canceled-and-instance-running",
        ] {
            assert!(!is_interruption_notice(code), "{code}");
        }
    }

    #[test]
    fn capacity_errors_are_recognised_by_code() {
        let coded = |code: &str| DriverError {
            message: format!("RunInstances: {code}: ..."),
            transient: false,
            code: Some(code.to_owned()),
        };
        assert!(is_capacity_error(&coded("InsufficientInstanceCapacity")));
        assert!(!is_capacity_error(&coded("InvalidAMIID.NotFound")));
        assert!(launch_again(&coded("InsufficientInstanceCapacity")));
        assert!(!launch_again(&coded("InvalidAMIID.NotFound")));
        assert!(is_not_found(&coded("InvalidInstanceID.NotFound")));
    }
}
