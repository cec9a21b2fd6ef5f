//! The `ec2` driver: instances from the EC2 API (or any EC2-compatible one).
//!
//! Leak-proofing lives here as much as in the coordinator: every launch carries an
//! idempotency `ClientToken` and is tagged at creation with the master's id, the pool
//! and the instance's name, so [`Driver::owned`] can list exactly this master's
//! instances after a restart; a launch retried after an ambiguous failure first looks
//! for an instance already bearing its name (emulators do not all honour client
//! tokens). Every call goes through one retry loop with backoff under the pool's call
//! budget; the SDK's own retries are off so the budget counts every request.

mod errors;
mod image;
mod request;

use super::budget::CallBudget;
use super::driver::{
    CloudState, Driver, DriverError, DriverFuture, LaunchSpec, Launched, OwnedInstance,
};
use crate::config::Ec2Settings;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{
    Filter, IamInstanceProfileSpecification, InstanceInterruptionBehavior, InstanceLifecycleType,
    InstanceMarketOptionsRequest, InstanceStateName, InstanceType, MarketType, ResourceType,
    SecureBlobAttributeValue, ShutdownBehavior, SpotInstanceType, SpotMarketOptions, Tag,
    TagSpecification,
};
use aws_sdk_ec2::types::{
    HttpTokensState, InstanceMetadataEndpointState, InstanceMetadataOptionsRequest,
};
use aws_sdk_ec2::Client;
use base64::Engine;
use errors::{
    backoff, classify, is_capacity_error, is_interruption_notice, is_not_found, launch_again,
    next_choice, THROTTLE_CODES,
};
use image::{Image, ImageCache};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
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

/// The most of a spot notice's text kept.
const NOTICE_MAX_CHARS: usize = 300;

/// How long a stopping instance may take to be stopped.
const STOP_TIMEOUT: Duration = Duration::from_secs(600);
/// Between looks at a stopping instance.
const STOP_POLL: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct Ec2Driver {
    settings: Ec2Settings,
    master_id: String,
    pool: String,
    client: OnceCell<Client>,
    /// The image to launch, found again now and then when found by name.
    images: ImageCache,
    budget: CallBudget,
    /// Launches so far, for `spread`.
    launches: AtomicUsize,
}

/// Where one launch try puts the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Choice {
    subnet: Option<String>,
    kind: String,
}

impl Choice {
    /// `subnet/type`, or the type alone in the default subnet.
    fn placement(&self) -> String {
        match &self.subnet {
            Some(s) => format!("{s}/{}", self.kind),
            None => self.kind.clone(),
        }
    }
}

/// Every instance type in each subnet, in the configured order (types first: a
/// preferred type is tried in every zone before the next type); with `spread`, the
/// list starts `turn` places further on.
fn choices(s: &Ec2Settings, turn: usize) -> Vec<Choice> {
    let kinds: Vec<String> = s
        .instance_type
        .iter()
        .chain(&s.instance_types)
        .cloned()
        .collect();
    let subnets: Vec<Option<String>> = if s.subnet_ids.is_empty() {
        vec![s.subnet_id.clone()]
    } else {
        s.subnet_ids.iter().cloned().map(Some).collect()
    };
    let mut all: Vec<Choice> = kinds
        .iter()
        .flat_map(|kind| {
            subnets.iter().map(move |subnet| Choice {
                subnet: subnet.clone(),
                kind: kind.clone(),
            })
        })
        .collect();
    if s.spread && !all.is_empty() {
        let n = all.len();
        all.rotate_left(turn % n);
    }
    all
}

