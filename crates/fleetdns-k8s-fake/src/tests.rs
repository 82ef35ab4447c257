//! Unit tests: the fake against kube-rs's own client.

use super::*;

use std::time::Duration;

use futures::StreamExt;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::kinds::MCS;
use crate::store::merge_patch;

fn client(s: &FakeApiServer) -> kube::Client {
    kube::Client::try_from(kube::Config::new(s.url().parse().unwrap())).unwrap()
}

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn services() -> ApiResource {
    ar("", "v1", "Service", "services")
}

fn exports(version: &str) -> ApiResource {
    ar(MCS, version, "ServiceExport", "serviceexports")
}

fn svc(ns: &str, name: &str, app: &str) -> Value {
    let metadata = json!({"namespace": ns, "name": name, "labels": {"app": app}});
    json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": {"ports": [{"port": 80}]}})
}

fn code<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> u16 {
    match r {
        Err(kube::Error::Api(s)) => s.code,
        other => panic!("not an API error: {other:?}"),
    }
}

type Watcher = futures::stream::BoxStream<'static, Result<Event<DynamicObject>, watcher::Error>>;

/// The next watcher event as text ("InitApply(a)", "Err", ...), within 5 s.
async fn next(w: &mut Watcher) -> String {
    match tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("watcher stalled")
    {
        Some(Ok(e)) => e.to_string(),
        Some(Err(_)) => "Err".into(),
        None => "End".into(),
    }
}

/// Events up to the next InitDone (or, with `until`, that event), errors skipped.
async fn events(w: &mut Watcher, until: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    while seen.last().is_none_or(|e| e != until) {
        seen.extend(Some(next(w).await).filter(|e| e != "Err"));
    }
    seen
}

/// One raw HTTP exchange: (status code, body).
async fn raw(s: &FakeApiServer, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(s.inner.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (
        head.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        body.to_owned(),
    )
}

async fn bounded(test: impl Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(20), test)
        .await
        .expect("test timed out");
}

#[tokio::test]
async fn list_get_selectors_and_pagination() {
    bounded(async {
        let s = FakeApiServer::start().await.unwrap();
        s.put(svc("other", "c", "web"));
        s.put(svc("default", "b", "db"));
        let a = s.put(svc("default", "a", "web"));
        assert_eq!(a["metadata"]["resourceVersion"], "4");
        assert!(a["metadata"]["uid"].is_string() && a["metadata"]["creationTimestamp"].is_string());
        let all: Api<DynamicObject> = Api::all_with(client(&s), &services());
        let list = all.list(&ListParams::default()).await.unwrap();
        let names: Vec<_> = list
            .items
            .iter()
            .map(|o| o.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            (names, list.metadata.resource_version),
            (
                vec!["a", "b", "c"].into_iter().map(String::from).collect(),
                Some("4".into())
            )
        );
        assert_eq!(list.items[0].types.as_ref().unwrap().kind, "Service");
        assert_eq!(
            all.list(&ListParams::default().labels("app=web,!missing"))
                .await
                .unwrap()
                .items
                .len(),
            2
        );
        assert_eq!(
            all.list(
                &ListParams::default()
                    .labels("app!=web")
                    .fields("metadata.name=b")
            )
            .await
            .unwrap()
            .items
            .len(),
            1
        );
        assert_eq!(
            all.list_metadata(&ListParams::default().labels("app==db"))
                .await
                .unwrap()
                .items
                .len(),
            1
        );

        let (mut pages, mut lp) = (Vec::new(), ListParams::default().limit(1));
        loop {
            let page = all.list(&lp).await.unwrap();
            pages.push((
                page.items[0].metadata.name.clone().unwrap(),
                page.metadata.remaining_item_count,
            ));
            match page.metadata.continue_ {
                Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
                _ => break,
            }
        }
        assert_eq!(
            pages,
            [
                ("a".into(), Some(2)),
                ("b".into(), Some(1)),
                ("c".into(), None)
            ]
        );

        let ns: Api<DynamicObject> = Api::namespaced_with(client(&s), "default", &services());
        assert_eq!(
            ns.list(&ListParams::default()).await.unwrap().items.len(),
            2
        );
        assert_eq!(
            ns.get("a").await.unwrap().metadata.uid.as_deref(),
            a["metadata"]["uid"].as_str()
        );
        assert_eq!(code(ns.get("zzz").await), 404);
        assert!(ns.get_opt("zzz").await.unwrap().is_none());
        let (status, body) = raw(
            &s,
            "GET /api/v1/namespaces/default/services/zzz HTTP/1.1\r\n\r\n",
        )
        .await;
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (status, &body["reason"], &body["message"]),
            (
                404,
                &json!("NotFound"),
                &json!("services \"zzz\" not found")
            )
        );
    })
    .await;
}

