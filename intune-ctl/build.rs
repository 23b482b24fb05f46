//! Builds the kernel program (crate `intune-ebpf`) for the BPF target and leaves its objects in
//! OUT_DIR, where `datapath::load` embeds them.
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("intune-ctl has no parent directory"))?
        .join("intune-ebpf");
    let root = root.to_str().context("non-UTF-8 path to intune-ebpf")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "intune-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
