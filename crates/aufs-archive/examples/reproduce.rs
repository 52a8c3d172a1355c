//! Writes the original tar of an applied layer to stdout: `cargo run -p aufs-archive --example reproduce -- META DIR > layer.tar`.

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(meta), Some(dir)) = (args.first(), args.get(1)) else {
        eprintln!("usage: reproduce META DIR > layer.tar");
        std::process::exit(2);
    };
    let out = std::io::stdout().lock();
    let mut out = std::io::BufWriter::new(out);
    if let Err(e) = aufs_archive::reproduce(meta.as_str().into(), dir.as_str().into(), &mut out) {
        eprintln!("reproduce: {e}");
        std::process::exit(1);
    }
    out.flush().expect("flushing stdout");
}
