//! The mail port on Amazon SES v2: raw MIME through `SendEmail`, with a configuration set for
//! delivery, open and click events, and errors sorted by what they say about the message: not
//! taken (throttled, never sent), maybe taken (ambiguous) or refused for good.
//!
//! The SDK's own retries are off: it would retry a timeout or a 5xx, after which SES may have the
//! message twice. The sender retries what is known not to have been sent.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::config::retry::RetryConfig;
use aws_sdk_sesv2::config::timeout::TimeoutConfig;
use aws_sdk_sesv2::error::SdkError;
use aws_sdk_sesv2::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, MessageTag, RawMessage};
use voronka_domain::ports::{MailError, Mailer, OutgoingEmail};

use crate::CallCounter;

pub struct SesMailer {
    client: Client,
    configuration_set: Option<String>,
    calls: Arc<CallCounter>,
}

/// How long one `SendEmail` call may take before its outcome counts as unknown.
pub const SEND_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

impl SesMailer {
    pub fn new(config: &aws_config::SdkConfig, configuration_set: Option<String>) -> Self {
        Self::with_attempt_timeout(config, configuration_set, SEND_ATTEMPT_TIMEOUT)
    }

    pub fn with_attempt_timeout(
        config: &aws_config::SdkConfig,
        configuration_set: Option<String>,
        attempt_timeout: Duration,
    ) -> Self {
        let conf = aws_sdk_sesv2::config::Builder::from(config)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(attempt_timeout)
                    .build(),
            )
            .build();
        SesMailer { client: Client::from_conf(conf), configuration_set, calls: Arc::default() }
    }

    pub fn calls(&self) -> Arc<CallCounter> {
        self.calls.clone()
    }
}

/// SES tag values allow letters, digits, `_`, `-`, `.` and `@`.
fn tag_value(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@') { c } else { '_' })
        .take(256)
        .collect()
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError> {
        let raw = RawMessage::builder()
            .data(Blob::new(email.raw.clone()))
            .build()
            .map_err(|e| MailError::Rejected(e.to_string()))?;
        let tags = email
            .tags
            .iter()
            .map(|(name, value)| MessageTag::builder().name(tag_value(name)).value(tag_value(value)).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| MailError::Rejected(e.to_string()))?;
        self.calls.record("sesv2.SendEmail");
        let result = self
            .client
            .send_email()
            .from_email_address(&email.from)
            .destination(Destination::builder().to_addresses(&email.to).build())
            .content(EmailContent::builder().raw(raw).build())
            .set_email_tags(Some(tags))
            .set_configuration_set_name(self.configuration_set.clone())
            .send()
            .await;
        match result {
            Ok(output) => Ok(output.message_id().unwrap_or_default().to_string()),
            Err(error) => Err(classify(&error)),
        }
    }
}

/// Whether the error chain shows the connection was never made (refused, name not resolved,
/// connect timeout): then the request never left.
fn never_connected(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && matches!(io.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::AddrNotAvailable)
        {
            return true;
        }
        // hyper-util's connect failures (`client error (Connect)`): the connection was never made.
        if error.to_string() == "client error (Connect)" {
            return true;
        }
        current = error.source();
    }
    false
}

type SendEmailSdkError =
    SdkError<aws_sdk_sesv2::operation::send_email::SendEmailError, aws_sdk_sesv2::config::http::HttpResponse>;

