//! The sandbox a model's process enters before it reads the model (Linux): what code running
//! in it may still do if a submitter's model takes control of it (libtorch's loader trusts a
//! model's pickled tensor records; a crafted one corrupts memory).
//!
//! Entered by the process's only thread, before libtorch starts any (every thread and process
//! created later inherits it): by the fork server of [`crate::isolation`], whose children run
//! the passes. In three layers, each of which holds on its own:
//! - **Landlock** (the kernel's unprivileged sandbox, ABI 1 or later: Linux 5.13): files and
//!   directories may be read only beneath the paths of [`Policy::read`] (the libraries libtorch
//!   and the GPU driver load, `/proc`, `/sys`, the model file) and written nowhere except the
//!   GPU's device files; and no `ptrace` of a process outside the sandbox (so not the worker's
//!   memory through `/proc/<pid>/mem` either). With newer ABIs also: no truncation outside
//!   those rules (3), no TCP connection or listening port (4), no control of other devices
//!   (5), and no signal to, and no abstract socket of, a process outside the sandbox (6). The
//!   worker's key, its journal, other jobs' data: none is beneath those paths.
//! - **seccomp**: the system calls no forward pass needs are refused (`EPERM`): sockets of any
//!   kind (UDP, netlink and Unix sockets included, which Landlock does not cover on kernels
//!   before its ABI 9), `ptrace`, other processes' memory, mounts, namespaces, BPF, kernel
//!   keys and modules, `io_uring` (whose operations seccomp cannot see), file handles (which
//!   open files by number, past the path rules), files' modes, owners, times and extended
//!   attributes (which Landlock does not cover), truncation by path or on opening, System V
//!   and POSIX message IPC; and the calls that set another process's limits, priority or
//!   CPUs (the worker's: its `RLIMIT_CPU` would kill it) are allowed on the caller only. A
//!   foreign architecture's calls kill the process. A pass's own process adds a second
//!   filter ([`confine_pass`]): no new process (`clone` only of a thread), since one would
//!   outlive the pass, which is all the worker kills; and no signal to any process but
//!   itself, which holds on kernels whose Landlock has no signal scope.
//! - **No privileges**: `no_new_privs` (no set-user-ID gain), every capability dropped (a root
//!   worker's child cannot override file permissions), no core dump; and the highest OOM
//!   score, so that a model that takes all the memory is what the kernel ends, not the worker.
//!
//! The process's environment is the parent's choice (the worker clears it: no secret reaches
//! the child that way), and it holds no secret of its own, so what a model can take from it is
//! its own job: its input, which the worker was to give it anyway.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};

use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

/// The newest Landlock ABI whose rights the sandbox asks for (V6: file, TCP and scope rules).
/// On a kernel that speaks an older one, the sandbox asks for that ABI's rights, and seccomp
/// stands in for the rest (see [`enter`]).
const ABI_NEWEST: i32 = 6;

/// The Landlock ABI this process's sandbox was built with (0: none), read again by a pass's
/// own layer ([`confine_pass`]) in the processes forked after [`enter`].
static ABI_USED: AtomicI32 = AtomicI32::new(0);

/// What the sandboxed process may reach.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Files and directories it may read (and map for execution) beneath; missing ones are
    /// skipped.
    pub read: Vec<PathBuf>,
    /// Device files it may also write to and control (`ioctl`): the GPU's.
    pub devices: Vec<PathBuf>,
}

/// The sandbox entered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entered {
    /// The Landlock ABI whose rules it enforces: the kernel's, at most [`ABI_NEWEST`] (and at
    /// most the limit [`enter`] was given). Every right of that ABI is enforced.
    pub landlock_abi: i32,
}

/// Why the sandbox could not be entered.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "this kernel enforces no Landlock rules (Linux 5.13 or later with Landlock enabled, \
         `lsm=landlock,...`, is needed), so a model's process could read the worker's files; \
         run on such a kernel, or accept that risk with `--isolation process`"
    )]
    NoLandlock,
    #[error("the sandbox must be entered before any other thread starts ({0} threads run)")]
    Threads(usize),
    #[error("entering the sandbox: {0}")]
    Failed(String),
}

/// The paths a model's process needs to read by default: the directories of every shared
/// library mapped in this process (libtorch, the C++ runtime), the whole `site-packages` a
/// pip-installed libtorch lives in (CUDA's libraries, loaded later, sit beside it), the
/// system's library directories (the GPU driver's `libcuda`), the dynamic loader's cache,
/// `/proc` and `/sys` (read by libtorch and the CUDA runtime), `/dev/null`, `/dev/urandom`.
pub fn default_read_paths() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = [
        "/usr/lib",
        "/usr/lib64",
        "/lib",
        "/lib64",
        "/usr/local/cuda",
        "/usr/local/nvidia",
        "/etc/ld.so.cache",
        "/etc/ld.so.conf",
        "/etc/ld.so.conf.d",
        "/proc",
        "/sys",
        "/dev/null",
        "/dev/zero",
        "/dev/urandom",
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect();
    for library in mapped_libraries() {
        let text = library.to_string_lossy();
        if let Some(end) = text.find("/site-packages/") {
            paths.push(PathBuf::from(&text[..end + "/site-packages".len()]));
        } else if let Some(dir) = library.parent() {
            paths.push(dir.to_path_buf());
        }
    }
    paths.sort();
    paths.dedup();
    paths
}

