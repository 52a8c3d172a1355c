//! The threads of an apply: the caller's thread reads, decompresses and
//! hashes the stream ([`crate::pipe`]), a second one parses it and builds the
//! tree, and a third writes the tar-split metadata when it is recorded
//! ([`crate::recording`]). Wiring them here keeps the applier itself
//! single-threaded.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use camino::Utf8Path;

use super::entry::Applier;
use super::staging::Staging;
use super::{ApplyOptions, ApplyReport};
use crate::error::{ArchiveError, Result};
use crate::pipe::{self, BlockReader};
use crate::reader::TarEvents;
use crate::recording;

/// Runs the applier on its own thread, fed by [`pipe::pump`] on this one
/// (which reads, decompresses and hashes: the input need not be `Send`),
/// and the tar-split writer `rec`, if any, on a third
/// ([`recording::replay`]).
pub(super) fn apply_pipelined<'m>(
    staging: &Staging,
    opts: &ApplyOptions,
    pump: impl FnOnce(SyncSender<pipe::Block<'m>>, Receiver<Vec<u8>>) -> pipe::Pumped,
    rec: Option<Box<dyn TarEvents + 'm>>,
    span: &tracing::Span,
    diff_dir: &Utf8Path,
) -> Result<ApplyReport> {
    let (tx, rx) = sync_channel(pipe::IN_FLIGHT);
    // Room for every block in circulation, so none is dropped and allocated anew.
    let (back_tx, back_rx) = sync_channel(pipe::IN_FLIGHT + recording::IN_FLIGHT + 4);
    std::thread::scope(|s| {
        // With metadata to record, a third thread writes it from the events
        // and consumed blocks the applying thread passes on.
        let (rec, tap): (Option<Box<dyn TarEvents + 'm>>, _) = match rec {
            Some(writer) => {
                let (tap_tx, tap_rx) = sync_channel(recording::IN_FLIGHT);
                let (res_tx, res_rx) = sync_channel(1);
                let back = back_tx.clone();
                std::thread::Builder::new()
                    .name("aufs-record".into())
                    .spawn_scoped(s, move || {
                        let _g = span.enter();
                        recording::replay(tap_rx, writer, back, res_tx)
                    })
                    .map_err(|e| ArchiveError::io("starting the recording thread", diff_dir, e))?;
                (
                    Some(Box::new(recording::Deferred::new(tap_tx.clone(), res_rx))),
                    Some(tap_tx),
                )
            }
            None => (None, None),
        };
        let applying = std::thread::Builder::new()
            .name("aufs-apply".into())
            .spawn_scoped(s, move || {
                let _g = span.enter();
                Applier::new(staging, opts, BlockReader::new(rx, back_tx, tap), rec)?.run()
            })
            .map_err(|e| ArchiveError::io("starting the applying thread", diff_dir, e))?;
        let pumped = pump(tx, back_rx);
        let mut report = match applying.join() {
            Ok(r) => r?,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        report.diff_id = pumped.digest.map(|d| {
            format!(
                "sha256:{}",
                d.iter().map(|b| format!("{b:02x}")).collect::<String>()
            )
        });
        Ok(report)
    })
}
