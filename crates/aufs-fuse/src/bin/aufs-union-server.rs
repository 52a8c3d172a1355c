//! Serves one FUSE union; started by `aufs_fuse::FuseBackend`.

fn main() {
    std::process::exit(aufs_fuse::server::run_from_args(
        std::env::args_os().skip(1),
    ));
}
