//! Running frames through the loaded program with BPF_PROG_TEST_RUN.

use aya::{
    maps::Array,
    programs::{TestRun, TestRunOptions},
};
use intune_common::{
    classify::Decision,
    maps::{Config, TRACE, Trace},
    outcome::Outcome,
};

use super::{Datapath, DatapathError, sync::map_err};

#[derive(Debug, thiserror::Error)]
pub enum TestRunError {
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error("the program was not loaded with tracing on; call install(.., trace = true)")]
    NotTracing,
    #[error("the program returned {return_value} but recorded no decision")]
    NoTrace { return_value: u32 },
    #[error("the program recorded an unknown outcome {0}")]
    BadOutcome(u32),
}

impl Datapath {
    /// Runs one frame through the real program and returns its decision, read from the trace
    /// the program writes when `Config::FLAG_TRACE` is set.
    pub fn run_frame(&self, frame: &[u8]) -> Result<Decision, TestRunError> {
        if self.config()?.flags & Config::FLAG_TRACE == 0 {
            return Err(TestRunError::NotTracing);
        }
        let before = self.trace()?.seq;
        let result = self
            .program()?
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ..TestRunOptions::new()
            })
            .map_err(DatapathError::Program)?;
        let trace = self.trace()?;
        if trace.seq == before {
            return Err(TestRunError::NoTrace {
                return_value: result.return_value,
            });
        }
        debug_assert_eq!(trace.verdict, result.return_value);
        Ok(Decision {
            outcome: Outcome::from_u32(trace.outcome)
                .ok_or(TestRunError::BadOutcome(trace.outcome))?,
            verdict: result.return_value,
            rule: trace.rule,
            port_key: trace.port_key,
        })
    }

    /// Runs `frame` `repeat` times in the kernel; returns the kernel's mean time per run.
    pub fn time_frame(
        &self,
        frame: &[u8],
        repeat: u32,
    ) -> Result<std::time::Duration, DatapathError> {
        let result = self.program()?.test_run(TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..TestRunOptions::new()
        })?;
        Ok(result.duration)
    }

    fn trace(&self) -> Result<Trace, DatapathError> {
        let map = self.ebpf.map(TRACE).ok_or(DatapathError::Missing(TRACE))?;
        let array = Array::<_, Trace>::try_from(map).map_err(map_err(TRACE))?;
        array.get(&0, 0).map_err(map_err(TRACE))
    }
}
