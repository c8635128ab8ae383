//! Unit tests of uploads: the receiving `upload.sh` run locally (plain, gzip,
//! cut or corrupt streams, no gzip on the host), the `auto` rule and the gzip
//! copy. Uploads over real SSH are the lab's tests (`tests/`).

use super::*;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

/// Runs `upload.sh` under `shell` with `input` on its stdin, with `path_env`
/// as PATH when given.
fn receive_with(
    shell: &str,
    path: &std::path::Path,
    size: u64,
    input: &[u8],
    path_env: Option<&std::path::Path>,
) -> Output {
    let mut cmd = Command::new(shell);
    cmd.arg("-c")
        .arg(UPLOAD_SH)
        .arg("etcdroll-upload")
        .arg(path)
        .arg(size.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = path_env {
        cmd.env("PATH", p);
    }
    let mut child = cmd.spawn().unwrap();
    // The receiver may stop reading early (a refused header): ignore EPIPE.
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

fn receive(shell: &str, path: &std::path::Path, size: u64, input: &[u8]) -> Output {
    receive_with(shell, path, size, input, None)
}

/// The receiver's output: its offer line, then the hash it printed.
fn offer_and_hash(out: &Output) -> (String, String) {
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    let offer = lines.next().unwrap_or("").to_string();
    let hash = lines
        .next()
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or("")
        .to_string();
    (offer, hash)
}

fn plain(data: &[u8]) -> Vec<u8> {
    [b"plain\n".as_slice(), data].concat()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn gzipped(stream: &[u8]) -> Vec<u8> {
    [format!("gzip {}\n", stream.len()).as_bytes(), stream].concat()
}

/// Bytes a shell would run or choke on, and some that do not compress.
fn awkward_data() -> Vec<u8> {
    let mut data = b"line one\n$(touch /tmp/x)\n\xff\x00 bytes\n".repeat(1000);
    let mut next = crate::ssh::test_rng::xorshift(7);
    data.extend((0..50_000).map(|_| next() as u8));
    data
}

#[test]
fn the_receiver_writes_a_private_file_and_prints_its_hash() {
    let data = awkward_data();
    let want = hex::encode(Sha256::digest(&data));
    for shell in ["sh", "dash"] {
        for (how, input) in [("plain", plain(&data)), ("gzip", gzipped(&gzip(&data)))] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("it's a file");
            let out = receive(shell, &path, data.len() as u64, &input);
            assert!(out.status.success(), "{shell} {how}: {out:?}");
            assert_eq!(std::fs::read(&path).unwrap(), data, "{shell} {how}");
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{shell} {how}");
            let (offer, hash) = offer_and_hash(&out);
            assert_eq!(offer, "etcdroll-upload gzip", "{shell} {how}");
            assert_eq!(hash, want, "{shell} {how}: the hash of the unpacked file");
        }
    }
}

/// A short input (the bytes stopped coming, or the disk filled) fails with 1
/// and says how many bytes arrived; a file that cannot be written fails too.
#[test]
fn the_receiver_fails_when_the_file_is_not_whole() {
    for shell in ["sh", "dash"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short");
        let out = receive(shell, &path, 10, &plain(b"abc"));
        assert_eq!(out.status.code(), Some(1), "{shell}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim(),
            format!("{} has 3 bytes, expected 10", path.display()),
            "{shell}"
        );
        // A whole gzip stream of the wrong file is caught by the size too.
        let out = receive(shell, &path, 10, &gzipped(&gzip(b"abc")));
        assert_eq!(out.status.code(), Some(1), "{shell}: {out:?}");
        let out = receive(shell, &dir.path().join("no/such/dir"), 3, &plain(b"abc"));
        assert!(!out.status.success(), "{shell}: {out:?}");
    }
}

/// A gzip stream cut short, or with a flipped byte, is refused with 3 and a
/// message naming the file, even when what came out has the right size.
#[test]
fn the_receiver_refuses_a_corrupt_or_cut_gzip_stream() {
    let data = awkward_data();
    let stream = gzip(&data);
    let cut = &stream[..stream.len() / 2];
    let mut flipped = stream.clone();
    // The CRC-32 of the trailer: the data unpacks whole, to the right size.
    let at = flipped.len() - 8;
    flipped[at] ^= 0x40;
    let mut bad_data = stream.clone();
    bad_data[stream.len() / 2] ^= 0x01;
    for shell in ["sh", "dash"] {
        for (what, s) in [
            ("cut", cut),
            ("bad crc", &flipped[..]),
            ("bad data", &bad_data[..]),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            let out = receive(shell, &path, data.len() as u64, &gzipped(s));
            assert_eq!(out.status.code(), Some(3), "{shell} {what}: {out:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains(&format!(
                    "gzip -dc refused the stream for {} (corrupt or cut short)",
                    path.display()
                )),
                "{shell} {what}: {err}"
            );
            assert_eq!(
                offer_and_hash(&out).1,
                "",
                "{shell} {what}: no hash printed"
            );
        }
    }
}

