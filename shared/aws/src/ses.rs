//! The mail port on Amazon SES v2: raw MIME through `SendEmail`, with a configuration set for
//! delivery, open and click events, and errors sorted into retryable and permanent.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_sesv2::Client;
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

impl SesMailer {
    pub fn new(config: &aws_config::SdkConfig, configuration_set: Option<String>) -> Self {
        SesMailer { client: Client::new(config), configuration_set, calls: Arc::default() }
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
            Err(error) => {
                let code = error.as_service_error().and_then(|e| e.code()).map(str::to_string);
                let status = error.raw_response().map(|r| r.status().as_u16());
                let text = DisplayErrorContext(&error).to_string();
                Err(match code.as_deref() {
                    Some(
                        "TooManyRequestsException" | "LimitExceededException" | "Throttling" | "ThrottlingException",
                    ) => MailError::Throttled(text),
                    Some(
                        "SendingPausedException"
                        | "AccountSuspendedException"
                        | "InternalFailure"
                        | "ServiceUnavailable",
                    ) => MailError::Transient(text),
                    Some(
                        "MessageRejected"
                        | "MailFromDomainNotVerifiedException"
                        | "BadRequestException"
                        | "NotFoundException"
                        | "InvalidParameterValue",
                    ) => MailError::Rejected(text),
                    _ if status.is_some_and(|s| s >= 500) || status.is_none() => MailError::Transient(text),
                    _ => MailError::Rejected(text),
                })
            }
        }
    }
}
