//! The fake Kubernetes API server as a process, for bench/fleet-scale.sh: one cluster of
//! bench/gen.py's fleet (cluster CLUSTER: SERVICES Services with ServiceExport and
//! EndpointSlice, svc-<i> in namespace ns-<i mod NAMESPACES>, ClusterIP
//! 10.<96+CLUSTER>.<(i+1) div 256>.<(i+1) mod 256>, pod 10.<16+CLUSTER>.x.y), then serves
//! until killed. Changes come from outside through the API itself (e.g. a PUT of a Service).
//!
//! usage: serve_fake SERVICES NAMESPACES CLUSTER KUBECONFIG_OUT
//! Writes KUBECONFIG_OUT (token "fake") and prints the server's URL once everything is in.

use fleetdns_k8s_fake::FakeApiServer;
use serde_json::json;

fn ip(a: u32, i: u32) -> String {
    let n = i + 1;
    format!("10.{a}.{}.{}", n >> 8, n & 255)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: serve_fake SERVICES NAMESPACES CLUSTER KUBECONFIG_OUT");
        std::process::exit(2);
    }
    let services: u32 = args[1].parse().expect("SERVICES");
    let namespaces: u32 = args[2].parse().expect("NAMESPACES");
    let cluster: u32 = args[3].parse().expect("CLUSTER");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let api = FakeApiServer::start().await.expect("fake API server");
        api.serve_group("multicluster.x-k8s.io", &["v1alpha1"]);
        for n in 0..namespaces {
            api.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("ns-{n}")}}));
        }
        let ports = json!([
            {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 80},
            {"name": "grpc", "protocol": "TCP", "port": 9090, "targetPort": 9090}
        ]);
        let eports = json!([
            {"name": "http", "protocol": "TCP", "port": 80},
            {"name": "grpc", "protocol": "TCP", "port": 9090}
        ]);
        for i in 0..services {
            let (name, ns) = (format!("svc-{i}"), format!("ns-{}", i % namespaces));
            let cip = ip(96 + cluster, i);
            api.put(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"type": "ClusterIP", "clusterIP": cip, "clusterIPs": [cip], "ports": ports}}));
            api.put(json!({"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
                "metadata": {"name": name, "namespace": ns, "creationTimestamp": "2024-01-01T00:00:00Z"}}));
            api.put(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": format!("{name}-abcde"), "namespace": ns,
                             "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4", "ports": eports,
                "endpoints": [{"addresses": [ip(16 + cluster, i)], "conditions": {"ready": true}}]}));
        }
        api.write_kubeconfig(std::path::Path::new(&args[4]), &format!("cluster-{cluster}"))
            .expect("kubeconfig");
        println!("{}", api.url());
        std::future::pending::<()>().await;
    });
}
