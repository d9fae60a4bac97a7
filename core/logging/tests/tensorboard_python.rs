//! Writes an event file and has TensorBoard itself read it back (`check_tensorboard.py`, using
//! `tensorboard.backend.event_processing.event_accumulator`). The Python half runs when
//! `NNUNET_TB_PYTHON` names a Python interpreter with `tensorboard` installed, e.g.
//! `python3 -m venv /tmp/tbvenv && /tmp/tbvenv/bin/pip install tensorboard`; otherwise only the Rust decoder
//! checks the file.

use nnunet_logging::tensorboard::{EventWriter, event_file_name, read_events};
use std::path::Path;

/// (step, value, wall_time) per tag
type Expected = Vec<(&'static str, Vec<(i64, f32, f64)>)>;

#[test]
fn tensorboard_reads_our_event_file() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_714_557_600.0f64;
    let mut w = EventWriter::create(dir.path(), &event_file_name(t0 as u64, "testhost"), t0).unwrap();
    let mut expected: Expected = vec![("train_loss", vec![]), ("val_loss", vec![]), ("lr", vec![]), ("dice/ema", vec![])];
    for step in 0..50i64 {
        let wall = t0 + 1.25 + step as f64 * 37.5;
        let values = [
            -0.8 * (1.0 - (-(step as f32) / 10.0).exp()),
            -0.7 + 0.001 * step as f32,
            0.01 * (1.0 - step as f32 / 50.0).powf(0.9),
            0.1 + 0.3 / 7.0 * step as f32,
        ];
        w.add_scalar_at(expected[0].0, values[0], step, wall).unwrap();
        w.add_scalars_at(&[(expected[1].0, values[1]), (expected[2].0, values[2])], step, wall + 0.5).unwrap();
        w.add_scalar_at(expected[3].0, values[3], step, wall + 0.75).unwrap();
        expected[0].1.push((step, values[0], wall));
        expected[1].1.push((step, values[1], wall + 0.5));
        expected[2].1.push((step, values[2], wall + 0.5));
        expected[3].1.push((step, values[3], wall + 0.75));
    }
    let path = w.path().to_path_buf();
    drop(w);
    assert!(path.file_name().unwrap().to_str().unwrap().starts_with("events.out.tfevents.1714557600.testhost"));

    // our own decoder (CRCs checked)
    let events = read_events(&path).unwrap();
    assert_eq!(events.len(), 1 + 3 * 50);
    assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));

    let Some(python) = std::env::var_os("NNUNET_TB_PYTHON") else {
        eprintln!("NNUNET_TB_PYTHON not set: TensorBoard's reader not run");
        return;
    };
    let json: Vec<String> = expected
        .iter()
        .map(|(tag, rows)| {
            let rows: Vec<String> = rows.iter().map(|(s, v, t)| format!("[{s}, {}, {}]", *v as f64, t)).collect();
            format!("\"{tag}\": [{}]", rows.join(", "))
        })
        .collect();
    let expected_path = dir.path().join("expected.json");
    std::fs::write(&expected_path, format!("{{{}}}", json.join(", "))).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check_tensorboard.py");
    let out = std::process::Command::new(python).arg(&script).arg(&path).arg(&expected_path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "TensorBoard disagrees: {stdout}");
    assert!(stdout.contains("4 tags, 200 scalars match"));
}
