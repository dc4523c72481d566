//! The file store on a temporary directory: sealing, labels, permissions and damage.

use super::*;
use crate::envelope::Unsealed;

fn open(dir: &Path) -> FileStore {
    let options = FileStoreOptions { dir: dir.join("items"), key_file: dir.join("keys/local.key") };
    FileStore::open("local", &options).unwrap()
}

fn one(field: &str, text: &str) -> Fields {
    Fields::from([(field.to_owned(), SecretValue::new(text.to_owned()))])
}

fn current(store: &FileStore, entry: &str, field: &str) -> Option<String> {
    store
        .read(entry, Label::Current)
        .unwrap()
        .and_then(|f| f.get(field).map(|v| v.expose().to_owned()))
}

#[test]
fn stage_promote_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(store.read("app/db", Label::Current).unwrap().is_none());
    store.put("app/db", "password", &SecretValue::new("first".to_owned())).unwrap();
    store.put("app/db", "username", &SecretValue::new("app_a".to_owned())).unwrap();
    let (_, staged) = store.stage("app/db", "run-1", &one("password", "second")).unwrap();
    assert_eq!(staged["password"].expose(), "second");
    assert_eq!(staged["username"].expose(), "app_a", "other fields are carried over");
    // A retried stage keeps the first staged value, whatever it is given.
    let (_, again) = store.stage("app/db", "run-1", &one("password", "other")).unwrap();
    assert_eq!(again["password"].expose(), "second");
    assert!(matches!(
        store.stage("app/db", "run-2", &one("password", "x")),
        Err(StoreError::PendingConflict { .. })
    ));
    let conflict = store.put("app/db", "password", &SecretValue::new("x".to_owned())).unwrap_err();
    assert_eq!(
        conflict.to_string(),
        "store://local/app/db: a pending value of run run-1 is staged; it must be promoted or discarded first"
    );
    assert_eq!(current(&store, "app/db", "password").as_deref(), Some("first"));
    store.promote("app/db", "run-1").unwrap();
    store.promote("app/db", "run-1").unwrap();
    assert_eq!(current(&store, "app/db", "password").as_deref(), Some("second"));
    let previous = store.read("app/db", Label::Previous).unwrap().unwrap();
    assert_eq!(previous["password"].expose(), "first");
    assert!(store.read("app/db", Label::Pending).unwrap().is_none());
    // Staging again after promotion (a retried stage of a finished run) changes nothing.
    let (info, kept) = store.stage("app/db", "run-1", &one("password", "third")).unwrap();
    assert_eq!(kept["password"].expose(), "second");
    assert_eq!(info.labels, vec![Label::Current]);
    let versions = store.versions("app/db").unwrap();
    assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), vec![3, 2, 1]);
    assert_eq!(
        store.fingerprinter().fingerprint(&SecretValue::new("second".to_owned())),
        versions[0].fingerprints["password"]
    );
    assert!(matches!(store.promote("app/db", "run-9"), Err(StoreError::Missing { .. })));
}

#[test]
fn discard_only_drops_its_own_pending() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.put("a", "f", &SecretValue::new("v1".to_owned())).unwrap();
    store.stage("a", "run-1", &one("f", "v2")).unwrap();
    store.discard("a", "run-2").unwrap();
    assert!(store.read("a", Label::Pending).unwrap().is_some());
    store.discard("a", "run-1").unwrap();
    store.discard("a", "run-1").unwrap();
    assert!(store.read("a", Label::Pending).unwrap().is_none());
    assert_eq!(current(&store, "a", "f").as_deref(), Some("v1"));
}

#[test]
fn files_are_encrypted_private_and_bound_to_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.put("app/jwt", "key", &SecretValue::new("canary-value-0123456789".to_owned())).unwrap();
    let shards = fs::read_dir(dir.path().join("items")).unwrap();
    for path in
        shards.flat_map(|s| fs::read_dir(s.unwrap().path()).unwrap()).map(|f| f.unwrap().path())
    {
        let bytes = fs::read(&path).unwrap();
        assert!(!bytes.windows(6).any(|w| w == b"canary"), "{}", path.display());
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let key_mode = fs::metadata(dir.path().join("keys/local.key")).unwrap().permissions().mode();
    assert_eq!(key_mode & 0o777, 0o600);
    // Another key cannot read it.
    fs::remove_file(dir.path().join("keys/local.key")).unwrap();
    let other = open(dir.path());
    let error = other.read("app/jwt", Label::Current).unwrap_err().to_string();
    assert!(error.contains("cannot decrypt"), "{error}");
}

