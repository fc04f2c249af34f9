//! The S3 subset used by a real client: boto3 (unsigned, path style) runs
//! `tests/s3_client.py` against the gateway's S3 port. `services/parts/ci` installs boto3
//! when it is missing (into a venv under target/; `PARTS_PYTHON` names its python).

mod common;

use std::process::Command;
use std::time::Duration;

use common::Cluster;

#[test]
fn boto3_stores_reads_lists_and_deletes_through_the_s3_api() {
    let python = std::env::var("PARTS_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_boto3 = Command::new(&python)
        .args(["-c", "import boto3"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_boto3,
        "{python} cannot import boto3: run `bash services/parts/ci` (it installs it) or `pip install boto3`"
    );
    let c = Cluster::start("s3", 6, &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/s3_client.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(format!("http://127.0.0.1:{}", c.s3_port))
        .output()
        .expect("run the boto3 client");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "boto3 client failed:\n{stdout}\n{stderr}"
    );
    eprint!("{stdout}");
    // S3 objects are files of the REST API, named bucket/key.
    let big = c.get("photos/big");
    assert_eq!((big.status, big.body.len()), (200, 3 << 20));
    assert_eq!(c.get("photos/x%26y%3Cz%3E'%22").body, b"x&y<z>'\"");
    c.wait_clean(Duration::from_secs(30));
    c.check_consistent();
}
