//! `mslinkctl connect`: gather what the provider needs, send one command, and follow the daemon's
//! progress: open the browser, show the device code with a countdown, read the pasted redirect
//! URL, ask for the mailbox password when the Exchange server asks for one (never from a flag; a
//! server that takes Entra ID sign-in never asks), or ask the user to confirm a server that
//! Autodiscover reached only through an unauthenticated hop.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mslink_proto::{
    ClientFrame, ConnectArgs, ConnectEvent, CtlCommand, DaemonReply, ErrorKind, MAX_KEYTAB_BYTES,
    Provider, Sensitive, SignInFlow, WireError,
};

use crate::client::{Client, CtlError};

/// What the user asked for on the command line.
#[derive(Debug)]
pub struct Request {
    pub email: String,
    pub provider: Option<Provider>,
    pub flow: SignInFlow,
    pub username: Option<String>,
    pub server: Option<String>,
    /// `--trust-server`: hosts outside the address's domain the user vouches for in advance.
    pub trusted_servers: Vec<String>,
    pub password_stdin: bool,
    /// `--keytab`: a service account's keytab file, read here as the caller.
    pub keytab: Option<std::path::PathBuf>,
    pub open_browser: bool,
    pub verbose: bool,
}

/// Runs the whole `connect` conversation.
pub fn run(
    client: &mut Client,
    act_as: Option<String>,
    mut request: Request,
) -> Result<DaemonReply, CtlError> {
    // Ask nothing of the user (no password, no sign-in) if linking is not allowed now.
    if let DaemonReply::Status(status) =
        client.call(act_as.clone(), CtlCommand::Status { all: false })?
        && !status.integration.enabled
    {
        return Err(CtlError::Daemon(
            WireError::new(
                ErrorKind::NotAllowed,
                "the Microsoft integration is not enabled for this organisation",
            )
            .with_hint("ask an admin to turn it on: run `mslinkctl request`"),
        ));
    }
    if request.provider.is_none() {
        request.provider = Some(settle_provider(client, &request)?);
    }
    // On a terminal the daemon asks when the server wants a password; a script pipes it in.
    let password = match request.provider {
        Some(Provider::Exchange) if request.password_stdin => Some(read_password(&request)?),
        _ => None,
    };
    let keytab = request.keytab.as_deref().map(read_keytab).transpose()?;
    let args = ConnectArgs {
        email: request.email.clone(),
        provider: request.provider,
        flow: request.flow,
        username: request.username.clone(),
        server: request.server.clone(),
        password,
        keytab,
        trusted_servers: request.trusted_servers.clone(),
        // Questions are answered on the terminal; with --password-stdin (or no terminal) the
        // daemon refuses instead of asking, and says which flag to add.
        interactive: std::io::stdin().is_terminal(),
    };
    client.wait_without_timeout();
    let mut countdown: Option<Countdown> = None;
    let result = client.call_with_progress(act_as, CtlCommand::Connect(args), |event| {
        if let Some(countdown) = countdown.take() {
            countdown.stop();
        }
        match event {
            ConnectEvent::Step { message } => eprintln!("… {message}"),
            ConnectEvent::OpenBrowser { url } => {
                eprintln!("Sign in with Microsoft in your browser:\n\n  {url}\n");
                if request.open_browser {
                    open_in_browser(url);
                }
                eprintln!("Waiting for the sign-in to finish (Ctrl-C cancels)…");
            }
            ConnectEvent::PasteRedirect { url } => {
                eprintln!("Open this URL in a browser on any machine and sign in:\n\n  {url}\n");
                eprintln!(
                    "The browser then ends on a page that cannot load (http://localhost/…).\n\
                     Copy that page's full address from the address bar and paste it here:"
                );
                let pasted = read_line()?;
                return Ok(Some(ClientFrame::Paste {
                    redirect_url: Sensitive::new(pasted.trim()),
                }));
            }
            ConnectEvent::DeviceCode { verification_uri, user_code, expires_at } => {
                eprintln!(
                    "On any device, open {verification_uri} and enter the code:\n\n  {user_code}\n"
                );
                countdown = Some(Countdown::start(*expires_at));
            }
            ConnectEvent::Confirm { question, .. } => {
                return Ok(Some(ClientFrame::Answer { yes: confirm(question)? }));
            }
            ConnectEvent::Password { server } => {
                eprintln!("{server} asks for the mailbox password.");
                return Ok(Some(ClientFrame::Password { password: read_password(&request)? }));
            }
        }
        Ok(None)
    });
    if let Some(countdown) = countdown {
        countdown.stop();
    }
    result
}

