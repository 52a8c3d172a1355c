//! Stateful property test: random sequences of create, get, put and remove
//! on the fakes, checked after every step against a reference model of the
//! layers, their reference counts and which unions are mounted.

use aufs_driver::{CreateOpts, Driver, DriverConfig, DriverError, Ports, RefStore};
use aufs_model::LayerId;
use aufs_ports::fakes::{FakeHost, FakeUnionBackend, MemArchive, MemFs};
use aufs_ports::{BackendKind, InProcessLocks, UnionBackend};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

const IDS: [&str; 4] = ["a", "b", "c", "d"];

#[derive(Debug, Clone)]
enum Op {
    Create(usize, Option<usize>),
    Get(usize),
    Put(usize),
    Remove(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let i = 0..IDS.len();
    prop_oneof![
        (i.clone(), proptest::option::of(0..IDS.len())).prop_map(|(a, p)| Op::Create(a, p)),
        i.clone().prop_map(Op::Get),
        i.clone().prop_map(Op::Put),
        i.prop_map(Op::Remove),
    ]
}

fn id(i: usize) -> LayerId {
    LayerId::new(IDS[i]).unwrap()
}

/// What the driver should hold: each layer's parent and reference count.
#[derive(Debug, Default)]
struct Model {
    parents: BTreeMap<usize, Option<usize>>,
    refs: BTreeMap<usize, u32>,
}

impl Model {
    fn mounted(&self, i: usize) -> bool {
        matches!(self.parents.get(&i), Some(Some(_))) && self.refs.get(&i).copied().unwrap_or(0) > 0
    }
}

fn run(ops: Vec<Op>, refs: RefStore) -> Result<(), TestCaseError> {
    let fs = Arc::new(MemFs::new());
    let backend = Arc::new(FakeUnionBackend::new(BackendKind::Fuse));
    let config = DriverConfig {
        refs,
        ..DriverConfig::new("/r")
    };
    let d = Driver::init(
        config,
        Ports {
            archive: Arc::new(MemArchive::new(fs.clone())),
            fs,
            host: Arc::new(FakeHost::default()),
            backend: backend.clone(),
            locks: Arc::new(InProcessLocks::new()),
        },
    )
    .unwrap();
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::Create(a, p) => {
                let r = d.create(&id(a), p.map(id).as_ref(), &CreateOpts::default());
                if m.parents.contains_key(&a) {
                    prop_assert!(
                        matches!(r, Err(DriverError::AlreadyExists(ref x)) if *x == id(a)),
                        "{r:?}"
                    );
                } else if p.is_some_and(|p| p == a || !m.parents.contains_key(&p)) {
                    prop_assert!(
                        matches!(r, Err(DriverError::ParentNotFound { .. })),
                        "{r:?}"
                    );
                } else {
                    prop_assert!(r.is_ok(), "{r:?}");
                    m.parents.insert(a, p);
                    m.refs.insert(a, 0);
                }
            }
            Op::Get(a) => {
                let r = d.get(&id(a), "");
                if m.parents.contains_key(&a) {
                    prop_assert!(r.is_ok(), "{r:?}");
                    *m.refs.entry(a).or_default() += 1;
                } else {
                    prop_assert!(matches!(r, Err(DriverError::NotFound(_))), "{r:?}");
                }
            }
            Op::Put(a) => {
                let r = d.put(&id(a));
                prop_assert!(r.is_ok(), "{r:?}");
                if let Some(n) = m.refs.get_mut(&a) {
                    *n = n.saturating_sub(1);
                }
            }
            Op::Remove(a) => {
                let r = d.remove(&id(a));
                let has_children = m.parents.values().any(|p| *p == Some(a));
                if !m.parents.contains_key(&a) {
                    prop_assert!(matches!(r, Err(DriverError::NotFound(_))), "{r:?}");
                } else if has_children {
                    prop_assert!(matches!(r, Err(DriverError::HasChildren { .. })), "{r:?}");
                } else {
                    prop_assert!(r.is_ok(), "{r:?}");
                    m.parents.remove(&a);
                    m.refs.remove(&a);
                }
            }
        }
        for (i, name) in IDS.iter().enumerate() {
            let exists = m.parents.contains_key(&i);
            prop_assert_eq!(d.exists(&id(i)), exists, "exists {}", name);
            if exists {
                prop_assert_eq!(
                    d.references(&id(i)).unwrap(),
                    m.refs[&i],
                    "references of {}",
                    name
                );
                let parent = d.list().unwrap().into_iter().find(|l| l.id == id(i));
                prop_assert_eq!(parent.and_then(|l| l.parent), m.parents[&i].map(id));
            }
            let mnt = d.layout().mount_point(&id(i));
            prop_assert_eq!(
                backend.is_mounted(&mnt).unwrap(),
                m.mounted(i),
                "mounted {}",
                name
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn reference_counts_follow_the_model(
        ops in proptest::collection::vec(op(), 1..40),
        on_disk in any::<bool>(),
    ) {
        run(ops, if on_disk { RefStore::OnDisk } else { RefStore::InMemory })?;
    }
}
