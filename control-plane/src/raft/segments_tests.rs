#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::ops::Bound;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use super::{Change, HEADER, Segments, read_range, segment_name};

fn entries(segments: &Segments) -> Vec<(u64, Vec<u8>)> {
    read_range(&segments.view(), (Bound::Unbounded, Bound::Unbounded)).unwrap()
}

fn indexes(segments: &Segments) -> Vec<u64> {
    entries(segments).into_iter().map(|(index, _)| index).collect()
}

fn append(segments: &mut Segments, from: u64, to: u64, size: usize) {
    let bodies: Vec<(u64, Vec<u8>)> =
        (from..=to).map(|index| (index, vec![(index % 251) as u8; size])).collect();
    let changes: Vec<Change<'_>> =
        bodies.iter().map(|(index, body)| Change::Entry(*index, body)).collect();
    segments.write(&changes).unwrap();
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".wal"))
        .collect();
    names.sort();
    names
}

#[test]
fn entries_and_metadata_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut segments = Segments::open(dir.path()).unwrap();
        append(&mut segments, 1, 10, 100);
        segments.write(&[Change::Vote(b"vote-1"), Change::Committed(b"c-7")]).unwrap();
        segments.write(&[Change::Truncate(9)]).unwrap();
        append(&mut segments, 9, 12, 50);
        segments.write(&[Change::Purge(3, b"p-3"), Change::Vote(b"vote-2")]).unwrap();
    }
    let segments = Segments::open(dir.path()).unwrap();
    assert_eq!(indexes(&segments), (4..=12).collect::<Vec<_>>());
    let all = entries(&segments);
    assert_eq!(all[0].1, vec![4; 100]);
    assert_eq!(all.last().unwrap().1, vec![12; 50], "the rewritten entries are read back");
    let view = segments.view();
    let view = view.read().unwrap();
    assert_eq!(view.vote(), Some(&b"vote-2"[..]));
    assert_eq!(view.committed(), Some(&b"c-7"[..]));
    assert_eq!(view.purged(), Some(&b"p-3"[..]));
    assert_eq!(view.last_index(), Some(12));
}

/// Overwrites the byte at `at` of the only segment with its complement.
fn flip(dir: &Path, at: u64) {
    let path = dir.join(segment_files(dir).last().unwrap());
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[!byte[0]], at).unwrap();
}

#[test]
fn a_torn_tail_ends_the_log_and_is_never_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let record = (HEADER + 1 + 8 + 100) as u64;
    {
        let mut segments = Segments::open(dir.path()).unwrap();
        append(&mut segments, 1, 5, 100);
    }
    // Entry 4's record torn, entry 5's intact after it.
    flip(dir.path(), 3 * record + HEADER as u64 + 20);
    {
        let mut segments = Segments::open(dir.path()).unwrap();
        assert_eq!(indexes(&segments), vec![1, 2, 3], "the log ends before the torn record");
        // A new entry 4 of the same size lands where the torn one was; entry 5's old record
        // follows it on disk unless recovery cleared it, and its sequence number would fit.
        append(&mut segments, 4, 4, 100);
    }
    let segments = Segments::open(dir.path()).unwrap();
    assert_eq!(indexes(&segments), vec![1, 2, 3, 4], "the old entry 5 must not come back");
}

#[test]
fn a_damaged_older_segment_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut segments = Segments::open_sized(dir.path(), 4096).unwrap();
        for index in 1..=40 {
            append(&mut segments, index, index, 300);
        }
    }
    let files = segment_files(dir.path());
    assert!(files.len() > 2, "small segments fill up: {files:?}");
    let first = std::fs::OpenOptions::new().write(true).open(dir.path().join(&files[0])).unwrap();
    first.write_all_at(b"garbage", HEADER as u64 + 3).unwrap();
    let error = Segments::open(dir.path()).err().expect("a damaged segment is refused");
    assert!(error.to_string().contains(&files[0]), "{error}");
}

