//! The kernel program's log: it records each decision with aya-log at debug level only, and
//! the records are forwarded to `tracing` under the target `intune_xdp::kernel`. The level is
//! fixed as the program loads, from the daemon's log filter (`RUST_LOG=info,intune_xdp::kernel=debug`
//! turns it on); with it off the verifier drops the logging code and it costs nothing. The
//! logging itself is a program of its own the classifier tail-calls (`intune_xdp_log`), so the
//! verifier checks it once: inline, it took older kernels past their limit.

use aya::Ebpf;
use aya_log::EbpfLogger;
use intune_common::{
    maps::{LOG_PROGRAM_INDEX, XDP_TAIL},
    outcome::{Outcome, XDP_DROP, XDP_PASS},
    proto::l4_name,
};
use tokio::io::unix::AsyncFd;

use super::{Datapath, DatapathError};

pub const TARGET: &str = "intune_xdp::kernel";

// Statics: the loader borrows the value for as long as it lives.
static OFF: u8 = 0;
static DEBUG: u8 = aya_log::Level::Debug as u8;

/// The aya-log level to load the program with: debug when the log filter lets the kernel's
/// debug records through, else off.
pub(super) fn level() -> &'static u8 {
    if tracing::enabled!(target: TARGET, tracing::Level::DEBUG) {
        &DEBUG
    } else {
        &OFF
    }
}

const LOG_PROGRAM: &str = "intune_xdp_log";

/// Loads the log program into the classifier's tail-call slot (when the log is on). A stopped
/// daemon's program logs no more, and still decides.
pub(super) fn install(ebpf: &mut Ebpf) -> Result<(), DatapathError> {
    super::tail::load_into::<aya::programs::Xdp>(ebpf, LOG_PROGRAM, XDP_TAIL, LOG_PROGRAM_INDEX)
}

/// Hands aya-log's records (already formatted) to `tracing`.
struct Forward;

impl log::Log for Forward {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        tracing::debug!(target: TARGET, "{}", render(&record.args().to_string()));
    }

    fn flush(&self) {}
}

/// Names what the kernel logs as numbers: "VERDICT OUTCOME" for a frame that is not IP,
/// "VERDICT OUTCOME RULE L4 SRC -> DST" for one that is, becomes "pass intune rule 5: tcp
/// 192.0.2.1:40000 -> 198.51.100.1:443". Anything else is passed on as it came.
pub fn render(message: &str) -> String {
    let mut words = message.splitn(5, ' ');
    let (Some(verdict), Some(outcome)) = (words.next(), words.next()) else {
        return message.to_owned();
    };
    let verdict = match verdict.parse::<u32>() {
        Ok(XDP_PASS) => "pass",
        Ok(XDP_DROP) => "drop",
        _ => return message.to_owned(),
    };
    let Some(outcome) = outcome
        .parse()
        .ok()
        .and_then(Outcome::from_u32)
        .map(Outcome::counter_name)
    else {
        return message.to_owned();
    };
    match (words.next(), words.next(), words.next()) {
        (None, ..) => format!("{verdict} {outcome}"),
        (Some(rule), Some(l4), Some(rest)) => match l4.parse::<u8>() {
            Ok(l4) => format!("{verdict} {outcome} rule {rule}: {} {rest}", l4_name(l4)),
            Err(_) => message.to_owned(),
        },
        _ => message.to_owned(),
    }
}

/// The reader of the program's log ring buffer.
pub struct KernelLog(EbpfLogger<Forward>);

impl KernelLog {
    /// Forwards records as they arrive, until the task is dropped.
    pub async fn forward(self) {
        // SAFETY: the logger owns its ring buffer's descriptor for as long as it lives and
        // always answers with that one.
        let registered =
            unsafe { AsyncFd::register_with_interest(self.0, tokio::io::Interest::READABLE) };
        let mut fd = match registered {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!(error = %e, "the kernel program's log cannot be read");
                return;
            }
        };
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    }
}

impl Datapath {
    /// The program's log reader, when it was loaded with its log on.
    pub fn kernel_log(&mut self) -> Result<Option<KernelLog>, DatapathError> {
        if !self.kernel_log_on {
            return Ok(None);
        }
        EbpfLogger::init_with_logger(&mut self.ebpf, Forward)
            .map(|l| Some(KernelLog(l)))
            .map_err(|e| DatapathError::KernelLog(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn numbers_from_the_kernel_become_names() {
        assert_eq!(
            render("2 0 5 6 192.0.2.1:40000 -> 198.51.100.1:443"),
            "pass intune rule 5: tcp 192.0.2.1:40000 -> 198.51.100.1:443"
        );
        assert_eq!(
            render("1 3 -1 17 [2001:db8::1]:53 -> [2001:db8::2]:99"),
            "drop dropped rule -1: udp [2001:db8::1]:53 -> [2001:db8::2]:99"
        );
        assert_eq!(render("2 5"), "pass malformed");
        // Not ours, or not what we send: as it came.
        for other in ["hello world", "7 0", "2 99", "2 0 5 x y", "2 0 5"] {
            assert_eq!(render(other), other);
        }
    }
}