/// Sorts a failed `SendEmail` by what it says about the message. Only an answer from SES that it
/// took nothing, or a failure before the request left, is "not sent"; a timeout, a dispatch
/// failure after connecting, an unreadable response or a 5xx may hide an accepted message.
fn classify(error: &SendEmailSdkError) -> MailError {
    let text = DisplayErrorContext(error).to_string();
    match error {
        SdkError::ConstructionFailure(_) => MailError::NotSent(text),
        SdkError::DispatchFailure(failure) if failure.is_user() || never_connected(error) => MailError::NotSent(text),
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            MailError::Ambiguous(text)
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            match service.err().code() {
                Some("TooManyRequestsException" | "LimitExceededException" | "Throttling" | "ThrottlingException") => {
                    MailError::Throttled(text)
                }
                // SES answered that it sends nothing now: nothing was taken.
                Some("SendingPausedException" | "AccountSuspendedException") => MailError::NotSent(text),
                _ if status >= 500 => MailError::Ambiguous(text),
                // Only a verdict on the message itself is final; any other refusal (access denied
                // after a deploy, an expired token, a missing configuration set, a mail-from
                // domain in a DNS blip) took nothing and is ours to fix: retried, then the DLQ
                // and its alarm, never a silent drop.
                Some("MessageRejected" | "BadRequestException") => MailError::Rejected(text),
                _ => MailError::NotSent(text),
            }
        }
        _ => MailError::Ambiguous(text),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    async fn mailer(endpoint: &str) -> SesMailer {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-west-1"))
            .credentials_provider(aws_sdk_sesv2::config::Credentials::new("test", "test", None, None, "test"))
            .endpoint_url(endpoint)
            .load()
            .await;
        SesMailer::with_attempt_timeout(&config, None, Duration::from_millis(500))
    }

    fn email() -> OutgoingEmail {
        OutgoingEmail {
            from: "news@shop.example".into(),
            to: "anna@example.com".into(),
            raw: b"Subject: hello\r\n\r\nhello\r\n".to_vec(),
            tags: vec![],
        }
    }

    /// A one-port stand-in for SES that reads each request and answers `answer` (or never answers);
    /// returns its endpoint and how many requests reached it.
    fn fake_ses(answer: Option<String>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut buffer = [0u8; 65536];
                if stream.read(&mut buffer).unwrap_or(0) > 0 {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
                match &answer {
                    Some(answer) => {
                        let _ = stream.write_all(answer.as_bytes());
                    }
                    // Holds the connection open without a word, past the client's timeout.
                    None => std::thread::sleep(Duration::from_secs(5)),
                }
            }
        });
        (endpoint, requests)
    }

    fn response(status: &str, error_type: &str, message: &str) -> String {
        let body = format!("{{\"message\":\"{message}\"}}");
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nx-amzn-ErrorType: {error_type}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn a_refused_connection_is_not_sent_and_lost_answers_are_ambiguous_and_never_retried_by_the_sdk() {
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let refused = mailer(&format!("http://{closed}")).await.send(&email()).await.unwrap_err();
        assert!(matches!(refused, MailError::NotSent(_)), "{refused:?}");

        let (silent, requests) = fake_ses(None);
        let timed_out = mailer(&silent).await.send(&email()).await.unwrap_err();
        assert!(matches!(timed_out, MailError::Ambiguous(_)), "{timed_out:?}");
        assert_eq!(requests.load(Ordering::SeqCst), 1, "the SDK did not try again");

        let (failing, requests) = fake_ses(Some(response("500 Internal Server Error", "InternalFailure", "oops")));
        let failed = mailer(&failing).await.send(&email()).await.unwrap_err();
        assert!(matches!(failed, MailError::Ambiguous(_)), "{failed:?}");
        assert_eq!(requests.load(Ordering::SeqCst), 1, "the SDK did not try again");

        let (throttling, requests) =
            fake_ses(Some(response("429 Too Many Requests", "TooManyRequestsException", "slow down")));
        let throttled = mailer(&throttling).await.send(&email()).await.unwrap_err();
        assert!(matches!(throttled, MailError::Throttled(_)), "{throttled:?}");
        assert_eq!(requests.load(Ordering::SeqCst), 1);

        let (rejecting, _) =
            fake_ses(Some(response("400 Bad Request", "MessageRejected", "Email address is not verified")));
        let rejected = mailer(&rejecting).await.send(&email()).await.unwrap_err();
        assert!(matches!(rejected, MailError::Rejected(_)), "{rejected:?}");

        let (denying, _) = fake_ses(Some(response("403 Forbidden", "AccessDeniedException", "not authorized")));
        let denied = mailer(&denying).await.send(&email()).await.unwrap_err();
        assert!(matches!(denied, MailError::NotSent(_)), "an account problem is retried, not a verdict: {denied:?}");
    }
}
