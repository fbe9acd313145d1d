"""Optimizers of the original ALBERT code (AdamW, LAMB) and their learning-rate schedule, in TF2.

The originals are TF1 `tf.train.Optimizer` subclasses; this is a small `tf.Module` with the same
numerics and without Keras:

- schedule: linear warmup `lr * step / W` while `step < W`, then `polynomial_decay` counted from
  step 0 (so the lr drops to `lr * (1 - W / T)` right after warmup), clamped at `T`;
- global-norm clipping of all gradients (1.0) before the update;
- Adam moments with beta_1 = 0.9, beta_2 = 0.999, epsilon = 1e-6 and NO bias correction;
- decoupled weight decay `update += 0.01 * w`, except for variables whose name contains
  "LayerNorm", "layer_norm" or "bias";
- LAMB multiplies the update by the trust ratio ||w|| / ||update||. The "google" flavour skips the
  ratio for LayerNorm and bias (slots `adam_m`/`adam_v`); the "brightmart" flavour applies it to
  every variable (slots `lamb_m`/`lamb_v`).

Variables are addressed by their ORIGINAL checkpoint names, so slots are checkpointed under the
original names `<variable name>/adam_m` etc.

Usage (the training loop owns the gradient all-reduce and the loss scaling):

    optimizer = optimization.create_optimizer(1e-4, num_train_steps, num_warmup_steps, "lamb")
    with strategy.scope():
        model = ...
        optimizer.build(model.named_variables())     # slots + `iterations`, mirrored
    def replica_step(batch):                         # inside strategy.run
        grads = tape.gradient(loss, variables)
        grads = replica_context.all_reduce("sum", grads)    # caller's job
        optimizer.apply_gradients(zip(grads, names))        # update happens via merge_call

`apply_gradients` works eagerly, inside `tf.function`, in a replica context (it hands the update to
the cross-replica context with `merge_call`) and in the cross-replica/default context.
"""

import contextlib
import functools
import re

import tensorflow as tf

import errors

# Names matching (re.search) one of these get no weight decay (and, for google LAMB, no trust ratio).
WEIGHT_DECAY_EXCLUSIONS = ("LayerNorm", "layer_norm", "bias")


class LinearWarmupPolynomialDecay:
    """The originals' learning rate as a function of the global step (a callable step -> lr)."""

    def __init__(
        self, learning_rate, num_train_steps, num_warmup_steps, power=1.0, end_learning_rate=0.0
    ):
        if num_train_steps <= 0:
            raise errors.AlbertError(
                f"num_train_steps must be positive, got {num_train_steps}: the learning rate "
                "decays to its end value over num_train_steps"
            )
        if num_warmup_steps < 0:
            raise errors.AlbertError(
                f"num_warmup_steps must be >= 0, got {num_warmup_steps} (0 disables warmup)"
            )
        self.learning_rate = float(learning_rate)
        self.num_train_steps = int(num_train_steps)
        self.num_warmup_steps = int(num_warmup_steps)
        self.power = float(power)
        self.end_learning_rate = float(end_learning_rate)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        # tf.compat.v1.train.polynomial_decay with cycle=False: the step is clamped at T.
        progress = tf.minimum(step, float(self.num_train_steps)) / float(self.num_train_steps)
        decayed = (self.learning_rate - self.end_learning_rate) * (
            1.0 - progress
        ) ** self.power + self.end_learning_rate
        if self.num_warmup_steps == 0:
            return decayed
        warmup = self.learning_rate * (step / float(self.num_warmup_steps))
        return tf.where(step < float(self.num_warmup_steps), warmup, decayed)


def _constant_schedule(learning_rate):
    """A schedule that ignores the step (for a plain float learning rate)."""
    value = float(learning_rate)
    return lambda step: tf.constant(value, tf.float32)


def _matches_any(name, patterns):
    return any(re.search(pattern, name) is not None for pattern in patterns)


