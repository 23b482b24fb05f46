//! Taking removed rules' counters (read, then zeroed) through the kernel's take program: the
//! indices written to a mapped array, one test run on each CPU (from the calling thread moved
//! there, so no run goes by IPI), the sums read from a second mapped array. Four calls a CPU
//! for a thousand rules, where the syscalls take a call an entry to read them and a batch to
//! zero them. The program is loaded at the first take
//! (its loop's verification takes about 50 ms here). Where it cannot run (a test run pinned
//! to a CPU needs 5.10; a CPU offline keeps counts no run can reach), or would be slower (more
//! than [`MAX_TAKE_CPUS`] CPUs), the syscalls do it.

use aya::programs::{RawTracePoint, RawTracePointRunOptions, TestRun as _};
use intune_common::maps::{Counter, MAX_TAKE, TAKE_INDICES, TAKE_PROGRAM, TAKE_SUMS};
use memmap2::MmapMut;

use super::{Datapath, DatapathError};

/// CPUs at most for the program. A run costs about 120 ns an entry (the counters' cache
/// misses, which the calls pay too) and the runs go one CPU after another, where the calls
/// cost 1.5 µs an entry more but spread over up to four threads: measured on 2 CPUs (0.3 ms
/// against 1.1 ms for a thousand rules), the two meet at about four.
pub const MAX_TAKE_CPUS: usize = 4;

/// The kernel lays an `Array<u32>`'s elements 8 bytes apart, an `Array<Counter>`'s 16.
const INDEX_STRIDE: usize = 8;
const SUM_STRIDE: usize = size_of::<Counter>();
const _: () = assert!(SUM_STRIDE.is_multiple_of(8));

/// Whether the take program is set up: tried at the first take, so a daemon that never
/// removes a rule never loads it.
#[derive(Default)]
pub(crate) enum Taker {
    #[default]
    Untried,
    Ready(Mapped),
    /// The syscalls read and zero instead (why is logged once).
    Unavailable,
}

/// The program's two arrays, mapped.
pub(crate) struct Mapped {
    indices: MmapMut,
    sums: MmapMut,
}

impl Datapath {
    /// The hits of the rules with `indices`, summed over CPUs, which are then zeroed for the
    /// indices' reuse: an update's removed rules.
    pub fn take_rule_counters(&mut self, indices: &[u32]) -> Result<Vec<Counter>, DatapathError> {
        if indices.is_empty() {
            return Ok(Vec::new());
        }
        // Asked at each take: a CPU may have gone offline, or come online, since the last.
        match take_cpus() {
            Ok(cpus) => self.take_rule_counters_on(indices, &cpus),
            Err(why) => {
                tracing::debug!(%why, "removed rules' counters read and zeroed by syscalls");
                self.take_by_calls(indices)
            }
        }
    }

    /// As [`Datapath::take_rule_counters`], with the program run on `cpus`, which must be
    /// every CPU that may hold counts. A run that fails (a CPU gone offline) leaves what the
    /// earlier runs took in the sums and the rest in the counters: the syscalls take the rest,
    /// and every take after.
    pub fn take_rule_counters_on(
        &mut self,
        indices: &[u32],
        cpus: &[u32],
    ) -> Result<Vec<Counter>, DatapathError> {
        if matches!(self.taker, Taker::Untried) {
            self.taker = match self.set_up_taker(cpus) {
                Ok(mapped) => Taker::Ready(mapped),
                Err(why) => {
                    tracing::info!(%why, "removed rules' counters are read and zeroed by syscalls");
                    Taker::Unavailable
                }
            };
        }
        if !self.takes_by_program() {
            return self.take_by_calls(indices);
        }
        let pinned = OnCpu::new().map_err(DatapathError::Cpus)?;
        let mut out = Vec::with_capacity(indices.len());
        for (b, batch) in indices.chunks(MAX_TAKE as usize).enumerate() {
            let (mut sums, failed) = self.take_batch(batch, cpus, &pinned)?;
            if let Some(why) = failed {
                tracing::warn!(%why, "the take program failed; removed rules' counters are read and zeroed by syscalls from now on");
                self.taker = Taker::Unavailable;
                // The calls spread over threads, which start with this thread's CPUs.
                drop(pinned);
                let rest = self.take_by_calls(&indices[b * MAX_TAKE as usize..])?;
                // This batch: what the runs took and what the calls found; after it, the calls'.
                for (sum, c) in sums.iter_mut().zip(&rest) {
                    sum.packets += c.packets;
                    sum.bytes += c.bytes;
                }
                out.extend(sums);
                out.extend_from_slice(&rest[batch.len()..]);
                return Ok(out);
            }
            out.extend(sums);
        }
        Ok(out)
    }

