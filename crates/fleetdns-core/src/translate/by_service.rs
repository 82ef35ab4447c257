//! A cluster's exports kept by service, so that a change translates only the services whose
//! objects it touched: one edited Service among 50 000 costs one translation, not 50 000.
//! Sources group their objects by the service they belong to ([`ServiceName`]) and hand
//! [`ExportsByService::update`] the names a change touched; the result is what
//! [`translate_cluster`](super::translate_cluster) gives for the same objects.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Invalid, ns_of, translate_export};
use crate::kube::{
    ClusterObjects, EndpointSlice, ObjectMeta, SERVICE_NAME_LABEL, Service, ServiceExport, SmolStr,
};
use crate::{ClusterId, Export, ExportSet, ServiceKey, Timestamp};

/// The service an object belongs to, as its objects spell it: namespace (`default` when
/// absent) and name (empty when absent). Not validated: a bad name is the translation's
/// refusal to report.
pub type ServiceName = (SmolStr, SmolStr);

/// The service a Service or a ServiceExport belongs to: its own name.
pub fn named(meta: &ObjectMeta) -> ServiceName {
    (ns_of(meta).into(), meta.name.clone().unwrap_or_default())
}

/// The service an EndpointSlice belongs to: its `kubernetes.io/service-name` label; `None`
/// without one (such a slice belongs to no service).
pub fn slice_owner(slice: &EndpointSlice) -> Option<ServiceName> {
    let service = slice.metadata.labels.get(SERVICE_NAME_LABEL)?;
    Some((ns_of(&slice.metadata).into(), service.clone()))
}

/// Objects grouped by the service they belong to, borrowed: one pass over a set of objects,
/// then one hash probe per service, where finding a service's objects by scanning the set
/// would cost the whole set per service. Objects are added in the order a whole translation
/// reads them; what [`ObjectsByService::take`] gives for a name is what scanning would find.
#[derive(Debug, Default)]
pub struct ObjectsByService<'a> {
    by: rustc_hash::FxHashMap<ServiceName, ServiceObjects<'a>>,
}

impl<'a> ObjectsByService<'a> {
    /// Adds a set of objects after those added before: a later Service or ServiceExport of a
    /// name replaces an earlier one, slices are kept in order.
    pub fn add(&mut self, objects: &'a ClusterObjects) {
        self.by.reserve(objects.service_exports.len());
        for service in &objects.services {
            self.group(named(&service.metadata)).service = Some(service);
        }
        for slice in &objects.endpoint_slices {
            if let Some(owner) = slice_owner(slice) {
                self.group(owner).slices.push(slice);
            }
        }
        for export in &objects.service_exports {
            self.group(named(&export.metadata)).export = Some(export);
        }
    }

    // Names are `SmolStr`s: a key of short labels is copied inline, a long one shared.
    fn group(&mut self, name: ServiceName) -> &mut ServiceObjects<'a> {
        self.by.entry(name).or_default()
    }

    /// `name`'s objects, taken out of the group (each service is translated once).
    pub fn take(&mut self, name: &ServiceName) -> ServiceObjects<'a> {
        self.by.remove(name).unwrap_or_default()
    }
}

/// One service's objects as a source holds them: what its translation reads. With several
/// Services or ServiceExports of one name (manifest files can hold that), the last wins, as in
/// [`translate_cluster`](super::translate_cluster).
#[derive(Debug, Default)]
pub struct ServiceObjects<'a> {
    pub service: Option<&'a Service>,
    pub slices: Vec<&'a EndpointSlice>,
    pub export: Option<&'a ServiceExport>,
}

/// What an update translated: the refusals and warnings of the services it translated again,
/// and how many of the cluster's exports changed.
#[derive(Debug, Default)]
pub struct Retranslated {
    pub invalid: Vec<(String, Invalid)>,
    pub warnings: Vec<String>,
    /// Exports added, removed or changed (refusals do not count).
    pub changed: usize,
}