/// The GPU's device files (NVIDIA's), which a CUDA process opens read-write and controls.
pub fn default_devices() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/dev") else {
        return Vec::new();
    };
    let mut devices: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        // Not `nvidia-caps`: its capabilities (MIG configuration) are the operator's.
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("nvidia") && !name.starts_with("nvidia-caps")
        })
        .map(|e| e.path())
        .collect();
    devices.sort();
    devices
}

/// The shared libraries mapped in this process (from `/proc/self/maps`).
fn mapped_libraries() -> Vec<PathBuf> {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    let mut libraries: Vec<PathBuf> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.starts_with('/') && path.contains(".so"))
        .map(PathBuf::from)
        .collect();
    libraries.sort();
    libraries.dedup();
    libraries
}

/// How many threads this process runs.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| tasks.count())
        .unwrap_or(0)
}

/// Enters the sandbox: Landlock with `policy`, then the seccomp filter and no privileges.
/// Fails, leaving the process to exit, when Landlock is not enforced at all, or when another
/// thread already runs (it would stay outside).
///
/// Landlock's rules are those of the ABI the kernel speaks (at most [`ABI_NEWEST`], and at
/// most `abi_limit`: the sandbox an older kernel gives, which the tests build on this one),
/// all of them enforced. What older ABIs lack, other layers hold: truncation (ABI 3) is
/// refused by the seccomp filter; TCP (ABI 4) with every socket; device controls (ABI 5)
/// reach only the devices a pass may read (`/dev/null`, `/dev/zero`, `/dev/urandom`) and the
/// GPU's; and signals and abstract sockets outside the sandbox (ABI 6) by a pass's own filter
/// ([`confine_pass`]), which lets it signal only itself, and by the refused sockets.
pub fn enter(policy: &Policy, abi_limit: Option<i32>) -> Result<Entered, SandboxError> {
    let running = threads();
    if running != 1 {
        return Err(SandboxError::Threads(running));
    }
    let failed = |e: &dyn std::fmt::Display| SandboxError::Failed(e.to_string());
    let kernel = landlock_abi();
    if kernel <= 0 {
        return Err(SandboxError::NoLandlock);
    }
    let abi = kernel
        .min(ABI_NEWEST)
        .min(abi_limit.unwrap_or(i32::MAX))
        .max(1);
    let asked = abi_of(abi);
    // The first process the kernel ends when memory runs out (a model can be written to take
    // it all), not the worker: raising one's own score needs no privilege, and is done before
    // `/proc` is read-only.
    std::fs::write("/proc/self/oom_score_adj", "1000").map_err(|e| failed(&e))?;
    let all = AccessFs::from_all(asked);
    let read = AccessFs::from_read(asked);
    let device = (read | AccessFs::WriteFile | AccessFs::IoctlDev) & all;
    // Every right of the ABI asked for, or an error: the kernel speaks it.
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(all)
        .map_err(|e| failed(&e))?;
    if abi >= 4 {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(asked))
            .map_err(|e| failed(&e))?;
    }
    if abi >= 6 {
        ruleset = ruleset
            .scope(Scope::AbstractUnixSocket | Scope::Signal)
            .map_err(|e| failed(&e))?;
    }
    let mut ruleset = ruleset.create().map_err(|e| failed(&e))?;
    for (paths, access) in [(&policy.read, read), (&policy.devices, device)] {
        for path in paths.iter().filter(|p| p.exists()) {
            let fd = PathFd::new(path).map_err(|e| failed(&format!("{}: {e}", path.display())))?;
            let access = if path.is_dir() {
                access
            } else {
                access & AccessFs::from_file(asked)
            };
            ruleset = ruleset
                .add_rule(PathBeneath::new(fd, access))
                .map_err(|e| failed(&format!("{}: {e}", path.display())))?;
        }
    }
    let status = ruleset.restrict_self().map_err(|e| failed(&e))?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        return Err(SandboxError::NoLandlock);
    }
    ABI_USED.store(abi, Ordering::SeqCst);
    if !status.no_new_privs {
        set_no_new_privs().map_err(|e| failed(&e))?;
    }
    no_core_dumps().map_err(|e| failed(&e))?;
    drop_capabilities().map_err(|e| failed(&e))?;
    seccomp::install().map_err(|e| failed(&e))?;
    Ok(Entered { landlock_abi: abi })
}

