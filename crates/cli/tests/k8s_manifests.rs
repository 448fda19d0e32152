//! `deploy/k8s` checked offline: every manifest validates strictly
//! (unknown fields are errors) against Kubernetes 1.31's schemas with
//! `kubernetes-validate` (PyPI; `.ci/run` installs it), and the pods run
//! what the images provide: uid 10001, the client port 2379 and the
//! metrics port 2381 that serves `/health`. No cluster is involved: what
//! only a running cluster shows is not tested here (deploy/k8s/README.md).
//!
//! The schema check is skipped, with a message, where
//! `kubernetes-validate` is not installed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

/// The Kubernetes version the manifests need (spec.ordinals, the
/// pod-index label).
const KUBERNETES: &str = "1.31.0";

fn manifests() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/k8s");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "no manifests in {}", dir.display());
    files
}

#[test]
fn the_manifests_validate_against_kubernetes_schemas() {
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet", "-k", KUBERNETES])
        .args(manifests())
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            eprintln!("SKIPPED: kubernetes-validate (PyPI) is not installed: {e}");
            return;
        }
    };
    assert!(
        out.status.success(),
        "kubernetes-validate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_pods_run_what_the_images_provide() {
    for file in manifests() {
        let text = std::fs::read_to_string(&file).unwrap();
        if !text.contains("kind: StatefulSet") {
            continue;
        }
        for needle in [
            "runAsUser: 10001",
            "runAsNonRoot: true",
            "containerPort: 2379",
            "containerPort: 2381",
            "httpGet: {path: /health, port: metrics}",
            "mountPath: /var/lib/flotilla",
            "serviceName: flotilla-peers",
            "volumeClaimTemplates:",
        ] {
            assert!(text.contains(needle), "{} lacks {needle:?}", file.display());
        }
    }
}
