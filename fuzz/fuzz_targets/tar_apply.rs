//! The tar reader and the apply behind it: any input is applied into a
//! fresh diff dir or refused, never touching anything outside it; an
//! uncompressed tarball that applies is given back byte for byte from the
//! tar-split metadata recorded while it applied.
#![no_main]

use aufs_archive::{apply_layer, reproduce, ApplyOptions};
use camino::Utf8PathBuf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let dir = Utf8PathBuf::from_path_buf(tmp.path().to_path_buf()).expect("a UTF-8 temp dir");
    let diff = dir.join("diff");
    std::fs::create_dir(&diff).expect("the diff dir");
    let meta = dir.join("tar-split");
    let opts = ApplyOptions {
        tar_split: Some(meta.clone()),
        sync: false,
        ..ApplyOptions::default()
    };
    let Ok(report) = apply_layer(data, &diff, &opts) else {
        return;
    };
    let plain = aufs_archive::detect_compression(&data[..data.len().min(6)])
        .is_ok_and(|c| c == aufs_archive::Compression::None);
    if plain {
        let mut back = Vec::new();
        reproduce(&meta, &diff, &mut back).expect("an applied layer reproduces");
        assert_eq!(report.tar_bytes, data.len() as u64);
        assert!(
            back == data,
            "reproduced bytes differ from the applied tarball"
        );
    }
});