/// The Landlock ABI numbered `abi` (1 to [`ABI_NEWEST`]).
fn abi_of(abi: i32) -> ABI {
    match abi {
        ..=1 => ABI::V1,
        2 => ABI::V2,
        3 => ABI::V3,
        4 => ABI::V4,
        5 => ABI::V5,
        _ => ABI::V6,
    }
}

/// A pass's own layers on top of the server's [`enter`]ed sandbox, in the process forked for
/// it: a seccomp filter that lets it start no process (threads only: one would outlive the
/// pass, which is all the worker kills) and signal no process but itself (not the worker, the
/// fork server or another pass, on any kernel), and a Landlock domain of its own (no `ptrace`
/// of, nor, with ABI 6, signal to or abstract socket of, a process outside it: the passes
/// share the server's domain, whose scope is what is outside the server).
pub fn confine_pass() -> Result<(), SandboxError> {
    let failed = |e: &dyn std::fmt::Display| SandboxError::Failed(e.to_string());
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    seccomp::install_pass(pid as u32).map_err(|e| failed(&e))?;
    let abi = ABI_USED.load(Ordering::SeqCst);
    if abi <= 0 {
        return Err(SandboxError::NoLandlock);
    }
    // Making block devices is refused already: handling it only makes the domain.
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::MakeBlock)
        .map_err(|e| failed(&e))?;
    if abi >= 6 {
        ruleset = ruleset
            .scope(Scope::AbstractUnixSocket | Scope::Signal)
            .map_err(|e| failed(&e))?;
    }
    let status = ruleset
        .create()
        .and_then(|r| r.restrict_self())
        .map_err(|e| failed(&e))?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        return Err(SandboxError::NoLandlock);
    }
    Ok(())
}

/// Most signals queued and not yet taken, counted over every process of the user, that a pass
/// may add to: a pass that queued its user's whole allowance to itself would leave the worker
/// none (its timers, its queued signals).
const PASS_SIGNALS_PENDING: u64 = 64;

/// Limits what a sandboxed pass may take of what the user's processes share (a pass runs as the worker's user): pending signals
/// ([`PASS_SIGNALS_PENDING`]), and tasks, which the kernel counts per user against the
/// creating process's `RLIMIT_NPROC`: a pass may start threads only while the user's tasks are
/// below the worker's own limit less a reserve (an eighth, at least 64) and below the
/// machine's tasks now plus what a pass needs with room to spare (256, and 16 per CPU: passes
/// started after it count against it too), so that threads started without end leave the worker, the fork server and other passes room to run. (Root's tasks
/// are not counted against the limit: run the worker as a user of its own.) Both limits are
/// set hard: a pass cannot raise them.
pub fn limit_shared_resources() -> std::io::Result<()> {
    set_limit(libc::RLIMIT_SIGPENDING, PASS_SIGNALS_PENDING)?;
    let mut now = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a valid rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut now) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let machine = std::fs::read_to_string("/proc/loadavg")?
        .split_whitespace()
        .nth(3)
        .and_then(|field| field.split_once('/'))
        .and_then(|(_, total)| total.parse::<u64>().ok())
        .ok_or_else(|| std::io::Error::other("/proc/loadavg names no task count"))?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let mut limit = machine.saturating_add(256 + 16 * cpus);
    if now.rlim_cur != libc::RLIM_INFINITY {
        let reserve = (now.rlim_cur / 8).max(64);
        limit = limit.min(now.rlim_cur.saturating_sub(reserve));
    }
    set_limit(libc::RLIMIT_NPROC, limit)
}

/// Lets this process take at most `bytes` more of private writable memory (heap, anonymous
/// mappings, thread stacks: what `RLIMIT_DATA` counts since Linux 4.7) than it holds now, soft
/// and hard: a pass's allocation past it fails (libtorch's allocator reports it, the job's
/// error) instead of pressing on the machine's memory. What it inherited from the fork server
/// (libtorch's own data) is not counted against it. Device memory is not counted: a GPU's
/// driver maps it shared.
pub fn limit_memory(bytes: u64) -> std::io::Result<()> {
    // The sixth field of statm: data and stack, in pages.
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages = statm
        .split_whitespace()
        .nth(5)
        .and_then(|field| field.parse::<u64>().ok())
        .ok_or_else(|| std::io::Error::other("/proc/self/statm names no data size"))?;
    // SAFETY: sysconf with a constant name.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    set_limit(
        libc::RLIMIT_DATA,
        pages.saturating_mul(page).saturating_add(bytes),
    )
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: a valid rlimit for the calling process.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The Landlock ABI version the kernel speaks (0 or less: none).
fn landlock_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_long = 1;
    // SAFETY: the documented version query: no ruleset pointer, size 0, the version flag.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    i32::try_from(version).unwrap_or(0)
}