#[tokio::test]
async fn watcher_follows_resumes_and_relists() {
    bounded(async {
        let s = FakeApiServer::start().await.unwrap();
        s.put(svc("default", "a", "web"));
        s.put(svc("default", "b", "web"));
        let api: Api<DynamicObject> = Api::all_with(client(&s), &services());
        let mut w: Watcher = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
        assert_eq!(
            events(&mut w, "InitDone").await,
            ["Init", "InitApply(a)", "InitApply(b)", "InitDone"]
        );
        s.put(svc("default", "c", "web"));
        assert_eq!(next(&mut w).await, "Apply(c)");
        s.bookmark();
        s.delete("v1", "Service", Some("default"), "c");
        assert_eq!(next(&mut w).await, "Delete(c)");

        // A dropped watch resumes from its resourceVersion and gets what it missed.
        s.drop_watches();
        s.put(svc("default", "d", "web"));
        assert_eq!(events(&mut w, "Apply(d)").await, ["Apply(d)"]);

        // After compaction the resumed watch gets 410 and the watcher lists again: b,
        // deleted while it was disconnected, is gone.
        s.drop_watches();
        s.delete("v1", "Service", Some("default"), "b");
        s.compact();
        assert_eq!(
            events(&mut w, "InitDone").await,
            ["Init", "InitApply(a)", "InitApply(d)", "InitDone"]
        );
        let requests = s.requests();
        let lists: Vec<_> = requests
            .iter()
            .filter(|r| r.param("watch").is_none())
            .collect();
        assert_eq!((lists.len(), lists[0].param("limit")), (2, Some("500")));
        let watch = requests
            .iter()
            .find(|r| r.param("watch").is_some())
            .unwrap();
        assert_eq!(
            (
                watch.param("allowWatchBookmarks"),
                watch.param("timeoutSeconds")
            ),
            (Some("true"), Some("290"))
        );

        // A streaming list (sendInitialEvents) ends its initial events with a bookmark.
        let mut w: Watcher =
            watcher::watcher(api, watcher::Config::default().streaming_lists()).boxed();
        assert_eq!(
            events(&mut w, "InitDone").await,
            ["Init", "InitApply(a)", "InitApply(d)", "InitDone"]
        );
        s.put(svc("default", "e", "web"));
        assert_eq!(next(&mut w).await, "Apply(e)");
    })
    .await;
}

#[tokio::test]
async fn raw_watch_selector_bookmark_timeout() {
    bounded(async {
        let s = FakeApiServer::start().await.unwrap();
        s.put(svc("default", "a", "web"));
        let api: Api<DynamicObject> = Api::namespaced_with(client(&s), "default", &services());
        let mut stream = api.watch(&WatchParams::default().labels("app=web").timeout(1), "0").await.unwrap().boxed();
        assert!(matches!(stream.next().await, Some(Ok(WatchEvent::Added(o))) if o.metadata.name.as_deref() == Some("a")));
        while s.open_watches() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        s.put(svc("default", "x", "db")); // not selected
        s.put(svc("default", "a", "db")); // stops matching: still sent
        s.bookmark();
        assert!(matches!(stream.next().await, Some(Ok(WatchEvent::Modified(_)))));
        assert!(matches!(stream.next().await, Some(Ok(WatchEvent::Bookmark(b))) if b.metadata.resource_version == "4"));
        assert!(stream.next().await.is_none(), "timeoutSeconds ends the stream");
    })
    .await;
}

