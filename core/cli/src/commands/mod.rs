//! Handlers of the nnU-Net commands, keyed by the native subcommand name. A command appears here (and so
//! as a native subcommand) only once its behaviour is implemented; until then its `nnUNetv2_*` alias
//! parses nnU-Net's flags and reports that the behaviour is not built yet.

pub mod benchmark;
pub mod convert;
pub mod ensemble;
pub mod evaluate;
pub mod export;
pub mod install_aliases;
pub mod list;
pub mod model_selection;
pub mod overlay;
pub mod plan;
pub mod plugin;
pub mod predict;
pub mod sharing;
pub mod summary;
pub mod train;

use crate::spec::Parsed;

pub type Handler = fn(&Parsed) -> anyhow::Result<()>;

/// The handler of native command `name`, if implemented.
pub fn handler(name: &str) -> Option<Handler> {
    COMMANDS.iter().find(|(n, _, _)| *n == name).map(|(_, h, _)| *h)
}

/// One line of implementation status per implemented command, for docs/CLI.md.
pub fn status(name: &str) -> Option<&'static str> {
    COMMANDS.iter().find(|(n, _, _)| *n == name).map(|(_, _, s)| *s)
}

/// (native name, handler, status line) of every implemented command.
const COMMANDS: &[(&str, Handler, &str)] = &[
    ("extract-fingerprint", plan::extract_fingerprint, "implemented (fingerprint equal to nnU-Net 2.8.1's)"),
    ("plan-experiment", plan::plan_experiment, "implemented (plans equal to nnU-Net 2.8.1's)"),
    ("plan-and-preprocess", plan::plan_and_preprocess, "implemented (fingerprint, plans and preprocessed arrays equal to nnU-Net 2.8.1's)"),
    ("evaluate-folder", evaluate::evaluate_folder, "implemented (summary.json equal to nnU-Net 2.8.1's)"),
    ("evaluate-simple", evaluate::evaluate_simple, "implemented (summary.json equal to nnU-Net 2.8.1's)"),
    (
        "determine-postprocessing",
        evaluate::determine_postprocessing,
        "implemented (postprocessing.json/.pkl as nnU-Net; largest connected component per label / for all foreground)",
    ),
    ("apply-postprocessing", evaluate::apply_postprocessing, "implemented (reads the postprocessing.json written beside the .pkl)"),
    (
        "train",
        train::run,
        "implemented on the CPU (nnUNetTrainer recipe, presets, --c incl. data-stream state, -pretrained_weights (a Python nnU-Net .pth or our checkpoint), checkpoint_final/best.pth written for Python nnU-Net, cascade, --npz, final validation, --val/--val_best; --arch extension); -num_gpus N (data parallel; on the CPU as N replicas); --precision (LibTorch autocast); -device cuda in LibTorch builds (feature tch), not yet measured on a GPU",
    ),
    (
        "predict",
        predict::predict,
        "implemented on the CPU (model folders of Python nnU-Net (.pth) or ours; sliding window summed in float16 as nnU-Net, mirror TTA, fold ensembling, export with the input's geometry, --save_probabilities .npz/.pkl, cascade); -device cuda in LibTorch builds (feature tch, fp16 autocast as nnU-Net), not yet measured on a GPU",
    ),
    ("predict-from-modelfolder", predict::predict_from_modelfolder, "implemented on the CPU (as predict, with -m MODEL_FOLDER)"),
    (
        "convert-msd-dataset",
        convert::convert_msd_dataset,
        "implemented (4-D images split per channel with their 3-D geometry, labels copied, dataset.json as nnU-Net 2.8.1 writes it)",
    ),
    (
        "convert-old-nnunet-dataset",
        convert::convert_old_nnunet_dataset,
        "implemented (folders copied, dataset.json as nnU-Net 2.8.1 writes it)",
    ),
    (
        "export-model-to-zip",
        sharing::export_model_to_zip,
        "implemented (nnU-Net's file selection and zip layout; checkpoints are .pth files, or checkpoint folders of earlier versions; --not_strict skips untrained configurations as its help says — nnU-Net's flag has no effect)",
    ),
    (
        "install-pretrained-model-from-zip",
        sharing::install_pretrained_model_from_zip,
        "implemented (extracts below nnUNet_results as nnU-Net; unsafe entry names enclosed)",
    ),
    (
        "plot-overlay-pngs",
        overlay::plot_overlay_pngs,
        "implemented (nnU-Net's slice choice, colours and float arithmetic: pixels equal to nnU-Net 2.8.1's; RGBA PNG)",
    ),
    (
        "download-pretrained-model-by-url",
        sharing::download_pretrained_model_by_url,
        "implemented (downloads with curl, then installs as install-pretrained-model-from-zip)",
    ),
    (
        "move-plans-between-datasets",
        plan::move_plans_between_datasets,
        "implemented (plans as nnU-Net 2.8.1 writes them: dataset name, plans name, data identifiers, reader/writer)",
    ),
    ("preprocess", plan::preprocess, "implemented (arrays equal to nnU-Net 2.8.1's, written in its own `.b2nd` + `.pkl` layout: ADR 0005)"),
    ("ensemble", ensemble::ensemble, "implemented (averages the .npz probabilities; reads nnU-Net's and our .npz/.pkl)"),
    (
        "accumulate-crossval-results",
        model_selection::accumulate_crossval_results,
        "implemented (merged folder and summary.json equal to nnU-Net 2.8.1's)",
    ),
    (
        "find-best-configuration",
        model_selection::find_best_configuration,
        "implemented (cross-validation results, pairwise ensembles, postprocessing, inference_information.json and instructions as nnU-Net 2.8.1)",
    ),
];

/// `--arch NAME [--arch-config JSON]` (nnunet extension), if given.
pub fn arch_selection(p: &Parsed) -> anyhow::Result<Option<nnunet_core::selection::ArchSelection>> {
    match (p.string("arch"), p.string("arch_config")) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(crate::user("--arch-config needs --arch NAME (the architecture whose kwargs it overrides)")),
        (Some(a), cfg) => {
            nnunet_core::selection::ArchSelection::resolve(&a, cfg.as_deref()).map(Some).map_err(|e| crate::user(format!("--arch: {e}")))
        }
    }
}

pub use crate::backend::{device, devices};
