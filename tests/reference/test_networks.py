"""Networks against the official code: same weights, same observations, same outputs.

One reference run builds every case with dopamine-rl 4.1.2's own modules
(`dopamine/labs/moes/architectures/networks.py`) from a fixed PRNG key,
perturbs every parameter (so that zero-initialised biases and the unit
SoftMoE scale are tested too), evaluates the batch under `jax.vmap` as the
agents do, and sends the parameters (by path) and outputs back.
`tf_softmoe.interop.dopamine` loads the parameters into a `QNetwork` built
from the matching `NetworkConfig`; the outputs must agree to float32
rounding.

Where the reference cannot run a case as shipped:
  * VALID padding: the moes networks' Nature convs use Flax's default
    padding, SAME, with no knob. The VALID cases run the same reference
    modules with that default switched to VALID (a `Conv` subclass put in
    place of `flax.linen.Conv` inside `networks` for that case only); every
    conv that names its padding (Impala, PerPatch) is unaffected.
  * Rainbow flatten: `FullRainbowMoENetwork`'s BASELINE branch raises
    UnboundLocalError in 4.1.2 (see benchmarks/peers/jax_peer.py).
    `RainbowBaseline` below wires the package's own modules the way that
    branch does, with the encoder under `encoder` as the package names it.
  * Noise: Rainbow is compared with the noise off on both sides:
    `eval_mode=True` for the hidden/head layers, and for the experts (which
    the reference never passes `eval_mode`) its gin knob
    `ExpertModel.eval_mode=True`. The reference is run with two keys to show
    that its outputs then do not depend on the key. Same-noise comparisons are
    the layer-level tests' job.
  * SoftMoE normalisation is a gin knob of the reference's SoftMoE
    (`SoftMoE.normalization`), bound in a gin scope for those cases.
"""

import json

import numpy as np
import pytest

from tf_softmoe.interop import dopamine
from tf_softmoe.networks import NetworkConfig

NUM_ACTIONS = 5
NUM_ATOMS = 51
HIDDEN = 16  # the reference's expert_hidden_units: small, so the tier is fast
BATCH = 3


def _case(name, agent, encoder, moe_type, routing="PER_PIXEL", *, experts=2,
          padding="SAME", normalize=False, avg_pool=False, embedding=None,
          config=None):
    return {"name": name, "agent": agent, "encoder": encoder, "moe_type": moe_type,
            "routing": routing, "experts": experts, "padding": padding,
            "normalize": normalize, "avg_pool": avg_pool, "embedding": embedding,
            "config": config}


_TOKENIZERS = {"PER_PIXEL": "per_conv", "PER_FEATUREMAP": "per_feat",
               "PER_SAMPLE": "per_sample", "PER_PATCH": "per_patch"}


def _config(case):
    kwargs = {"encoder": case["encoder"], "nature_padding": case["padding"].lower(),
              "hidden_units": HIDDEN}
    if case["moe_type"] == "BASELINE":
        kwargs["penultimate"] = "flatten"
    else:
        kwargs.update(
            penultimate="softmoe" if case["moe_type"] == "SOFTMOE" else "topk_moe",
            num_experts=case["experts"], tokenizer=_TOKENIZERS[case["routing"]],
            normalize=case["normalize"])
        if case["avg_pool"]:
            kwargs["patch_embedding"] = "avg_pool"
        if case["embedding"]:
            kwargs["patch_embedding_dim"] = case["embedding"]
    if case["agent"] == "rainbow":
        # Noise off on both sides: the reference runs with gin's
        # `ExpertModel.eval_mode=True`, so our experts must not stay noisy in
        # evaluation either (their default, as the reference's networks run).
        kwargs.update(head="c51", num_atoms=NUM_ATOMS, dueling=True, noisy=True,
                      expert_noise_in_eval=False)
    return NetworkConfig(**kwargs)


