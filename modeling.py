"""The ALBERT model (Lan et al., 2019) in TensorFlow 2, in both albert_zh checkpoint styles.

albert_zh checkpoints come in two styles that compute the same kind of network but name and
shape their variables differently (see README, "Checkpoint styles"):

* "google"     -- Google's ALBERT code (and albert_zh's `*_google` releases). Embeddings are
                  E-wide (token + type + position, LayerNorm(E)), then a dense E->H projection
                  `embedding_hidden_mapping_in`; layers live in `transformer/group_g/inner_group_k`;
                  the MLM head maps H->E before the tied output embedding.
* "brightmart" -- albert_zh's own `modeling.py`. Word embeddings [V,E] are projected to H by a
                  bias-free `word_embeddings_2` [E,H]; type/position embeddings and the embedding
                  LayerNorm are H-wide; all layers share one `layer_shared` scope; the MLM head
                  is H->H and goes back through `word_embeddings_2` and `word_embeddings`.
                  `ln_type: "preln"` selects the pre-LayerNorm variant.

Every model here is a `tf.Module` whose variables are keyed by their ORIGINAL checkpoint names,
so released checkpoints load by name and ours save in the same TF1 name-based format.
Variables are float32; `set_compute_dtype` runs matmuls in bfloat16/float16 while LayerNorm,
softmax and logits stay in float32.
"""

import collections
import copy
import functools
import json
import math

import tensorflow as tf

from errors import AlbertError

STYLES = ("google", "brightmart")
LN_TYPES = ("postln", "preln")

# Defaults of the original config classes, used for keys a JSON file leaves out.
# fmt: off
_GOOGLE_DEFAULTS = dict(
    embedding_size=128, hidden_size=4096, num_hidden_layers=12, num_hidden_groups=1,
    num_attention_heads=64, intermediate_size=16384, inner_group_num=1, down_scale_factor=1,
    hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    max_position_embeddings=512, type_vocab_size=2, initializer_range=0.02,
)
_BRIGHTMART_DEFAULTS = dict(
    # albert_zh's BertConfig has no embedding_size (its JSONs always set it); 128 is what every
    # released model uses.
    embedding_size=128, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
    intermediate_size=3072, hidden_act="gelu", hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1, max_position_embeddings=512, type_vocab_size=16,
    initializer_range=0.02, ln_type="postln", num_hidden_groups=1, inner_group_num=1,
)
# fmt: on


class AlbertConfig:
    """Hyper-parameters of an ALBERT model, read from any released albert_zh config JSON.

    Keys the model does not use (`pooler_*`, `directionality`, `net_structure_type`, ...) are
    kept and written back unchanged by `to_dict`.
    """

    def __init__(self, vocab_size, style=None, **kwargs):
        if style is not None and style not in STYLES:
            raise AlbertError(f"unknown style {style!r}: use one of {', '.join(STYLES)}")
        values = dict(_BRIGHTMART_DEFAULTS if style == "brightmart" else _GOOGLE_DEFAULTS)
        values.update(kwargs)
        self.vocab_size = vocab_size
        self.style = style
        self.embedding_size = values.pop("embedding_size")
        self.hidden_size = values.pop("hidden_size")
        self.num_hidden_layers = values.pop("num_hidden_layers")
        self.num_hidden_groups = values.pop("num_hidden_groups", 1)
        self.num_attention_heads = values.pop("num_attention_heads")
        self.intermediate_size = values.pop("intermediate_size")
        self.inner_group_num = values.pop("inner_group_num", 1)
        self.hidden_act = values.pop("hidden_act")
        self.hidden_dropout_prob = values.pop("hidden_dropout_prob")
        self.attention_probs_dropout_prob = values.pop("attention_probs_dropout_prob")
        self.max_position_embeddings = values.pop("max_position_embeddings")
        self.type_vocab_size = values.pop("type_vocab_size")
        self.initializer_range = values.pop("initializer_range")
        self.ln_type = values.pop("ln_type", None) or "postln"
        # albert_zh's test_changes.py option: separate weights per layer (`layer_{i}` scopes).
        self.share_parameter_across_layers = values.pop("share_parameter_across_layers", True)
        self.extra = values  # unused keys, preserved for to_dict()
        self._validate()

    def _validate(self):
        for key in (
            "vocab_size",
            "embedding_size",
            "hidden_size",
            "num_hidden_layers",
            "num_hidden_groups",
            "num_attention_heads",
            "intermediate_size",
            "inner_group_num",
            "max_position_embeddings",
            "type_vocab_size",
        ):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise AlbertError(f"config: {key} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise AlbertError(
                f"config: hidden_size {self.hidden_size} is not a multiple of "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.ln_type not in LN_TYPES:
            raise AlbertError(f"config: ln_type must be one of {LN_TYPES}, got {self.ln_type!r}")
        if self.hidden_act not in _ACTIVATIONS:
            raise AlbertError(
                f"config: unsupported hidden_act {self.hidden_act!r} "
                f"(supported: {', '.join(sorted(_ACTIVATIONS))})"
            )

    @classmethod
    def from_dict(cls, values):
        values = dict(values)
        if "vocab_size" not in values:
            raise AlbertError("config: vocab_size is required")
        style = values.pop("style", None) or infer_config_style(values)
        return cls(style=style, **values)

    @classmethod
    def from_json_file(cls, json_file):
        try:
            with open(json_file, encoding="utf-8") as f:
                values = json.load(f)
        except FileNotFoundError:
            raise AlbertError(f"config file not found: {json_file}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise AlbertError(f"{json_file}: not a valid JSON config ({e})") from None
        if not isinstance(values, dict):
            raise AlbertError(f"{json_file}: expected a JSON object of hyper-parameters")
        try:
            return cls.from_dict(values)
        except AlbertError as e:
            raise AlbertError(f"{json_file}: {e}") from None

    def to_dict(self):
        values = dict(self.extra)
        values.update(
            vocab_size=self.vocab_size,
            embedding_size=self.embedding_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act,
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
            max_position_embeddings=self.max_position_embeddings,
            type_vocab_size=self.type_vocab_size,
            initializer_range=self.initializer_range,
        )
        if self.style == "brightmart":
            values["ln_type"] = self.ln_type
            if not self.share_parameter_across_layers:
                values["share_parameter_across_layers"] = False
        else:
            values.update(
                num_hidden_groups=self.num_hidden_groups, inner_group_num=self.inner_group_num
            )
        return values

    def to_json_string(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def check_max_seq_length(self, max_seq_length, flag="--max_seq_length"):
        """AlbertError when sequences of `max_seq_length` tokens cannot fit the position table."""
        if max_seq_length > self.max_position_embeddings:
            raise AlbertError(
                f"{flag}={max_seq_length} exceeds max_position_embeddings="
                f"{self.max_position_embeddings} of the config: use {flag} <= "
                f"{self.max_position_embeddings}"
            )

    def replace(self, **changes):
        """A copy with some attributes changed (e.g. `config.replace(style="google")`)."""
        new = copy.deepcopy(self)
        for key, value in changes.items():
            if not hasattr(new, key):
                raise AttributeError(f"AlbertConfig has no attribute {key!r}")
            setattr(new, key, value)
        new._validate()
        return new


def infer_config_style(values):
    """The style a config JSON was written for, from its keys; None if it does not say."""
    if "ln_type" in values:
        return "brightmart"
    if "num_hidden_groups" in values or "inner_group_num" in values:
        return "google"
    return None


# ----------------------------------------------------------------------------------------------
# Small building blocks.
# ----------------------------------------------------------------------------------------------


def gelu(x):
    """GELU, tanh approximation: what both original code bases (and HF's "gelu_new") compute."""
    cube = x * x * x
    return 0.5 * x * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * cube)))