#[test]
fn a_loose_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path());
    let key = dir.path().join("keys/local.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let options = FileStoreOptions { dir: dir.path().join("items"), key_file: key };
    let error = FileStore::open("local", &options).unwrap_err();
    assert!(error.to_string().contains("chmod 600"), "{error}");
}

#[test]
fn old_versions_are_pruned_but_labels_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for n in 0..20 {
        store.put("a", "f", &SecretValue::new(format!("v{n}"))).unwrap();
    }
    let versions = store.versions("a").unwrap();
    assert_eq!(versions.len(), KEEP_UNLABELLED + 2);
    assert_eq!(versions[0].labels, vec![Label::Current]);
    assert_eq!(versions[1].labels, vec![Label::Previous]);
    assert_eq!(store.list().unwrap().len(), 1);
}

/// The paths of `entry`'s slot files (A, B).
fn slot_paths(dir: &Path, entry: &str) -> (PathBuf, PathBuf) {
    let (shard, name) = FileStore::file_name(entry);
    let shard = dir.join("items").join(shard);
    (shard.join(&name), shard.join(format!("{name}.b")))
}

fn generation(path: &Path) -> u64 {
    let bytes = fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"DSOPSIT2", "{}", path.display());
    u64::from_le_bytes(bytes[8..16].try_into().unwrap())
}

fn put(store: &FileStore, entry: &str, text: &str) {
    store.put(entry, "f", &SecretValue::new(text.to_owned())).unwrap();
}

#[test]
fn writes_alternate_between_two_slots() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b) = slot_paths(dir.path(), "app/db");
    put(&store, "app/db", "v1");
    assert_eq!(generation(&a), 1);
    assert_eq!(fs::metadata(&b).unwrap().len(), 0, "slot B is created empty with the entry");
    assert_eq!(fs::metadata(&b).unwrap().permissions().mode() & 0o777, 0o600);
    put(&store, "app/db", "v2");
    assert_eq!((generation(&a), generation(&b)), (1, 2));
    put(&store, "app/db", "v3");
    assert_eq!((generation(&a), generation(&b)), (3, 2));
    // A long value grows the slot; shorter ones after it leave a tail the header excludes.
    put(&store, "app/db", &"x".repeat(20_000));
    put(&store, "app/db", "v5");
    put(&store, "app/db", "v6");
    assert!(fs::metadata(&b).unwrap().len() > 20_000);
    assert_eq!(current(&store, "app/db", "f").as_deref(), Some("v6"));
    assert_eq!(store.read("app/db", Label::Previous).unwrap().unwrap()["f"].expose(), "v5");
    assert_eq!(store.list().unwrap().len(), 1, "two slots, one entry");
    // Reads change nothing; a store opened again reads the same.
    store.read_labels("app/db").unwrap();
    assert_eq!((generation(&a), generation(&b)), (5, 6));
    assert_eq!(current(&open(dir.path()), "app/db", "f").as_deref(), Some("v6"));
    // The older slot removed by hand: the next write creates it again.
    fs::remove_file(&a).unwrap();
    put(&store, "app/db", "v7");
    assert_eq!(generation(&a), 7);
    assert_eq!(store.read("app/db", Label::Previous).unwrap().unwrap()["f"].expose(), "v6");
}

