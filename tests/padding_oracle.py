"""Test oracle: a padded batch computed with NumPy, independently of classifier_data.make_dataset's
TensorFlow pipeline."""

import numpy as np

from classifier_data import padded_length


def pad_batch(features, indices, max_seq_length, fixed_length=False):
    """Gather `indices` into a padded batch: dict of int32 arrays (labels [B], rest [B,L])."""
    length = padded_length(features.lengths[indices].max(), max_seq_length, fixed_length)
    input_ids = np.zeros((len(indices), length), np.int32)
    input_mask = np.zeros((len(indices), length), np.int32)
    segment_ids = np.zeros((len(indices), length), np.int32)
    for row, index in enumerate(indices):
        n = features.lengths[index]
        input_ids[row, :n] = features.input_ids[index]
        input_mask[row, :n] = 1
        segment_ids[row, :n] = features.segment_ids[index]
    return {
        "input_ids": input_ids,
        "input_mask": input_mask,
        "segment_ids": segment_ids,
        "label_ids": features.label_ids[indices],
    }
