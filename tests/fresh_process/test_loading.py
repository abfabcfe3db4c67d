"""What a run writes and what users build with our layers loads in a new
Python process that imports only tf_softmoe, TensorFlow and numpy (the
exported policy: only TensorFlow and TF-Agents, with tf_softmoe blocked).

The test process itself has imported everything, so every load here happens
in a subprocess (tiny_run.fresh_python)."""

import ast
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.specs import tensor_spec

import tf_softmoe
from tf_softmoe import agents
from tf_softmoe import networks
from tests.fresh_process import tiny_run

PACKAGE_DIR = os.path.dirname(os.path.abspath(tf_softmoe.__file__))

# Loads every model a JSON list names ({"name", "path", "loader"}) and writes
# each one's outputs on the observations in inputs.npz, or its error.
LOAD_AND_RUN = """
import json, sys
import tf_softmoe
import numpy as np
import tensorflow as tf

models = json.load(open("models.json"))
observations = dict(np.load("inputs.npz"))
outputs, errors = {}, {}
for model in models:
    try:
        if model["loader"] == "load_q_network":
            loaded = tf_softmoe.load_q_network(model["path"])
        else:
            loaded = tf.keras.models.load_model(model["path"])
        result = loaded(observations[model["input"]])
        if isinstance(result, dict):
            for key, value in result.items():
                outputs[model["name"] + "/" + key] = np.asarray(value)
        else:
            outputs[model["name"]] = np.asarray(result)
    except Exception as error:
        errors[model["name"]] = f"{type(error).__name__}: {error}"[:2000]
np.savez("outputs.npz", **outputs)
json.dump({"errors": errors, "tf_agents_imported": "tf_agents" in sys.modules},
          open("report.json", "w"))
"""


def load_in_fresh_process(directory, models, inputs):
    """Runs LOAD_AND_RUN in `directory`; returns (outputs, report)."""
    with open(os.path.join(directory, "models.json"), "w") as f:
        json.dump(models, f)
    np.savez(os.path.join(directory, "inputs.npz"), **inputs)
    result = tiny_run.fresh_python(LOAD_AND_RUN, cwd=directory)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(directory, "report.json")) as f:
        report = json.load(f)
    return dict(np.load(os.path.join(directory, "outputs.npz"))), report


def expected_q_values(network_output, support):
    """Q-values of a DQN head's output, or of C51 logits on `support`."""
    output = np.asarray(network_output)
    if output.ndim == 3:
        return (tf.nn.softmax(output).numpy() * support).sum(-1)
    return output


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("fresh") / "run")
    run = tiny_run.catch_run(root)
    spec = run.agent.q_network.input_tensor_spec
    observations = np.random.default_rng(0).integers(
        0, 256, [5, *spec.shape], dtype=np.uint8)
    return root, run, observations


def registered_classes():
    """(module, class) of every class the package source registers."""
    found = []
    for directory, _, files in os.walk(PACKAGE_DIR):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            with open(path) as f:
                tree = ast.parse(f.read())
            module = "tf_softmoe." + os.path.relpath(path, PACKAGE_DIR)[:-3].replace(
                os.sep, ".").replace(".__init__", "")
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and any(
                        "register_keras_serializable" in ast.unparse(d)
                        for d in node.decorator_list):
                    found.append((module, node.name))
    return found


def test_import_alone_registers_every_layer_class_without_tf_agents(tmp_path):
    classes = registered_classes()
    # Optimizers are not layers: Keras finds them through the module their
    # config names (test_compiled_model_with_fused_adam_loads), and the
    # module's package, agents, needs TF-Agents.
    layers = [name for module, name in classes
              if not module.startswith("tf_softmoe.agents.")]
    assert {"SoftMoE", "PenultimateBlock", "QHead", "ImpalaEncoder",
            "NatureEncoder", "NoisyDense", "PerExpertGlorotUniform"} <= set(layers)
    code = (
        "import json, sys\nimport tf_softmoe\nimport tensorflow as tf\n"
        f"names = {layers!r}\n"
        "missing = [n for n in names\n"
        "           if tf.keras.utils.get_registered_object('tf_softmoe>' + n) is None]\n"
        "print(json.dumps({'missing': missing,\n"
        "                  'tf_agents': 'tf_agents' in sys.modules}))\n")
    result = tiny_run.fresh_python(code, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"missing": [], "tf_agents": False}


def test_run_q_network_loads_and_gives_the_runs_q_values(finished_run, tmp_path):
    root, run, observations = finished_run
    expected = run.agent.q_network(observations)[0].numpy()
    path = os.path.join(root, "q_network.keras")
    models = [{"name": "keras", "path": path, "loader": "keras", "input": "obs"},
              {"name": "helper", "path": root, "loader": "load_q_network",
               "input": "obs"}]
    outputs, report = load_in_fresh_process(str(tmp_path), models, {"obs": observations})
    assert report["errors"] == {}
    assert not report["tf_agents_imported"]
    assert expected.shape == (5, 3, 11)  # C51 logits: 3 actions, 11 atoms
    for name in ("keras", "helper"):
        np.testing.assert_allclose(outputs[name], expected, rtol=1e-5, atol=1e-5)


