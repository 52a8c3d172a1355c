//! The aufs union view over real branch directories.
