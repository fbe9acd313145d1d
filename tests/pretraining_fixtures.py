"""Small real-text pretraining TFRecords and tiny configs for the training tests.

The records follow docs/formats.md#pretraining-tfrecords (the original generators' schema): consecutive real sentences as
A/B, swapped with probability 1/2 (SOP label 1), 15% of the tokens masked 80/10/10. This is a
deliberately simple generator for tests; create_pretraining_data.py is the real one.
"""

import json
import random

import numpy as np
import tensorflow as tf

import pretraining_data
import tokenization

TINY_CONFIG = {
    "hidden_size": 32,
    "embedding_size": 16,
    "intermediate_size": 64,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "num_hidden_groups": 1,
    "inner_group_num": 1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "vocab_size": 21128,
}


def write_config(path, **overrides):
    config = dict(TINY_CONFIG, **overrides)
    with open(path, "w") as f:
        json.dump(config, f)
    return str(path)


def read_sentences(text_file, limit=2000):
    sentences = []
    with open(text_file, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                sentences.append(line)
            if len(sentences) >= limit:
                break
    return sentences


def _int_feature(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def _float_feature(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))


def make_examples(
    sentences,
    vocab_file,
    num_examples,
    max_seq_length,
    max_predictions,
    seed=1,
    token_boundary=False,
):
    """Serialized tf.train.Examples of SOP pairs from consecutive real sentences."""
    tokenizer = tokenization.FullTokenizer(vocab_file)
    rng = random.Random(seed)
    vocab_size = len(tokenizer.vocab)
    tokenized = [tokenizer.tokenize(s) for s in sentences]
    tokenized = [t for t in tokenized if t]
    examples = []
    half = (max_seq_length - 3) // 2
    while len(examples) < num_examples:
        i = rng.randrange(len(tokenized) - 1)
        a, b = tokenized[i][:half], tokenized[i + 1][:half]
        label = 0
        if rng.random() < 0.5:
            a, b, label = b, a, 1
        tokens = ["[CLS]"] + a + ["[SEP]"] + b + ["[SEP]"]
        segments = [0] * (len(a) + 2) + [1] * (len(b) + 1)
        ids = tokenizer.convert_tokens_to_ids(tokens)
        candidates = [k for k, t in enumerate(tokens) if t not in ("[CLS]", "[SEP]")]
        rng.shuffle(candidates)
        count = min(max_predictions, max(1, round(len(tokens) * 0.15)))
        positions = sorted(candidates[:count])
        labels = [ids[p] for p in positions]
        for p in positions:
            roll = rng.random()
            if roll < 0.8:
                ids[p] = tokenizer.vocab["[MASK]"]
            elif roll < 0.9:
                ids[p] = rng.randrange(vocab_size)
        pad = max_seq_length - len(ids)
        pad_p = max_predictions - len(positions)
        feature = {
            "input_ids": _int_feature(ids + [0] * pad),
            "input_mask": _int_feature([1] * len(ids) + [0] * pad),
            "segment_ids": _int_feature(segments + [0] * pad),
            "masked_lm_positions": _int_feature(positions + [0] * pad_p),
            "masked_lm_ids": _int_feature(labels + [0] * pad_p),
            "masked_lm_weights": _float_feature([1.0] * len(positions) + [0.0] * pad_p),
            "next_sentence_labels": _int_feature([label]),
        }
        if token_boundary:  # Google's generator adds this; readers must tolerate it
            feature["token_boundary"] = _int_feature([1] * max_seq_length)
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        examples.append(example.SerializeToString())
    return examples


def write_tfrecords(paths, examples):
    """Write the examples round-robin over the given files (as the original generator does)."""
    writers = [tf.io.TFRecordWriter(str(p)) for p in paths]
    for i, example in enumerate(examples):
        writers[i % len(writers)].write(example)
    for w in writers:
        w.close()
    return [str(p) for p in paths]


def read_tensors(prefix):
    reader = tf.train.load_checkpoint(str(prefix))
    return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}


def max_abs_difference(a, b, names):
    return max(float(np.max(np.abs(a[n].astype(np.float64) - b[n]))) for n in names)


def build_trainer(
    strategy,
    config_file,
    output_dir,
    num_train_steps,
    learning_rate=1e-3,
    optimizer="adamw",
    seed=7,
    **trainer_kwargs,
):
    """A pretraining Trainer as run_pretraining.py builds it (fixed initial weights)."""
    import modeling
    import optimization
    import training

    config = modeling.AlbertConfig.from_json_file(config_file)
    with strategy.scope():
        model = modeling.AlbertForPretraining(config, style="google", seed=seed)
        opt = optimization.create_optimizer(learning_rate, num_train_steps, 2, optimizer=optimizer)
        opt.build(model.named_variables())
    loss_fn, loss_weights_fn = training.pretraining_losses(model)
    return training.Trainer(
        strategy, model, opt, loss_fn, output_dir, loss_weights_fn=loss_weights_fn, **trainer_kwargs
    )


def dataset_fn_for(files, global_batch_size, max_seq_length, max_predictions, is_training=True):

    spec = pretraining_data.pretraining_feature_spec(max_seq_length, max_predictions)
    return pretraining_data.make_dataset_fn(files, spec, global_batch_size, is_training)
