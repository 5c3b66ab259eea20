//! Outbound mail (issue 12): invites, email verification and password reset links.
//!
//! - [`Mailer`] is the one interface: deliver one message. [`Smtp`] implements it with `lettre`
//!   over tokio and the server's rustls (aws-lc-rs provider), from `AGENTIDP_SMTP_URL`
//!   (`smtp://host:port` plain, `smtp://host?tls=required` STARTTLS, `smtps://user:pass@host`
//!   implicit TLS, as lettre's `from_url` reads it) and `AGENTIDP_MAIL_FROM`. Every SMTP
//!   command and the connection have [`COMMAND_TIMEOUT`]; a whole delivery [`DELIVERY_TIMEOUT`].
//! - Requests never wait for SMTP: they put the message in a [`MailQueue`] (bounded,
//!   [`QUEUE_CAPACITY`]), which a task drains ([`MailQueue::start`], at most
//!   [`CONCURRENT_DELIVERIES`] at once). A full queue refuses the message at once
//!   ([`MailError::QueueFull`], answered 503 with `Retry-After`): a mail is never dropped
//!   silently. A delivery that fails is logged (kind and error, never the recipient's link) and
//!   counted (`agentidp_mail_total{kind, outcome}`); it is not retried: the person asks again.
//! - A message's body carries a credential (the link): it is a [`Secret`], never logged.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::{Semaphore, mpsc};

use crate::model::Secret;

/// The most messages waiting for delivery; more are refused ([`MailError::QueueFull`]).
pub const QUEUE_CAPACITY: usize = 1000;
/// Deliveries in flight at once.
pub const CONCURRENT_DELIVERIES: usize = 4;
/// Connecting and each SMTP command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// One whole delivery (connect, TLS, EHLO, AUTH, the message, QUIT).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// One message: plain text to one address.
#[derive(Debug, Clone)]
pub struct Mail {
    /// What it is (`invite`, `verify_email`, `password_reset`, `ownership_transfer`): logs and
    /// metrics name it, never the body.
    pub kind: &'static str,
    pub to: String,
    pub subject: String,
    /// Holds the link: never logged.
    pub body: Secret,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MailError {
    /// The queue holds [`QUEUE_CAPACITY`] messages: nothing was queued.
    #[error("the mail queue is full; try again in a minute")]
    QueueFull,
    /// The delivery task has stopped (the server is shutting down).
    #[error("mail is not being delivered (the server is stopping)")]
    Stopped,
    /// The message could not be built (a bad address).
    #[error("the message could not be built: {0}")]
    Message(String),
    /// The SMTP server refused or did not answer in time.
    #[error("delivery failed: {0}")]
    Delivery(String),
}

/// Whether `addr` (already a valid address by `people::normalize_email`) is one SMTP can
/// deliver to (lettre's RFC 5321 mailbox syntax): checked before anything is written, so a
/// queued message never fails on its address.
pub fn deliverable(addr: &str) -> bool {
    addr.parse::<lettre::Address>().is_ok()
}

/// Delivers one message, within its own time bounds.
#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    async fn deliver(&self, mail: &Mail) -> Result<(), MailError>;
}

/// SMTP through lettre.
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Smtp {
    /// From `AGENTIDP_SMTP_URL` and `AGENTIDP_MAIL_FROM`; `hello` is the EHLO name (the public
    /// URL's host). Errors name the variable, never the URL (it may hold a password).
    pub fn new(url: &Secret, from: &str, hello: &str) -> Result<Self, String> {
        let from: Mailbox = from.parse().map_err(|e| {
            format!("AGENTIDP_MAIL_FROM {from:?} is not a mail address (name <addr@host>): {e}")
        })?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
            .map_err(|e| {
                format!(
                    "AGENTIDP_SMTP_URL is not an SMTP URL lettre understands (smtp://host:port, \
                     smtps://user:pass@host, smtp://host?tls=required): {e}"
                )
            })?
            .timeout(Some(COMMAND_TIMEOUT))
            .hello_name(ClientId::Domain(hello.to_owned()))
            .build();
        Ok(Self { transport, from })
    }
}

