//! A Debian release's root filesystem as an ext4 image with its own kernel and initrd, built
//! with mmdebstrap from the mirror the machine's apt uses, and cached by what went into it.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::setup::run;

/// Where images live between runs on one machine (a clean clone finds them here).
const CACHE_DIR: &str = "/var/cache/intune-xdp/vm";
/// What the tests need in a guest beyond the minimal `apt` variant.
const PACKAGES: &[&str] = &[
    "linux-image-amd64",
    "systemd-sysv",
    "udev",
    "iproute2",
    "dnsmasq-base",
    "procps",
    "kmod",
];
/// The image's size; the file is sparse.
const IMAGE_SIZE: &str = "3G";

/// Runs at boot in every guest: mounts the host's two shares where the kernel command line
/// says (the workspace read-only, at the path it has on the host, so test binaries find what
/// they were built against; and a writable folder for results), runs the host's script, and
/// powers the guest off. Nothing of a particular run is baked into the cached image.
const RUNNER: &str = r#"#!/bin/sh
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    intune.ws=*) ws="${arg#intune.ws=}" ;;
    intune.out=*) out="${arg#intune.out=}" ;;
  esac
done
mkdir -p "$ws" "$out"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro ws "$ws"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out "$out"
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
sh "$out/guest.sh" > "$out/guest.log" 2>&1
echo $? > "$out/guest.rc"
sync
systemctl poweroff
"#;

const RUNNER_UNIT: &str = "[Unit]
Description=Run the host's tests
After=local-fs.target systemd-modules-load.service
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/intune-vm-run
[Install]
WantedBy=multi-user.target
";

/// A bootable guest: image, kernel, initrd.
pub struct Image {
    pub disk: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// The cached image of `suite`, built first when there is none for this recipe.
pub fn ensure(suite: &str) -> anyhow::Result<Image> {
    let key = recipe_key(suite);
    let dir = Path::new(CACHE_DIR);
    let stem = format!("{suite}-{key:016x}");
    let image = Image {
        disk: dir.join(format!("{stem}.ext4")),
        kernel: dir.join(format!("{stem}.vmlinuz")),
        initrd: dir.join(format!("{stem}.initrd")),
    };
    if image.disk.exists() && image.kernel.exists() && image.initrd.exists() {
        return Ok(image);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {CACHE_DIR}"))?;
    let root = dir.join(format!("{stem}.root"));
    if root.exists() {
        std::fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    let started = std::time::Instant::now();
    let mirror = mirror();
    eprintln!("vm-test: building the {suite} root filesystem from {mirror}");
    let include = format!("--include={}", PACKAGES.join(","));
    run(
        "mmdebstrap",
        &[
            "--quiet",
            "--variant=apt",
            &include,
            suite,
            path_str(&root)?,
            &mirror,
        ],
    )
    .with_context(|| format!("building the {suite} root filesystem"))?;
    customize(&root)?;
    let boot = root.join("boot");
    std::fs::copy(find(&boot, "vmlinuz-")?, &image.kernel).context("copying the kernel")?;
    std::fs::copy(find(&boot, "initrd.img-")?, &image.initrd).context("copying the initrd")?;
    let tmp = image.disk.with_extension("ext4.tmp");
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-L",
            "root",
            "-d",
            path_str(&root)?,
            path_str(&tmp)?,
            IMAGE_SIZE,
        ],
    )?;
    std::fs::rename(&tmp, &image.disk).context("moving the image into place")?;
    std::fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    eprintln!(
        "vm-test: {suite} image built in {:.0} s: {}",
        started.elapsed().as_secs_f64(),
        image.disk.display()
    );
    Ok(image)
}

/// The runner, its unit, a root filesystem entry and a host name.
fn customize(root: &Path) -> anyhow::Result<()> {
    let write = |rel: &str, text: &str| {
        let path = root.join(rel);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("usr/local/sbin/intune-vm-run", RUNNER)?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(
        root.join("usr/local/sbin/intune-vm-run"),
        std::fs::Permissions::from_mode(0o755),
    )?;
    write("etc/systemd/system/intune-vm-run.service", RUNNER_UNIT)?;
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    std::fs::create_dir_all(&wants)?;
    std::os::unix::fs::symlink(
        "/etc/systemd/system/intune-vm-run.service",
        wants.join("intune-vm-run.service"),
    )
    .context("enabling the runner")?;
    write("etc/fstab", "/dev/vda / ext4 rw,errors=remount-ro 0 1\n")?;
    write("etc/hostname", "guest\n")?;
    Ok(())
}

/// The one file in `dir` whose name starts with `prefix`.
fn find(dir: &Path, prefix: &str) -> anyhow::Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    if found.len() != 1 {
        bail!(
            "expected one {prefix}* in {}, found {}",
            dir.display(),
            found.len()
        );
    }
    Ok(found.remove(0))
}

/// The Debian mirror the machine's apt uses (deb822 or one-line sources), else deb.debian.org.
fn mirror() -> String {
    let mut texts = Vec::new();
    for dir in ["/etc/apt/sources.list.d"] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                texts.extend(std::fs::read_to_string(e.path()).ok());
            }
        }
    }
    texts.extend(std::fs::read_to_string("/etc/apt/sources.list").ok());
    texts
        .iter()
        .flat_map(|t| t.lines())
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split_whitespace())
        .find(|w| w.starts_with("http") && w.trim_end_matches('/').ends_with("/debian"))
        .map_or_else(|| "http://deb.debian.org/debian".into(), str::to_owned)
}

/// Changes whenever what goes into an image does: a new recipe builds a new image.
fn recipe_key(suite: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [suite, &PACKAGES.join(","), RUNNER, RUNNER_UNIT, IMAGE_SIZE] {
        for b in part.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

pub fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .with_context(|| format!("non-UTF-8 path {}", p.display()))
}

/// Removes cached images of other recipes for `suite`, keeping the disk from filling up.
pub fn prune(suite: &str, keep: &Image) {
    let Ok(entries) = std::fs::read_dir(CACHE_DIR) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ours = [&keep.disk, &keep.kernel, &keep.initrd].contains(&&p);
        if name.starts_with(&format!("{suite}-")) && !ours {
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}
