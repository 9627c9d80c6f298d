//! Issue 12, attacks 3 and 4: hostile removable media against the real `sluice-recv import`
//! (and, after it, the real `listen` on the same store), under the public default link key, the
//! key a medium-handing attacker can tag volume headers and frames with.
//!
//! 3. A 4 KiB sparse volume whose tagged header claims 1 GiB of records (and two variants: a
//!    tiny object claiming 1 GiB of records, and a volume of validly tagged forged frames larger
//!    than the media quota). Bound: nothing of them is staged (`staging/media` within the media
//!    quota, here 8 MiB, and in fact empty), no record is written for them, and a real bundle
//!    imported in the same run, then one sent to `listen` after a restart, are accepted
//!    byte-identical.
//! 4. A junk "volume 2" with another frame length for a real object id, staged first (junk
//!    records and a few validly tagged forged ones). Bound: the junk records are not staged,
//!    the forged copy stays below the real volumes' records, and importing both genuine volumes
//!    (run twice, as the issue did) accepts the real bundle byte-identical, then records one
//!    duplicate.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use sluice_common::spool::{HEADER_LEN, VolumeHeader};
use sluice_common::transport::params::ObjectParams;
use sluice_common::transport::wire::{self, LinkKey};
use sluice_tests::attack::{
    Rig, SignedBundle, Signer, data_frame, disk_usage, resend_until, seeded_bytes,
};
use sluice_tests::store::{audit_records, quarantine_ids, rejected_records};
use sluice_tests::{output_text, run_with_deadline};

/// The media quota the attacks run against (`import --media-quota 8MiB`).
const MEDIA_QUOTA: u64 = 8 << 20;
const SYMBOL: u16 = 1024;
const BLOCK: u32 = 64 * 1024;

/// A real bundle (a 300 000-byte seeded file and a readme) with 40 % repair symbols: its files,
/// bytes and data frames as a real `Sender` makes them.
fn real_bundle(signer: &Signer, seed: u64, sequence: u64) -> SignedBundle {
    let files = vec![
        ("data/a.bin".to_string(), seeded_bytes(seed, 300_000)),
        (
            "readme.txt".to_string(),
            format!("real {seed}\n").into_bytes(),
        ),
    ];
    SignedBundle::with_overhead(signer, "updates", sequence, files, 40)
}

/// The data frames of `real` spread over `count` volumes as `sluice-send media` does
/// (`(block + esi) mod count`), each written to `dir/vol-<i>.sluicevol`.
fn write_volumes(real: &SignedBundle, dir: &Path, count: u16) -> Vec<PathBuf> {
    let key = LinkKey::public_default();
    let mut per: Vec<Vec<Vec<u8>>> = vec![Vec::new(); usize::from(count)];
    for f in &real.frames {
        if let Ok(wire::Frame::Data(d)) = wire::decode(&key, f) {
            let i = (u64::from(d.header.block) + u64::from(d.header.esi)) % u64::from(count);
            per[i as usize].push(f.clone());
        }
    }
    std::fs::create_dir_all(dir).unwrap();
    per.iter()
        .enumerate()
        .map(|(i, records)| {
            let path = dir.join(format!("vol-{}.sluicevol", i + 1));
            let header = VolumeHeader {
                volume_index: i as u16,
                volume_count: count,
                object_id: real.object_id(),
                object_len: real.bytes.len() as u64,
                frame_len: records[0].len() as u32,
                frame_count: records.len() as u64,
            };
            write_volume(&path, &header, records, None);
            path
        })
        .collect()
}

/// A volume: its tagged header (public key), `records`, and with `sparse_len` the file extended
/// (a hole, no blocks) to that length.
fn write_volume(path: &Path, header: &VolumeHeader, records: &[Vec<u8>], sparse_len: Option<u64>) {
    let mut bytes = header.encode(LinkKey::public_default().as_bytes()).to_vec();
    for r in records {
        bytes.extend_from_slice(r);
    }
    std::fs::write(path, &bytes).unwrap();
    if let Some(len) = sparse_len {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(len)
            .unwrap();
    }
}

