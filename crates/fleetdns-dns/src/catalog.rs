//! The zone catalog: every zone served here, authoritative (the answer table) and forward (the
//! forwarder), and where a name goes. The longest zone holding the name wins; an authoritative
//! zone wins a tie, and a name that exists in an authoritative zone is always answered there.

use crate::forward::Forwarder;
use crate::respond::Destination;
use crate::table::{AnswerTable, Lookup};

/// The zones of one moment: the installed table (`None` before the first snapshot) and the
/// forward zones (`None` when none are configured). Borrowed, built per query for free. `F` is
/// how the forwarder is held: `Arc<Forwarder>` by the servers (a forwarded query's task keeps
/// it), `Forwarder` by `explain`.
#[derive(Debug)]
pub struct Catalog<'t, F: AsRef<Forwarder> = Forwarder> {
    pub table: Option<&'t AnswerTable>,
    pub forwarder: Option<&'t F>,
}

impl<F: AsRef<Forwarder>> Clone for Catalog<'_, F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F: AsRef<Forwarder>> Copy for Catalog<'_, F> {}

/// Where a name goes.
#[derive(Debug)]
pub enum Route<'t, F> {
    /// Answered here, from the table.
    Local(Destination<'t>),
    /// Forward zone `zone` of `forwarder` takes it.
    Forward { forwarder: &'t F, zone: usize },
}

impl<'t, F: AsRef<Forwarder>> Catalog<'t, F> {
    /// Routes `name` (lower-case wire form).
    #[inline]
    pub fn route(&self, name: &[u8]) -> Route<'t, F> {
        // The forward zone for the name, if it is longer than `auth_len` (the authoritative zone).
        let forward_zone = |auth_len: usize| {
            let forwarder = self.forwarder?;
            let (zone, len) = forwarder.as_ref().find(name)?;
            (len > auth_len).then_some(Route::Forward { forwarder, zone })
        };
        let Some(table) = self.table else {
            // Forward zones do not wait for the first snapshot.
            return forward_zone(0).unwrap_or(Route::Local(Destination::NoTable));
        };
        match table.lookup(name) {
            Lookup::NotOurs => {
                forward_zone(0).unwrap_or(Route::Local(Destination::Table(table, Lookup::NotOurs)))
            }
            Lookup::NxDomain(zone) => forward_zone(zone.apex.len()).unwrap_or(Route::Local(
                Destination::Table(table, Lookup::NxDomain(zone)),
            )),
            found @ Lookup::Node(..) => Route::Local(Destination::Table(table, found)),
        }
    }
}
