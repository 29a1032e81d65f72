//! `hindsight completions SHELL`: a completion script for the shell, on stdout.

use clap::CommandFactory;

pub fn print(shell: clap_complete::Shell) {
    let mut command = crate::Cli::command();
    clap_complete::generate(shell, &mut command, "hindsight", &mut std::io::stdout());
}