fn set_no_new_privs() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn no_core_dumps() -> std::io::Result<()> {
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit for the calling process.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Drops every capability (effective, permitted, inheritable, and the bounding set).
fn drop_capabilities() -> std::io::Result<()> {
    for capability in 0..64 {
        // SAFETY: prctl with integer arguments only; EINVAL past the last capability.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, capability, 0, 0, 0) };
    }
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset with a version-3 header and its two data words, both valid for the call.
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

mod seccomp {
    //! Classic-BPF seccomp filters: refused calls get `EPERM`, a foreign architecture's
    //! kill the process, everything else is allowed.

    /// The calls refused.
    const REFUSED: &[libc::c_long] = &[
        libc::SYS_socket,
        libc::SYS_socketpair,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_pidfd_getfd,
        libc::SYS_kcmp,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        // Files' modes, owners, times and attributes: Landlock does not cover them (a model
        // could make the worker's key readable to everyone, or lock it out of its journal).
        libc::SYS_fchmod,
        libc::SYS_fchmodat,
        FCHMODAT2,
        libc::SYS_fchown,
        libc::SYS_fchownat,
        libc::SYS_utimensat,
        libc::SYS_setxattr,
        libc::SYS_lsetxattr,
        libc::SYS_fsetxattr,
        libc::SYS_removexattr,
        libc::SYS_lremovexattr,
        libc::SYS_fremovexattr,
        SETXATTRAT,
        REMOVEXATTRAT,
        FILE_SETATTR,
        // State that outlives a pass, outside the file system.
        libc::SYS_shmget,
        libc::SYS_shmat,
        libc::SYS_shmctl,
        libc::SYS_semget,
        libc::SYS_semop,
        libc::SYS_semctl,
        libc::SYS_semtimedop,
        libc::SYS_msgget,
        libc::SYS_msgsnd,
        libc::SYS_msgrcv,
        libc::SYS_msgctl,
        libc::SYS_mq_open,
        libc::SYS_mq_unlink,
        libc::SYS_mq_timedsend,
        libc::SYS_mq_timedreceive,
        libc::SYS_mq_notify,
        libc::SYS_mq_getsetattr,
        // A file's length, by path: Landlock controls it only from ABI 3 (a model could empty
        // the worker's key or journal). Opening with `O_TRUNC` is refused below.
        libc::SYS_truncate,
    ];

    /// The same, on x86-64 only (newer architectures have only the `*at` forms).
    #[cfg(target_arch = "x86_64")]
    const REFUSED_X86_64: &[libc::c_long] = &[
        libc::SYS_creat,
        libc::SYS_chmod,
        libc::SYS_chown,
        libc::SYS_lchown,
        libc::SYS_utime,
        libc::SYS_utimes,
        libc::SYS_futimesat,
    ];
    #[cfg(not(target_arch = "x86_64"))]
    const REFUSED_X86_64: &[libc::c_long] = &[];

    /// The calls that open a file by path, and which argument holds their flags.
    #[cfg(target_arch = "x86_64")]
    const OPENING: [(libc::c_long, u32); 2] = [(libc::SYS_open, 1), (libc::SYS_openat, 2)];
    #[cfg(not(target_arch = "x86_64"))]
    const OPENING: [(libc::c_long, u32); 1] = [(libc::SYS_openat, 2)];

    /// `ioctl` and `fcntl` commands refused (the call, the argument that holds the command,
    /// the commands): typing into a terminal (`TIOCSTI`, `TIOCLINUX`: a tty an operator's
    /// `--sandbox-read` made readable, on kernels whose Landlock does not control devices);
    /// and changing a file's inode flags, project or verity (`FS_IOC_SETFLAGS` and its 32-bit
    /// form, `FS_IOC_FSSETXATTR`, `FS_IOC_SETVERSION`, `FS_IOC_ENABLE_VERITY`) or taking a
    /// lease on it (`F_SETLEASE`): the handed model file is the worker's own, and these need
    /// only its owner, not a writable descriptor.
    const REFUSED_COMMANDS: [(libc::c_long, u32, &[u32]); 2] = [
        (
            libc::SYS_ioctl,
            1,
            &[
                0x5412,      // TIOCSTI
                0x541C,      // TIOCLINUX
                0x4008_6602, // FS_IOC_SETFLAGS
                0x4004_6602, // FS_IOC32_SETFLAGS
                0x401C_5820, // FS_IOC_FSSETXATTR
                0x4008_7602, // FS_IOC_SETVERSION
                0x4080_6685, // FS_IOC_ENABLE_VERITY
            ],
        ),
        (libc::SYS_fcntl, 1, &[libc::F_SETLEASE as u32]),
    ];

    /// Calls numbered alike on every architecture, newer than the `libc` crate's tables.
    const FCHMODAT2: libc::c_long = 452;
    const SETXATTRAT: libc::c_long = 463;
    const REMOVEXATTRAT: libc::c_long = 466;
    const FILE_SETATTR: libc::c_long = 469;

    /// Calls allowed only on the calling process itself (its pid argument 0, and where the
    /// call also says what the pid names, a process): on another process of the same user
    /// (the worker), its process group or all of the user's, they would set limits
    /// (`RLIMIT_CPU` kills; `RLIMIT_CORE` and a crash dump memory, a key included), priority
    /// or CPUs. (The call, which argument is the pid, and which argument must say "a
    /// process", with that value.) A thread's own id is refused too (glibc passes it for
    /// `pthread_setaffinity_np`): no CPU binding is asked of libtorch's OpenMP, since its
    /// variables (`OMP_PROC_BIND`, `GOMP_CPU_AFFINITY`, ...) are not passed to a pass.
    const ON_ITSELF_ONLY: &[(libc::c_long, u32, Option<Kind>)] = &[
        (libc::SYS_prlimit64, 0, None),
        (libc::SYS_setpriority, 1, Some((0, libc::PRIO_PROCESS))),
        (libc::SYS_ioprio_set, 1, Some((0, IOPRIO_WHO_PROCESS))),
        (libc::SYS_sched_setaffinity, 0, None),
        (libc::SYS_sched_setscheduler, 0, None),
        (libc::SYS_sched_setparam, 0, None),
        (libc::SYS_sched_setattr, 0, None),
        (libc::SYS_migrate_pages, 0, None),
        (libc::SYS_move_pages, 0, None),
    ];
    /// Which argument says what a pid names, and the value that says "a process".
    type Kind = (u32, u32);
    /// `ioprio_set`'s "the pid is a process".
    const IOPRIO_WHO_PROCESS: u32 = 1;

    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xC000_003E;
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xC000_00B7;

    const LOAD_WORD: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JUMP_EQUAL: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JUMP_AT_LEAST: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const JUMP_ANY_BIT: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
    const RETURN: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    /// `seccomp_data`'s fields: the call's number, then its architecture.
    const NUMBER: u32 = 0;
    const ARCHITECTURE: u32 = 4;
    /// The low 32 bits of the first argument (little-endian): `clone`'s flags.
    const FIRST_ARGUMENT: u32 = 16;

    fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
        libc::sock_filter { code, jt, jf, k }
    }

    /// What a refused call answers.
    const REFUSE: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

    /// Every filter's start: a foreign architecture's call kills the process; then the call's
    /// number is loaded.
    fn prologue() -> Vec<libc::sock_filter> {
        vec![
            op(LOAD_WORD, 0, 0, ARCHITECTURE),
            op(JUMP_EQUAL, 1, 0, ARCH),
            op(RETURN, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
            op(LOAD_WORD, 0, 0, NUMBER),
        ]
    }

    /// `call` refused (the call's number loaded).
    fn refused(call: libc::c_long) -> [libc::sock_filter; 2] {
        [op(JUMP_EQUAL, 0, 1, call as u32), op(RETURN, 0, 0, REFUSE)]
    }

    /// `call` refused when its argument `argument` has any of `bits` set, allowed otherwise
    /// (the call's number loaded; no later rule may concern `call`).
    fn refused_with_bits(call: libc::c_long, argument: u32, bits: u32) -> [libc::sock_filter; 5] {
        [
            op(JUMP_EQUAL, 0, 4, call as u32),
            op(LOAD_WORD, 0, 0, FIRST_ARGUMENT + 8 * argument),
            op(JUMP_ANY_BIT, 0, 1, bits),
            op(RETURN, 0, 0, REFUSE),
            op(RETURN, 0, 0, libc::SECCOMP_RET_ALLOW),
        ]
    }

    /// `call` refused when its argument `argument` is one of `values`, allowed otherwise (the
    /// call's number loaded; no later rule may concern `call`).
    fn refused_values(call: libc::c_long, argument: u32, values: &[u32]) -> Vec<libc::sock_filter> {
        let n = values.len();
        let mut block = vec![
            op(JUMP_EQUAL, 0, (n + 3) as u8, call as u32),
            op(LOAD_WORD, 0, 0, FIRST_ARGUMENT + 8 * argument),
        ];
        for (i, value) in values.iter().enumerate() {
            // To the refusal past the other values and the allowance.
            block.push(op(JUMP_EQUAL, (n - i) as u8, 0, *value));
        }
        block.push(op(RETURN, 0, 0, libc::SECCOMP_RET_ALLOW));
        block.push(op(RETURN, 0, 0, REFUSE));
        block
    }

    /// The filter's program.
    fn program() -> Vec<libc::sock_filter> {
        let mut program = prologue();
        // x32 calls (numbers with bit 30 set) would reach the same kernel functions under
        // other numbers.
        #[cfg(target_arch = "x86_64")]
        program.extend([
            op(JUMP_AT_LEAST, 0, 1, 0x4000_0000),
            op(RETURN, 0, 0, REFUSE),
        ]);
        #[cfg(not(target_arch = "x86_64"))]
        let _ = JUMP_AT_LEAST;
        for &call in REFUSED.iter().chain(REFUSED_X86_64) {
            program.extend(refused(call));
        }
        // Opening with `O_TRUNC` (which empties a file that may be only read under Landlock
        // before ABI 3): no pass needs it, since it may write only the GPU's devices. `openat2`,
        // whose flags a filter cannot read, answers "not implemented" (the C library opens
        // with `openat`).
        program.extend([
            op(JUMP_EQUAL, 0, 1, libc::SYS_openat2 as u32),
            op(RETURN, 0, 0, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        ]);
        for (call, flags) in OPENING {
            program.extend(refused_with_bits(call, flags, libc::O_TRUNC as u32));
        }
        for (call, argument, values) in REFUSED_COMMANDS {
            program.extend(refused_values(call, argument, values));
        }
        for &(call, pid, kind) in ON_ITSELF_ONLY {
            // The low 32 bits: the kernel reads a pid (and a kind) as an `int`.
            match kind {
                None => program.extend([
                    op(JUMP_EQUAL, 0, 4, call as u32),
                    op(LOAD_WORD, 0, 0, FIRST_ARGUMENT + 8 * pid),
                    op(JUMP_EQUAL, 0, 1, 0),
                    op(RETURN, 0, 0, libc::SECCOMP_RET_ALLOW),
                    op(RETURN, 0, 0, REFUSE),
                ]),
                Some((argument, process)) => program.extend([
                    op(JUMP_EQUAL, 0, 6, call as u32),
                    op(LOAD_WORD, 0, 0, FIRST_ARGUMENT + 8 * pid),
                    op(JUMP_EQUAL, 0, 3, 0),
                    op(LOAD_WORD, 0, 0, FIRST_ARGUMENT + 8 * argument),
                    op(JUMP_EQUAL, 0, 1, process),
                    op(RETURN, 0, 0, libc::SECCOMP_RET_ALLOW),
                    op(RETURN, 0, 0, REFUSE),
                ]),
            }
        }
        program.push(op(RETURN, 0, 0, libc::SECCOMP_RET_ALLOW));
        program
    }

    /// The second filter, of a pass's own process `pid`:
    /// - no new process (one could outlive the pass, which is all the worker kills): `clone`
    ///   only of a thread; `clone3`, whose flags a filter cannot read, answers "not
    ///   implemented", and the C library falls back to `clone` for its threads;
    /// - the death signal the server set (the pass ends with it) stays;
    /// - signals to itself only (the worker and the fork server run as the same user): `kill`,
    ///   `tgkill` and the `sigqueue` calls with its own pid; `tkill`, whose thread id could name
    ///   any thread, and signals through pidfds refused; and no file or socket may name another
    ///   process as the one its I/O signals go to (`F_SETOWN`, `FIOSETOWN`, `SIOCSPGRP`).
    ///   Landlock's signal scope (ABI 6) says the same where the kernel has it;
    /// - no mapping that grows down (counted as stack, outside its memory limit).
    fn pass(pid: u32) -> Vec<libc::sock_filter> {
        let mut program = prologue();
        program.extend([
            op(JUMP_EQUAL, 0, 1, libc::SYS_clone3 as u32),
            op(RETURN, 0, 0, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
            op(JUMP_EQUAL, 0, 4, libc::SYS_clone as u32),
            op(LOAD_WORD, 0, 0, FIRST_ARGUMENT),
            op(JUMP_ANY_BIT, 1, 0, libc::CLONE_THREAD as u32),
            op(RETURN, 0, 0, REFUSE),
            op(RETURN, 0, 0, libc::SECCOMP_RET_ALLOW),
        ]);
        #[cfg(target_arch = "x86_64")]
        for call in [libc::SYS_fork, libc::SYS_vfork] {
            program.extend(refused(call));
        }
        program.extend(refused_values(
            libc::SYS_prctl,
            0,
            &[libc::PR_SET_PDEATHSIG as u32],
        ));
        for call in [
            libc::SYS_kill,
            libc::SYS_tgkill,
            libc::SYS_rt_sigqueueinfo,
            libc::SYS_rt_tgsigqueueinfo,
        ] {
            // The low 32 bits: the kernel reads a pid as an `int` (a negative one, a group or
            // every process, is never the pass's own).
            program.extend([
                op(JUMP_EQUAL, 0, 4, call as u32),
                op(LOAD_WORD, 0, 0, FIRST_ARGUMENT),
                op(JUMP_EQUAL, 0, 1, pid),
                op(RETURN, 0, 0, libc::SECCOMP_RET_ALLOW),
                op(RETURN, 0, 0, REFUSE),
            ]);
        }
        for call in [
            libc::SYS_tkill,
            libc::SYS_pidfd_open,
            libc::SYS_pidfd_send_signal,
        ] {
            program.extend(refused(call));
        }
        for (call, commands) in [
            (libc::SYS_fcntl, [libc::F_SETOWN as u32, F_SETOWN_EX]),
            (libc::SYS_ioctl, [FIOSETOWN, SIOCSPGRP]),
        ] {
            program.extend(refused_values(call, 1, &commands));
        }
        // Mappings that grow down, which the pass's memory limit (`RLIMIT_DATA`) would count
        // as stack, not data; no pass needs one (thread stacks are plain mappings). Memory
        // files and shared anonymous mappings, which it does not count either, stay allowed:
        // NVIDIA's CUDA driver makes a memory file when it starts (a sandbox refusing
        // `memfd_create` fails `cuInit` with error 304, NVIDIA/OpenShell#1696), and no GPU was
        // at hand to check what else it maps.
        program.extend(refused_with_bits(
            libc::SYS_mmap,
            3,
            libc::MAP_GROWSDOWN as u32,
        ));
        program.push(op(RETURN, 0, 0, libc::SECCOMP_RET_ALLOW));
        program
    }

    /// `fcntl`'s and `ioctl`'s commands that name the process a file's I/O signals go to.
    const F_SETOWN_EX: u32 = 15;
    const FIOSETOWN: u32 = 0x8901;
    const SIOCSPGRP: u32 = 0x8902;

    /// Installs the first filter on every thread of the process.
    pub(super) fn install() -> std::io::Result<()> {
        load(&program())
    }

    /// Installs the second filter, of the pass `pid`, on every thread of the process.
    pub(super) fn install_pass(pid: u32) -> std::io::Result<()> {
        load(&pass(pid))
    }

    fn load(program: &[libc::sock_filter]) -> std::io::Result<()> {
        let filter = libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `filter` points at `program`, alive for the call; no_new_privs is set.
        let installed = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                libc::SECCOMP_FILTER_FLAG_TSYNC,
                &filter,
            )
        };
        if installed != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// What a program answers for a call (`number`, its arguments' low 32 bits), run by
        /// a small interpreter of the instructions the filters use.
        fn verdict(program: &[libc::sock_filter], number: libc::c_long, args: [u32; 6]) -> u32 {
            let mut data = [0u32; 16];
            data[0] = number as u32;
            data[1] = ARCH;
            for (i, arg) in args.iter().enumerate() {
                data[4 + 2 * i] = *arg;
            }
            let (mut pc, mut a) = (0usize, 0u32);
            loop {
                let ins = program[pc];
                pc += 1;
                let jump = |taken: bool| if taken { ins.jt } else { ins.jf } as usize;
                match ins.code {
                    LOAD_WORD => a = data[ins.k as usize / 4],
                    JUMP_EQUAL => pc += jump(a == ins.k),
                    JUMP_AT_LEAST => pc += jump(a >= ins.k),
                    JUMP_ANY_BIT => pc += jump(a & ins.k != 0),
                    RETURN => return ins.k,
                    other => panic!("instruction {other:#x}"),
                }
                assert!(pc < program.len(), "a jump past the program's end");
            }
        }

        const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;

        /// Every jump of both filters stays inside its program, and each answers what the
        /// sandbox says for the calls whose arguments it reads: the first for truncation,
        /// terminal input, inode flags, leases and other processes' limits; the pass's for
        /// signals to itself or another process, I/O signals aimed elsewhere, and processes.
        #[test]
        fn the_filters_answer_each_call_as_the_sandbox_says() {
            let first = program();
            let pass = pass(4242);
            for program in [&first, &pass] {
                for (i, ins) in program.iter().enumerate() {
                    if ins.code & 0x07 == libc::BPF_JMP as u16 {
                        assert!(i + 1 + (ins.jt.max(ins.jf) as usize) < program.len(), "{i}");
                    }
                }
            }
            let trunc = libc::O_TRUNC as u32;
            let (anon, private, shared) = (
                libc::MAP_ANONYMOUS as u32,
                libc::MAP_PRIVATE as u32,
                libc::MAP_SHARED as u32,
            );
            let (down, neg) = (libc::MAP_GROWSDOWN as u32, u32::MAX);
            let cases: &[(&[libc::sock_filter], libc::c_long, [u32; 6], u32)] = &[
                (&first, libc::SYS_read, [0; 6], ALLOW),
                (&first, libc::SYS_openat, [0, 0, 0, 0, 0, 0], ALLOW),
                (&first, libc::SYS_openat, [0, 0, trunc | 1, 0, 0, 0], REFUSE),
                (&first, libc::SYS_truncate, [0; 6], REFUSE),
                (&first, libc::SYS_ioctl, [0, 0x5412, 0, 0, 0, 0], REFUSE),
                (
                    &first,
                    libc::SYS_ioctl,
                    [0, 0x4008_6602, 0, 0, 0, 0],
                    REFUSE,
                ),
                (
                    &first,
                    libc::SYS_ioctl,
                    [0, libc::FIONREAD as u32, 0, 0, 0, 0],
                    ALLOW,
                ),
                (
                    &first,
                    libc::SYS_fcntl,
                    [0, libc::F_SETLEASE as u32, 0, 0, 0, 0],
                    REFUSE,
                ),
                (
                    &first,
                    libc::SYS_fcntl,
                    [0, libc::F_GETFL as u32, 0, 0, 0, 0],
                    ALLOW,
                ),
                (&first, libc::SYS_prlimit64, [0; 6], ALLOW),
                (&first, libc::SYS_prlimit64, [77, 0, 0, 0, 0, 0], REFUSE),
                (&first, libc::SYS_socket, [0; 6], REFUSE),
                // mmap(addr, len, prot, flags, fd, off): private anonymous (malloc), files
                // shared (a GPU's device) and shared anonymous memory pass; growing down not.
                (
                    &pass,
                    libc::SYS_mmap,
                    [0, 4096, 3, anon | private, neg, 0],
                    ALLOW,
                ),
                (&pass, libc::SYS_mmap, [0, 4096, 3, shared, 5, 0], ALLOW),
                (
                    &pass,
                    libc::SYS_mmap,
                    [0, 4096, 3, anon | shared, neg, 0],
                    ALLOW,
                ),
                (
                    &pass,
                    libc::SYS_mmap,
                    [0, 4096, 3, anon | private | down, neg, 0],
                    REFUSE,
                ),
                (
                    &first,
                    libc::SYS_mmap,
                    [0, 4096, 3, anon | private | down, neg, 0],
                    ALLOW,
                ),
                (&pass, libc::SYS_memfd_create, [0; 6], ALLOW),
                (&pass, libc::SYS_kill, [4242, 9, 0, 0, 0, 0], ALLOW),
                (&pass, libc::SYS_kill, [4241, 0, 0, 0, 0, 0], REFUSE),
                (&pass, libc::SYS_kill, [u32::MAX, 9, 0, 0, 0, 0], REFUSE),
                (&pass, libc::SYS_kill, [0, 9, 0, 0, 0, 0], REFUSE),
                (&pass, libc::SYS_tgkill, [4242, 4243, 6, 0, 0, 0], ALLOW),
                (&pass, libc::SYS_tgkill, [1, 1, 6, 0, 0, 0], REFUSE),
                (&pass, libc::SYS_rt_sigqueueinfo, [1, 0, 0, 0, 0, 0], REFUSE),
                (
                    &pass,
                    libc::SYS_rt_tgsigqueueinfo,
                    [4242, 4242, 40, 0, 0, 0],
                    ALLOW,
                ),
                (&pass, libc::SYS_tkill, [4242, 6, 0, 0, 0, 0], REFUSE),
                (&pass, libc::SYS_pidfd_open, [1, 0, 0, 0, 0, 0], REFUSE),
                (
                    &pass,
                    libc::SYS_pidfd_send_signal,
                    [3, 9, 0, 0, 0, 0],
                    REFUSE,
                ),
                (
                    &pass,
                    libc::SYS_fcntl,
                    [1, libc::F_SETOWN as u32, 1, 0, 0, 0],
                    REFUSE,
                ),
                (&pass, libc::SYS_fcntl, [1, F_SETOWN_EX, 0, 0, 0, 0], REFUSE),
                (
                    &pass,
                    libc::SYS_fcntl,
                    [1, libc::F_GETFD as u32, 0, 0, 0, 0],
                    ALLOW,
                ),
                (&pass, libc::SYS_ioctl, [1, FIOSETOWN, 0, 0, 0, 0], REFUSE),
                (
                    &pass,
                    libc::SYS_ioctl,
                    [1, libc::FIONREAD as u32, 0, 0, 0, 0],
                    ALLOW,
                ),
                (
                    &pass,
                    libc::SYS_clone,
                    [
                        libc::CLONE_THREAD as u32 | libc::CLONE_VM as u32,
                        0,
                        0,
                        0,
                        0,
                        0,
                    ],
                    ALLOW,
                ),
                (
                    &pass,
                    libc::SYS_clone,
                    [libc::SIGCHLD as u32, 0, 0, 0, 0, 0],
                    REFUSE,
                ),
                (
                    &pass,
                    libc::SYS_clone3,
                    [0; 6],
                    libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
                ),
                (
                    &pass,
                    libc::SYS_prctl,
                    [libc::PR_SET_PDEATHSIG as u32, 0, 0, 0, 0, 0],
                    REFUSE,
                ),
                (&pass, libc::SYS_read, [0; 6], ALLOW),
            ];
            for (i, (program, number, args, expected)) in cases.iter().enumerate() {
                assert_eq!(
                    verdict(program, *number, *args),
                    *expected,
                    "case {i}: call {number}"
                );
            }
        }
    }
}