_ACTIVATIONS = {
    "gelu": gelu,
    "gelu_new": gelu,
    "relu": tf.nn.relu,
    "swish": tf.nn.silu,
    "tanh": tf.tanh,
    "linear": tf.identity,
}


def layer_norm(x, gamma, beta, epsilon=1e-12):
    """LayerNorm over the last axis, computed in float32 whatever the input dtype."""
    x32 = tf.cast(x, tf.float32)
    mean = tf.reduce_mean(x32, axis=-1, keepdims=True)
    centered = x32 - mean
    variance = tf.reduce_mean(tf.square(centered), axis=-1, keepdims=True)
    normed = centered * tf.math.rsqrt(variance + epsilon) * gamma + beta
    return tf.cast(normed, x.dtype)


def dropout(x, rate, training):
    if not training or rate <= 0.0:
        return x
    return tf.nn.dropout(x, rate=rate)


def dense(x, kernel, bias=None):
    """x[..., in] @ kernel[in, out] + bias, in x's dtype (variables are cast to it)."""
    # A 2-D matmul is much faster than TF's broadcasting batch matmul of [B,S,in] @ [in,out].
    in_width, out_width = kernel.shape
    y = tf.matmul(tf.reshape(x, [-1, in_width]), tf.cast(kernel, x.dtype))
    if bias is not None:
        y = tf.nn.bias_add(y, tf.cast(bias, x.dtype))
    return tf.reshape(y, tf.concat([tf.shape(x)[:-1], [out_width]], 0))


def attention_mask_adder(input_mask, dtype):
    """[B, T] 1/0 mask -> additive [B, 1, 1, T] with -10000 on padding, as the originals."""
    # expand_dims, not [:, None, None, :]: TFLite has no builtin strided slice with new axes.
    mask = tf.expand_dims(tf.expand_dims(tf.cast(input_mask, tf.float32), 1), 1)
    return tf.cast((1.0 - mask) * -10000.0, dtype)


class _PaddedTokens:
    """Token layout [B, S, W]: every position is computed (inference, exports, XLA and TPU)."""

    def pack(self, x):
        return x

    def to_padded(self, x):
        return x

    def batch_and_length(self, x):
        shape = tf.shape(x)
        return shape[0], shape[1]

    def first_tokens(self, x):
        return x[:, 0, :]


class _PackedTokens:
    """Token layout [N, W]: the N real tokens of a [B, S] batch, row by row, padding left out.

    Embeddings, projections, the feed-forward block and LayerNorm act on each token alone, so
    they run on the real tokens only; attention, which mixes positions, gets its [B, S, W]
    queries, keys and values back with zeros at the padding, which the attention mask hides.
    Real tokens therefore get what the padded layout computes (up to float rounding), for
    less work the more padding a batch has. Shapes depend on the data, so not under XLA.
    """

    def __init__(self, input_mask):
        shape = tf.shape(input_mask)
        self.batch, self.length = shape[0], shape[1]
        self.index = tf.cast(tf.where(tf.reshape(input_mask, [-1]) > 0), tf.int32)  # [N, 1]
        self.positions = self.index[:, 0] % self.length  # [N] position in its sequence
        # Row of each sequence's first token ([CLS], never padding); clipped for empty rows.
        starts = tf.math.cumsum(tf.reduce_sum(tf.cast(input_mask > 0, tf.int32), 1), exclusive=True)
        self.first_rows = tf.minimum(starts, tf.maximum(tf.shape(self.index)[0] - 1, 0))

    def pack(self, x):
        """[B, S, ...] -> [N, ...]."""
        flat = tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))
        return tf.gather(flat, self.index[:, 0])

    def to_padded(self, x):
        """[N, W] -> [B, S, W] with zeros at padding."""
        width = tf.shape(x)[1]
        flat = tf.scatter_nd(self.index, x, tf.stack([self.batch * self.length, width]))
        return tf.reshape(flat, tf.stack([self.batch, self.length, width]))

    def batch_and_length(self, x):
        return self.batch, self.length

    def first_tokens(self, x):
        """[N, W] -> [B, W]."""
        return tf.gather(x, self.first_rows)


_PADDED = _PaddedTokens()


class _VariableFactory:
    """Creates the model's variables under their original names, deterministic given a seed."""

    def __init__(self, initializer_range, seed=None):
        self.initializer_range = initializer_range
        self.seed = seed
        self.variables = collections.OrderedDict()

    def normal(self, name, shape):
        if self.seed is None:
            value = tf.random.truncated_normal(shape, stddev=self.initializer_range)
        else:
            value = tf.random.stateless_truncated_normal(
                shape, seed=[self.seed, len(self.variables)], stddev=self.initializer_range
            )
        return self._create(name, value)

    def zeros(self, name, shape):
        return self._create(name, tf.zeros(shape))

    def ones(self, name, shape):
        return self._create(name, tf.ones(shape))

    def _create(self, name, value):
        if name in self.variables:
            raise ValueError(f"duplicate variable {name}")
        variable = tf.Variable(value, name=name.replace("/", "__"), trainable=True)
        self.variables[name] = variable
        return variable


