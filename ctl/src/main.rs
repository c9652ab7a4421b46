//! `mslinkctl`: parse the command line, make one call to mslinkd, render the reply, exit with the
//! code SPEC §3 gives the outcome.

mod client;
mod connect;
mod generate;
mod render;
mod sasl;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use mslink_proto::{
    ConnectEvent, CtlCommand, DaemonReply, ErrorKind, LinkState, Provider, SignInFlow,
    TokenResource,
};

use crate::client::{Client, CtlError};

/// Shown at the end of `mslinkctl --help` and in the man page.
const EXIT_CODES: &str = "\
Examples:
  mslinkctl status                     your links and their health
  mslinkctl request -m \"for the CRM\"   ask the admins to turn the integration on
  mslinkctl connect alice@example.com  link a mailbox
  mslinkctl status --check             one line for Nagios (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)
  mslinkctl token alice@example.com --for imap   an IMAP token for isync's PassCmd, msmtp's passwordeval

Exit codes: 0 done, 1 failed, 2 usage error, 3 daemon unreachable, 4 permission denied,
5 not found, 6 not allowed now, 7 credentials rejected, 8 timed out or cancelled.";

/// Link Microsoft mailboxes and calendars (Office365 and Exchange) to your organisation.
///
/// mslinkctl talks to the mslinkd daemon over its control socket; who you are comes from the
/// socket, so there is no login.
#[derive(Debug, Parser)]
#[command(name = "mslinkctl", version, about, max_term_width = 100, after_long_help = EXIT_CODES)]
struct Cli {
    /// The daemon's control socket [default: /run/mslink/mslinkd.sock, or
    /// $XDG_RUNTIME_DIR/mslink/mslinkd.sock for a per-user daemon]
    #[arg(long, global = true, env = "MSLINK_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print one JSON document ("format_version": 1) instead of text
    #[arg(long, global = true)]
    json: bool,
    /// Admins: act for this user (for service accounts)
    #[arg(long, global = true, value_name = "NAME")]
    user: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the integration state, your request and your links with their health
    Status {
        /// Admins: every user's links
        #[arg(long)]
        all: bool,
        /// Only the links in this state
        #[arg(long, value_enum, conflicts_with = "check")]
        state: Option<StateArg>,
        /// For monitoring: one summary line and a Nagios exit code (0 OK, 1 WARNING, 2 CRITICAL,
        /// 3 UNKNOWN); admins see every link
        #[arg(long)]
        check: bool,
        /// Also show, for each link, the evidence that settled its provider at connect
        #[arg(long, short)]
        verbose: bool,
        /// With --check: how long to wait for the daemon before answering CRITICAL
        #[arg(long, value_name = "SECONDS", default_value_t = 10.0, requires = "check")]
        timeout: f64,
    },
    /// Ask the admins to turn the Microsoft integration on (repeating it updates the request)
    Request {
        /// Why you need it, shown to the admins
        #[arg(long, short, value_name = "TEXT")]
        message: Option<String>,
    },
    /// Admins: list pending requests
    Requests,
    /// Admins: turn the Microsoft integration on and grant pending requests
    Enable,
    /// Admins: turn the Microsoft integration off and suspend every link
    Disable,
    /// Admins: re-read the daemon's config file (same as SIGHUP)
    Reload,
    /// Link a mailbox (again after a password change or when status says needs_reauth)
    Connect {
        /// The mailbox address, e.g. alice@example.com
        email: String,
        /// Skip provider detection
        #[arg(long, value_enum)]
        provider: Option<ProviderArg>,
        /// Office365: sign in on another device with a code (RFC 8628)
        #[arg(long, conflicts_with = "paste")]
        device_code: bool,
        /// Office365: sign in in any browser, then paste the final URL back (remote machines)
        #[arg(long)]
        paste: bool,
        /// Office365: print the sign-in URL without trying to open a browser
        #[arg(long)]
        no_browser: bool,
        /// Exchange: the account name if it is not the address (DOMAIN\user or user@domain)
        #[arg(long, value_name = "NAME")]
        username: Option<String>,
        /// Exchange: the server (mail.example.com) or the full EWS URL; default: Autodiscover
        #[arg(long, value_name = "HOST|URL")]
        server: Option<String>,
        /// Exchange: go on to HOST (repeatable) when Autodiscover reaches it only through the
        /// plain-HTTP redirect or a DNS SRV record outside the address's domain (unauthenticated
        /// hops: interactively mslinkctl asks instead)
        #[arg(long, value_name = "HOST")]
        trust_server: Vec<String>,
        /// Exchange: read the password from the first line of standard input
        #[arg(long, conflicts_with = "keytab")]
        password_stdin: bool,
        /// Exchange (admins): sign a service account in by Kerberos with the key of its keytab
        /// FILE instead of a password; --username names the account if it holds several
        #[arg(long, value_name = "FILE")]
        keytab: Option<std::path::PathBuf>,
        /// Show the provider detection's evidence
        #[arg(long, short)]
        verbose: bool,
    },
    /// Find out whether an address is on Office365 or Exchange, and show the evidence
    Detect {
        /// The mailbox address
        email: String,
    },
    /// Check a link now and show the result (admins: `--all` re-checks many links)
    Check {
        /// The linked mailbox address
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        email: Option<String>,
        /// Admins: re-check every link now, with progress and a summary (exit 1 if any failed)
        #[arg(long)]
        all: bool,
        /// With --all: only the links in this state
        #[arg(long, value_enum, requires = "all")]
        state: Option<StateArg>,
    },
    /// Print a fresh Office365 access token for your link, alone on stdout (for mail tools:
    /// isync's PassCmd, msmtp's passwordeval, neomutt's *_oauth_refresh_command)
    Token {
        /// The linked mailbox address
        email: String,
        /// Which service the token is for (imap, pop, smtp and ews only when the daemon's
        /// `[office365] resources` lists them)
        #[arg(long = "for", visible_alias = "resource", value_enum, default_value = "graph")]
        resource: ResourceArg,
        /// Print the SASL initial response (base64) instead of the bare token
        #[arg(long, value_enum)]
        sasl: Option<sasl::Mechanism>,
    },
    /// Remove a link and its stored secrets
    Disconnect {
        /// The linked mailbox address
        email: String,
    },
    /// Print a shell completion script (for packagers)
    #[command(hide = true)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page, or write one per command into DIR (for packagers)
    #[command(hide = true)]
    Man {
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StateArg {
    Active,
    Degraded,
    #[value(name = "needs_reauth")]
    NeedsReauth,
    Blocked,
    Suspended,
}

impl From<StateArg> for LinkState {
    fn from(arg: StateArg) -> Self {
        match arg {
            StateArg::Active => LinkState::Active,
            StateArg::Degraded => LinkState::Degraded,
            StateArg::NeedsReauth => LinkState::NeedsReauth,
            StateArg::Blocked => LinkState::Blocked,
            StateArg::Suspended => LinkState::Suspended,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ResourceArg {
    /// Microsoft Graph
    Graph,
    /// Exchange Online IMAP
    Imap,
    /// Exchange Online POP
    Pop,
    /// Exchange Online SMTP submission
    Smtp,
    /// Exchange Web Services
    Ews,
}

impl From<ResourceArg> for TokenResource {
    fn from(resource: ResourceArg) -> TokenResource {
        match resource {
            ResourceArg::Graph => TokenResource::Graph,
            ResourceArg::Imap => TokenResource::Imap,
            ResourceArg::Pop => TokenResource::Pop,
            ResourceArg::Smtp => TokenResource::Smtp,
            ResourceArg::Ews => TokenResource::Ews,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProviderArg {
    /// Office365 / Exchange Online (sign in with Microsoft)
    Office365,
    /// On-premises Exchange Server (email and password)
    Exchange,
}

impl From<ProviderArg> for Provider {
    fn from(arg: ProviderArg) -> Self {
        match arg {
            ProviderArg::Office365 => Provider::Office365,
            ProviderArg::Exchange => Provider::Exchange,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let socket = cli.socket.clone().unwrap_or_else(client::default_socket);
    let verbose = matches!(cli.command, Command::Status { verbose: true, .. });
    if let Command::Status { all, check: true, timeout, .. } = cli.command {
        let timeout = std::time::Duration::from_secs_f64(timeout.clamp(0.1, 3600.0));
        return render::check(&socket, cli.user, all, timeout);
    }
    let command = match cli.command {
        Command::Connect {
            email,
            provider,
            device_code,
            paste,
            no_browser,
            username,
            server,
            trust_server,
            password_stdin,
            keytab,
            verbose,
        } => {
            let request = connect::Request {
                email,
                // Only an Exchange server takes a keytab.
                provider: provider
                    .map(Provider::from)
                    .or(keytab.is_some().then_some(Provider::Exchange)),
                flow: if device_code {
                    SignInFlow::DeviceCode
                } else if paste {
                    SignInFlow::Paste
                } else {
                    SignInFlow::Browser
                },
                username,
                server,
                trusted_servers: trust_server,
                password_stdin,
                keytab,
                open_browser: !no_browser,
                verbose,
            };
            // Ctrl-C closes the socket by ending the process; the daemon cancels the sign-in.
            let _ = ctrlc::set_handler(|| {
                eprintln!("\nmslinkctl: cancelled; nothing was linked");
                std::process::exit(i32::from(ErrorKind::Timeout.exit_code()));
            });
            let outcome = Client::connect(&socket)
                .and_then(|mut client| connect::run(&mut client, cli.user, request));
            return finish(outcome, cli.json, false);
        }
        Command::Status { all, state, .. } if all || state.is_some() => {
            // Every link can be a million: streamed, page by page, as the daemon reads them.
            let state = state.map(LinkState::from);
            let outcome = Client::connect(&socket).and_then(|mut client| {
                render::streamed_status(&mut client, cli.user, all, state, cli.json, verbose)
            });
            return match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    render::error(&error, cli.json);
                    ExitCode::from(error.exit_code())
                }
            };
        }
        Command::Status { .. } => CtlCommand::Status { all: false },
        Command::Request { message } => CtlCommand::Request { message },
        Command::Requests => CtlCommand::Requests,
        Command::Enable => CtlCommand::Enable,
        Command::Disable => CtlCommand::Disable,
        Command::Reload => CtlCommand::Reload,
        Command::Detect { email } => CtlCommand::Detect { email },
        Command::Check { all: true, state, .. } => {
            let command = CtlCommand::CheckAll { state: state.map(LinkState::from) };
            let outcome = Client::connect(&socket).and_then(|mut client| {
                // Many checks take as long as the slowest servers; progress shows it is alive.
                client.wait_without_timeout();
                client.call_with_progress(cli.user, command, |event| {
                    if let ConnectEvent::Step { message } = event {
                        eprintln!("{message}");
                    }
                    Ok(None)
                })
            });
            let failed = matches!(&outcome, Ok(DaemonReply::CheckAll(r)) if !r.failed.is_empty());
            let code = finish(outcome, cli.json, false);
            return if failed && code == ExitCode::SUCCESS { ExitCode::FAILURE } else { code };
        }
        Command::Check { email, .. } => CtlCommand::Check { email: email.unwrap_or_default() },
        Command::Token { email, resource, sasl } => {
            let command = CtlCommand::Token { email: email.clone(), resource: resource.into() };
            let outcome = Client::connect(&socket)
                .and_then(|mut client| client.call(cli.user, command))
                .map(|reply| match (reply, sasl) {
                    (DaemonReply::Token(mut token), Some(mechanism)) => {
                        token.access_token =
                            mechanism.initial_response(&email, &token.access_token);
                        DaemonReply::Token(token)
                    }
                    (reply, _) => reply,
                });
            return finish(outcome, cli.json, verbose);
        }
        Command::Disconnect { email } => CtlCommand::Disconnect { email },
        Command::Completions { shell } => return generate::completions(shell),
        Command::Man { out_dir } => return generate::man(out_dir.as_deref()),
    };
    let outcome = Client::connect(&socket).and_then(|mut client| client.call(cli.user, command));
    finish(outcome, cli.json, verbose)
}

/// Prints the outcome and turns it into the exit code.
fn finish(
    outcome: Result<mslink_proto::DaemonReply, CtlError>,
    json: bool,
    verbose: bool,
) -> ExitCode {
    match outcome {
        Ok(reply) => {
            render::reply(&reply, json, verbose);
            ExitCode::SUCCESS
        }
        Err(error) => {
            render::error(&error, json);
            ExitCode::from(error.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_after_the_command() {
        let cli = Cli::try_parse_from(["mslinkctl", "status", "--json", "--user", "svc"]).unwrap();
        assert!(cli.json);
        assert_eq!(cli.user.as_deref(), Some("svc"));
    }

    #[test]
    fn an_unknown_provider_is_a_usage_error() {
        let err = Cli::try_parse_from(["mslinkctl", "connect", "a@b.c", "--provider", "gmail"])
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn trust_server_may_be_given_more_than_once() {
        let cli = Cli::try_parse_from([
            "mslinkctl",
            "connect",
            "a@b.c",
            "--trust-server",
            "mail.x.test",
            "--trust-server",
            "mail.y.test",
        ])
        .unwrap();
        let Command::Connect { trust_server, .. } = cli.command else { panic!("not connect") };
        assert_eq!(trust_server, ["mail.x.test", "mail.y.test"]);
    }

    #[test]
    fn errors_keep_their_exit_codes() {
        assert_eq!(
            CtlError::Unreachable { socket: "/x".into(), reason: "refused".into() }.exit_code(),
            3
        );
        assert_eq!(CtlError::Impostor { socket: "/x".into(), uid: 4242 }.exit_code(), 3);
    }
}
