"""Test oracle: a padded batch computed with NumPy, independently of classifier_data.make_dataset's
TensorFlow pipeline."""

import numpy as np

from classifier_data import padded_length


def pad_batch(features, indices, max_seq_length, fixed_length=False):
    """Gather `indices` into a padded batch: dict of int32 arrays.

    Per-token columns (features.TOKEN_COLUMNS) and input_mask are [B, L], zero-padded;
    per-example columns (features.EXAMPLE_COLUMNS) are [B].
    """
    length = padded_length(features.lengths[indices].max(), max_seq_length, fixed_length)
    batch = {"input_mask": np.zeros((len(indices), length), np.int32)}
    for name in features.TOKEN_COLUMNS:
        batch[name] = np.zeros((len(indices), length), np.int32)
    for row, index in enumerate(indices):
        n = features.lengths[index]
        batch["input_mask"][row, :n] = 1
        for name in features.TOKEN_COLUMNS:
            batch[name][row, :n] = getattr(features, name)[index]
    for name in features.EXAMPLE_COLUMNS:
        batch[name] = np.asarray(getattr(features, name))[indices].astype(np.int32)
    return batch
