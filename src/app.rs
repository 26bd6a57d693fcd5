//! Building and running the server, and stopping it in order.
//!
//! [`Application::build`] connects the store, starts the writer, loads the
//! instances and binds the listener (port 0 works: ask [`Application::port`]).
//! [`Application::run_until_stopped`] serves until [`AppHandle::stop`], then
//! shuts down in dependency order: clients are told 1001 and the modem actors
//! stop (recording their last state), then the writer commits what is queued,
//! then the database closes. Nothing accepted is dropped on the way out.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use actix_http::HttpService;
use actix_service::map_config;
use actix_web::{
    dev::{AppConfig, Service as _},
    web, App,
};
use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    auth::{load_or_create_admin_key, load_or_create_jwt_secret, token::Tokens, KeyRing},
    config::Settings,
    http::{
        self,
        limits::{AuthThrottle, Connections},
        AppState,
    },
    hub::Hub,
    instance::Registry,
    service::Service,
    store::{EventLog, Store},
};

/// How long shutdown waits for each stage before moving on.
const STAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's head.
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Application {
    addr: SocketAddr,
    server: actix_web::dev::Server,
    state: web::Data<AppState>,
    /// Stops sessions and modem actors.
    shutdown: CancellationToken,
    /// Stops the writer, after the actors are done appending.
    writer_stop: CancellationToken,
    actors: TaskTracker,
    /// Ends the cluster's lease loop, after the actors stopped: their
    /// leases are renewed while they finish.
    leases_stop: CancellationToken,
    leases: TaskTracker,
    writer: TaskTracker,
    admin_key: SecretString,
    admin_key_generated: bool,
    /// Held for the process's life on the embedded database, so a second
    /// process on the same data directory refuses to start (invariant 3).
    _data_dir_lock: Option<DataDirLock>,
}

/// Stops a running application from anywhere (signals, tests).
#[derive(Clone)]
pub struct AppHandle {
    shutdown: CancellationToken,
}

impl AppHandle {
    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        install_crypto_provider();
        let settings = Arc::new(settings);
        // The secrets before the port: once the port takes connections a
        // script may read `admin.key` (the README does), so it must be
        // written by then.
        let (admin_key, admin_key_generated) =
            load_or_create_admin_key(settings.auth.api_key.as_ref(), &settings.data_dir)?;
        let jwt_secret =
            load_or_create_jwt_secret(settings.auth.jwt_secret.as_ref(), &settings.data_dir)?;
        // Then the port: a server that cannot serve must not start modem
        // actors or commit anything before it fails.
        let listener = bind(&settings)?;
        let data_dir_lock = match &settings.database.url {
            Some(url) if !url.expose_secret().starts_with("sqlite:") => None,
            _ => Some(DataDirLock::acquire(&settings.data_dir)?),
        };
        let store = Store::connect(
            settings.database.url.as_ref(),
            &settings.data_dir,
            settings.database.max_connections,
        )
        .await?;
        let tokens = Arc::new(Tokens::new(&jwt_secret));
        let hub = Hub::new(settings.limits.connection_queue_bytes);
        hub.start_at(store.head().await.context("while reading the log head")?);