def _in_scope_of(variables):
    """The scope of the strategy the variables were created in, unless a strategy is active."""
    for var in variables:
        if isinstance(var, tf.distribute.DistributedValues) and not tf.distribute.has_strategy():
            return var.distribute_strategy.scope()
    return contextlib.nullcontext()


class _AdamFamilyOptimizer(tf.Module):
    """Shared machinery: slots keyed by name, clipping, the step counter and the distributed apply.

    Subclasses only choose the trust ratio (`_trust_ratio`), 1.0 for AdamW.
    """

    def __init__(
        self,
        learning_rate,
        weight_decay_rate,
        beta_1,
        beta_2,
        epsilon,
        exclude_from_weight_decay,
        clip_norm,
        slot_suffixes,
        name,
    ):
        super().__init__(name=name)
        self.learning_rate = (
            learning_rate if callable(learning_rate) else _constant_schedule(learning_rate)
        )
        self.weight_decay_rate = float(weight_decay_rate)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.exclude_from_weight_decay = tuple(exclude_from_weight_decay or ())
        self.clip_norm = None if clip_norm is None else float(clip_norm)
        self.slot_suffixes = tuple(slot_suffixes)
        # original name -> factor on the learning rate of that variable (default 1), e.g. a
        # CRF's transitions, which start at zero and learn faster (run_ner --crf_learning_rate)
        self.learning_rate_multipliers = {}
        self._variables = {}  # original name -> model variable
        self._slots = {}  # original name -> (first moment m, second moment v)
        self._iterations = None

    # ----------------------------------------------------------------------------- state
    def build(self, named_variables):
        """Create the zero slots (and `iterations`) for a dict name -> variable.

        Call it inside the strategy scope the model was built in (it enters the variables' own
        scope if you do not). Calling it again only adds slots for new names.
        """
        named_variables = dict(named_variables)
        with _in_scope_of(named_variables.values()):
            strategy = tf.distribute.get_strategy()
            if self._iterations is None:
                # ONLY_FIRST_REPLICA: harmless default should anyone assign it in a replica context.
                self._iterations = tf.Variable(
                    0,
                    dtype=tf.int64,
                    trainable=False,
                    name="global_step",
                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
                )
            for name, var in named_variables.items():
                if name in self._variables:
                    continue
                with strategy.extended.colocate_vars_with(var):
                    self._slots[name] = tuple(
                        tf.Variable(
                            functools.partial(tf.zeros, var.shape, var.dtype),
                            trainable=False,
                            name=f"{name}/{suffix}",
                        )
                        for suffix in self.slot_suffixes
                    )
                self._variables[name] = var

    @property
    def iterations(self):
        """The global step (int64 variable): the number of applied updates."""
        if self._iterations is None:
            raise RuntimeError("call optimizer.build(named_variables) before using the optimizer")
        return self._iterations

    def named_slot_variables(self):
        """Dict `<variable name>/<slot suffix>` -> slot variable, as the originals checkpoint them."""
        return {
            f"{name}/{suffix}": slot
            for name, slots in self._slots.items()
            for suffix, slot in zip(self.slot_suffixes, slots, strict=True)
        }

    def current_learning_rate(self):
        """The learning rate the next `apply_gradients` will use."""
        return self.learning_rate(self.iterations)

    # ----------------------------------------------------------------------------- update
    def apply_gradients(self, grads_and_names, skip_if_nonfinite=False):
        """One optimizer step from (gradient, variable name) pairs; returns a bool "applied" tensor.

        Contract: the gradients are already all-reduced over replicas (the training loop does
        that, and the fp16 loss unscaling). None gradients are skipped. Gradients are converted
        to dense float32 (IndexedSlices included) and clipped by their global norm.

        With skip_if_nonfinite=True, a step whose gradients contain NaN/Inf changes nothing (not
        the weights, slots nor `iterations`) and the returned flag is False. Otherwise the
        update is applied as the originals do and the flag is always True.
        """
        names, grads = [], []
        for grad, name in grads_and_names:
            if grad is None:
                continue
            if name not in self._variables:
                raise ValueError(f"no variable named {name!r} was given to optimizer.build()")
            var = self._variables[name]
            names.append(name)
            grads.append(tf.cast(tf.convert_to_tensor(grad), var.dtype))
        if not grads:
            return tf.constant(True)

        if skip_if_nonfinite:
            finite = tf.reduce_all(
                tf.stack([tf.reduce_all(tf.math.is_finite(grad)) for grad in grads])
            )
        else:
            finite = tf.constant(True)
        if self.clip_norm is not None:
            grads, _ = tf.clip_by_global_norm(grads, clip_norm=self.clip_norm)
        learning_rate = self.learning_rate(self.iterations)

        apply_everywhere = functools.partial(
            self._apply_on_every_device, names=names, skip_if_nonfinite=skip_if_nonfinite
        )
        # Called eagerly outside any scope with mirrored variables: act as in their scope.
        with _in_scope_of(self._variables[name] for name in names):
            if tf.distribute.in_cross_replica_context():
                apply_everywhere(tf.distribute.get_strategy(), grads, learning_rate, finite)
            else:
                # In a replica (strategy.run, or the default replica context without a strategy)
                # the variables are updated once per device from the cross-replica context.
                tf.distribute.get_replica_context().merge_call(
                    apply_everywhere, args=(grads, learning_rate, finite)
                )
        return finite

    def _apply_on_every_device(
        self, strategy, grads, learning_rate, finite, names, skip_if_nonfinite
    ):
        """Cross-replica part: update each variable's copy on each device, then count the step.

        The arguments may be per-replica values; `extended.update` hands every device its own
        component (they are equal, since the gradients were all-reduced).
        """
        for name, grad in zip(names, grads, strict=True):
            update_fn = functools.partial(
                self._update_variable, name=name, skip_if_nonfinite=skip_if_nonfinite
            )
            strategy.extended.update(
                self._variables[name], update_fn, args=(grad, learning_rate, finite), group=False
            )

        def count_step(iterations, finite):
            return iterations.assign_add(tf.cast(finite, tf.int64))

        strategy.extended.update(self._iterations, count_step, args=(finite,), group=False)

    def _update_variable(self, var, grad, learning_rate, finite, name, skip_if_nonfinite):
        """The AdamW/LAMB rule for one variable on one device (reads/writes the local copies)."""
        m, v = self._slots[name]  # inside `update`, mirrored slots resolve to this device's copy
        old_m, old_v, old_var = (tf.convert_to_tensor(x) for x in (m, v, var))

        new_m = self.beta_1 * old_m + (1.0 - self.beta_1) * grad
        new_v = self.beta_2 * old_v + (1.0 - self.beta_2) * tf.square(grad)
        update = new_m / (tf.sqrt(new_v) + self.epsilon)  # no bias correction, as the originals
        if self._use_weight_decay(name):
            update += self.weight_decay_rate * old_var
        learning_rate *= self.learning_rate_multipliers.get(name, 1.0)
        new_var = old_var - learning_rate * self._trust_ratio(name, old_var, update) * update

        if skip_if_nonfinite:
            new_m, new_v, new_var = (
                tf.where(finite, new, old)
                for new, old in ((new_m, old_m), (new_v, old_v), (new_var, old_var))
            )
        return [m.assign(new_m), v.assign(new_v), var.assign(new_var)]

    def _use_weight_decay(self, name):
        return self.weight_decay_rate != 0.0 and not _matches_any(
            name, self.exclude_from_weight_decay
        )

    def _trust_ratio(self, name, var, update):
        return 1.0