#[test]
fn a_torn_write_leaves_the_newest_acknowledged_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b) = slot_paths(dir.path(), "app/db");
    put(&store, "app/db", "v1");
    put(&store, "app/db", "v2");
    // A crash while generation 3 went into slot A: its header written, its body half old.
    let mut torn = fs::read(&a).unwrap();
    torn[8..16].copy_from_slice(&3u64.to_le_bytes());
    // The sealed part starts after the header (20 bytes), its magic and nonce (20 more).
    torn[48..64].fill(0xA5);
    fs::write(&a, &torn).unwrap();
    assert_eq!(current(&store, "app/db", "f").as_deref(), Some("v2"));
    assert_eq!(store.read("app/db", Label::Previous).unwrap().unwrap()["f"].expose(), "v1");
    // The next write goes into the torn slot again, never over the newest one.
    let newest = fs::read(&b).unwrap();
    put(&store, "app/db", "v3");
    assert_eq!(fs::read(&b).unwrap(), newest);
    assert_eq!(generation(&a), 3);
    assert_eq!(current(&store, "app/db", "f").as_deref(), Some("v3"));
    // Cut short instead: shorter than its header says, or nothing but zeros yet.
    let whole = fs::read(&b).unwrap();
    fs::write(&b, &whole[..40]).unwrap();
    assert_eq!(current(&store, "app/db", "f").as_deref(), Some("v3"));
    fs::write(&b, vec![0u8; 4096]).unwrap();
    assert_eq!(current(&store, "app/db", "f").as_deref(), Some("v3"));
    put(&store, "app/db", "v4");
    assert_eq!((generation(&a), generation(&b)), (3, 4));
    assert_eq!(current(&store, "app/db", "f").as_deref(), Some("v4"));
}

#[test]
fn damage_to_every_slot_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b) = slot_paths(dir.path(), "app/db");
    put(&store, "app/db", "v1");
    put(&store, "app/db", "v2");
    // Swapped slots do not open: each is sealed with its own name.
    let (bytes_a, bytes_b) = (fs::read(&a).unwrap(), fs::read(&b).unwrap());
    fs::write(&a, &bytes_b).unwrap();
    fs::write(&b, &bytes_a).unwrap();
    let error = store.read("app/db", Label::Current).unwrap_err().to_string();
    assert!(error.contains(&*a.to_string_lossy()) && error.contains("cannot decrypt"), "{error}");
    assert!(store.put("app/db", "f", &SecretValue::new("v3".to_owned())).is_err());
    assert_eq!(fs::read(&a).unwrap(), bytes_b, "a refused write changes nothing");
    fs::write(&a, b"something else entirely").unwrap();
    let error = store.read("app/db", Label::Current).unwrap_err().to_string();
    assert!(error.contains("not a dsops store file"), "{error}");
}

/// Writes `entry` as the previous layout did: one file, magic `DSOPSIT1`, sealed whole.
fn plant_previous_layout(dir: &Path, store: &FileStore, entry: &str, json: &str) {
    let (a, _) = slot_paths(dir, entry);
    fs::create_dir_all(a.parent().unwrap()).unwrap();
    let name = a.file_name().unwrap().to_string_lossy().into_owned();
    let mut plain = Zeroizing::new(json.as_bytes().to_vec());
    let sealed =
        crate::envelope::seal(&store.key, b"DSOPSIT1", name.as_bytes(), &mut plain).unwrap();
    fs::write(&a, sealed).unwrap();
}

#[test]
fn entries_of_the_previous_layout_are_read_and_converted_on_their_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b) = slot_paths(dir.path(), "app/old");
    let fingerprint = store.fingerprinter().fingerprint(&SecretValue::new("kept".to_owned()));
    let json = format!(
        r#"{{"path":"app/old","next_version":8,"versions":[{{"version":7,"fields":{{"f":"kept"}},"fingerprints":{{"f":"{fingerprint}"}},"created_at_ms":1,"run_id":""}}],"labels":{{"current":7}}}}"#
    );
    plant_previous_layout(dir.path(), &store, "app/old", &json);
    // A slot B of this entry left beside it (restored with an older backup, say), claiming a
    // later generation than the converted file will have, does not outrank it.
    let newer = tempfile::tempdir().unwrap();
    fs::create_dir_all(newer.path().join("keys")).unwrap();
    fs::copy(dir.path().join("keys/local.key"), newer.path().join("keys/local.key")).unwrap();
    let other = open(newer.path());
    for n in 0..4 {
        put(&other, "app/old", &format!("stray {n}"));
    }
    let (_, other_b) = slot_paths(newer.path(), "app/old");
    assert_eq!(generation(&other_b), 4);
    fs::copy(&other_b, &b).unwrap();
    assert_eq!(current(&store, "app/old", "f").as_deref(), Some("kept"));
    assert_eq!(store.versions("app/old").unwrap()[0].version, 7);
    assert_eq!(store.list().unwrap()["app/old"].len(), 1);
    put(&store, "app/old", "new");
    assert_eq!(generation(&a), 1);
    assert_eq!(fs::metadata(&b).unwrap().len(), 0, "the stray slot is emptied");
    assert_eq!(current(&store, "app/old", "f").as_deref(), Some("new"));
    assert_eq!(store.read("app/old", Label::Previous).unwrap().unwrap()["f"].expose(), "kept");
    assert_eq!(store.versions("app/old").unwrap()[0].version, 8);
    // A release before the slots meets a file it refuses, not a missing entry.
    let mut bytes = fs::read(&a).unwrap();
    let name = a.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        crate::envelope::open(&store.key, b"DSOPSIT1", name.as_bytes(), &mut bytes).unwrap_err(),
        Unsealed::NotOurs
    );
}

