//! Replies shared by several requests: an entry (lookup and every request
//! that makes a name), an empty answer, a created and opened file (create
//! and tmpfile), and an xattr value or list, which is sized first when the
//! kernel asks with a zero-sized buffer.

use super::convert::entry_attr;
use super::open::Opened;
use super::{UnionFs, TTL};
use aufs_union::Entry;
use fuser::{Errno, Generation, ReplyCreate, ReplyEmpty, ReplyEntry, ReplyXattr};

impl UnionFs {
    /// Answers with entry `e` (or the error), cached for its
    /// [`Self::ttl`].
    pub(super) fn reply_entry(&self, reply: ReplyEntry, r: Result<Entry, Errno>) {
        match r {
            Ok(e) => reply.entry(&self.ttl(&e), &entry_attr(&e), Generation(0)),
            Err(e) => reply.error(e),
        }
    }
}

/// Answers a request that returns no data.
pub(super) fn reply_empty(reply: ReplyEmpty, r: Result<(), Errno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

/// Answers a create (named or not) with the new entry and its open file.
pub(super) fn reply_created(reply: ReplyCreate, r: Result<(Entry, Opened), Errno>) {
    match r {
        Ok((e, o)) => match &o.backing {
            Some(b) => {
                reply.created_passthrough(&TTL, &entry_attr(&e), Generation(0), o.fh, o.flags, b)
            }
            None => reply.created(&TTL, &entry_attr(&e), Generation(0), o.fh, o.flags),
        },
        Err(e) => reply.error(e),
    }
}

/// Answers with an xattr value or name list: its size alone when the
/// kernel gives no buffer (`size` 0), `ERANGE` when it does not fit.
pub(super) fn reply_xattr(reply: ReplyXattr, size: u32, data: Result<Vec<u8>, Errno>) {
    match data {
        Err(e) => reply.error(e),
        Ok(d) if size == 0 => reply.size(d.len() as u32),
        Ok(d) if d.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(d) => reply.data(&d),
    }
}
