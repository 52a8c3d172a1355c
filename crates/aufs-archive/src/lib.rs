//! Whiteout-aware layer tarballs: safe apply, diff export, changes, diff size, exact original bytes.
