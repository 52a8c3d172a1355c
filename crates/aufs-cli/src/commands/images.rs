//! The image commands: `import` and `export` of `docker save` tarballs and
//! OCI layouts.

use super::output::{print_json, utf8};
use crate::Failure;
use aufs_driver::Driver;
use aufs_model::LayerId;
use serde_json::json;
use std::path::Path;

/// `aufsctl import IMAGE`.
pub(super) fn import(json_out: bool, driver: &Driver, image: &Path) -> Result<(), Failure> {
    let image = utf8(image)?;
    let mut bar = ImportBar::for_stderr();
    let report = aufs_image::import(driver, image, &mut bar)?;
    bar.finish();
    if json_out {
        let layers: Vec<_> = report
            .layers
            .iter()
            .map(|(id, created)| json!({"id": id.as_str(), "created": created}))
            .collect();
        print_json(&json!({"id": report.top.as_str(), "layers": layers}));
    } else {
        println!("{}", report.top);
    }
    Ok(())
}

/// `aufsctl export ID -o PATH [--oci]`.
pub(super) fn export(
    driver: &Driver,
    id: &LayerId,
    output: &Path,
    oci: bool,
) -> Result<(), Failure> {
    let output = utf8(output)?;
    let format = if oci {
        aufs_image::ExportFormat::OciLayout
    } else {
        aufs_image::ExportFormat::DockerSave
    };
    aufs_image::export(driver, id, output, format)?;
    Ok(())
}

/// A progress bar of an import on stderr, when stderr is a terminal.
struct ImportBar(Option<indicatif::ProgressBar>);

impl ImportBar {
    fn for_stderr() -> Self {
        use std::io::IsTerminal;
        Self(std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} layers {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        }))
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

impl aufs_image::Progress for ImportBar {
    fn layer(&mut self, index: usize, total: usize, id: &LayerId, skipped: bool) {
        if let Some(bar) = &self.0 {
            bar.set_length(total as u64);
            bar.set_position(index as u64);
            let short = &id.as_str()[..id.as_str().len().min(12)];
            bar.set_message(if skipped {
                format!("{short} (present)")
            } else {
                short.to_string()
            });
        }
    }
}
