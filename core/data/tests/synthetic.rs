//! Small synthetic datasets: PNG (NaturalImage2DIO), cases without foreground, errors.

use nnunet_data::io::ImageReaderWriter;
use nnunet_data::natural::NaturalImage2DIo;
use nnunet_data::nifti::{self, NiftiDatatype, SitkGeometry};
use nnunet_data::{Dataset, extract_fingerprint};
use std::path::Path;

fn dataset_json(dir: &Path, ending: &str, n: usize) {
    std::fs::create_dir_all(dir.join("imagesTr")).unwrap();
    std::fs::create_dir_all(dir.join("labelsTr")).unwrap();
    std::fs::write(
        dir.join("dataset.json"),
        format!(
            r#"{{"channel_names": {{"0": "a"}}, "labels": {{"background": 0, "x": 1}}, "numTraining": {n}, "file_ending": "{ending}"}}"#
        ),
    )
    .unwrap();
}

#[test]
fn png_dataset_uses_natural_image_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("Dataset300_Png");
    dataset_json(&dir, ".png", 2);
    for i in 0..2 {
        let img = image::GrayImage::from_fn(9, 7, |x, y| image::Luma([(x * 10 + y + i) as u8]));
        img.save(dir.join(format!("imagesTr/c{i}_0000.png")))
            .unwrap();
        let seg = image::GrayImage::from_fn(9, 7, |x, _| image::Luma([(x > 4) as u8]));
        seg.save(dir.join(format!("labelsTr/c{i}.png"))).unwrap();
    }
    let ds = Dataset::open(&dir).unwrap();
    assert_eq!(ds.image_reader_writer(), "NaturalImage2DIO");
    let d = ds.reader().read_images(&ds.cases[0].images).unwrap();
    assert_eq!(
        (d.channels, d.shape, d.spacing()),
        (1, [1, 7, 9], [999.0, 1.0, 1.0])
    );
    assert_eq!(d.data[1], 10.0); // row 0, column 1
    let fp = extract_fingerprint(&ds, 1, &|_, _| {}).unwrap();
    assert_eq!(fp.spacings, vec![vec![999.0, 1.0, 1.0]; 2]);
    let p = fp.foreground_intensity_properties_per_channel[&0];
    assert!(p.min >= 50.0 && p.max <= 87.0, "{p:?}");
    // write_seg round trip
    let out = tmp.path().join("seg.png");
    let seg: Vec<f32> = (0..63).map(|i| (i % 3) as f32).collect();
    NaturalImage2DIo
        .write_seg(&seg, [1, 7, 9], &out, &d.properties)
        .unwrap();
    assert_eq!(NaturalImage2DIo.read_seg(&out).unwrap().data, seg);
    // RGB → 3 channels
    let rgb = image::RgbImage::from_fn(4, 3, |x, y| image::Rgb([x as u8, y as u8, 7]));
    rgb.save(tmp.path().join("rgb.png")).unwrap();
    let d = NaturalImage2DIo
        .read_images(&[tmp.path().join("rgb.png")])
        .unwrap();
    assert_eq!((d.channels, d.shape), (3, [1, 3, 4]));
    assert_eq!(&d.data[24..36], &[7.0; 12]);
}

fn write(path: &Path, data: &[f32], dtype: NiftiDatatype) {
    nifti::write_nifti(
        path,
        data,
        &[4, 4, 4],
        &SitkGeometry::identity(&[1.0, 1.0, 2.0]),
        dtype,
    )
    .unwrap();
}

#[test]
fn cases_without_foreground_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("Dataset301_Nifti");
    dataset_json(&dir, ".nii.gz", 2);
    let img: Vec<f32> = (0..64).map(|i| 1.0 + i as f32 * 0.5).collect();
    let fg: Vec<f32> = (0..64).map(|i| (i % 2) as f32).collect();
    write(
        &dir.join("imagesTr/a_0000.nii.gz"),
        &img,
        NiftiDatatype::F32,
    );
    write(&dir.join("labelsTr/a.nii.gz"), &fg, NiftiDatatype::U8);
    write(
        &dir.join("imagesTr/b_0000.nii.gz"),
        &img,
        NiftiDatatype::F32,
    );
    write(
        &dir.join("labelsTr/b.nii.gz"),
        &[0.0; 64],
        NiftiDatatype::U8,
    );
    let ds = Dataset::open(&dir).unwrap();
    assert_eq!(ds.identifiers(), ["a", "b"]);
    let fp = extract_fingerprint(&ds, 2, &|_, _| {}).unwrap();
    assert_eq!(fp.shapes_after_crop, vec![vec![4, 4, 4]; 2]);
    assert_eq!(fp.spacings, vec![vec![2.0, 1.0, 1.0]; 2]);
    let p = fp.foreground_intensity_properties_per_channel[&0];
    assert_eq!((p.min, p.max), (1.5, 32.5));
    // no foreground anywhere → a clear error, not a panic
    write(
        &dir.join("labelsTr/a.nii.gz"),
        &[0.0; 64],
        NiftiDatatype::U8,
    );
    let e = extract_fingerprint(&ds, 2, &|_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("foreground"), "{e}");
    // a truncated label → error naming the file
    std::fs::write(dir.join("labelsTr/b.nii.gz"), [0x1f, 0x8b, 8, 0]).unwrap();
    let e = extract_fingerprint(&ds, 2, &|_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("b.nii.gz"), "{e}");
}
