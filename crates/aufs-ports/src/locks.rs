//! Per-layer locks: the Go driver's `locker.Locker`, behind a trait so a
//! cross-process implementation (file locks under the root) can replace the
//! in-process one when several processes share a root.

use std::collections::HashSet;
use std::io;
use std::sync::{Arc, Condvar, Mutex};

/// Holds a lock until dropped.
pub struct LockGuard {
    _inner: Box<dyn Send>,
}

impl LockGuard {
    /// Wraps whatever releases the lock on drop.
    pub fn new<T: Send + 'static>(inner: T) -> Self {
        LockGuard {
            _inner: Box::new(inner),
        }
    }
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LockGuard")
    }
}

/// Mutual exclusion by key: a layer id, or `space/name` for locks that
/// must not collide with any layer's (no layer id contains `/`).
pub trait LayerLocks: Send + Sync + std::fmt::Debug {
    /// Blocks until `key` is free, then holds it until the guard drops.
    fn lock(&self, key: &str) -> io::Result<LockGuard>;

    /// Takes `key` only if it is free right now. Recovery uses it to leave
    /// alone whatever a live holder is working on.
    fn try_lock(&self, key: &str) -> io::Result<Option<LockGuard>>;
}

/// Keyed locks within one process. Memory is bounded by the keys currently
/// held: a key is forgotten as soon as its guard drops.
#[derive(Debug, Default, Clone)]
pub struct InProcessLocks {
    inner: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    held: Mutex<HashSet<String>>,
    freed: Condvar,
}

struct Held {
    shared: Arc<Shared>,
    key: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.shared.held.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(&self.key);
        drop(held);
        self.shared.freed.notify_all();
    }
}

impl InProcessLocks {
    /// New, with no key held.
    pub fn new() -> Self {
        Self::default()
    }
}

impl InProcessLocks {
    fn guard(&self, key: &str) -> LockGuard {
        LockGuard::new(Held {
            shared: Arc::clone(&self.inner),
            key: key.to_owned(),
        })
    }
}

impl LayerLocks for InProcessLocks {
    fn lock(&self, key: &str) -> io::Result<LockGuard> {
        let mut held = self.inner.held.lock().unwrap_or_else(|e| e.into_inner());
        while held.contains(key) {
            held = self
                .inner
                .freed
                .wait(held)
                .unwrap_or_else(|e| e.into_inner());
        }
        held.insert(key.to_owned());
        Ok(self.guard(key))
    }

    fn try_lock(&self, key: &str) -> io::Result<Option<LockGuard>> {
        let mut held = self.inner.held.lock().unwrap_or_else(|e| e.into_inner());
        if !held.insert(key.to_owned()) {
            return Ok(None);
        }
        drop(held);
        Ok(Some(self.guard(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn same_key_is_exclusive_other_keys_are_not() {
        let locks = InProcessLocks::new();
        let inside = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (locks, inside, max) = (locks.clone(), inside.clone(), max.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let _g = locks.lock("a").unwrap();
                        let _other = locks.lock("b-unrelated").unwrap();
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(n, Ordering::SeqCst);
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(max.load(Ordering::SeqCst), 1);
        assert!(locks.inner.held.lock().unwrap().is_empty());
    }

    #[test]
    fn try_lock_fails_only_while_held() {
        let locks = InProcessLocks::new();
        let g = locks.try_lock("a").unwrap().expect("free");
        assert!(locks.try_lock("a").unwrap().is_none());
        assert!(locks.try_lock("claim/a").unwrap().is_some());
        drop(g);
        assert!(locks.try_lock("a").unwrap().is_some());
    }
}