/// A cluster's exports and refusals, by service.
#[derive(Debug, Default, Clone)]
pub struct ExportsByService {
    /// Shared with the registry once published: an update copies the map only if the
    /// registry still holds this version.
    exports: Arc<ExportSet>,
    invalid: BTreeMap<ServiceName, (String, Invalid)>,
}

impl ExportsByService {
    /// Translates the services in `touched` again from the objects `objects` finds for each;
    /// every other service keeps its export (the same `Arc`), and an export that comes out
    /// equal keeps its old `Arc` too, so a snapshot diff sees only real changes.
    pub fn update<'o, 't>(
        &mut self,
        cluster: &ClusterId,
        touched: impl IntoIterator<Item = &'t ServiceName>,
        mut objects: impl FnMut(&ServiceName) -> ServiceObjects<'o>,
        first_seen: &mut dyn FnMut(&str) -> Timestamp,
    ) -> Retranslated {
        let mut out = Retranslated::default();
        let mut touched = touched.into_iter().peekable();
        if touched.peek().is_none() {
            return out;
        }
        let exports = Arc::make_mut(&mut self.exports);
        // A first translation (every service of a cluster) collects its exports and builds
        // the map at once (sorted, which `touched`'s order nearly is): no key to look up, no
        // map searched per service.
        let mut first: Option<Vec<(ServiceKey, Arc<Export>)>> = exports.is_empty().then(Vec::new);
        let mut inserted = 0;
        for name in touched {
            let old = match first {
                Some(_) => None,
                None => ServiceKey::new(&name.0, &name.1)
                    .ok()
                    .and_then(|k| exports.remove(&k)),
            };
            self.invalid.remove(name);
            let found = objects(name);
            let Some(export) = found.export else {
                out.changed += usize::from(old.is_some());
                continue;
            };
            match translate_export(
                cluster,
                export,
                found.service,
                &found.slices,
                first_seen,
                &mut out.warnings,
            ) {
                Ok(exp) => {
                    let exp = match old {
                        Some(old) if *old == exp => old,
                        _ => {
                            out.changed += 1;
                            Arc::new(exp)
                        }
                    };
                    match &mut first {
                        Some(first) => first.push((exp.key.clone(), exp)),
                        None => {
                            exports.insert(exp.key.clone(), exp);
                        }
                    }
                    inserted += 1;
                }
                Err(refused) => {
                    out.changed += usize::from(old.is_some());
                    out.invalid.push(refused.clone());
                    self.invalid.insert(name.clone(), refused);
                }
            }
        }
        // Inserted one by one in key order, a map's nodes end half full; built from sorted
        // entries at once, full (at 50 000 exports: 3 MB instead of 6). Worth it when most of
        // the map was inserted (a first translation), cheap next to the translation itself.
        if let Some(first) = first {
            *exports = first.into_iter().collect();
        } else if inserted * 2 > exports.len() {
            *exports = std::mem::take(exports).into_iter().collect();
        }
        out
    }

    /// The cluster's exports, by service: the map to publish.
    pub fn exports(&self) -> &Arc<ExportSet> {
        &self.exports
    }

