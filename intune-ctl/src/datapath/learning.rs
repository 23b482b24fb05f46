//! Turning on learning from DNS answers: the capture program on the interfaces' egress, the
//! maps handed to the learner, the decision told to consult learned addresses.

use std::net::IpAddr;

use aya::{
    maps::{HashMap, Map, MapData, PerCpuArray, RingBuf},
    programs::{
        LinkOrder, SchedClassifier, TcAttachType, TestRun as _, TestRunOptions, Xdp,
        tc::{self, NlOptions, TcAttachOptions},
    },
};
use intune_common::{
    learn::{
        ANSWERS_PROGRAM_INDEX, DNS_EVENTS, DNS_LOST, DNS_TAIL, LEARN_NAMES, LEARN_TRUSTED, LEARNED,
    },
    maps::{QUERY_PROGRAM_INDEX, RULE_STATS, XDP_TAIL},
};

use super::{
    Datapath, DatapathError,
    kernel::{CaptureHook, Kernel},
    pins::Pins,
    sync::map_err,
};
use crate::sources::learn::learner::{Maps, key};

pub const CAPTURE_PROGRAM: &str = "intune_dns";
pub const ANSWERS_PROGRAM: &str = "intune_dns_answers";
pub const QUERY_PROGRAM: &str = "intune_xdp_query";

impl Datapath {
    /// Attaches the DNS capture to the egress of `ifaces` (for as long as this process
    /// lives: nobody learns once the daemon is gone) and hands over the maps the learner
    /// works on. Answers count only from `trusted` resolvers (none: nothing is learned), and
    /// only when they answer a query a device sent through the classifier. Call after
    /// the lookup maps are pinned: the `LEARNED` map leaves this handle.
    pub fn start_learning(
        &mut self,
        ifaces: &[String],
        trusted: &[IpAddr],
        pins: &Pins,
    ) -> Result<Maps, DatapathError> {
        // The helpers first: the query recorder (the classifier tail-calls it for the queries
        // it passes) and the answer reader (the capture tail-calls it).
        super::tail::load_into::<Xdp>(
            &mut self.ebpf,
            QUERY_PROGRAM,
            XDP_TAIL,
            QUERY_PROGRAM_INDEX,
        )?;
        super::tail::load_into::<SchedClassifier>(
            &mut self.ebpf,
            ANSWERS_PROGRAM,
            DNS_TAIL,
            ANSWERS_PROGRAM_INDEX,
        )?;
        self.capture_program()?.load()?;
        for iface in ifaces {
            self.capture_on(iface)?;
        }
        let mut resolvers = HashMap::<_, [u8; 16], u8>::try_from(self.map_mut(LEARN_TRUSTED)?)
            .map_err(map_err(LEARN_TRUSTED))?;
        for resolver in trusted {
            resolvers
                .insert(key(*resolver), 1, 0)
                .map_err(map_err(LEARN_TRUSTED))?;
        }
        let mut take =
            |name: &'static str| self.ebpf.take_map(name).ok_or(DatapathError::Missing(name));
        let events = RingBuf::try_from(take(DNS_EVENTS)?).map_err(map_err(DNS_EVENTS))?;
        let learned = HashMap::try_from(take(LEARNED)?).map_err(map_err(LEARNED))?;
        let names = HashMap::try_from(take(LEARN_NAMES)?).map_err(map_err(LEARN_NAMES))?;
        let lost = PerCpuArray::try_from(take(DNS_LOST)?).map_err(map_err(DNS_LOST))?;
        let stats = MapData::from_pin(pins.map(RULE_STATS)).map_err(map_err(RULE_STATS))?;
        let rule_stats =
            PerCpuArray::try_from(Map::PerCpuArray(stats)).map_err(map_err(RULE_STATS))?;
        let drain = match self.drain_idle {
            Some(_) => Some(self.drain_map()?),
            None => None,
        };
        self.learning = true;
        if let Some(config) = self.installed.as_ref().map(|r| self.config_for(r)) {
            self.write_config(config)?;
        }
        Ok(Maps {
            events,
            lost,
            learned,
            names,
            rule_stats,
            drain,
        })
    }

    /// Runs one frame through the DNS capture (loaded by [`Datapath::start_learning`]) with
    /// BPF_PROG_TEST_RUN, as if it left an interface: what it hands the learner arrives on the
    /// events ring. Returns the program's verdict.
    pub fn run_capture(&mut self, frame: &[u8]) -> Result<i32, DatapathError> {
        let result = self.capture_program()?.test_run(TestRunOptions {
            data_in: Some(frame),
            repeat: 1,
            ..TestRunOptions::default()
        })?;
        Ok(result.return_value as i32)
    }

    /// The rule index of the first learned address's counter.
    pub fn learned_rule_base(&self) -> u32 {
        self.capacity.rules
    }

    fn capture_program(&mut self) -> Result<&mut SchedClassifier, DatapathError> {
        Ok(self
            .ebpf
            .program_mut(CAPTURE_PROGRAM)
            .ok_or(DatapathError::Missing("DNS capture program"))?
            .try_into()?)
    }

    /// Attaches the DNS capture to `iface`'s egress (again: a second call changes nothing).
    pub fn capture_on(&mut self, iface: &str) -> Result<CaptureHook, DatapathError> {
        let hook = Kernel::current().capture_hook();
        if self.captures.iter().any(|(name, _)| name == iface) {
            return Ok(hook);
        }
        let prog = self.capture_program()?;
        let attach_error = |source| DatapathError::Attach {
            iface: iface.to_owned(),
            mode: hook.name(),
            source,
        };
        let id = match hook {
            CaptureHook::Tcx => prog
                .attach_with_options(
                    iface,
                    TcAttachType::Egress,
                    TcAttachOptions::TcxOrder(LinkOrder::default()),
                )
                .map_err(attach_error)?,
            CaptureHook::TcFilter => {
                // The qdisc may be there already (ours from before, or another tool's): the
                // attach below says so if it is not.
                let _ = tc::qdisc_add_clsact(iface);
                // A daemon killed before it could remove its filter left it: one capture only.
                remove_left_capture(iface);
                prog.attach_with_options(
                    iface,
                    TcAttachType::Egress,
                    TcAttachOptions::Netlink(NlOptions::default()),
                )
                .map_err(attach_error)?
            }
        };
        self.captures.push((iface.to_owned(), id));
        Ok(hook)
    }

    /// Takes the DNS capture off `iface`, when it is on.
    pub fn capture_off(&mut self, iface: &str) -> Result<(), DatapathError> {
        let Some(at) = self.captures.iter().position(|(name, _)| name == iface) else {
            return Ok(());
        };
        let (_, id) = self.captures.remove(at);
        self.capture_program()?.detach(id)?;
        Ok(())
    }
}

/// Removes the tc filters of our capture from `iface`'s egress; whether there were any. Only
/// a tc filter can outlive its daemon (a TCX link goes with the process).
pub fn remove_left_capture(iface: &str) -> bool {
    tc::qdisc_detach_program(iface, TcAttachType::Egress, CAPTURE_PROGRAM).is_ok()
}
