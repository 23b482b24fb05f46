//! Which interface a pinned XDP link is on: `bpf_link_info`'s ifindex, 0 once the interface
//! was deleted (the link is severed). aya reads a link's info but not this field, so the two
//! `bpf(2)` calls are made here, with aya-obj's kernel bindings.

use std::{ffi::CString, io, mem, os::unix::ffi::OsStrExt as _, path::Path};

use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_link_info};

/// The ifindex the XDP link pinned at `path` is on; 0 when it is severed.
pub fn pinned_xdp_ifindex(path: &Path) -> io::Result<u32> {
    let fd = obj_get(path)?;
    // SAFETY: all-zero is a valid bpf_link_info.
    let mut info: bpf_link_info = unsafe { mem::zeroed() };
    // SAFETY: all-zero is a valid bpf_attr.
    let mut attr: bpf_attr = unsafe { mem::zeroed() };
    attr.info.bpf_fd = fd.0 as u32;
    attr.info.info_len = mem::size_of::<bpf_link_info>() as u32;
    attr.info.info = (&raw mut info) as u64;
    sys_bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    // SAFETY: the kernel filled the union's xdp member for an XDP link; every member is
    // plain integers.
    Ok(unsafe { info.__bindgen_anon_1.xdp.ifindex })
}

/// The ifindex of the interface named `name` now, if there is one.
pub fn ifindex_of(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: a valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// A file descriptor closed when dropped.
struct Fd(i32);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: our own descriptor, closed once.
        unsafe { libc::close(self.0) };
    }
}

fn obj_get(path: &Path) -> io::Result<Fd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: all-zero is a valid bpf_attr.
    let mut attr: bpf_attr = unsafe { mem::zeroed() };
    attr.__bindgen_anon_4.pathname = c.as_ptr() as u64;
    let fd = sys_bpf(bpf_cmd::BPF_OBJ_GET, &mut attr)?;
    Ok(Fd(fd))
}

fn sys_bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<i32> {
    // SAFETY: `attr` is a valid bpf_attr of the size given, live for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            std::ptr::from_mut(attr),
            mem::size_of::<bpf_attr>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    i32::try_from(ret).map_err(|_| io::Error::other("bpf(2) returned a value out of range"))
}
