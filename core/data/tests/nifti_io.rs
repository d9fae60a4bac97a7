//! NIfTI reading (every datatype, endianness, scaling, 2-D/4-D) and geometry against what SimpleITK
//! 2.5.7 reports. `tests/fixtures/nifti/expected_sitk.json` was produced by SimpleITK from the same
//! files (generator: nibabel 5.4.2; see the test-fixture README).

mod common;

use nnunet_data::io::{ImageReaderWriter, NibabelIo, SimpleItkIo};
use nnunet_data::nifti::{self, NiftiDatatype, SitkGeometry};
use serde_json::Value;
use std::path::Path;

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn every_fixture_matches_simpleitk() {
    let dir = common::fixtures().join("nifti");
    let expected: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected_sitk.json")).unwrap())
            .unwrap();
    assert_eq!(expected.len(), 19);
    for (name, e) in &expected {
        let path = dir.join(name);
        let img = nifti::read_nifti(&path).unwrap_or_else(|err| panic!("{name}: {err}"));
        let geo = img.itk_geometry(&path).unwrap();
        let size: Vec<usize> = e["size"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(img.dims, size, "{name}: size");
        assert_eq!(geo.spacing, f64s(&e["spacing"]), "{name}: spacing");
        assert!(
            close(&geo.origin, &f64s(&e["origin"]), 1e-9),
            "{name}: origin {:?} vs {:?}",
            geo.origin,
            e["origin"]
        );
        assert!(
            close(&geo.direction, &f64s(&e["direction"]), 1e-7),
            "{name}: direction {:?} vs {:?}",
            geo.direction,
            e["direction"]
        );
        let vals: Vec<f32> = f64s(&e["values_c_order"])
            .into_iter()
            .map(|v| v as f32)
            .collect();
        assert_eq!(&img.data[..vals.len()], &vals[..], "{name}: voxel values");
        assert_eq!(img.data.len(), e["n"].as_u64().unwrap() as usize);
        let sum: f64 = img.data.iter().map(|&v| v as f64).sum();
        assert_eq!(sum, e["sum"].as_f64().unwrap(), "{name}: sum");
    }
}

#[test]
fn simpleitkio_axis_order_and_spacing() {
    let dir = common::fixtures().join("nifti");
    let rw = SimpleItkIo;
    let d = rw.read_images(&[dir.join("dtype_int16.nii.gz")]).unwrap();
    // ITK size (3, 4, 5) → array (z, y, x) = (5, 4, 3); spacing reversed
    assert_eq!(d.shape, [5, 4, 3]);
    assert_eq!(d.spacing(), [4.0, 3.0, 2.0]);
    assert_eq!(d.channels, 1);
    let d4 = rw.read_images(&[dir.join("img4d.nii.gz")]).unwrap();
    assert_eq!(
        (d4.channels, d4.shape, d4.spacing()),
        (2, [5, 4, 3], [4.0, 3.0, 2.0])
    );
    let d2 = rw.read_images(&[dir.join("img2d.nii.gz")]).unwrap();
    assert_eq!(
        (d2.channels, d2.shape, d2.spacing()),
        (1, [1, 4, 3], [2997.0, 3.0, 2.0])
    );
    // NibabelIO on the same file: same array order, spacing from pixdim
    let n = NibabelIo
        .read_images(&[dir.join("dtype_int16.nii.gz")])
        .unwrap();
    assert_eq!((n.shape, n.spacing()), ([5, 4, 3], [4.0, 3.0, 2.0]));
    assert_eq!(n.data, d.data);
    let aff = n.properties.nibabel_stuff.unwrap().original_affine;
    assert_eq!(aff[0], [2.0, 0.0, 0.0, 10.0]);
    assert_eq!(aff[2], [0.0, 0.0, 4.0, 30.0]);
}

#[test]
fn real_dataset_geometry_matches_simpleitk() {
    let (_t, dir) = common::extract("Dataset201_AnisoCT");
    let d = SimpleItkIo
        .read_images(&[dir.join("imagesTr/case_000_0000.nii.gz")])
        .unwrap();
    let g = d.properties.sitk_stuff.as_ref().unwrap();
    // values printed by SimpleITK 2.5.7
    assert_eq!(g.spacing, vec![0.7764500379562378, 0.8515821099281311, 2.5]);
    assert_eq!(
        g.origin,
        vec![-41.48207473754883, -26.559417724609375, -42.92880630493164]
    );
    assert_eq!(
        g.direction,
        vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    );
    assert_eq!(d.shape, [31, 129, 118]);
    assert_eq!(d.spacing(), [2.5, 0.8515821099281311, 0.7764500379562378]);
    let s = SimpleItkIo
        .read_seg(&dir.join("labelsTr/case_002.nii.gz"))
        .unwrap();
    let g = s.properties.sitk_stuff.unwrap();
    assert_eq!(g.origin, vec![0.0, 0.0, 0.0]);
    assert_eq!(g.spacing, vec![0.793272078037262, 0.8447622060775757, 5.0]);

    let (_t2, hip) = common::extract("Dataset004_Hippocampus");
    let h = SimpleItkIo
        .read_images(&[hip.join("imagesTr/hippocampus_001_0000.nii.gz")])
        .unwrap();
    let g = h.properties.sitk_stuff.unwrap();
    assert_eq!(g.spacing, vec![1.0, 1.0, 1.0]);
    assert_eq!(g.origin, vec![-1.0, -1.0, 1.0]);
    assert_eq!(
        g.direction,
        vec![-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0]
    );
    assert_eq!(h.shape, [35, 51, 35]);
}

fn roundtrip(path: &Path, geo: &SitkGeometry, size: &[usize], dtype: NiftiDatatype) {
    let n: usize = size.iter().product();
    let data: Vec<f32> = (0..n).map(|i| (i % 200) as f32).collect();
    nifti::write_nifti(path, &data, size, geo, dtype).unwrap();
    let back = nifti::read_nifti(path).unwrap();
    assert_eq!(back.dims, size);
    assert_eq!(back.data, data);
    let g = back.itk_geometry(path).unwrap();
    assert!(
        close(&g.spacing, &geo.spacing, 1e-6),
        "{:?} vs {:?}",
        g.spacing,
        geo.spacing
    );
    assert!(
        close(&g.origin, &geo.origin, 1e-5),
        "{:?} vs {:?}",
        g.origin,
        geo.origin
    );
    assert!(
        close(&g.direction, &geo.direction, 1e-6),
        "{:?} vs {:?}",
        g.direction,
        geo.direction
    );
}

#[test]
fn writer_roundtrips_geometry() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, s) = (0.3f64.cos(), 0.3f64.sin());
    let rot = SitkGeometry {
        spacing: vec![0.7, 0.8, 2.5],
        origin: vec![-41.5, 26.25, -3.0],
        direction: vec![-1.0, 0.0, 0.0, 0.0, -c, s, 0.0, s, c],
    };
    roundtrip(
        &tmp.path().join("a.nii.gz"),
        &rot,
        &[7, 6, 5],
        NiftiDatatype::U8,
    );
    roundtrip(
        &tmp.path().join("a.nii"),
        &rot,
        &[7, 6, 5],
        NiftiDatatype::F32,
    );
    let flip = SitkGeometry {
        spacing: vec![1.0, 2.0, 3.0],
        origin: vec![1.0, 2.0, 3.0],
        direction: vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0],
    };
    roundtrip(
        &tmp.path().join("f.nii.gz"),
        &flip,
        &[4, 3, 2],
        NiftiDatatype::I16,
    );
    let two_d = SitkGeometry::identity(&[0.5, 0.25]);
    roundtrip(
        &tmp.path().join("t.nii.gz"),
        &two_d,
        &[4, 3],
        NiftiDatatype::U16,
    );

    // write_seg through SimpleITKIO with the properties of a read image
    let dir = common::fixtures().join("nifti");
    let d = SimpleItkIo
        .read_images(&[dir.join("qform_rot.nii.gz")])
        .unwrap();
    let seg: Vec<f32> = d
        .data
        .iter()
        .map(|&v| if v > 0.0 { 1.0 } else { 0.0 })
        .collect();
    let out = tmp.path().join("seg.nii.gz");
    SimpleItkIo
        .write_seg(&seg, d.shape, &out, &d.properties)
        .unwrap();
    let back = SimpleItkIo.read_seg(&out).unwrap();
    assert_eq!(back.data, seg);
    let (a, b) = (
        d.properties.sitk_stuff.unwrap(),
        back.properties.sitk_stuff.unwrap(),
    );
    assert!(
        close(&a.origin, &b.origin, 1e-5)
            && close(&a.direction, &b.direction, 1e-6)
            && close(&a.spacing, &b.spacing, 1e-7)
    );
}

