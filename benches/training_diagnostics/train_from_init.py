"""Python nnU-Net's own training (its trainer class TRAINER, default nnUNetTrainer_10epochs, with its own data
pipeline) of fold 0 of the 3d_tiny configuration, starting from the initial weights that train_trace wrote (ours for
that seed): does nnU-Net's trainer end where ours ends from the same start? NO_VAL=1 skips the final validation;
TRACE_DIR `-` keeps nnU-Net's own random initialisation (saved as fold_0/initial_weights.pth).
usage: nnUNet_preprocessed=… nnUNet_results=… [nnUNet_def_n_proc=2] python train_from_init.py TRACE_DIR [TRAINER]
(nnUNet_def_n_proc: the final validation's export processes, 8 by default; set it to the core count on a small machine)"""
import os, sys, torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from trace_nnunet import read_weights
from batchgenerators.utilities.file_and_folder_operations import load_json, join
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

torch.set_num_threads(2)
trace = sys.argv[1]
cls = recursive_find_trainer_class_by_name(sys.argv[2] if len(sys.argv) > 2 else 'nnUNetTrainer_10epochs')
pre = join(os.environ['nnUNet_preprocessed'], 'Dataset004_Hippocampus')
plans = load_json(join(pre, 'nnUNetPlans.json')); plans['continue_training'] = False
t = cls(plans, '3d_tiny', 0, load_json(join(pre, 'dataset.json')), device=torch.device('cpu'))
t.initialize()
if trace != '-':
    t.network.load_state_dict(read_weights(join(trace, 'weights_init.bin'), load_json(join(trace, 'weights.json'))))
else:  # nnU-Net's own draw, kept for a later look at what it started from
    os.makedirs(t.output_folder, exist_ok=True)
    torch.save(t.network.state_dict(), join(t.output_folder, 'initial_weights.pth'))
t.run_training()
if not os.environ.get("NO_VAL"):
    t.perform_actual_validation(False)
