//! Making sure a BPF filesystem is mounted where pins go.

use std::{ffi::CString, io, path::Path};

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The usual mount point: a pin directory under it gets bpffs mounted here, not on itself.
const SYS_FS_BPF: &str = "/sys/fs/bpf";

fn is_bpffs(dir: &Path) -> bool {
    let Ok(c) = CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into a zeroed struct of the right type.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &raw mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
}

/// Makes `dir` a directory on a bpffs: created on the bpffs above it, or with bpffs mounted
/// at /sys/fs/bpf (for a directory under it) or at `dir` itself.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    if is_bpffs(dir) {
        return Ok(());
    }
    let mount_at = if dir.starts_with(SYS_FS_BPF) {
        Path::new(SYS_FS_BPF)
    } else {
        dir
    };
    if !is_bpffs(mount_at) {
        ensure_mounted(mount_at)?;
    }
    std::fs::create_dir_all(dir)
}

/// Mounts bpffs at `dir` unless one is mounted there already.
pub fn ensure_mounted(dir: &Path) -> io::Result<()> {
    if is_bpffs(dir) {
        return Ok(());
    }
    let c = CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    std::fs::create_dir_all(dir)?;
    let fstype = c"bpf";
    // SAFETY: valid C strings; no data argument.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            c.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    tracing::info!(dir = %dir.display(), "mounted bpffs");
    Ok(())
}
