//! The fingerprint of the real datasets equals nnU-Net 2.8.1's `dataset_fingerprint.json`.

mod common;

use nnunet_data::{Dataset, extract_fingerprint};
use nnunet_schema::Fingerprint;
use std::sync::atomic::{AtomicUsize, Ordering};

fn check(name: &str) {
    let (_tmp, dir) = common::extract(name);
    let ds = Dataset::open(&dir).expect("open dataset");
    assert_eq!(ds.image_reader_writer(), "SimpleITKIO");
    let calls = AtomicUsize::new(0);
    let t = std::time::Instant::now();
    let fp = extract_fingerprint(&ds, 2, &|done, total| {
        assert!(done >= 1 && done <= total);
        calls.fetch_add(1, Ordering::SeqCst);
    })
    .expect("fingerprint");
    eprintln!(
        "{name}: {} cases fingerprinted in {:.2?} (2 threads)",
        ds.cases.len(),
        t.elapsed()
    );
    assert_eq!(calls.load(Ordering::SeqCst), ds.cases.len());

    let ref_path = common::fixtures()
        .join(name)
        .join("dataset_fingerprint.json");
    let reference: Fingerprint = nnunet_schema::json::read_json(&ref_path).expect("reference");
    assert_eq!(fp.spacings, reference.spacings, "spacings");
    assert_eq!(
        fp.shapes_after_crop, reference.shapes_after_crop,
        "shapes_after_crop"
    );
    assert_eq!(
        fp.median_relative_size_after_cropping,
        reference.median_relative_size_after_cropping
    );
    // bit-identical intensity statistics
    assert_eq!(
        fp.foreground_intensity_properties_per_channel,
        reference.foreground_intensity_properties_per_channel
    );
    // and byte-identical JSON text
    let text = nnunet_schema::json::to_python_string(&fp).expect("serialise");
    let ref_text = std::fs::read_to_string(&ref_path).expect("read reference");
    assert_eq!(
        text.trim_end(),
        ref_text.trim_end(),
        "dataset_fingerprint.json text differs"
    );
    // written file equals too
    let out = _tmp.path().join("dataset_fingerprint.json");
    nnunet_data::write_fingerprint(&out, &fp).expect("write");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().trim_end(),
        ref_text.trim_end()
    );
}

#[test]
fn hippocampus_220_cases_matches_nnunet() {
    check("Dataset004_Hippocampus");
}

#[test]
fn aniso_ct_matches_nnunet() {
    check("Dataset201_AnisoCT");
}
