//! Evidence keys and signed checkpoints, as the state machine applies them.

use ed25519_dalek::{Signer, SigningKey};

use crate::test_world::World;
use crate::{AuditLog, CHECKPOINT_ACTION, Command, EvidenceKey, Outcome, SignedCheckpoint};

const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

fn key(generation: u32, signing: &SigningKey) -> EvidenceKey {
    EvidenceKey {
        generation,
        public_key_hex: dsops_proto::hex(&signing.verifying_key().to_bytes()),
        certificate_pem: CERT.to_owned(),
        registered_at_ms: 0,
    }
}

/// A checkpoint of the current head signed by `signing` as `generation`.
fn signed(world: &World, generation: u32, signing: &SigningKey) -> SignedCheckpoint {
    let head = world.state.audit.head();
    let mut checkpoint = SignedCheckpoint {
        generation,
        seq: head.seq,
        hash: head.hash,
        at_ms: head.at_ms,
        signature_hex: String::new(),
    };
    checkpoint.signature_hex = dsops_proto::hex(&signing.sign(&checkpoint.message()).to_bytes());
    checkpoint
}

fn rejected(outcome: &Outcome, needle: &str) -> bool {
    matches!(outcome, Outcome::Rejected { message, .. } if message.contains(needle))
}

#[test]
fn checkpoints_sign_the_chain_head_into_the_chain_and_refuse_what_does_not_match() {
    let mut world = World::new();
    let first = SigningKey::from_bytes(&[1; 32]);
    // No key yet: refused.
    let early = signed(&world, 1, &first);
    let outcome = world.apply(Command::Checkpoint { checkpoint: early });
    assert!(rejected(&outcome, "no evidence key"), "{outcome:?}");
    let outcome = world.apply(Command::RegisterEvidenceKey { key: key(1, &first) });
    assert!(matches!(outcome, Outcome::Audited { .. }), "{outcome:?}");
    // The same key again is a no-op; another key for the generation, or an older one, is not.
    let again = world.apply(Command::RegisterEvidenceKey { key: key(1, &first) });
    assert!(matches!(again, Outcome::Audited { .. }), "{again:?}");
    let other = SigningKey::from_bytes(&[2; 32]);
    assert!(rejected(
        &world.apply(Command::RegisterEvidenceKey { key: key(1, &other) }),
        "holds another key"
    ));
    assert!(rejected(
        &world.apply(Command::RegisterEvidenceKey { key: key(0, &other) }),
        "is not after 1"
    ));
    let mut bad = key(5, &other);
    bad.public_key_hex = "zz".into();
    assert!(rejected(&world.apply(Command::RegisterEvidenceKey { key: bad }), "not an Ed25519"));

    // A good checkpoint lands in the chain; the chain still verifies.
    let good = signed(&world, 1, &first);
    let covered = good.seq;
    let outcome = world.apply(Command::Checkpoint { checkpoint: good.clone() });
    let Outcome::Audited { seq } = outcome else { panic!("{outcome:?}") };
    assert_eq!(seq, covered + 1);
    let events = world.state.audit.events();
    let event = events.last().unwrap();
    assert_eq!(event.action, CHECKPOINT_ACTION);
    let read = SignedCheckpoint::from_detail(&event.detail).expect("a checkpoint detail");
    assert_eq!(read, good);
    read.verify(&world.state.evidence_keys[&1].public_key_hex).unwrap();
    AuditLog::verify(&events).unwrap();
    // Replayed (a new leader with an old view): refused.
    assert!(rejected(&world.apply(Command::Checkpoint { checkpoint: good }), "already"));

    // A heartbeat with nothing new covers the checkpoint event itself.
    let heartbeat = signed(&world, 1, &first);
    assert_eq!(heartbeat.seq, seq);
    assert!(matches!(
        world.apply(Command::Checkpoint { checkpoint: heartbeat }),
        Outcome::Audited { .. }
    ));

    // A wrong hash, a wrong signer, a tampered signature: refused.
    let mut wrong = signed(&world, 1, &first);
    wrong.hash = "00".repeat(32);
    assert!(rejected(&world.apply(Command::Checkpoint { checkpoint: wrong }), "does not match"));
    let forged = signed(&world, 1, &other);
    assert!(rejected(&world.apply(Command::Checkpoint { checkpoint: forged }), "does not verify"));

    // After a rotation the new generation signs, the old one no longer does, and the old
    // checkpoints still verify with the key registered for them.
    assert!(matches!(
        world.apply(Command::RegisterEvidenceKey { key: key(2, &other) }),
        Outcome::Audited { .. }
    ));
    let stale = signed(&world, 1, &first);
    assert!(rejected(&world.apply(Command::Checkpoint { checkpoint: stale }), "generation 2"));
    let rotated = signed(&world, 2, &other);
    assert!(matches!(
        world.apply(Command::Checkpoint { checkpoint: rotated }),
        Outcome::Audited { .. }
    ));
    for event in world.state.audit.events().iter().filter(|e| e.action == CHECKPOINT_ACTION) {
        let checkpoint = SignedCheckpoint::from_detail(&event.detail).unwrap();
        let key = &world.state.evidence_keys[&checkpoint.generation];
        checkpoint.verify(&key.public_key_hex).unwrap();
    }
}
