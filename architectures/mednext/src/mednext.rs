//! `MedNeXt` (MedNeXt v1, `nnunet_mednext/network_architecture/mednextv1/MedNextV1.py`; training spec §1.7):
//! a 1×1 stem, four encoder levels of [`MedNeXtBlock`]s each followed by a [`MedNeXtDownBlock`], a bottleneck,
//! four [`MedNeXtUpBlock`]s whose outputs are **added** to the encoder level of the same resolution, decoder
//! blocks, and [`OutBlock`] heads. Field names are PyTorch's state-dict keys, including the 1-element
//! `dummy_tensor` parameter (MedNeXt's gradient-checkpointing workaround; unused in the forward pass, but part
//! of the parameter count that MedNeXt reports and of its checkpoints).

use crate::blocks::{ConvProbe, MedNeXtBlock, MedNeXtDownBlock, MedNeXtUpBlock, OutBlock, conv};
use crate::kwargs::MedNeXtKwargs;
use burn::module::{Module, Param};
use burn::nn::conv::Conv3d;
use burn::tensor::{Device, Tensor};

#[derive(Module, Debug)]
pub struct MedNeXt {
    pub stem: Conv3d,
    pub enc_block_0: Vec<MedNeXtBlock>,
    pub down_0: MedNeXtDownBlock,
    pub enc_block_1: Vec<MedNeXtBlock>,
    pub down_1: MedNeXtDownBlock,
    pub enc_block_2: Vec<MedNeXtBlock>,
    pub down_2: MedNeXtDownBlock,
    pub enc_block_3: Vec<MedNeXtBlock>,
    pub down_3: MedNeXtDownBlock,
    pub bottleneck: Vec<MedNeXtBlock>,
    pub up_3: MedNeXtUpBlock,
    pub dec_block_3: Vec<MedNeXtBlock>,
    pub up_2: MedNeXtUpBlock,
    pub dec_block_2: Vec<MedNeXtBlock>,
    pub up_1: MedNeXtUpBlock,
    pub dec_block_1: Vec<MedNeXtBlock>,
    pub up_0: MedNeXtUpBlock,
    pub dec_block_0: Vec<MedNeXtBlock>,
    pub out_0: OutBlock,
    pub dummy_tensor: Param<Tensor<1>>,
    pub out_1: Option<OutBlock>,
    pub out_2: Option<OutBlock>,
    pub out_3: Option<OutBlock>,
    pub out_4: Option<OutBlock>,
    /// Total downsampling per axis (the input must be divisible by it).
    #[module(skip)]
    pub total_stride: [usize; 3],
}

fn stack(n: usize, c: usize, exp_r: usize, k: [usize; 3], do_res: bool, dev: &Device) -> Vec<MedNeXtBlock> {
    (0..n).map(|_| MedNeXtBlock::new(c, c, exp_r, k, do_res, dev)).collect()
}

fn run(blocks: &[MedNeXtBlock], mut x: Tensor<5>, probe: &mut ConvProbe, name: &str) -> Tensor<5> {
    for (i, b) in blocks.iter().enumerate() {
        x = b.forward(x, probe, &format!("{name}.{i}"));
    }
    x
}