/// A host without gzip says so, and takes the file as it is.
#[test]
fn the_receiver_without_gzip_offers_plain() {
    let bin = tempfile::tempdir().unwrap();
    for tool in ["head", "tee", "wc", "grep", "sha256sum", "openssl"] {
        if let Ok(found) = which(tool) {
            std::os::unix::fs::symlink(found, bin.path().join(tool)).unwrap();
        }
    }
    let data = awkward_data();
    for shell in ["/bin/sh", "/bin/dash"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let out = receive_with(
            shell,
            &path,
            data.len() as u64,
            &plain(&data),
            Some(bin.path()),
        );
        assert!(out.status.success(), "{shell}: {out:?}");
        let (offer, hash) = offer_and_hash(&out);
        assert_eq!(offer, "etcdroll-upload plain", "{shell}");
        assert_eq!(hash, hex::encode(Sha256::digest(&data)), "{shell}");
        assert_eq!(std::fs::read(&path).unwrap(), data, "{shell}");
    }
}

fn which(tool: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .ok_or(())
}

/// A header the script does not know is refused before anything is written.
#[test]
fn the_receiver_refuses_an_unknown_header() {
    for input in [&b"zstd 4\nabcd"[..], b"gzip 12x\n", b""] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let out = receive("dash", &path, 4, input);
        assert_eq!(out.status.code(), Some(2), "{input:?}: {out:?}");
        assert!(!path.exists(), "{input:?}");
    }
}

/// The command line built for the host runs the receiver with its arguments
/// unchanged, whatever the path holds.
#[test]
fn the_receive_command_passes_the_path_as_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a b; $(id) 'q'");
    let line = receive_command(&path.to_string_lossy(), 4);
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(line.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&plain(b"data"))
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(std::fs::read(&path).unwrap(), b"data");
}

/// `auto` compresses off a LAN only, and never for a host without gzip;
/// `gzip` and `none` do as they say.
#[test]
fn the_auto_rule() {
    let lan = Duration::from_millis(4);
    let far = Duration::from_millis(100);
    assert_eq!(choose_wire(Compress::Auto, true, lan, false), Wire::Plain);
    assert_eq!(
        choose_wire(
            Compress::Auto,
            true,
            FAR_ANSWER - Duration::from_micros(1),
            false
        ),
        Wire::Plain
    );
    assert_eq!(
        choose_wire(Compress::Auto, true, FAR_ANSWER, false),
        Wire::Gzip
    );
    assert_eq!(choose_wire(Compress::Auto, true, far, false), Wire::Gzip);
    assert_eq!(choose_wire(Compress::Auto, false, far, true), Wire::Plain);
    // A copy already made costs no wait: taken on a LAN-like answer too (a
    // thin pipe close by looks like a LAN).
    assert_eq!(choose_wire(Compress::Auto, true, lan, true), Wire::Gzip);
    assert_eq!(choose_wire(Compress::Gzip, true, lan, false), Wire::Gzip);
    assert_eq!(choose_wire(Compress::Gzip, false, lan, true), Wire::Plain);
    assert_eq!(choose_wire(Compress::None, true, far, true), Wire::Plain);
    // The copy must shrink the file to 90% or less.
    assert!(pays(24_000_000, 9_100_000));
    assert!(pays(1000, 900));
    assert!(!pays(1000, 901));
    assert!(!pays(1000, 1020));
    assert!(!pays(0, 20));
    assert_eq!("auto".parse(), Ok(Compress::Auto));
    assert_eq!("none".parse(), Ok(Compress::None));
    assert!("zstd"
        .parse::<Compress>()
        .unwrap_err()
        .contains("auto, gzip or none"));
}

/// The gzip copy unpacks to the file, and a file changed since the run read
/// it is refused rather than sent.
#[test]
fn the_packed_copy_is_the_file_and_notices_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etcd");
    let data = awkward_data();
    std::fs::write(&path, &data).unwrap();
    let payload = Payload::read(&path).unwrap();
    assert_eq!(payload.len, data.len() as u64);
    assert_eq!(payload.sha256, hex::encode(Sha256::digest(&data)));
    let packed = pack(&payload).unwrap();
    let mut stream = vec![0u8; packed.len as usize];
    packed.file.read_exact_at(&mut stream, 0).unwrap();
    let mut back = Vec::new();
    flate2::read::GzDecoder::new(&stream[..])
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, data);
    std::fs::write(&path, b"another binary").unwrap();
    assert_eq!(
        pack(&payload).err().unwrap(),
        format!(
            "{} changed on this machine since the run read it: run again",
            path.display()
        )
    );
}