#[async_trait]
impl Mailer for Smtp {
    async fn deliver(&self, mail: &Mail) -> Result<(), MailError> {
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|e: lettre::address::AddressError| MailError::Message(e.to_string()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.expose().to_owned())
            .map_err(|e| MailError::Message(e.to_string()))?;
        match tokio::time::timeout(DELIVERY_TIMEOUT, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(MailError::Delivery(e.to_string())),
            Err(_) => Err(MailError::Delivery(format!(
                "no answer within {}s",
                DELIVERY_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// The bounded queue in front of a [`Mailer`].
pub struct MailQueue {
    tx: mpsc::Sender<Mail>,
}

/// A place in the queue, taken before the message exists (so a caller can refuse before it
/// changes anything, or answer alike whether or not it ends up sending).
pub struct MailSlot(mpsc::OwnedPermit<Mail>);

impl MailSlot {
    pub fn send(self, mail: Mail) {
        self.0.send(mail);
    }
}

impl MailQueue {
    /// The queue, and the task that drains it (spawned on the current runtime; it ends when
    /// the queue is dropped, after delivering what it holds).
    pub fn start(mailer: Arc<dyn Mailer>, capacity: usize) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Mail>(capacity.max(1));
        let task = tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(CONCURRENT_DELIVERIES));
            let mut running = tokio::task::JoinSet::new();
            while let Some(mail) = rx.recv().await {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                let mailer = mailer.clone();
                running.spawn(async move {
                    let outcome = match mailer.deliver(&mail).await {
                        Ok(()) => {
                            tracing::info!(event = "mail.sent", kind = mail.kind, "mail sent");
                            "sent"
                        }
                        Err(e) => {
                            tracing::warn!(event = "mail.failed", kind = mail.kind, error = %e, "mail delivery failed");
                            "failed"
                        }
                    };
                    metrics::counter!("agentidp_mail_total", "kind" => mail.kind, "outcome" => outcome)
                        .increment(1);
                    drop(permit);
                });
                while running.try_join_next().is_some() {}
            }
            while running.join_next().await.is_some() {}
        });
        (Self { tx }, task)
    }

    /// Takes a place in the queue, or says why not (never waits).
    pub fn reserve(&self) -> Result<MailSlot, MailError> {
        self.tx
            .clone()
            .try_reserve_owned()
            .map(MailSlot)
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    metrics::counter!("agentidp_mail_total", "kind" => "any", "outcome" => "queue_full")
                        .increment(1);
                    MailError::QueueFull
                }
                mpsc::error::TrySendError::Closed(_) => MailError::Stopped,
            })
    }

    /// Queues `mail` (never waits).
    pub fn submit(&self, mail: Mail) -> Result<(), MailError> {
        self.reserve()?.send(mail);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Holds every delivery until told to go, and records them.
    struct Held {
        gate: Semaphore,
        sent: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Mailer for Held {
        async fn deliver(&self, mail: &Mail) -> Result<(), MailError> {
            let _ = self.gate.acquire().await.map(|p| p.forget());
            self.sent.lock().unwrap().push(mail.to.clone());
            Ok(())
        }
    }

    fn mail(to: &str) -> Mail {
        Mail {
            kind: "test",
            to: to.into(),
            subject: "s".into(),
            body: Secret::new("https://x/verify-email/secret"),
        }
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_nothing_is_dropped() {
        let held = Arc::new(Held {
            gate: Semaphore::new(0),
            sent: Mutex::new(Vec::new()),
        });
        let (q, task) = MailQueue::start(held.clone(), 2);
        // Four are taken by the deliveries in flight (blocked), two wait in the queue; the
        // worker may hold one more between the queue and a delivery slot.
        let mut accepted = 0;
        for i in 0..20 {
            if q.submit(mail(&format!("a{i}@x.example"))).is_ok() {
                accepted += 1;
            }
            tokio::task::yield_now().await;
        }
        assert!(accepted < 20, "a bounded queue refuses");
        assert_eq!(q.submit(mail("late@x.example")), Err(MailError::QueueFull));
        held.gate.add_permits(100);
        drop(q);
        task.await.unwrap();
        assert_eq!(
            held.sent.lock().unwrap().len(),
            accepted,
            "every accepted one is delivered"
        );
    }

    #[test]
    fn addresses_are_checked_before_queueing() {
        assert!(deliverable("ada@example.com"));
        assert!(!deliverable("ada@@example.com"));
        assert!(!deliverable("ada"));
    }

    #[test]
    fn bodies_are_not_in_debug_output() {
        assert!(!format!("{:?}", mail("a@x.example")).contains("secret"));
    }

    #[test]
    fn settings_are_checked_without_echoing_the_url() {
        let bad = Secret::new("ftp://user:hunter2@host");
        let e = Smtp::new(&bad, "a@x.example", "x.example").err().unwrap();
        assert!(
            e.contains("AGENTIDP_SMTP_URL") && !e.contains("hunter2"),
            "{e}"
        );
        let ok = Secret::new("smtp://127.0.0.1:2525");
        assert!(Smtp::new(&ok, "not an address", "x").is_err());
        assert!(Smtp::new(&ok, "Agent IdP <idp@x.example>", "x.example").is_ok());
        assert!(
            Smtp::new(
                &Secret::new("smtps://u:p@mail.example"),
                "idp@x.example",
                "x"
            )
            .is_ok()
        );
        assert!(
            Smtp::new(
                &Secret::new("smtp://mail.example?tls=required"),
                "idp@x.example",
                "x"
            )
            .is_ok()
        );
    }
}
