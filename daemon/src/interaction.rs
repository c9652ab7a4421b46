//! The two-way channel between a long command (`connect`) and the user at the ctl.
//!
//! The connection task owns the socket. While a sign-in flow runs, it forwards the flow's
//! [`ConnectEvent`]s to the client as `Progress` frames, forwards pasted redirect URLs and yes/no
//! answers from the client to the flow, and cancels the flow when the client hangs up (Ctrl-C).
//!
//! ```text
//!   flow ──tell(event)──▶ events ──▶ connection task ──Progress frame──▶ mslinkctl
//!   flow ◀──pasted()──── pasted ◀── connection task ◀──Paste frame────── mslinkctl
//!   flow ──confirm(q)──▶ events ──▶ connection task ──Progress(Confirm)─▶ mslinkctl
//!        ◀────────────── answers ◀─ connection task ◀──Answer frame───── mslinkctl
//!   flow ──password(s)─▶ events ──▶ connection task ──Progress(Password)▶ mslinkctl
//!        ◀────────────── passwords ◀ connection task ◀─Password frame─── mslinkctl
//!   flow ◀──cancelled()─ token  ◀── connection task ◀──EOF (Ctrl-C)──── mslinkctl
//! ```

use mslink_proto::{ConnectEvent, Sensitive};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a question waits for the person at the ctl.
pub const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// The flow's side.
#[derive(Debug)]
pub struct Interaction {
    events: mpsc::Sender<ConnectEvent>,
    pasted: mpsc::Receiver<Sensitive>,
    answers: mpsc::Receiver<bool>,
    passwords: mpsc::Receiver<Sensitive>,
    /// Hosts the user said yes to in this conversation: asked once, however often a flow
    /// comes back to them (a second Autodiscover pass with the password).
    trusted: Vec<String>,
    cancel: CancellationToken,
}

/// The connection task's side.
#[derive(Debug)]
pub struct InteractionPeer {
    pub events: mpsc::Receiver<ConnectEvent>,
    pub pasted: mpsc::Sender<Sensitive>,
    pub answers: mpsc::Sender<bool>,
    pub passwords: mpsc::Sender<Sensitive>,
    pub cancel: CancellationToken,
}

impl Interaction {
    /// A connected pair.
    pub fn pair() -> (Interaction, InteractionPeer) {
        let (event_tx, event_rx) = mpsc::channel(16);
        let (paste_tx, paste_rx) = mpsc::channel(1);
        let (answer_tx, answer_rx) = mpsc::channel(1);
        let (password_tx, password_rx) = mpsc::channel(1);
        let cancel = CancellationToken::new();
        (
            Interaction {
                events: event_tx,
                pasted: paste_rx,
                answers: answer_rx,
                passwords: password_rx,
                trusted: Vec::new(),
                cancel: cancel.clone(),
            },
            InteractionPeer {
                events: event_rx,
                pasted: paste_tx,
                answers: answer_tx,
                passwords: password_tx,
                cancel,
            },
        )
    }

    /// An interaction with nobody on the other end (background work, tests): events are
    /// dropped and nothing is ever pasted.
    pub fn detached() -> Interaction {
        Interaction::pair().0
    }

    /// Tells the user something. A user who has gone away is not an error here: the flow notices
    /// through [`Interaction::cancelled`].
    pub async fn tell(&self, event: ConnectEvent) {
        let _ = self.events.send(event).await;
    }

    /// Announces a step.
    pub async fn step(&self, message: impl Into<String>) {
        self.tell(ConnectEvent::Step { message: message.into() }).await;
    }

    /// Waits for the user to paste a redirect URL; `None` if they hang up first.
    pub async fn pasted(&mut self) -> Option<Sensitive> {
        tokio::select! {
            () = self.cancel.cancelled() => None,
            url = self.pasted.recv() => url,
        }
    }

    /// Puts a yes/no `question` about `host` to the user and waits for the answer, at most
    /// [`ANSWER_TIMEOUT`]; `None` if they hang up or do not answer in time (the flow ends as
    /// cancelled, and its connection slot is freed). Only for a ctl that said it is interactive:
    /// nobody else answers.
    /// A host the user trusted once in this conversation is not asked about again.
    pub async fn confirm(&mut self, question: String, host: String) -> Option<bool> {
        if self.trusted.contains(&host) {
            return Some(true);
        }
        // An answer left over from an earlier question must not answer this one.
        while self.answers.try_recv().is_ok() {}
        self.tell(ConnectEvent::Confirm { question, host: host.clone() }).await;
        let answer = tokio::select! {
            () = self.cancel.cancelled() => None,
            () = tokio::time::sleep(ANSWER_TIMEOUT) => None,
            answer = self.answers.recv() => answer,
        };
        if answer == Some(true) {
            self.trusted.push(host);
        }
        answer
    }

    /// Asks the user for the mailbox password `server` wants, and waits for it, at most
    /// [`ANSWER_TIMEOUT`]; `None` if they hang up or do not answer in time. Only for a ctl that
    /// said it is interactive.
    pub async fn password(&mut self, server: String) -> Option<Sensitive> {
        while self.passwords.try_recv().is_ok() {}
        self.tell(ConnectEvent::Password { server }).await;
        tokio::select! {
            () = self.cancel.cancelled() => None,
            () = tokio::time::sleep(ANSWER_TIMEOUT) => None,
            password = self.passwords.recv() => password,
        }
    }

    /// Resolves when the user cancels (closes the connection).
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    /// The token, for flows that hand it to their own tasks.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_question_nobody_answers_ends_after_the_timeout() {
        let (mut flow, mut peer) = Interaction::pair();
        let asked = tokio::spawn(async move { flow.confirm("trust it?".into(), "h".into()).await });
        assert!(matches!(peer.events.recv().await, Some(ConnectEvent::Confirm { .. })));
        // The peer stays connected and silent.
        assert_eq!(asked.await.unwrap(), None);
        assert!(!peer.cancel.is_cancelled());
    }
}
