//! BPF instructions a frame costs: the program as the kernel runs it (its xlated instructions,
//! which the JIT translates one for one, map lookups inlined) interpreted on the frame against
//! the maps' contents, and counted. Nanoseconds on a shared VM move with the machine and the
//! moment; this count moves only with the code, so a change to the program shows in it at once.
//!
//! The interpreter knows what the xlated program does, not the kernel: an array map's values
//! start at the offset the program itself adds to the map's address (`struct bpf_array`'s
//! `value`, which differs between kernels); values are read from the kernel when first used
//! and written to the interpreter's copy; per-CPU values are scratch that starts at zero; a
//! helper call counts as one instruction (a map lookup is made with the real map, a tail call
//! fails as on an empty slot). The bench checks the verdict it reaches against a test run's.

use std::{
    collections::{BTreeMap, HashMap},
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, RawFd},
};

use anyhow::{Context as _, bail};
use aya::maps::{MapData, MapInfo, MapType};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
/// `ld_imm64`'s source register in a dump: a map's address, or an address in its value.
const PSEUDO_MAP_FD: u8 = 1;
const PSEUDO_MAP_VALUE: u8 = 2;
/// A call's source register: a call of a function of the program.
const PSEUDO_CALL: u8 = 1;
/// A frame's stack, as the verifier allows.
const STACK: u64 = 512;
/// At most this many instructions a frame (the program's loops are bounded far below).
const LIMIT: u64 = 100_000;

// Where each kind of memory lives in the interpreter's address space.
const STACK_TOP: u64 = 0x7f00_0000_0000;
const CTX: u64 = 0x1000_0000;
const RXQ: u64 = 0x2000_0000;
const PACKET: u64 = 0x3000_0000;
const SCRATCH: u64 = 0x4000_0000;
/// Each map the program names gets 2^36 bytes here, in the order it is met: its address
/// (its values from `values_at` on), then its values addressed directly (global data).
const MAPS: u64 = 1 << 60;
const MAP_SPAN: u32 = 36;
const DIRECT: u64 = 1 << 35;
/// The per-CPU values of each map, in the same order.
const PER_CPU: u64 = 1 << 61;

/// What one frame cost.
pub struct Run {
    pub instructions: u64,
    pub verdict: u32,
}

#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    dst: usize,
    src: u8,
    off: i16,
    imm: i32,
}

/// The `struct bpf_prog_info` fields up to the xlated instructions.
#[repr(C)]
#[derive(Default)]
struct ProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
}

#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

#[repr(C)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<()> {
    // SAFETY: `attr` is the `union bpf_attr` member `cmd` reads, and lives through the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size_of::<T>()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The program's info into `info`, as far as `ProgInfo` reaches.
fn prog_info(fd: RawFd, info: &mut ProgInfo) -> std::io::Result<()> {
    let mut attr = InfoAttr {
        bpf_fd: fd as u32,
        info_len: size_of::<ProgInfo>() as u32,
        info: std::ptr::from_mut(info) as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)
}

/// The program's xlated instructions, as the kernel dumps them (maps named by id).
fn xlated(fd: RawFd) -> anyhow::Result<Vec<Insn>> {
    let mut info = ProgInfo::default();
    prog_info(fd, &mut info).context("the program's info")?;
    let mut raw = vec![0u64; info.xlated_prog_len as usize / 8];
    let mut info = ProgInfo {
        xlated_prog_len: info.xlated_prog_len,
        xlated_prog_insns: raw.as_mut_ptr() as u64,
        ..ProgInfo::default()
    };
    prog_info(fd, &mut info).context("the program's instructions")?;
    if raw.is_empty() {
        bail!("the kernel gave no instructions (is this root?)");
    }
    Ok(raw
        .into_iter()
        .map(|w| {
            let b = w.to_le_bytes();
            Insn {
                code: b[0],
                dst: usize::from(b[1] & 0x0f),
                src: b[1] >> 4,
                off: i16::from_le_bytes([b[2], b[3]]),
                imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            }
        })
        .collect())
}

