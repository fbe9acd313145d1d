"""Helper run by tests/test_training.py in its own process (two logical CPU devices must be
configured before TensorFlow starts): trains the same model under several strategies and
prints their per-step losses, saving the final weights as .npz files.

    python tests/mirrored_training_run.py REPO_ROOT FILES CONFIG OUT_DIR
"""

import json
import sys

import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, sys.argv[1])
import training  # noqa: E402 - after the device configuration
from tests import pretraining_fixtures as pf  # noqa: E402

files, config, out = sys.argv[2].split(","), sys.argv[3], sys.argv[4]
runs = {
    "one_device": ("one_device", 1, False),
    "mirrored": ("mirrored", 1, False),
    "mirrored_accumulate_2": ("mirrored", 2, False),
    "one_device_accumulate_4": ("one_device", 4, False),
    "one_device_xla": ("one_device", 1, True),
}
result = {}
for name, (kind, k, xla) in runs.items():
    strategy = training.create_strategy(kind)
    trainer = pf.build_trainer(
        strategy, config, None, 4, gradient_accumulation_steps=k, use_xla=xla
    )
    trainer.train(
        pf.dataset_fn_for(files, 16, 32, 5), 4, 16, iterations_per_loop=2, save_checkpoints_steps=0
    )
    result[name] = {
        "losses": [x for r in trainer.history for x in r["step_losses"]],
        "replicas": strategy.num_replicas_in_sync,
    }
    np.savez(
        f"{out}/{name}.npz",
        **{n.replace("/", "|"): v.numpy() for n, v in trainer.model.named_variables().items()},
    )
print("RESULT " + json.dumps(result))
