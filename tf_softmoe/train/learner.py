"""The compiled train step and the diagnostics step of an agent."""

import numpy as np
import tensorflow as tf

from tf_softmoe.agents import factory
from tf_softmoe.layers import noisy_dense
from tf_softmoe.metrics import diagnostics as diag
from tf_softmoe.networks.config import TOKENIZED_PENULTIMATES
from tf_softmoe.train import distribution as distribution_lib
from tf_softmoe.train import flat_call

BATCH_KEYS = ("state", "action", "reward", "next_state", "discount",
              "importance_weights")


def parse_jit_compile(jit_compile):
    """True, False or "auto" from a bool or "true"/"false"/"auto" (any case).

    Raises:
      ValueError: any other value.
    """
    if isinstance(jit_compile, bool):
        return jit_compile
    value = str(jit_compile).lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    if value != "auto":
        raise ValueError(f"jit_compile must be 'auto', 'true' or 'false', got {jit_compile!r}.")
    return "auto"


def _resolve(jit_compile, network_config, on_cpu):
    """The shared part of the two resolvers: explicit values pass through,
    "auto" is XLA on a GPU/TPU, the graph on a CPU without a network config,
    and `on_cpu(network_config)` otherwise."""
    value = parse_jit_compile(jit_compile)
    if value != "auto":
        return value
    if tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"):
        return True
    if network_config is None:
        return False
    return bool(on_cpu(network_config))


def resolve_jit_compile(jit_compile, network_config=None):
    """Whether the train step is compiled with XLA.

    `"auto"`: XLA on a GPU or TPU. On a CPU, XLA for the Nature encoder
    without noisy layers and with a token block, the plain graph otherwise
    (flatten and GAP blocks, every Impala network, every noisy network):
    per network, the faster of the two in `benchmarks/train_step_bench.py`,
    whose figures are in docs/performance.md ("Library changes made from
    these measurements", item 2). Without a `network_config`, the graph.
    Booleans and "true"/"false" pass through.

    Args:
      jit_compile: True, False, "true", "false" or "auto".
      network_config: the `NetworkConfig` of the network being trained.
    """
    return _resolve(jit_compile, network_config,
                    lambda c: (c.encoder == "nature" and not c.noisy
                               and c.penultimate in TOKENIZED_PENULTIMATES))


def resolve_policy_jit_compile(jit_compile, network_config=None):
    """Whether the acting policy (one observation per call) is compiled
    with XLA.

    `"auto"`: XLA on a GPU or TPU. On a CPU, XLA for every network except
    the noisy Nature networks with a flatten block: one observation through
    the network is dominated by per-op overheads that XLA's fused program
    avoids, while the noisy 7744×512 layer of Rainbow-Nature-flatten, drawing
    fresh noise each call, runs slower compiled. The figures of
    `benchmarks/policy_bench.py` are in docs/performance.md ("Library changes
    made from these measurements", item 7). Without a `network_config`, the
    graph. Booleans and "true"/"false" pass through.

    Args:
      jit_compile: True, False, "true", "false" or "auto".
      network_config: the `NetworkConfig` of the acting network.
    """
    return _resolve(jit_compile, network_config,
                    lambda c: not (c.noisy and c.encoder == "nature"
                                   and c.penultimate == "flatten"))


