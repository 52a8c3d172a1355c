//! Applies a layer tarball into a directory: `cargo run -p aufs-archive --example apply -- TAR DIR [TAR_SPLIT]`.

use aufs_archive::{apply_layer, ApplyOptions};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(tar), Some(dir)) = (args.first(), args.get(1)) else {
        eprintln!("usage: apply TAR DIR [TAR_SPLIT]");
        std::process::exit(2);
    };
    let opts = ApplyOptions {
        tar_split: args.get(2).map(Into::into),
        ..ApplyOptions::default()
    };
    let input = std::fs::File::open(tar).unwrap_or_else(|e| {
        eprintln!("apply: {tar}: {e}");
        std::process::exit(1);
    });
    match apply_layer(input, dir.as_str().into(), &opts) {
        Ok(r) => println!("{r:?}"),
        Err(e) => {
            eprintln!("apply: {e}");
            std::process::exit(1);
        }
    }
}
