//! Applies a layer tarball into a directory:
//! `cargo run -p aufs-archive --example apply -- [--no-sync] [--no-digest] [--read] TAR DIR [TAR_SPLIT]`
//! (`--read`: `apply_layer` on the file as a stream, instead of
//! `apply_layer_file`, which maps only files sealed against shrinking and
//! reads a plain file too).

use aufs_archive::{apply_layer, apply_layer_file, ApplyOptions};

fn main() {
    let mut opts = ApplyOptions::default();
    let mut args = Vec::new();
    let mut read = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--no-sync" => opts.sync = false,
            "--no-digest" => opts.digest = false,
            "--read" => read = true,
            _ => args.push(a),
        }
    }
    let (Some(tar), Some(dir)) = (args.first(), args.get(1)) else {
        eprintln!("usage: apply [--no-sync] [--no-digest] [--read] TAR DIR [TAR_SPLIT]");
        std::process::exit(2);
    };
    opts.tar_split = args.get(2).map(Into::into);
    let input = std::fs::File::open(tar).unwrap_or_else(|e| {
        eprintln!("apply: {tar}: {e}");
        std::process::exit(1);
    });
    let applied = if read {
        apply_layer(input, dir.as_str().into(), &opts)
    } else {
        apply_layer_file(&input, dir.as_str().into(), &opts)
    };
    match applied {
        Ok(r) => println!("{r:?}"),
        Err(e) => {
            eprintln!("apply: {e}");
            std::process::exit(1);
        }
    }
}