/// The kernel functions a helper call can name, by their offset from `__bpf_call_base` (the
/// dump's immediate).
fn helpers() -> anyhow::Result<HashMap<i64, String>> {
    let text = std::fs::read_to_string("/proc/kallsyms").context("/proc/kallsyms")?;
    let symbols: Vec<(u64, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let addr = u64::from_str_radix(f.next()?, 16).ok()?;
            let name = f.nth(1)?;
            Some((addr, name))
        })
        .collect();
    let base = symbols
        .iter()
        .find(|(_, n)| *n == "__bpf_call_base")
        .map(|(a, _)| *a)
        .filter(|&a| a != 0)
        .context("no __bpf_call_base in /proc/kallsyms (addresses hidden?)")?;
    Ok(symbols
        .into_iter()
        .map(|(a, n)| (a.wrapping_sub(base) as i64, n.to_string()))
        .collect())
}

struct Map {
    data: MapData,
    kind: MapType,
    key_size: usize,
    value_size: usize,
    max_entries: u64,
    /// What the program adds to the map's address to reach its first value.
    values_at: Option<u64>,
}

/// The maps the program names, read as it reads them; what it writes goes to scratch.
struct Memory {
    maps: BTreeMap<u32, Map>,
    /// Map ids in the order the program names them: a map's place in the address space.
    slots: Vec<u32>,
    elements: HashMap<(u32, u64), Vec<u8>>,
    /// Per-CPU values, helper results, and the context's devices: written and read here.
    scratch: BTreeMap<u64, Vec<u8>>,
    stack: Vec<u8>,
    packet: Vec<u8>,
    ctx: [u8; 64],
}

impl Memory {
    /// Where map `id` lives in the address space.
    fn base(&mut self, id: u32) -> u64 {
        let slot = self.slots.iter().position(|&s| s == id).unwrap_or_else(|| {
            self.slots.push(id);
            self.slots.len() - 1
        });
        MAPS + ((slot as u64) << MAP_SPAN)
    }

    fn map(&mut self, id: u32) -> anyhow::Result<&mut Map> {
        if let std::collections::btree_map::Entry::Vacant(e) = self.maps.entry(id) {
            let info = MapInfo::from_id(id).with_context(|| format!("map {id}"))?;
            e.insert(Map {
                data: MapData::from_id(id).with_context(|| format!("map {id}"))?,
                kind: info.map_type()?,
                key_size: info.key_size() as usize,
                value_size: info.value_size() as usize,
                max_entries: u64::from(info.max_entries()),
                values_at: None,
            });
        }
        Ok(self.maps.get_mut(&id).expect("inserted above"))
    }

