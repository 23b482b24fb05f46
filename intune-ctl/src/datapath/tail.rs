//! Program-array slots: a loaded program put where another tail-calls it. A slot empties when
//! the last descriptor of its map closes, so a stopped daemon's helpers stop with it.

use aya::{
    Ebpf,
    maps::ProgramArray,
    programs::{ProgramFd, SchedClassifier, Xdp},
};

use super::{DatapathError, sync::map_err};

/// Loads the XDP program `program` into slot `index` of `map`.
pub(super) fn xdp(
    ebpf: &mut Ebpf,
    program: &'static str,
    map: &'static str,
    index: u32,
) -> Result<(), DatapathError> {
    let prog: &mut Xdp = ebpf
        .program_mut(program)
        .ok_or(DatapathError::Missing(program))?
        .try_into()?;
    prog.load()?;
    let fd = prog.fd()?.try_clone().map_err(DatapathError::Fd)?;
    set(ebpf, map, index, &fd)
}

/// Loads the TC program `program` into slot `index` of `map`.
pub(super) fn tc(
    ebpf: &mut Ebpf,
    program: &'static str,
    map: &'static str,
    index: u32,
) -> Result<(), DatapathError> {
    let prog: &mut SchedClassifier = ebpf
        .program_mut(program)
        .ok_or(DatapathError::Missing(program))?
        .try_into()?;
    prog.load()?;
    let fd = prog.fd()?.try_clone().map_err(DatapathError::Fd)?;
    set(ebpf, map, index, &fd)
}

fn set(
    ebpf: &mut Ebpf,
    map: &'static str,
    index: u32,
    fd: &ProgramFd,
) -> Result<(), DatapathError> {
    let slots = ebpf.map_mut(map).ok_or(DatapathError::Missing(map))?;
    let mut array = ProgramArray::try_from(slots).map_err(map_err(map))?;
    array.set(index, fd, 0).map_err(map_err(map))
}
