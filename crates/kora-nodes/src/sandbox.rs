//! The PythonCodeNode sandbox: what an interpreter process may do.
//!
//! Owns the confinement of one interpreter, applied between fork and exec and kept for the
//! process's life (Landlock and seccomp cannot be lifted by the code they confine):
//! - **files** (Landlock): the Python runtime and the shared libraries read-only, the data root
//!   read-write, nothing else (`/etc`, `/proc`, `/home`, other data are refused);
//! - **network**: with `network = false`, no socket of any family (seccomp) and no TCP bind or
//!   connect (Landlock, ABI 4+);
//! - **processes**: no fork, vfork or clone of a new process (threads are allowed), no ptrace;
//!   no signals to, nor abstract sockets of, processes outside the sandbox (Landlock ABI 6+);
//! - **resources** (setrlimit): address space, CPU seconds, open files, file size, no core;
//! - **environment**: cleared except `PATH`, `LANG` and Python's own switches.
//!
//! Everything is prepared in the worker; between fork and exec the child only makes system
//! calls (no allocation, no locks). Must not: decide per node (it is a worker's setting, so a
//! queue's: every worker of a queue takes the same), or make a worker without Landlock run
//! node code unconfined when the sandbox is on (it refuses, saying how to turn it off).

// The one module allowed unsafe code (the workspace denies it): raw system calls, and the
// pre_exec hook that runs them in the child. Each block says why it is sound.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `[nodes.sandbox]`: how PythonCodeNode's interpreters are confined on this worker.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// On by default. Off, node code runs with the worker's own user, files and network.
    pub enabled: bool,
    /// Whether node code may open sockets (TCP, UDP, Unix). Give the workers of a queue that
    /// needs it their own setting.
    pub network: bool,
    /// Address space of one interpreter, in MiB (beyond it, Python raises MemoryError).
    pub memory_mib: u64,
    /// CPU seconds one call may use (beyond them, the node fails with CPUTimeExceeded).
    pub cpu_secs: u64,
    /// Files one interpreter may hold open.
    pub open_files: u64,
    /// Largest file node code may write, in MiB.
    pub file_size_mib: u64,
    /// More directories node code may read (besides the Python runtime and the data root).
    pub read_only: Vec<PathBuf>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            enabled: true,
            network: false,
            memory_mib: 1024,
            cpu_secs: 60,
            open_files: 256,
            file_size_mib: 256,
            read_only: Vec::new(),
        }
    }
}

impl SandboxConfig {
    pub fn validate(&self) -> Result<(), String> {
        let check = |name: &str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "nodes.sandbox.{name} must be between {lo} and {hi} (it is {v})"
                ))
            }
        };
        check("memory_mib", self.memory_mib, 64, 1 << 20)?;
        check("cpu_secs", self.cpu_secs, 1, 86_400)?;
        check("open_files", self.open_files, 16, 1 << 20)?;
        check("file_size_mib", self.file_size_mib, 1, 1 << 30)?;
        Ok(())
    }

    /// What a node's error says after a refusal the sandbox may have caused.
    pub(crate) fn hint(&self, data_root: &Path) -> String {
        format!(
            "the PythonCodeNode sandbox allows files only below the data root {} (the Python runtime read-only), {}no new processes, {} MiB of memory, {} CPU seconds a call, files up to {} MiB; [nodes.sandbox] in the worker's configuration sets it",
            data_root.display(),
            if self.network { "" } else { "no network, " },
            self.memory_mib,
            self.cpu_secs,
            self.file_size_mib,
        )
    }
}

/// Where an interpreter's Python lives, asked of the interpreter itself once.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Probe {
    /// The interpreter's own binary (a launcher such as pyenv's shim is a script that the
    /// sandbox could not run).
    pub exe: PathBuf,
    /// `sys.prefix` and the rest, and every `sys.path` entry.
    pub paths: Vec<PathBuf>,
}

/// The script that answers [`Probe`].
pub(crate) const PROBE: &str = "import json, os, sys; print(json.dumps({'exe': os.path.realpath(sys.executable), 'paths': [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix] + sys.path}))";

