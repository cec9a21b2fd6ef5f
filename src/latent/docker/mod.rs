//! The `docker` driver: an instance is a container on a Docker Engine, reached over
//! its unix socket through `bollard`.
//!
//! Leak-proofing follows the ec2 driver's: every container is labelled at creation
//! with the master's id, the pool, the instance's name and the launch's token, so
//! [`Driver::owned`] lists exactly this master's containers (running or not) and the
//! sweep can end strays; a retried launch first looks for a container bearing its
//! token; a launch that fails after creating its container removes it.

mod boot;
mod names;

use super::driver::{CloudState, Driver, DriverError, DriverFuture, LaunchSpec, OwnedInstance};
use crate::config::DockerSettings;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, ContainerSummaryStateEnum, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use bollard::Docker;
use names::{LABEL_INSTANCE, LABEL_MASTER, LABEL_POOL, LABEL_TOKEN};
use tokio::sync::OnceCell;
use tracing::{info, warn};

/// Seconds one request to the daemon may take.
const REQUEST_TIMEOUT: u64 = 60;

#[derive(Debug)]
pub struct DockerDriver {
    settings: DockerSettings,
    master_id: String,
    pool: String,
    /// Connected and version-negotiated on first use.
    client: OnceCell<Docker>,
}

impl DockerDriver {
    pub fn new(settings: DockerSettings, master_id: &str, pool: &str) -> DockerDriver {
        DockerDriver {
            settings,
            master_id: master_id.to_owned(),
            pool: pool.to_owned(),
            client: OnceCell::new(),
        }
    }

    /// The client, speaking the newest API version both it and the daemon know.
    async fn client(&self) -> Result<&Docker, DriverError> {
        self.client
            .get_or_try_init(|| async {
                let path = self.settings.socket_path();
                let docker =
                    Docker::connect_with_unix(path, REQUEST_TIMEOUT, bollard::API_DEFAULT_VERSION)
                        .map_err(|e| classify("connect", e))?;
                docker
                    .negotiate_version()
                    .await
                    .map_err(|e| classify(&format!("connect to {path}"), e))
            })
            .await
    }

    /// This master's containers in the pool, stopped ones included; only those with
    /// `token` when given.
    async fn find(&self, token: Option<&str>) -> Result<Vec<OwnedFound>, DriverError> {
        let client = self.client().await?;
        let mut pairs = vec![
            (LABEL_MASTER, self.master_id.as_str()),
            (LABEL_POOL, self.pool.as_str()),
        ];
        if let Some(t) = token {
            pairs.push((LABEL_TOKEN, t));
        }
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&names::label_filter(&pairs))
            .build();
        let list = client
            .list_containers(Some(options))
            .await
            .map_err(|e| classify("list containers", e))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let label = |k: &str| c.labels.as_ref().and_then(|l| l.get(k)).cloned();
                Some(OwnedFound {
                    id: c.id.clone()?,
                    name: label(LABEL_INSTANCE),
                    created_only: c.state == Some(ContainerSummaryStateEnum::CREATED),
                })
            })
            .collect())
    }

    /// Creates, seeds and starts the container; removes it if seeding or starting
    /// fails, so a failed launch leaves nothing behind.
    async fn create_and_start(&self, spec: &LaunchSpec) -> Result<String, DriverError> {
        let client = self.client().await?;
        let s = &self.settings;
        let name = names::container_name(&self.master_id, &spec.name)?;
        let host_config = HostConfig {
            network_mode: s.network.clone(),
            memory: s.memory_mb.map(|m| (m as i64).saturating_mul(1024 * 1024)),
            nano_cpus: s.cpus.map(|c| (c * 1e9) as i64),
            binds: (!s.volumes.is_empty()).then(|| s.volumes.clone()),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(s.image.clone()),
            cmd: Some(boot::command(s.cloud_init)),
            entrypoint: Some(vec![]),
            env: Some(s.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(names::labels(&self.master_id, spec, &s.labels)),
            host_config: Some(host_config),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let created = client
            .create_container(Some(options), body)
            .await
            .map_err(|e| classify("create a container", e))?;
        let id = created.id;
        let started = async {
            let seed = boot::seed_archive(spec, s.cloud_init)
                .map_err(|e| DriverError::permanent(format!("cannot pack the user data: {e}")))?;
            let to_root = UploadToContainerOptionsBuilder::new().path("/").build();
            client
                .upload_to_container(&id, Some(to_root), bollard::body_full(seed.into()))
                .await
                .map_err(|e| classify("copy the user data into the container", e))?;
            client
                .start_container(&id, None)
                .await
                .map_err(|e| classify("start the container", e))
        };
        if let Err(e) = started.await {
            if let Err(removal) = self.remove(&id).await {
                warn!(pool = %self.pool, container = %id, "cannot remove a container that failed to start: {removal}");
            }
            return Err(e);
        }
        info!(pool = %self.pool, instance = %spec.name, container = %id, "started a container");
        Ok(id)
    }

    /// Removes the container, running or not, with its anonymous volumes.
    async fn remove(&self, id: &str) -> Result<(), DriverError> {
        let client = self.client().await?;
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match client.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            // Another removal of it is under way.
            Err(DockerError::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("in progress") => Ok(()),
            Err(e) => Err(classify("remove the container", e)),
        }
    }
}

/// A container found by its labels.
struct OwnedFound {
    id: String,
    name: Option<String>,
    /// Created but never started: a launch that stopped half way.
    created_only: bool,
}

/// The driver's words for a failed call, and whether another try may succeed.
fn classify(what: &str, e: DockerError) -> DriverError {
    let (transient, code) = match &e {
        DockerError::DockerResponseServerError { status_code, .. } => {
            (*status_code >= 500, Some(status_code.to_string()))
        }
        DockerError::RequestTimeoutError
        | DockerError::HyperResponseError { .. }
        | DockerError::IOError { .. } => (true, None),
        _ => (false, None),
    };
    DriverError {
        message: format!("{what}: {e}"),
        transient,
        code,
    }
}

impl Driver for DockerDriver {
    fn launch<'a>(&'a self, spec: &'a LaunchSpec) -> DriverFuture<'a, String> {
        Box::pin(async move {
            // A retried launch finds the container its first try made.
            for found in self.find(Some(&spec.client_token)).await? {
                if !found.created_only {
                    return Ok(found.id);
                }
                // Its first try stopped before starting it: start over.
                self.remove(&found.id).await?;
            }
            self.create_and_start(spec).await
        })
    }

    fn state<'a>(&'a self, cloud_id: &'a str) -> DriverFuture<'a, CloudState> {
        Box::pin(async move {
            let client = self.client().await?;
            match client.inspect_container(cloud_id, None).await {
                Ok(c) => Ok(names::cloud_state(c.state.as_ref())),
                Err(DockerError::DockerResponseServerError {
                    status_code: 404, ..
                }) => Ok(CloudState::Gone("no such container".into())),
                Err(e) => Err(classify("inspect the container", e)),
            }
        })
    }

    fn terminate<'a>(&'a self, cloud_id: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(self.remove(cloud_id))
    }

    fn owned(&self) -> DriverFuture<'_, Option<Vec<OwnedInstance>>> {
        Box::pin(async move {
            let found = self.find(None).await?;
            Ok(Some(
                found
                    .into_iter()
                    .map(|f| OwnedInstance {
                        cloud_id: f.id,
                        name: f.name,
                    })
                    .collect(),
            ))
        })
    }
}
