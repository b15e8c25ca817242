//! The domain model.

pub mod attribution;
pub mod cart;
pub mod consent;
pub mod contact;
pub mod contact_events;
pub mod email;
pub mod event;
pub mod follow_ups;
pub mod payload;
pub mod phone;
pub mod send;
pub mod submission;

pub use attribution::Touch;
pub use cart::{Cart, CartItem, CartStatus};
pub use consent::{Channel, Consent, ConsentReceipt, ConsentStatus, DoubleOptIn};
pub use contact::{Contact, IssuedCode, LifecycleStage, OrderSummary, SuppressionReason};
pub use contact_events::ScoreMilestone;
pub use email::{EmailAddress, EmailError};
pub use event::{ContactRef, Event, EventSource, EventTrust, EventType};
pub use follow_ups::{ConfirmationLimit, SubmissionFollowUps};
pub use payload::{CartAction, CartChange, CartLine, DueWorkPayload, MailFacts, PayloadError, Purchase};
pub use phone::{PhoneError, PhoneNumber};
pub use send::{Priority, Recipient, SendClass, SendOrigin, SendRequest};
pub use submission::AcceptedSubmission;