/// Validly tagged (public key) data frames of an object nobody sent: `blocks` × `per_block`.
fn forged_frames(params: ObjectParams, blocks: u32, per_block: u32) -> Vec<Vec<u8>> {
    let payload = vec![0x5Au8; usize::from(params.symbol_size)];
    let mut out = Vec::new();
    for b in 0..blocks {
        for e in 0..per_block {
            out.push(data_frame(
                &LinkKey::public_default(),
                params,
                b,
                e,
                &payload,
            ));
        }
    }
    out
}

/// What these attacks do with the shared attack rig: import media into its store, and look at
/// what import left staged.
trait MediaRig {
    fn import(&self, paths: &[&Path]) -> Output;
    fn staged_media(&self) -> (u64, Vec<String>);
}

impl MediaRig for Rig {
    fn import(&self, paths: &[&Path]) -> Output {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("import")
            .arg("--store")
            .arg(self.store())
            .arg("--trust")
            .arg(&self.signer.trust)
            .arg("--media-quota")
            .arg(format!("{}MiB", MEDIA_QUOTA >> 20))
            // The attacks are made with the public default key, as an attacker without the
            // site's secret would make them; import only reads it with this flag.
            .arg("--insecure-public-link-key")
            .args(paths);
        run_with_deadline(&mut cmd, Duration::from_secs(600))
    }

    /// Bytes allocated under staging/media (st_blocks), and the names staged there.
    fn staged_media(&self) -> (u64, Vec<String>) {
        let media = self.store().join("staging/media");
        let mut names = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&media) {
            for obj in rd.flatten() {
                for v in std::fs::read_dir(obj.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    names.push(format!(
                        "{}/{}",
                        obj.file_name().to_string_lossy(),
                        v.file_name().to_string_lossy()
                    ));
                }
            }
        }
        (disk_usage(&media), names)
    }
}

#[test]
fn attack3_sparse_volume_claiming_a_gigabyte_stages_nothing_and_real_bundles_land() {
    let rig = Rig::new();
    let hostile = rig.tmp.subdir("hostile");
    let frame_len = wire::data_frame_len(SYMBOL) as u32;
    let gib_of_records = (1u64 << 30) / u64::from(frame_len);
    // Exactly the volume: a tagged header claiming 1 GiB of records, 4 KiB on disk.
    let sparse = VolumeHeader {
        volume_index: 0,
        volume_count: 1,
        object_id: [0xA3; 16],
        object_len: 1 << 30,
        frame_len,
        frame_count: gib_of_records,
    };
    // The same claim for a 4 KiB object: implausible, refused before a record is read.
    let tiny = VolumeHeader {
        object_id: [0xA4; 16],
        object_len: 4096,
        ..sparse
    };
    let claimed_len = HEADER_LEN as u64 + gib_of_records * u64::from(frame_len);
    for (name, header) in [("sparse.sluicevol", &sparse), ("tiny.sluicevol", &tiny)] {
        write_volume(&hostile.join(name), header, &[], Some(claimed_len));
    }
    // Validly tagged forged frames (the public key makes that possible), 12 MiB of them: over
    // the 8 MiB media quota.
    let forged_params = ObjectParams {
        object_id: [0xF0; 16],
        object_len: 64 << 20,
        block_size: BLOCK,
        symbol_size: SYMBOL,
    };
    let forged = forged_frames(forged_params, 190, 64);
    write_volume(
        &hostile.join("forged.sluicevol"),
        &VolumeHeader {
            object_id: [0xF0; 16],
            object_len: 64 << 20,
            frame_count: forged.len() as u64,
            ..sparse
        },
        &forged,
        None,
    );
    let real = real_bundle(&rig.signer, 3, 1);
    let vols = write_volumes(&real, &rig.tmp.subdir("real"), 2);

    // One import run: the hostile medium and the real one together.
    let out = rig.import(&[&hostile, &vols[0], &vols[1]]);
    let all = output_text(&out);
    eprintln!("{all}");
    // 3: hostile inputs skipped; the real bundle complete.
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(all.contains("complete: bundle"), "{all}");
    assert!(all.contains("none of its"), "sparse volume refusal: {all}");
    assert!(
        all.contains("more than any volume"),
        "implausible claim: {all}"
    );
    assert!(all.contains("media staging quota exceeded"), "quota: {all}");
    real.assert_in_quarantine(&rig.store());
    // Staging reserved: within the media quota, and nothing of the attack is left.
    let (bytes, names) = rig.staged_media();
    assert!(bytes <= MEDIA_QUOTA, "{bytes} bytes staged");
    assert!(names.is_empty(), "left staged: {names:?}");
    // Records written: the one acceptance; nothing for the attack.
    let audit = audit_records(&rig.store());
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].outcome, "accepted");
    assert!(rejected_records(&rig.store()).is_empty());

    // The same medium again: still nothing staged, nothing recorded.
    let out = rig.import(&[&hostile]);
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    assert!(rig.staged_media().1.is_empty());
    assert_eq!(audit_records(&rig.store()).len(), 1);

    // After a restart, `listen` on the same store accepts a real bundle sent over UDP.
    let second = real_bundle(&rig.signer, 4, 2);
    let mut listener = rig.listen(&[]);
    let id = second.id();
    let accepted = resend_until(listener.addr, &second.frames, 20, || {
        quarantine_ids(&rig.store()).contains(&id).then_some(())
    });
    assert!(accepted.is_some(), "listener log: {}", listener.log_tail());
    second.assert_in_quarantine(&rig.store());
    assert!(listener.alive());
    listener.kill();
}