    /// Every refused ServiceExport: its `namespace/name` label and why.
    pub fn invalid(&self) -> impl Iterator<Item = &(String, Invalid)> {
        self.invalid.values()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use super::*;
    use crate::kube::{
        ClusterObjects, EndpointConditions, ServicePort, ServiceSpec, SliceEndpoint,
    };
    use crate::translate::translate_cluster;

    /// A small deterministic generator (xorshift64*): the test needs no `rand`.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
        }
    }

    fn meta(ns: Option<&str>, name: Option<&str>, created: bool) -> ObjectMeta {
        ObjectMeta {
            name: name.map(Into::into),
            namespace: ns.map(Into::into),
            creation_timestamp: created.then(|| "2026-01-01T00:00:00Z".into()),
            ..ObjectMeta::default()
        }
    }

    /// A random object of one of a few services (some names invalid, some objects unnamed),
    /// so duplicates, refusals and slices of missing services all occur.
    enum Obj {
        Service(Service),
        Slice(EndpointSlice),
        Export(ServiceExport),
    }

    fn random_object(rng: &mut Rng) -> Obj {
        let ns = [None, Some("default"), Some("shop"), Some("Bad_NS")][rng.below(4) as usize];
        let name = [
            None,
            Some("a"),
            Some("b"),
            Some("c"),
            Some("d"),
            Some("UPPER"),
        ][rng.below(6) as usize];
        match rng.below(3) {
            0 => {
                let ty = [None, Some("ClusterIP"), Some("ExternalName"), Some("Weird")]
                    [rng.below(4) as usize];
                let ip =
                    [Some("10.0.0.1"), Some("None"), Some("nonsense"), None][rng.below(4) as usize];
                Obj::Service(Service {
                    metadata: meta(ns, name, true),
                    spec: ServiceSpec {
                        type_: ty.map(Into::into),
                        cluster_ip: ip.map(Into::into),
                        ports: vec![ServicePort {
                            name: Some("http".into()),
                            port: [80, 80, 0, 70_000][rng.below(4) as usize],
                            protocol: Some("TCP".into()),
                            ..ServicePort::default()
                        }],
                        ..ServiceSpec::default()
                    },
                    ..Service::default()
                })
            }
            1 => {
                let mut m = meta(ns, Some("slice"), true);
                if let Some(svc) = name {
                    m.labels.insert(SERVICE_NAME_LABEL, svc);
                }
                let ip = format!("10.1.{}.{}", rng.below(3), rng.below(3) + 1);
                Obj::Slice(EndpointSlice {
                    metadata: m,
                    address_type: "IPv4".into(),
                    endpoints: vec![SliceEndpoint {
                        addresses: vec![ip.into(), "127.0.0.1".into()],
                        conditions: EndpointConditions {
                            ready: [None, Some(true), Some(false)][rng.below(3) as usize],
                        },
                        ..SliceEndpoint::default()
                    }],
                })
            }
            _ => Obj::Export(ServiceExport {
                metadata: meta(ns, name, rng.below(2) == 0),
            }),
        }
    }

    fn owner(obj: &Obj) -> Option<ServiceName> {
        match obj {
            Obj::Service(s) => Some(named(&s.metadata)),
            Obj::Export(e) => Some(named(&e.metadata)),
            Obj::Slice(s) => slice_owner(s),
        }
    }

    fn objects_of<'a>(name: &ServiceName, objects: &'a [Obj]) -> ServiceObjects<'a> {
        let mut found = ServiceObjects::default();
        for obj in objects {
            if owner(obj).as_ref() != Some(name) {
                continue;
            }
            match obj {
                Obj::Service(s) => found.service = Some(s),
                Obj::Slice(s) => found.slices.push(s),
                Obj::Export(e) => found.export = Some(e),
            }
        }
        found
    }

    /// A service's objects in one set, found by looking at every object.
    fn scan<'a>(name: &ServiceName, set: &'a ClusterObjects) -> ServiceObjects<'a> {
        ServiceObjects {
            service: set.services.iter().rfind(|s| named(&s.metadata) == *name),
            slices: set
                .endpoint_slices
                .iter()
                .filter(|s| slice_owner(s).as_ref() == Some(name))
                .collect(),
            export: set
                .service_exports
                .iter()
                .rfind(|e| named(&e.metadata) == *name),
        }
    }

    fn whole(objects: &[Obj]) -> ClusterObjects {
        let mut all = ClusterObjects::default();
        for obj in objects {
            match obj {
                Obj::Service(s) => all.services.push(s.clone()),
                Obj::Slice(s) => all.endpoint_slices.push(s.clone()),
                Obj::Export(e) => all.service_exports.push(e.clone()),
            }
        }
        all
    }

    #[test]
    fn updating_the_touched_services_gives_what_a_whole_translation_gives() {
        let cluster = ClusterId::new("c1").unwrap();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut objects: Vec<Obj> = Vec::new();
        let mut by_service = ExportsByService::default();
        let mut seen: HashMap<String, Timestamp> = HashMap::new();
        let start = Timestamp::now();
        let mut exporting = 0;
        for step in 0..600 {
            // Add, replace or remove a few objects; note whose service they were and are.
            let mut touched = BTreeSet::new();
            for _ in 0..=rng.below(3) {
                let at = rng.below(objects.len() as u64 + 1) as usize;
                let new = random_object(&mut rng);
                touched.extend(owner(&new));
                match rng.below(3) {
                    0 if at < objects.len() => {
                        touched.extend(owner(&objects[at]));
                        objects[at] = new;
                    }
                    1 if at < objects.len() => {
                        touched.extend(owner(&objects.remove(at)));
                    }
                    _ => objects.insert(at.min(objects.len()), new),
                }
            }
            let mut first_seen = |label: &str| *seen.entry(label.to_owned()).or_insert(start);
            let done = by_service.update(
                &cluster,
                &touched,
                |name| objects_of(name, &objects),
                &mut first_seen,
            );
            let expected = translate_cluster(&cluster, &whole(&objects), &mut first_seen);
            assert_eq!(
                **by_service.exports(),
                expected.exports,
                "step {step}: exports differ"
            );
            let labels = |it: &mut dyn Iterator<Item = &(String, Invalid)>| {
                let mut v: Vec<String> = it.map(|(l, why)| format!("{l}: {why}")).collect();
                v.sort();
                v
            };
            // translate_cluster reports each refused ServiceExport object, duplicates too.
            let mut want = labels(&mut expected.invalid.iter());
            want.dedup();
            let mut have = labels(&mut by_service.invalid());
            have.dedup();
            assert_eq!(have, want, "step {step}: refusals differ");
            assert!(done.changed <= touched.len());
            exporting += usize::from(!expected.exports.is_empty());
        }
        assert!(
            exporting > 100,
            "the generator must export something: {exporting}"
        );
    }

    #[test]
    fn objects_belong_to_the_service_their_namespace_and_name_or_label_say() {
        let name: ServiceName = ("default".into(), "web".into());
        let is_named = |m: &ObjectMeta| named(m) == name;
        assert!(
            is_named(&meta(None, Some("web"), true)),
            "no namespace is default"
        );
        assert!(is_named(&meta(Some("default"), Some("web"), true)));
        assert!(!is_named(&meta(Some("shop"), Some("web"), true)));
        assert!(!is_named(&meta(Some("default"), Some("db"), true)));
        assert!(!is_named(&meta(Some("shop"), Some("db"), true)));
        let unnamed: ServiceName = ("default".into(), SmolStr::default());
        assert_eq!(named(&meta(None, None, true)), unnamed);
        for (ns, label, want) in [
            (None, Some("web"), true),
            (Some("default"), Some("web"), true),
            (Some("shop"), Some("web"), false),
            (Some("default"), Some("db"), false),
            (Some("shop"), Some("db"), false),
            (Some("default"), None, false),
        ] {
            let mut m = meta(ns, Some("web-abcde"), true);
            if let Some(svc) = label {
                m.labels.insert(SERVICE_NAME_LABEL, svc);
            }
            let slice = EndpointSlice {
                metadata: m,
                ..EndpointSlice::default()
            };
            assert_eq!(
                slice_owner(&slice).as_ref() == Some(&name),
                want,
                "{ns:?} {label:?}"
            );
        }
    }

    #[test]
    fn grouped_objects_are_what_scanning_every_set_in_order_finds() {
        // Random objects cut into a few sets (a folder's files), added in order: each
        // service's group holds the objects a scan of the sets finds, the same ones (not
        // copies), in the same order, the last Service and ServiceExport of a name winning.
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        for round in 0..50 {
            let sets: Vec<ClusterObjects> = (0..=rng.below(3))
                .map(|_| {
                    let objects: Vec<Obj> = (0..rng.below(12))
                        .map(|_| random_object(&mut rng))
                        .collect();
                    whole(&objects)
                })
                .collect();
            let mut grouped = ObjectsByService::default();
            for set in &sets {
                grouped.add(set);
            }
            let mut names: Vec<ServiceName> = sets
                .iter()
                .flat_map(|set| {
                    let services = set.services.iter().map(|s| Some(named(&s.metadata)));
                    let exports = set.service_exports.iter().map(|e| Some(named(&e.metadata)));
                    services
                        .chain(exports)
                        .chain(set.endpoint_slices.iter().map(slice_owner))
                })
                .flatten()
                .collect();
            names.sort();
            names.dedup();
            names.push(("nowhere".into(), "none".into()));
            for name in &names {
                let mut want = ServiceObjects::default();
                for set in &sets {
                    let o = scan(name, set);
                    want.service = o.service.or(want.service);
                    want.export = o.export.or(want.export);
                    want.slices.extend(o.slices);
                }
                let have = grouped.take(name);
                let same = |a: Option<&Service>, b: Option<&Service>| match (a, b) {
                    (Some(a), Some(b)) => std::ptr::eq(a, b),
                    (a, b) => a.is_none() && b.is_none(),
                };
                assert!(same(have.service, want.service), "round {round}: {name:?}");
                assert_eq!(
                    have.export.map(std::ptr::from_ref),
                    want.export.map(std::ptr::from_ref),
                    "round {round}: {name:?}"
                );
                let ptrs = |v: &[&EndpointSlice]| -> Vec<*const EndpointSlice> {
                    v.iter().map(|s| std::ptr::from_ref(*s)).collect()
                };
                assert_eq!(
                    ptrs(&have.slices),
                    ptrs(&want.slices),
                    "round {round}: {name:?}"
                );
                assert!(
                    grouped.take(name).service.is_none() && grouped.take(name).slices.is_empty(),
                    "taken once"
                );
            }
        }
    }

    #[test]
    fn an_untouched_or_equal_export_keeps_its_arc() {
        let cluster = ClusterId::new("c1").unwrap();
        let objects_again = || {
            vec![
                Obj::Service(Service {
                    metadata: meta(Some("shop"), Some("a"), true),
                    spec: ServiceSpec {
                        cluster_ip: Some("10.0.0.1".into()),
                        ..ServiceSpec::default()
                    },
                    ..Service::default()
                }),
                Obj::Export(ServiceExport {
                    metadata: meta(Some("shop"), Some("a"), true),
                }),
            ]
        };
        let objects = objects_again();
        let name: ServiceName = ("shop".into(), "a".into());
        let mut by_service = ExportsByService::default();
        let mut seen = |_: &str| Timestamp::now();
        let first = by_service.update(&cluster, [&name], |n| objects_of(n, &objects), &mut seen);
        assert_eq!(first.changed, 1);
        let before = by_service.exports().values().next().unwrap().clone();
        let again = by_service.update(&cluster, [&name], |n| objects_of(n, &objects), &mut seen);
        assert_eq!(again.changed, 0);
        assert!(Arc::ptr_eq(
            &before,
            by_service.exports().values().next().unwrap()
        ));
        // Refused now (its Service became ExternalName): one export fewer, one refusal.
        let mut external = objects;
        if let Obj::Service(svc) = &mut external[0] {
            svc.spec.type_ = Some("ExternalName".into());
        }
        let refused = by_service.update(&cluster, [&name], |n| objects_of(n, &external), &mut seen);
        assert_eq!(refused.changed, 1);
        assert_eq!(refused.invalid.len(), 1);
        assert!(by_service.exports().is_empty());
        assert_eq!(by_service.invalid().count(), 1);
        let gone = by_service.update(&cluster, [&name], |_| ServiceObjects::default(), &mut seen);
        assert_eq!(
            gone.changed, 0,
            "a refused service leaving changes no export"
        );
        assert_eq!(by_service.invalid().count(), 0);
        // Exported again, then gone: one export removed.
        let exported = objects_again();
        let again = by_service.update(&cluster, [&name], |n| objects_of(n, &exported), &mut seen);
        assert_eq!(again.changed, 1);
        let gone = by_service.update(&cluster, [&name], |_| ServiceObjects::default(), &mut seen);
        assert_eq!(gone.changed, 1);
        assert!(by_service.exports().is_empty());
    }
}
