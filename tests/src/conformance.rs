//! The architecture conformance suite: one call checks that an architecture (built-in or third-party)
//! behaves as the engine expects.
//!
//! ```ignore
//! nnunet_tests::conformance::check_architecture("MyNet", &MyNet).unwrap();
//! ```
//!
//! For a 2D and a 3D topology (from [`topologies`]) it derives kwargs with `Architecture::configure` and checks:
//! output count and shapes with and without deep supervision (full resolution first, each deeper output no
//! larger, channel count = classes), finite outputs, that one backward + SGD step changes the outputs, a
//! save/load round trip into a freshly initialised instance, parameters by path (unique, complete, copyable), and
//! that the memory proxy grows with the patch.

use burn::optim::SgdConfig;
use burn::tensor::{Device, Distribution, Tensor};
use nnunet_core::Architecture;
use nnunet_core::architecture::NetworkSpec;
use nnunet_core::topology::Topology;

/// The small topologies the suite runs (2D and 3D, one anisotropic), shaped like nnU-Net's planner output.
pub fn topologies() -> Vec<Topology> {
    vec![
        Topology {
            strides: vec![vec![1, 1, 1], vec![2, 2, 2], vec![2, 2, 2]],
            kernel_sizes: vec![vec![3, 3, 3]; 3],
            features_per_stage: vec![4, 8, 16],
            patch_size: vec![16, 16, 16],
        },
        Topology {
            strides: vec![vec![1, 1, 1], vec![1, 2, 2], vec![2, 2, 2]],
            kernel_sizes: vec![vec![1, 3, 3], vec![3, 3, 3], vec![3, 3, 3]],
            features_per_stage: vec![4, 8, 16],
            patch_size: vec![8, 16, 24],
        },
        Topology {
            strides: vec![vec![1, 1], vec![2, 2], vec![2, 2], vec![2, 2]],
            kernel_sizes: vec![vec![3, 3]; 4],
            features_per_stage: vec![4, 8, 16, 32],
            patch_size: vec![32, 24],
        },
    ]
}

fn spec_for(arch: &dyn Architecture, t: &Topology, ds: bool) -> Result<NetworkSpec, String> {
    let arch_kwargs = arch.configure(t).ok_or("Architecture::configure returned None: the suite needs kwargs for a topology")?;
    Ok(NetworkSpec { arch_kwargs, in_channels: 2, out_channels: 3, deep_supervision: ds })
}

fn input_shape(t: &Topology, batch: usize, channels: usize) -> [usize; 5] {
    match t.patch_size[..] {
        [y, x] => [batch, channels, 1, y, x],
        [z, y, x] => [batch, channels, z, y, x],
        _ => panic!("patch must be 2D or 3D"),
    }
}

fn max_abs_diff(a: &Tensor<5>, b: &Tensor<5>) -> f32 {
    (a.clone() - b.clone()).abs().max().into_scalar::<f32>()
}

/// What the suite measured (for the caller's log).
#[derive(Debug, Default)]
pub struct Report {
    pub cases: usize,
    pub params: Vec<usize>,
}