class Learner:
    """One gradient update per call, as one compiled function.

    `train(batch)` takes a replay batch (dict of NumPy arrays from
    `FrameReplayBuffer.sample`), runs the agent's loss, gradient, optimiser
    step and periodic target sync inside one `tf.function` (XLA when
    `jit_compile`), and returns NumPy scalars plus the per-sample loss (for
    priorities). Nothing inside writes summaries: they are computed here and
    written by the caller, outside XLA.

    `diagnostics(batch, taus)` runs the online network on the batch's states
    and returns the SPEC §6 diagnostics: dormant fractions of the penultimate
    hidden units for each τ, srank of the penultimate features, Q mean/std,
    per-expert gate and tokens per expert, router (Φ) gradient and weight
    norms, parameter norm.

    Under a `tf.distribute` strategy (`strategy`, see
    `tf_softmoe.train.distribution`) the agent must have been built in the
    strategy's scope. Replica r takes the r-th slice of the global batch
    (`batch_size` / replicas samples) and computes the loss of its slice
    scaled by the global batch size (`tf.nn.compute_average_loss`) and its
    gradients, compiled with XLA when `jit_compile`; the optimizer sums the
    gradients across replicas and every copy applies the same update,
    outside XLA (XLA around the whole replicated step cannot reach the other
    replicas' variables). The counters and the periodic target sync follow
    in cross-replica context. The loss is the sum of the replicas' (the
    global batch mean), the per-sample losses are gathered in the batch's
    order and the TD-error statistics are taken over the whole batch. On a
    TPU the strategy compiles the whole replica step.

    Args:
      agent: a `DqnAgent` or `RainbowAgent` from `make_agent`.
      jit_compile: True, False or "auto" (see `resolve_jit_compile`).
      batch_size: the fixed batch size (default: the agent config's).
      strategy: a `tf.distribute.Strategy` the agent was built under, or
        None (or the default strategy) for the single-device step.
      seed: the update's random draws (Rainbow's noise) come from
        `noisy_dense.seeded_draws([seed, updates so far])`, with the replica
        folded in under a strategy: TensorFlow's stateful random ops ignore
        every seed under XLA, and a restored run goes on drawing as it would
        have. None: drawn from NumPy's global stream, which a run seeds.

    Raises:
      DistributionError: the batch does not split evenly over the replicas.
    """

    def __init__(self, agent, jit_compile="auto", batch_size=None, strategy=None,
                 seed=None):
        self.agent = agent
        self.seed = int(np.random.randint(2**31 - 1) if seed is None else seed)
        self.jit_compile = resolve_jit_compile(
            jit_compile, getattr(agent.q_network, "config", None))
        self.batch_size = batch_size or agent.agent_config.batch_size
        self.strategy = (strategy if distribution_lib.is_distributed(strategy)
                         else None)
        observation = agent.time_step_spec.observation
        state = tf.TensorSpec([self.batch_size] + list(observation.shape),
                              observation.dtype)
        vector = tf.TensorSpec([self.batch_size], tf.float32)
        # A fixed signature and batch size: no retracing checks per call, one
        # XLA compilation, static shapes for the diagnostics.
        self._signature = [state, tf.TensorSpec([self.batch_size], tf.int32), vector,
                           state, vector, vector]
        # No AutoGraph: nothing here branches on tensors, and converting
        # TF-Agents' code dominated the first step (py-spy, docs/performance.md).
        if self.strategy is None:
            self._train_fn = tf.function(self._train_step, jit_compile=self.jit_compile,
                                         input_signature=self._signature, autograph=False)
        else:
            distribution_lib.check_batch_split(self.batch_size, self.strategy)
            self._replica_batch_size = self.batch_size // self.strategy.num_replicas_in_sync
            on_tpu = isinstance(self.strategy, tf.distribute.TPUStrategy)
            if on_tpu:
                self.jit_compile = True  # TPUStrategy compiles the replica step
            self._replica_gradients_fn = tf.function(
                self._replica_gradients, autograph=False,
                jit_compile=self.jit_compile and not on_tpu)
            self._train_fn = tf.function(self._distributed_train_step, autograph=False,
                                         input_signature=self._signature)
        self._batch_specs = [(key, spec.dtype.as_numpy_dtype, tuple(spec.shape))
                             for key, spec in zip(BATCH_KEYS, self._signature)]
        self._train_call = None
        self._diagnostics_fns = {}

    @property
    def q_network(self):
        return self.agent.q_network

    def _draws_seed(self):
        """The `[2]` seed of this update's random draws (see `seed`)."""
        # int32: XLA's stateless random ops take no other seed type.
        updates = tf.math.floormod(self.agent.train_step_counter, 2**31 - 1)
        return tf.stack([tf.constant(self.seed, tf.int32), tf.cast(updates, tf.int32)])

    def _train_step(self, state, action, reward, next_state, discount, weights):
        transition = factory.batch_to_transition(
            {"state": state, "action": action, "reward": reward,
             "next_state": next_state, "discount": discount},
            action_dtype=self.agent.action_spec.dtype)
        with noisy_dense.seeded_draws(self._draws_seed()):
            loss_info = self.agent.train_on(transition, weights)
        td_error = diag.td_error_statistics(loss_info.extra.td_error)
        return {
            "loss": loss_info.loss,
            "per_sample_loss": self.agent.per_sample_loss(loss_info),
            "td_error_mean": td_error.mean,
            "td_error_var": td_error.variance,
        }

    def _replica_gradients(self, state, action, reward, next_state, discount,
                           weights):
        """This replica's loss (scaled by the global batch size), per-sample
        loss, TD errors and gradients, on its slice of the batch."""
        transition = factory.batch_to_transition(
            {"state": state, "action": action, "reward": reward,
             "next_state": next_state, "discount": discount},
            action_dtype=self.agent.action_spec.dtype)
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed = tf.random.experimental.stateless_fold_in(
            self._draws_seed(), tf.cast(replica, tf.int32))
        with tf.GradientTape() as tape, noisy_dense.seeded_draws(seed):
            loss_info = self.agent.loss_on(transition, weights=weights, training=True)
        tf.debugging.check_numerics(loss_info.loss, "Loss is inf or nan")
        gradients = tape.gradient(loss_info.loss, self.q_network.trainable_weights)
        return (loss_info.loss, self.agent.per_sample_loss(loss_info),
                loss_info.extra.td_error, gradients)

    def _replica_step(self, *batch):
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        size = self._replica_batch_size
        start = tf.cast(replica, tf.int32) * size
        shard = [tf.slice(tensor, [start] + [0] * (tensor.shape.rank - 1),
                          [size] + tensor.shape.as_list()[1:]) for tensor in batch]
        loss, per_sample, td_error, gradients = self._replica_gradients_fn(*shard)
        # In replica context the optimizer all-reduces (sums) the gradients,
        # then updates every copy of the variables alike.
        self.agent.optimizer.apply_gradients(
            zip(gradients, self.q_network.trainable_weights))
        return loss, per_sample, td_error

    def _distributed_train_step(self, *batch):
        strategy = self.strategy
        loss, per_sample, td_error = strategy.run(self._replica_step, args=batch)
        self.agent.train_step_counter.assign_add(1)
        self.agent.update_target_periodically()
        td_error = diag.td_error_statistics(strategy.gather(td_error, axis=0))
        return {
            "loss": strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
            "per_sample_loss": strategy.gather(per_sample, axis=0),
            "td_error_mean": td_error.mean,
            "td_error_var": td_error.variance,
        }

    def _batch_tensors(self, batch):
        return [tf.constant(flat_call.checked_array(
            batch[key], dtype, shape, f"batch[{key!r}]",
            f"the learner expects {shape} (batch size {self.batch_size})"))
                for key, dtype, shape in self._batch_specs]

    def train(self, batch):
        """One update; returns a dict of NumPy values.

        Raises:
          ValueError: a batch entry's shape differs from the learner's.
        """
        tensors = self._batch_tensors(batch)
        # TF-Agents writes summaries when a default writer is recording; inside
        # XLA that fails, so recording is off around the compiled call (and
        # its tracing, on the first call).
        with tf.summary.record_if(False):
            if self._train_call is None:
                # The concrete function on flat tensors: no per-call argument
                # binding (see flat_call).
                self._train_call = flat_call.flat_caller(
                    self._train_fn.get_concrete_function())
            out = self._train_call(tensors)
        return {key: value.numpy() for key, value in out.items()}

    def _diagnostics_step(self, state, action, reward, next_state, discount,
                          weights, taus):
        net = self.q_network
        # SoftMoE's Φ, or the linear router of the sparse MoE blocks.
        router = [v for v in net.trainable_variables
                  if v.name.endswith("/phi:0") or "/router/" in v.name]
        with tf.GradientTape() as tape:
            transition = factory.batch_to_transition(
                {"state": state, "action": action, "reward": reward,
                 "next_state": next_state, "discount": discount},
                action_dtype=self.agent.action_spec.dtype)
            loss = self.agent.loss_on(transition, weights=weights,
                                    training=False).loss
        grads = tape.gradient(loss, router) if router else []
        output, extra = net.call_with_diagnostics(state, training=False)
        if output.shape.rank == 3:  # C51 logits → expected Q-values
            support = tf.cast(self.agent.support, tf.float32)
            output = tf.reduce_sum(tf.nn.softmax(output, axis=-1) * support, axis=-1)
        q = diag.q_statistics(output)
        result = {
            "q_mean": q.mean,
            "q_std": q.std,
            "srank": diag.srank(extra["penultimate"]),
            "parameter_norm": diag.parameter_norm(net.trainable_variables),
        }
        for tau in taus:
            result[f"dormant_fraction_tau_{tau:g}"] = diag.dormant_fraction(
                extra["hidden"], tau)
        if "gate" in extra:
            result["expert_gate"] = extra["gate"]
            result["tokens_per_expert"] = extra["tokens_per_expert"]
        if router:
            result["router_grad_norm"] = tf.linalg.global_norm(grads)
            result["router_weight_norm"] = tf.linalg.global_norm(router)
        return result

    def diagnostics(self, batch, taus=(0.0, 0.025)):
        """SPEC §6 diagnostics on a batch; a dict of NumPy values."""
        taus = tuple(float(t) for t in taus)
        if taus not in self._diagnostics_fns:
            self._diagnostics_fns[taus] = tf.function(
                lambda *args: self._diagnostics_step(*args, taus=taus),
                jit_compile=self.jit_compile, input_signature=self._signature,
                autograph=False)
        args = [batch[key] for key in BATCH_KEYS]
        with tf.summary.record_if(False):
            out = self._diagnostics_fns[taus](*args)
        return {key: np.asarray(value) for key, value in out.items()}
