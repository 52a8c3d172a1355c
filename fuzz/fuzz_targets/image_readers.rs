//! The image metadata readers: `docker save`'s `manifest.json`, an OCI
//! `index.json` and image manifest, and an image config's DiffIDs. The
//! first byte picks the reader, the rest is the document.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&kind, doc)) = data.split_first() {
        aufs_image::fuzzing::image_reader(kind, doc);
    }
});