/// Run every check on `arch`. `Err` describes the first failure.
pub fn check_architecture(name: &str, arch: &dyn Architecture) -> Result<Report, String> {
    let mut report = Report::default();
    let base = Device::default();
    base.seed(7);
    let dev = base.clone().autodiff();
    for t in topologies() {
        let ctx = format!("{name} patch {:?}", t.patch_size);
        let shape = input_shape(&t, 2, 2);
        let x = Tensor::<5>::random(shape, Distribution::Normal(0.0, 1.0), &dev);

        // deep supervision off: exactly one full-resolution output
        let net = arch.build(&spec_for(arch, &t, false)?, &dev).map_err(|e| format!("{ctx}: build: {e}"))?;
        let outs = net.forward(x.clone());
        if outs.len() != 1 {
            return Err(format!("{ctx}: {} outputs without deep supervision, expected 1", outs.len()));
        }
        let want = [shape[0], 3, shape[2], shape[3], shape[4]];
        if outs[0].dims() != want {
            return Err(format!("{ctx}: output shape {:?}, expected {want:?}", outs[0].dims()));
        }

        // deep supervision on: full resolution first, deeper outputs no larger, all with `classes` channels
        let mut net = arch.build(&spec_for(arch, &t, true)?, &dev).map_err(|e| format!("{ctx}: build: {e}"))?;
        report.params.push(net.num_params());
        let outs = net.forward(x.clone());
        if outs.is_empty() || outs[0].dims() != want {
            return Err(format!("{ctx}: first deep-supervision output {:?}, expected {want:?}", outs.first().map(|o| o.dims())));
        }
        for w in outs.windows(2) {
            let (a, b) = (w[0].dims(), w[1].dims());
            if b[1] != 3 || b[0] != shape[0] || (2..5).any(|i| b[i] > a[i]) {
                return Err(format!("{ctx}: deep-supervision outputs out of order: {a:?} then {b:?}"));
            }
        }
        for (i, o) in outs.iter().enumerate() {
            let finite = o.clone().is_finite().all().into_scalar::<bool>();
            if !finite {
                return Err(format!("{ctx}: output {i} has NaN/Inf"));
            }
        }

        // one backward + SGD step changes the outputs
        let before = net.forward(x.clone())[0].clone().detach();
        let loss = outs.iter().map(|o| o.clone().powi_scalar(2).mean()).reduce(|a, b| a + b).expect("outputs");
        let mut optim = SgdConfig::new().init();
        net.step(&mut optim, 0.1, loss, Some(12.0));
        let after = net.forward(x.clone())[0].clone().detach();
        if max_abs_diff(&before, &after) == 0.0 {
            return Err(format!("{ctx}: one SGD step did not change the network's output"));
        }

        // save/load round trip into a fresh instance
        static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let unique = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("nnunet-conformance-{}-{unique}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let file = dir.join("net.bpk");
        net.save_file(&file).map_err(|e| format!("{ctx}: save: {e}"))?;
        let mut fresh = arch.build(&spec_for(arch, &t, true)?, &dev).map_err(|e| format!("{ctx}: build: {e}"))?;
        let fresh_before = fresh.forward(x.clone())[0].clone().detach();
        if max_abs_diff(&fresh_before, &after) == 0.0 {
            return Err(format!("{ctx}: two builds gave identical outputs; cannot test loading"));
        }
        fresh.load_file(&file).map_err(|e| format!("{ctx}: load: {e}"))?;
        let loaded = fresh.forward(x.clone())[0].clone().detach();
        let _ = std::fs::remove_dir_all(&dir);
        let d = max_abs_diff(&loaded, &after);
        if d > 1e-5 {
            return Err(format!("{ctx}: output after save/load differs by {d}"));
        }

        // parameters by path (what -pretrained_weights and UpKern use): unique non-empty paths covering every
        // scalar; copying the trained network's parameters into the fresh build by path reproduces its output
        let named = net.named_parameters();
        let scalars: usize = named.iter().map(|p| p.values.len()).sum();
        if scalars != net.num_params() {
            return Err(format!("{ctx}: named_parameters hold {scalars} scalars, num_params says {}", net.num_params()));
        }
        let mut paths: Vec<&str> = named.iter().map(|p| p.path.as_str()).collect();
        paths.sort_unstable();
        paths.dedup();
        if paths.len() != named.len() || paths.iter().any(|p| p.is_empty()) {
            return Err(format!("{ctx}: parameter paths are not unique and non-empty"));
        }
        let mut other = arch.build(&spec_for(arch, &t, true)?, &dev).map_err(|e| format!("{ctx}: build: {e}"))?;
        let by_path: std::collections::HashMap<&str, &Vec<f32>> = named.iter().map(|p| (p.path.as_str(), &p.values)).collect();
        let replaced = other.replace_parameters(&mut |path, _| by_path.get(path).map(|v| (*v).clone()));
        if replaced != named.len() {
            return Err(format!("{ctx}: replace_parameters replaced {replaced} of {} parameters", named.len()));
        }
        let d = max_abs_diff(&other.forward(x.clone())[0].clone().detach(), &after);
        if d > 1e-5 {
            return Err(format!("{ctx}: output after copying parameters by path differs by {d}"));
        }

        // memory proxy grows with the patch
        let spec = spec_for(arch, &t, false)?;
        let p1 = arch.memory_proxy(&spec, &t.patch_size).map_err(|e| format!("{ctx}: memory_proxy: {e}"))?;
        let bigger: Vec<usize> = t.patch_size.iter().map(|&p| p * 2).collect();
        let p2 = arch.memory_proxy(&spec, &bigger).map_err(|e| format!("{ctx}: memory_proxy: {e}"))?;
        let mut one_axis = t.patch_size.clone();
        *one_axis.last_mut().expect("patch") *= 2;
        let p3 = arch.memory_proxy(&spec, &one_axis).map_err(|e| format!("{ctx}: memory_proxy: {e}"))?;
        if !(p1 > 0.0 && p1 < p3 && p3 < p2) {
            return Err(format!("{ctx}: memory proxy not monotonic in patch volume: {p1} (patch), {p3} (one axis ×2), {p2} (all axes ×2)"));
        }
        report.cases += 1;
    }
    Ok(report)
}
