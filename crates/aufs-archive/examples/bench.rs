//! Runs the aufs-archive benchmark: `cargo run --release -p aufs-archive --example bench [FILES] [FILE_SIZE] [WORK_DIR] [nosync]`.

use aufs_archive::bench::{run, BenchConfig};

fn main() {
    let mut cfg = BenchConfig::default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(n) = args.first() {
        cfg.files = n.parse().expect("FILES must be a number");
    }
    if let Some(n) = args.get(1) {
        cfg.file_size = n.parse().expect("FILE_SIZE must be a number");
    }
    if let Some(d) = args.get(2) {
        cfg.work_dir = d.into();
    }
    if args.get(3).map(String::as_str) == Some("nosync") {
        cfg.sync = false;
    }
    match run(&cfg) {
        Ok(r) => print!("{r}"),
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(1);
        }
    }
}
