//! `intune-bench --guest`: the program beside the floor in a guest under software emulation,
//! where only ratios mean anything. One table row for `cargo xtask vm-test`'s section of
//! BENCHMARKS.md: kernel, ratio per frame, the floor's ns.

use std::{fmt::Write as _, path::Path};

use aya::Ebpf;
use intune_ctl::{
    datapath::{Capacity, Datapath, load::FLOOR_PROGRAM},
    ruleset::{
        policy::{Mode, Policy},
        rules::{RuleSet, RuleSetOptions},
    },
};
use rand::{SeedableRng, rngs::StdRng};

use super::{OnOneCpu, frames, interleaved_ns, median, synthetic_sets, time_xdp, xdp_program};

const PREFIXES: usize = 10_000;
/// Emulated: 50 times fewer repetitions than on the host keep a run to seconds.
const REPEAT: u32 = 20_000;
const FRAMES: [&str; 3] = ["IPv4 hit", "IPv4 miss", "IPv6 hit"];

/// `repeat` repetitions a run (default [`REPEAT`]).
pub fn guest_bench(out: &Path, repeat: Option<u32>) -> anyhow::Result<()> {
    let repeat = repeat.unwrap_or(REPEAT);
    let mut rng = StdRng::seed_from_u64(2026);
    let sets = synthetic_sets(PREFIXES, &mut rng);
    let opts = RuleSetOptions {
        max_rules: PREFIXES + 1,
        ..RuleSetOptions::default()
    };
    let rules = RuleSet::build(&sets, &opts, None)?;
    let policy = Policy {
        mode: Mode::Enforce,
        ..Policy::default()
    };
    let mut dp = Datapath::load(Capacity::for_prefixes(rules.index_bound()))?;
    dp.install(&rules, &policy, false)?;
    let mut floor_ebpf = Ebpf::load(FLOOR_PROGRAM)?;
    let floor = xdp_program(&mut floor_ebpf, "xdp_floor")?;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")?;
    let mut row = format!("{} |", kernel.trim());
    let mut floor_ns = Vec::new();
    for name in FRAMES {
        let frame = frames()
            .into_iter()
            .find(|f| f.name == name)
            .ok_or_else(|| anyhow::anyhow!("no bench frame {name}"))?;
        let _cpu = OnOneCpu::last();
        let [ours, base] = interleaved_ns([
            &mut || Ok(dp.time_frame(&frame.bytes, repeat)?),
            &mut || time_xdp(floor, &frame.bytes, repeat),
        ])?;
        eprintln!("{name}: ours {ours:.1} ns, floor {base:.1} ns");
        write!(row, " {:.2} |", ours / base)?;
        floor_ns.push(base);
    }
    writeln!(row, " {:.0} |", median(floor_ns))?;
    std::fs::write(out, row)?;
    Ok(())
}
