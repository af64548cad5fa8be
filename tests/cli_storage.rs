//! `freshet storage` and the start-up checks of a data directory's identity.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn freshet(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_freshet"));
    cmd.args(args).env_remove("FRESHET_LOG_DIRS").env_remove("FRESHET_NODE_ID");
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn format_writes_meta_properties_once_and_info_reads_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = format!("log.dirs={}", tmp.path().display());
    let id = freshet(&["storage", "random-uuid"]);
    assert!(id.status.success());
    let id = text(&id.stdout).trim().to_owned();
    assert_eq!(id.len(), 22, "{id}");

    let args = ["storage", "format", "--cluster-id", &id, "--set", &dirs, "--set", "node.id=2"];
    let out = freshet(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let again = freshet(&args);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("already formatted"), "{}", text(&again.stderr));
    let mut ignoring = args.to_vec();
    ignoring.push("--ignore-formatted");
    assert!(freshet(&ignoring).status.success());

    let info = freshet(&["storage", "info", "--set", &dirs]);
    assert!(info.status.success());
    let info = text(&info.stdout);
    assert!(info.contains(&format!("cluster.id={id}")) && info.contains("node.id=2"), "{info}");
}

#[test]
fn a_server_refuses_a_directory_of_another_node_and_bad_quorum_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = format!("log.dirs={}", tmp.path().display());
    let format = freshet(&["storage", "format", "-t", "Ut2uJrxSQ6W1pRMGeQOXkg", "--set", &dirs, "--set", "node.id=2"]);
    assert!(format.status.success(), "{}", text(&format.stderr));

    let listen = "listeners=PLAINTEXT://127.0.0.1:0";
    let wrong_node = freshet(&["server", "--set", &dirs, "--set", "node.id=3", "--set", listen]);
    assert!(!wrong_node.status.success());
    let err = text(&wrong_node.stderr);
    assert!(err.contains("node.id=2") && err.contains("node.id=3"), "{err}");

    let not_a_voter = freshet(&[
        "server",
        "--set",
        &dirs,
        "--set",
        "node.id=2",
        "--set",
        "listeners=PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0",
        "--set",
        "controller.quorum.voters=1@127.0.0.1:19093",
    ]);
    assert!(!not_a_voter.status.success());
    let err = text(&not_a_voter.stderr);
    assert!(err.contains("controller.quorum.voters") && err.contains("not a voter"), "{err}");

    let bad_roles = freshet(&["server", "--set", "process.roles=broker,zookeeper"]);
    assert!(text(&bad_roles.stderr).contains("process.roles"), "{}", text(&bad_roles.stderr));
}