    /// Whether removed rules' counters are taken by the take program (known from the first
    /// take on; false before it).
    pub fn takes_by_program(&self) -> bool {
        matches!(self.taker, Taker::Ready(_))
    }

    /// Loads the program, maps its arrays, and runs it once on each CPU with nothing to take:
    /// a kernel that cannot run it says so here, before any counter is touched.
    fn set_up_taker(&mut self, cpus: &[u32]) -> Result<Mapped, String> {
        let (indices, _) = self
            .map_array(TAKE_INDICES, INDEX_STRIDE)
            .map_err(|e| e.to_string())?;
        let (sums, _) = self
            .map_array(TAKE_SUMS, SUM_STRIDE)
            .map_err(|e| e.to_string())?;
        let program = self.take_program().map_err(|e| e.to_string())?;
        program
            .load()
            .map_err(|e| format!("loading {TAKE_PROGRAM}: {e}"))?;
        let pinned = OnCpu::new().map_err(|e| format!("this thread's CPUs: {e}"))?;
        for &cpu in cpus {
            pinned
                .to(cpu)
                .map_err(|e| format!("moving to CPU {cpu}: {e}"))?;
            run(program, 0, cpu)
                .map_err(|e| format!("running {TAKE_PROGRAM} on CPU {cpu}: {e}"))?;
        }
        Ok(Mapped { indices, sums })
    }

    /// At most `MAX_TAKE` rules: listed, their sums zeroed, a run on each CPU in turn, the
    /// sums read; with why a run failed, if one did (the runs stop there).
    fn take_batch(
        &mut self,
        batch: &[u32],
        cpus: &[u32],
        pinned: &OnCpu,
    ) -> Result<(Vec<Counter>, Option<String>), DatapathError> {
        let Taker::Ready(mapped) = &mut self.taker else {
            return Err(DatapathError::Missing(TAKE_PROGRAM));
        };
        for (i, &index) in batch.iter().enumerate() {
            mapped.indices[i * INDEX_STRIDE..i * INDEX_STRIDE + 4]
                .copy_from_slice(&index.to_ne_bytes());
        }
        mapped.sums[..batch.len() * SUM_STRIDE].fill(0);
        let program = self.take_program()?;
        let mut failed = None;
        for &cpu in cpus {
            match pinned
                .to(cpu)
                .map_err(|e| e.to_string())
                .and_then(|()| run(program, batch.len(), cpu).map_err(|e| e.to_string()))
            {
                Ok(0) => {}
                Ok(code) => failed = Some(format!("on CPU {cpu}, it returned {code}")),
                Err(e) => failed = Some(format!("on CPU {cpu}: {e}")),
            }
            if failed.is_some() {
                break;
            }
        }
        let Taker::Ready(mapped) = &self.taker else {
            return Err(DatapathError::Missing(TAKE_PROGRAM));
        };
        let sums = (0..batch.len())
            .map(|i| {
                let at = i * SUM_STRIDE;
                let word = |o: usize| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&mapped.sums[at + o..at + o + 8]);
                    u64::from_ne_bytes(b)
                };
                Counter {
                    packets: word(0),
                    bytes: word(8),
                }
            })
            .collect();
        Ok((sums, failed))
    }

    /// The syscalls' way: each counter read (a call an entry), then all zeroed (a batch).
    fn take_by_calls(&mut self, indices: &[u32]) -> Result<Vec<Counter>, DatapathError> {
        let counters = self.rule_counters_of(indices.iter().copied())?;
        self.zero_rule_counters(indices.iter().copied())?;
        Ok(counters)
    }

    fn take_program(&mut self) -> Result<&mut RawTracePoint, DatapathError> {
        self.ebpf
            .program_mut(TAKE_PROGRAM)
            .ok_or(DatapathError::Missing(TAKE_PROGRAM))?
            .try_into()
            .map_err(DatapathError::Program)
    }
}