/// Runs detection, and asks the user when it cannot tell (SPEC §6). No credential has been
/// read yet, so none can be sent before the provider is settled.
fn settle_provider(client: &mut Client, request: &Request) -> Result<Provider, CtlError> {
    eprintln!("… Finding out where {} is hosted", request.email);
    let found = match client.call(None, CtlCommand::Detect { email: request.email.clone() })? {
        DaemonReply::Detect(found) => found,
        _ => return Err(CtlError::Protocol("mslinkd answered detect with another reply".into())),
    };
    if request.verbose {
        eprint!("{}", crate::render::evidence_text(&found));
    }
    if let Some(provider) = found.provider {
        eprintln!("… {} is on {}", request.email, provider_name(provider));
        return Ok(provider);
    }
    let why = if found.conflicting { "the evidence conflicts" } else { "no probe was decisive" };
    if !std::io::stdin().is_terminal() {
        return Err(CtlError::Daemon(
            WireError::new(
                ErrorKind::NotAllowed,
                format!(
                    "cannot tell whether {} is on Office365 or Exchange ({why})",
                    request.email
                ),
            )
            .with_hint("say which with --provider office365 or --provider exchange"),
        ));
    }
    eprintln!("mslinkctl cannot tell where {} is hosted ({why}).", request.email);
    loop {
        eprint!("Is it [1] Office365 / Exchange Online, or [2] an Exchange server? ");
        let _ = std::io::stderr().flush();
        match read_line()?.trim() {
            "1" | "office365" | "Office365" => return Ok(Provider::Office365),
            "2" | "exchange" | "Exchange" => return Ok(Provider::Exchange),
            _ => eprintln!("Type 1 or 2."),
        }
    }
}

/// Asks `question` on the terminal; only a typed yes is a yes.
fn confirm(question: &str) -> Result<bool, CtlError> {
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    eprintln!("{question}");
    loop {
        eprint!("Continue? [y/N] ");
        let _ = std::io::stderr().flush();
        match read_line()?.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => return Ok(true),
            "" | "n" | "no" => return Ok(false),
            _ => eprintln!("Type y or n."),
        }
    }
}

fn provider_name(provider: Provider) -> &'static str {
    match provider {
        Provider::Office365 => "Office365 / Exchange Online",
        Provider::Exchange => "an Exchange server",
    }
}

/// The keytab's bytes, base64, as the daemon takes them: read as the caller, so only someone
/// who may read the file can link with it.
fn read_keytab(path: &std::path::Path) -> Result<Sensitive, CtlError> {
    use base64::Engine as _;
    use std::io::Read as _;
    let cannot = |e: std::io::Error| {
        usage(
            &format!("cannot read the keytab {}: {e}", path.display()),
            "name a keytab file you can read (`klist -k FILE` lists its keys)",
        )
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(cannot)?
        .take(MAX_KEYTAB_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() > MAX_KEYTAB_BYTES {
        return Err(usage(
            &format!("{} is larger than any keytab ({MAX_KEYTAB_BYTES} bytes)", path.display()),
            "export only the service account's keys (`ktpass`, or `kadmin ktadd -k FILE ACCOUNT`)",
        ));
    }
    Ok(Sensitive::new(base64::engine::general_purpose::STANDARD.encode(bytes)))
}

fn read_password(request: &Request) -> Result<Sensitive, CtlError> {
    let password = if request.password_stdin {
        read_line()?.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        if !std::io::stdin().is_terminal() {
            return Err(usage(
                "no terminal to ask for the password on",
                "pipe it in with --password-stdin",
            ));
        }
        let account = request.username.as_deref().unwrap_or(&request.email);
        rpassword::prompt_password(format!("Password for {account}: "))
            .map_err(|e| usage(&format!("cannot read the password: {e}"), "use --password-stdin"))?
    };
    if password.is_empty() {
        return Err(usage("the password is empty", "type the mailbox password"));
    }
    Ok(Sensitive::new(password))
}

fn read_line() -> Result<String, CtlError> {
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) => Err(usage("standard input ended before a line was read", "provide the input")),
        Ok(_) => Ok(line),
        Err(e) => Err(usage(&format!("cannot read standard input: {e}"), "provide the input")),
    }
}

fn usage(message: &str, hint: &str) -> CtlError {
    CtlError::Daemon(WireError::new(ErrorKind::Usage, message).with_hint(hint))
}

/// Opens `url` with `xdg-open` when there is a display; printing it is always enough.
fn open_in_browser(url: &str) {
    let display =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if display {
        let _ = std::process::Command::new("xdg-open")
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}

/// A live "expires in MM:SS" line on a terminal while the user signs in elsewhere.
struct Countdown {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Countdown {
    fn start(expires_at: i64) -> Countdown {
        let done = Arc::new(AtomicBool::new(false));
        let thread = std::io::stderr().is_terminal().then(|| {
            let done = done.clone();
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64);
                    let left = (expires_at - now).max(0);
                    eprint!(
                        "\r  waiting for you to sign in; the code expires in {:02}:{:02} ",
                        left / 60,
                        left % 60
                    );
                    let _ = std::io::stderr().flush();
                    std::thread::sleep(Duration::from_secs(1));
                }
                eprintln!();
            })
        });
        if thread.is_none() {
            eprintln!("Waiting for you to sign in (Ctrl-C cancels)…");
        }
        Countdown { done, thread }
    }

    fn stop(mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