#[tokio::test]
async fn server_side_apply_and_status() {
    bounded(async {
        let s = FakeApiServer::start().await.unwrap();
        s.serve_group(MCS, &["v1alpha1"]);
        s.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}));
        let api: Api<DynamicObject> = Api::namespaced_with(client(&s), "default", &exports("v1alpha1"));
        let pp = PatchParams::apply("fleetdns").force();
        let with = |extra: Value| {
            let mut v = json!({"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport", "metadata": {"name": "web"}});
            merge_patch(&mut v, &extra);
            v
        };
        let body = with(json!({"metadata": {"name": "web", "labels": {"a": "1"}}, "status": {"ignored": true}}));
        let first = api.patch("web", &pp, &Patch::Apply(&body)).await.unwrap();
        let second = api.patch("web", &pp, &Patch::Apply(&body)).await.unwrap();
        assert_eq!(first.metadata.resource_version, second.metadata.resource_version, "a no-op apply");
        assert_eq!((first.metadata.generation, first.data.get("status")), (Some(1), None));
        let status = with(json!({"status": {"conditions": [{"type": "Valid", "status": "True"}]}}));
        let patched = api.patch_status("web", &pp, &Patch::Apply(&status)).await.unwrap();
        assert_ne!(patched.metadata.resource_version, first.metadata.resource_version);
        assert_eq!((&patched.data["status"]["conditions"][0]["type"], patched.metadata.generation), (&json!("Valid"), Some(1)));
        let relabeled = api.patch("web", &pp, &Patch::Apply(with(json!({"metadata": {"labels": {"b": "2"}}})))).await.unwrap();
        assert_eq!(relabeled.metadata.labels.unwrap().len(), 2);
        assert_eq!(relabeled.data["status"]["conditions"][0]["status"], "True", "status kept");
        assert_eq!(s.get("ServiceExport", Some("default"), "web").unwrap()["status"]["conditions"][0]["type"], "Valid");

        let req = s.requests().into_iter().find(|r| r.method == "PATCH").unwrap();
        assert_eq!(req.path, "/apis/multicluster.x-k8s.io/v1alpha1/namespaces/default/serviceexports/web");
        assert_eq!((req.param("fieldManager"), req.param("force")), (Some("fleetdns"), Some("true")));
        assert_eq!((req.content_type.as_deref(), req.body), (Some("application/apply-patch+yaml"), Some(body.clone())));

        assert_eq!(code(api.patch("web", &PatchParams::default(), &Patch::Apply(&body)).await), 422, "no fieldManager");
        let elsewhere: Api<DynamicObject> = Api::namespaced_with(client(&s), "nope", &exports("v1alpha1"));
        assert_eq!(code(elsewhere.patch("web", &pp, &Patch::Apply(&body)).await), 404, "missing namespace");
        let mut missing = status.clone();
        missing["metadata"]["name"] = "none".into();
        assert_eq!(code(api.patch_status("none", &pp, &Patch::Apply(&missing)).await), 404);
        let unlabel = Patch::Merge(json!({"metadata": {"labels": {"a": null}}}));
        assert_eq!(api.patch("web", &PatchParams::default(), &unlabel).await.unwrap().metadata.labels.unwrap().len(), 1);
        assert!(api.delete("web", &DeleteParams::default()).await.unwrap().is_left(), "CRs return the object");
    })
    .await;
}

