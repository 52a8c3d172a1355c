//! `xtask getxattr-loop FILE N`: asks for `security.capability` of FILE N
//! times. On a FUSE mount each call is one request to the server and its
//! reply, with nothing else around it (the kernel caches no xattrs), so
//! the time per call is the price of one round trip; on kernel overlayfs it
//! is the price of the syscall alone.

/// The subcommand's name.
pub const COMMAND: &str = "getxattr-loop";

pub fn run(args: &[String]) -> Result<(), String> {
    let [file, n] = args else {
        return Err(format!("usage: xtask {COMMAND} FILE N"));
    };
    let n: u64 = n.parse().map_err(|_| format!("not a count: {n}"))?;
    let mut buf = [0u8; 64];
    for _ in 0..n {
        match rustix::fs::getxattr(file.as_str(), "security.capability", &mut buf[..]) {
            Ok(_) | Err(rustix::io::Errno::NODATA) => {}
            Err(e) => return Err(format!("{file}: getxattr: {e}")),
        }
    }
    Ok(())
}
