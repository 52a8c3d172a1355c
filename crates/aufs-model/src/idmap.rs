//! User-namespace id maps (Docker's `idtools.IDMap`): which host ids the
//! container's ids are.

/// One contiguous range: container ids `container_id..container_id+size`
/// are host ids `host_id..host_id+size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    /// First id inside the container.
    pub container_id: u32,
    /// First id on the host.
    pub host_id: u32,
    /// Number of ids.
    pub size: u32,
}

/// The uid and gid maps of a driver; empty maps mean identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMappings {
    /// uid ranges.
    pub uids: Vec<IdMap>,
    /// gid ranges.
    pub gids: Vec<IdMap>,
}

/// A container id that no range maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("container {kind} {id} is not mapped to any host id")]
pub struct UnmappedId {
    /// `uid` or `gid`.
    pub kind: &'static str,
    /// The id.
    pub id: u32,
}

fn to_host(maps: &[IdMap], id: u32, kind: &'static str) -> Result<u32, UnmappedId> {
    if maps.is_empty() {
        return Ok(id);
    }
    maps.iter()
        .find(|m| id >= m.container_id && (id - m.container_id) < m.size)
        .map(|m| m.host_id + (id - m.container_id))
        .ok_or(UnmappedId { kind, id })
}

fn to_container(maps: &[IdMap], id: u32, kind: &'static str) -> Result<u32, UnmappedId> {
    if maps.is_empty() {
        return Ok(id);
    }
    maps.iter()
        .find(|m| id >= m.host_id && (id - m.host_id) < m.size)
        .map(|m| m.container_id + (id - m.host_id))
        .ok_or(UnmappedId { kind, id })
}

impl IdMappings {
    /// True when no mapping is configured.
    pub fn is_identity(&self) -> bool {
        self.uids.is_empty() && self.gids.is_empty()
    }

    /// The host ids of container root (Docker's `GetRootUIDGID`).
    pub fn root_pair(&self) -> Result<(u32, u32), UnmappedId> {
        Ok((
            to_host(&self.uids, 0, "uid")?,
            to_host(&self.gids, 0, "gid")?,
        ))
    }

    /// Container (uid, gid) to host ids.
    pub fn to_host(&self, uid: u32, gid: u32) -> Result<(u32, u32), UnmappedId> {
        Ok((
            to_host(&self.uids, uid, "uid")?,
            to_host(&self.gids, gid, "gid")?,
        ))
    }

    /// Host (uid, gid) to container ids.
    pub fn to_container(&self, uid: u32, gid: u32) -> Result<(u32, u32), UnmappedId> {
        Ok((
            to_container(&self.uids, uid, "uid")?,
            to_container(&self.gids, gid, "gid")?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn identity_and_ranges() {
        assert_eq!(IdMappings::default().root_pair(), Ok((0, 0)));
        let m = IdMappings {
            uids: vec![IdMap {
                container_id: 0,
                host_id: 100000,
                size: 65536,
            }],
            gids: vec![IdMap {
                container_id: 0,
                host_id: 200000,
                size: 10,
            }],
        };
        assert_eq!(m.root_pair(), Ok((100000, 200000)));
        assert_eq!(m.to_host(5, 9), Ok((100005, 200009)));
        assert!(m.to_host(5, 10).is_err());
        assert_eq!(m.to_container(100005, 200009), Ok((5, 9)));
    }

    proptest! {
        #[test]
        fn round_trip(c in 0u32..1000, h in 0u32..1_000_000, size in 1u32..1000, id in 0u32..2000) {
            let m = IdMappings { uids: vec![IdMap { container_id: c, host_id: h, size }], gids: vec![] };
            if let Ok((hu, hg)) = m.to_host(id, id) {
                prop_assert_eq!(m.to_container(hu, hg), Ok((id, id)));
            } else {
                prop_assert!(id < c || id - c >= size);
            }
        }
    }
}