        let shutdown = CancellationToken::new();
        let writer_stop = CancellationToken::new();
        let writer = TaskTracker::new();
        let actors = TaskTracker::new();
        let leases_stop = CancellationToken::new();
        let leases = TaskTracker::new();
        // In a cluster the hub is fed through the tailer, which also reads
        // what the other nodes commit; a single node's writer feeds it.
        let clustered = store.clustered();
        let cluster_wake = Arc::new(tokio::sync::Notify::new());
        // Set once the registry exists: the tailer wakes the drivers this
        // node runs for texts queued through any node.
        let drivers: Arc<std::sync::OnceLock<Arc<Registry>>> = Arc::default();
        let tail = clustered.then(|| {
            let wake = cluster_wake.clone();
            let drivers = drivers.clone();
            crate::cluster::tailer::Tail::new(
                hub.clone(),
                Box::new(move |events: &[crate::event::Event]| {
                    crate::cluster::observe(events, &wake, drivers.get().map(|r| r.as_ref()));
                }),
            )
        });
        let publish: Arc<dyn crate::store::Publish> = match &tail {
            Some(tail) => tail.clone(),
            None => hub.clone(),
        };
        let log = EventLog::start(store.clone(), publish, writer_stop.clone(), &writer);
        let registry = Arc::new(Registry::new(
            log.clone(),
            hub.clone(),
            settings.modem.clone(),
            Some(settings.data_dir.join("spool")),
            shutdown.clone(),
            actors.clone(),
            clustered,
        ));
        let _ = drivers.set(registry.clone());
        let loaded = registry
            .load()
            .await
            .context("while loading the stored instances")?;
        for (name, horizon) in store.horizons().await.context("while loading retention")? {
            hub.set_horizon(&name, horizon);
        }
        actors.spawn(crate::instance::retention::run(
            registry.clone(),
            store.clone(),
            hub.clone(),
            settings.retention.clone(),
            shutdown.clone(),
        ));
        tracing::info!(
            database = store.backend_name(),
            instances = loaded,
            "store ready"
        );

        let webhooks = Arc::new(crate::webhook::Webhooks::new(
            store.clone(),
            hub.clone(),
            crate::webhook::Targets::new(settings.webhooks.allowed_networks.clone()),
            shutdown.clone(),
            actors.clone(),
        )?);
        webhooks.load().await.context("while loading webhooks")?;
        let cluster = match tail {
            Some(tail) => {
                let cluster = crate::cluster::Cluster::new(
                    settings.cluster.clone(),
                    store.clone(),
                    log.clone(),
                    registry.clone(),
                    webhooks.clone(),
                    cluster_wake,
                )?;
                actors.spawn(tail.run(
                    store.clone(),
                    Duration::from_millis(settings.cluster.poll_ms),
                    shutdown.clone(),
                ));
                leases.spawn(cluster.clone().run(shutdown.clone(), leases_stop.clone()));
                actors.spawn(cluster.clone().run_commands(shutdown.clone()));
                tracing::info!(node = cluster.node(), "cluster node started");
                Some(cluster)
            }
            None => None,
        };
        let keys = Arc::new(KeyRing::new(&admin_key, registry.clone()));
        let service = Arc::new(
            Service::new(registry, log, hub, webhooks, settings.clone()).with_cluster(cluster),
        );
        if let Some(cluster) = service.cluster() {
            // Weak: the service holds the cluster, which must not keep the
            // service alive in turn.
            let service = Arc::downgrade(&service);
            cluster.answer_with(Arc::new(move |call| {
                let service = service.clone();
                Box::pin(async move {
                    match service.upgrade() {
                        Some(service) => service.run_remote(call).await,
                        None => Err(crate::cluster::RemoteError {
                            kind: "unavailable".into(),
                            message: "the node is shutting down".into(),
                        }),
                    }
                })
            }));
        }
        service.ensure_instances(&settings.instances).await?;

