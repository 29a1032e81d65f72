//! `hindsight completions SHELL`: a completion script for the shell, on stdout.

use std::io::Write;

use clap::CommandFactory;

/// Writes the script; a closed stdout (`| head`) ends it quietly.
pub fn print(shell: clap_complete::Shell) -> std::io::Result<()> {
    let mut command = crate::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "hindsight", &mut script);
    match std::io::stdout().lock().write_all(&script) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