CASES = [
    _case("dqn-nature-same-flatten", "dqn", "nature", "BASELINE"),
    _case("dqn-nature-valid-flatten", "dqn", "nature", "BASELINE", padding="VALID"),
    _case("dqn-impala-flatten", "dqn", "impala", "BASELINE"),
    _case("dqn-nature-softmoe-perconv", "dqn", "nature", "SOFTMOE"),
    _case("dqn-nature-softmoe-perconv-normalize", "dqn", "nature", "SOFTMOE",
          normalize=True),
    _case("dqn-nature-valid-softmoe-perconv", "dqn", "nature", "SOFTMOE",
          padding="VALID"),
    _case("dqn-impala-softmoe-perconv", "dqn", "impala", "SOFTMOE", experts=4),
    _case("dqn-impala-softmoe-perconv-normalize", "dqn", "impala", "SOFTMOE",
          normalize=True),
    _case("dqn-nature-softmoe-perfeat", "dqn", "nature", "SOFTMOE", "PER_FEATUREMAP"),
    _case("dqn-nature-softmoe-persample", "dqn", "nature", "SOFTMOE", "PER_SAMPLE"),
    _case("dqn-nature-softmoe-perpatch", "dqn", "nature", "SOFTMOE", "PER_PATCH"),
    _case("dqn-impala-softmoe-perpatch", "dqn", "impala", "SOFTMOE", "PER_PATCH"),
    _case("dqn-nature-softmoe-perpatch-avgpool", "dqn", "nature", "SOFTMOE",
          "PER_PATCH", avg_pool=True),
    _case("dqn-nature-moe-top1", "dqn", "nature", "MOE", experts=4),
    _case("dqn-impala-moe-top1", "dqn", "impala", "MOE"),
    _case("rainbow-nature-same-flatten", "rainbow", "nature", "BASELINE"),
    _case("rainbow-nature-valid-flatten", "rainbow", "nature", "BASELINE",
          padding="VALID"),
    _case("rainbow-impala-flatten", "rainbow", "impala", "BASELINE"),
    _case("rainbow-nature-softmoe-perconv", "rainbow", "nature", "SOFTMOE"),
    _case("rainbow-impala-softmoe-perconv", "rainbow", "impala", "SOFTMOE", experts=4),
    _case("rainbow-impala-softmoe-perconv-normalize", "rainbow", "impala", "SOFTMOE",
          normalize=True),
    _case("rainbow-nature-softmoe-perfeat", "rainbow", "nature", "SOFTMOE",
          "PER_FEATUREMAP"),
    _case("rainbow-impala-softmoe-perpatch", "rainbow", "impala", "SOFTMOE",
          "PER_PATCH", embedding=64),
    _case("rainbow-nature-moe-top1", "rainbow", "nature", "MOE", experts=4),
]

