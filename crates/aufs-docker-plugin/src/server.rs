//! The plugin's socket and its HTTP/1.1 server: keep-alive connections,
//! each served on its own task, requests of a connection in turn and
//! connections at once, as moby's plugin client pools them.

use crate::plugin::Plugin;
use crate::router;
use camino::{Utf8Path, Utf8PathBuf};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::sync::Arc;
use tokio::net::{UnixListener, UnixStream};

/// Where dockerd looks for the socket of the v1 plugin `name`
/// (moby's `pkg/plugins` discovery: `/run/docker/plugins/<name>.sock`).
pub fn default_socket(name: &str) -> Utf8PathBuf {
    Utf8PathBuf::from(format!("/run/docker/plugins/{name}.sock"))
}

/// Where the plugin on `socket` keeps dockerd's last `Init`: beside the
/// socket (`/run/docker/plugins/NAME.init.json`), on the same tmpfs, so a
/// reboot forgets it as dockerd's own state of the plugin is forgotten.
pub fn init_file_for(socket: &Utf8Path) -> Utf8PathBuf {
    let stem = socket.file_stem().unwrap_or("plugin");
    socket.with_file_name(format!("{stem}.init.json"))
}

/// Binds `path`, creating its directory. A socket file nobody answers on
/// (left by a plugin that was killed) is replaced; one that answers is
/// another plugin's, and binding fails.
pub async fn bind(path: &Utf8Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) => {
            if UnixStream::connect(path).await.is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{path}: another server answers on this socket"),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{path} exists and is not a socket"),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    UnixListener::bind(path)
}

/// Serves `plugin` on `listener` until `shutdown` completes; connections
/// still open then are finished on their own tasks.
pub async fn serve(
    listener: UnixListener,
    plugin: Arc<Plugin>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept on the plugin socket");
                    continue;
                }
            },
        };
        let plugin = Arc::clone(&plugin);
        tokio::spawn(async move {
            let service = service_fn(move |req| router::handle(Arc::clone(&plugin), req));
            if let Err(e) = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "plugin connection ended");
            }
        });
    }
}
