//! `ItemState`: the life cycle of one queued file ID.

use std::fmt;
use std::str::FromStr;

/// Where a queued file ID stands. Stored as the lower-case string of `as_str`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    /// Waiting for a run.
    Pending,
    /// Held by a run (see the lease columns); may be on its way to the service.
    InFlight,
    /// The service deleted the file; its certificate is in the archive.
    Deleted,
    /// The service had no such file when asked (deleted earlier, or never existed).
    AlreadyGone,
    /// Never sent, or refused by the service for good: not a UUID, or a 400 for this ID.
    Rejected,
    /// Gave up for this run (see `last_error`); the next run tries again.
    Failed,
}

/// A string that is not one of the states.
#[derive(Debug, thiserror::Error)]
#[error("unknown item state `{0}`")]
pub struct UnknownState(String);

impl ItemState {
    /// Every state, in life-cycle order.
    pub const ALL: [ItemState; 6] = [
        ItemState::Pending,
        ItemState::InFlight,
        ItemState::Deleted,
        ItemState::AlreadyGone,
        ItemState::Rejected,
        ItemState::Failed,
    ];

    /// The stable string stored in the `items.state` column.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Pending => "pending",
            ItemState::InFlight => "in_flight",
            ItemState::Deleted => "deleted",
            ItemState::AlreadyGone => "already_gone",
            ItemState::Rejected => "rejected",
            ItemState::Failed => "failed",
        }
    }

    /// Whether nothing more will happen to the item.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ItemState::Deleted | ItemState::AlreadyGone | ItemState::Rejected
        )
    }
}

impl FromStr for ItemState {
    type Err = UnknownState;

    fn from_str(text: &str) -> Result<ItemState, UnknownState> {
        ItemState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| UnknownState(text.to_string()))
    }
}

impl fmt::Display for ItemState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips_through_its_string() {
        for state in ItemState::ALL {
            assert_eq!(state.as_str().parse::<ItemState>().unwrap(), state);
        }
        assert!("done".parse::<ItemState>().is_err());
    }
}