_SCRIPT = """
import contextlib
import json
import types as pytypes

import flax.linen as fnn
from flax import traverse_util
import gin
import jax
import jax.numpy as jnp
from dopamine.jax import networks as base_networks
from dopamine.labs.moes.architectures import networks

cases = json.loads(str(inputs["cases"]))
observations = jnp.asarray(inputs["observations"])
num_actions, num_atoms, hidden = (int(v) for v in inputs["sizes"])
support = jnp.linspace(-10.0, 10.0, num_atoms)  # the Rainbow agents' default


class Conv(fnn.Conv):
    padding: str = "VALID"


valid_nn = pytypes.SimpleNamespace(**{k: getattr(fnn, k) for k in dir(fnn)
                                      if not k.startswith("__")})
valid_nn.Conv = Conv


class RainbowBaseline(fnn.Module):
    num_actions: int
    num_atoms: int
    encoder_type: str
    hidden_units: int

    def setup(self):
        if self.encoder_type == "CNN":
            self.encoder = networks.RainbowCNNet(nn_scale=1)
        else:
            self.encoder = base_networks.ImpalaEncoder(nn_scale=1)

    @fnn.compact
    def __call__(self, x, support, eval_mode=False, key=None):
        feature_key = jax.random.split(key, 3)[0]
        x = self.encoder(base_networks.preprocess_atari_inputs(x))
        net = base_networks.feature_layer(feature_key, True, eval_mode=eval_mode)
        x = fnn.relu(net(x.reshape(-1), self.hidden_units))
        adv = net(x, self.num_actions * self.num_atoms).reshape(
            (self.num_actions, self.num_atoms))
        value = net(x, self.num_atoms).reshape((1, self.num_atoms))
        logits = value + (adv - jnp.mean(adv, axis=0, keepdims=True))
        probabilities = fnn.softmax(logits)
        return pytypes.SimpleNamespace(
            q_values=jnp.sum(support * probabilities, axis=1), logits=logits,
            probabilities=probabilities)


gin.bind_parameter("normalized/SoftMoE.normalization", True)
gin.bind_parameter("rainbow/ExpertModel.eval_mode", True)
gin.bind_parameter("normalized_rainbow/SoftMoE.normalization", True)
gin.bind_parameter("normalized_rainbow/ExpertModel.eval_mode", True)


def build(case):
    moe = {} if case["moe_type"] == "BASELINE" else dict(
        num_experts=case["experts"], routing_type=case["routing"],
        use_avg_pool_for_tokens=case["avg_pool"])
    if case["embedding"]:
        moe["embedding_size"] = case["embedding"]
    if case["agent"] == "dqn":
        cls = networks.NatureDQNMoE if case["encoder"] == "nature" else networks.ImpalaMoE
        return cls(num_actions=num_actions, moe_type=case["moe_type"],
                   expert_hidden_units=hidden, **moe), False
    encoder_type = "CNN" if case["encoder"] == "nature" else "IMPALA"
    if case["moe_type"] == "BASELINE":
        return RainbowBaseline(num_actions, num_atoms, encoder_type, hidden), True
    return networks.FullRainbowMoENetwork(
        num_actions=num_actions, num_atoms=num_atoms, moe_type=case["moe_type"],
        expert_hidden_units=hidden, encoder_type=encoder_type, nn_scale=1,
        **moe), True


def outputs_of(network, rainbow, params, key):
    fields = ("q_values", "logits", "probabilities") if rainbow else ("q_values",)
    extra = dict(support=support, eval_mode=True) if rainbow else {}

    def apply(observation):
        out = network.apply(params, observation, key=key, **extra)
        return {field: getattr(out, field) for field in fields}

    return jax.vmap(apply)(observations)


rng = np.random.default_rng(0)
for case in cases:
    scope = {(False, False): "", (True, False): "normalized", (False, True): "rainbow",
             (True, True): "normalized_rainbow"}[(case["normalize"],
                                                 case["agent"] == "rainbow")]
    networks.nn = valid_nn if case["padding"] == "VALID" else fnn
    try:
        with gin.config_scope(scope) if scope else contextlib.nullcontext():
            network, rainbow = build(case)
            key = jax.random.PRNGKey(0)
            init = (dict(support=support, key=key) if rainbow else dict(key=key))
            params = network.init(key, observations[0], **init)
            flat = traverse_util.flatten_dict(params["params"], sep="/")
            perturbed = {}
            for path, value in flat.items():
                noise = rng.normal(0.0, 0.05, value.shape)
                if path.endswith("scalar"):
                    noise = noise + 1.0
                perturbed[path] = (np.asarray(value) + noise).astype(np.float32)
            params = {"params": traverse_util.unflatten_dict(perturbed, sep="/")}
            out = outputs_of(network, rainbow, params, key)
            other = outputs_of(network, rainbow, params, jax.random.PRNGKey(1))
    finally:
        networks.nn = fnn
    name = case["name"]
    for path, value in perturbed.items():
        outputs[f"{name}|params|{path.replace('/', ':')}"] = value
    for field, value in out.items():
        outputs[f"{name}|out|{field}"] = np.asarray(value)
    outputs[f"{name}|key_spread"] = np.max(np.abs(
        np.asarray(out["q_values"]) - np.asarray(other["q_values"])))
"""


@pytest.fixture(scope="module")
def reference_runs(reference):
    observations = np.random.default_rng(1).integers(
        0, 256, (BATCH, 84, 84, 4), dtype=np.uint8)
    raw = reference(_SCRIPT, cases=np.array(json.dumps(CASES)),
                    observations=observations,
                    sizes=np.array([NUM_ACTIONS, NUM_ATOMS, HIDDEN]))
    runs = {}
    for key, value in raw.items():
        name, kind, *rest = key.split("|")
        run = runs.setdefault(name, {"params": {}, "out": {}})
        if kind == "params":
            run["params"][rest[0].replace(":", "/")] = value
        elif kind == "out":
            run["out"][rest[0]] = value
        else:
            run[kind] = float(value)
    return observations, runs