#[test]
fn broken_files_are_errors_not_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let src = std::fs::read(common::fixtures().join("nifti/dtype_float32.nii.gz")).unwrap();
    let trunc = tmp.path().join("trunc.nii.gz");
    std::fs::write(&trunc, &src[..src.len() / 2]).unwrap();
    let e = nifti::read_nifti(&trunc).unwrap_err().to_string();
    assert!(e.contains("trunc.nii.gz") && e.contains("gzip"), "{e}");
    let plain = tmp.path().join("plain.nii.gz");
    std::fs::write(&plain, b"this is not gzip").unwrap();
    let e = nifti::read_nifti(&plain).unwrap_err().to_string();
    assert!(e.contains("not gzip"), "{e}");
    let short = tmp.path().join("short.nii");
    let raw = std::fs::read(common::fixtures().join("nifti/bigendian_int16.nii")).unwrap();
    std::fs::write(&short, &raw[..raw.len() - 10]).unwrap();
    let e = nifti::read_nifti(&short).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
    std::fs::write(&short, &raw[..100]).unwrap();
    assert!(nifti::read_nifti(&short).is_err());
    std::fs::write(&short, vec![0u8; 400]).unwrap();
    assert!(
        nifti::read_nifti(&short)
            .unwrap_err()
            .to_string()
            .contains("not a NIfTI-1")
    );
}