# ----------------------------------------------------------------------------------------------
# Variable names of one transformer layer in each style.
# ----------------------------------------------------------------------------------------------

_LAYER_ROLES = (
    "query/kernel",
    "query/bias",
    "key/kernel",
    "key/bias",
    "value/kernel",
    "value/bias",
    "attention_output/kernel",
    "attention_output/bias",
    "attention_norm/gamma",
    "attention_norm/beta",
    "ffn_in/kernel",
    "ffn_in/bias",
    "ffn_out/kernel",
    "ffn_out/bias",
    "ffn_norm/gamma",
    "ffn_norm/beta",
)

_GOOGLE_LAYER_NAMES = {
    "query": "attention_1/self/query",
    "key": "attention_1/self/key",
    "value": "attention_1/self/value",
    "attention_output": "attention_1/output/dense",
    "attention_norm": "LayerNorm",
    "ffn_in": "ffn_1/intermediate/dense",
    "ffn_out": "ffn_1/intermediate/output/dense",
    "ffn_norm": "LayerNorm_1",
}
_BRIGHTMART_LAYER_NAMES = {
    "query": "attention/self/query",
    "key": "attention/self/key",
    "value": "attention/self/value",
    "attention_output": "attention/output/dense",
    "attention_norm": "attention/output/LayerNorm",
    "ffn_in": "intermediate/dense",
    "ffn_out": "output/dense",
    "ffn_norm": "output/LayerNorm",
}


def layer_variable_name(style, scope, role):
    """Full checkpoint name of one layer variable, e.g. role "ffn_in/kernel"."""
    block, leaf = role.split("/")
    names = _GOOGLE_LAYER_NAMES if style == "google" else _BRIGHTMART_LAYER_NAMES
    return f"{scope}/{names[block]}/{leaf}"


def layer_scopes(config, style):
    """Per applied layer, the list of variable scopes it runs (several if inner_group_num > 1).

    google: layer i uses group int(i / L * G), as Google's code does, and runs all its inner
    groups. brightmart: one shared scope, or `layer_{i}` when weights are not shared.
    """
    scopes = []
    for i in range(config.num_hidden_layers):
        if style == "google":
            group = int(i / config.num_hidden_layers * config.num_hidden_groups)
            scopes.append(
                [
                    f"bert/encoder/transformer/group_{group}/inner_group_{k}"
                    for k in range(config.inner_group_num)
                ]
            )
        elif config.share_parameter_across_layers:
            scopes.append(["bert/encoder/layer_shared"])
        else:
            scopes.append([f"bert/encoder/layer_{i}"])
    return scopes


# ----------------------------------------------------------------------------------------------
# The encoder.
# ----------------------------------------------------------------------------------------------