def _differences(ours, theirs):
    abs_diff = float(np.max(np.abs(ours - theirs)))
    return abs_diff, abs_diff / max(float(np.max(np.abs(theirs))), 1e-12)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_loaded_network_gives_the_reference_outputs(case, reference_runs):
    observations, runs = reference_runs
    run = runs[case["name"]]
    network, report = dopamine.q_network_from_flax(
        run["params"], _config(case), NUM_ACTIONS)
    assert report.complete, str(report)
    assert len(report.loaded) == len(run["params"]) - len(report.ignored)
    # Every reference array sits unchanged in the variable it was mapped to.
    variables = {v.name: v.numpy() for v in network.variables}
    for path, name in report.loaded:
        np.testing.assert_array_equal(
            variables[name].reshape(run["params"][path].shape), run["params"][path],
            err_msg=path)
    assert run["key_spread"] == 0.0, "the reference's outputs depend on its noise key"
    ours = dopamine.reference_outputs(network, observations)
    assert set(ours) == set(run["out"])
    lines = []
    for field, theirs in sorted(run["out"].items()):
        abs_diff, rel_diff = _differences(ours[field], theirs)
        lines.append(f"{field}: max abs {abs_diff:.2e}, rel {rel_diff:.2e}")
        assert rel_diff < 2e-5, f"{case['name']} {field}: {lines[-1]}"
    print(f"{case['name']}: " + "; ".join(lines))


_CHECKPOINT_SCRIPT = """
import gin
import jax
import jax.numpy as jnp
from dopamine.discrete_domains import checkpointer
from dopamine.labs.moes.agents import dqn_moe_agent
from dopamine.labs.moes.architectures import networks

gin.bind_parameter("JaxDQNAgent.network", networks.NatureDQNMoE)
gin.bind_parameter("NatureDQNMoE.expert_hidden_units", int(inputs["hidden"]))
gin.bind_parameter("NatureDQNMoE.num_experts", 2)
gin.bind_parameter("ReplayBuffer.max_capacity", 1000)
gin.bind_parameter("ReplayBuffer.batch_size", 32)
agent = dqn_moe_agent.DQNMoEAgent(num_actions=int(inputs["num_actions"]))
directory = str(inputs["directory"])
bundle = agent.bundle_and_checkpoint(directory, 0)
bundle["current_iteration"] = 0
checkpointer.Checkpointer(directory, "ckpt").save_checkpoint(0, bundle)
key = jax.random.PRNGKey(0)
outputs["q_values"] = jax.vmap(lambda o: agent.network_def.apply(
    agent.online_params, o, key=key).q_values)(jnp.asarray(inputs["observations"]))
"""


def test_a_checkpoint_written_by_the_official_agent_loads(reference, tmp_path):
    """The official DQNMoEAgent's own `bundle_and_checkpoint`, written by
    Dopamine's `Checkpointer` (a pickle of JAX arrays and Optax states), is
    read here without JAX and gives the agent's Q-values."""
    observations = np.random.default_rng(2).integers(0, 256, (BATCH, 84, 84, 4),
                                                     dtype=np.uint8)
    out = reference(_CHECKPOINT_SCRIPT, directory=np.array(str(tmp_path)),
                    observations=observations, hidden=np.array(HIDDEN),
                    num_actions=np.array(NUM_ACTIONS))
    config = NetworkConfig(encoder="nature", penultimate="softmoe", num_experts=2,
                           hidden_units=HIDDEN)
    bundle = dopamine.read_dopamine_checkpoint(str(tmp_path / "ckpt.0"))
    assert {"online_params", "target_params", "optimizer_state"} <= set(bundle)
    network, report = dopamine.q_network_from_flax(bundle["online_params"], config,
                                                   NUM_ACTIONS)
    assert report.complete, str(report)
    ours = dopamine.reference_outputs(network, observations)["q_values"]
    abs_diff, rel_diff = _differences(ours, out["q_values"])
    print(f"official checkpoint: q_values: max abs {abs_diff:.2e}, rel {rel_diff:.2e}")
    assert rel_diff < 2e-5
