//! `aufsctl serve docker`: the graph driver plugin on its socket, with the
//! real adapters behind each root that dockerd's `Init` opens.

use crate::cli::{Backend, Cli, ServeCommand};
use crate::wiring::open_driver_at;
use crate::Failure;
use aufs_docker_plugin::{
    bind, default_socket, init_file_for, serve, DriverOpener, Plugin, PluginConfig,
};
use aufs_driver::async_facade::{AsyncDriver, AsyncGraphDriver};
use aufs_model::IdMappings;
use camino::Utf8Path;
use std::sync::Arc;

/// Opens a root with the real adapters and the command line's backend.
#[derive(Debug)]
struct RealOpener {
    backend: Backend,
}

impl DriverOpener for RealOpener {
    fn open(&self, home: &Utf8Path, maps: IdMappings) -> Result<Arc<dyn AsyncGraphDriver>, String> {
        match open_driver_at(home, self.backend, maps, false) {
            Ok(driver) => Ok(Arc::new(AsyncDriver::new(Arc::new(driver)))),
            Err(Failure::Error(msg)) => Err(msg),
            Err(Failure::No) => Err("the driver could not be opened".into()),
        }
    }
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(cli: &Cli, command: &ServeCommand) -> Result<(), Failure> {
    let ServeCommand::Docker {
        name,
        socket,
        exact_diffs,
    } = command;
    let socket = socket.clone().unwrap_or_else(|| default_socket(name));
    let config = PluginConfig {
        init_file: Some(init_file_for(&socket)),
        name: name.clone(),
        exact_diffs: *exact_diffs,
        // Where SELinux is off, a mount label means nothing.
        selinux: std::path::Path::new("/sys/fs/selinux/enforce").exists(),
    };
    let plugin = Arc::new(Plugin::new(
        config,
        Arc::new(RealOpener {
            backend: cli.backend,
        }),
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Error(format!("starting the async runtime: {e}")))?;
    runtime.block_on(async {
        let (listener, bound) = match activation::listener()
            .map_err(|e| Failure::Error(format!("the socket systemd passed: {e}")))?
        {
            Some(l) => (l, None),
            None => {
                let path = socket.clone();
                let l = bind(&path)
                    .await
                    .map_err(|e| Failure::Error(format!("listening on {path}: {e}")))?;
                (l, Some(path))
            }
        };
        tracing::info!(plugin = %name, socket = ?bound, "serving the graph driver plugin");
        // Restarted under a running dockerd, which will not Init again.
        match plugin.restore().await {
            Ok(Some(home)) => tracing::info!(%home, "root of the last Init open again"),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot open the root of the last Init; waiting for dockerd's"),
        }
        serve(listener, plugin, shutdown()).await;
        if let Some(path) = bound {
            let _ = std::fs::remove_file(&path);
        }
        tracing::info!(plugin = %name, "stopped");
        Ok(())
    })
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot catch SIGTERM/SIGINT; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// systemd socket activation (`sd_listen_fds`): the listening socket
/// arrives as descriptor 3 when `LISTEN_PID` is this process.
mod activation {
    #![allow(unsafe_code)]

    use std::io;
    use std::os::fd::FromRawFd;
    use std::os::unix::fs::FileTypeExt;

    const SD_LISTEN_FDS_START: i32 = 3;

    /// The passed socket, if this process was socket-activated.
    pub fn listener() -> io::Result<Option<tokio::net::UnixListener>> {
        let ours = std::env::var("LISTEN_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            == Some(std::process::id());
        let count = std::env::var("LISTEN_FDS")
            .ok()
            .and_then(|n| n.parse::<i32>().ok())
            .unwrap_or(0);
        if !ours || count < 1 {
            return Ok(None);
        }
        // Children (union servers) must not take the socket for theirs.
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
        let path = format!("/proc/self/fd/{SD_LISTEN_FDS_START}");
        if !std::fs::metadata(&path)?.file_type().is_socket() {
            return Err(io::Error::other(format!(
                "descriptor {SD_LISTEN_FDS_START} is not a socket"
            )));
        }
        // SAFETY: descriptor 3 is open (just checked through /proc), is a
        // socket, and systemd handed it to this process alone; nothing
        // else in the process owns or closes it.
        let std_listener =
            unsafe { std::os::unix::net::UnixListener::from_raw_fd(SD_LISTEN_FDS_START) };
        std_listener.set_nonblocking(true)?;
        tokio::net::UnixListener::from_std(std_listener).map(Some)
    }
}
