//! Kernel aufs mount data, built exactly as moby's `aufsMount` does.
//!
//! Mount data is clipped by the kernel at one page (moby issues #1171, #6465,
//! #7095). So the first `mount(2)` carries `br:<rw>=rw:<ro1>=ro+wh:...` with as
//! many read-only branches as fit in one page minus the label and a fixed
//! overhead for the options, and the remaining branches are added by
//! `MS_REMOUNT` calls with `append:<dir>=ro+wh,` strings, each batch clipped
//! to the same budget (moby PR #9151).

/// The bytes the Go driver reserves for `,dio,xino=/dev/shm/aufs.xino` and the
/// label's `,context=""` wrapping.
pub const OPTION_OVERHEAD: usize = 54;
/// Extra reserve when `dirperm1` is appended.
pub const DIRPERM1_OVERHEAD: usize = ",dirperm1".len();
/// The options the Go driver always passes.
pub const BASE_OPTIONS: &str = "dio,xino=/dev/shm/aufs.xino";

/// Inputs of the mount data besides the branches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlanOptions {
    /// System page size (`getpagesize()`), usually 4096.
    pub page_size: usize,
    /// SELinux mount label, empty for none.
    pub mount_label: String,
    /// Whether the kernel's aufs accepts `dirperm1`.
    pub dirperm1: bool,
}

impl Default for MountPlanOptions {
    fn default() -> Self {
        MountPlanOptions {
            page_size: 4096,
            mount_label: String::new(),
            dirperm1: false,
        }
    }
}

/// The data strings of the initial mount and of each `MS_REMOUNT` append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    /// Data of the first `mount(2)`.
    pub mount_data: String,
    /// Data of each following `mount(2)` with `MS_REMOUNT`, in order.
    pub remount_data: Vec<String>,
}

/// Why no plan fits the page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountPlanError {
    /// The label and overhead leave no room at all.
    #[error("mount label of {label_len} bytes leaves no room in a {page_size}-byte page")]
    LabelTooLong {
        /// Length of the label.
        label_len: usize,
        /// Page size used.
        page_size: usize,
    },
    /// One branch is longer than the budget; aufs could never be given it.
    /// (The Go driver silently truncates or loops here.)
    #[error("branch {branch:?} needs {needed} bytes of mount data, only {budget} fit in a page")]
    BranchTooLong {
        /// The branch path.
        branch: String,
        /// Bytes it needs.
        needed: usize,
        /// Bytes available.
        budget: usize,
    },
}

/// The budget for branch text in one mount call, as the Go driver computes it.
pub fn branch_budget(opts: &MountPlanOptions) -> Result<usize, MountPlanError> {
    let overhead = OPTION_OVERHEAD + if opts.dirperm1 { DIRPERM1_OVERHEAD } else { 0 };
    opts.page_size
        .checked_sub(opts.mount_label.len() + overhead)
        .filter(|b| *b > 0)
        .ok_or(MountPlanError::LabelTooLong {
            label_len: opts.mount_label.len(),
            page_size: opts.page_size,
        })
}

/// Appends the SELinux `context="<label>"` option as go-selinux's
/// `FormatMountLabel` does (nothing for an empty label).
pub fn format_mount_label(src: &str, label: &str) -> String {
    if label.is_empty() {
        return src.to_owned();
    }
    let quoted = go_quote(label);
    if src.is_empty() {
        format!("context={quoted}")
    } else {
        format!("{src},context={quoted}")
    }
}

/// Go's `%q` for the printable ASCII labels SELinux uses: quotes, with `"`
/// and `\` escaped, other bytes escaped as `\xNN`.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_graphic() || c == ' ' => out.push(c),
            c if !c.is_control() => out.push(c),
            c => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

/// Builds the mount data for a union of `rw` over `ro` (nearest parent first).
pub fn plan_mount(
    rw: &str,
    ro: &[&str],
    opts: &MountPlanOptions,
) -> Result<MountPlan, MountPlanError> {
    let budget = branch_budget(opts)?;
    let mut first = format!("br:{rw}=rw");
    if first.len() > budget {
        return Err(MountPlanError::BranchTooLong {
            branch: rw.to_owned(),
            needed: first.len(),
            budget,
        });
    }
    let mut index = 0;
    while index < ro.len() {
        let piece_len = 1 + ro[index].len() + "=ro+wh".len();
        if first.len() + piece_len > budget {
            break;
        }
        first.push(':');
        first.push_str(ro[index]);
        first.push_str("=ro+wh");
        index += 1;
    }
    let mut options = String::from(BASE_OPTIONS);
    if opts.dirperm1 {
        options.push_str(",dirperm1");
    }
    let mount_data = format_mount_label(&format!("{first},{options}"), &opts.mount_label);

    let mut remount_data = Vec::new();
    while index < ro.len() {
        let mut batch = String::new();
        while index < ro.len() {
            let piece_len = "append:".len() + ro[index].len() + "=ro+wh,".len();
            if batch.len() + piece_len > budget {
                if batch.is_empty() {
                    return Err(MountPlanError::BranchTooLong {
                        branch: ro[index].to_owned(),
                        needed: piece_len,
                        budget,
                    });
                }
                break;
            }
            batch.push_str("append:");
            batch.push_str(ro[index]);
            batch.push_str("=ro+wh,");
            index += 1;
        }
        remount_data.push(format_mount_label(&batch, &opts.mount_label));
    }
    Ok(MountPlan {
        mount_data,
        remount_data,
    })
}

