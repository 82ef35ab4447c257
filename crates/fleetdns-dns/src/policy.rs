//! SPEC §3: which clusters answer a ClusterSetIP service. One decision, used by the compiler
//! (to build the answer) and by `explain` (to say why), so the two never disagree.

use std::net::IpAddr;

use fleetdns_core::{ClusterId, Export};

use crate::config::AnswerPolicy;
use crate::table::Selection;

/// Why the chosen clusters were chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// `policy = "vip"` and the service has a VIP: that one address (SPEC §4, LH-13).
    Vip,
    /// The local cluster has a ready endpoint: its ClusterIP only (local-first, LH-14).
    LocalReady,
    /// Every healthy cluster with a ready endpoint (rotated, or one per answer for round-robin).
    Ready,
    /// No healthy cluster has a ready endpoint: every healthy exporting cluster (SPEC §3).
    NoneReady,
}

/// The outcome of the answer policy for one service.
#[derive(Debug, Clone)]
pub struct Choice<'a> {
    pub basis: Basis,
    /// The clusters whose ClusterIPs are answered (empty with a VIP).
    pub chosen: Vec<&'a Export>,
    pub selection: Selection,
    pub vip: Option<IpAddr>,
}

/// Applies `policy` to the live (healthy, type-matching) exports of one ClusterSetIP service.
pub fn choose<'a>(
    policy: AnswerPolicy,
    local: Option<&ClusterId>,
    live: &[&'a Export],
    vip: Option<IpAddr>,
) -> Choice<'a> {
    if let (AnswerPolicy::Vip, Some(vip)) = (policy, vip) {
        return Choice {
            basis: Basis::Vip,
            chosen: Vec::new(),
            selection: Selection::Fixed,
            vip: Some(vip),
        };
    }
    let ready: Vec<&Export> = live
        .iter()
        .copied()
        .filter(|e| e.has_ready_endpoint())
        .collect();
    let local_ready = ready.iter().find(|e| Some(&e.cluster) == local).copied();
    let (pool, basis) = if ready.is_empty() {
        (live.to_vec(), Basis::NoneReady)
    } else {
        (ready, Basis::Ready)
    };
    let (chosen, selection, basis) = match (policy, local_ready) {
        (AnswerPolicy::LocalFirst | AnswerPolicy::Vip, Some(own)) => {
            (vec![own], Selection::Fixed, Basis::LocalReady)
        }
        (AnswerPolicy::LocalFirst | AnswerPolicy::All | AnswerPolicy::Vip, _) => {
            (pool, Selection::Rotate, basis)
        }
        (AnswerPolicy::RoundRobin, _) => (pool, Selection::One, basis),
    };
    Choice {
        basis,
        chosen,
        selection,
        vip: None,
    }
}