        let addr = listener
            .local_addr()
            .context("while reading the bound address")?;
        let state = web::Data::new(AppState {
            service,
            keys,
            tokens,
            connections: Connections::new(
                settings.limits.max_connections,
                settings.limits.max_connections_per_credential,
                settings.limits.max_connections_per_instance,
            ),
            auth_throttle: Arc::new(AuthThrottle::new(settings.limits.failed_auth_per_minute)),
            settings: settings.clone(),
            shutdown: shutdown.clone(),
            sessions: TaskTracker::new(),
        });
        let workers = match settings.http.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        // actix-web's HttpServer cannot hand WebSocket upgrades their
        // socket, so the same service is assembled from its parts with
        // actix-http's upgrade hook (see http::ws).
        let make_app = {
            let state = state.clone();
            let limits = settings.limits.clone();
            move || {
                let limits = limits.clone();
                App::new()
                    .app_data(state.clone())
                    .wrap_fn(|req, srv| {
                        // Method, path and status only: the query string
                        // can carry an apikey and must stay out of the logs.
                        let method = req.method().clone();
                        let path = req.path().to_owned();
                        let started = std::time::Instant::now();
                        let response =
                            http::query::refuse_undocumented(&req).map(|()| srv.call(req));
                        async move {
                            let response = response?.await?;
                            tracing::debug!(
                                %method,
                                path = %http::truncate(&path, 200),
                                status = response.status().as_u16(),
                                elapsed_ms = started.elapsed().as_millis() as u64,
                                "request"
                            );
                            Ok(response)
                        }
                    })
                    .configure(|cfg| http::configure(cfg, &limits))
            }
        };
        let builder = actix_server::Server::build()
            .workers(workers)
            .backlog(4096)
            .disable_signals()
            .shutdown_timeout(5);
        // The signal lets idle keep-alive connections close at once on a
        // graceful stop, as actix-web's HttpServer does. (A macro because the
        // builder's type differs between plain TCP and TLS.)
        let stopping = builder.graceful_shutdown_signal();
        macro_rules! http_service {
            () => {{
                let stopping = stopping.clone();
                HttpService::build()
                    .client_request_timeout(REQUEST_HEAD_TIMEOUT)
                    .client_disconnect_timeout(Duration::from_secs(1))
                    .graceful_shutdown_signal(move || {
                        let stopping = stopping.clone();
                        async move { stopping.notified().await }
                    })
            }};
        }
        let upgrade_state = state.clone();
        let server = match &settings.http.tls {
            None => builder.listen("switchboard", listener, move || {
                http_service!()
                    .upgrade(http::ws::upgrade(upgrade_state.clone()))
                    .finish(map_config(make_app(), |_| AppConfig::default()))
                    .tcp()
            }),
            Some(tls) => {
                let config = tls_config(tls)?;
                builder.listen("switchboard", listener, move || {
                    http_service!()
                        .upgrade(http::ws::upgrade(upgrade_state.clone()))
                        .finish(map_config(make_app(), |_| AppConfig::default()))
                        .rustls_0_23(config.clone())
                })
            }
        }
        .context("while starting the HTTP server")?
        .run();