impl Ec2Driver {
    pub fn new(settings: Ec2Settings, master_id: &str, pool: &str) -> Ec2Driver {
        let budget = CallBudget::per_minute(settings.calls_per_minute);
        let images = ImageCache::new(settings.image_refresh().map(Duration::from_secs));
        Ec2Driver {
            settings,
            master_id: master_id.to_owned(),
            pool: pool.to_owned(),
            client: OnceCell::new(),
            images,
            budget,
            launches: AtomicUsize::new(0),
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
            let answer = op().await;
            let throttled = answer
                .as_ref()
                .err()
                .and_then(|e| e.code())
                .is_some_and(|c| THROTTLE_CODES.contains(&c));
            crate::metrics::metrics().cloud_call(&self.pool, what, throttled);
            match answer {
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
    /// pattern (and architecture) among the configured owners, looked up again once
    /// its refresh time has passed; with its root device when the root volume is
    /// shaped here. An id alone needs no call (RunInstances says if it is wrong).
    async fn image(&self) -> Result<Arc<Image>, DriverError> {
        let now = Instant::now();
        if let Some(image) = self.images.fresh(now) {
            return Ok(image);
        }
        if let (Some(id), false) = (&self.settings.ami, self.settings.shapes_root_volume()) {
            let image = Image {
                id: id.clone(),
                root_device: None,
                root_size: None,
            };
            return Ok(self.images.store(image, now).0);
        }
        match self.look_up_image().await {
            Ok(found) => {
                let (image, replaced) = self.images.store(found, now);
                if let Some(old) = replaced {
                    info!(pool = %self.pool, image = %image.id, previous = %old.id, "a newer image matches: new instances use it");
                }
                Ok(image)
            }
            Err(e) => match self.images.keep(now) {
                Some(image) => {
                    warn!(pool = %self.pool, image = %image.id, "looking the image up again failed ({e}); keeping the one found before");
                    Ok(image)
                }
                None => Err(e),
            },
        }
    }

    /// One DescribeImages: the configured id, or the newest image matching the name.
    async fn look_up_image(&self) -> Result<Image, DriverError> {
        let client = self.client().await;
        let s = &self.settings;
        let images = self
            .call("DescribeImages", || {
                let mut req = client.describe_images();
                if let Some(id) = &s.ami {
                    req = req.image_ids(id);
                }
                if let Some(pattern) = &s.ami_name {
                    req = req
                        .filters(Filter::builder().name("name").values(pattern).build())
                        .set_owners(Some(s.ami_owners.clone()));
                    if let Some(arch) = &s.architecture {
                        req = req
                            .filters(Filter::builder().name("architecture").values(arch).build());
                    }
                }
                req.send()
            })
            .await?;
        let newest = images
            .images()
            .iter()
            .max_by(|a, b| (a.creation_date(), a.name()).cmp(&(b.creation_date(), b.name())));
        let wanted = s
            .ami
            .as_deref()
            .or(s.ami_name.as_deref())
            .unwrap_or_default();
        let image = newest.ok_or_else(|| {
            let arch = s
                .architecture
                .as_deref()
                .map(|a| format!(" for {a}"))
                .unwrap_or_default();
            DriverError::permanent(format!("no image matches {wanted:?}{arch}"))
        })?;
        let id = image.image_id().unwrap_or(wanted).to_owned();
        if s.ami_name.is_some() {
            info!(pool = %self.pool, image = %id, name = image.name().unwrap_or(""), "chose the newest matching image");
        }
        let root_device = image.root_device_name().map(str::to_owned);
        let root_size = image
            .block_device_mappings()
            .iter()
            .find(|m| m.device_name().is_some() && m.device_name() == root_device.as_deref())
            .and_then(|m| m.ebs()?.volume_size());
        Ok(Image {
            id,
            root_device,
            root_size,
        })
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
    async fn run(
        &self,
        spec: &LaunchSpec,
        choice: &Choice,
        spot: bool,
        token: &str,
    ) -> Result<String, DriverError> {
        let image = self.image().await?;
        let devices = request::block_devices(&self.settings, &image);
        let interface = request::network_interface(&self.settings, choice.subnet.as_deref());
        let client = self.client().await;
        let s = &self.settings;
        let tags = self.tags(spec);
        let user_data = base64::engine::general_purpose::STANDARD.encode(&spec.user_data);
        // One try: a retry must first look for what a failed try may have launched.
        let out = self
            .call_tries("RunInstances", 1, || {
                let mut req = client
                    .run_instances()
                    .image_id(&image.id)
                    .instance_type(InstanceType::from(choice.kind.as_str()))
                    .min_count(1)
                    .max_count(1)
                    .client_token(token)
                    .user_data(&user_data)
                    .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
                    .metadata_options(imdsv2_only())
                    .set_placement(request::placement(s))
                    .set_block_device_mappings((!devices.is_empty()).then(|| devices.clone()))
                    .set_key_name(s.key_name.clone());
                // An interface carries the subnet and groups itself.
                if let Some(nic) = &interface {
                    req = req.network_interfaces(nic.clone());
                } else {
                    req = req.set_subnet_id(choice.subnet.clone());
                    if !s.security_group_ids.is_empty() {
                        req = req.set_security_group_ids(Some(s.security_group_ids.clone()));
                    }
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

impl Ec2Driver {
    /// One pass over the choices (spot ones first, if spot is asked for, then
    /// on-demand): the first that launches wins. A choice without capacity passes to
    /// the next; any other error ends the pass at once (a wrong image or subnet is
    /// reported in the cloud's words). When every choice failed, the error says
    /// whether waiting may help: it does if one of them lacked capacity.
    async fn launch_once(&self, spec: &LaunchSpec, turn: usize) -> Result<Launched, DriverError> {
        let choices = choices(&self.settings, turn);
        let spot_first = self.spot() && !spec.on_demand;
        let markets: &[bool] = if spot_first { &[true, false] } else { &[false] };
        let mut waitable = None;
        let mut last = None;
        for &spot in markets {
            if spot_first && !spot {
                if let Some(e) = &waitable {
                    warn!(pool = %self.pool, "no spot capacity ({e}); launching on demand");
                }
            }
            for (k, choice) in choices.iter().enumerate() {
                // A token per choice and market: the cloud refuses one token reused
                // with other parameters, and a retry of the same choice keeps its own.
                let mut token = spec.client_token.clone();
                if k > 0 {
                    token.push_str(&format!("-{k}"));
                }
                if self.spot() && !spot {
                    token.push_str("-od");
                }
                match self.run(spec, choice, spot, &token).await {
                    Ok(cloud_id) => {
                        return Ok(Launched {
                            cloud_id,
                            placement: Some(choice.placement()),
                            market: Some(if spot { "spot" } else { "on-demand" }.to_owned()),
                        })
                    }
                    Err(e) if is_capacity_error(&e) || next_choice(&e) => {
                        let market = if spot { "spot" } else { "on-demand" };
                        warn!(pool = %self.pool, placement = %choice.placement(), market, "{e}; trying the next choice");
                        if is_capacity_error(&e)
                            || e.code.as_deref() == Some("InsufficientFreeAddressesInSubnet")
                        {
                            waitable = Some(e.clone());
                        }
                        last = Some(e);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Err(match (waitable, last) {
            (Some(e), _) => DriverError {
                transient: true,
                ..e
            },
            (None, Some(e)) => e,
            (None, None) => DriverError::permanent("no instance type configured"),
        })
    }

    /// The instance's state name (`None`: not visible).
    async fn state_name(&self, cloud_id: &str) -> Result<Option<InstanceStateName>, DriverError> {
        let client = self.client().await;
        let out = self
            .call("DescribeInstances", || {
                client.describe_instances().instance_ids(cloud_id).send()
            })
            .await?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .next()
            .and_then(|i| i.state())
            .and_then(|s| s.name())
            .cloned())
    }

    /// Waits until the instance is stopped (polling at the pool's call budget), or
    /// fails if it ended or took [`STOP_TIMEOUT`].
    async fn until_stopped(&self, cloud_id: &str) -> Result<(), DriverError> {
        let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
        loop {
            match self.state_name(cloud_id).await? {
                Some(InstanceStateName::Stopped) => return Ok(()),
                Some(InstanceStateName::Stopping) | Some(InstanceStateName::Running) => {}
                Some(InstanceStateName::Pending) | None => {}
                Some(other) => {
                    return Err(DriverError::permanent(format!(
                        "{cloud_id} is {} instead of stopped",
                        other.as_str()
                    )))
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DriverError::permanent(format!(
                    "{cloud_id} did not stop within {} s",
                    STOP_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(STOP_POLL).await;
        }
    }

    /// The interruption notice on a spot instance's request, if the cloud has given
    /// one: its status code and message (`marked-for-termination: ...`).
    async fn spot_notice(&self, cloud_id: &str) -> Result<Option<String>, DriverError> {
        let client = self.client().await;
        let out = self
            .call("DescribeSpotInstanceRequests", || {
                client
                    .describe_spot_instance_requests()
                    .filters(
                        Filter::builder()
                            .name("instance-id")
                            .values(cloud_id)
                            .build(),
                    )
                    .send()
            })
            .await?;
        Ok(out
            .spot_instance_requests()
            .iter()
            .filter_map(|r| r.status())
            .find_map(|st| {
                let code = st.code()?;
                is_interruption_notice(code).then(|| {
                    let text = match st.message() {
                        Some(m) if !m.is_empty() => format!("{code}: {m}"),
                        _ => code.to_owned(),
                    };
                    // The cloud's words go to the log, the API and build reasons.
                    text.chars().take(NOTICE_MAX_CHARS).collect()
                })
            }))
    }

    fn spot(&self) -> bool {
        self.settings.spot || self.settings.market.as_deref() == Some("spot")
    }
}

impl Driver for Ec2Driver {
    fn launch<'a>(&'a self, spec: &'a LaunchSpec) -> DriverFuture<'a, String> {
        Box::pin(async move { Ok(self.launch_placed(spec).await?.cloud_id) })
    }

    fn launch_placed<'a>(&'a self, spec: &'a LaunchSpec) -> DriverFuture<'a, Launched> {
        Box::pin(async move {
            let turn = self.launches.fetch_add(1, Ordering::Relaxed);
            let mut last = None;
            for round in 0..MAX_ATTEMPTS {
                if round > 0 {
                    tokio::time::sleep(backoff(round)).await;
                    // The failed call may have launched it after all: never launch twice.
                    if let Some(found) = self.find(Some(&spec.name)).await?.into_iter().next() {
                        info!(pool = %self.pool, instance = %spec.name, "found the instance a failed launch made");
                        return Ok(Launched {
                            cloud_id: found.cloud_id,
                            placement: None,
                            market: None,
                        });
                    }
                }
                match self.launch_once(spec, turn).await {
                    Ok(launched) => return Ok(launched),
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
            let spot = instance.instance_lifecycle() == Some(&InstanceLifecycleType::Spot);
            Ok(match state {
                Some(InstanceStateName::Running) if spot => {
                    match self.spot_notice(cloud_id).await {
                        Ok(Some(notice)) => CloudState::Ending(notice),
                        Ok(None) => CloudState::Running,
                        // The instance runs; the notice is looked for again next time.
                        Err(e) => {
                            warn!(pool = %self.pool, "looking for a spot notice on {cloud_id}: {e}");
                            CloudState::Running
                        }
                    }
                }
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

    fn can_stop(&self) -> bool {
        true
    }

    fn watches_live(&self) -> bool {
        true
    }

    fn stop<'a>(&'a self, cloud_id: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let client = self.client().await;
            self.call("StopInstances", || {
                client.stop_instances().instance_ids(cloud_id).send()
            })
            .await?;
            self.until_stopped(cloud_id).await
        })
    }

    /// User data can change only while the instance is stopped: the new one-time
    /// credentials go in first, then it starts. (The attribute takes the base64 text,
    /// which the API's encoding of binary values encodes once more.)
    fn restart<'a>(&'a self, cloud_id: &'a str, user_data: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            self.until_stopped(cloud_id).await?;
            let client = self.client().await;
            let encoded = base64::engine::general_purpose::STANDARD.encode(user_data);
            self.call("ModifyInstanceAttribute", || {
                client
                    .modify_instance_attribute()
                    .instance_id(cloud_id)
                    .user_data(
                        SecureBlobAttributeValue::builder()
                            .value(Blob::new(encoded.as_bytes()))
                            .build(),
                    )
                    .send()
            })
            .await?;
            self.call("StartInstances", || {
                client.start_instances().instance_ids(cloud_id).send()
            })
            .await?;
            Ok(())
        })
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