#[tokio::test]
async fn create_replace_delete_and_bad_requests() {
    bounded(async {
        let s = FakeApiServer::start().await.unwrap();
        let api: Api<DynamicObject> = Api::namespaced_with(client(&s), "default", &services());
        let obj: DynamicObject = serde_json::from_value(svc("default", "a", "web")).unwrap();
        let created = api.create(&PostParams::default(), &obj).await.unwrap();
        assert_eq!(code(api.create(&PostParams::default(), &obj).await), 409);
        let mut stale = created.clone();
        stale.metadata.resource_version = Some("1".into());
        assert_eq!(
            code(api.replace("a", &PostParams::default(), &stale).await),
            409
        );
        let mut fresh = created.clone();
        fresh.data["spec"]["ports"][0]["port"] = 81.into();
        assert_eq!(
            api.replace("a", &PostParams::default(), &fresh)
                .await
                .unwrap()
                .data["spec"]["ports"][0]["port"],
            81
        );
        assert!(
            api.delete("a", &DeleteParams::default())
                .await
                .unwrap()
                .is_right(),
            "built-ins return a Status"
        );
        assert_eq!(code(api.delete("a", &DeleteParams::default()).await), 404);

        let post = "POST /api/v1/namespaces/default/services HTTP/1.1\r\n";
        assert_eq!(
            raw(
                &s,
                &format!("{post}Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n")
            )
            .await
            .0,
            411
        );
        assert_eq!(
            raw(&s, &format!("{post}Content-Length: 3\r\n\r\n{{x}}"))
                .await
                .0,
            400
        );
        assert_eq!(raw(&s, "garbage\r\n\r\n").await.0, 400);
        assert_eq!(
            raw(&s, "GET /apis/nothing/v1/things HTTP/1.1\r\n\r\n")
                .await
                .0,
            404
        );
        assert_eq!(
            raw(&s, "DELETE /api/v1/services HTTP/1.1\r\n\r\n").await.0,
            405
        );
    })
    .await;
}

#[tokio::test]
async fn served_versions_and_discovery() {
    bounded(async {
        let s = FakeApiServer::start().await.unwrap();
        let c = client(&s);
        s.serve_group(MCS, &["v1alpha1"]);
        assert_eq!(code(Api::<DynamicObject>::all_with(c.clone(), &exports("v1beta1")).list(&ListParams::default()).await), 404);
        let (status, body) = raw(&s, "GET /apis/multicluster.x-k8s.io HTTP/1.1\r\n\r\n").await;
        let group: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((status, &group["versions"][0]["version"], &group["preferredVersion"]["version"]), (200, &json!("v1alpha1"), &json!("v1alpha1")));
        let (found, _) = kube::discovery::group(&c, MCS).await.unwrap().recommended_kind("ServiceExport").unwrap();
        assert_eq!((found.version.as_str(), found.plural.as_str()), ("v1alpha1", "serviceexports"));
        assert!(c.list_api_groups().await.unwrap().groups.iter().any(|g| g.name == "discovery.k8s.io"));
        assert!(kube::discovery::group(&c, "about.k8s.io").await.is_err(), "not served");

        let export = json!({"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport", "metadata": {"name": "web"}});
        s.put(export);
        s.serve_group(MCS, &["v1beta1", "v1alpha1"]);
        let seen = Api::<DynamicObject>::namespaced_with(c, "default", &exports("v1beta1")).get("web").await.unwrap();
        assert_eq!(seen.types.unwrap().api_version, "multicluster.x-k8s.io/v1beta1");
    })
    .await;
}

#[tokio::test]
async fn kubeconfig_offline_and_fail_next() {
    bounded(async {
        let s = FakeApiServer::start().await.unwrap();
        let path = std::env::temp_dir().join(format!("fleetdns-fake-{}.yaml", std::process::id()));
        s.write_kubeconfig(&path, "east").unwrap();
        let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let options = kube::config::KubeConfigOptions {
            context: Some("east".into()),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .unwrap();
        let api: Api<DynamicObject> =
            Api::all_with(kube::Client::try_from(config).unwrap(), &services());
        let lp = ListParams::default();
        api.list(&lp).await.unwrap();

        s.set_offline(true);
        let offline = tokio::time::timeout(Duration::from_secs(5), api.list(&lp)).await;
        assert!(
            offline
                .expect("an offline server must not hang the client")
                .is_err()
        );
        s.set_offline(false);
        api.list(&lp).await.unwrap();

        s.fail_next("GET", "/services", 500);
        assert_eq!(code(api.list(&lp).await), 500);
        api.list(&lp).await.unwrap();
        s.clear_requests();
        s.fail_next("get", "/services", 403);
        assert_eq!(code(api.list(&lp).await), 403);
        assert_eq!(s.requests().len(), 1);
        s.stop().await;
    })
    .await;
}
