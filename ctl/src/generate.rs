//! Shell completions and man pages, generated from the clap definition so they never drift from
//! `--help`. Hidden commands for packagers:
//!
//! ```text
//! mslinkctl completions bash > /usr/share/bash-completion/completions/mslinkctl
//! mslinkctl man --out-dir /usr/share/man/man1     # mslinkctl.1 and mslinkctl-COMMAND.1
//! ```

use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;

use crate::Cli;

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> ExitCode {
    clap_complete::generate(shell, &mut Cli::command(), "mslinkctl", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// Prints mslinkctl(1), or writes it and one page per command into `out_dir`.
pub fn man(out_dir: Option<&Path>) -> ExitCode {
    let written = match out_dir {
        None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()),
        Some(dir) => std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(Cli::command(), dir)),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mslinkctl: cannot write the man pages: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_cover_every_visible_command() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(man(Some(dir.path())), ExitCode::SUCCESS);
        for page in ["mslinkctl.1", "mslinkctl-status.1", "mslinkctl-connect.1"] {
            let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
            assert!(text.contains(".TH"), "{page} is not a man page");
        }
    }
}