def test_readme_model_loads_from_keras_and_saved_model(tmp_path):
    with open(os.path.join(tiny_run.REPO, "README.md")) as f:
        example = re.findall(r"```python\n(.*?)```", f.read(), re.S)[0]
    namespace = {}
    exec(compile(example, "README.md", "exec"), namespace)  # pylint: disable=exec-used
    model = namespace["model"]
    frames = np.random.default_rng(1).integers(0, 256, [3, 84, 84, 4], dtype=np.uint8)
    expected = {key: value.numpy() for key, value in model(frames).items()}
    model.save(str(tmp_path / "readme.keras"))
    model.save(str(tmp_path / "readme_saved_model"), save_format="tf")
    models = [{"name": "keras", "path": str(tmp_path / "readme.keras"),
               "loader": "keras", "input": "frames"},
              {"name": "saved_model", "path": str(tmp_path / "readme_saved_model"),
               "loader": "keras", "input": "frames"}]
    outputs, report = load_in_fresh_process(str(tmp_path), models, {"frames": frames})
    assert report["errors"] == {}
    for name in ("keras", "saved_model"):
        for key in ("q", "expert_gate"):
            np.testing.assert_allclose(outputs[f"{name}/{key}"], expected[key],
                                       rtol=1e-5, atol=1e-5)


def test_policy_acts_with_tensorflow_and_tf_agents_only(finished_run, tmp_path):
    root, run, observations = finished_run
    np.save(tmp_path / "obs.npy", observations)
    code = tiny_run.BLOCK_TF_SOFTMOE + f"""
import os
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np
import tensorflow as tf
import tf_agents  # registers the TensorFlow Probability specs of the policy
from tf_agents.trajectories import time_step as ts

policy = tf.saved_model.load({os.path.join(root, "policy")!r})
observations = tf.constant(np.load("obs.npy"))
step = ts.restart(observations, batch_size=observations.shape[0])
np.save("actions.npy", policy.action(step, ()).action.numpy())
assert "tf_softmoe" not in sys.modules
"""
    result = tiny_run.fresh_python(code, cwd=str(tmp_path), with_repo=False)
    assert result.returncode == 0, result.stderr[-3000:]
    logits = run.agent.q_network(observations)[0].numpy()
    support = np.linspace(-1.0, 1.0, 11)
    greedy = expected_q_values(logits, support).argmax(-1)
    np.testing.assert_array_equal(np.load(tmp_path / "actions.npy"), greedy)


def test_compiled_model_with_fused_adam_loads(tmp_path):
    tokens = tf.keras.Input([6, 4])
    outputs = tf.keras.layers.Flatten()(tf_softmoe.layers.SoftMoE(
        num_experts=2, expert_hidden_units=4)(tokens))
    model = tf.keras.Model(tokens, tf.keras.layers.Dense(2)(outputs))
    model.compile(optimizer=agents.FusedAdam(learning_rate=1e-3, epsilon=1e-4),
                  loss="mse")
    model.fit(np.ones([4, 6, 4], np.float32), np.zeros([4, 2], np.float32),
              verbose=0)
    model.save(str(tmp_path / "compiled.keras"))
    code = ("import tf_softmoe\nimport tensorflow as tf\n"
            "model = tf.keras.models.load_model('compiled.keras')\n"
            "optimizer = model.optimizer\n"
            "print(type(optimizer).__name__, float(optimizer.epsilon), "
            "int(optimizer.iterations))\n")
    result = tiny_run.fresh_python(code, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-3:] == ["FusedAdam", "0.0001", "1"]


# Every penultimate block with both encoders (Nature with a DQN head, Impala
# with a noisy dueling C51 head), plus the other tokenizers under SoftMoE.
BLOCK_CASES = [(encoder, penultimate, "per_conv")
               for encoder in networks.ENCODERS for penultimate in networks.PENULTIMATES]
BLOCK_CASES += [("nature", "softmoe", tokenizer) for tokenizer in networks.TOKENIZER_KINDS
                if tokenizer != "per_conv"]


def case_name(case):
    return "-".join(case)


def case_config(encoder, penultimate, tokenizer):
    values = dict(encoder=encoder, penultimate=penultimate, tokenizer=tokenizer,
                  hidden_units=8, impala_stack_sizes=(4, 8, 8), impala_blocks=1,
                  patch_embedding_dim=8)
    if penultimate in networks.MOE_PENULTIMATES:
        values["num_experts"] = 2
    if encoder == "impala":
        # Experts without evaluation noise: outputs must be comparable
        # across processes.
        values.update(head="c51", num_atoms=5, dueling=True, noisy=True,
                      expert_noise_in_eval=False)
    return networks.NetworkConfig(**values)


@pytest.fixture(scope="module")
def every_block(tmp_path_factory):
    """Each case's network saved with save_q_network, its outputs in this
    process and in one fresh process that loads them all."""
    directory = str(tmp_path_factory.mktemp("blocks"))
    observation_spec = tensor_spec.BoundedTensorSpec([36, 36, 2], tf.uint8, 0, 255)
    action_spec = tensor_spec.BoundedTensorSpec([], tf.int64, 0, 3)
    observations = np.random.default_rng(2).integers(0, 256, [3, 36, 36, 2],
                                                     dtype=np.uint8)
    expected, models = {}, []
    for case in BLOCK_CASES:
        name = case_name(case)
        net = networks.build_q_network(case_config(*case), observation_spec, action_spec)
        expected[name] = net(observations)[0].numpy()
        path = tf_softmoe.save_q_network(net, os.path.join(directory, name + ".keras"))
        models.append({"name": name, "path": path, "loader": "keras", "input": "obs"})
    outputs, report = load_in_fresh_process(directory, models, {"obs": observations})
    return expected, outputs, report


@pytest.mark.parametrize("case", BLOCK_CASES, ids=case_name)
def test_every_block_and_encoder_loads_in_a_fresh_process(every_block, case):
    expected, outputs, report = every_block
    name = case_name(case)
    assert name not in report["errors"], report["errors"][name]
    np.testing.assert_allclose(outputs[name], expected[name], rtol=1e-5, atol=1e-5)
