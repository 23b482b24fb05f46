//! Booting a guest under software emulation (a nested KVM guest hangs on these machines) with
//! its own kernel, the cached image behind a throw-away overlay, and the host's two shares.

use std::{
    io::{Read as _, Seek as _, SeekFrom, Write as _},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::rootfs::{Image, path_str};

/// What a guest run left behind.
pub struct Outcome {
    /// The guest script's exit code; `None` when it never wrote one (crash, hang, timeout).
    pub rc: Option<i32>,
    pub elapsed: Duration,
}

/// Boots `image` and runs `out/guest.sh` in it, printing its output as it comes. The
/// workspace is shared read-only at its own path; `out` is shared writable.
pub fn boot(
    image: &Image,
    workspace: &Path,
    out: &Path,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let overlay = out.join("overlay.qcow2");
    let _ = std::fs::remove_file(&overlay);
    let _ = std::fs::remove_file(out.join("guest.rc"));
    let log_path = out.join("guest.log");
    std::fs::write(&log_path, "").context("clearing the guest log")?;
    let status = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&image.disk)
        .arg(&overlay)
        .status()
        .context("running qemu-img")?;
    if !status.success() {
        bail!("qemu-img could not create the overlay ({status})");
    }
    let append = format!(
        "root=/dev/vda rw console=ttyS0 quiet panic=-1 intune.ws={} intune.out={}",
        path_str(workspace)?,
        path_str(out)?
    );
    let share = |tag: &str, path: &Path, ro: bool| -> anyhow::Result<String> {
        Ok(format!(
            "local,path={},mount_tag={tag},security_model=none{}",
            path_str(path)?,
            if ro { ",readonly=on" } else { "" }
        ))
    };
    let console = std::fs::File::create(out.join("console.log")).context("the console log")?;
    let started = Instant::now();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args([
            "-accel", "tcg", "-m", "2048", "-smp", "2", "-display", "none", "-vga", "none",
        ])
        .args([
            "-nic",
            "none",
            "-no-reboot",
            "-serial",
            "stdio",
            "-monitor",
            "none",
        ])
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.initrd)
        .args(["-append", &append])
        .arg("-drive")
        .arg(format!(
            "file={},if=virtio,format=qcow2",
            path_str(&overlay)?
        ))
        .args(["-virtfs", &share("ws", workspace, true)?])
        .args(["-virtfs", &share("out", out, false)?])
        .stdin(Stdio::null())
        .stdout(console.try_clone()?)
        .stderr(console)
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let mut log = std::fs::File::open(&log_path)?;
    let mut printed = 0u64;
    let mut follow = |log: &mut std::fs::File| -> anyhow::Result<()> {
        log.seek(SeekFrom::Start(printed))?;
        let mut new = Vec::new();
        log.read_to_end(&mut new)?;
        printed += new.len() as u64;
        std::io::stdout().write_all(&new)?;
        std::io::stdout().flush()?;
        Ok(())
    };
    let exited = loop {
        follow(&mut log)?;
        if let Some(status) = qemu.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > timeout {
            let _ = qemu.kill();
            let _ = qemu.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    follow(&mut log)?;
    let _ = std::fs::remove_file(&overlay);
    let rc = std::fs::read_to_string(out.join("guest.rc"))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    if exited.is_none() {
        eprintln!(
            "vm-test: the guest did not finish within {} s; its console is in {}",
            timeout.as_secs(),
            out.join("console.log").display()
        );
    }
    Ok(Outcome {
        rc,
        elapsed: started.elapsed(),
    })
}
