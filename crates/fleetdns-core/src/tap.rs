//! A tap on what the sources read: per cluster, the Services a consumer keeps (the
//! ExternalDNS-compatible sync keeps the annotated ones, exported or not) with their
//! EndpointSlices. Sources hand every complete set they read to [`ObjectsTap::set`]; the
//! consumer watches [`ObjectsTap::subscribe`]. The registry is not involved: these objects are
//! not exports.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::ClusterId;
use crate::kube::{ClusterObjects, SERVICE_NAME_LABEL, Service};

/// The kept objects of every tapped cluster.
pub type TappedObjects = BTreeMap<ClusterId, Arc<ClusterObjects>>;

/// Cheap to clone; every clone feeds the same channel.
#[derive(Clone)]
pub struct ObjectsTap {
    tx: Arc<watch::Sender<TappedObjects>>,
    keep: fn(&Service) -> bool,
    /// Clusters a source will deliver but has not yet: until they have, the set is incomplete.
    waiting: Arc<Mutex<BTreeSet<ClusterId>>>,
}

impl fmt::Debug for ObjectsTap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectsTap")
            .field("clusters", &self.tx.borrow().len())
            .finish()
    }
}

impl ObjectsTap {
    /// A tap keeping the Services `keep` selects (and the EndpointSlices labelled for them).
    pub fn new(keep: fn(&Service) -> bool) -> Self {
        Self {
            tx: Arc::new(watch::channel(TappedObjects::new()).0),
            keep,
            waiting: Arc::default(),
        }
    }

    /// Announces that a source will deliver `cluster` (a Kubernetes source before its first
    /// list): until it does, [`ObjectsTap::is_complete`] is false, so a consumer never takes a
    /// cluster not yet read for a cluster without objects.
    pub fn expect(&self, cluster: &ClusterId) {
        if !self.tx.borrow().contains_key(cluster) {
            self.lock_waiting().insert(cluster.clone());
        }
    }

    /// Every announced cluster has delivered a set.
    pub fn is_complete(&self) -> bool {
        self.lock_waiting().is_empty()
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, BTreeSet<ClusterId>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces `cluster`'s kept objects with those of its complete set `objects`. Consumers
    /// are woken only when the kept objects changed.
    pub fn set(&self, cluster: &ClusterId, objects: &ClusterObjects) {
        let services: Vec<Service> = objects
            .services
            .iter()
            .filter(|s| (self.keep)(s))
            .cloned()
            .collect();
        let keys: BTreeSet<(&str, &str)> = services
            .iter()
            .filter_map(|s| {
                Some((
                    s.metadata.namespace.as_deref().unwrap_or("default"),
                    s.metadata.name.as_deref()?,
                ))
            })
            .collect();
        let endpoint_slices = objects
            .endpoint_slices
            .iter()
            .filter(|e| {
                let ns = e.metadata.namespace.as_deref().unwrap_or("default");
                e.metadata
                    .labels
                    .get(SERVICE_NAME_LABEL)
                    .is_some_and(|svc| keys.contains(&(ns, svc.as_str())))
            })
            .cloned()
            .collect();
        let kept = ClusterObjects {
            services,
            endpoint_slices,
            service_exports: Vec::new(),
        };
        self.lock_waiting().remove(cluster);
        self.tx.send_if_modified(|all| {
            let same = all.get(cluster).is_some_and(|old| {
                old.services == kept.services && old.endpoint_slices == kept.endpoint_slices
            });
            if same {
                return false;
            }
            all.insert(cluster.clone(), Arc::new(kept));
            true
        });
    }

    /// Forgets `cluster`: its source stopped (a removed folder, a reload without it).
    pub fn remove(&self, cluster: &ClusterId) {
        self.lock_waiting().remove(cluster);
        self.tx
            .send_if_modified(|all| all.remove(cluster).is_some());
    }

    pub fn subscribe(&self) -> watch::Receiver<TappedObjects> {
        self.tx.subscribe()
    }

    /// The kept objects now.
    pub fn current(&self) -> TappedObjects {
        self.tx.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::{EndpointSlice, ObjectMeta};

    fn svc(name: &str, annotated: bool) -> Service {
        let mut s = Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            ..Service::default()
        };
        if annotated {
            s.metadata.annotations.insert("keep", "yes");
        }
        s
    }

    fn slice(svc: &str) -> EndpointSlice {
        let mut e = EndpointSlice::default();
        e.metadata.namespace = Some("ns".into());
        e.metadata.labels.insert(SERVICE_NAME_LABEL, svc);
        e
    }

    #[test]
    fn keeps_selected_services_and_their_slices_and_wakes_only_on_change() {
        let tap = ObjectsTap::new(|s| s.metadata.annotations.contains_key("keep"));
        let mut rx = tap.subscribe();
        let cluster = ClusterId::new("c1").unwrap();
        tap.expect(&cluster);
        assert!(!tap.is_complete(), "announced, not delivered");
        let objects = ClusterObjects {
            services: vec![svc("a", true), svc("b", false)],
            endpoint_slices: vec![slice("a"), slice("b")],
            service_exports: Vec::new(),
        };
        tap.set(&cluster, &objects);
        assert!(tap.is_complete());
        assert!(rx.has_changed().unwrap());
        let seen = rx.borrow_and_update().clone();
        let kept = &seen[&cluster];
        assert_eq!(kept.services.len(), 1);
        assert_eq!(kept.services[0].metadata.name.as_deref(), Some("a"));
        assert_eq!(kept.endpoint_slices.len(), 1);
        tap.set(&cluster, &objects);
        assert!(!rx.has_changed().unwrap(), "same set: no wake-up");
        tap.remove(&cluster);
        assert!(rx.has_changed().unwrap());
        assert!(rx.borrow_and_update().is_empty());
    }
}
