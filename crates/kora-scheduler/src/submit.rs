//! Publishing a run request: the one way runs enter Kora (`kora submit`, triggers, the
//! gateway, child runs use the same message).

use kora_broker::{Broker, Outbound};
use kora_model::msg_id;
use kora_model::subjects::Subjects;
use kora_model::wire::{self, RunRequest};

use crate::Error;

/// Publishes `req` on the run subject. The same `run_id` published twice is one run: the
/// message id makes a second publish within the broker's window a no-op, and the coordinator
/// ignores a run it already has.
pub async fn submit(
    broker: &dyn Broker,
    subjects: &Subjects,
    req: &RunRequest,
) -> Result<(), Error> {
    let payload = wire::encode(req)?;
    broker
        .publish(Outbound::new(subjects.run_submit(), payload).msg_id(msg_id::run(&req.run_id)))
        .await?;
    Ok(())
}
