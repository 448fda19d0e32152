//! Fuzzes everything that reads the disk: the input is cut into up to
//! three segment files (the first byte picks whether each gets a valid
//! header) and recovered; the frame, record and snapshot-file decoders get
//! the raw input too. Nothing may panic.

#![no_main]

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use flotilla_wal::format::{SegmentHeader, check_frame, looks_torn};
use flotilla_wal::record::Record;
use flotilla_wal::{Fs, Lsn, MemFs, Options, Wal, segment_name, snapfile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    if let Err(c) = check_frame(rest, 0) {
        let _ = looks_torn(rest, 0, &c);
    }
    let _ = Record::decode(Bytes::copy_from_slice(rest));
    let _ = snapfile::decode(&Bytes::copy_from_slice(rest));
    let fs = MemFs::new();
    let third = rest.len() / 3 + 1;
    for (k, chunk) in rest.chunks(third).enumerate() {
        let seq = k as u64 + 1;
        let mut bytes = Vec::new();
        if flags & (1 << k) != 0 {
            bytes.extend_from_slice(&SegmentHeader { seq, base: Lsn(0) }.encode());
        }
        bytes.extend_from_slice(chunk);
        let Ok(mut f) = fs.create(Path::new(&segment_name(seq))) else {
            return;
        };
        let _ = f.write_all(&bytes);
    }
    if let Ok(wal) = Wal::open_with_fs("/fuzz", Options::default(), Arc::new(fs)) {
        for g in wal.groups() {
            if let Ok(h) = wal.group(g) {
                let (first, last) = (h.first_index(), h.last_index());
                let _ = h.entries(first, last.next());
            }
        }
    }
});