class AlbertModel(tf.Module):
    """The ALBERT encoder: embeddings, shared transformer layers and the pooler.

    Call it with int32 `input_ids` [B, S] (plus optional `input_mask`, `segment_ids`); it
    returns a dict with `sequence_output` [B,S,H], `pooled_output` [B,H], `all_encoder_layers`
    (one [B,S,H] per layer) and `embedding_output` ([B,S,E] google, [B,S,H] brightmart).

    With `skip_padding` (the default in training, see `set_skip_padding`) the per-token layers
    run on the real tokens only (`_PackedTokens`) and the outputs are 0 at padding positions.
    With `pooled_only` the last layer runs for the first token alone (its other outputs feed
    nothing but `sequence_output`) and only `pooled_output` is returned: a classifier's path.
    """

    def __init__(self, config, style=None, seed=None, name="albert"):
        super().__init__(name=name)
        style = style or config.style or "google"
        if style not in STYLES:
            raise AlbertError(f"unknown style {style!r}: use one of {', '.join(STYLES)}")
        if style == "google" and config.ln_type == "preln":
            raise AlbertError("ln_type 'preln' exists only in the brightmart style")
        self.config = config
        self.style = style
        self.compute_dtype = tf.float32
        self.skip_padding_in_training = True
        self._factory = _VariableFactory(config.initializer_range, seed)
        self._build_variables()
        self.weights = self._factory.variables  # tracked by tf.Module (SavedModel, checkpoints)

    # -- variables ----------------------------------------------------------------------------

    def _build_variables(self):
        c, make = self.config, self._factory
        E, H = c.embedding_size, c.hidden_size
        # In the brightmart style the type/position embeddings and LayerNorm are H-wide.
        width = E if self.style == "google" else H
        make.normal("bert/embeddings/word_embeddings", [c.vocab_size, E])
        if self.style == "brightmart":
            make.normal("bert/embeddings/word_embeddings_2", [E, H])
        make.normal("bert/embeddings/token_type_embeddings", [c.type_vocab_size, width])
        make.normal("bert/embeddings/position_embeddings", [c.max_position_embeddings, width])
        make.ones("bert/embeddings/LayerNorm/gamma", [width])
        make.zeros("bert/embeddings/LayerNorm/beta", [width])
        if self.style == "google" and E != H:
            make.normal("bert/encoder/embedding_hidden_mapping_in/kernel", [E, H])
            make.zeros("bert/encoder/embedding_hidden_mapping_in/bias", [H])
        seen = set()
        for scopes in layer_scopes(c, self.style):
            for scope in scopes:
                if scope not in seen:
                    seen.add(scope)
                    self._build_layer_variables(scope)
        make.normal("bert/pooler/dense/kernel", [H, H])
        make.zeros("bert/pooler/dense/bias", [H])

    def _build_layer_variables(self, scope):
        c, make = self.config, self._factory
        H, inner = c.hidden_size, c.intermediate_size
        shapes = {
            "query": [H, H],
            "key": [H, H],
            "value": [H, H],
            "attention_output": [H, H],
            "ffn_in": [H, inner],
            "ffn_out": [inner, H],
        }
        for role in _LAYER_ROLES:
            block, leaf = role.split("/")
            name = layer_variable_name(self.style, scope, role)
            if leaf == "kernel":
                make.normal(name, shapes[block])
            elif leaf == "gamma":
                make.ones(name, [H])
            else:  # bias, beta
                make.zeros(name, [shapes[block][1]] if block in shapes else [H])

    def named_variables(self):
        """Ordered dict original-checkpoint-name -> tf.Variable."""
        return collections.OrderedDict(self.weights)

    def set_compute_dtype(self, dtype):
        self.compute_dtype = tf.as_dtype(dtype)

    def set_skip_padding(self, enabled):
        """Whether training calls skip padding; off under XLA / TPU, which need static shapes."""
        self.skip_padding_in_training = bool(enabled)

    def _w(self, name):
        return self.weights[name]

    # -- forward ------------------------------------------------------------------------------

    def __call__(
        self,
        input_ids,
        input_mask=None,
        segment_ids=None,
        training=False,
        skip_padding=None,
        pooled_only=False,
    ):
        input_ids = tf.convert_to_tensor(input_ids, tf.int32)
        no_mask = input_mask is None
        if no_mask:
            input_mask = tf.ones_like(input_ids)
        if segment_ids is None:
            segment_ids = tf.zeros_like(input_ids)
        input_mask = tf.cast(input_mask, tf.int32)
        segment_ids = tf.cast(segment_ids, tf.int32)
        if skip_padding is None:
            skip_padding = training and self.skip_padding_in_training and not no_mask
        layout = _PackedTokens(input_mask) if skip_padding else _PADDED

        embedding_output = self.embed(input_ids, segment_ids, training, layout)
        hidden = embedding_output
        if self.style == "google" and self.config.embedding_size != self.config.hidden_size:
            hidden = dense(
                hidden,
                self._w("bert/encoder/embedding_hidden_mapping_in/kernel"),
                self._w("bert/encoder/embedding_hidden_mapping_in/bias"),
            )

        mask_adder = attention_mask_adder(input_mask, tf.float32)
        layers = layer_scopes(self.config, self.style)
        if pooled_only:
            *earlier, last = [scope for scopes in layers for scope in scopes]
            for scope in earlier:
                hidden = self._transformer_layer(scope, hidden, mask_adder, training, layout)
            first_token = self._transformer_layer(
                last, hidden, mask_adder, training, layout, first_only=True
            )
            return {"pooled_output": self._pool(tf.cast(first_token, tf.float32))}

        all_layers = []
        for scopes in layers:
            for scope in scopes:
                hidden = self._transformer_layer(scope, hidden, mask_adder, training, layout)
            all_layers.append(tf.cast(layout.to_padded(hidden), tf.float32))
        sequence_output = all_layers[-1]
        pooled_output = self._pool(sequence_output[:, 0, :])
        return {
            "sequence_output": sequence_output,
            "pooled_output": pooled_output,
            "all_encoder_layers": all_layers,
            "embedding_output": tf.cast(layout.to_padded(embedding_output), tf.float32),
        }

    def _pool(self, first_token):
        kernel, bias = self._w("bert/pooler/dense/kernel"), self._w("bert/pooler/dense/bias")
        return tf.tanh(dense(first_token, kernel, bias))

    def embed(self, input_ids, segment_ids, training=False, layout=_PADDED):
        """Word + token-type + position embeddings, LayerNorm and dropout (in `layout`)."""
        c = self.config
        seq_length = _check_sequence_length(input_ids, c.max_position_embeddings)
        position_table = self._w("bert/embeddings/position_embeddings")
        if layout is _PADDED:
            positions = position_table[:seq_length][tf.newaxis]
        else:
            positions = tf.gather(position_table, layout.positions)
        words = tf.gather(self._w("bert/embeddings/word_embeddings"), layout.pack(input_ids))
        if self.style == "brightmart":
            words = tf.matmul(words, self._w("bert/embeddings/word_embeddings_2"))
        types = tf.gather(
            self._w("bert/embeddings/token_type_embeddings"), layout.pack(segment_ids)
        )
        embeddings = words + types + positions
        embeddings = layer_norm(
            embeddings,
            self._w("bert/embeddings/LayerNorm/gamma"),
            self._w("bert/embeddings/LayerNorm/beta"),
        )
        embeddings = dropout(embeddings, c.hidden_dropout_prob, training)
        return tf.cast(embeddings, self.compute_dtype)

    def _layer_weight(self, scope, role):
        return self._w(layer_variable_name(self.style, scope, role))

    def _transformer_layer(self, scope, x, mask_adder, training, layout=_PADDED, first_only=False):
        """One transformer block; post-LN (both styles) or brightmart pre-LN.

        first_only: every token is a key and a value, but only the first token is a query, so
        the block returns the first token's [B, H] output.
        """
        w = functools.partial(self._layer_weight, scope)
        drop = self.config.hidden_dropout_prob
        act = _ACTIVATIONS[self.config.hidden_act]
        residual = layout.first_tokens(x) if first_only else x

        def attention_block(inputs):
            context = self._self_attention(scope, inputs, mask_adder, training, layout, first_only)
            out = dense(context, w("attention_output/kernel"), w("attention_output/bias"))
            return dropout(out, drop, training)

        def ffn_block(inputs):
            inner = act(dense(inputs, w("ffn_in/kernel"), w("ffn_in/bias")))
            out = dense(inner, w("ffn_out/kernel"), w("ffn_out/bias"))
            return dropout(out, drop, training)

        if self.config.ln_type == "preln":
            x = residual + attention_block(
                layer_norm(x, w("attention_norm/gamma"), w("attention_norm/beta"))
            )
            return x + ffn_block(layer_norm(x, w("ffn_norm/gamma"), w("ffn_norm/beta")))
        x = layer_norm(
            residual + attention_block(x), w("attention_norm/gamma"), w("attention_norm/beta")
        )
        return layer_norm(x + ffn_block(x), w("ffn_norm/gamma"), w("ffn_norm/beta"))

    def _self_attention(self, scope, x, mask_adder, training, layout=_PADDED, first_only=False):
        """Multi-head scaled dot-product self-attention; returns the context in x's layout
        (first_only: the first tokens' [B, H] context)."""
        c = self.config
        num_heads = c.num_attention_heads
        head_size = c.hidden_size // num_heads
        batch, seq = layout.batch_and_length(x)

        def project(inputs, role):
            kernel = self._layer_weight(scope, f"{role}/kernel")
            return dense(inputs, kernel, self._layer_weight(scope, f"{role}/bias"))

        def heads(projected, length):  # [B,length,H] -> [B,N,length,D]
            projected = tf.reshape(projected, [batch, length, num_heads, head_size])
            return tf.transpose(projected, [0, 2, 1, 3])

        roles = ("key", "value") if first_only else ("query", "key", "value")
        if layout is _PADDED:
            projections = [heads(project(x, role), seq) for role in roles]
        else:
            # One [N, kH] projection and one copy into the padded layout instead of k.
            kernel = tf.concat([self._layer_weight(scope, f"{r}/kernel") for r in roles], 1)
            bias = tf.concat([self._layer_weight(scope, f"{r}/bias") for r in roles], 0)
            fused = layout.to_padded(dense(x, kernel, bias))
            fused = tf.reshape(fused, [batch, seq, len(roles), num_heads, head_size])
            projections = tf.unstack(tf.transpose(fused, [2, 0, 3, 1, 4]))
        if first_only:
            query = heads(project(layout.first_tokens(x), "query"), 1)
            key, value = projections
        else:
            query, key, value = projections
        scores = tf.matmul(query, key, transpose_b=True)
        scores = tf.cast(scores, tf.float32) * (1.0 / math.sqrt(head_size)) + mask_adder
        probs = tf.nn.softmax(scores, axis=-1)
        probs = dropout(probs, c.attention_probs_dropout_prob, training)
        context = tf.matmul(tf.cast(probs, x.dtype), value)  # [B,N,S,D]
        context = tf.transpose(context, [0, 2, 1, 3])
        if first_only:
            return tf.reshape(context, [batch, c.hidden_size])
        return layout.pack(tf.reshape(context, [batch, seq, c.hidden_size]))