#[test]
fn purged_segments_are_deleted_and_the_rest_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut segments = Segments::open_sized(dir.path(), 4096).unwrap();
        segments.write(&[Change::Vote(b"the-vote")]).unwrap();
        for index in 1..=60 {
            append(&mut segments, index, index, 300);
        }
        let before = segment_files(dir.path()).len();
        segments.write(&[Change::Purge(50, b"p-50")]).unwrap();
        let after = segment_files(dir.path()).len();
        assert!(after < before, "{before} segments before the purge, {after} after");
        assert_eq!(indexes(&segments), (51..=60).collect::<Vec<_>>());
    }
    let first = segment_files(dir.path())[0].clone();
    assert_ne!(first, segment_name(1), "the first segment went");
    let segments = Segments::open_sized(dir.path(), 4096).unwrap();
    assert_eq!(indexes(&segments), (51..=60).collect::<Vec<_>>());
    let view = segments.view();
    let view = view.read().unwrap();
    assert_eq!(view.vote(), Some(&b"the-vote"[..]), "each segment repeats the metadata");
    assert_eq!(view.purged(), Some(&b"p-50"[..]));
}

#[test]
fn a_batch_larger_than_a_segment_gets_one_of_its_size() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut segments = Segments::open_sized(dir.path(), 4096).unwrap();
        append(&mut segments, 1, 3, 10_000);
        append(&mut segments, 4, 4, 10);
    }
    let segments = Segments::open_sized(dir.path(), 4096).unwrap();
    assert_eq!(indexes(&segments), vec![1, 2, 3, 4]);
    assert_eq!(entries(&segments)[2].1.len(), 10_000);
}

#[test]
fn a_crash_after_creating_a_segment_leaves_a_log_that_opens() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut segments = Segments::open_sized(dir.path(), 4096).unwrap();
        segments.write(&[Change::Vote(b"the-vote")]).unwrap();
        append(&mut segments, 1, 3, 100);
    }
    // What a crash between creating the next segment and writing to it leaves: zeros.
    let next = dir.path().join(segment_name(5));
    std::fs::write(&next, vec![0u8; 4096]).unwrap();
    {
        let mut segments = Segments::open_sized(dir.path(), 4096).unwrap();
        assert_eq!(indexes(&segments), vec![1, 2, 3]);
        append(&mut segments, 4, 5, 100);
        // A purge past the first segment's entries deletes it: the vote it held must have
        // been repeated at the start of the new one.
        segments.write(&[Change::Purge(4, b"p-4")]).unwrap();
        assert_eq!(segment_files(dir.path()), vec![segment_name(5)]);
    }
    let segments = Segments::open_sized(dir.path(), 4096).unwrap();
    assert_eq!(indexes(&segments), vec![5]);
    let view = segments.view();
    let view = view.read().unwrap();
    assert_eq!(view.vote(), Some(&b"the-vote"[..]), "the vote survives the purge");
}

#[test]
fn records_left_after_a_lost_first_page_are_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let record = (HEADER + 1 + 8 + 100) as u64;
    {
        let mut segments = Segments::open(dir.path()).unwrap();
        append(&mut segments, 1, 5, 100);
    }
    // A batch whose first record never landed but whose second did: zeros, then entry 5.
    let path = dir.path().join(segment_files(dir.path()).pop().unwrap());
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(&vec![0u8; record as usize], 3 * record).unwrap();
    {
        let mut segments = Segments::open(dir.path()).unwrap();
        assert_eq!(indexes(&segments), vec![1, 2, 3]);
        append(&mut segments, 4, 4, 100);
    }
    let segments = Segments::open(dir.path()).unwrap();
    assert_eq!(indexes(&segments), vec![1, 2, 3, 4], "the old entry 5 must not come back");
}

#[test]
fn after_a_failed_write_the_log_takes_no_more() {
    let dir = tempfile::tempdir().unwrap();
    let mut segments = Segments::open_sized(dir.path(), 4096).unwrap();
    append(&mut segments, 1, 1, 10);
    // A record too large to be read back is refused, and so is everything after it.
    let huge = vec![0u8; super::MAX_BODY + 1];
    assert!(segments.write(&[Change::Entry(2, &huge)]).is_err());
    let error = segments.write(&[Change::Entry(2, b"small")]).unwrap_err();
    assert!(error.to_string().contains("restart the node"), "{error}");
}

#[test]
fn a_gap_between_segments_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut segments = Segments::open_sized(dir.path(), 4096).unwrap();
        append(&mut segments, 1, 3, 100);
    }
    std::fs::write(dir.path().join(segment_name(9)), vec![0u8; 4096]).unwrap();
    let error = Segments::open(dir.path()).err().expect("a gap is refused");
    assert!(error.to_string().contains(&segment_name(9)), "{error}");
}
