//! An async facade for tokio embedders. The driver's work is blocking
//! filesystem and mount I/O, so each call runs on tokio's blocking pool and
//! the async caller's runtime threads never stall.

use crate::driver::{CreateOpts, Driver, LayerInfo, Status};
use crate::error::{DriverError, Result};
use crate::layer_archive::ApplyOutcome;
use async_trait::async_trait;
use aufs_model::{Change, LayerId};
use camino::Utf8PathBuf;
use std::io::{Read, Write};
use std::sync::Arc;

/// The driver's operations, async.
#[async_trait]
pub trait AsyncGraphDriver: Send + Sync {
    /// See [`Driver::status`].
    async fn status(&self) -> Result<Status>;
    /// See [`Driver::exists`].
    async fn exists(&self, id: LayerId) -> bool;
    /// See [`Driver::create`].
    async fn create(&self, id: LayerId, parent: Option<LayerId>, opts: CreateOpts) -> Result<()>;
    /// See [`Driver::create_read_write`].
    async fn create_read_write(
        &self,
        id: LayerId,
        parent: Option<LayerId>,
        opts: CreateOpts,
    ) -> Result<()>;
    /// See [`Driver::remove`].
    async fn remove(&self, id: LayerId) -> Result<()>;
    /// See [`Driver::get`].
    async fn get(&self, id: LayerId, mount_label: String) -> Result<Utf8PathBuf>;
    /// See [`Driver::put`].
    async fn put(&self, id: LayerId) -> Result<()>;
    /// See [`Driver::list`].
    async fn list(&self) -> Result<Vec<LayerInfo>>;
    /// The layer's direct parent (the first of [`Driver::parent_chain`]).
    async fn parent(&self, id: LayerId) -> Result<Option<LayerId>>;
    /// See [`Driver::cleanup`].
    async fn cleanup(&self) -> Result<()>;
    /// See [`Driver::apply_diff`]; the tarball is read on the blocking pool.
    async fn apply_diff(
        &self,
        id: LayerId,
        parent: Option<LayerId>,
        input: Box<dyn Read + Send>,
    ) -> Result<ApplyOutcome>;
    /// See [`Driver::apply_diff_file`]: a tarball in a file (mapped when
    /// it is a regular file), on the blocking pool.
    async fn apply_diff_file(
        &self,
        id: LayerId,
        parent: Option<LayerId>,
        input: std::fs::File,
    ) -> Result<ApplyOutcome>;
    /// See [`Driver::diff`]; returns the writer once the tarball is written.
    async fn diff(
        &self,
        id: LayerId,
        parent: Option<LayerId>,
        out: Box<dyn Write + Send>,
    ) -> Result<Box<dyn Write + Send>>;
    /// See [`Driver::changes`].
    async fn changes(&self, id: LayerId, parent: Option<LayerId>) -> Result<Vec<Change>>;
    /// See [`Driver::diff_size`].
    async fn diff_size(&self, id: LayerId, parent: Option<LayerId>) -> Result<u64>;
}

/// Wraps a shared [`Driver`].
#[derive(Debug, Clone)]
pub struct AsyncDriver {
    inner: Arc<Driver>,
}

impl AsyncDriver {
    /// Wraps `driver`.
    pub fn new(driver: Arc<Driver>) -> Self {
        AsyncDriver { inner: driver }
    }

    /// The wrapped driver.
    pub fn driver(&self) -> &Arc<Driver> {
        &self.inner
    }

    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Driver) -> Result<T> + Send + 'static,
    {
        let d = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&d))
            .await
            .map_err(|e| DriverError::Io {
                op: "run blocking driver task",
                path: Utf8PathBuf::new(),
                source: std::io::Error::other(e),
            })?
    }
}

#[async_trait]
impl AsyncGraphDriver for AsyncDriver {
    async fn status(&self) -> Result<Status> {
        self.run(|d| d.status()).await
    }
    async fn exists(&self, id: LayerId) -> bool {
        self.run(move |d| Ok(d.exists(&id))).await.unwrap_or(false)
    }
    async fn create(&self, id: LayerId, parent: Option<LayerId>, opts: CreateOpts) -> Result<()> {
        self.run(move |d| d.create(&id, parent.as_ref(), &opts))
            .await
    }
    async fn create_read_write(
        &self,
        id: LayerId,
        parent: Option<LayerId>,
        opts: CreateOpts,
    ) -> Result<()> {
        self.run(move |d| d.create_read_write(&id, parent.as_ref(), &opts))
            .await
    }
    async fn remove(&self, id: LayerId) -> Result<()> {
        self.run(move |d| d.remove(&id)).await
    }
    async fn get(&self, id: LayerId, mount_label: String) -> Result<Utf8PathBuf> {
        self.run(move |d| d.get(&id, &mount_label)).await
    }
    async fn put(&self, id: LayerId) -> Result<()> {
        self.run(move |d| d.put(&id)).await
    }
    async fn list(&self) -> Result<Vec<LayerInfo>> {
        self.run(|d| d.list()).await
    }
    async fn parent(&self, id: LayerId) -> Result<Option<LayerId>> {
        self.run(move |d| Ok(d.parent_chain(&id)?.parent().cloned()))
            .await
    }
    async fn cleanup(&self) -> Result<()> {
        self.run(|d| d.cleanup()).await
    }
    async fn apply_diff(
        &self,
        id: LayerId,
        parent: Option<LayerId>,
        input: Box<dyn Read + Send>,
    ) -> Result<ApplyOutcome> {
        self.run(move |d| d.apply_diff(&id, parent.as_ref(), input))
            .await
    }
    async fn apply_diff_file(
        &self,
        id: LayerId,
        parent: Option<LayerId>,
        input: std::fs::File,
    ) -> Result<ApplyOutcome> {
        self.run(move |d| d.apply_diff_file(&id, parent.as_ref(), &input))
            .await
    }
    async fn diff(
        &self,
        id: LayerId,
        parent: Option<LayerId>,
        mut out: Box<dyn Write + Send>,
    ) -> Result<Box<dyn Write + Send>> {
        self.run(move |d| {
            d.diff(&id, parent.as_ref(), &mut out)?;
            Ok(out)
        })
        .await
    }
    async fn changes(&self, id: LayerId, parent: Option<LayerId>) -> Result<Vec<Change>> {
        self.run(move |d| d.changes(&id, parent.as_ref())).await
    }
    async fn diff_size(&self, id: LayerId, parent: Option<LayerId>) -> Result<u64> {
        self.run(move |d| d.diff_size(&id, parent.as_ref())).await
    }
}
