//! The `ec2` driver: instances from the EC2 API (or any EC2-compatible one).
//!
//! Leak-proofing lives here as much as in the coordinator: every launch carries an
//! idempotency `ClientToken` and is tagged at creation with the master's id, the pool
//! and the instance's name, so [`Driver::owned`] can list exactly this master's
//! instances after a restart; a launch retried after an ambiguous failure first looks
//! for an instance already bearing its name (emulators do not all honour client
//! tokens). Every call goes through one retry loop with backoff under the pool's call
//! budget; the SDK's own retries are off so the budget counts every request.

use super::budget::CallBudget;
use super::driver::{CloudState, Driver, DriverError, DriverFuture, LaunchSpec, OwnedInstance};
use crate::config::Ec2Settings;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, IamInstanceProfileSpecification,
    InstanceInterruptionBehavior, InstanceMarketOptionsRequest, InstanceStateName, InstanceType,
    MarketType, ResourceType, ShutdownBehavior, SpotInstanceType, SpotMarketOptions, Tag,
    TagSpecification,
};
use aws_sdk_ec2::types::{
    HttpTokensState, InstanceMetadataEndpointState, InstanceMetadataOptionsRequest,
};
use aws_sdk_ec2::Client;
use base64::Engine;
use std::future::Future;
use std::time::Duration;
use tokio::sync::OnceCell;
use tracing::{info, warn};

/// Tags every instance carries; the first decides ownership.
pub const TAG_MASTER: &str = "pbmaster:master";
pub const TAG_POOL: &str = "pbmaster:pool";
pub const TAG_INSTANCE: &str = "pbmaster:instance";

/// Tries of one call before its error is final (transient errors only).
const MAX_ATTEMPTS: u32 = 6;
/// How long one HTTP attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Error codes that mean "no capacity for this request now"; a spot launch falls back
/// to on-demand on them.
const CAPACITY_CODES: [&str; 6] = [
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "SpotMaxPriceTooLow",
    "MaxSpotInstanceCountExceeded",
    "UnfulfillableCapacity",
    "InsufficientHostCapacity",
];

