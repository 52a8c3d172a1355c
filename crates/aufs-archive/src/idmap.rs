//! User-namespace id maps (container id -> host id), as Docker's `idtools`.

/// One contiguous range of a uid or gid map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    /// First id inside the container.
    pub container_id: u64,
    /// The host id it maps to.
    pub host_id: u64,
    /// Number of ids in the range.
    pub size: u64,
}

/// Maps a container id to the host; an empty map is the identity.
pub fn to_host(maps: &[IdMap], id: u64) -> Option<u64> {
    if maps.is_empty() {
        return Some(id);
    }
    maps.iter().find_map(|m| {
        (id >= m.container_id && id - m.container_id < m.size)
            .then(|| m.host_id + (id - m.container_id))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_ranges() {
        let m = [IdMap {
            container_id: 0,
            host_id: 100_000,
            size: 65536,
        }];
        assert_eq!(to_host(&m, 0), Some(100_000));
        assert_eq!(to_host(&m, 65535), Some(165_535));
        assert_eq!(to_host(&m, 65536), None);
        assert_eq!(to_host(&[], 7), Some(7));
    }
}