    /// The map's value for `key`, read from the kernel.
    fn lookup(&mut self, id: u32, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        let map = self.map(id)?;
        let mut value = vec![0u8; map.value_size];
        let mut attr = ElemAttr {
            map_fd: map.data.fd().as_fd().as_raw_fd() as u32,
            _pad: 0,
            key: key.as_ptr() as u64,
            value: value.as_mut_ptr() as u64,
            flags: 0,
        };
        match bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
            Ok(()) => Ok(Some(value)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("a lookup in map {id}")),
        }
    }

    /// The bytes at `addr`, `n` of them in one place, for reading (and writing where the
    /// program may write).
    fn at(&mut self, addr: u64, n: usize) -> anyhow::Result<&mut [u8]> {
        if (STACK_TOP - 8 * STACK..STACK_TOP).contains(&addr) {
            let off = (addr - (STACK_TOP - 8 * STACK)) as usize;
            return self.stack.get_mut(off..off + n).context("past the stack");
        }
        if (CTX..CTX + 64).contains(&addr) {
            let off = (addr - CTX) as usize;
            return self.ctx.get_mut(off..off + n).context("past the context");
        }
        if (PACKET..PACKET + self.packet.len() as u64).contains(&addr) {
            let off = (addr - PACKET) as usize;
            return self.packet.get_mut(off..off + n).context("past the frame");
        }
        if addr >= PER_CPU || (SCRATCH..MAPS).contains(&addr) || (RXQ..PACKET).contains(&addr) {
            let (&base, buf) = self
                .scratch
                .range_mut(..=addr)
                .next_back()
                .with_context(|| format!("no memory at {addr:#x}"))?;
            let off = (addr - base) as usize;
            return buf
                .get_mut(off..off + n)
                .with_context(|| format!("no memory at {addr:#x}"));
        }
        if addr < MAPS {
            bail!("no memory at {addr:#x}");
        }
        let slot = (addr - MAPS) >> MAP_SPAN;
        let id = *self
            .slots
            .get(slot as usize)
            .with_context(|| format!("no memory at {addr:#x}"))?;
        let within = (addr - MAPS) & ((1 << MAP_SPAN) - 1);
        let direct = within & DIRECT != 0;
        let within = within & !DIRECT;
        let map = self.map(id)?;
        let start = if direct {
            0
        } else {
            map.values_at
                .with_context(|| format!("map {id} read before its values' offset was seen"))?
        };
        let within = within
            .checked_sub(start)
            .with_context(|| format!("a read of map {id}'s header"))?;
        if map.kind == MapType::PerCpuArray {
            // The array of per-CPU pointers: each leads to a scratch value.
            let (index, 0) = (within / 8, within % 8) else {
                bail!("a partial per-CPU pointer of map {id}");
            };
            let value_size = map.value_size;
            let ptr = PER_CPU + (slot << MAP_SPAN) + index * value_size.next_multiple_of(8) as u64;
            self.scratch
                .entry(ptr)
                .or_insert_with(|| vec![0; value_size]);
            // Held where the elements are, under an index no array reaches.
            let pointer = self.elements.entry((id, u64::MAX - index)).or_default();
            *pointer = ptr.to_le_bytes().to_vec();
            return Ok(&mut pointer[..n]);
        }
        let stride = map.value_size.next_multiple_of(8) as u64;
        let (index, off) = (within / stride, (within % stride) as usize);
        if index >= map.max_entries || off + n > map.value_size {
            bail!("a read past map {id}'s values");
        }
        if !self.elements.contains_key(&(id, index)) {
            let key = (index as u32).to_le_bytes();
            let value = self.lookup(id, &key)?.unwrap_or_default();
            self.elements.insert((id, index), value);
        }
        let value = self.elements.get_mut(&(id, index)).expect("inserted above");
        value.get_mut(off..off + n).context("past a map value")
    }

    fn load(&mut self, addr: u64, n: usize) -> anyhow::Result<u64> {
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(self.at(addr, n)?);
        Ok(u64::from_le_bytes(b))
    }

    fn store(&mut self, addr: u64, n: usize, v: u64) -> anyhow::Result<()> {
        self.at(addr, n)?.copy_from_slice(&v.to_le_bytes()[..n]);
        Ok(())
    }

    /// Room for a helper's answer: a lookup's value at `offset`.
    fn scratch_value(&mut self, offset: usize, value: &[u8]) -> u64 {
        let base = self
            .scratch
            .range(SCRATCH..MAPS)
            .next_back()
            .map_or(SCRATCH, |(b, _)| b + 0x1_0000);
        let mut buf = vec![0; offset + value.len() + 64];
        buf[offset..offset + value.len()].copy_from_slice(value);
        self.scratch.insert(base, buf);
        base
    }
}

/// The program, ready to run on frames.
pub struct Interpreter {
    insns: Vec<Insn>,
    helpers: HashMap<i64, String>,
}

impl Interpreter {
    pub fn of(program: BorrowedFd<'_>) -> anyhow::Result<Interpreter> {
        Ok(Interpreter {
            insns: xlated(program.as_raw_fd())?,
            helpers: helpers()?,
        })
    }