def _check_sequence_length(input_ids, max_position_embeddings):
    """The sequence length, checked against max_position_embeddings (statically if known)."""
    static_length = input_ids.shape[1]
    if static_length is not None:
        if static_length > max_position_embeddings:
            raise AlbertError(
                f"sequence length {static_length} exceeds max_position_embeddings "
                f"{max_position_embeddings} of the config: use --max_seq_length <= "
                f"{max_position_embeddings}"
            )
        return static_length
    seq_length = tf.shape(input_ids)[1]
    tf.debugging.assert_less_equal(
        seq_length,
        max_position_embeddings,
        message=f"sequence length exceeds max_position_embeddings {max_position_embeddings}",
    )
    return seq_length


# ----------------------------------------------------------------------------------------------
# Models with heads.
# ----------------------------------------------------------------------------------------------


class _ModelWithHeads(tf.Module):
    """Shared plumbing: an encoder plus head variables, all addressable by original name."""

    def __init__(self, config, style, seed, name, encoder=None):
        super().__init__(name=name)
        # Several heads may share one encoder (e.g. an export serving every head).
        self.encoder = encoder or AlbertModel(config, style=style, seed=seed)
        self.config = config
        self.style = self.encoder.style
        self._heads = _VariableFactory(config.initializer_range, None if seed is None else seed + 1)

    def named_variables(self):
        variables = self.encoder.named_variables()
        variables.update(self._heads.variables)
        return variables

    def _build_output_layer(self, num_labels):
        """The originals' classifier layer: `output_weights` [K, H], `output_bias` [K], after a
        `loss/LayerNorm` for brightmart pre-LN models (as albert_zh's run_classifier)."""
        make, H = self._heads, self.config.hidden_size
        if self.style == "brightmart" and self.config.ln_type == "preln":
            make.ones("loss/LayerNorm/gamma", [H])
            make.zeros("loss/LayerNorm/beta", [H])
        make.normal("output_weights", [num_labels, H])
        make.zeros("output_bias", [num_labels])

    def _output_logits(self, hidden, training):
        """[N, H] -> [N, K] float32 logits: (LayerNorm), dropout, the output layer."""
        w = self._heads.variables
        hidden = tf.cast(hidden, tf.float32)
        if "loss/LayerNorm/gamma" in w:
            hidden = layer_norm(hidden, w["loss/LayerNorm/gamma"], w["loss/LayerNorm/beta"])
        hidden = dropout(hidden, self.classifier_dropout, training)
        return tf.matmul(hidden, w["output_weights"], transpose_b=True) + w["output_bias"]

    @property
    def compute_dtype(self):
        return self.encoder.compute_dtype

    def set_compute_dtype(self, dtype):
        self.encoder.set_compute_dtype(dtype)

    def set_skip_padding(self, enabled):
        self.encoder.set_skip_padding(enabled)


