//! The REST API against real processes: round trips of every edge size, ranges, listings,
//! overwrites, deletes, clear errors, placement on distinct nodes, a node added mid-run.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Cluster, data, wait_for};

const MIB: usize = 1 << 20;

/// PUT, GET, HEAD; the 6 parts differ by at most one byte, add up, sit on 6 distinct nodes,
/// and each node's file holds exactly its slice of the file.
fn round_trip(c: &Cluster, name: &str, content: &[u8]) {
    let put = c.put(name, content);
    assert_eq!(
        put.status,
        201,
        "PUT {name}: {}",
        String::from_utf8_lossy(&put.body)
    );
    assert_eq!(put.json()["size"], content.len() as u64);
    let got = c.get(name);
    assert_eq!(got.status, 200);
    assert!(
        got.body == content,
        "GET {name} returns the same {} bytes",
        content.len()
    );
    let head = c
        .call("HEAD", &format!("/files/{name}"), None, None)
        .unwrap();
    assert_eq!(
        (head.status, head.content_length),
        (200, Some(content.len() as u64))
    );
    let parts = c.parts_of(name);
    assert_eq!(parts.len(), 6, "{name} has 6 parts");
    let lens: Vec<i64> = parts.iter().map(|p| p.len).collect();
    assert_eq!(lens.iter().sum::<i64>(), content.len() as i64);
    assert!(
        lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1,
        "{lens:?}"
    );
    let nodes: BTreeSet<&str> = parts.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(nodes.len(), 6, "parts of {name} on distinct nodes");
    let mut at = 0usize;
    for p in &parts {
        let on_disk = std::fs::read(c.copy_path(&p.node, p.copy)).expect("part file");
        assert!(
            on_disk == content[at..at + p.len as usize],
            "part {} of {name} on disk",
            p.idx
        );
        at += p.len as usize;
    }
}

#[test]
fn round_trips_of_every_edge_size() {
    let c = Cluster::start("roundtrip", 7, &[]);
    let sizes = [0, 1, 5, 6, 7, MIB - 1, MIB, MIB + 1, 100 * MIB];
    for (i, size) in sizes.into_iter().enumerate() {
        round_trip(&c, &format!("size-{size}"), &data(size, i as u64));
    }
    c.wait_clean(Duration::from_secs(30));
    c.check_consistent();
}

#[test]
fn ranges_heads_listings_overwrites_and_deletes() {
    let c = Cluster::start("ranges", 6, &[]);
    let len = 3 * MIB + 5; // parts of ~512 KiB: ranges cross parts, and blocks inside them
    let content = data(len, 7);
    assert_eq!(c.put("r", &content).status, 201);
    let cases: [(&str, usize, usize); 6] = [
        ("bytes=0-0", 0, 1),
        ("bytes=524280-1572870", 524_280, 1_572_871),
        ("bytes=-10", len - 10, len),
        ("bytes=100-", 100, len),
        ("bytes=0-99999999", 0, len),
        ("bytes=3145730-3145731", 3_145_730, 3_145_732),
    ];
    for (range, start, end) in cases {
        let got = c.call("GET", "/files/r", None, Some(range)).unwrap();
        assert_eq!(got.status, 206, "{range}");
        assert!(got.body == content[start..end], "{range}");
        let want = format!("bytes {start}-{}/{len}", end - 1);
        assert_eq!(got.content_range.as_deref(), Some(want.as_str()), "{range}");
    }
    let bad = c
        .call("GET", "/files/r", None, Some(&format!("bytes={len}-")))
        .unwrap();
    assert_eq!(bad.status, 416);
    assert_eq!(bad.content_range, Some(format!("bytes */{len}")));

    // Overwrite: the new bytes win, the old parts are cleaned up.
    let newer = data(1000, 8);
    assert_eq!(c.put("r", &newer).status, 201);
    assert_eq!(c.get("r").body, newer);
    // Delete: 204, then 404 with a JSON reason, twice.
    assert_eq!(
        c.call("DELETE", "/files/r", None, None).unwrap().status,
        204
    );
    for _ in 0..2 {
        let gone = c.call("DELETE", "/files/r", None, None).unwrap();
        assert_eq!(
            (gone.status, gone.json()["error"].as_str()),
            (404, Some("not_found"))
        );
    }
    assert_eq!(c.get("r").status, 404);
    assert_eq!(c.call("HEAD", "/files/r", None, None).unwrap().status, 404);
    listings(&c);
    c.wait_clean(Duration::from_secs(30));
    c.check_consistent();
    assert!(
        std::fs::read_dir(c.dir.join("spool"))
            .unwrap()
            .next()
            .is_none(),
        "no spool file left"
    );
}