#[test]
fn a_first_write_cut_short_leaves_no_entry_and_the_next_one_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b) = slot_paths(dir.path(), "app/new");
    // Left by crashes before the first write was acknowledged: an empty slot A, and a
    // half-written copy beside it that was never renamed into place.
    fs::create_dir_all(a.parent().unwrap()).unwrap();
    fs::write(&a, b"").unwrap();
    let mut temp = a.clone().into_os_string();
    temp.push(".tmp");
    fs::write(&temp, b"DSOPSIT2\x01\0\0\0\0\0\0\0\xff\xff").unwrap();
    assert!(store.read("app/new", Label::Current).unwrap().is_none());
    put(&store, "app/new", "v1");
    assert_eq!(current(&store, "app/new", "f").as_deref(), Some("v1"));
    assert_eq!(generation(&a), 1);
    assert_eq!(fs::metadata(&b).unwrap().len(), 0);
    assert!(!Path::new(&temp).exists(), "the copy was renamed into place");
}

#[test]
fn after_a_failed_write_the_durable_slot_is_read_and_kept_until_a_write_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b) = slot_paths(dir.path(), "app/db");
    put(&store, "app/db", "v1");
    put(&store, "app/db", "v2");
    let durable = fs::read(&b).unwrap();
    // Generation 3 reaches slot A (the page cache, here the file) and its flush fails.
    slots::FAIL_NEXT_SYNC.with(|fail| fail.set(true));
    let error = store.stage("app/db", "run-1", &one("f", "v3")).unwrap_err();
    assert!(error.to_string().contains("Input/output error"), "{error}");
    assert_eq!(generation(&a), 3, "the failed write is visible in the file");
    // This process reads slot B, the newest it knows to be durable: no pending value.
    assert!(store.read("app/db", Label::Pending).unwrap().is_none());
    assert_eq!(current(&store, "app/db", "f").as_deref(), Some("v2"));
    assert_eq!(store.list().unwrap().len(), 1);
    // The retried write goes into slot A again; slot B, the only durable copy, is untouched.
    let (_, staged) = store.stage("app/db", "run-1", &one("f", "v3 again")).unwrap();
    assert_eq!(staged["f"].expose(), "v3 again");
    assert_eq!(fs::read(&b).unwrap(), durable);
    assert_eq!(generation(&a), 3);
    // Once a write succeeded the slots alternate again, and another process reads the same.
    store.promote("app/db", "run-1").unwrap();
    assert_eq!((generation(&a), generation(&b)), (3, 4));
    assert_eq!(current(&open(dir.path()), "app/db", "f").as_deref(), Some("v3 again"));
}

#[test]
fn a_failed_write_into_the_only_slot_left_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b) = slot_paths(dir.path(), "app/db");
    put(&store, "app/db", "v1");
    put(&store, "app/db", "v2");
    slots::FAIL_NEXT_SYNC.with(|fail| fail.set(true));
    store.stage("app/db", "run-1", &one("f", "v3")).unwrap_err();
    // Slot B, the durable one, is then damaged: nothing this process trusts is left, and the
    // entry is not taken for a new one (whose first write would replace slot A).
    fs::write(&b, vec![0u8; 4096]).unwrap();
    let error = store.read("app/db", Label::Current).unwrap_err().to_string();
    assert!(error.starts_with(&b.display().to_string()), "{error}");
    assert!(error.contains("an earlier write of"), "{error}");
    assert!(store.put("app/db", "f", &SecretValue::new("x".to_owned())).is_err());
    assert_eq!(generation(&a), 3, "slot A is not replaced");
}