class AlbertForPretraining(_ModelWithHeads):
    """Encoder + the masked-LM and sentence-order heads of the originals' run_pretraining.

    Returns the encoder's outputs, `sentence_order_logits` [B, 2] and, given
    `masked_lm_positions` [B, P], `masked_lm_logits` and `masked_lm_log_probs` [B, P, V].
    """

    def __init__(self, config, style=None, seed=None, name="albert_pretraining", encoder=None):
        super().__init__(config, style, seed, name, encoder)
        make, H = self._heads, config.hidden_size
        transform_width = config.embedding_size if self.style == "google" else H
        make.normal("cls/predictions/transform/dense/kernel", [H, transform_width])
        make.zeros("cls/predictions/transform/dense/bias", [transform_width])
        make.ones("cls/predictions/transform/LayerNorm/gamma", [transform_width])
        make.zeros("cls/predictions/transform/LayerNorm/beta", [transform_width])
        make.zeros("cls/predictions/output_bias", [config.vocab_size])
        make.normal("cls/seq_relationship/output_weights", [2, H])
        make.zeros("cls/seq_relationship/output_bias", [2])
        self.head_weights = self._heads.variables

    def __call__(
        self, input_ids, input_mask=None, segment_ids=None, masked_lm_positions=None, training=False
    ):
        # Pretraining batches are nearly full (95% real tokens from create_pretraining_data.py),
        # where skipping padding costs more than it saves.
        outputs = self.encoder(
            input_ids, input_mask, segment_ids, training=training, skip_padding=False
        )
        result = dict(outputs)
        if masked_lm_positions is not None:
            logits = self.masked_lm_logits(outputs["sequence_output"], masked_lm_positions)
            result["masked_lm_logits"] = logits
            result["masked_lm_log_probs"] = tf.nn.log_softmax(logits, axis=-1)
        result["sentence_order_logits"] = self.sentence_order_logits(outputs["pooled_output"])
        return result

    def masked_lm_logits(self, sequence_output, positions):
        """[B,S,H] encoder output, [B,P] positions -> [B,P,V] logits over the vocabulary."""
        w = self.head_weights
        dtype = self.compute_dtype
        gathered = tf.gather(
            tf.cast(sequence_output, dtype), tf.cast(positions, tf.int32), batch_dims=1
        )
        # 2-D [B*P, H] products from here: batched [B,P,.] ones would make each weight's
        # gradient a [B, ...] stack summed over B ([B, V, E] for the word embeddings).
        batch_and_predictions = tf.shape(gathered)[:2]
        gathered = tf.reshape(gathered, [-1, gathered.shape[-1]])
        act = _ACTIVATIONS[self.config.hidden_act]
        hidden = act(
            dense(
                gathered,
                w["cls/predictions/transform/dense/kernel"],
                w["cls/predictions/transform/dense/bias"],
            )
        )
        hidden = layer_norm(
            hidden,
            w["cls/predictions/transform/LayerNorm/gamma"],
            w["cls/predictions/transform/LayerNorm/beta"],
        )
        embeddings = self.encoder.weights
        if self.style == "brightmart":  # back through the H->E projection first
            hidden = tf.matmul(
                hidden,
                tf.cast(embeddings["bert/embeddings/word_embeddings_2"], dtype),
                transpose_b=True,
            )
        logits = tf.matmul(
            hidden, tf.cast(embeddings["bert/embeddings/word_embeddings"], dtype), transpose_b=True
        )
        logits = tf.cast(logits, tf.float32) + w["cls/predictions/output_bias"]
        return tf.reshape(logits, tf.concat([batch_and_predictions, [logits.shape[-1]]], 0))

    def sentence_order_logits(self, pooled_output):
        w = self.head_weights
        logits = tf.matmul(
            tf.cast(pooled_output, tf.float32),
            w["cls/seq_relationship/output_weights"],
            transpose_b=True,
        )
        return logits + w["cls/seq_relationship/output_bias"]


class AlbertForClassification(_ModelWithHeads):
    """Encoder + the originals' classifier: dropout(pooled) @ output_weights^T + output_bias.

    Brightmart pre-LN models apply `loss/LayerNorm` to the pooled output first, as albert_zh's
    run_classifier does.
    """

    def __init__(
        self,
        config,
        num_labels,
        style=None,
        classifier_dropout=0.1,
        seed=None,
        name="albert_classifier",
        encoder=None,
    ):
        super().__init__(config, style, seed, name, encoder)
        self.num_labels = num_labels
        self.classifier_dropout = classifier_dropout
        self._build_output_layer(num_labels)
        self.head_weights = self._heads.variables

    def __call__(self, input_ids, input_mask=None, segment_ids=None, training=False):
        # The last layer for [CLS] alone (pooled_only), in training, inference and exports:
        # the logits are the full encoder's (tests/test_modeling.py, tests/test_hf_parity.py).
        pooled = self.encoder(
            input_ids, input_mask, segment_ids, training=training, pooled_only=True
        )["pooled_output"]
        return self.logits_from_pooled(pooled, training)

    def logits_from_pooled(self, pooled, training=False):
        return self._output_logits(pooled, training)


# ----------------------------------------------------------------------------------------------
# Linear-chain CRF and the token-classification model (NER).
# ----------------------------------------------------------------------------------------------
#
# Shapes: emissions [B, T, K] (K tags), tags [B, T], a mask [B, T] (or lengths [B]),
# transitions [K, K] (transitions[i, j] scores tag j following tag i), start/end [K]. The score of
# a tag sequence y over the unmasked positions t1 < t2 < ... < tn is
#   start[y1] + sum_i emissions[ti, yi] + sum_i transitions[y(i-1), yi] + end[yn].
# The mask need not be a prefix: masked positions are skipped, so the first tokens of the label
# units (ner_data's label_mask) form the chain directly. All CRF math is float32 (emissions are
# cast), and the loops are tf.scan, so everything runs inside tf.function(jit_compile=True).

# Score given to forbidden transitions by `crf_constrain`: no path using one can beat an allowed
# path (all-O is always allowed), and it is finite, so logsumexp never sees -inf - -inf = NaN.
CRF_FORBIDDEN_SCORE = -1e9


def _crf_mask(emissions, lengths_or_mask):
    """[B] lengths or [B, T] 0/1 mask -> [B, T] bool mask."""
    lengths_or_mask = tf.convert_to_tensor(lengths_or_mask)
    if lengths_or_mask.shape.rank == 1:
        return tf.sequence_mask(lengths_or_mask, tf.shape(emissions)[1])
    return tf.cast(lengths_or_mask, tf.bool)


def _crf_float32(emissions, transitions, start_transitions, end_transitions):
    """Cast to float32; missing start/end transitions are zeros (torchcrf always has them)."""
    num_tags = tf.shape(transitions)[-1]
    start = tf.zeros([num_tags]) if start_transitions is None else start_transitions
    end = tf.zeros([num_tags]) if end_transitions is None else end_transitions
    # convert_to_tensor reads a variable once here: XLA cannot gather from a resource variable
    # (ResourceGatherNd) inside the scan.
    values = (emissions, transitions, start, end)
    return [tf.cast(tf.convert_to_tensor(x), tf.float32) for x in values]


def _time_major(x):
    """[B, T, ...] -> [T, B, ...], the layout tf.scan iterates over."""
    rank = x.shape.rank
    return tf.transpose(x, [1, 0] + list(range(2, rank)))


