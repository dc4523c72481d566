//! The file store on a temporary directory: sealing, labels, permissions and damage.

use super::*;

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
