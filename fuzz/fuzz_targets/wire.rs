//! The wire decoder, for every message type a Kora process reads from NATS. A message that
//! decodes must encode again and decode to the same message.
#![no_main]

use kora_model::wire::{
    self, Admission, Cancel, NodeEvents, NodeResult, NodeTask, Operation, OperationReply, Resume,
    RunEvent, RunRequest, Versioned,
};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trip<T: Serialize + DeserializeOwned + Versioned + PartialEq + std::fmt::Debug>(
    data: &[u8],
) {
    let Ok(msg) = wire::decode::<T>(data) else {
        return;
    };
    let bytes = wire::encode(&msg).expect("a decoded message encodes");
    let again = wire::decode::<T>(&bytes).expect("an encoded message decodes");
    assert_eq!(again, msg, "{} changes on a round trip", T::WHAT);
}

fuzz_target!(|data: &[u8]| {
    round_trip::<RunRequest>(data);
    round_trip::<NodeTask>(data);
    round_trip::<NodeResult>(data);
    round_trip::<RunEvent>(data);
    round_trip::<NodeEvents>(data);
    round_trip::<Resume>(data);
    round_trip::<Cancel>(data);
    round_trip::<Operation>(data);
    round_trip::<OperationReply>(data);
    round_trip::<Admission>(data);
});