def crf_sequence_score(
    emissions, tags, lengths_or_mask, transitions, start_transitions=None, end_transitions=None
):
    """[B] unnormalized score of the given tag sequences (0 for a fully masked row).

    Vectorized: the tags of the unmasked positions are packed to the left first, so that
    neighbours in `packed` are exactly the pairs the transitions score.
    """
    emissions, transitions, start, end = _crf_float32(
        emissions, transitions, start_transitions, end_transitions
    )
    mask = tf.cast(_crf_mask(emissions, lengths_or_mask), tf.int32)
    tags = tf.cast(tags, tf.int32)
    batch, length = tf.shape(tags)[0], tf.shape(tags)[1]
    emitted = tf.gather(emissions, tags, batch_dims=2) * tf.cast(mask, tf.float32)

    # packed[b, k] = the tag of the k-th unmasked position of row b; masked positions are
    # scattered into an extra column that is then cut off.
    rank = tf.cumsum(mask, axis=1) - 1
    column = tf.where(mask > 0, rank, length)
    rows = tf.broadcast_to(tf.range(batch)[:, tf.newaxis], [batch, length])
    packed = tf.tensor_scatter_nd_add(
        tf.zeros([batch, length + 1], tf.int32), tf.stack([rows, column], -1), tags
    )[:, :length]
    counts = tf.reduce_sum(mask, axis=1)

    pairs = tf.stack([packed[:, :-1], packed[:, 1:]], -1)
    paired = tf.range(1, length)[tf.newaxis] < counts[:, tf.newaxis]
    transition = tf.gather_nd(transitions, pairs) * tf.cast(paired, tf.float32)
    last = tf.gather(packed, tf.maximum(counts - 1, 0), batch_dims=1)
    boundary = tf.where(counts > 0, tf.gather(start, packed[:, 0]) + tf.gather(end, last), 0.0)
    return tf.reduce_sum(emitted, 1) + tf.reduce_sum(transition, 1) + boundary


def crf_log_partition(
    emissions, lengths_or_mask, transitions, start_transitions=None, end_transitions=None
):
    """[B] log of the sum of exp(score) over all tag sequences: the forward algorithm.

    alpha[j] = log-sum of the scores of all paths ending in tag j so far; a masked position
    leaves alpha unchanged. A fully masked row has log partition 0 (one empty path).
    """
    emissions, transitions, start, end = _crf_float32(
        emissions, transitions, start_transitions, end_transitions
    )
    mask = _crf_mask(emissions, lengths_or_mask)
    batch, num_tags = tf.shape(emissions)[0], tf.shape(emissions)[2]

    def step(carry, inputs):
        alpha, seen = carry
        emission, on = inputs
        # [B, from, 1] + [from, to] -> log-sum over `from`
        following = tf.reduce_logsumexp(alpha[:, :, tf.newaxis] + transitions, axis=1)
        new_alpha = tf.where(seen[:, tf.newaxis], following, start) + emission
        return tf.where(on[:, tf.newaxis], new_alpha, alpha), seen | on

    initial = (tf.zeros([batch, num_tags]), tf.zeros([batch], tf.bool))
    alphas, seen = tf.scan(step, (_time_major(emissions), _time_major(mask)), initial)
    return tf.where(seen[-1], tf.reduce_logsumexp(alphas[-1] + end, axis=1), 0.0)


def crf_log_likelihood(
    emissions, tags, lengths_or_mask, transitions, start_transitions=None, end_transitions=None
):
    """[B] log p(tags | emissions) = sequence score - log partition (float32)."""
    args = (transitions, start_transitions, end_transitions)
    return crf_sequence_score(emissions, tags, lengths_or_mask, *args) - crf_log_partition(
        emissions, lengths_or_mask, *args
    )


def crf_decode(
    emissions, lengths_or_mask, transitions, start_transitions=None, end_transitions=None
):
    """Viterbi: the best tag sequence -> (tags [B, T] int32, 0 at masked positions; score [B]).

    delta[j] = best score of a path ending in tag j; backpointers[t, b, j] = the tag before j on
    that path (the identity at masked positions, so backtracking walks through them).
    """
    emissions, transitions, start, end = _crf_float32(
        emissions, transitions, start_transitions, end_transitions
    )
    mask = _crf_mask(emissions, lengths_or_mask)
    batch, num_tags = tf.shape(emissions)[0], tf.shape(emissions)[2]
    identity = tf.broadcast_to(tf.range(num_tags), [batch, num_tags])

    def step(carry, inputs):
        delta, seen, _ = carry
        emission, on = inputs
        candidates = delta[:, :, tf.newaxis] + transitions  # [B, from, to]
        best_previous = tf.argmax(candidates, axis=1, output_type=tf.int32)
        new_delta = tf.where(seen[:, tf.newaxis], tf.reduce_max(candidates, axis=1), start)
        new_delta += emission
        linked = (seen & on)[:, tf.newaxis]
        return (
            tf.where(on[:, tf.newaxis], new_delta, delta),
            seen | on,
            tf.where(linked, best_previous, identity),
        )

    initial = (tf.zeros([batch, num_tags]), tf.zeros([batch], tf.bool), identity)
    deltas, seen, backpointers = tf.scan(step, (_time_major(emissions), _time_major(mask)), initial)
    final = deltas[-1] + end
    last_tag = tf.argmax(final, axis=1, output_type=tf.int32)
    # Walk back: the tag at t-1 is backpointers[t][tag at t], for t = T-1 .. 1.
    earlier = tf.scan(
        lambda tag, pointers: tf.gather(pointers, tag, batch_dims=1),
        backpointers[1:],
        last_tag,
        reverse=True,
    )
    tags = tf.transpose(tf.concat([earlier, last_tag[tf.newaxis]], 0))
    best_score = tf.where(seen[-1], tf.reduce_max(final, axis=1), 0.0)
    return tags * tf.cast(mask, tf.int32), best_score


def crf_allowed_transitions(tag_names, scheme="BIO"):
    """What a tag scheme allows -> (allowed [K, K], allowed_start [K], allowed_end [K]) bools.

    allowed[i, j]: tag j may follow tag i. BIO: I-X only after B-X or I-X (no I-X after O or
    B-Y). BIOES / BMES (M for I): I-X and E-X only after B-X or I-X; O, B-*, S-* only after O,
    E-* or S-*; a sequence starts with O, B-* or S-* and ends with O, E-* or S-*.
    """
    scheme = scheme.upper()
    if scheme not in ("BIO", "BIOES", "BMES"):
        raise AlbertError(f"unknown tag scheme {scheme!r}: use BIO, BIOES or BMES")
    inside = "M" if scheme == "BMES" else "I"
    valid_prefixes = ("B", "I") if scheme == "BIO" else ("B", inside, "E", "S")
    parsed = []
    for name in tag_names:
        prefix, _, entity_type = name.partition("-")
        if name != "O" and (prefix not in valid_prefixes or not entity_type):
            raise AlbertError(
                f"tag {name!r} is not a {scheme} tag (O or {'/'.join(valid_prefixes)}-<type>)"
            )
        parsed.append((prefix, entity_type))

    def opens_entity(prefix):  # B/I(M) leave an entity that only I(M)/E may continue
        return scheme != "BIO" and prefix in ("B", inside)

    def may_follow(previous, current):
        if current[0] in (inside, "E"):
            return previous[0] in ("B", inside) and previous[1] == current[1]
        return not opens_entity(previous[0])

    allowed = [[may_follow(p, c) for c in parsed] for p in parsed]
    allowed_start = [prefix not in (inside, "E") for prefix, _ in parsed]
    allowed_end = [not opens_entity(prefix) for prefix, _ in parsed]
    return (
        tf.constant(allowed, tf.bool, [len(parsed), len(parsed)]),
        tf.constant(allowed_start, tf.bool, [len(parsed)]),
        tf.constant(allowed_end, tf.bool, [len(parsed)]),
    )


