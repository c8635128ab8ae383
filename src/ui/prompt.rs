//! The one question etcdroll asks: the plan, then "Proceed? [y/N]". It is asked on
//! the terminal (stderr, stdin) with the bars hidden; anything but y or yes, or a
//! stdin that cannot be read, is a no.

use std::io::Write;

/// Print the plan and ask on the terminal.
pub(super) fn ask_to_proceed(steps: &[String]) -> bool {
    let mut err = std::io::stderr();
    let _ = writeln!(err, "Plan:");
    for (i, s) in steps.iter().enumerate() {
        let _ = writeln!(err, "  {:>2}. {s}", i + 1);
    }
    let _ = write!(err, "Proceed? [y/N] ");
    let _ = err.flush();
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}