#[test]
fn attack4_junk_volume_two_with_another_frame_length_does_not_block_the_real_bundle() {
    let rig = Rig::new();
    let real = real_bundle(&rig.signer, 5, 1);
    let vols = write_volumes(&real, &rig.tmp.subdir("real"), 2);
    let real_records: u64 = vols
        .iter()
        .map(|p| (std::fs::metadata(p).unwrap().len() - HEADER_LEN as u64) / 1082)
        .sum();
    // "Volume 2" of the real object id with another frame length (symbol 2000): junk records
    // around three validly tagged forged frames.
    let junk_dir = rig.tmp.subdir("junk");
    let other_symbol: u16 = 2000;
    let other_frame = wire::data_frame_len(other_symbol);
    let params = ObjectParams {
        object_id: real.object_id(),
        object_len: real.bytes.len() as u64,
        block_size: 64_000,
        symbol_size: other_symbol,
    };
    let mut records = vec![vec![0u8; other_frame]; 40];
    records.extend(forged_frames(params, 1, 3));
    records.extend(vec![vec![0xEEu8; other_frame]; 40]);
    let header = VolumeHeader {
        volume_index: 1,
        volume_count: 2,
        object_id: real.object_id(),
        object_len: real.bytes.len() as u64,
        frame_len: other_frame as u32,
        frame_count: records.len() as u64,
    };
    write_volume(&junk_dir.join("vol-2.sluicevol"), &header, &records, None);
    // A copy of pure junk under the same header: not one record authenticates.
    write_volume(
        &junk_dir.join("vol-2-copy.sluicevol"),
        &header,
        &vec![vec![0u8; other_frame]; 83],
        None,
    );

    // The junk is staged first (the order): only the three authentic records land.
    let out = rig.import(&[&junk_dir]);
    let all = output_text(&out);
    eprintln!("{all}");
    assert!(all.contains("not authenticated frames"), "{all}");
    assert!(all.contains("none of its"), "{all}");
    let (bytes, names) = rig.staged_media();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(bytes <= MEDIA_QUOTA);
    let staged_file = rig.store().join("staging/media").join(&names[0]);
    assert_eq!(
        std::fs::metadata(&staged_file).unwrap().len(),
        HEADER_LEN as u64 + 3 * other_frame as u64,
        "only the authentic records are staged"
    );
    assert!(3 < real_records);

    // Both genuine volumes, run twice: accepted, then a duplicate.
    let out = rig.import(&[&vols[0], &vols[1]]);
    let all = output_text(&out);
    eprintln!("{all}");
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("complete: bundle"), "{all}");
    real.assert_in_quarantine(&rig.store());
    assert!(
        rig.staged_media().1.is_empty(),
        "decided: nothing left staged"
    );
    let out = rig.import(&[&vols[0], &vols[1]]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("duplicate"));
    // Records written: one acceptance and one duplicate, nothing rejected.
    let decisions: Vec<String> = audit_records(&rig.store())
        .into_iter()
        .map(|r| r.outcome)
        .collect();
    assert_eq!(decisions, ["accepted", "duplicate"], "{decisions:?}");
    assert!(rejected_records(&rig.store()).is_empty());
    assert!(rig.staged_media().1.is_empty());
}
