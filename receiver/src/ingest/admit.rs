//! The receiver's one [`Admission`] (sluice_common::admission): the decision state machine for
//! authenticated and refused objects, with its record budget and retry backoff, behind one mutex
//! beside the store, and the clock it is driven with. The receive thread consults it when an
//! object's first bytes are offered for authentication (pipeline), the verifier thread when an
//! object is complete (commit); both take the store lock first, then this one.

use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use sluice_common::admission::{Admission, Counters, StoreFacts};
use sluice_common::bundle::BundleId;

use crate::store::{Store, StoreError};

/// The admission state and its time origin.
pub(super) struct Admit {
    state: Mutex<Admission>,
    epoch: Instant,
}

impl Admit {
    pub(super) fn new(now: Instant) -> Self {
        Admit {
            state: Mutex::new(Admission::new(0)),
            epoch: now,
        }
    }

    /// Milliseconds since the pipeline started: admission's clock (monotonic).
    pub(super) fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// The state. Take the store lock first when holding both.
    pub(super) fn lock(&self) -> MutexGuard<'_, Admission> {
        // A panic while deciding would be a bug; the state is still a consistent value.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn counters(&self) -> Counters {
        self.lock().counters().clone()
    }
}

/// What the store knows about a signed bundle id and its signed channel.
pub(super) fn store_facts(
    store: &Store,
    id: &BundleId,
    channel: &str,
) -> Result<StoreFacts, StoreError> {
    Ok(StoreFacts {
        already_accepted: store.is_accepted(id),
        last_sequence: store.high_water_mark(channel)?,
    })
}