/// Prefixes (with LIKE wildcards in them), limits and pages, names with spaces and UTF-8.
fn listings(c: &Cluster) {
    let names = [
        "a/1",
        "a/2",
        "a/3",
        "a_b",
        "a%c",
        "b/1",
        "c%20d",
        "%C3%BCber",
    ];
    for name in names {
        assert_eq!(c.put(name, name.as_bytes()).status, 201, "{name}");
    }
    assert_eq!(c.get("c%20d").body, b"c%20d");
    let page = |q: &str| {
        c.call("GET", &format!("/files?{q}"), None, None)
            .unwrap()
            .json()
    };
    let names_of = |v: &serde_json::Value| -> Vec<String> {
        v["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    };
    let first = page("prefix=a%2F&limit=2");
    assert_eq!(names_of(&first), ["a/1", "a/2"]);
    assert_eq!(first["truncated"], true);
    let next = page(&format!(
        "prefix=a%2F&limit=2&after={}",
        first["next_after"].as_str().unwrap().replace('/', "%2F")
    ));
    assert_eq!(names_of(&next), ["a/3"]);
    assert_eq!(next["truncated"], false);
    assert_eq!(names_of(&page("prefix=a_")), ["a_b"], "_ is not a wildcard");
    assert_eq!(
        names_of(&page("prefix=a%25")),
        ["a%c"],
        "% is not a wildcard"
    );
    assert_eq!(names_of(&page("prefix=%C3%BC")), ["über"]);
    assert_eq!(names_of(&page("prefix=c%20")), ["c d"]);
    assert_eq!(
        page("").get("files").unwrap().as_array().unwrap().len(),
        names.len()
    );
    let bad = c.call("GET", "/files?limit=0", None, None).unwrap();
    assert_eq!(
        (bad.status, bad.json()["error"].as_str()),
        (400, Some("bad_limit"))
    );
}

#[test]
fn bad_requests_get_clear_errors() {
    let c = Cluster::start("errors", 6, &[]);
    let long = "x".repeat(1089);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("PUT", format!("/files/{long}"), 400, "bad_name"),
        ("PUT", "/files/a%00b".into(), 400, "bad_name"),
        ("PUT", "/files/a%FFb".into(), 400, "bad_name"),
        ("GET", "/files/missing".into(), 404, "not_found"),
        ("POST", "/files/x".into(), 405, "method_not_allowed"),
        ("GET", "/nowhere".into(), 404, "no_route"),
        ("DELETE", "/nodes".into(), 405, "method_not_allowed"),
    ];
    for (method, path, status, code) in cases {
        let a = c.call(method, &path, None, None).unwrap();
        assert_eq!(a.status, status, "{method} {path}");
        assert_eq!(a.json()["error"].as_str(), Some(code), "{method} {path}");
        assert!(
            a.json()["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{method} {path}"
        );
    }
    for body in [
        &b"not json"[..],
        br#"{"id":"x y","addr":"1.2.3.4:5","capacity":1}"#,
        br#"{"id":"x","addr":"nowhere","capacity":1}"#,
        br#"{"id":"x","addr":"1.2.3.4:5","capacity":0}"#,
    ] {
        let a = c.call("POST", "/nodes", Some(body), None).unwrap();
        assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(body));
    }
    // A chunked PUT cannot be cut into parts while it streams: 411 with a reason.
    let chunked = c
        .agent
        .put(&c.url("/files/chunked"))
        .send(std::io::Cursor::new(b"abc".to_vec()));
    match chunked {
        Err(ureq::Error::Status(411, r)) => {
            assert!(r.into_string().unwrap().contains("Content-Length"))
        }
        other => panic!("chunked PUT: {other:?}"),
    }
    assert_eq!(c.get("chunked").status, 404);
}

#[test]
fn a_node_added_mid_run_receives_parts_without_a_restart() {
    let mut c = Cluster::start("addnode", 6, &[]);
    let gateway_pid = c.gateway.as_ref().unwrap().id();
    const FILES: usize = 50;
    let done = Arc::new(AtomicUsize::new(0));
    let (url, agent) = (c.url(""), c.agent.clone());
    let uploader = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut statuses = Vec::new();
            for i in 0..FILES as u64 {
                let r = agent
                    .put(&format!("{url}/files/f{i:03}"))
                    .send_bytes(&data(64 << 10, i));
                statuses.push(r.map(|r| r.status()).unwrap_or_else(|e| match e {
                    ureq::Error::Status(s, _) => s,
                    ureq::Error::Transport(_) => 0,
                }));
                done.fetch_add(1, Ordering::SeqCst);
            }
            statuses
        })
    };
    wait_for(Duration::from_secs(60), "10 uploads", || {
        (done.load(Ordering::SeqCst) >= 10).then_some(())
    });
    let new = c.add_node();
    let new_id = c.nodes[new].id.clone();
    wait_for(Duration::from_secs(30), "the new node to be live", || {
        c.is_live(&new_id).then_some(())
    });
    let live_at = done.load(Ordering::SeqCst);
    let statuses = uploader.join().unwrap();
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    assert!(
        live_at + 10 < FILES,
        "the uploads ended before the node came up; make them longer"
    );
    let on_new: Vec<usize> = (0..FILES)
        .filter(|i| {
            c.parts_of(&format!("f{i:03}"))
                .iter()
                .any(|p| p.node == new_id)
        })
        .collect();
    // The new node is the emptiest (it stays so for 60 files): every upload placed after it
    // came up gives it a part.
    for i in (live_at + 1)..FILES {
        assert!(
            on_new.contains(&i),
            "file {i} (placed after the node came up) has no part on it; on it: {on_new:?}"
        );
    }
    assert_eq!(
        c.gateway.as_ref().unwrap().id(),
        gateway_pid,
        "the gateway was not restarted"
    );
    c.check_consistent();
}