impl MedNeXt {
    /// Build with PyTorch's default init. Level `l` has `kw.channels(l)` channels; `exp_r`/`block_counts` index
    /// enc0..enc3, bottleneck, dec3..dec0; `down_l` uses the expansion of level `l+1`, `up_l` that of decoder
    /// level `l` (MedNeXt's indexing).
    pub fn new(kw: &MedNeXtKwargs, in_channels: usize, n_classes: usize, deep_supervision: bool, dev: &Device) -> Self {
        let c = |l: usize| kw.channels(l);
        let (e, bc, r) = (&kw.exp_r, &kw.block_counts, kw.do_res);
        let enc = |l: usize| stack(bc[l], c(l), e[l], kw.kernel(l), r, dev);
        let dec = |l: usize| stack(bc[8 - l], c(l), e[8 - l], kw.kernel(l), r, dev);
        let down = |l: usize| MedNeXtDownBlock::new(c(l), c(l + 1), e[l + 1], kw.kernel(l + 1), kw.strides[l], kw.do_res_up_down, dev);
        let up = |l: usize| MedNeXtUpBlock::new(c(l + 1), c(l), e[8 - l], kw.kernel(l + 1), kw.strides[l], kw.do_res_up_down, dev);
        let ds = |l: usize| deep_supervision.then(|| OutBlock::new(c(l), n_classes, dev));
        Self {
            stem: conv(in_channels, c(0), [1, 1, 1], [1, 1, 1], 1, dev),
            enc_block_0: enc(0),
            down_0: down(0),
            enc_block_1: enc(1),
            down_1: down(1),
            enc_block_2: enc(2),
            down_2: down(2),
            enc_block_3: enc(3),
            down_3: down(3),
            bottleneck: stack(bc[4], c(4), e[4], kw.kernel(4), r, dev),
            up_3: up(3),
            dec_block_3: dec(3),
            up_2: up(2),
            dec_block_2: dec(2),
            up_1: up(1),
            dec_block_1: dec(1),
            up_0: up(0),
            dec_block_0: dec(0),
            out_0: OutBlock::new(c(0), n_classes, dev),
            dummy_tensor: Param::from_tensor(Tensor::ones([1], dev)),
            out_1: ds(1),
            out_2: ds(2),
            out_3: ds(3),
            out_4: ds(4),
            total_stride: kw.cumulative_strides()[4],
        }
    }

    /// Logits: `[out, ds1, ds2, ds3, ds4]` (full resolution first, 1/16 last) with deep supervision, else `[out]`.
    ///
    /// # Panics
    /// If a spatial axis of `x` is not divisible by [`MedNeXt::total_stride`].
    pub fn forward(&self, x: Tensor<5>) -> Vec<Tensor<5>> {
        self.forward_probed(x, &mut ConvProbe::off())
    }

    /// [`MedNeXt::forward`], recording every conv's output shape in `probe`.
    pub fn forward_probed(&self, x: Tensor<5>, probe: &mut ConvProbe) -> Vec<Tensor<5>> {
        let d = x.dims();
        assert!(
            (0..3).all(|a| d[2 + a].is_multiple_of(self.total_stride[a])),
            "MedNeXt: input spatial shape {:?} is not divisible by the total stride {:?}",
            &d[2..],
            self.total_stride
        );
        let x = self.stem.forward(x);
        probe.see(|| "stem".into(), &x);
        let r0 = run(&self.enc_block_0, x, probe, "enc_block_0");
        let x = self.down_0.forward(r0.clone(), probe, "down_0");
        let r1 = run(&self.enc_block_1, x, probe, "enc_block_1");
        let x = self.down_1.forward(r1.clone(), probe, "down_1");
        let r2 = run(&self.enc_block_2, x, probe, "enc_block_2");
        let x = self.down_2.forward(r2.clone(), probe, "down_2");
        let r3 = run(&self.enc_block_3, x, probe, "enc_block_3");
        let x = self.down_3.forward(r3.clone(), probe, "down_3");
        let x = run(&self.bottleneck, x, probe, "bottleneck");
        let ds4 = self.out_4.as_ref().map(|o| o.forward(x.clone(), probe, "out_4"));
        let x = run(&self.dec_block_3, r3 + self.up_3.forward(x, probe, "up_3"), probe, "dec_block_3");
        let ds3 = self.out_3.as_ref().map(|o| o.forward(x.clone(), probe, "out_3"));
        let x = run(&self.dec_block_2, r2 + self.up_2.forward(x, probe, "up_2"), probe, "dec_block_2");
        let ds2 = self.out_2.as_ref().map(|o| o.forward(x.clone(), probe, "out_2"));
        let x = run(&self.dec_block_1, r1 + self.up_1.forward(x, probe, "up_1"), probe, "dec_block_1");
        let ds1 = self.out_1.as_ref().map(|o| o.forward(x.clone(), probe, "out_1"));
        let x = run(&self.dec_block_0, r0 + self.up_0.forward(x, probe, "up_0"), probe, "dec_block_0");
        let out = self.out_0.forward(x, probe, "out_0");
        let mut outs = vec![out];
        outs.extend([ds1, ds2, ds3, ds4].into_iter().flatten());
        outs
    }
}