/// The CPUs to run the program on: every one, when every possible CPU is online (an
/// offline one's counts are out of a run's reach) and there are at most [`MAX_TAKE_CPUS`].
fn take_cpus() -> Result<Vec<u32>, String> {
    let cpus = aya::util::online_cpus().map_err(|(_, e)| format!("online CPUs: {e}"))?;
    let possible = aya::util::nr_cpus().map_err(|(_, e)| format!("possible CPUs: {e}"))?;
    if cpus.len() > MAX_TAKE_CPUS {
        return Err(format!(
            "{} CPUs: the calls, spread over threads, take less time than a run on each",
            cpus.len()
        ));
    }
    if cpus.len() != possible {
        return Err(format!(
            "{} of {possible} possible CPUs are online; an offline one's counts are out of a run's reach",
            cpus.len()
        ));
    }
    let allowed = Affinity::current().map_err(|e| format!("this thread's CPUs: {e}"))?;
    if let Some(cpu) = cpus.iter().find(|&&c| !allowed.has(c)) {
        return Err(format!("this thread may not run on CPU {cpu}"));
    }
    Ok(cpus)
}

/// The CPUs a thread may run on.
struct Affinity(libc::cpu_set_t);

impl Affinity {
    /// The calling thread's.
    fn current() -> std::io::Result<Affinity> {
        // SAFETY: a zeroed cpu_set_t is valid; the call writes only it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &raw mut set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Affinity(set))
        }
    }

    fn has(&self, cpu: u32) -> bool {
        (cpu as usize) < libc::CPU_SETSIZE as usize
            // SAFETY: reads the set, within its size.
            && unsafe { libc::CPU_ISSET(cpu as usize, &self.0) }
    }

    /// Makes it the calling thread's: the kernel has the thread on one of its CPUs when the
    /// call returns.
    fn apply(&self) -> std::io::Result<()> {
        // SAFETY: a valid set, read only.
        if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const self.0) }
            != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The calling thread moved from CPU to CPU while a take runs on each, and given back the CPUs
/// it had when dropped. On its own CPU a run is the kernel's direct call; sent to another it
/// goes by an IPI, and two threads doing that to each other's CPU hung Debian 11's 5.10 (a
/// soft lockup of both CPUs, in the update tests under vm-test).
struct OnCpu {
    had: Affinity,
}

impl OnCpu {
    fn new() -> std::io::Result<OnCpu> {
        Ok(OnCpu {
            had: Affinity::current()?,
        })
    }

    /// Moves the thread to `cpu`, one of those it had.
    fn to(&self, cpu: u32) -> std::io::Result<()> {
        if !self.had.has(cpu) {
            return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes within it (the CPU is below its
        // size).
        let one = unsafe {
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu as usize, &mut one);
            one
        };
        Affinity(one).apply()
    }
}

impl Drop for OnCpu {
    fn drop(&mut self) {
        if let Err(error) = self.had.apply() {
            tracing::warn!(%error, "could not give the thread back its CPUs after taking counters");
        }
    }
}

/// One run of the take program on `cpu` over the first `count` indices; its return value.
fn run(program: &RawTracePoint, count: usize, cpu: u32) -> Result<u32, DatapathError> {
    let mut args = [0u64; 12];
    args[0] = count as u64;
    let result = program.test_run(RawTracePointRunOptions {
        args,
        cpu: Some(cpu),
    })?;
    Ok(result.return_value)
}