def crf_constrain(
    transitions, start_transitions, end_transitions, allowed, allowed_start, allowed_end
):
    """Replace the scores of forbidden transitions by CRF_FORBIDDEN_SCORE (for decoding)."""
    _, transitions, start, end = _crf_float32(
        tf.zeros([0]), transitions, start_transitions, end_transitions
    )
    return (
        tf.where(allowed, transitions, CRF_FORBIDDEN_SCORE),
        tf.where(allowed_start, start, CRF_FORBIDDEN_SCORE),
        tf.where(allowed_end, end, CRF_FORBIDDEN_SCORE),
    )


class AlbertForTokenClassification(_ModelWithHeads):
    """Encoder + a per-token tagger: dropout(sequence_output) @ output_weights^T + output_bias,
    optionally followed by a linear-chain CRF (`use_crf`).

    Head variables mirror AlbertForClassification's (`output_weights` [K, H], `output_bias` [K];
    `loss/LayerNorm` first for brightmart pre-LN models); the CRF adds `output_transitions`
    [K, K], `output_start_transitions` [K] and `output_end_transitions` [K], zero-initialized.
    All head names start with "output_" or "loss/", so a pretrained checkpoint without them
    loads with load_checkpoint's default allow_missing.

    `allowed_transitions` (from `crf_allowed_transitions`) constrains `decode` to sequences the
    tag scheme allows; without a CRF it then runs Viterbi over the per-token log-probabilities.
    """

    def __init__(
        self,
        config,
        num_labels,
        style=None,
        classifier_dropout=0.1,
        use_crf=False,
        allowed_transitions=None,
        seed=None,
        name="albert_token_classifier",
        encoder=None,
    ):
        super().__init__(config, style, seed, name, encoder)
        make = self._heads
        self.num_labels = num_labels
        self.classifier_dropout = classifier_dropout
        self.use_crf = use_crf
        self.allowed_transitions = allowed_transitions
        self._build_output_layer(num_labels)
        if use_crf:
            make.zeros("output_transitions", [num_labels, num_labels])
            make.zeros("output_start_transitions", [num_labels])
            make.zeros("output_end_transitions", [num_labels])
        self.head_weights = self._heads.variables

    def __call__(self, input_ids, input_mask=None, segment_ids=None, training=False):
        """[B, S] inputs -> [B, S, K] float32 logits (the CRF emissions)."""
        sequence = self.encoder(input_ids, input_mask, segment_ids, training=training)[
            "sequence_output"
        ]
        return self.logits_from_sequence(sequence, training)

    def logits_from_sequence(self, sequence_output, training=False):
        # One 2-D matmul over all positions (faster on CPU than a batched 3-D one).
        flat = tf.reshape(sequence_output, [-1, self.config.hidden_size])
        logits = self._output_logits(flat, training)
        shape = tf.concat([tf.shape(sequence_output)[:-1], [self.num_labels]], 0)
        return tf.reshape(logits, shape)

    def crf_parameters(self):
        """(transitions, start, end); zeros without a CRF (decoding then scores tokens alone)."""
        if self.use_crf:
            w = self.head_weights
            return (
                w["output_transitions"],
                w["output_start_transitions"],
                w["output_end_transitions"],
            )
        zeros = tf.zeros([self.num_labels])
        return tf.zeros([self.num_labels, self.num_labels]), zeros, zeros

    def loss(self, logits, label_ids, label_mask):
        """Scalar training loss over the label_mask positions: loss_sum / loss_weight.

        CRF: the negative log-likelihood per sequence, averaged over the sequences that have a
        label. Otherwise: token cross-entropy averaged over the labelled tokens.
        """
        weight = self.loss_weight(label_mask)
        return self.loss_sum(logits, label_ids, label_mask) / tf.maximum(weight, 1.0)

    def loss_sum(self, logits, label_ids, label_mask):
        """The loss summed over the batch (training.py's contract: sums, divided globally).

        CRF: the sum of the sequences' negative log-likelihoods. Otherwise: the sum of the
        labelled tokens' cross-entropies.
        """
        mask = tf.cast(label_mask, tf.float32)
        label_ids = tf.cast(label_ids, tf.int32)
        if self.use_crf:
            log_likelihood = crf_log_likelihood(
                logits, label_ids, label_mask, *self.crf_parameters()
            )
            return -tf.reduce_sum(log_likelihood * self._labelled_rows(label_mask))
        per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(label_ids, logits)
        return tf.reduce_sum(per_token * mask)

    def loss_weight(self, label_mask):
        """What loss_sum is a sum over: labelled sequences (CRF) or labelled tokens."""
        if self.use_crf:
            return tf.reduce_sum(self._labelled_rows(label_mask))
        return tf.reduce_sum(tf.cast(label_mask, tf.float32))

    @staticmethod
    def _labelled_rows(label_mask):
        return tf.cast(tf.reduce_any(tf.cast(label_mask, tf.int32) > 0, axis=1), tf.float32)

    def decode(self, logits, label_mask):
        """[B, S] predicted tag ids at the label_mask positions (0 elsewhere)."""
        mask = tf.cast(label_mask, tf.int32)
        if not self.use_crf and self.allowed_transitions is None:
            return tf.argmax(logits, axis=-1, output_type=tf.int32) * mask
        emissions = logits if self.use_crf else tf.nn.log_softmax(logits, axis=-1)
        parameters = self.crf_parameters()
        if self.allowed_transitions is not None:
            parameters = crf_constrain(*parameters, *self.allowed_transitions)
        return crf_decode(emissions, mask, *parameters)[0]