    /// Runs the program on `frame`: how many instructions, and its verdict.
    pub fn run(&self, frame: &[u8]) -> anyhow::Result<Run> {
        let mut mem = Memory {
            maps: BTreeMap::new(),
            slots: Vec::new(),
            elements: HashMap::new(),
            scratch: BTreeMap::new(),
            stack: vec![0; 8 * STACK as usize],
            packet: frame.to_vec(),
            ctx: [0; 64],
        };
        // xdp_buff: data, data_end, data_meta, data_hard_start, rxq; the rxq's device (for
        // the ingress ifindex) is zeroed scratch.
        let end = PACKET + frame.len() as u64;
        for (i, v) in [PACKET, end, PACKET, PACKET - 256, RXQ]
            .into_iter()
            .enumerate()
        {
            mem.ctx[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        let mut rxq = vec![0u8; 4096];
        rxq[..8].copy_from_slice(&(RXQ + 0x1_0000).to_le_bytes());
        mem.scratch.insert(RXQ, rxq);
        mem.scratch.insert(RXQ + 0x1_0000, vec![0u8; 4096]);
        self.values_offsets(&mut mem)?;

        let mut regs = [0u64; 11];
        regs[1] = CTX;
        regs[10] = STACK_TOP;
        let mut frames: Vec<(usize, [u64; 5])> = Vec::new();
        let (mut pc, mut count) = (0usize, 0u64);
        loop {
            count += 1;
            if count > LIMIT {
                bail!("more than {LIMIT} instructions");
            }
            let insn = *self.insns.get(pc).context("ran off the program")?;
            let class = insn.code & 0x07;
            let src_x = insn.code & 0x08 != 0;
            let imm = i64::from(insn.imm) as u64;
            pc += 1;
            match class {
                // ld_imm64
                0x00 if insn.code == 0x18 => {
                    let next = self.insns[pc];
                    pc += 1;
                    regs[insn.dst] = match insn.src {
                        PSEUDO_MAP_FD => mem.base(insn.imm as u32),
                        PSEUDO_MAP_VALUE => {
                            mem.base(insn.imm as u32) + DIRECT + u64::from(next.imm as u32)
                        }
                        _ => u64::from(insn.imm as u32) | (u64::from(next.imm as u32) << 32),
                    };
                }
                // ldx, st, stx
                0x01..=0x03 => {
                    let n = [4, 2, 1, 8][usize::from((insn.code >> 3) & 0x03)];
                    if insn.code & 0xe0 != 0x60 {
                        bail!("instruction {pc}: mode {:#x} not modelled", insn.code);
                    }
                    if class == 0x01 {
                        let addr =
                            regs[usize::from(insn.src)].wrapping_add(i64::from(insn.off) as u64);
                        regs[insn.dst] = mem
                            .load(addr, n)
                            .with_context(|| format!("instruction {}: a load", pc - 1))?;
                    } else {
                        let addr = regs[insn.dst].wrapping_add(i64::from(insn.off) as u64);
                        let v = if class == 0x03 {
                            regs[usize::from(insn.src)]
                        } else {
                            imm
                        };
                        mem.store(addr, n, v)
                            .with_context(|| format!("instruction {}: a store", pc - 1))?;
                    }
                }
                // Byte swaps of `imm` bits: to big-endian (0x08) or, in the 64-bit class,
                // unconditionally; to little-endian on this host only truncates.
                0x04 | 0x07 if insn.code & 0xf0 == 0xd0 => {
                    let d = regs[insn.dst];
                    let swap = class == 0x07 || src_x;
                    regs[insn.dst] = match (insn.imm, swap) {
                        (16, true) => u64::from((d as u16).swap_bytes()),
                        (32, true) => u64::from((d as u32).swap_bytes()),
                        (64, true) => d.swap_bytes(),
                        (16, false) => d & 0xffff,
                        (32, false) => d & 0xffff_ffff,
                        (64, false) => d,
                        _ => bail!("instruction {pc}: a byte swap of {} bits", insn.imm),
                    };
                }
                // alu, alu64
                0x04 | 0x07 => {
                    let wide = class == 0x07;
                    let s = if src_x {
                        regs[usize::from(insn.src)]
                    } else {
                        imm
                    };
                    let d = regs[insn.dst];
                    let v = alu(insn.code & 0xf0, d, s, wide)
                        .with_context(|| format!("instruction {pc}: {:#x}", insn.code))?;
                    regs[insn.dst] = if wide { v } else { v & 0xffff_ffff };
                }
                // jmp, jmp32
                0x05 | 0x06 => match insn.code & 0xf0 {
                    0x80 => {
                        if insn.src == PSEUDO_CALL {
                            // Once the functions are compiled, the kernel keeps the call's
                            // target in `off` (and the function's number in `imm`).
                            frames.push((pc, [regs[6], regs[7], regs[8], regs[9], regs[10]]));
                            regs[10] -= STACK;
                            pc = (pc as i64 + i64::from(insn.off)) as usize;
                        } else {
                            regs[0] = self.helper(&mut mem, &regs, pc, i64::from(insn.imm))?;
                        }
                    }
                    0x90 => match frames.pop() {
                        None => {
                            return Ok(Run {
                                instructions: count,
                                verdict: regs[0] as u32,
                            });
                        }
                        Some((back, saved)) => {
                            pc = back;
                            regs[6..=10].copy_from_slice(&saved);
                        }
                    },
                    op => {
                        let s = if src_x {
                            regs[usize::from(insn.src)]
                        } else {
                            imm
                        };
                        let d = regs[insn.dst];
                        let (d, s) = if class == 0x06 {
                            (d & 0xffff_ffff, s & 0xffff_ffff)
                        } else {
                            (d, s)
                        };
                        let signed = |x: u64| {
                            if class == 0x06 {
                                i64::from(x as u32 as i32)
                            } else {
                                x as i64
                            }
                        };
                        let taken = match op {
                            0x00 => true,
                            0x10 => d == s,
                            0x20 => d > s,
                            0x30 => d >= s,
                            0x40 => d & s != 0,
                            0x50 => d != s,
                            0x60 => signed(d) > signed(s),
                            0x70 => signed(d) >= signed(s),
                            0xa0 => d < s,
                            0xb0 => d <= s,
                            0xc0 => signed(d) < signed(s),
                            0xd0 => signed(d) <= signed(s),
                            _ => bail!("instruction {pc}: jump {:#x} not modelled", insn.code),
                        };
                        if taken {
                            pc = (pc as i64 + i64::from(insn.off)) as usize;
                        }
                    }
                },
                _ => bail!("instruction {pc}: class {:#x} not modelled", insn.code),
            }
        }
    }

    /// Finds where each array map's values start: the constant the program adds to the
    /// map's address right after loading it (its inlined lookups all do).
    fn values_offsets(&self, mem: &mut Memory) -> anyhow::Result<()> {
        for (at, i) in self.insns.iter().enumerate() {
            if i.code != 0x18 || i.src != PSEUDO_MAP_FD {
                continue;
            }
            let Some(add) = self.insns.get(at + 2) else {
                continue;
            };
            if add.code == 0x07 && add.dst == i.dst {
                mem.map(i.imm as u32)?.values_at = Some(add.imm as u64);
            }
        }
        Ok(())
    }

    /// A helper call: a map lookup with the real map, the time, a tail call that finds
    /// nothing; anything else is not modelled.
    fn helper(&self, mem: &mut Memory, r: &[u64; 11], pc: usize, imm: i64) -> anyhow::Result<u64> {
        // The dump names a tail call by its helper number, not an address.
        const BPF_FUNC_TAIL_CALL: i64 = 12;
        let name = if imm == BPF_FUNC_TAIL_CALL {
            "bpf_tail_call"
        } else {
            self.helpers.get(&imm).map_or("?", String::as_str)
        };
        match name {
            "bpf_tail_call" => Ok(u64::MAX),
            "bpf_ktime_get_ns" => Ok(1_000_000_000_000),
            n if n.contains("lookup_elem") => {
                let slot = (r[1].wrapping_sub(MAPS) >> MAP_SPAN) as usize;
                let id = *mem.slots.get(slot).context("a lookup in no map")?;
                let key_size = mem.map(id)?.key_size;
                let mut key = vec![0u8; key_size];
                for (k, b) in key.iter_mut().enumerate() {
                    *b = mem.load(r[2] + k as u64, 1)? as u8;
                }
                let Some(value) = mem.lookup(id, &key)? else {
                    return Ok(0);
                };
                // A hash map's lookup is followed by the null check and the step from the
                // element to its value, which the program adds.
                let offset = match self.insns.get(pc + 1) {
                    Some(add) if add.code == 0x07 && add.dst == 0 => add.imm as usize,
                    _ => 0,
                };
                Ok(mem.scratch_value(offset, &value))
            }
            n => bail!("instruction {pc}: helper {n} not modelled"),
        }
    }
}

/// An ALU operation `op` on `d` and `s` (64-bit, or 32-bit where `wide` is false).
fn alu(op: u8, d: u64, s: u64, wide: bool) -> anyhow::Result<u64> {
    let (d32, s32) = (d as u32, s as u32);
    let sh = if wide { s & 63 } else { s & 31 };
    Ok(match op {
        0x00 => d.wrapping_add(s),
        0x10 => d.wrapping_sub(s),
        0x20 => d.wrapping_mul(s),
        0x30 if wide => d.checked_div(s).unwrap_or(0),
        0x30 => u64::from(d32.checked_div(s32).unwrap_or(0)),
        0x40 => d | s,
        0x50 => d & s,
        0x60 => d << sh,
        0x70 if wide => d >> sh,
        0x70 => u64::from(d32 >> sh),
        0x80 => d.wrapping_neg(),
        0x90 if wide => d.checked_rem(s).unwrap_or(d),
        0x90 => u64::from(d32.checked_rem(s32).unwrap_or(d32)),
        0xa0 => d ^ s,
        // A move; the per-CPU form (offset 1) gives this CPU's address, here the same.
        0xb0 => s,
        0xc0 if wide => ((d as i64) >> sh) as u64,
        0xc0 => u64::from(((d32 as i32) >> sh) as u32),
        _ => bail!("ALU operation {op:#x} not modelled"),
    })
}