class AdamWeightDecay(_AdamFamilyOptimizer):
    """Adam with decoupled weight decay (the originals' AdamWeightDecayOptimizer, fine-tuning)."""

    def __init__(
        self,
        learning_rate,
        weight_decay_rate=0.01,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-6,
        exclude_from_weight_decay=WEIGHT_DECAY_EXCLUSIONS,
        clip_norm=1.0,
        slot_suffixes=("adam_m", "adam_v"),
        name="AdamWeightDecay",
    ):
        super().__init__(
            learning_rate,
            weight_decay_rate,
            beta_1,
            beta_2,
            epsilon,
            exclude_from_weight_decay,
            clip_norm,
            slot_suffixes,
            name,
        )


class LAMB(_AdamFamilyOptimizer):
    """LAMB: the AdamW update scaled per variable by the trust ratio ||w|| / ||update||.

    style="google": G's LAMBOptimizer; no ratio for names in exclude_from_layer_adaptation
    (default: the weight-decay exclusions), slots adam_m/adam_v.
    style="brightmart": albert_zh's pretraining LAMB; ratio for every variable (default
    exclude_from_layer_adaptation=()), slots lamb_m/lamb_v.
    """

    def __init__(
        self,
        learning_rate,
        weight_decay_rate=0.01,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-6,
        exclude_from_weight_decay=WEIGHT_DECAY_EXCLUSIONS,
        exclude_from_layer_adaptation=None,
        style="google",
        clip_norm=1.0,
        slot_suffixes=None,
        name="LAMB",
    ):
        if style not in ("google", "brightmart"):
            raise errors.AlbertError(f"LAMB style must be 'google' or 'brightmart', got {style!r}")
        if exclude_from_layer_adaptation is None:
            exclude_from_layer_adaptation = exclude_from_weight_decay if style == "google" else ()
        if slot_suffixes is None:
            slot_suffixes = ("adam_m", "adam_v") if style == "google" else ("lamb_m", "lamb_v")
        super().__init__(
            learning_rate,
            weight_decay_rate,
            beta_1,
            beta_2,
            epsilon,
            exclude_from_weight_decay,
            clip_norm,
            slot_suffixes,
            name,
        )
        self.style = style
        self.exclude_from_layer_adaptation = tuple(exclude_from_layer_adaptation)

    def _trust_ratio(self, name, var, update):
        if _matches_any(name, self.exclude_from_layer_adaptation):
            return 1.0
        var_norm = tf.norm(var)
        update_norm = tf.norm(update)
        # Both norms must be positive; otherwise (fresh zero bias, zero update) the ratio is 1.
        safe_ratio = var_norm / tf.where(update_norm > 0.0, update_norm, 1.0)
        return tf.where((var_norm > 0.0) & (update_norm > 0.0), safe_ratio, 1.0)


