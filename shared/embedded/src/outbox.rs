//! The embedded mail service: every message becomes a real `.eml` file (RFC 5322, all headers) in
//! the outbox folder, which `voronka serve` lists and renders.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use mail_parser::MessageParser;
use voronka_domain::ports::{Clock, MailCopies, MailCopy, MailError, Mailer, OutgoingEmail, PersonMarkers};

pub struct OutboxMailer {
    dir: PathBuf,
    clock: Arc<dyn Clock>,
}

impl OutboxMailer {
    pub fn new(dir: PathBuf, clock: Arc<dyn Clock>) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(OutboxMailer { dir, clock })
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError> {
        let now = self.clock.now();
        let send_tag = email.tags.iter().find(|(k, _)| k == "send").map(|(_, v)| v.clone()).unwrap_or_default();
        let message_id = format!("{}-{send_tag}", now.as_millisecond());
        let path = self.dir.join(format!("{message_id}.eml"));
        let temporary = self.dir.join(format!(".{message_id}.eml.tmp"));
        let raw = email.raw.clone();
        tokio::task::spawn_blocking(move || {
            // Written aside, then renamed: a reader never sees half a message.
            std::fs::write(&temporary, &raw)?;
            std::fs::rename(&temporary, &path)
        })
        .await
        // Written aside and renamed: a failure leaves no message behind, so it was not sent.
        .map_err(|e| MailError::NotSent(e.to_string()))?
        .map_err(|e| MailError::NotSent(format!("cannot write to the outbox: {e}")))?;
        Ok(message_id)
    }
}

/// The outbox's messages, newest first (file names start with the time they were written).
fn message_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    files.reverse();
    Ok(files)
}

/// The message when it is about the person: their marker in its headers as written or in any
/// decoded header or body part (a quoted-printable body can split an address over two lines).
fn copy_about(path: &Path, person: &PersonMarkers) -> Option<MailCopy> {
    let raw = std::fs::read(path).ok()?;
    let message = MessageParser::default().parse(&raw);
    let mut texts = vec![String::from_utf8_lossy(&raw).into_owned()];
    let mut addressed = false;
    if let Some(message) = &message {
        texts.extend(message.subject().map(str::to_string));
        for address in message.to().into_iter().chain(message.cc()).flat_map(|to| to.iter()) {
            texts.extend(address.name().map(str::to_string));
            addressed |= address.address().is_some_and(|a| person.is_address(a));
        }
        texts.extend((0..message.text_body_count()).filter_map(|i| message.body_text(i).map(|t| t.into_owned())));
        texts.extend((0..message.html_body_count()).filter_map(|i| message.body_html(i).map(|t| t.into_owned())));
    }
    if !addressed && !texts.iter().any(|text| person.found_in(text)) {
        return None;
    }
    Some(MailCopy {
        name: path.file_name()?.to_string_lossy().into_owned(),
        to: message
            .as_ref()
            .and_then(|m| m.to())
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap_or_default()
            .to_string(),
        subject: message.as_ref().and_then(|m| m.subject()).unwrap_or_default().to_string(),
        date: message.as_ref().and_then(|m| m.date()).map(|d| d.to_rfc3339()).unwrap_or_default(),
    })
}

#[async_trait]
impl MailCopies for OutboxMailer {
    /// Reads the messages one at a time (each file once, none held beyond its check).
    async fn copies_about(&self, person: &PersonMarkers, limit: usize) -> Result<(Vec<MailCopy>, bool), String> {
        if person.is_empty() {
            return Ok((Vec::new(), false));
        }
        let (dir, person) = (self.dir.clone(), person.clone());
        tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            for path in message_files(&dir).map_err(|e| format!("cannot list the outbox: {e}"))? {
                if let Some(copy) = copy_about(&path, &person) {
                    if found.len() == limit {
                        return Ok((found, true));
                    }
                    found.push(copy);
                }
            }
            Ok((found, false))
        })
        .await
        .map_err(|e| e.to_string())?
    }

    async fn erase_copies_about(&self, person: &PersonMarkers) -> Result<usize, String> {
        if person.is_empty() {
            return Ok(0);
        }
        let (dir, person) = (self.dir.clone(), person.clone());
        tokio::task::spawn_blocking(move || {
            let mut erased = 0;
            for path in message_files(&dir).map_err(|e| format!("cannot list the outbox: {e}"))? {
                if copy_about(&path, &person).is_some() {
                    match std::fs::remove_file(&path) {
                        Ok(()) => erased += 1,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(format!("cannot delete an outbox message: {e}")),
                    }
                }
            }
            Ok(erased)
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use voronka_domain::ports::SystemClock;

    fn message(send: &str, to: &str, body: &str) -> OutgoingEmail {
        let raw = format!(
            "From: shop@example.com\r\nTo: {to}\r\nSubject: Hello\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{body}\r\n"
        );
        OutgoingEmail {
            from: "shop@example.com".into(),
            to: to.into(),
            raw: raw.into_bytes(),
            tags: vec![("send".into(), send.into())],
        }
    }

    #[tokio::test]
    async fn a_persons_copies_are_found_by_any_marker_after_decoding_and_only_theirs_are_erased() {
        let dir = std::env::temp_dir().join(format!("voronka-outbox-copies-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let outbox = OutboxMailer::new(dir.clone(), Arc::new(SystemClock)).unwrap();
        let person = PersonMarkers::new(["Anna.K@Example.com", "+79990001122", "c_anna_contact"]);
        // To the person; to the sales inbox about them, the address split by a soft line break
        // and its `@` encoded; and someone else's.
        outbox.send(&message("m1", "anna.k@example.com", "Welcome!")).await.unwrap();
        outbox.send(&message("m2", "sales@shop.example", "New lead: anna.k=\r\n=40example.com")).await.unwrap();
        outbox.send(&message("m3", "boris@example.com", "Welcome, Boris!")).await.unwrap();
        // Someone whose address holds hers: not hers.
        outbox.send(&message("m4", "joanna.k@example.com", "Welcome, Joanna.k@example.com.au!")).await.unwrap();
        let (found, more) = outbox.copies_about(&person, 10).await.unwrap();
        assert!(!more);
        let mut to: Vec<&str> = found.iter().map(|copy| copy.to.as_str()).collect();
        to.sort();
        assert_eq!(to, ["anna.k@example.com", "sales@shop.example"], "{found:?}");
        let (first, more) = outbox.copies_about(&person, 1).await.unwrap();
        assert!(first.len() == 1 && more, "a capped read says there is more");

        assert_eq!(outbox.erase_copies_about(&person).await.unwrap(), 2);
        assert_eq!(outbox.erase_copies_about(&person).await.unwrap(), 0, "repeating it finds nothing");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(left.len(), 2, "Boris's and Joanna's messages stay");
        assert_eq!(outbox.erase_copies_about(&PersonMarkers::default()).await.unwrap(), 0, "no marker, no match");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