/// A sandbox ready to apply to interpreters: the Landlock ruleset, the seccomp programs and
/// the limits, built once in the worker.
pub(crate) struct Prepared {
    ruleset: OwnedFd,
    filters: Vec<seccompiler::BpfProgram>,
    limits: Vec<(libc::__rlimit_resource_t, u64)>,
    /// The interpreter to run (the probe's `exe`).
    pub exe: PathBuf,
    /// The interpreter's whole environment.
    pub env: Vec<(&'static str, String)>,
    /// The data root, which is the interpreter's working directory.
    pub data_root: PathBuf,
}

// Landlock's ABI (linux/landlock.h).
const SYS_CREATE_RULESET: libc::c_long = libc::SYS_landlock_create_ruleset;
const SYS_ADD_RULE: libc::c_long = libc::SYS_landlock_add_rule;
const SYS_RESTRICT_SELF: libc::c_long = libc::SYS_landlock_restrict_self;
const CREATE_RULESET_VERSION: libc::c_uint = 1;
const RULE_PATH_BENEATH: libc::c_uint = 1;
const FS_EXECUTE: u64 = 1 << 0;
const FS_WRITE_FILE: u64 = 1 << 1;
const FS_READ_FILE: u64 = 1 << 2;
const FS_READ_DIR: u64 = 1 << 3;
const FS_MAKE_CHAR: u64 = 1 << 6;
const FS_MAKE_BLOCK: u64 = 1 << 11;
const FS_REFER: u64 = 1 << 13;
const FS_TRUNCATE: u64 = 1 << 14;
const FS_IOCTL_DEV: u64 = 1 << 15;
const NET_BIND_TCP: u64 = 1 << 0;
const NET_CONNECT_TCP: u64 = 1 << 1;
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// The kernel's Landlock ABI version; 0 without Landlock.
pub fn landlock_abi() -> u32 {
    // SAFETY: the documented version query: no pointers are read.
    let v = unsafe {
        libc::syscall(
            SYS_CREATE_RULESET,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(v).unwrap_or(0)
}

/// Every file system right the kernel's ABI knows.
fn fs_rights(abi: u32) -> u64 {
    let mut all = (1 << 13) - 1;
    if abi >= 2 {
        all |= FS_REFER;
    }
    if abi >= 3 {
        all |= FS_TRUNCATE;
    }
    if abi >= 5 {
        all |= FS_IOCTL_DEV;
    }
    all
}

/// The rights a rule may grant on a file (not a directory).
const FILE_RIGHTS: u64 = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV;

impl Prepared {
    pub(crate) fn new(
        cfg: &SandboxConfig,
        data_root: &Path,
        probe: Probe,
    ) -> Result<Prepared, String> {
        let abi = landlock_abi();
        if abi == 0 {
            return Err("the PythonCodeNode sandbox needs Landlock (Linux 5.13 or later, with landlock in the kernel's lsm= list), which this machine does not have; run such workers with nodes.sandbox.enabled = false (KORA_NODES__SANDBOX__ENABLED=false) only if they run trusted code".into());
        }
        let data_root = data_root.canonicalize().map_err(|e| {
            format!(
                "the data root {} cannot be used by the sandbox: {e}",
                data_root.display()
            )
        })?;
        let all = fs_rights(abi);
        let attr = RulesetAttr {
            handled_access_fs: all,
            handled_access_net: if !cfg.network && abi >= 4 {
                NET_BIND_TCP | NET_CONNECT_TCP
            } else {
                0
            },
            scoped: if abi >= 6 {
                SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
            } else {
                0
            },
        };
        // SAFETY: `attr` is a valid ruleset attribute of the size given.
        let fd = unsafe {
            libc::syscall(
                SYS_CREATE_RULESET,
                &raw const attr,
                std::mem::size_of::<RulesetAttr>(),
                0u32,
            )
        };
        let fd = i32::try_from(fd)
            .ok()
            .filter(|fd| *fd >= 0)
            .ok_or_else(|| {
                format!(
                    "cannot create the sandbox's Landlock ruleset: {}",
                    std::io::Error::last_os_error()
                )
            })?;
        // SAFETY: the kernel just returned this descriptor (close-on-exec) and nothing else owns it.
        let ruleset = unsafe { OwnedFd::from_raw_fd(fd) };

        let read_only = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR;
        let mut rules: Vec<(PathBuf, u64)> = Vec::new();
        for p in probe
            .paths
            .iter()
            .cloned()
            .chain(probe.exe.parent().map(Path::to_path_buf))
            .chain(
                ["/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib"]
                    .iter()
                    .map(PathBuf::from),
            )
            .chain(cfg.read_only.iter().cloned())
        {
            rules.push((p, read_only));
        }
        rules.push((probe.exe.clone(), FS_EXECUTE | FS_READ_FILE));
        rules.push(("/etc/ld.so.cache".into(), FS_READ_FILE));
        rules.push(("/dev/null".into(), FS_READ_FILE | FS_WRITE_FILE));
        rules.push((data_root.clone(), all & !(FS_MAKE_CHAR | FS_MAKE_BLOCK)));
        for (path, access) in rules {
            // Paths that do not exist here (a sys.path zip, /lib64 on some systems) are skipped.
            let Ok(file) = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
                .open(&path)
            else {
                continue;
            };
            let is_dir = file.metadata().is_ok_and(|m| m.is_dir());
            let access = if is_dir { access } else { access & FILE_RIGHTS } & all;
            let rule = PathBeneathAttr {
                allowed_access: access,
                parent_fd: file.as_raw_fd(),
            };
            // SAFETY: `rule` is a valid path-beneath attribute; both descriptors are open.
            let rc = unsafe {
                libc::syscall(
                    SYS_ADD_RULE,
                    ruleset.as_raw_fd(),
                    RULE_PATH_BENEATH,
                    &raw const rule,
                    0u32,
                )
            };
            if rc != 0 {
                return Err(format!(
                    "cannot let the sandbox read {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                ));
            }
        }

        let filters = seccomp(cfg.network)?;
        let mib = 1024 * 1024;
        let limits = vec![
            (libc::RLIMIT_AS, cfg.memory_mib.saturating_mul(mib)),
            // The hard CPU limit per interpreter. A call's own allowance is the soft limit the
            // runner sets; an interpreter that has used more than one allowance is replaced
            // after its call, so every call has two before the kernel would kill it.
            (libc::RLIMIT_CPU, cfg.cpu_secs.saturating_mul(3)),
            (libc::RLIMIT_NOFILE, cfg.open_files),
            (libc::RLIMIT_FSIZE, cfg.file_size_mib.saturating_mul(mib)),
            (libc::RLIMIT_CORE, 0),
        ];
        let env = vec![
            ("PATH", "/usr/local/bin:/usr/bin:/bin".to_string()),
            ("LANG", "C.UTF-8".to_string()),
            ("PYTHONDONTWRITEBYTECODE", "1".to_string()),
            ("PYTHONNOUSERSITE", "1".to_string()),
        ];
        Ok(Prepared {
            ruleset,
            filters,
            limits,
            exe: probe.exe,
            env,
            data_root,
        })
    }

    /// Confines the calling process. Runs in the child between fork and exec, so it only
    /// makes system calls: it neither allocates nor takes locks.
    pub(crate) fn apply(&self) -> std::io::Result<()> {
        for &(resource, value) in &self.limits {
            let lim = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            // SAFETY: setrlimit with a valid struct.
            if unsafe { libc::setrlimit(resource, &raw const lim) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        // SAFETY: plain prctl and Landlock calls on a descriptor this struct owns.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::syscall(SYS_RESTRICT_SELF, self.ruleset.as_raw_fd(), 0u32) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        for f in &self.filters {
            seccompiler::apply_filter(f).map_err(|e| match e {
                seccompiler::Error::Seccomp(io) | seccompiler::Error::Prctl(io) => io,
                _ => std::io::Error::from_raw_os_error(libc::EINVAL),
            })?;
        }
        Ok(())
    }
}

/// Makes `cmd`'s process confined by `p` from before it executes anything.
pub(crate) fn confine(cmd: &mut tokio::process::Command, p: &Arc<Prepared>) {
    let p = Arc::clone(p);
    // SAFETY: the hook runs between fork and exec, where only async-signal-safe work is
    // sound; `apply` makes system calls only (no allocation, no locks), on data prepared
    // before the fork and kept alive by the Arc the closure owns.
    unsafe {
        cmd.pre_exec(move || p.apply());
    }
}

/// Two programs: system calls refused with EPERM (new processes, ptrace, and sockets when the
/// network is off), and clone3 answered ENOSYS, so the C library falls back to clone, whose
/// flags the first program can read (clone3 passes them in memory it cannot).
fn seccomp(network: bool) -> Result<Vec<seccompiler::BpfProgram>, String> {
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    };
    let arch = seccompiler::TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| format!("the sandbox cannot filter system calls here: {e}"))?;
    let err = |e: seccompiler::BackendError| format!("the sandbox's system call filter: {e}");
    // clone without CLONE_THREAD makes a process; with it, a thread (which Python needs).
    let new_process = SeccompRule::new(vec![
        SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
            0,
        )
        .map_err(err)?,
    ])
    .map_err(err)?;
    let mut refused: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    refused.insert(libc::SYS_clone, vec![new_process]);
    for nr in [
        libc::SYS_fork,
        libc::SYS_vfork,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
    ] {
        refused.insert(nr, Vec::new());
    }
    if !network {
        refused.insert(libc::SYS_socket, Vec::new());
        refused.insert(libc::SYS_socketpair, Vec::new());
    }
    let mut programs = Vec::new();
    for (rules, action) in [
        (refused, SeccompAction::Errno(libc::EPERM as u32)),
        (
            BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
            SeccompAction::Errno(libc::ENOSYS as u32),
        ),
    ] {
        let filter = SeccompFilter::new(rules, SeccompAction::Allow, action, arch).map_err(err)?;
        programs.push(seccompiler::BpfProgram::try_from(filter).map_err(err)?);
    }
    Ok(programs)
}
