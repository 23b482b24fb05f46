//! The command line: the command tree here, one file per subcommand.

pub mod changes;
pub mod check;
pub mod check_config;
pub mod classify;
pub mod common;
pub mod daemon;
pub mod detach;
pub mod endpoints;
pub mod flags;
pub mod list;
pub mod lookup;
pub mod refresh;
pub mod resolve;
pub mod stats;
pub mod status;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

/// Loads and watches intune-xdp, the XDP filter that knows the Microsoft Intune endpoints.
#[derive(Debug, Parser)]
#[command(name = "intune-ctl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every frame of a capture through the real program and print what it decided.
    Classify(classify::ClassifyArgs),
    /// The filter daemon: attach to the interfaces, keep the rule set current, print hit
    /// counters; reads /etc/intune-ctl/config.toml (or --config), flags override it.
    #[command(visible_alias = "run")]
    Daemon(Box<daemon::DaemonArgs>),
    /// The daemon's state: interfaces, mode, rules per source, last refresh, resolver.
    Status(status::StatusArgs),
    /// Ask the daemon to check the web service and look the names up again now.
    Refresh(refresh::RefreshArgs),
    /// Hit counters of the running (or stopped) filter, from its pinned maps.
    Stats(stats::StatsArgs),
    /// What the running filter does with a packet to (or from) ADDRESS, asked of the real
    /// program against the live maps.
    Lookup(lookup::LookupArgs),
    /// Remove the filter from interfaces (all by default) and its pins.
    Detach(detach::DetachArgs),
    /// Print the man page (roff), for packaging.
    #[command(hide = true)]
    Man,
    /// Print shell completions, for packaging.
    #[command(hide = true)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Validate a config file, its endpoint files and exclusions, without touching anything.
    CheckConfig(check_config::CheckConfigArgs),
    /// Print the endpoint sets of one source, or the effective list.
    Endpoints(endpoints::EndpointsArgs),
    /// Print the effective rule set with each prefix's ports, endpoint sets and sources.
    List(list::ListArgs),
    /// Print the last applied changes of the rule set.
    Changes(changes::ChangesArgs),
    /// Resolve every exact name of the rule set once and print the answers.
    Resolve(resolve::ResolveArgs),
    /// Would a device reach every endpoint through this gateway now? Resolves the names and
    /// asks the live filter about each address on each port; exit 1 when something required
    /// would be blocked.
    Check(check::CheckArgs),
}

/// Parses the command line, runs the command, reports an error with exit code 2 (`check`
/// chooses its own code otherwise).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `check` reports each name's lookup itself: the resolver's daemon-minded warnings would
    // only repeat it.
    init_logs(if matches!(cli.command, Command::Check(_)) {
        "info,intune_ctl::sources::resolve=error,intune_ctl::repeated=error"
    } else {
        "info"
    });
    if !matches!(cli.command, Command::Daemon(_)) {
        // A command piped into `head` should end quietly when the pipe closes, as Unix tools
        // do; the daemon keeps Rust's default, since losing stdout must not stop a filter.
        // SAFETY: setting a signal disposition to its default before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = match &cli.command {
        Command::Classify(args) => classify::run(args),
        Command::Daemon(args) => run_daemon(daemon::run((**args).clone())),
        Command::CheckConfig(args) => check_config::run(args),
        Command::Detach(args) => detach::run(args),
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map_err(Into::into),
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "intune-ctl",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Stats(args) => stats::run(args),
        Command::Status(args) => status::run(args),
        Command::Refresh(args) => refresh::run(args),
        Command::Lookup(args) => lookup::run(args),
        Command::Endpoints(args) => block_on(endpoints::run(args)),
        Command::List(args) => list::run(args),
        Command::Changes(args) => changes::run(args),
        Command::Resolve(args) => block_on(resolve::run(args)),
        Command::Check(args) => return finish(block_on(check::run(args))),
    };
    finish(result.map(|()| ExitCode::SUCCESS))
}

/// The exit code, with an error reported on stderr and exit code 2.
fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("intune-ctl: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs to the journal when systemd connected stderr to it, to stderr otherwise (colours for a
/// terminal only); `default` filters them unless RUST_LOG does.
fn init_logs(default: &str) {
    use tracing_subscriber::{EnvFilter, layer::SubscriberExt as _, util::SubscriberInitExt as _};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let journal = stderr_is_journal()
        .then(|| tracing_journald::layer().ok())
        .flatten();
    let registry = tracing_subscriber::registry().with(filter);
    match journal {
        Some(journal) => registry.with(journal).init(),
        None => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
            )
            .init(),
    }
}

/// Whether stderr is the journal stream systemd gave the service. JOURNAL_STREAM alone is not
/// enough: children inherit it, and a daemon started from a unit's script with its stderr
/// redirected must log where it was sent. systemd.exec(5): compare its device and inode.
fn stderr_is_journal() -> bool {
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM").ok().and_then(|v| {
        let (dev, ino) = v.split_once(':')?;
        Some((dev.parse::<u64>().ok()?, ino.parse::<u64>().ok()?))
    }) else {
        return false;
    };
    // SAFETY: fstat on a descriptor number into a zeroed struct; a closed stderr fails.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(libc::STDERR_FILENO, &raw mut st) } != 0 {
        return false;
    }
    st.st_dev as u64 == dev && st.st_ino as u64 == ino
}

/// The daemon's runtime: one thread, since its tasks wait on networks and timers and the one
/// owner does the work (each worker thread of a larger runtime would cost the allocator an
/// arena of its own). Once the daemon returns, tasks still waiting on a network (a check of a
/// hanging web service) are given a moment, not the minutes their timeouts allow.
fn run_daemon(f: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(f);
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    result
}

fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Runtime::new()?.block_on(f)
}