/// Every branch of a plan in the order aufs ends up stacking them: the rw
/// branch, then read-only branches from the first mount, then each append.
/// Used to check plans; a pure inverse of [`plan_mount`].
pub fn branches_of(plan: &MountPlan, label: &str) -> Vec<(String, String)> {
    let strip_label = |s: &str| -> String {
        if label.is_empty() {
            s.to_owned()
        } else {
            let suffix = format_mount_label("", label);
            s.strip_suffix(&suffix)
                .map(|t| t.strip_suffix(',').unwrap_or(t).to_owned())
                .unwrap_or_else(|| s.to_owned())
        }
    };
    let mut out = Vec::new();
    let first = strip_label(&plan.mount_data);
    let br = first.strip_prefix("br:").unwrap_or(&first);
    // Options follow the last `,`; branch paths here contain no `,`.
    let br = br.rsplit_once(",dio,").map(|(b, _)| b).unwrap_or(br);
    for part in br.split(':') {
        if let Some((path, perm)) = part.rsplit_once('=') {
            out.push((path.to_owned(), perm.to_owned()));
        }
    }
    for r in &plan.remount_data {
        let r = strip_label(r);
        for part in r.split(',').filter(|p| !p.is_empty()) {
            let part = part.strip_prefix("append:").unwrap_or(part);
            if let Some((path, perm)) = part.rsplit_once('=') {
                out.push((path.to_owned(), perm.to_owned()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn paths(n: usize, len: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                let s = format!("/var/lib/docker/aufs/diff/{i:0>width$}", width = len);
                s
            })
            .collect()
    }

    #[test]
    fn single_layer_matches_go_format() {
        let plan = plan_mount("/r/diff/2", &["/r/diff/1"], &MountPlanOptions::default()).unwrap();
        assert_eq!(
            plan.mount_data,
            "br:/r/diff/2=rw:/r/diff/1=ro+wh,dio,xino=/dev/shm/aufs.xino"
        );
        assert!(plan.remount_data.is_empty());
    }

    #[test]
    fn dirperm1_and_label() {
        let opts = MountPlanOptions {
            page_size: 4096,
            mount_label: "system_u:object_r:container_file_t:s0:c1,c2".into(),
            dirperm1: true,
        };
        let plan = plan_mount("/rw", &["/a"], &opts).unwrap();
        assert_eq!(
            plan.mount_data,
            "br:/rw=rw:/a=ro+wh,dio,xino=/dev/shm/aufs.xino,dirperm1,context=\"system_u:object_r:container_file_t:s0:c1,c2\""
        );
    }

    #[test]
    fn many_layers_split_into_appends() {
        let ro = paths(128, 64);
        let refs: Vec<&str> = ro.iter().map(String::as_str).collect();
        let plan = plan_mount("/rw", &refs, &MountPlanOptions::default()).unwrap();
        assert!(!plan.remount_data.is_empty());
        for r in &plan.remount_data {
            assert!(r.starts_with("append:"));
            assert!(r.ends_with("=ro+wh,"));
            assert!(r.len() <= 4096 - OPTION_OVERHEAD);
        }
        let br = branches_of(&plan, "");
        assert_eq!(br.len(), 129);
        assert_eq!(br[0], ("/rw".to_string(), "rw".to_string()));
        for (i, (p, perm)) in br[1..].iter().enumerate() {
            assert_eq!(p, &ro[i]);
            assert_eq!(perm, "ro+wh");
        }
    }

    #[test]
    fn too_long_branch_is_an_error_not_a_loop() {
        let long = format!("/{}", "x".repeat(5000));
        assert!(matches!(
            plan_mount("/rw", &[&long], &MountPlanOptions::default()),
            Err(MountPlanError::BranchTooLong { .. })
        ));
        assert!(matches!(
            plan_mount(&long, &[], &MountPlanOptions::default()),
            Err(MountPlanError::BranchTooLong { .. })
        ));
        let opts = MountPlanOptions {
            mount_label: "l".repeat(5000),
            ..Default::default()
        };
        assert!(matches!(
            plan_mount("/rw", &[], &opts),
            Err(MountPlanError::LabelTooLong { .. })
        ));
    }

    #[test]
    fn label_is_go_quoted() {
        assert_eq!(format_mount_label("", "a\"b"), "context=\"a\\\"b\"");
        assert_eq!(format_mount_label("x", ""), "x");
    }

    proptest! {
        #[test]
        fn every_call_fits_the_page_and_every_layer_appears_once_in_order(
            n in 0usize..300,
            path_len in 1usize..200,
            label_len in 0usize..300,
            dirperm1 in any::<bool>(),
            page_size in prop_oneof![Just(4096usize), Just(16384usize), 1024usize..8192],
        ) {
            let ro = paths(n, path_len);
            let refs: Vec<&str> = ro.iter().map(String::as_str).collect();
            let label: String = "s".repeat(label_len);
            let opts = MountPlanOptions { page_size, mount_label: label.clone(), dirperm1 };
            match plan_mount("/root/diff/rw", &refs, &opts) {
                Ok(plan) => {
                    prop_assert!(plan.mount_data.len() < page_size, "{} >= {}", plan.mount_data.len(), page_size);
                    for r in &plan.remount_data {
                        prop_assert!(r.len() < page_size);
                        prop_assert!(!r.is_empty());
                    }
                    let br = branches_of(&plan, &label);
                    prop_assert_eq!(br.len(), n + 1);
                    prop_assert_eq!(&br[0].0, "/root/diff/rw");
                    for (i, (p, perm)) in br[1..].iter().enumerate() {
                        prop_assert_eq!(p, &ro[i]);
                        prop_assert_eq!(perm.as_str(), "ro+wh");
                    }
                }
                Err(MountPlanError::BranchTooLong { needed, budget, .. }) => prop_assert!(needed > budget),
                Err(MountPlanError::LabelTooLong { .. }) => {
                    prop_assert!(label_len + OPTION_OVERHEAD + DIRPERM1_OVERHEAD >= page_size)
                }
            }
        }
    }
}
