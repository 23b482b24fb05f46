fn main() -> anyhow::Result<()> {
    let mut bpf = aya::Ebpf::load(aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/intune-xdp")))?;
    let prog: &mut aya::programs::Xdp = bpf.program_mut("intune_xdp").unwrap().try_into()?;
    prog.load()?;
    println!("loaded");
    Ok(())
}