/// Error codes worth another try: the request was throttled or the service failed.
const TRANSIENT_CODES: [&str; 9] = [
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

#[derive(Debug)]
pub struct Ec2Driver {
    settings: Ec2Settings,
    master_id: String,
    pool: String,
    client: OnceCell<Client>,
    /// The resolved image and its root device, found once.
    image: OnceCell<(String, Option<String>)>,
    budget: CallBudget,
}

impl Ec2Driver {
    pub fn new(settings: Ec2Settings, master_id: &str, pool: &str) -> Ec2Driver {
        let budget = CallBudget::per_minute(settings.calls_per_minute);
        Ec2Driver {
            settings,
            master_id: master_id.to_owned(),
            pool: pool.to_owned(),
            client: OnceCell::new(),
            image: OnceCell::new(),
            budget,
        }
    }

    /// The client, built on first use (loading credentials is asynchronous). The
    /// standard credential chain caches and refreshes what it finds.
    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .region(Region::new(self.settings.region.clone()))
                    .retry_config(RetryConfig::disabled())
                    .timeout_config(
                        TimeoutConfig::builder()
                            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                            .build(),
                    );
                if let Some(profile) = &self.settings.profile {
                    loader = loader.profile_name(profile);
                }
                let shared = loader.load().await;
                let mut config = aws_sdk_ec2::config::Builder::from(&shared);
                if let Some(url) = &self.settings.endpoint_url {
                    config = config.endpoint_url(url);
                }
                Client::from_conf(config.build())
            })
            .await
    }

    /// Runs `op` until it succeeds, fails for good, or has been tried
    /// [`MAX_ATTEMPTS`] times; every try spends from the call budget.
    async fn call<T, E, F, Fut>(&self, what: &str, op: F) -> Result<T, DriverError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        self.call_tries(what, MAX_ATTEMPTS, op).await
    }

    /// [`Self::call`] with at most `tries` tries.
    async fn call_tries<T, E, F, Fut>(
        &self,
        what: &str,
        tries: u32,
        mut op: F,
    ) -> Result<T, DriverError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut attempt = 0;
        loop {
            self.budget.take().await;
            attempt += 1;
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let e = classify(what, &e);
                    if !e.transient || attempt >= tries {
                        return Err(e);
                    }
                    warn!(pool = %self.pool, "{e}; trying again ({attempt}/{MAX_ATTEMPTS})");
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
    }

    /// The image to launch: the configured id, or the newest image matching the name
    /// pattern among the configured owners; with its root device when the volume size
    /// is set. An id alone needs no call (RunInstances says if it is wrong).
    async fn image(&self) -> Result<&(String, Option<String>), DriverError> {
        self.image
            .get_or_try_init(|| async {
                if let (Some(id), None) = (&self.settings.ami, self.settings.volume_size) {
                    return Ok((id.clone(), None));
                }
                let client = self.client().await;
                let images = self
                    .call("DescribeImages", || {
                        let mut req = client.describe_images();
                        if let Some(id) = &self.settings.ami {
                            req = req.image_ids(id);
                        }
                        if let Some(pattern) = &self.settings.ami_name {
                            req = req
                                .filters(Filter::builder().name("name").values(pattern).build())
                                .set_owners(Some(self.settings.ami_owners.clone()));
                        }
                        req.send()
                    })
                    .await?;
                let newest = images.images().iter().max_by(|a, b| {
                    (a.creation_date(), a.name()).cmp(&(b.creation_date(), b.name()))
                });
                let wanted = self
                    .settings
                    .ami
                    .as_deref()
                    .or(self.settings.ami_name.as_deref())
                    .unwrap_or_default();
                let image = newest.ok_or_else(|| {
                    DriverError::permanent(format!("no image matches {wanted:?}"))
                })?;
                let id = image.image_id().unwrap_or(wanted).to_owned();
                if self.settings.ami_name.is_some() {
                    info!(pool = %self.pool, image = %id, name = image.name().unwrap_or(""), "chose the newest matching image");
                }
                Ok((id, image.root_device_name().map(str::to_owned)))
            })
            .await
    }

    fn tags(&self, spec: &LaunchSpec) -> Vec<Tag> {
        let ours = [
            (TAG_MASTER, self.master_id.as_str()),
            (TAG_POOL, spec.pool.as_str()),
            (TAG_INSTANCE, spec.name.as_str()),
            ("Name", spec.name.as_str()),
        ];
        let extra = self
            .settings
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        ours.into_iter()
            .chain(extra)
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect()
    }

    /// One RunInstances call (spot or on-demand) with everything the pool configures.
    async fn run(&self, spec: &LaunchSpec, spot: bool, token: &str) -> Result<String, DriverError> {
        let (image, root_device) = self.image().await?.clone();
        let client = self.client().await;
        let s = &self.settings;
        let tags = self.tags(spec);
        let user_data = base64::engine::general_purpose::STANDARD.encode(&spec.user_data);
        // One try: a retry must first look for what a failed try may have launched.
        let out = self
            .call_tries("RunInstances", 1, || {
                let mut req = client
                    .run_instances()
                    .image_id(&image)
                    .instance_type(InstanceType::from(s.instance_type.as_str()))
                    .min_count(1)
                    .max_count(1)
                    .client_token(token)
                    .user_data(&user_data)
                    .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
                    .metadata_options(imdsv2_only())
                    .set_subnet_id(s.subnet_id.clone())
                    .set_key_name(s.key_name.clone());
                if !s.security_group_ids.is_empty() {
                    req = req.set_security_group_ids(Some(s.security_group_ids.clone()));
                }
                if let Some(profile) = &s.instance_profile {
                    let p = IamInstanceProfileSpecification::builder();
                    let p = if profile.starts_with("arn:") {
                        p.arn(profile)
                    } else {
                        p.name(profile)
                    };
                    req = req.iam_instance_profile(p.build());
                }
                if let (Some(size), Some(device)) = (s.volume_size, &root_device) {
                    let ebs = EbsBlockDevice::builder()
                        .volume_size(size)
                        .delete_on_termination(true)
                        .build();
                    req = req.block_device_mappings(
                        BlockDeviceMapping::builder()
                            .device_name(device)
                            .ebs(ebs)
                            .build(),
                    );
                }
                for resource in [ResourceType::Instance, ResourceType::Volume] {
                    req = req.tag_specifications(
                        TagSpecification::builder()
                            .resource_type(resource)
                            .set_tags(Some(tags.clone()))
                            .build(),
                    );
                }
                if spot {
                    let options = SpotMarketOptions::builder()
                        .spot_instance_type(SpotInstanceType::OneTime)
                        .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
                        .set_max_price(s.spot_max_price.clone())
                        .build();
                    req = req.instance_market_options(
                        InstanceMarketOptionsRequest::builder()
                            .market_type(MarketType::Spot)
                            .spot_options(options)
                            .build(),
                    );
                }
                req.send()
            })
            .await?;
        out.instances()
            .first()
            .and_then(|i| i.instance_id())
            .map(str::to_owned)
            .ok_or_else(|| DriverError::permanent("RunInstances answered without an instance"))
    }

    /// This master's instances in the pool that are not terminated, optionally only
    /// the one named `name`.
    async fn find(&self, name: Option<&str>) -> Result<Vec<OwnedInstance>, DriverError> {
        let client = self.client().await;
        let mut found = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .call("DescribeInstances", || {
                    let mut req = client
                        .describe_instances()
                        .filters(tag_filter(TAG_MASTER, &self.master_id))
                        .filters(tag_filter(TAG_POOL, &self.pool))
                        .filters(
                            Filter::builder()
                                .name("instance-state-name")
                                .set_values(Some(
                                    ["pending", "running", "stopping", "stopped"]
                                        .map(String::from)
                                        .to_vec(),
                                ))
                                .build(),
                        )
                        .set_next_token(next.clone());
                    if let Some(name) = name {
                        req = req.filters(tag_filter(TAG_INSTANCE, name));
                    }
                    req.send()
                })
                .await?;
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                let Some(id) = i.instance_id() else { continue };
                let tag = |key: &str| {
                    i.tags()
                        .iter()
                        .find(|t| t.key() == Some(key))
                        .and_then(|t| t.value())
                        .map(str::to_owned)
                };
                found.push(OwnedInstance {
                    cloud_id: id.to_owned(),
                    name: tag(TAG_INSTANCE),
                });
            }
            next = page
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if next.is_none() {
                return Ok(found);
            }
        }
    }
}

