//! Program-array slots: a loaded program put where another tail-calls it. A slot empties when
//! the last descriptor of its map closes, so a stopped daemon's helpers stop with it.

use aya::{
    Ebpf,
    maps::ProgramArray,
    programs::{Program, ProgramError, ProgramFd, SchedClassifier, Xdp},
};

use super::{DatapathError, sync::map_err};

/// The program kinds a slot holds: loaded with no arguments, found by descriptor.
pub(super) trait Slotted {
    fn load_program(&mut self) -> Result<(), ProgramError>;
    fn program_fd(&self) -> Result<&ProgramFd, ProgramError>;
}

impl Slotted for Xdp {
    fn load_program(&mut self) -> Result<(), ProgramError> {
        self.load()
    }

    fn program_fd(&self) -> Result<&ProgramFd, ProgramError> {
        self.fd()
    }
}

impl Slotted for SchedClassifier {
    fn load_program(&mut self) -> Result<(), ProgramError> {
        self.load()
    }

    fn program_fd(&self) -> Result<&ProgramFd, ProgramError> {
        self.fd()
    }
}

/// Loads `program` (an XDP or TC program) into slot `index` of `map`.
pub(super) fn load_into<P: Slotted>(
    ebpf: &mut Ebpf,
    program: &'static str,
    map: &'static str,
    index: u32,
) -> Result<(), DatapathError>
where
    for<'a> &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
{
    let prog: &mut P = ebpf
        .program_mut(program)
        .ok_or(DatapathError::Missing(program))?
        .try_into()?;
    prog.load_program()?;
    let fd = prog.program_fd()?.try_clone().map_err(DatapathError::Fd)?;
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
