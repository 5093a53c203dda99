//! A simulator on a socket: binding, serving in a task, stopping. Shared by every simulator.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Tenant segment of the token URLs the simulators name (any tenant is accepted).
pub const SIM_TENANT: &str = "sim-tenant";

/// A simulator that serves HTTP: its app, and the URL it names itself by.
pub trait Simulator: Sized {
    /// The `event` of the log line that says it started.
    const STARTED: &'static str;
    /// Sets the base URL the simulator uses in the links it answers (no trailing slash).
    fn set_base_url(&self, base_url: &str);
    /// The axum app.
    fn router(&self) -> Router;
}

/// A simulator listening on a socket. Dropping it stops the server (so does [`Running::shutdown`]).
#[derive(Debug)]
#[must_use = "dropping a running simulator stops it"]
pub struct Running<S> {
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub base_url: String,
    /// `{base_url}/sim-tenant/oauth2/v2.0/token`.
    pub token_url: String,
    /// The bound address.
    pub addr: SocketAddr,
    /// The simulator, to inspect or steer while it serves.
    pub sim: S,
    server: ServerTask,
}

impl<S: Simulator> Running<S> {
    /// Binds `addr` (port 0 picks a free port), serves `sim` in a spawned task and returns at once.
    pub async fn start(sim: S, addr: SocketAddr) -> std::io::Result<Self> {
        let bound = bind(addr).await?;
        sim.set_base_url(&bound.base_url);
        let server = ServerTask::spawn(bound.listener, sim.router());
        tracing::info!(event = S::STARTED, base_url = %bound.base_url);
        Ok(Self {
            token_url: format!("{}/{SIM_TENANT}/oauth2/v2.0/token", bound.base_url),
            base_url: bound.base_url,
            addr: bound.addr,
            sim,
            server,
        })
    }
}

impl<S> Running<S> {
    /// Stops accepting requests, lets open ones finish and waits for the server to end.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.server.shutdown().await
    }

    /// Waits until the server ends (by [`Running::shutdown`], a drop or an error).
    pub async fn wait(self) -> std::io::Result<()> {
        self.server.wait().await
    }
}

/// A bound listener and the base URL clients use for it.
#[derive(Debug)]
pub struct Bound {
    pub listener: TcpListener,
    /// `http://IP:PORT` (no trailing slash; an unspecified address is named as loopback).
    pub base_url: String,
    pub addr: SocketAddr,
}

/// Binds `addr` (port 0 picks a free port).
pub async fn bind(addr: SocketAddr) -> std::io::Result<Bound> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let ip = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(Bound {
        listener,
        base_url: format!("http://{}", SocketAddr::new(ip, local.port())),
        addr: local,
    })
}

/// A server running in a task. Dropping it stops the server (graceful: open requests finish).
#[derive(Debug)]
pub struct ServerTask {
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<std::io::Result<()>>,
}

impl ServerTask {
    /// Serves `app` on `listener` in a spawned task.
    pub fn spawn(listener: TcpListener, app: Router) -> Self {
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
        });
        Self {
            shutdown: Some(tx),
            handle,
        }
    }

    /// Stops accepting requests, lets open ones finish and waits for the server to end.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.wait().await
    }

    /// Waits until the server ends (by [`ServerTask::shutdown`], a drop or an error).
    pub async fn wait(self) -> std::io::Result<()> {
        let Self { handle, shutdown } = self;
        // Keep the sender alive while waiting so waiting does not stop the server.
        let result = handle.await;
        drop(shutdown);
        result.map_err(std::io::Error::other)?
    }
}
