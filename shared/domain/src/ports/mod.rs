//! Ports: the small traits adapters implement. The domain speaks only to these.

pub mod clock;
pub mod faulty;
pub mod mailer;
pub mod metered;
pub mod queue;
pub mod store;

pub use clock::{Clock, IdGenerator, RandomIds, SeededIds, SimulatedClock, SystemClock};
pub use faulty::{Fault, FaultCounts, FaultPlan, FaultPlanError, Faults, Faulty, Killed};
pub use mailer::{MailCopies, MailCopy, MailError, Mailer, NoMailCopies, OutgoingEmail, PersonMarkers};
pub use metered::{Driver, Function, Meter, Metered, Usage, UsageRow};
pub use queue::{
    BatchHandler, Delivery, MAX_DELAY, MAX_SEND_BATCH, OutgoingMessage, Queue, QueueError, QueueName, ReceivedMessage,
    SendOutcome, check_receive, check_send_batch, consume_batch, send_all,
};
pub use store::{
    Condition, Cursor, Index, Item, Key, Page, Query, SortKeyRange, Store, StoreError, TransactOp, UpdateAction,
    query_all,
};