def create_optimizer(
    init_lr,
    num_train_steps,
    num_warmup_steps,
    optimizer="adamw",
    poly_power=1.0,
    style="google",
    weight_decay_rate=0.01,
    clip_norm=1.0,
    learning_rate_multipliers=None,
):
    """The originals' create_optimizer: warmup + polynomial decay, clipping, AdamW or LAMB.

    optimizer="adamw" (fine-tuning; slots adam_m/adam_v whatever the style) or "lamb"
    (pretraining; style "google" -> adam_m/adam_v and no ratio for LayerNorm/bias,
    "brightmart" -> lamb_m/lamb_v and the ratio everywhere). `learning_rate_multipliers`:
    {variable name: factor} scales the schedule for those variables only.
    Call `.build(named_variables)` next.
    """
    if style not in ("google", "brightmart"):
        raise errors.AlbertError(f"style must be 'google' or 'brightmart', got {style!r}")
    schedule = LinearWarmupPolynomialDecay(
        init_lr, num_train_steps, num_warmup_steps, power=poly_power
    )
    if optimizer == "adamw":
        result = AdamWeightDecay(schedule, weight_decay_rate=weight_decay_rate, clip_norm=clip_norm)
    elif optimizer == "lamb":
        result = LAMB(
            schedule, weight_decay_rate=weight_decay_rate, style=style, clip_norm=clip_norm
        )
    else:
        raise errors.AlbertError(f"optimizer must be 'adamw' or 'lamb', got {optimizer!r}")
    result.learning_rate_multipliers = dict(learning_rate_multipliers or {})
    return result
