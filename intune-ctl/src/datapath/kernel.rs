//! What the running kernel offers the filter, where gateways' kernels differ (Debian 11's 5.10
//! to 6.12 and newer): how the DNS capture attaches, and whether BPF memory is charged to
//! RLIMIT_MEMLOCK.

use aya::util::KernelVersion;

/// The kernel's version and the features that depend on it.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    pub version: KernelVersion,
}

/// How the DNS capture is hooked to an interface's egress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureHook {
    /// A TCX link (6.6 and later): owned by the daemon, gone when it is.
    Tcx,
    /// A tc filter on a clsact qdisc (before 6.6): removed on stop and by `detach`.
    TcFilter,
}

impl CaptureHook {
    pub fn name(self) -> &'static str {
        match self {
            CaptureHook::Tcx => "tcx",
            CaptureHook::TcFilter => "tc filter (clsact)",
        }
    }
}

const TCX: KernelVersion = KernelVersion::new(6, 6, 0);
/// From 5.11 BPF memory is charged to the memory cgroup instead of RLIMIT_MEMLOCK.
const MEMCG_ACCOUNTING: KernelVersion = KernelVersion::new(5, 11, 0);

impl Kernel {
    /// The running kernel; an unreadable version counts as the oldest supported, so every
    /// fallback is taken.
    pub fn current() -> Kernel {
        Kernel {
            version: KernelVersion::current().unwrap_or(KernelVersion::new(5, 10, 0)),
        }
    }

    pub fn capture_hook(self) -> CaptureHook {
        if self.version >= TCX {
            CaptureHook::Tcx
        } else {
            CaptureHook::TcFilter
        }
    }

    /// What this kernel does not have, for one log line and `status`; empty when nothing.
    pub fn degraded(self) -> Vec<String> {
        let mut out = Vec::new();
        if self.capture_hook() == CaptureHook::TcFilter {
            out.push(format!(
                "the DNS capture attaches as a tc filter on a clsact qdisc (TCX needs Linux {TCX}, this is {})",
                self.version
            ));
        }
        out
    }

    /// Before 5.11 every map counts against RLIMIT_MEMLOCK (64 KiB by default): raise it as
    /// far as allowed, as bpftool and libbpf do. Later kernels ignore the limit for BPF.
    pub fn raise_memlock(self) {
        if self.version >= MEMCG_ACCOUNTING {
            return;
        }
        let unlimited = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: setrlimit with a valid struct; failure leaves the limit as it was.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const unlimited) } != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "could not raise RLIMIT_MEMLOCK (Linux {} charges BPF maps to it); set LimitMEMLOCK=infinity in the unit",
                self.version
            );
        }
    }
}