fn tag_filter(key: &str, value: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{key}"))
        .values(value)
        .build()
}

/// 0.5 s, 1 s, 2 s … capped at 16 s, with up to 50 % random extra so that many
/// instances retrying at once spread out.
fn backoff(attempt: u32) -> Duration {
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
fn classify<E>(what: &str, e: &SdkError<E, HttpResponse>) -> DriverError
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

fn is_capacity_error(e: &DriverError) -> bool {
    e.code
        .as_deref()
        .is_some_and(|c| CAPACITY_CODES.contains(&c))
}

/// A launch that failed this way may succeed later: throttling, server errors, and
/// no capacity for the instance type now (capacity comes and goes; only a spot
/// request falls back to on-demand at once).
fn launch_again(e: &DriverError) -> bool {
    e.transient || is_capacity_error(e)
}

fn is_not_found(e: &DriverError) -> bool {
    e.code.as_deref() == Some("InvalidInstanceID.NotFound")
}

impl Driver for Ec2Driver {
    fn launch<'a>(&'a self, spec: &'a LaunchSpec) -> DriverFuture<'a, String> {
        Box::pin(async move {
            let mut last = None;
            for round in 0..MAX_ATTEMPTS {
                if round > 0 {
                    tokio::time::sleep(backoff(round)).await;
                    // The failed call may have launched it after all: never launch twice.
                    if let Some(found) = self.find(Some(&spec.name)).await?.into_iter().next() {
                        info!(pool = %self.pool, instance = %spec.name, "found the instance a failed launch made");
                        return Ok(found.cloud_id);
                    }
                }
                let attempt = if self.settings.spot {
                    match self.run(spec, true, &spec.client_token).await {
                        Err(e) if is_capacity_error(&e) => {
                            warn!(pool = %self.pool, "no spot capacity ({e}); launching on demand");
                            let token = format!("{}-od", spec.client_token);
                            self.run(spec, false, &token).await
                        }
                        other => other,
                    }
                } else {
                    self.run(spec, false, &spec.client_token).await
                };
                match attempt {
                    Ok(id) => return Ok(id),
                    Err(e) if launch_again(&e) => {
                        warn!(pool = %self.pool, "{e}; trying again ({}/{MAX_ATTEMPTS})", round + 1);
                        last = Some(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            // Out of tries on errors that may pass: the build waits for another
            // instance rather than failing at once.
            Err(last.map_or_else(
                || DriverError::permanent("RunInstances failed"),
                |e| DriverError {
                    transient: true,
                    ..e
                },
            ))
        })
    }

    fn state<'a>(&'a self, cloud_id: &'a str) -> DriverFuture<'a, CloudState> {
        Box::pin(async move {
            let client = self.client().await;
            let out = self
                .call("DescribeInstances", || {
                    client.describe_instances().instance_ids(cloud_id).send()
                })
                .await;
            let out = match out {
                Ok(o) => o,
                // Not visible yet (the API is eventually consistent) or never was.
                Err(e) if is_not_found(&e) => return Ok(CloudState::Starting),
                Err(e) => return Err(e),
            };
            let Some(instance) = out.reservations().iter().flat_map(|r| r.instances()).next()
            else {
                return Ok(CloudState::Starting);
            };
            let state = instance.state().and_then(|s| s.name());
            Ok(match state {
                Some(InstanceStateName::Running) => CloudState::Running,
                Some(InstanceStateName::Pending) | None => CloudState::Starting,
                Some(other) => {
                    let reason = instance
                        .state_reason()
                        .and_then(|r| r.message())
                        .or(instance.state_transition_reason())
                        .unwrap_or("");
                    CloudState::Gone(format!("{} {reason}", other.as_str()).trim().to_owned())
                }
            })
        })
    }

    fn terminate<'a>(&'a self, cloud_id: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let client = self.client().await;
            match self
                .call("TerminateInstances", || {
                    client.terminate_instances().instance_ids(cloud_id).send()
                })
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    fn owned(&self) -> DriverFuture<'_, Option<Vec<OwnedInstance>>> {
        Box::pin(async move { self.find(None).await.map(Some) })
    }
}

/// The instance metadata service only with session tokens (IMDSv2), one hop away:
/// a build's code cannot read the instance's credentials through a forged request
/// or from a container behind it.
fn imdsv2_only() -> InstanceMetadataOptionsRequest {
    InstanceMetadataOptionsRequest::builder()
        .http_endpoint(InstanceMetadataEndpointState::Enabled)
        .http_tokens(HttpTokensState::Required)
        .http_put_response_hop_limit(1)
        .build()
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
