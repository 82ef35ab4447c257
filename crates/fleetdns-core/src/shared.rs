//! One copy of values that hundreds of thousands of exports repeat: a fleet's services share a
//! handful of port lists, and its endpoints a handful of zone names. [`Shared::get`] gives the
//! copy already held for an equal value, or keeps the new one; copies nobody else holds any
//! more are dropped as the set grows, so it stays about the size of what is in use.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// A set of shared values of type `T`, for a `static`.
pub struct Shared<T: ?Sized> {
    held: Mutex<Held<T>>,
}

struct Held<T: ?Sized> {
    values: Option<HashSet<Arc<T>>>,
    /// How many values the set may hold before the unused ones are dropped.
    limit: usize,
}

/// The fewest values a set holds before it looks for unused ones.
const FIRST_LIMIT: usize = 64;

impl<T: ?Sized + Eq + Hash> Shared<T> {
    pub const fn new() -> Self {
        Self {
            held: Mutex::new(Held {
                values: None,
                limit: FIRST_LIMIT,
            }),
        }
    }

    /// The shared copy of `value`; `make` makes one when none is held.
    pub fn get<Q>(&self, value: &Q, make: impl FnOnce(&Q) -> Arc<T>) -> Arc<T>
    where
        Arc<T>: Borrow<Q>,
        Q: ?Sized + Eq + Hash,
    {
        // A poisoned lock only means another thread panicked while holding it; the set is
        // still a set of valid values.
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let held = &mut *held;
        let values = held.values.get_or_insert_with(HashSet::new);
        if let Some(found) = values.get(value) {
            return found.clone();
        }
        if values.len() >= held.limit {
            values.retain(|v| Arc::strong_count(v) > 1);
            values.shrink_to_fit();
            held.limit = (values.len() * 2).max(FIRST_LIMIT);
        }
        let made = make(value);
        values.insert(made.clone());
        made
    }
}

impl<T: ?Sized + Eq + Hash> Default for Shared<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_one_copy() {
        let shared: Shared<str> = Shared::new();
        let a = shared.get("zone-a", |v| Arc::from(v));
        let b = shared.get("zone-a", |v| Arc::from(v));
        let c = shared.get("zone-b", |v| Arc::from(v));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!((&*a, &*c), ("zone-a", "zone-b"));
    }

    #[test]
    fn values_nobody_holds_are_dropped_as_the_set_grows() {
        let shared: Shared<str> = Shared::new();
        let kept = shared.get("kept", |v| Arc::from(v));
        for i in 0..10 * FIRST_LIMIT {
            drop(shared.get(format!("gone-{i}").as_str(), |v| Arc::from(v)));
        }
        let held = shared.held.lock().unwrap();
        let values = held.values.as_ref().unwrap();
        assert!(values.len() <= FIRST_LIMIT + 1, "{}", values.len());
        assert!(values.contains("kept"));
        drop(held);
        assert!(Arc::ptr_eq(&kept, &shared.get("kept", |v| Arc::from(v))));
    }
}