        Ok(Application {
            addr,
            server,
            state,
            shutdown,
            writer_stop,
            actors,
            leases_stop,
            leases,
            writer,
            admin_key,
            admin_key_generated,
            _data_dir_lock: data_dir_lock,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin key in use (configured, stored or generated).
    pub fn admin_key(&self) -> &SecretString {
        &self.admin_key
    }

    /// True when the admin key was generated by this start: print it once.
    pub fn admin_key_generated(&self) -> bool {
        self.admin_key_generated
    }

    pub fn registry(&self) -> &Arc<Registry> {
        self.state.service.registry()
    }

    pub fn hub(&self) -> &Arc<Hub> {
        self.state.service.hub()
    }

    pub fn log(&self) -> &EventLog {
        self.state.service.log()
    }

    pub fn handle(&self) -> AppHandle {
        AppHandle {
            shutdown: self.shutdown.clone(),
        }
    }

    /// Serves until stopped, then shuts down in order.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let server_handle = self.server.handle();
        let server = tokio::spawn(self.server);
        self.shutdown.cancelled().await;
        tracing::info!("shutting down");

        // Clients get 1001 and actors stop (the cancel above reached them).
        // WebSocket sessions run on the HTTP workers, so they finish their
        // closing handshake before the workers stop: a worker that stops
        // drops its sessions, and their sockets, mid-close.
        self.state.sessions.close();
        if !in_time(self.state.sessions.wait()).await {
            tracing::warn!("some WebSocket sessions did not finish in time");
        }
        // The HTTP server stops accepting and finishes in-flight requests.
        server_handle.stop(true).await;
        let _ = server.await;
        self.actors.close();
        let actors_stopped = in_time(self.actors.wait()).await;
        if !actors_stopped {
            tracing::warn!("some modem actors did not stop in time");
        }
        // The drivers have stopped: their leases go to other nodes at once.
        self.leases_stop.cancel();
        self.leases.close();
        if !in_time(self.leases.wait()).await {
            tracing::warn!("the lease loop did not stop in time");
        }
        if let Some(cluster) = self.state.service.cluster() {
            cluster.leave(actors_stopped).await;
        }
        // The actors are done appending; the writer commits what is queued.
        self.writer_stop.cancel();
        self.writer.close();
        if !in_time(self.writer.wait()).await {
            tracing::error!("the event log writer did not finish in time");
        }
        self.state.service.log().store().close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Waits up to [`STAGE_TIMEOUT`] for one stage of the shutdown: whether
/// it finished in time.
async fn in_time(stage: impl std::future::Future<Output = ()>) -> bool {
    tokio::time::timeout(STAGE_TIMEOUT, stage).await.is_ok()
}

/// An exclusive lock on `<data_dir>/switchboard.lock`.
///
/// On SQLite every process drives every instance it finds, so two on one
/// data directory would drive each modem twice. The kernel drops the lock
/// when the process ends, however it ends, so a crash never leaves the
/// directory locked.
struct DataDirLock {
    _file: nix::fcntl::Flock<std::fs::File>,
}

impl DataDirLock {
    fn acquire(data_dir: &std::path::Path) -> anyhow::Result<DataDirLock> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("while creating the data directory {}", data_dir.display()))?;
        let path = data_dir.join("switchboard.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("while opening {}", path.display()))?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(file) => Ok(DataDirLock { _file: file }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => anyhow::bail!(
                "another switchboard process is using the data directory {} (it holds {}); \
                 the embedded database is single-node: stop that process, give this one \
                 its own data_dir, or run several nodes on PostgreSQL",
                data_dir.display(),
                path.display()
            ),
            Err((_, errno)) => Err(anyhow::anyhow!(errno))
                .with_context(|| format!("while locking {}", path.display())),
        }
    }
}

/// The server's TLS settings from the PEM files named in `[http.tls]`.
fn tls_config(tls: &crate::config::TlsSettings) -> anyhow::Result<rustls::ServerConfig> {
    use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

    let certs = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("while reading the certificate {}", tls.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no certificate", tls.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .with_context(|| format!("while reading the private key {}", tls.key.display()))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not form a valid pair")?;
    // actix-http adds the ALPN protocols it speaks itself.
    Ok(config)
}

/// Makes ring the process's TLS crypto (for HTTPS serving and webhook
/// delivery). Idempotent: a second call finds it installed.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Binds the listener ourselves so every accepted socket inherits
/// TCP_USER_TIMEOUT: a client that stops reading (a zero window for that
/// long) or vanishes is dropped by the kernel, which frees the buffers the
/// HTTP layer would otherwise keep for it forever.
fn bind(settings: &Settings) -> anyhow::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};

    let addr: SocketAddr = format!("{}:{}", settings.http.address, settings.http.port)
        .parse()
        .or_else(|_| {
            std::net::ToSocketAddrs::to_socket_addrs(&(
                settings.http.address.as_str(),
                settings.http.port,
            ))
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or(())
        })
        .map_err(|()| {
            anyhow::anyhow!(
                "http.address '{}' is not an address this machine can bind",
                settings.http.address
            )
        })?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)
        .context("while creating the listening socket")?;
    socket
        .set_reuse_address(true)
        .context("while setting SO_REUSEADDR")?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket
        .set_tcp_user_timeout(Some(Duration::from_secs(
            settings.http.client_timeout_secs.max(1),
        )))
        .context("while setting TCP_USER_TIMEOUT")?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("while binding {addr} (is another server using the port?)"))?;
    socket.listen(4096).context("while listening")?;
    socket
        .set_nonblocking(true)
        .context("while making the listener non-blocking")?;
    Ok(socket.into())
}
