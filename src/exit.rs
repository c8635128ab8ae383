//! Exit codes, documented in the README.

/// Everything asked for was done.
pub const OK: i32 = 0;
/// A host or member failed (a command failed, a member was unhealthy, an upgrade
/// stopped; members are running, see the report).
pub const FAILED: i32 = 1;
/// Bad command line or inventory: nothing was contacted.
pub const USAGE: i32 = 2;
/// The pre-flight refused: nothing was changed.
pub const REFUSED: i32 = 3;
/// A host could not be reached or logged into.
pub const UNREACHABLE: i32 = 4;
/// A member may be left stopped or in an unknown state: act now (see the report).
pub const NEEDS_ATTENTION: i32 = 5;
/// Interrupted by Ctrl-C (128 + SIGINT).
pub const INTERRUPTED: i32 = 130;

/// How a procedure ended, as the engine reports it; `code` is the one table
/// from endings to exit codes (the process's, and the JSON events' `exit_code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Done,
    Failed,
    Refused,
    Unreachable,
    NeedsAttention,
    Interrupted,
}

impl Ending {
    pub fn code(self) -> i32 {
        match self {
            Ending::Done => OK,
            Ending::Failed => FAILED,
            Ending::Refused => REFUSED,
            Ending::Unreachable => UNREACHABLE,
            Ending::NeedsAttention => NEEDS_ATTENTION,
            Ending::Interrupted => INTERRUPTED,
        }
    }
}
